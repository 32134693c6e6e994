"""OISST days: which file a day needs (final or preliminary), trying the access modes in order.

Why: this is the one object the pipeline holds for OISST. ``Upstream.oisst_access`` lists access
strategies by name, primary first (``https``, ``s3``, ``opendap``), looked up in :data:`ACCESS`; the
final/preliminary lifecycle and the cache policy live here, the transport in the strategies.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import ConfigError, NotYetPublishedError, SstbcError
from bias_correction.sources.base import Access, Registry
from bias_correction.sources.cache import Fetched, cached
from bias_correction.sources.oisst.access_dap import DapAccess
from bias_correction.sources.oisst.access_https import HttpsAccess
from bias_correction.sources.oisst.access_s3 import S3Access
from bias_correction.sources.oisst.product import (
    FINAL,
    FINAL_LAG_DAYS,
    PRELIMINARY,
    DaySource,
    oisst_filename,
    read_oisst_sst,
)
from bias_correction.storage import Store

LOG = logging.getLogger(__name__.rpartition(".")[0])  # the package: the name these warnings always had


class OisstAccess(Access, Protocol):
    """An OISST access strategy: its base URL, one fetch of a day's version, and a size without download."""

    #: the raw-key family its files land in ("https" for the global file, "opendap" for subsets)
    cache_mode: str

    def base(self, source: DaySource) -> str: ...

    def fetch(self, source: DaySource, day: dt.date, version: str) -> Fetched: ...

    def size(self, source: DaySource, day: dt.date, version: str) -> int | None: ...


#: The access modes by config name.
ACCESS: Registry[OisstAccess] = Registry("OISST access mode", (HttpsAccess(), S3Access(), DapAccess()))


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass(frozen=True)
class OisstSource:
    """Fetches and opens one OISST day through the configured access modes, primary first.

    Modes: ``https`` (NCEI tree), ``s3`` (NOAA open-data bucket, anonymous; the same files) and
    ``opendap`` (NCEI THREDDS, regional subset). ``today`` is injectable so tests control the
    preliminary/final lifecycle.
    """

    base_url: str
    store: Store
    http: Http
    today: Callable[[], dt.date] = field(default=_utc_today)
    access: tuple[str, ...] = ("https",)
    s3_base: str = "s3://noaa-cdr-sea-surface-temp-optimum-interpolation-pds/data/v2.1/avhrr"
    s3_endpoint: str | None = None
    opendap_base: str = "https://www.ncei.noaa.gov/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR"
    region: Region | None = None
    #: dims of :meth:`open` (the :class:`~bias_correction.sources.base.Source` protocol)
    dims: ClassVar[tuple[str, ...]] = ("lat", "lon")

    def __post_init__(self) -> None:
        ACCESS.choose(self.access)  # an unknown mode fails here, naming the known ones

    def location(self, day: dt.date, version: str, mode: str = "https") -> str:
        return f"{ACCESS[mode].base(self)}/{day:%Y%m}/{oisst_filename(day, version)}"

    def url(self, day: dt.date, version: str) -> str:
        return self.location(day, version, "https")

    def raw_key(self, day: dt.date, version: str, mode: str = "https") -> str:
        """Cache key. HTTPS and S3 serve the same global file; OPeNDAP stores a regional subset."""
        if mode == "opendap":
            r = self.region
            tag = "global" if r is None else f"{r.lat_min:g}_{r.lat_max:g}_{r.lon_min:g}_{r.lon_max:g}".replace("-", "m")
            return f"raw/oisst-opendap/{tag}/{day:%Y%m}/{oisst_filename(day, version)}"
        return f"raw/oisst/{day:%Y%m}/{oisst_filename(day, version)}"

    def _order(self, day: dt.date) -> tuple[str, str]:
        age = (self.today() - day).days
        return (PRELIMINARY, FINAL) if age < FINAL_LAG_DAYS else (FINAL, PRELIMINARY)

    def final_expected(self, day: dt.date) -> bool:
        """Whether the final file should exist by now (about 14 days after the day)."""
        return (self.today() - day).days >= FINAL_LAG_DAYS - 1

    def cached(self, day: dt.date, versions: tuple[str, ...] = (FINAL, PRELIMINARY)) -> Fetched | None:
        """The cached file of ``day`` (final preferred), without any network access."""
        modes = ("https",) + tuple(dict.fromkeys(s.cache_mode for s in ACCESS.choose(self.access)
                                                 if s.cache_mode != "https"))
        for version in versions:
            for mode in modes:
                hit = cached(self.store, self.raw_key(day, version, mode))
                if hit is not None:
                    return hit
        return None

    def fetch(self, day: dt.date) -> Fetched:
        """Cached file or an acquisition through the access modes in order.

        A cached preliminary file is kept until the final one is expected; from then on a fetch
        tries the final file first (the upgrade). NotYetPublishedError only when no mode has the day.
        """
        hit = self.cached(day)
        if hit is not None and (hit.version == FINAL or not self.final_expected(day)):
            return hit
        versions = (FINAL,) if hit is not None else self._order(day)
        failures: list[SstbcError] = []
        for mode in self.access:
            try:
                return self._fetch_mode(ACCESS[mode], day, versions)
            except SstbcError as exc:
                LOG.warning("OISST %s via %s failed: %s", day, mode, exc)
                failures.append(exc)
        if hit is not None:  # the final is not out yet: keep using the preliminary
            return hit
        if all(isinstance(e, NotYetPublishedError) for e in failures):
            raise NotYetPublishedError("; ".join(str(e) for e in failures))
        raise next(e for e in failures if not isinstance(e, NotYetPublishedError))

    def _fetch_mode(self, access: OisstAccess, day: dt.date, versions: tuple[str, ...]) -> Fetched:
        tried = []
        for version in versions:
            try:
                return access.fetch(self, day, version)
            except NotYetPublishedError:
                tried.append(oisst_filename(day, version))
        raise NotYetPublishedError(f"OISST {day}: not published yet via {access.name} "
                                   f"(neither {' nor '.join(tried)} exists under {access.base(self)}/{day:%Y%m}/)")

    def available_size(self, day: dt.date) -> int | None:
        """Bytes a fetch of ``day`` would download (None if unknown or unpublished); no download."""
        access = ACCESS[self.access[0]]
        for version in self._order(day):
            size = access.size(self, day, version)
            if size is not None:
                return size
        return None

    def open_region(self, fetched: Fetched, region: Region, margin: float = 0.5) -> xr.DataArray:
        """SST (°C, float32, NaN on land) of the region plus ``margin`` degrees, lon in the region's convention."""
        with self.store.local_path(fetched.key) as path:
            return read_oisst_sst(path, region, margin)

    def open(self, fetched: Fetched, day: dt.date) -> xr.DataArray:
        """The :class:`~bias_correction.sources.base.Source` view: SST (lat, lon) in °C of the source's region."""
        if self.region is None:
            raise ConfigError("OisstSource.open needs a region (or call open_region)")
        return self.open_region(fetched, self.region)
