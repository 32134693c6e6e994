"""Streaming tiled correction: peak memory set by a band of tiles, not by the domain.

The in-memory path (``PackageCorrector.correct``) stacks every input of a run for the whole domain
(7 leads x T runs x H x W, times the auxiliary inputs) and blends tiles over it: a 1000x1000 run held
9-17 GiB. Here the inputs stay in their archive files (opened lazily, read one *row band* at a time:
the rows of one row of tiles, all columns), each band's tiles go through the model in batches, and
the blended rows are written to a scratch NetCDF as soon as no later band can touch them. The
product is then assembled lazily (dask, one lead map per chunk) by ``io.product.build_product`` and
written chunk by chunk, so no step holds more than a band of inputs or one lead map.

Blend weights are :func:`bias_correction.correction.tiling.plan`'s: its weights are separable (each
tile's is an outer product of a row and a column ramp, and so is their sum), so the normalised weight
of tile (i, j) is ``plan`` of a one-tile-wide strip along the rows times ``plan`` of a one-tile-high
strip along the columns; :func:`band_plan` computes them from those strips (O(H + W), not O(H x W)),
and the result equals :func:`~bias_correction.correction.tiling.run_tiled` (tested).

Models trained on the whole grid but purely convolutional (dynamic H/W) stream on
:data:`CONV_TILE` tiles with a :data:`CONV_MARGIN`-cell margin wider than their receptive field;
domain-dependent (attention) models stream on their training tile, exactly as ``correct`` tiles them.
A domain-dependent model trained on the whole grid cannot be cut: :func:`stream_tile` says None.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from bias_correction.correction import tiling
from bias_correction.errors import ArchiveIntegrityError, InputValidationError, ModelContractError
from bias_correction.io.archive import verify_content
from bias_correction.io.netcdf import NETCDF_LOCK

#: Tile of a purely convolutional whole-grid model when streamed, and its blend margin/ramp (cells).
CONV_TILE = 256
CONV_MARGIN, CONV_RAMP = 16, 8


@dataclass(frozen=True)
class BandPlan:
    """Row-band tiling of a domain: tile row starts with their 1-D row weights, column starts with theirs.

    The normalised 2-D weight of tile (i, j) is ``np.outer(wy[i], wx[j])`` (see the module doc)."""

    shape: tuple[int, int]
    tile: tuple[int, int]
    ys: tuple[int, ...]
    wy: tuple[np.ndarray, ...]
    xs: tuple[int, ...]
    wx: tuple[np.ndarray, ...]


def band_plan(shape: tuple[int, int], tile: tuple[int, int], margin: int, ramp: int) -> BandPlan:
    """The separable form of ``tiling.plan(shape, tile, margin, ramp)`` from two one-tile strips."""
    (ny, nx), (ty, tx) = shape, tile
    rows = tiling.plan((ny, tx), (ty, tx), margin, ramp)  # one tile column: weights vary along rows only
    cols = tiling.plan((ty, nx), (ty, tx), margin, ramp)  # one tile row: along columns only
    return BandPlan(shape, tile, tuple(int(sy.start) for sy, _, _ in rows), tuple(w[:, 0].copy() for _, _, w in rows),
                    tuple(int(sx.start) for _, sx, _ in cols), tuple(w[0, :].copy() for _, _, w in cols))


def stream_tile(manifest: Any, shape: tuple[int, int]) -> tuple[tuple[int, int], int, int] | None:
    """(tile, margin, ramp) a package streams with on ``shape``; None when it cannot be cut into tiles."""
    tile = tuple(manifest.tile_shape)
    if tile != tuple(shape):  # trained (or exported) on tiles: the runtime's own tiling
        margin, ramp = tiling.auto_blend(tile, getattr(manifest, "halo_cells", 0))  # type: ignore[arg-type]
        return tile, margin, ramp  # type: ignore[return-value]
    if manifest.domain_dependent or not manifest.dynamic_hw:
        return None
    t = (min(CONV_TILE, shape[0]), min(CONV_TILE, shape[1]))
    return t, max(CONV_MARGIN, int(getattr(manifest, "halo_cells", 0) or 0)), CONV_RAMP


#: Bytes per read when a lazily opened file is digested: whole leads of a run, bands of rows of a 2-D field.
DIGEST_SLAB_BYTES = 4 << 20


def streamed_content_sha256(ds: xr.Dataset, slab: int | None = None) -> str:
    """``io.archive.content_sha256`` of a lazily opened file, read ``slab`` entries of the first axis at a
    time (None: as many as fit in :data:`DIGEST_SLAB_BYTES`, at least one): the same bytes in the same
    order (C order), so the same digest, without loading the file."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        n = var.shape[0] if var.ndim else 0
        step = slab or max(1, DIGEST_SLAB_BYTES // max(1, var.dtype.itemsize * int(np.prod(var.shape[1:]))))
        parts: Iterator[np.ndarray] = (np.ascontiguousarray(var[i:i + step].values) for i in range(0, n, step)) \
            if n else iter([np.ascontiguousarray(var.values)])
        first = True
        for v in parts:
            if v.dtype.kind == "f":
                v = np.where(np.isnan(v), np.array(np.nan, v.dtype), v)
            if first:
                h.update(f"{name}|{v.dtype.str}|{var.shape}|".encode())
                first = False
            h.update(v.tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def open_lazy(store: Any, key: str, check: Callable[[xr.Dataset], None]) -> Iterator[xr.Dataset]:
    """An archive file opened lazily (data read on demand); ``check`` runs on it, under the netCDF lock,
    before it is handed out, and the file is closed if it raises."""
    with store.local_path(key) as path:
        with NETCDF_LOCK:
            try:
                ds = xr.open_dataset(path, engine="netcdf4")
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ArchiveIntegrityError(f"archive file {key} does not open ({type(exc).__name__})") from None
            try:
                check(ds)
            except BaseException:
                ds.close()
                raise
        try:
            yield ds
        finally:
            with NETCDF_LOCK:
                ds.close()


def open_verified_lazy(store: Any, key: str) -> contextlib.AbstractContextManager[xr.Dataset]:
    """An archive file opened lazily, its content checksum verified by slabs."""
    return open_lazy(store, key, lambda ds: verify_content(ds, key, streamed_content_sha256))


def field_of(ds: xr.Dataset) -> xr.DataArray:
    """The one field of an archive file (``sst`` when present), as ``io.archive.read_field`` picks it."""
    names = list(ds.data_vars)
    if "sst" in names:
        return ds["sst"]
    if len(names) == 1:
        return ds[names[0]]
    raise InputValidationError(f"archive file {ds.encoding.get('source', '?')}: no single field (has {names})")


@dataclass(frozen=True)
class RunFields:
    """The lazily opened inputs of one run: HYCOM SST of the T runs (lead, lat, lon) and per auxiliary
    input its T fields, ``per_lead`` (lead, lat, lon) or one (lat, lon) field per run."""

    hycom: Sequence[xr.DataArray]
    #: per auxiliary input: (its T fields, per_lead, derive: archived field -> input values, lead axis first)
    aux: Sequence[tuple[Sequence[xr.DataArray], bool, Callable[[np.ndarray], np.ndarray]]] = ()
    what: str = "run"

    def band(self, y0: int, y1: int, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(x [lead, T, rows, W], aux [lead, T, A, rows, W] or None) of rows y0..y1, NaN off the ocean.

        A NaN on the ocean is a hole in an input and an InputValidationError naming the absolute cell."""
        with NETCDF_LOCK:
            x = np.stack([np.asarray(f.isel(lat=slice(y0, y1)).values, np.float32) for f in self.hycom], axis=1)
            chans = []
            for fields, per_lead, derive in self.aux:
                vals = [derive(np.asarray(f.isel(lat=slice(y0, y1)).values, np.float32)) for f in fields]
                chans.append(np.stack(vals, axis=1) if per_lead
                             else np.broadcast_to(np.stack(vals)[None], (x.shape[0], *np.stack(vals).shape)))
        m = ocean[y0:y1]
        out = [_masked(x, m, y0, f"HYCOM runs of {self.what}")]
        out += [_masked(a, m, y0, f"auxiliary input {i} of {self.what}") for i, a in enumerate(chans)]
        aux = np.ascontiguousarray(np.stack(out[1:], axis=2)) if chans else None
        return out[0], aux


def _masked(field: np.ndarray, ocean: np.ndarray, row0: int, what: str) -> np.ndarray:
    holes = ocean & ~np.isfinite(field).all(axis=tuple(range(field.ndim - 2)))
    if holes.any():
        j, i = np.argwhere(holes)[0]
        raise InputValidationError(f"{what}: {int(holes.sum())} ocean cell(s) have no value "
                                   f"(first at row {row0 + int(j)}, col {int(i)})")
    return np.where(ocean, field, np.float32(np.nan)).astype(np.float32)


def stream_correct(corrector: Any, fields: RunFields, ocean: np.ndarray, lead_days: np.ndarray, out: Any,
                   *, max_batch: int = 64) -> dict[str, Any]:
    """Correct a run band by band and write the blended corrected SST (degC, NaN on land) rows into
    ``out[lead, rows, :]`` (a netCDF4 variable or any array supporting slice assignment).

    ``corrector``: a gridded package (``correct`` accepting ``allow_larger``/``tiles``); each batch of
    tiles goes through ``correct(..., tiles="never")``, so the package's input checks apply per tile.
    Returns what was done (tile, margin, ramp, bands, tiles, model calls)."""
    ny, nx = ocean.shape
    spec = stream_tile(corrector.manifest, (ny, nx))
    if spec is None:
        raise ModelContractError(f"model {corrector.manifest.model_id} {corrector.manifest.version} is domain-dependent "
                                 f"and trained on the whole grid: it cannot be streamed by tiles")
    tile, margin, ramp = spec
    bp = band_plan((ny, nx), tile, margin, ramp)
    ty, tx = tile
    lead = np.asarray(lead_days, np.float32)
    nlead = lead.shape[0]
    acc = np.zeros((nlead, ty, nx), np.float64)  # rows y0 .. y0+ty of the current band
    lo = bp.ys[0]
    calls = 0
    for b, (y0, wy) in enumerate(zip(bp.ys, bp.wy, strict=True)):
        if y0 != lo:  # shift the accumulator window to start at y0 (rows lo..y0 were flushed)
            keep = lo + ty - y0
            acc[:, :keep] = acc[:, y0 - lo:]
            acc[:, keep:] = 0.0
            lo = y0
        x, aux = fields.band(y0, y0 + ty, ocean)
        land = ~ocean[y0:y0 + ty]
        jobs = [(j, k) for j in range(len(bp.xs)) for k in range(nlead)]
        for j0 in range(0, len(jobs), max_batch):
            chunk = jobs[j0:j0 + max_batch]
            xb = np.ascontiguousarray(np.stack([x[k, :, :, bp.xs[j]:bp.xs[j] + tx] for j, k in chunk]))
            ab = None if aux is None else np.ascontiguousarray(
                np.stack([aux[k, :, :, :, bp.xs[j]:bp.xs[j] + tx] for j, k in chunk]))
            lb = np.ascontiguousarray(lead[[k for _, k in chunk]])
            if np.isnan(xb).all():  # all-land tiles: nothing to run (their output is NaN anyway)
                res = np.full((len(chunk), ty, tx), np.nan, np.float32)
            else:
                res = corrector.correct(xb, lb, ab, allow_larger=True, tiles="never")
                calls += 1
            for (j, k), o in zip(chunk, res, strict=True):
                x0 = bp.xs[j]
                acc[k, :, x0:x0 + tx] += np.where(np.isfinite(o), o, 0.0) * np.outer(wy, bp.wx[j])
        last = b == len(bp.ys) - 1
        upto = ny if last else bp.ys[b + 1]  # rows no later band touches
        rows = slice(y0, upto)
        done = np.where(land[None, : upto - y0], np.nan, acc[:, : upto - y0]).astype(np.float32)
        with NETCDF_LOCK:
            out[:, rows, :] = done
    return {"tile": list(tile), "margin": margin, "ramp": ramp, "bands": len(bp.ys),
            "tiles": len(bp.ys) * len(bp.xs), "model_calls": calls}


@contextlib.contextmanager
def scratch_field(shape: tuple[int, int, int], rows: int, directory: str | Path | None = None
                  ) -> Iterator[tuple[Path, Any]]:
    """A scratch NetCDF holding (lead, lat, lon) float32 ``sst`` written by row bands (HDF5 chunks of
    ``rows`` x W per lead: band writes touch whole chunks). Written through the library, never memory-mapped,
    so it does not count in the process's resident memory. Removed afterwards."""
    tmpdir = Path(tempfile.mkdtemp(prefix="sstbc-stream-", dir=directory))
    path = tmpdir / "corrected.nc"
    nl, ny, nx = shape
    try:
        with NETCDF_LOCK:
            nc = netCDF4.Dataset(path, "w", format="NETCDF4")
            nc.createDimension("lead", nl)
            nc.createDimension("lat", ny)
            nc.createDimension("lon", nx)
            var = nc.createVariable("sst", "f4", ("lead", "lat", "lon"), chunksizes=(1, min(rows, ny), nx),
                                    fill_value=np.float32(np.nan))
        try:
            yield path, var
        finally:
            with NETCDF_LOCK:
                if nc.isopen():
                    nc.close()
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
