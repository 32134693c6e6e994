"""Mask-aware bilinear regridding between rectilinear lat/lon grids with precomputed sparse weights.

Weights are a sparse (n_target x n_source) matrix built once per (source grid, target grid) and
reused for every day. Applying them renormalises by the weight of valid (ocean) source cells,
so a coastal target cell is never diluted by land values and no land value leaks into the ocean:
``out = W @ (f * valid) / (W @ valid)``, NaN where no valid source cell contributes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import xarray as xr

from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.lonlat import wrap_lon


def _axis_weights(src: np.ndarray, dst: np.ndarray, periodic: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each dst coordinate: indices of the two bracketing src points and their weights.

    Points outside the source range get index -1 (no contribution). ``periodic`` is the period
    (360) for a source axis that wraps around the globe.
    """
    if np.any(np.diff(src) <= 0):
        raise InputValidationError("regrid: source coordinates must be strictly ascending")
    n = src.size
    if periodic:
        src_ext = np.concatenate([src[-1:] - periodic, src, src[:1] + periodic])
        idx_map = np.concatenate([[n - 1], np.arange(n), [0]])
        dst = wrap_lon(dst, float(src_ext[0]))
    else:
        src_ext, idx_map = src, np.arange(n)
    hi = np.searchsorted(src_ext, dst, side="right")
    lo = hi - 1
    tol = 1e-6 * max(1.0, float(np.abs(src_ext).max()))
    inside = (dst >= src_ext[0] - tol) & (dst <= src_ext[-1] + tol)
    lo = np.clip(lo, 0, src_ext.size - 2)
    hi = lo + 1
    frac = np.clip((dst - src_ext[lo]) / (src_ext[hi] - src_ext[lo]), 0.0, 1.0)
    i0 = np.where(inside, idx_map[lo], -1)
    i1 = np.where(inside, idx_map[hi], -1)
    return np.stack([i0, i1], axis=1), np.stack([1 - frac, frac], axis=1), inside


@dataclass(frozen=True)
class BilinearWeights:
    """Sparse bilinear weights from a source grid to a target grid."""

    matrix: sp.csr_matrix
    src_shape: tuple[int, int]
    dst_shape: tuple[int, int]
    key: str

    def apply(self, field: np.ndarray) -> np.ndarray:
        """Regrid ``field`` (..., nlat_src, nlon_src); NaN marks invalid source cells."""
        lead_shape = field.shape[:-2]
        if field.shape[-2:] != self.src_shape:
            raise InputValidationError(f"regrid: field shape {field.shape[-2:]} does not match weights {self.src_shape}")
        flat = field.reshape(-1, self.src_shape[0] * self.src_shape[1]).T.astype(np.float64)
        valid = np.isfinite(flat)
        num = self.matrix @ np.where(valid, flat, 0.0)
        den = self.matrix @ valid.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 1e-9, num / den, np.nan)
        return out.T.reshape(*lead_shape, *self.dst_shape).astype(np.float32)


def bilinear_weights(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid) -> BilinearWeights:
    """Weights from a rectilinear source (ascending lat/lon) to ``grid``.

    The source longitude axis is treated as periodic when it spans the whole globe.
    """
    src_lat = np.asarray(src_lat, dtype=np.float64)
    src_lon = np.asarray(src_lon, dtype=np.float64)
    span = src_lon[-1] - src_lon[0] + (src_lon[1] - src_lon[0] if src_lon.size > 1 else 0)
    periodic = 360.0 if abs(span - 360.0) < 1e-3 else None
    jlat, wlat, _ = _axis_weights(src_lat, grid.lat, None)
    ilon, wlon, _ = _axis_weights(src_lon, grid.lon, periodic)
    nlon_src = src_lon.size
    rows, cols, vals = [], [], []
    dst_j, dst_i = np.meshgrid(np.arange(grid.nlat), np.arange(grid.nlon), indexing="ij")
    for a in range(2):
        for b in range(2):
            js, is_ = jlat[dst_j, a], ilon[dst_i, b]
            w = wlat[dst_j, a] * wlon[dst_i, b]
            ok = (js >= 0) & (is_ >= 0) & (w > 0)
            rows.append((dst_j * grid.nlon + dst_i)[ok])
            cols.append((js * nlon_src + is_)[ok])
            vals.append(w[ok])
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(grid.nlat * grid.nlon, src_lat.size * nlon_src),
    )
    h = hashlib.sha256()
    for arr in (src_lat, src_lon, grid.lat, grid.lon):
        h.update(np.ascontiguousarray(arr).tobytes())
    return BilinearWeights(matrix, (src_lat.size, nlon_src), grid.shape, h.hexdigest()[:16])


class Regridder:
    """Caches weights per source grid, so every day after the first reuses them."""

    def __init__(self, grid: RegularGrid) -> None:
        self.grid = grid
        self._cache: dict[bytes, BilinearWeights] = {}

    def weights_for(self, src_lat: np.ndarray, src_lon: np.ndarray) -> BilinearWeights:
        key = np.ascontiguousarray(src_lat).tobytes() + b"|" + np.ascontiguousarray(src_lon).tobytes()
        w = self._cache.get(key)
        if w is None:
            w = self._cache[key] = bilinear_weights(src_lat, src_lon, self.grid)
        return w

    def __call__(self, da: xr.DataArray) -> xr.DataArray:
        """Regrid a DataArray whose last two dims are (lat, lon) onto the target grid."""
        if da.dims[-2:] != ("lat", "lon"):
            raise InputValidationError(f"regrid: expected trailing dims (lat, lon), got {da.dims}")
        w = self.weights_for(da["lat"].values, da["lon"].values)
        data = w.apply(np.asarray(da.values))
        coords = {k: v for k, v in da.coords.items() if "lat" not in v.dims and "lon" not in v.dims}
        coords.update(lat=self.grid.lat, lon=self.grid.lon)
        return xr.DataArray(data, dims=da.dims, coords=coords, attrs=dict(da.attrs))
