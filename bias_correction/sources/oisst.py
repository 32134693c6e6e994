"""NOAA OISST v2.1 AVHRR-only daily analyses: NCEI HTTPS tree, NOAA open-data S3 bucket, NCEI OPeNDAP.

URL layout (data_formats.md 1.1-1.2)::

    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}.nc               final (about 14 days after)
    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}_preliminary.nc   preliminary (about 1 day after)

The preliminary file is deleted upstream when the final one lands, so a day is looked up under
both names; the order depends on the day's age. Values are packed int16 (scale 0.01, fill -999)
in degrees Celsius; the global grid is 0.25 degrees, lon 0..360, lat ascending.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import (
    ConfigError,
    InputValidationError,
    NotYetPublishedError,
    SstbcError,
)
from bias_correction.grid.lonlat import subset_box
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.http import Fetched, cached, fetch, head_size
from bias_correction.sources.s3 import fetch_object, object_size
from bias_correction.sources.validate import check_physical_values, open_for_validation
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)

FINAL, PRELIMINARY = "final", "preliminary"
#: Days younger than this are looked up as preliminary first (final lands after about 14 days).
FINAL_LAG_DAYS = 15
OISST_EPOCH = dt.datetime(1978, 1, 1, 12)
SST_VALID_RANGE_C = (-3.0, 45.0)
REQUIRED_VARS = ("sst", "anom", "err", "ice")
GLOBAL_SHAPE = {"time": 1, "zlev": 1, "lat": 720, "lon": 1440}


def oisst_filename(day: dt.date, version: str) -> str:
    suffix = "_preliminary" if version == PRELIMINARY else ""
    return f"oisst-avhrr-v02r01.{day:%Y%m%d}{suffix}.nc"


def _validate(path: Path, label: str, *, day: dt.date) -> None:
    validate_oisst_file(path, day, label)


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

    def location(self, day: dt.date, version: str, mode: str = "https") -> str:
        base = {"https": self.base_url, "s3": self.s3_base, "opendap": self.opendap_base}[mode]
        return f"{base}/{day:%Y%m}/{oisst_filename(day, version)}"

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
        modes = ("https",) + (("opendap",) if "opendap" in self.access else ())
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
                return self._fetch_mode(mode, day, versions)
            except SstbcError as exc:
                LOG.warning("OISST %s via %s failed: %s", day, mode, exc)
                failures.append(exc)
        if hit is not None:  # the final is not out yet: keep using the preliminary
            return hit
        if all(isinstance(e, NotYetPublishedError) for e in failures):
            raise NotYetPublishedError("; ".join(str(e) for e in failures))
        raise next(e for e in failures if not isinstance(e, NotYetPublishedError))

    def _fetch_mode(self, mode: str, day: dt.date, versions: tuple[str, ...]) -> Fetched:
        tried = []
        for version in versions:
            what = f"OISST {day} ({version})"
            validate = functools.partial(_validate, day=day)
            try:
                if mode == "https":
                    return fetch(self.location(day, version), self.store, self.raw_key(day, version), http=self.http,
                                 what=what, version=version, validate=validate)
                if mode == "s3":
                    return fetch_object(self.location(day, version, "s3"), self.store, self.raw_key(day, version),
                                        http=self.http, endpoint=self.s3_endpoint, what=what, version=version,
                                        validate=validate)
                if mode == "opendap":
                    from bias_correction.sources.opendap import fetch_oisst_day

                    return fetch_oisst_day(self, day, version)
                raise ConfigError(f"unknown OISST access mode {mode!r}")
            except NotYetPublishedError:
                tried.append(oisst_filename(day, version))
        base = {"https": self.base_url, "s3": self.s3_base, "opendap": self.opendap_base}[mode]
        raise NotYetPublishedError(f"OISST {day}: not published yet via {mode} "
                                   f"(neither {' nor '.join(tried)} exists under {base}/{day:%Y%m}/)")

    def available_size(self, day: dt.date) -> int | None:
        """Bytes a fetch of ``day`` would download (None if unknown or unpublished); no download."""
        for version in self._order(day):
            mode = self.access[0]
            if mode == "https":
                size = head_size(self.location(day, version), self.http)
            elif mode == "s3":
                size = object_size(self.location(day, version, "s3"), self.http, self.s3_endpoint)
            else:
                return None
            if size is not None:
                return size
        return None

    def open_region(self, fetched: Fetched, region: Region, margin: float = 0.5) -> xr.DataArray:
        """SST (°C, float32, NaN on land) of the region plus ``margin`` degrees, lon in the region's convention."""
        with self.store.local_path(fetched.key) as path:
            return read_oisst_sst(path, region, margin)


def read_oisst_sst(path: Path, region: Region, margin: float) -> xr.DataArray:
    ds = read_dataset(path, engine="netcdf4", mask_and_scale=True, drop_variables=["anom", "err", "ice"])
    sst = ds["sst"].isel(time=0, zlev=0, drop=True)
    sst = subset_box(sst, region.lat_min, region.lat_max, region.lon_min, region.lon_max, margin)
    out = sst.astype("float32")
    out.attrs = {"units": "degC", "source_file": path.name}
    return out


def validate_oisst_file(path: Path, day: dt.date, what: str | None = None) -> None:
    """Open the file and check variables, dims, date and value range; raise InputValidationError."""
    what = what or f"OISST {day} file {path.name}"
    ds = open_for_validation(path, what, decode_times=True)
    missing = [v for v in REQUIRED_VARS if v not in ds.variables]
    if missing:
        raise InputValidationError(f"{what}: missing variable(s) {missing}; expected {list(REQUIRED_VARS)}")
    dims = dict(ds["sst"].sizes)
    if dims != GLOBAL_SHAPE or ds["sst"].dims != ("time", "zlev", "lat", "lon"):
        raise InputValidationError(f"{what}: sst has dims {dims}, expected {GLOBAL_SHAPE}")
    when = ds["time"].values[0].astype("datetime64[s]").astype(dt.datetime)
    if when.date() != day:
        raise InputValidationError(f"{what}: time is {when:%Y-%m-%d}, expected {day}")
    lat = ds["lat"].values
    if not (np.all(np.diff(lat) > 0) and abs(float(lat[0]) + 89.875) < 1e-3):
        raise InputValidationError(f"{what}: lat is not the ascending 0.25° grid from -89.875")
    units = ds["sst"].attrs.get("units", "")
    if units not in ("Celsius", "degC", "degree_Celsius", "degrees_C"):
        raise InputValidationError(f"{what}: sst units {units!r}, expected Celsius")
    sst = ds["sst"].values
    finite = np.isfinite(sst)
    frac = finite.mean()
    if frac < 0.4:
        raise InputValidationError(f"{what}: only {frac:.1%} of cells have SST; expected the global ocean (~65%)")
    check_physical_values(sst, what, "SST", SST_VALID_RANGE_C)
