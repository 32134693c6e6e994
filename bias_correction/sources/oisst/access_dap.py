"""OISST access ``opendap``: the region's ``sst`` (plus 1 degree) from NCEI THREDDS, never the global field.

Why a subset keeps the upstream layout (time, zlev, lat, lon; int16 packed): the whole-file reader
then reads it unchanged. It is cached under its own key (``raw/oisst-opendap/<region>/...``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from bias_correction.config import Region
from bias_correction.errors import InputValidationError
from bias_correction.io.netcdf import NETCDF_LOCK
from bias_correction.sources.cache import Fetched
from bias_correction.sources.dap import acquire_assembled, dods_get, metadata, packing_subset, read_columns
from bias_correction.sources.http import new_session
from bias_correction.sources.lonlat import lat_rows, lon_runs, wrap_region
from bias_correction.sources.oisst.product import DaySource
from bias_correction.sources.validate import check_physical_values, open_for_validation

#: Degrees added around the region for OISST subsets (the reader cuts region + 0.5 degrees).
OISST_MARGIN = 1.0
OISST_SST_VALID_RANGE_C = (-3.0, 45.0)
#: Attributes without which values cannot be decoded (see :func:`bias_correction.sources.dap.metadata`).
REQUIRED_ATTRS = {"sst": ("scale_factor", "_FillValue"), "time": ("units",)}


class DapAccess:
    """Subsets the day's file over OPeNDAP; size unknown before the subset is made."""

    name = "opendap"
    cache_mode = "opendap"

    def base(self, source: DaySource) -> str:
        return source.opendap_base

    def fetch(self, source: DaySource, day: dt.date, version: str) -> Fetched:
        return fetch_oisst_day(source, day, version)

    def size(self, source: DaySource, day: dt.date, version: str) -> int | None:
        return None


def oisst_opendap_url(source: DaySource, day: dt.date, version: str) -> str:
    return source.location(day, version, "opendap")


def fetch_oisst_day(source: DaySource, day: dt.date, version: str) -> Fetched:
    """One OISST day (``version`` final or preliminary) from NCEI THREDDS OPeNDAP: the region's ``sst``.

    The subset covers ``source.region`` plus 1 degree (global if the source has no region) and keeps
    the upstream layout (time, zlev, lat, lon; int16 packed, scale 0.01, fill -999), so
    :func:`bias_correction.sources.oisst.product.read_oisst_sst` reads it like a whole file.
    """
    url = oisst_opendap_url(source, day, version)
    region: Region | None = getattr(source, "region", None)
    what = f"OISST {day} ({version}, OPeNDAP)"

    def build(tmp: Path, label: str) -> None:
        meta = metadata(url, source.http, label, ("sst", "time", "lat", "lon"), REQUIRED_ATTRS)
        dims, sst_attrs = meta["sst"]
        if dims != ("time", "zlev", "lat", "lon"):
            raise InputValidationError(f"{label}: sst dims {dims}, expected (time, zlev, lat, lon)")
        session = new_session()
        tval, lat, lon = (a.astype(np.float64) for a in dods_get(session, url, "time,lat,lon", source.http, label))
        t_units = str(meta["time"][1].get("units", ""))
        if region is None:
            rows, runs = np.arange(lat.size), [np.arange(lon.size)]
            west = float(lon[0])
        else:
            west, east = region.lon_min - OISST_MARGIN, region.lon_max + OISST_MARGIN
            rows = lat_rows(lat, region.lat_min - OISST_MARGIN, region.lat_max + OISST_MARGIN)
            runs = lon_runs(lon, west, east)
        if rows.size == 0 or not runs:
            raise InputValidationError(f"{label}: the region has no grid point")
        packed = read_columns(session, url, source.http, label, "sst", (slice(0, 1), slice(0, 1)), rows, runs)
        attrs = packing_subset(sst_attrs)
        cols = np.concatenate(runs)
        out_lon = lon[cols] if region is None else wrap_region(lon[cols], west)
        _write_oisst_subset(tmp, tval[:1], t_units, lat[rows], out_lon, packed, attrs, url)

    return acquire_assembled(
        url + ".dods?sst", source.store, source.raw_key(day, version, "opendap"), source.http, what, version,
        build, lambda p, label: validate_oisst_subset(p, day, label))


def _write_oisst_subset(path: Path, time: np.ndarray, time_units: str, lat: np.ndarray, lon: np.ndarray,
                        packed: np.ndarray, attrs: dict[str, Any], source: str) -> None:
    with NETCDF_LOCK:
        ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        try:
            ds.createDimension("time", None)
            ds.createDimension("zlev", 1)
            ds.createDimension("lat", len(lat))
            ds.createDimension("lon", len(lon))
            coords = {
                "time": (("time",), {"long_name": "Center time of the day", "units": time_units}, time),
                "zlev": (("zlev",), {"long_name": "Sea surface height", "units": "meters", "positive": "down"},
                         np.zeros(1)),
                "lat": (("lat",), {"long_name": "Latitude", "units": "degrees_north"}, lat),
                "lon": (("lon",), {"long_name": "Longitude", "units": "degrees_east"}, lon),
            }
            for name, (dims, vattrs, values) in coords.items():
                var = ds.createVariable(name, "f4", dims)
                var.setncatts(vattrs)
                var[:] = np.asarray(values, dtype=np.float32)
            fill = attrs.get("_FillValue", np.int16(-999))
            sst = ds.createVariable("sst", "i2", ("time", "zlev", "lat", "lon"), zlib=True, complevel=4,
                                    shuffle=True, fill_value=np.int16(fill))  # type: ignore[arg-type]
            sst.set_auto_maskandscale(False)
            for key, value in attrs.items():
                if key != "_FillValue":
                    sst.setncattr(key, value)
            sst[:] = np.asarray(packed, dtype=np.int16).reshape(1, 1, len(lat), len(lon))
            ds.setncattr("source", source)
            ds.setncattr("history", f"regional subset assembled by sstbc from OPeNDAP {source}")
        finally:
            ds.close()


def validate_oisst_subset(path: Path, day: dt.date, what: str | None = None) -> None:
    """Checks of a regional OISST subset: sst dims, date, ascending 0.25° lat, units, values."""
    what = what or f"OISST {day} subset {path.name}"
    ds = open_for_validation(path, what, decode_times=True)
    if "sst" not in ds.variables or ds["sst"].dims != ("time", "zlev", "lat", "lon"):
        raise InputValidationError(f"{what}: no sst(time, zlev, lat, lon)")
    when = ds["time"].values[0].astype("datetime64[s]").astype(dt.datetime)
    if when.date() != day:
        raise InputValidationError(f"{what}: time is {when:%Y-%m-%d}, expected {day}")
    lat = ds["lat"].values
    if lat.size > 1 and not np.allclose(np.diff(lat), 0.25, atol=1e-3):
        raise InputValidationError(f"{what}: lat is not an ascending 0.25° grid")
    units = ds["sst"].attrs.get("units", "")
    if units not in ("Celsius", "degC", "degree_Celsius", "degrees_C"):
        raise InputValidationError(f"{what}: sst units {units!r}, expected Celsius")
    check_physical_values(ds["sst"].values, what, "SST", OISST_SST_VALID_RANGE_C)
