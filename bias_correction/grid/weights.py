"""Sparse regridding weights between rectilinear lat/lon grids, and their on-disk cache.

Why separable: both the sources (OISST 0.25 deg, HYCOM GLBy0.08) and the product grid are
rectilinear, so bilinear and first-order conservative weights factor into a latitude matrix and
a longitude matrix: ``W = kron(W_lat, W_lon)``. The two 1-D matrices are built in milliseconds
even for the global 0.08 degree grid (the full 2-D matrix would hold ~40 million entries), they
are tiny on disk, and applying them row-block by row-block keeps memory bounded by the output.

Mask normalisation happens when the weights are applied, from the NaN pattern of each field:
``out = W @ (f * valid) / (W @ valid)``, NaN where ``W @ valid == 0``. Land (NaN) never
contributes and an ocean value is never diluted by land. The weights themselves do not depend
on the mask (one set on disk serves every day, even when gaps change the mask); the normaliser
``1 / (W @ valid)`` does, and is cached in memory per weights under a sha256 of the mask bits,
since a source's land mask is the same every day.

Conventions handled here: source longitudes in any convention (0..360, -180..180, unsorted
after a convention change), descending latitudes, targets across the antimeridian (longitudes
are matched modulo 360), periodic longitude when the source spans the globe, and the polar caps
(targets between the last source row and the pole of a source whose cells reach the pole take
that row's value instead of NaN).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.lonlat import wrap_lon

LOG = logging.getLogger(__name__)
_LOCK = threading.RLock()

Method = Literal["bilinear", "conservative"]
METHODS: tuple[str, ...] = ("bilinear", "conservative")

#: Bump when the weight construction changes, so stale cache files are not reused.
WEIGHTS_VERSION = 1
#: Fractional weights this close to 0 or 1 are snapped, so a target on a source point copies it.
_SNAP = 1e-6
#: Conservative overlaps smaller than this fraction of a target cell are rounding slivers.
_SLIVER = 1e-9
#: Target elements per row block when applying (bounds temporaries to a few MB).
_BLOCK_ELEMS = 1 << 18
_MEMORY_CACHE_SIZE = 8
#: Masks whose normaliser is kept per weights (a source's land mask rarely changes).
_NORMALISERS_PER_WEIGHTS = 2


# ---------------------------------------------------------------------------------------- checks
def _coord(values: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size < 2:
        raise InputValidationError(f"regrid: {what} must be a 1-D coordinate with at least 2 points, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputValidationError(f"regrid: {what} must be finite (no NaN/inf coordinates)")
    return a


def _sorted_axis(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(ascending coordinates, permutation to the original order); duplicates are an error."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    if np.any(np.diff(s) <= 0):
        raise InputValidationError(f"regrid: {what} must not repeat a value (expected strictly monotonic coordinates)")
    return s, order


def _periodic(lon: np.ndarray) -> bool:
    """True when the sorted longitudes go round the globe with a seam gap no wider than a cell."""
    span = lon[-1] - lon[0]
    gap = 360.0 - span
    return bool(0.0 < gap <= 1.5 * float(np.max(np.diff(lon))) + 1e-9)


def _reaches_pole(lat: np.ndarray) -> tuple[bool, bool]:
    """Whether the outer source cells (half a spacing beyond the end rows) reach -90 / +90."""
    south = lat[0] - (lat[1] - lat[0]) / 2 <= -90.0 + 1e-6
    north = lat[-1] + (lat[-1] - lat[-2]) / 2 >= 90.0 - 1e-6
    return bool(south), bool(north)


# ------------------------------------------------------------------------------- 1-D builders
def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    keep = vals > 0
    m = sp.coo_matrix((vals[keep], (rows[keep], cols[keep])), shape=shape).tocsr()
    m.sum_duplicates()
    m.sort_indices()
    return m


def bilinear_axis(src: np.ndarray, dst: np.ndarray, *, lon: bool) -> sp.csr_matrix:
    """Linear-interpolation matrix (n_dst x n_src) along one axis.

    Longitudes are matched modulo 360 (periodic when the source spans the globe); latitudes
    between the outermost source row and a pole its cells reach take that row's value.
    """
    what = "source longitude" if lon else "source latitude"
    s, order = _sorted_axis(_coord(src, what), what)
    n = s.size
    dst = np.asarray(dst, dtype=np.float64)
    tol = 1e-9 * max(1.0, float(np.abs(s).max()))
    if lon and _periodic(s):
        ext = np.concatenate([s[-1:] - 360.0, s, s[:1] + 360.0])
        idx = np.concatenate([[n - 1], np.arange(n), [0]])
        d = wrap_lon(dst, float(ext[0]))
        lo_lim, hi_lim = ext[0], ext[-1]
    else:
        ext, idx = s, np.arange(n)
        d = wrap_lon(dst, float(s[0]) - tol) if lon else dst
        lo_lim, hi_lim = s[0], s[-1]
        if not lon:
            south, north = _reaches_pole(s)
            lo_lim = -90.0 if south else lo_lim
            hi_lim = 90.0 if north else hi_lim
    inside = (d >= lo_lim - tol) & (d <= hi_lim + tol)
    lo = np.clip(np.searchsorted(ext, d, side="right") - 1, 0, ext.size - 2)
    frac = np.clip((d - ext[lo]) / (ext[lo + 1] - ext[lo]), 0.0, 1.0)
    frac = np.where(frac < _SNAP, 0.0, np.where(frac > 1 - _SNAP, 1.0, frac))
    rows = np.flatnonzero(inside)
    lo = lo[rows]
    frac = frac[rows]
    cols = np.concatenate([idx[lo], idx[lo + 1]])
    vals = np.concatenate([1.0 - frac, frac])
    return _csr(np.concatenate([rows, rows]), order[cols], vals, (dst.size, n))


def _overlap(src_edges: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, source cell, overlap length) of intervals [a, b] with contiguous cells ``src_edges``."""
    m = src_edges.size - 1
    first = np.clip(np.searchsorted(src_edges, a, side="right") - 1, 0, m - 1)
    last = np.clip(np.searchsorted(src_edges, b, side="left") - 1, 0, m - 1)
    count = np.maximum(last - first + 1, 0)
    rows = np.repeat(np.arange(a.size), count)
    starts = np.repeat(np.cumsum(count) - count, count)
    cols = first[rows] + (np.arange(rows.size) - starts)
    length = np.minimum(b[rows], src_edges[cols + 1]) - np.maximum(a[rows], src_edges[cols])
    return rows, cols, length


