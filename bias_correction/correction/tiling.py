"""Overlapping tiles for domains larger than a model's training tile, blended without seams.

Attention models (ConvGRU-SA) are tied to the tile they were trained on: the attention output at a
point depends on the whole tile. A larger domain is therefore cut into overlapping tiles of exactly
the training size; each tile is corrected and the results are blended with weights that

* are exactly 0 within ``margin`` cells of a tile edge that lies *inside* the domain (the cells a
  convolution's zero padding can reach), then ramp up linearly over ``ramp`` cells to 1;
* are 1 up to a tile edge that is also a domain edge (there is no neighbour to blend with there);
* are normalised so the weights of the tiles covering any cell sum to exactly 1.

For a purely convolutional model whose receptive-field half-width is <= ``margin``, the blended
result equals the untiled result (every output cell comes only from tiles in which it is at least
``margin`` cells away from a cut). For attention models the blend is continuous (no seams): weights
go to zero smoothly at every cut.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bias_correction.errors import ModelContractError

#: Default cells at a cut that get zero weight, and ramp length after them.
DEFAULT_MARGIN = 6
DEFAULT_RAMP = 6


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``0..n`` with at least ``overlap`` overlap."""
    if tile > n:
        raise ModelContractError(f"domain size {n} is smaller than the model tile {tile}")
    if tile == n:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ModelContractError(f"tile overlap {overlap} leaves no stride in a tile of {tile} cells; "
                                 "reduce the margin/ramp")
    starts = list(range(0, n - tile, stride))
    starts.append(n - tile)
    return sorted(set(starts))


def ramp_weights(tile: int, at_start_edge: bool, at_end_edge: bool, margin: int, ramp: int) -> np.ndarray:
    """1-D weights of one tile: 0 in the margin at interior cuts, linear ramp, 1 in the interior."""
    w = np.ones(tile, np.float64)
    up = np.concatenate([np.zeros(margin), (np.arange(ramp) + 1.0) / (ramp + 1.0)])
    if not at_start_edge:
        w[: margin + ramp] = np.minimum(w[: margin + ramp], up)
    if not at_end_edge:
        w[tile - margin - ramp:] = np.minimum(w[tile - margin - ramp:], up[::-1])
    return w


def plan(shape: tuple[int, int], tile: tuple[int, int], margin: int = DEFAULT_MARGIN,
         ramp: int = DEFAULT_RAMP) -> list[tuple[slice, slice, np.ndarray]]:
    """(row slice, column slice, 2-D weight) of every tile; weights normalised to sum 1 per cell."""
    (ny, nx), (ty, tx) = shape, tile
    overlap = 2 * margin + ramp
    ys, xs = tile_starts(ny, ty, overlap), tile_starts(nx, tx, overlap)
    raw = []
    total = np.zeros(shape, np.float64)
    for y0 in ys:
        wy = ramp_weights(ty, y0 == 0, y0 + ty == ny, margin, ramp)
        for x0 in xs:
            wx = ramp_weights(tx, x0 == 0, x0 + tx == nx, margin, ramp)
            w = np.outer(wy, wx)
            sl = (slice(y0, y0 + ty), slice(x0, x0 + tx))
            total[sl] += w
            raw.append((sl, w))
    if not (total > 0).all():
        raise ModelContractError(f"tiling {shape} with tile {tile}, margin {margin}, ramp {ramp} leaves cells "
                                 "without weight")
    return [(sy, sx, w / total[sy, sx]) for (sy, sx), w in raw]


def auto_blend(tile: tuple[int, int], halo: int = 0) -> tuple[int, int]:
    """(margin, ramp) used for a tile when none is given: 50x50 tiles blend over 6 + 6 cells (stride 32).

    ``halo``: the package's ``halo_cells`` (how far a tile's zero padding reaches into its output): the
    zero-weight margin at a cut is at least that, so a cut between tiles is as clean as the domain's halo
    (``grid.halo``); the ramp shrinks first when a tile is too small for both (stride >= 1)."""
    auto = max(1, min(DEFAULT_MARGIN, min(tile) // 8))
    margin = max(auto, int(halo))
    room = min(tile) - 1 - 2 * margin  # the overlap 2 * margin + ramp must leave a stride of at least one cell
    if room < 1:
        margin = max(auto, (min(tile) - 2) // 2)
        room = min(tile) - 1 - 2 * margin
    return margin, max(1, min(auto, room))


def run_tiled(fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray], sst: np.ndarray,
              lead: np.ndarray, tile: tuple[int, int], *, aux: np.ndarray | None = None,
              margin: int = DEFAULT_MARGIN, ramp: int = DEFAULT_RAMP, max_batch: int = 64) -> np.ndarray:
    """Blend ``fn`` ([B,T,ty,tx], [B], aux [B,T,A,ty,tx] or None -> [B,ty,tx]) over overlapping tiles
    of ``sst`` [B,T,H,W] (and of ``aux`` [B,T,A,H,W], cut at the same places).

    Tiles of all leads are batched together (``max_batch`` samples per call). Cells that are land
    (NaN in any step) stay NaN; the others are the weighted mean of the tiles covering them.
    """
    b, _, h, w = sst.shape
    tiles = plan((h, w), tile, margin, ramp)
    acc = np.zeros((b, h, w), np.float64)
    jobs = [(i, k) for i in range(len(tiles)) for k in range(b)]
    for j0 in range(0, len(jobs), max_batch):
        chunk = jobs[j0: j0 + max_batch]
        xb = np.stack([sst[k, :, tiles[i][0], tiles[i][1]] for i, k in chunk])
        ab = None if aux is None else np.ascontiguousarray(
            np.stack([aux[k, :, :, tiles[i][0], tiles[i][1]] for i, k in chunk]))
        out = fn(np.ascontiguousarray(xb), np.ascontiguousarray(lead[[k for _, k in chunk]]), ab)
        for (i, k), o in zip(chunk, out, strict=True):
            sy, sx, wt = tiles[i]
            acc[k, sy, sx] += np.where(np.isfinite(o), o, 0.0) * wt
    land = ~np.isfinite(sst).all(axis=1)
    return np.where(land, np.nan, acc).astype(np.float32)
