"""Live recalibration of the product's intervals from its own verification.

Why: a package's intervals are split-conformal on its calibration block (``correction.uncertainty``), a
few weeks before it was exported. When the errors of the live season differ from that block's (a model
trained on three months, a seasonal change), its 68 % interval covers 50-60 % of the cells and nothing
in the product says so. Verification measures it every day; this module feeds that measurement back.

The recipe (conformal recalibration on a rolling window, the same idea as the package's own calibration
but on the latest verified days):

1. Verification stores per (run, lead) a histogram of the *normalised* scores ``z = |sst - OISST| /
   sigma_base`` over the ocean cells, where ``sigma_base`` is the package's own 68 % half-width (the
   product's ``sst_uncertainty`` divided by the live scale it was issued with, its
   ``uncertainty_live_scale`` attribute): the scores never depend on an earlier recalibration.
2. For a new run, per lead, over the guard's evidence window (the last ``window_days`` verified runs of this
   model version and regime, on leads where the product carried the model), once ``min_days`` runs exist:

   * P, the quantile: the pooled 68 % and 95 % quantiles ``q68``, ``q95`` of the histograms of the latest
     ``min_days`` runs (the latest evidence: a model drifting away from its training period makes older
     days too optimistic);
   * I, the integral: ``I_q = sum(q - coverage)`` over the window's runs that were themselves issued with
     live intervals (their coverage as issued, from the score table): what the quantile still missed, the
     lag of lead k's evidence (k + 1 days old at best) included;
   * the lead's 68 % half-width is ``q68 exp(gain I_68)`` times the package's (``scale_68``) and its 95 %
     half-width ``q95 exp(gain I_95)`` times it (``factor_95`` = their ratio).

   This is quantile tracking with an integrator, the P and I of "conformal PID control" (Angelopoulos,
   Candes and Tibshirani 2023) with delayed feedback; ``gain`` 0 keeps the quantile only. A well-calibrated
   package has ``q68`` near 1 and I near 0.

Histograms rather than raw scores keep a row small (a few hundred counts) and pool exactly across days;
the bins are 5 % wide in log space (z from 0.05 to 20; a row holds about a kilobyte), and quantiles
interpolate within a bin. The scale is bounded (``SCALE_BOUNDS``) so that a broken verification day cannot publish absurd intervals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bias_correction.correction.uncertainty import NOMINAL

#: Log-spaced bin edges of the normalised score |error| / sigma_base (below and above: two open bins).
EDGES = np.geomspace(0.05, 20.0, 124)  # 5 % wide
#: Bounds of the live scale of the 68 % half-width (relative to the package's own).
SCALE_BOUNDS = (0.25, 4.0)


def z_histogram(abs_error: np.ndarray, sigma_base: np.ndarray) -> str | None:
    """Sparse JSON histogram {bin: count} of ``abs_error / sigma_base`` over cells finite in both (sigma > 0).

    Bin 0 holds z < EDGES[0], bin i (1..len(EDGES)-1) holds EDGES[i-1] <= z < EDGES[i], the last bin z >= EDGES[-1]."""
    e, s = np.asarray(abs_error, np.float64).ravel(), np.asarray(sigma_base, np.float64).ravel()
    ok = np.isfinite(e) & np.isfinite(s) & (s > 0)
    if not ok.any():
        return None
    idx = np.searchsorted(EDGES, e[ok] / s[ok], side="right")
    bins, counts = np.unique(idx, return_counts=True)
    return json.dumps({str(int(b)): int(c) for b, c in zip(bins, counts)}, separators=(",", ":"))


def pooled_counts(histograms: Sequence[str]) -> np.ndarray:
    """Counts per bin of several histograms added together."""
    total = np.zeros(len(EDGES) + 1, np.int64)
    for h in histograms:
        for b, c in json.loads(h).items():
            total[int(b)] += int(c)
    return total


def quantile(counts: np.ndarray, q: float) -> float:
    """The ``q`` quantile of pooled counts, log-linear within its bin (open bins: their finite edge)."""
    n = int(counts.sum())
    if n == 0:
        return float("nan")
    cum = np.cumsum(counts)
    target = q * n
    b = int(np.searchsorted(cum, target, side="left"))
    if b == 0:
        return float(EDGES[0])
    if b >= len(EDGES):
        return float(EDGES[-1])
    below = cum[b - 1]
    frac = (target - below) / max(counts[b], 1)
    lo, hi = np.log(EDGES[b - 1]), np.log(EDGES[b])
    return float(np.exp(lo + frac * (hi - lo)))


def live_scales(rows: Sequence[Any], leads: Sequence[int], *, min_days: int,
                gain: float = 0.5) -> dict[int, dict[str, Any]]:
    """Per lead with at least ``min_days`` usable runs: {scale_68, factor_95, q68, q95, integral_68,
    integral_95, days, cells} (see the module doc).

    ``rows``: score-table rows of the evidence window (one model version and regime); usable are those with a
    ``z_hist`` whose product carried the model at that lead."""
    out: dict[int, dict[str, Any]] = {}
    for k in leads:
        sel = [r for r in rows if int(r.lead) == int(k) and getattr(r, "z_hist", None)
               and r.carried in (None, "model")]
        days = sorted({r.run[:10] for r in sel})
        if len(days) < int(min_days):
            continue
        recent = set(days[-int(min_days):])
        counts = pooled_counts([r.z_hist for r in sel if r.run[:10] in recent])
        q68, q95 = quantile(counts, NOMINAL[0]), quantile(counts, NOMINAL[1])
        if not (np.isfinite(q68) and q68 > 0):
            continue
        issued = [r for r in sel if getattr(r, "live_scale", None) is not None
                  and r.coverage_68 is not None and r.coverage_95 is not None]
        i68 = float(sum(NOMINAL[0] - r.coverage_68 for r in issued))
        i95 = float(sum(NOMINAL[1] - r.coverage_95 for r in issued))
        s68 = float(np.clip(q68 * np.exp(gain * i68), *SCALE_BOUNDS))
        s95 = float(np.clip(q95 * np.exp(gain * i95), SCALE_BOUNDS[0], SCALE_BOUNDS[1] * 4))
        out[int(k)] = {"scale_68": round(s68, 4), "factor_95": round(max(s95, s68) / s68, 4),
                       "q68": round(q68, 4), "q95": round(q95, 4), "integral_68": round(i68, 4),
                       "integral_95": round(i95, 4), "days": len(days), "recent_days": len(recent),
                       "cells": int(counts.sum())}
    return out