def _edges(c: np.ndarray) -> np.ndarray:
    """Cell edges from centres: midpoints, outer edges half a spacing out."""
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (c[1] - c[0]) / 2], mid, [c[-1] + (c[-1] - c[-2]) / 2]])


def conservative_axis(src: np.ndarray, dst: np.ndarray, dst_step: float, *, lon: bool) -> sp.csr_matrix:
    """First-order conservative matrix (n_dst x n_src) along one axis: the fraction of each
    target cell covered by each source cell. Latitude overlaps are measured in sin(lat), so the
    product of the two axes is the fraction of the target cell's area on the sphere."""
    what = "source longitude" if lon else "source latitude"
    s, order = _sorted_axis(_coord(src, what), what)
    n = s.size
    dst = np.asarray(dst, dtype=np.float64)
    h = dst_step / 2
    if lon:
        if _periodic(s):
            seam = (s[-1] + s[0] + 360.0) / 2
            e = np.concatenate([[seam - 360.0], (s[:-1] + s[1:]) / 2, [seam]])
            ext = np.concatenate([e[:-1], e[:-1] + 360.0, [e[-1] + 360.0]])
            idx = np.concatenate([np.arange(n), np.arange(n)])
            c = wrap_lon(dst, float(ext[0]) + h)  # cells start inside the first copy
        else:
            ext, idx = _edges(s), np.arange(n)
            c = wrap_lon(dst, float(ext[0]) - h)  # keep cells that straddle the western edge
        a, b = c - h, c + h
    else:
        ext = np.sin(np.deg2rad(np.clip(_edges(s), -90.0, 90.0)))
        idx = np.arange(n)
        a = np.sin(np.deg2rad(np.clip(dst - h, -90.0, 90.0)))
        b = np.sin(np.deg2rad(np.clip(dst + h, -90.0, 90.0)))
    rows, cols, length = _overlap(ext, a, b)
    width = (b - a)[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(width > 0, length / width, 0.0)
    frac = np.where(frac < _SLIVER, 0.0, np.minimum(frac, 1.0))
    return _csr(rows, order[idx[cols]], frac, (dst.size, n))


# ----------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class _Plan:
    """How to apply the weights block by block in one dtype (built once per weights and dtype)."""

    lon_first: bool
    lon_t: sp.csr_matrix  # (n_src_lon x n_dst_lon)
    blocks: tuple[tuple[int, int, int, int, sp.csr_matrix | None], ...]  # r0, r1, s0, s1, lat rows


@dataclass(frozen=True, eq=False)
class RegridWeights:
    """Separable sparse weights from a rectilinear source grid to a target grid.

    ``lat`` is (n_dst_lat x n_src_lat) and ``lon`` (n_dst_lon x n_src_lon), both CSR; the full
    (n_target x n_source) matrix is their Kronecker product (:attr:`matrix`, built on demand).
    """

    lat: sp.csr_matrix
    lon: sp.csr_matrix
    method: str
    key: str
    _plans: dict[str, _Plan] = field(default_factory=dict, repr=False)
    _inv_den: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)

    @property
    def src_shape(self) -> tuple[int, int]:
        return (self.lat.shape[1], self.lon.shape[1])

    @property
    def dst_shape(self) -> tuple[int, int]:
        return (self.lat.shape[0], self.lon.shape[0])

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The full (n_target x n_source) CSR matrix, rows/columns in (lat, lon) C order.

        Not needed for :meth:`apply`; for the global 0.08 degree grid it holds ~40 M entries."""
        return sp.kron(self.lat, self.lon, format="csr")

    def _plan(self, cdt: type) -> _Plan:
        """Row blocks of the latitude matrix (each with the source rows it reads) and the
        transposed longitude matrix, in ``cdt``."""
        key = np.dtype(cdt).str
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        ny, nx = self.src_shape
        my, mx = self.dst_shape
        # Order of the two 1-D steps: each costs (rows it runs on) x (non-zeros of the other
        # axis's matrix); run the longitude step on whichever of source or target rows is cheaper.
        lon_first = ny * self.lon.nnz + self.lat.nnz * mx < self.lat.nnz * nx + my * self.lon.nnz
        rows = max(1, _BLOCK_ELEMS // max(mx, nx))
        blocks = []
        for r0 in range(0, my, rows):
            r1 = min(my, r0 + rows)
            m = self.lat[r0:r1]
            if m.nnz == 0:
                blocks.append((r0, r1, 0, 0, None))
                continue
            s0, s1 = int(m.indices.min()), int(m.indices.max()) + 1
            sub = sp.csr_matrix((m.data.astype(cdt), m.indices - s0, m.indptr), shape=(r1 - r0, s1 - s0))
            blocks.append((r0, r1, s0, s1, sub))
        plan = _Plan(lon_first, self.lon.T.tocsr().astype(cdt), tuple(blocks))
        self._plans[key] = plan
        return plan

    def apply(self, field: np.ndarray) -> np.ndarray:
        """Regrid ``field`` (..., nlat_src, nlon_src) to float32 (..., nlat_dst, nlon_dst).

        NaN (or inf) marks invalid source cells; they never contribute. Computes in float32 for
        float32 input (the global case) and float64 otherwise. Memory beyond the output is a few
        row blocks plus, per mask, the cached float32 normaliser ``1 / (W @ valid)``.
        """
        field = np.asarray(field)
        if field.ndim < 2 or field.shape[-2:] != self.src_shape:
            raise InputValidationError(
                f"regrid: field shape {field.shape} does not end with the weights' source shape {self.src_shape}")
        cdt = np.float32 if field.dtype in (np.float32, np.float16) else np.float64
        lead = field.shape[:-2]
        f3 = field.reshape(-1, *self.src_shape)
        out = np.empty((f3.shape[0], *self.dst_shape), np.float32)
        for k in range(f3.shape[0]):
            inv = self._normaliser(f3[k], is_mask=False)
            for r0, r1, num in self._blocks(f3[k], "masked", cdt):
                np.multiply(num, inv[r0:r1], out=out[k, r0:r1])  # NaN where nothing valid
        return out.reshape(*lead, *self.dst_shape)

    def normaliser(self, valid: np.ndarray) -> np.ndarray:
        """``1 / (W @ valid)`` (float32) on the target grid, NaN where no valid source cell
        contributes: what :meth:`apply` multiplies by for fields with this validity mask."""
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != self.src_shape:
            raise InputValidationError(f"regrid: mask shape {valid.shape} does not match the source shape {self.src_shape}")
        return self._normaliser(valid, is_mask=True)

    def _normaliser(self, arr: np.ndarray, is_mask: bool) -> np.ndarray:
        """Why cached: a source's land mask is the same every day, so this half of the work is
        done once per (weights, mask); the key is a sha256 of the mask bits, hashed row block by
        row block so no source-sized temporary is needed."""
        h = hashlib.sha256(f"{arr.shape}".encode())
        step = max(1, _BLOCK_ELEMS // arr.shape[1])
        for r0 in range(0, arr.shape[0], step):
            chunk = arr[r0:r0 + step]
            h.update(np.packbits(chunk if is_mask else np.isfinite(chunk), axis=1).tobytes())
        key = h.hexdigest()
        cache = self._inv_den
        with _LOCK:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        inv = np.empty(self.dst_shape, np.float32)
        for r0, r1, den in self._blocks(arr, "mask" if is_mask else "valid", np.float64):
            ok = den > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(1.0, den, out=inv[r0:r1], where=ok, casting="same_kind")
            inv[r0:r1][~ok] = np.nan
        with _LOCK:
            cache[key] = inv
            while len(cache) > _NORMALISERS_PER_WEIGHTS:
                cache.popitem(last=False)
        return inv

    def _blocks(self, field2d: np.ndarray, mode: Literal["masked", "valid", "mask"],
                cdt: type) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (r0, r1, (W @ a)[r0:r1]) over blocks of target rows, where ``a`` is the field
        with invalid cells zeroed ("masked"), its validity as 0/1 ("valid"), or a boolean mask
        as 0/1 ("mask").

        Each block reads only the source rows its latitude weights touch, so temporaries stay
        at a few MB whatever the grid size."""
        plan = self._plan(cdt)
        mx = self.dst_shape[1]
        for r0, r1, s0, s1, lat_rows in plan.blocks:
            if lat_rows is None:
                yield r0, r1, np.zeros((r1 - r0, mx), cdt)
                continue
            sub = field2d[s0:s1]
            if mode == "mask":
                a = sub.astype(cdt)
            elif mode == "valid":
                a = np.isfinite(sub).astype(cdt)
            else:
                a = np.zeros(sub.shape, cdt)
                np.copyto(a, sub, where=np.isfinite(sub), casting="unsafe")
            if plan.lon_first:
                yield r0, r1, lat_rows @ np.ascontiguousarray(a @ plan.lon_t)
            else:
                yield r0, r1, (lat_rows @ a) @ plan.lon_t


