"""NOAA OISST v2.1 AVHRR-only daily analyses from the NCEI HTTPS tree.

URL layout (data_formats.md 1.1-1.2)::

    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}.nc               final (about 14 days after)
    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}_preliminary.nc   preliminary (about 1 day after)

The preliminary file is deleted upstream when the final one lands, so a day is looked up under
both names; the order depends on the day's age. Values are packed int16 (scale 0.01, fill -999)
in degrees Celsius; the global grid is 0.25 degrees, lon 0..360, lat ascending.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import InputValidationError, NotYetPublishedError
from bias_correction.grid.lonlat import subset_box
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.http import Fetched, cached, fetch
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


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass(frozen=True)
class OisstSource:
    """Fetches and opens one OISST day. ``today`` is injectable so tests control the lifecycle."""

    base_url: str
    store: Store
    http: Http
    today: object = field(default=_utc_today)  # Callable[[], date]

    def url(self, day: dt.date, version: str) -> str:
        return f"{self.base_url}/{day:%Y%m}/{oisst_filename(day, version)}"

    @staticmethod
    def raw_key(day: dt.date, version: str) -> str:
        return f"raw/oisst/{day:%Y%m}/{oisst_filename(day, version)}"

    def _order(self, day: dt.date) -> tuple[str, str]:
        age = (self.today() - day).days  # type: ignore[operator]
        return (PRELIMINARY, FINAL) if age < FINAL_LAG_DAYS else (FINAL, PRELIMINARY)

    def cached(self, day: dt.date) -> Fetched | None:
        """The cached file of ``day`` (final preferred), without any network access."""
        for version in (FINAL, PRELIMINARY):
            hit = cached(self.store, self.raw_key(day, version))
            if hit is not None:
                return hit
        return None

    def fetch(self, day: dt.date) -> Fetched:
        """Cached file or a download; NotYetPublishedError when neither name is published."""
        hit = self.cached(day)
        if hit is not None:
            return hit
        tried = []
        for version in self._order(day):
            url = self.url(day, version)
            try:
                return fetch(
                    url, self.store, self.raw_key(day, version), http=self.http,
                    what=f"OISST {day} ({version})", version=version,
                    validate=lambda p, label, d=day: validate_oisst_file(p, d, label),
                )
            except NotYetPublishedError:
                tried.append(url)
        names = " nor ".join(u.rsplit("/", 1)[-1] for u in tried)
        raise NotYetPublishedError(f"OISST {day}: not published yet (neither {names} exists under {self.base_url}/{day:%Y%m}/)")

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
    try:
        ds = read_dataset(path, engine="netcdf4", mask_and_scale=True, decode_times=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputValidationError(f"{what} does not open as NetCDF: {exc}") from None
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
    vals = sst[finite]
    lo, hi = float(vals.min()), float(vals.max())
    if lo < SST_VALID_RANGE_C[0] or hi > SST_VALID_RANGE_C[1]:
        raise InputValidationError(f"{what}: SST range {lo:.2f}..{hi:.2f} °C outside {SST_VALID_RANGE_C}")
    if float(np.abs(vals).max()) == 0.0:
        raise InputValidationError(f"{what}: SST is zero everywhere")
