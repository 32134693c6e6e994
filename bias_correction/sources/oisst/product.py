"""NOAA OISST v2.1 AVHRR-only daily analyses: file names, versions, and reading/validating a whole file.

Why one module: the HTTPS and S3 access modes fetch the same global file, and the OPeNDAP subset keeps
its layout, so names, the final/preliminary lifecycle constants and the reader are shared by all.

URL layout (data_formats.md 1.1-1.2)::

    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}.nc               final (about 14 days after)
    {base}/{YYYYMM}/oisst-avhrr-v02r01.{YYYYMMDD}_preliminary.nc   preliminary (about 1 day after)

The preliminary file is deleted upstream when the final one lands, so a day is looked up under
both names; the order depends on the day's age. Values are packed int16 (scale 0.01, fill -999)
in degrees Celsius; the global grid is 0.25 degrees, lon 0..360, lat ascending.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

import numpy as np
import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import InputValidationError
from bias_correction.grid.lonlat import subset_box
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.validate import check_physical_values, open_for_validation
from bias_correction.storage import Store

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


class DaySource(Protocol):
    """What an access strategy may ask of the OISST source it fetches for."""

    base_url: str
    store: Store
    http: Http
    s3_base: str
    s3_endpoint: str | None
    opendap_base: str
    region: Region | None

    def location(self, day: dt.date, version: str, mode: str = "https") -> str: ...

    def raw_key(self, day: dt.date, version: str, mode: str = "https") -> str: ...


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
