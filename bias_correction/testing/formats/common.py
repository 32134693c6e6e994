"""Shared helpers of the exact-format writers: the netCDF lock, packing, packed variables in file order.

Why: netCDF-C/HDF5 are not thread-safe, and the stand-in server writes files in handler threads while
clients read in others; every writer serialises on sstbc's one netCDF lock through :func:`_netcdf_locked`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import netCDF4
import numpy as np

from bias_correction.io.netcdf import NETCDF_LOCK

_F = TypeVar("_F", bound=Callable[..., Any])


def _netcdf_locked(func: _F) -> _F:
    """Serialise with sstbc's netCDF lock: the C libraries are not thread-safe, and the stand-in
    server writes files in handler threads while clients read in others."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with NETCDF_LOCK:
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _f32_round_lon(lon: np.ndarray) -> np.ndarray:
    """float32-round longitudes in the 0..360 frame, then restore the given convention (as NCSS does)."""
    lon = np.asarray(lon, dtype=np.float64)
    neg = lon < 0
    base = np.where(neg, lon + 360.0, lon)
    return np.float64(np.float32(base)) - np.where(neg, 360.0, 0.0)


def _create_packed(ds: netCDF4.Dataset, name: str, dtype: str, dims: tuple[str, ...], fill: np.generic,
                   head: list[tuple[str, object]], tail: list[tuple[str, object]], **kw: object) -> netCDF4.Variable:
    """Create a variable whose ``_FillValue`` sits *between* other attributes, as in the real files.

    netCDF4-python always writes ``_FillValue`` first; re-adding it by rename keeps both the attribute order
    and the storage fill value of the real files.
    """
    var = ds.createVariable(name, dtype, dims, fill_value=fill, **kw)
    for key, value in head:
        var.setncattr(key, value)
    var.delncattr("_FillValue")
    var.setncattr("_FillValue__tmp", fill)
    var.renameAttribute("_FillValue__tmp", "_FillValue")
    for key, value in tail:
        var.setncattr(key, value)
    var.set_auto_maskandscale(False)
    return var


def _pack(values: np.ndarray, scale: float, offset: float, fill: np.generic) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    raw = np.round((v - offset) / np.float64(scale))
    raw = np.clip(np.nan_to_num(raw, nan=0.0), -32767, 32767).astype(np.int16)
    return np.where(np.isfinite(v), raw, fill).astype(np.int16)