class BilinearWeights(RegridWeights):
    """Bilinear weights (kept as the public name the pipeline and tests know)."""


class ConservativeWeights(RegridWeights):
    """First-order area-weighted conservative weights."""


_CLASSES: dict[str, type[RegridWeights]] = {"bilinear": BilinearWeights, "conservative": ConservativeWeights}


# ------------------------------------------------------------------------------- keys, cache
def weights_key(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid, method: str) -> str:
    """sha256 of everything the weights depend on: method, code version, source and target
    coordinates (the weights do not depend on the land mask: that is applied per field)."""
    h = hashlib.sha256(f"sstbc-regrid-v{WEIGHTS_VERSION}|{method}|{grid.step!r}|".encode())
    for arr in (src_lat, src_lon, grid.lat, grid.lon):
        a = np.ascontiguousarray(arr, dtype=np.float64)
        h.update(f"{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def build_weights(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid, method: str = "bilinear") -> RegridWeights:
    """Build (never load) the weights from a rectilinear source grid to ``grid``."""
    if method not in METHODS:
        raise InputValidationError(f"regrid: method must be one of {METHODS}, got {method!r}")
    src_lat = _coord(src_lat, "source latitude")
    src_lon = _coord(src_lon, "source longitude")
    if np.abs(src_lat).max() > 90.0 + 1e-9:
        raise InputValidationError(f"regrid: source latitudes must lie in [-90, 90], got {src_lat.min()}..{src_lat.max()}")
    if method == "bilinear":
        wlat = bilinear_axis(src_lat, grid.lat, lon=False)
        wlon = bilinear_axis(src_lon, grid.lon, lon=True)
    else:
        wlat = conservative_axis(src_lat, grid.lat, grid.step, lon=False)
        wlon = conservative_axis(src_lon, grid.lon, grid.step, lon=True)
    key = weights_key(src_lat, src_lon, grid, method)
    return _CLASSES[method](wlat, wlon, method, key)


def _csr_digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _cache_path(cache_dir: Path, method: str, key: str) -> Path:
    return Path(cache_dir) / f"regrid-{method}-{key[:32]}.npz"


def save_weights(w: RegridWeights, cache_dir: Path) -> Path:
    """Write ``w`` atomically (temp file + rename) as .npz; returns the path."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts: dict[str, np.ndarray] = {}
    for name, m in (("lat", w.lat), ("lon", w.lon)):
        parts[f"{name}_indptr"] = m.indptr.astype(np.int64)
        parts[f"{name}_indices"] = m.indices.astype(np.int64)
        parts[f"{name}_data"] = m.data.astype(np.float64)
        parts[f"{name}_shape"] = np.asarray(m.shape, np.int64)
    digest = _csr_digest([parts[k] for k in sorted(parts)])
    path = _cache_path(cache_dir, w.method, w.key)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.asarray(w.key), method=np.asarray(w.method), digest=np.asarray(digest),
                     version=np.asarray(WEIGHTS_VERSION), **parts)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(path: Path, key: str, method: str, src_shape: tuple[int, int],
                 dst_shape: tuple[int, int]) -> RegridWeights | None:
    """The cached weights at ``path`` if they are exactly the expected ones, else None.

    Checks the key, method, version, a sha256 of the stored arrays, shapes and index bounds, so
    a truncated, corrupt or foreign file is rebuilt rather than trusted."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or str(z["method"]) != method or int(z["version"]) != WEIGHTS_VERSION:
                return None
            parts = {k: z[k] for k in z.files if k.startswith(("lat_", "lon_"))}
            stored_digest = str(z["digest"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        LOG.warning("regrid weights cache %s unreadable (%s); rebuilding", path, exc)
        return None
    if len(parts) != 8 or _csr_digest([parts[k] for k in sorted(parts)]) != stored_digest:
        LOG.warning("regrid weights cache %s fails its checksum; rebuilding", path)
        return None
    mats = {}
    for name, (n_dst, n_src) in (("lat", (dst_shape[0], src_shape[0])), ("lon", (dst_shape[1], src_shape[1]))):
        shape = tuple(int(x) for x in parts[f"{name}_shape"])
        indptr, indices, data = parts[f"{name}_indptr"], parts[f"{name}_indices"], parts[f"{name}_data"]
        if (shape != (n_dst, n_src) or indptr.size != n_dst + 1 or indptr[0] != 0 or indptr[-1] != indices.size
                or indices.size != data.size or np.any(np.diff(indptr) < 0)
                or (indices.size and (indices.min() < 0 or indices.max() >= n_src))
                or not np.all(np.isfinite(data)) or np.any(data < 0)):
            LOG.warning("regrid weights cache %s does not match the grids; rebuilding", path)
            return None
        mats[name] = sp.csr_matrix((data, indices, indptr), shape=shape)
    return _CLASSES[method](mats["lat"], mats["lon"], method, key)


_MEMORY: OrderedDict[str, RegridWeights] = OrderedDict()


def get_weights(src_lat: np.ndarray, src_lon: np.ndarray, grid: RegularGrid, method: str = "bilinear",
                cache_dir: Path | None = None) -> RegridWeights:
    """Weights for (source grid, ``grid``, ``method``): from the in-process cache, else the
    ``cache_dir`` .npz (verified), else built and written there. ``cache_dir=None`` keeps them
    in memory only."""
    if method not in METHODS:
        raise InputValidationError(f"regrid: method must be one of {METHODS}, got {method!r}")
    src_lat = _coord(src_lat, "source latitude")
    src_lon = _coord(src_lon, "source longitude")
    key = weights_key(src_lat, src_lon, grid, method)
    with _LOCK:
        hit = _MEMORY.get(key)
        if hit is not None:
            _MEMORY.move_to_end(key)
            return hit
    w: RegridWeights | None = None
    if cache_dir is not None:
        path = _cache_path(Path(cache_dir), method, key)
        if path.exists():
            w = load_weights(path, key, method, (src_lat.size, src_lon.size), grid.shape)
    if w is None:
        w = build_weights(src_lat, src_lon, grid, method)
        if cache_dir is not None:
            save_weights(w, Path(cache_dir))
    with _LOCK:
        _MEMORY[key] = w
        while len(_MEMORY) > _MEMORY_CACHE_SIZE:
            _MEMORY.popitem(last=False)
    return w


def clear_memory_cache() -> None:
    """Forget the in-process weights (tests use it to exercise the disk cache)."""
    with _LOCK:
        _MEMORY.clear()
