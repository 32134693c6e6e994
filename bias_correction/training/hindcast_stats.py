"""Hindcast statistics: RMSE per lead and window with paired moving-block bootstrap intervals.

The resampling unit is the valid day. Errors of consecutive days are correlated (a sample spans
T - 1 + lead + lag days of inputs and target), so days are resampled in circular moving blocks of
at least that span (``scores.processing.block_bootstrap``, Gilleland 2020). Every row is resampled
with the same indices (paired), so a difference of two rows' RMSE has an honest interval, and the
difference of identical inputs is exactly 0 in every iteration. Windows (seasons) are resampled
independently and pooled by summing squared errors (a stratified bootstrap): blocks never straddle
the months between windows.

Per-day Diebold-Mariano tests of the MSE difference (``scores.stats.statistical_tests``) come along
as a second opinion, per window and lead, with h = lead + lag.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bias_correction.errors import ConfigError

#: (sse [day, lead], n [day, lead]) of one row in one window; squared errors in degC^2.
DailyErrors = tuple[np.ndarray, np.ndarray]


def daily_errors(pred: np.ndarray, y: np.ndarray, valid: np.ndarray, lead: np.ndarray, days: np.ndarray,
                 leads: Sequence[int]) -> DailyErrors:
    """Sum of squared errors and cell count per (valid day, lead) over cells finite in both."""
    pos = {d: i for i, d in enumerate(np.asarray(days).astype("datetime64[D]").tolist())}
    lpos = {int(k): j for j, k in enumerate(leads)}
    sse = np.zeros((len(days), len(leads)))
    n = np.zeros((len(days), len(leads)))
    d = np.asarray(pred, np.float64) - np.asarray(y, np.float64)
    ok = np.isfinite(d)
    sq = np.where(ok, d * d, 0.0).reshape(len(d), -1).sum(axis=1)
    cnt = ok.reshape(len(d), -1).sum(axis=1)
    for i, (v, k) in enumerate(zip(np.asarray(valid).astype("datetime64[D]").tolist(), lead.tolist())):
        sse[pos[v], lpos[int(k)]] += sq[i]
        n[pos[v], lpos[int(k)]] += cnt[i]
    return sse, n


def _boot_window(errs: Mapping[str, DailyErrors], block: int, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrapped day sums: SSE and N [row, iteration, lead], every row with the same indices."""
    import xarray as xr
    from scores.processing import block_bootstrap

    names = list(errs)
    sse = np.stack([errs[r][0] for r in names])  # [row, day, lead]
    n = np.stack([errs[r][1] for r in names])
    days = sse.shape[1]
    if block > days:
        raise ConfigError(f"bootstrap block of {block} days is longer than the window ({days} valid days)")
    dims = ("row", "day", "lead")
    bs, bn = block_bootstrap([xr.DataArray(sse, dims=dims), xr.DataArray(n, dims=dims)],
                             blocks={"day": int(block)}, n_iteration=int(n_boot), circular=True,
                             exclude_dims=[["row", "lead"], ["row", "lead"]])
    return (bs.sum("day").transpose("row", "iteration", "lead").values,
            bn.sum("day").transpose("row", "iteration", "lead").values)


def paired_bootstrap(windows: Sequence[Mapping[str, DailyErrors]], *, block: int, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Bootstrap replicates of every row: ``sse``/``n`` [window, row, iteration, lead] plus the point sums.

    ``windows``: per window, row name -> :data:`DailyErrors`; every window must list the same rows.
    The global numpy RNG (which ``scores`` draws from) is seeded and restored afterwards.
    """
    if not windows:
        raise ConfigError("paired_bootstrap needs at least one window")
    rows = list(windows[0])
    if any(list(w) != rows for w in windows):
        raise ConfigError("every window must carry the same rows, in the same order")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        reps = [_boot_window(w, block, n_boot) for w in windows]
    finally:
        np.random.set_state(state)
    return {"rows": rows, "sse": np.stack([r[0] for r in reps]), "n": np.stack([r[1] for r in reps]),
            "sse0": np.stack([np.stack([w[r][0].sum(0) for r in rows]) for w in windows]),  # [window, row, lead]
            "n0": np.stack([np.stack([w[r][1].sum(0) for r in rows]) for w in windows]),
            "block": int(block), "n_boot": int(n_boot), "seed": int(seed)}


def _rmse(sse: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(sse / n)


def _select(boot: dict[str, Any], windows: Sequence[int] | None, leads: Sequence[int] | None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sums over the chosen windows and lead columns: (sse [row, it], n, sse0 [row], n0)."""
    w = list(range(boot["sse"].shape[0])) if windows is None else list(windows)
    ll = slice(None) if leads is None else list(leads)
    s = boot["sse"][w][..., ll].sum(axis=(0, 3))
    n = boot["n"][w][..., ll].sum(axis=(0, 3))
    s0 = boot["sse0"][w][..., ll].sum(axis=(0, 2))
    n0 = boot["n0"][w][..., ll].sum(axis=(0, 2))
    return s, n, s0, n0


def summarise(boot: dict[str, Any], refs: Sequence[str], *, windows: Sequence[int] | None = None,
              leads: Sequence[int] | None = None, level: float = 0.95) -> dict[str, Any]:
    """Per row: RMSE and its interval, and RMSE(row) - RMSE(ref) with its interval for each ref present.

    ``windows``/``leads`` select window indices and lead columns (None = all, pooled).
    """
    s, n, s0, n0 = _select(boot, windows, leads)
    rm, rm0 = _rmse(s, n), _rmse(s0, n0)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    rows = boot["rows"]
    out: dict[str, Any] = {}
    for i, r in enumerate(rows):
        lo, hi = np.nanpercentile(rm[i], q)
        entry: dict[str, Any] = {"rmse": float(rm0[i]), "ci": [float(lo), float(hi)], "n_cells": int(n0[i]),
                                 "diff": {}}
        for ref in refs:
            if ref not in rows:
                continue
            j = rows.index(ref)
            d = rm[i] - rm[j]
            dlo, dhi = np.nanpercentile(d, q)
            entry["diff"][ref] = {"rmse_diff": float(rm0[i] - rm0[j]), "ci": [float(dlo), float(dhi)],
                                  "p_not_better": float(np.mean(d >= 0))}
        out[r] = entry
    return out


def diebold_mariano(errs_a: DailyErrors, errs_b: DailyErrors, leads: Sequence[int], lag_days: int) -> dict[str, Any]:
    """DM test per lead of the daily MSE difference a - b (negative mean = a better), scores' HG method."""
    import xarray as xr
    from scores.stats.statistical_tests import diebold_mariano as dm

    with np.errstate(invalid="ignore", divide="ignore"):
        diff = errs_a[0] / errs_a[1] - errs_b[0] / errs_b[1]  # [day, lead]
    if not np.isfinite(diff).any() or np.nanmax(np.abs(diff)) == 0:
        return {str(int(k)): {"mean": 0.0, "dm_stat": None, "p_gt_0": None} for k in leads}
    da = xr.DataArray(diff.T, dims=("lead", "day"), coords={"lead": list(leads),
                                                           "h": ("lead", [int(k) + lag_days for k in leads])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dm(da, "lead", "h", method="HG", statistic_distribution="t")  # ts_dim: which series
    return {str(int(k)): {"mean": float(res["mean"].values[j]), "dm_stat": float(res["dm_test_stat"].values[j]),
                          "p_gt_0": float(res["confidence_gt_0"].values[j])} for j, k in enumerate(leads)}
