"""HYCOM forecast runs for a region: which run and variable to fetch, the cache key, and opening it.

Why: this is the one object the pipeline holds for HYCOM; how the bytes are obtained is the access
strategy named by ``Upstream.hycom_access`` (``ncss``, ``opendap``, ``files``), looked up in
:data:`ACCESS`, and every strategy leaves the same validated file in the raw cache (see
:mod:`bias_correction.sources.hycom.layout`), so :meth:`HycomSource.daily_means` is the same for all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar, Protocol

import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import ConfigError
from bias_correction.grid.lonlat import subset_box
from bias_correction.sources.base import Access, Registry
from bias_correction.sources.cache import Fetched, cached
from bias_correction.sources.hycom.access_dap import DapAccess
from bias_correction.sources.hycom.access_files import FilesAccess
from bias_correction.sources.hycom.access_ncss import NcssAccess
from bias_correction.sources.hycom.layout import daily_means_of_file, read_surface_field
from bias_correction.sources.hycom.products import (
    GOFS31,
    STEP_HOURS,
    HycomProduct,
    RunSource,
    hycom_variable,
    iso,
    product_for,
)
from bias_correction.storage import Store


class HycomAccess(Access, Protocol):
    """A HYCOM access strategy: config check, cache-key suffix (provenance), and the fetch itself."""

    def check(self, source: RunSource) -> None: ...

    def key_suffix(self, source: RunSource) -> str: ...

    def fetch(self, source: RunSource, run: dt.datetime, variable: str) -> Fetched: ...


#: The access modes by config name, in the order the config documents them.
ACCESS: Registry[HycomAccess] = Registry("HYCOM access mode", (NcssAccess(), DapAccess(), FilesAccess()))
ACCESS_MODES = ACCESS.names


@dataclass(frozen=True)
class HycomSource:
    """Fetches, validates and opens one HYCOM forecast run for a region."""

    #: dims of :meth:`open` (the :class:`~bias_correction.sources.base.Source` protocol)
    dims: ClassVar[tuple[str, ...]] = ("lead", "lat", "lon")

    ncss_base: str
    store: Store
    http: Http
    region: Region
    lead_days: int = 7
    margin: float = 0.25
    #: NCSS output format: "netcdf4" (default) or "netcdf" (NetCDF-3 64-bit offset).
    accept: str = "netcdf4"
    #: "ncss" (default), "opendap" (FMRC run through DAP2) or "files" (whole files, Range requests).
    access: str = "ncss"
    #: THREDDS OPeNDAP base (``.../thredds/dodsC``); required for access "opendap".
    opendap_base: str | None = None
    #: Root of the HYCOM file tree (``.../datasets``); required for access "files".
    files_base: str | None = None

    def __post_init__(self) -> None:
        self._strategy().check(self)

    def _strategy(self) -> HycomAccess:
        """The registered access strategy of :attr:`access`; ConfigError listing the known ones."""
        return ACCESS[self.access]

    def bbox(self) -> tuple[float, float, float, float]:
        """(south, north, west, east) of region + margin, as requested (west/east in the region's convention)."""
        b = self._bbox()
        return float(b["south"]), float(b["north"]), float(b["west"]), float(b["east"])

    def _bbox(self) -> dict[str, str]:
        r, m = self.region, self.margin
        return {
            "north": f"{min(90.0, r.lat_max + m):.2f}",
            "south": f"{max(-80.0, r.lat_min - m):.2f}",
            "west": f"{r.lon_min - m:.2f}",
            "east": f"{r.lon_max + m:.2f}",
        }

    def max_tau(self) -> int:
        """Last lead hour needed: the end of the last corrected valid day."""
        return 24 * self.lead_days + 9

    def url(self, run: dt.datetime, variable: str = "water_temp") -> str:
        """The NCSS request of the run's ``variable`` (water_temp: the 0 m level; surf_el: 2-D), every 3 h."""
        spec = hycom_variable(variable)
        product = product_for(run)
        if self.max_tau() > product.max_tau:
            raise ConfigError(f"lead_days={self.lead_days} needs tau {self.max_tau()} h, {product.name} stops at {product.max_tau} h")
        query = {
            "var": variable,
            **self._bbox(),
            "horizStride": "1",
            "time_start": iso(run),
            "time_end": iso(run + dt.timedelta(hours=product.max_tau)),
            "timeStride": str(max(1, STEP_HOURS // product.step_hours(variable))),
            "vertCoord": "0",
            "addLatLon": "true",
            "accept": self.accept,
        }
        if not spec.has_depth:
            del query["vertCoord"]
        return product.run_url(self.ncss_base, run, query, variable)

    def check_lead(self, product: HycomProduct) -> None:
        if self.max_tau() > product.max_tau:
            raise ConfigError(f"lead_days={self.lead_days} needs tau {self.max_tau()} h, {product.name} stops at {product.max_tau} h")

    def raw_key(self, run: dt.datetime, variable: str = "water_temp") -> str:
        """Cache key of the run's file; the access mode and the variable are part of it (same layout, different
        provenance; ``water_temp_0m_...`` or ``surf_el_...``)."""
        b = self._bbox()
        box = f"{b['south']}_{b['north']}_{b['west']}_{b['east']}".replace("-", "m")
        suffix = self._strategy().key_suffix(self)
        try:
            folder = product_for(run).cache_dir
        except ConfigError:
            folder = GOFS31.cache_dir
        stem = "water_temp_0m" if hycom_variable(variable).has_depth else variable
        return f"raw/hycom/{folder}/{run:%Y%m%d%H}/{stem}_{box}{suffix}.nc"

    def cached(self, run: dt.datetime, variable: str = "water_temp") -> Fetched | None:
        return cached(self.store, self.raw_key(run, variable))

    def fetch(self, run: dt.datetime, variable: str = "water_temp") -> Fetched:
        """The run's ``variable`` ("water_temp" or "surf_el") file in the raw cache (fetched through the
        configured access mode if absent)."""
        hycom_variable(variable)
        return self._strategy().fetch(self, run, variable)

    def open_surface(self, fetched: Fetched, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
        """3-hourly surface field (time, lat, lon): temperature in °C or surf_el in m, region + margin,
        region lon convention."""
        with self.store.local_path(fetched.key) as path:
            da = read_surface_field(path, run, variable)
        r = self.region
        return subset_box(da, r.lat_min, r.lat_max, r.lon_min, r.lon_max, self.margin + 0.01)

    def daily_means(self, fetched: Fetched, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
        """Daily means for lead days 1..lead_days: dims (lead, lat, lon); °C for water_temp (surface),
        metres for surf_el."""
        r = self.region
        with self.store.local_path(fetched.key) as path:  # read band by band: bounded memory on any domain
            return daily_means_of_file(path, run, self.lead_days, variable,
                                       box=(r.lat_min, r.lat_max, r.lon_min, r.lon_max, self.margin + 0.01))

    def open(self, fetched: Fetched, run: dt.datetime) -> xr.DataArray:
        """The :class:`~bias_correction.sources.base.Source` view: water_temp daily means (lead, lat, lon), °C."""
        return self.daily_means(fetched, run)
