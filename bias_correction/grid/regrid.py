"""Mask-aware regridding (bilinear or first-order conservative) between rectilinear lat/lon
grids with precomputed sparse weights.

Weights (see :mod:`bias_correction.grid.weights`) are built once per (source grid, target grid,
method), cached in memory and optionally on disk, and reused for every day. Applying them
renormalises by the weight of valid (ocean) source cells, so a coastal target cell is never
diluted by land values and no land value leaks into the ocean:
``out = W @ (f * valid) / (W @ valid)``, NaN where no valid source cell contributes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.weights import (
    METHODS,
    BilinearWeights,
    ConservativeWeights,
    RegridWeights,
    build_weights,
    get_weights,
)

__all__ = ["BilinearWeights", "ConservativeWeights", "RegridWeights", "Regridder", "bilinear_weights",
           "conservative_weights"]


def bilinear_weights(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid) -> BilinearWeights:
    """Bilinear weights from a rectilinear source (lat/lon in any order and convention) to ``grid``.

    The source longitude axis is treated as periodic when it spans the whole globe."""
    w = build_weights(src_lat, src_lon, grid, "bilinear")
    assert isinstance(w, BilinearWeights)
    return w


def conservative_weights(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid) -> ConservativeWeights:
    """First-order conservative (area-overlap) weights from a rectilinear source to ``grid``."""
    w = build_weights(src_lat, src_lon, grid, "conservative")
    assert isinstance(w, ConservativeWeights)
    return w


class Regridder:
    """Regrids DataArrays with trailing dims (lat, lon) onto ``grid``.

    Why a class: it holds the target grid, the default method and the weights cache location,
    so every day after the first reuses the same weights (in memory, and across processes via
    ``cache_dir``)."""

    def __init__(self, grid: RegularGrid, method: str = "bilinear", cache_dir: Path | None = None) -> None:
        if method not in METHODS:
            raise InputValidationError(f"regrid: method must be one of {METHODS}, got {method!r}")
        self.grid = grid
        self.method = method
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # built once: creating the lat/lon indexes costs more than regridding a small region
        self._recent: dict[tuple[bytes, bytes, str], RegridWeights] = {}
        self._coords = xr.Coordinates({"lat": ("lat", grid.lat), "lon": ("lon", grid.lon)})

    def weights_for(self, src_lat: np.ndarray, src_lon: np.ndarray, method: str | None = None) -> RegridWeights:
        """The (cached) weights from this source grid to the target grid."""
        return get_weights(src_lat, src_lon, self.grid, method or self.method, self.cache_dir)

    def _weights_fast(self, lat: np.ndarray, lon: np.ndarray, method: str) -> RegridWeights:
        """Per-instance lookup by raw coordinate bytes (skips hashing the target grid)."""
        k = (lat.tobytes(), lon.tobytes(), method)
        w = self._recent.get(k)
        if w is None:
            w = self.weights_for(lat, lon, method)
            if len(self._recent) >= 8:
                self._recent.clear()
            self._recent[k] = w
        return w

    def __call__(self, da: xr.DataArray, *, method: str | None = None) -> xr.DataArray:
        """Regrid a DataArray whose last two dims are (lat, lon) onto the target grid.

        NaN marks invalid (land) source cells. A dask-backed ``da`` gives a dask-backed result,
        computed block by block along the leading dims (lat/lon are merged into one chunk)."""
        if da.ndim < 2 or da.dims[-2:] != ("lat", "lon"):
            raise InputValidationError(f"regrid: expected trailing dims (lat, lon), got {da.dims}")
        if "lat" not in da.coords or "lon" not in da.coords:
            raise InputValidationError("regrid: expected 1-D 'lat' and 'lon' coordinates on the field")
        variables = da.coords.variables  # Variables, not DataArrays: no per-call index copies
        w = self._weights_fast(np.asarray(variables["lat"].values), np.asarray(variables["lon"].values),
                               method or self.method)
        coords = self._output_coords(da)
        data = da.data
        if _is_dask(data):
            data = data.rechunk({da.ndim - 2: -1, da.ndim - 1: -1})
            out = data.map_blocks(w.apply, dtype=np.float32,
                                  chunks=(*data.chunks[:-2], (self.grid.nlat,), (self.grid.nlon,)))
        else:
            out = w.apply(np.asarray(data))
        return xr.DataArray(out, dims=da.dims, coords=coords, attrs=dict(da.attrs), name=da.name)

    def _output_coords(self, da: xr.DataArray) -> xr.Coordinates:
        """The input's coordinates that do not depend on lat/lon, plus the target lat/lon."""
        keep = {k: v for k, v in da.coords.variables.items() if not {"lat", "lon"} & set(v.dims)}
        if not keep:
            return self._coords
        indexes = {k: i for k, i in da.xindexes.items() if k in keep}
        return xr.Coordinates({**keep, **self._coords.variables}, indexes={**indexes, **self._coords.xindexes})


def _is_dask(data: object) -> bool:
    try:
        import dask.array as dsa
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(data, dsa.Array)
