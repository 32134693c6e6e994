"""What a verified product says about itself, checked against what its verification measures.

Why: a product's ``quality_flag`` and ``sst_uncertainty`` are only useful when they agree with the
measured error (issue 12). Two checks complement the per-lead scores of ``verification.verify``:

- :func:`flag_shares`: the share of ocean cells that carry each ``quality_flag`` bit (a flag set on
  most cells tells nothing; ``large_correction`` should mark a few per cent on normal days);
- :func:`edge_interior_rmse`: the RMSE of the outer ``ring`` rows and columns against the interior's
  (the zero padding of a convolutional model shows as an edge band; the halo removes it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EDGE_RING = 4  # the outer 4 rows and columns: issue 12's edge band


def flag_shares(quality_flag: np.ndarray, mask: np.ndarray, masks: tuple[int, ...], meanings: str) -> dict[str, float]:
    """{meaning: share of ocean cells (all leads) with that bit set}; ``land`` counted over all cells."""
    qf = np.asarray(quality_flag).astype(np.int64)
    ocean = np.broadcast_to(np.asarray(mask, bool), qf.shape)
    names = meanings.split()
    if len(names) != len(masks):
        raise ValueError(f"quality_flag: {len(masks)} flag_masks but {len(names)} flag_meanings")
    out = {}
    for bit, name in zip(masks, names, strict=True):
        cells = qf.size if name == "land" else int(ocean.sum())
        hits = (qf & bit) != 0
        out[name] = float(hits.sum() / cells) if name == "land" else float(hits[ocean].sum() / max(cells, 1))
    return out


def edge_interior_rmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, ring: int = EDGE_RING) -> dict[str, Any]:
    """RMSE (°C) over the outer ``ring`` rows/columns and over the rest, and their ratio ([lead, H, W] fields)."""
    d2 = (np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2
    h, w = d2.shape[-2:]
    if h <= 2 * ring or w <= 2 * ring:
        raise ValueError(f"edge band of {ring} cells needs a grid larger than {2 * ring}x{2 * ring}, got {h}x{w}")
    edge = np.zeros((h, w), bool)
    edge[:ring], edge[-ring:], edge[:, :ring], edge[:, -ring:] = True, True, True, True
    ok = np.isfinite(d2) & np.broadcast_to(np.asarray(mask, bool), d2.shape)
    e, i = ok & edge, ok & ~edge
    if not e.any() or not i.any():
        return {"ring": ring, "rmse_edge": None, "rmse_interior": None, "ratio": None}
    re, ri = float(np.sqrt(d2[e].mean())), float(np.sqrt(d2[i].mean()))
    return {"ring": ring, "rmse_edge": re, "rmse_interior": ri, "ratio": re / ri if ri > 0 else None,
            "cells_edge": int(e.sum()), "cells_interior": int(i.sum())}
