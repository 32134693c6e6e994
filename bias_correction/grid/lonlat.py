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
    lat_idx, lon_idx, lon = box_indices(da["lat"].values, da["lon"].values, lat_min, lat_max, lon_min, lon_max, margin)
    return da.isel(lat=lat_idx, lon=lon_idx).assign_coords(lon=lon)


def box_indices(lat: np.ndarray, lon: np.ndarray, lat_min: float, lat_max: float, lon_min: float, lon_max: float,
                margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`subset_box` takes, as indices into ``lat`` and ``lon`` (ascending longitudes in the box's
    convention) and those longitudes: for readers that cut a file band by band (``sources.hycom.layout``)."""
    start = lon_min - margin
    wrapped = wrap_lon(lon, start)
    order = np.argsort(wrapped, kind="stable")
    lon_idx = order[wrapped[order] <= lon_max + margin]
    lat = np.asarray(lat)
    lat_idx = np.flatnonzero((lat >= lat_min - margin) & (lat <= lat_max + margin))
    return lat_idx, lon_idx, wrapped[lon_idx]
