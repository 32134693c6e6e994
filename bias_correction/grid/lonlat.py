"""Longitude conventions. Upstream files use 0..360 (native OISST and GLBy) or -180..180 (NCSS
subsets asked with negative longitudes); sstbc always works in the convention of the configured
region, so one helper maps any longitude into a 360-degree window starting at a reference."""

from __future__ import annotations

import numpy as np
import xarray as xr


def wrap_lon(lon: np.ndarray, start: float) -> np.ndarray:
    """Map longitudes into ``[start, start + 360)``."""
    return (np.asarray(lon, dtype=np.float64) - start) % 360.0 + start


def subset_box(
    da: xr.DataArray, lat_min: float, lat_max: float, lon_min: float, lon_max: float, margin: float
) -> xr.DataArray:
    """Cut ``da`` (dims ``lat``, ``lon``) to a box plus ``margin`` degrees, with longitudes
    re-expressed in the box's convention and sorted ascending (works across the antimeridian)."""
    start = lon_min - margin
    lon = wrap_lon(da["lon"].values, start)
    da = da.assign_coords(lon=lon).sortby("lon")
    lat = da["lat"].values
    lat_sel = (lat >= lat_min - margin) & (lat <= lat_max + margin)
    lon_sel = da["lon"].values <= lon_max + margin
    return da.isel(lat=np.flatnonzero(lat_sel), lon=np.flatnonzero(lon_sel))
