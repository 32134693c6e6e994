"""Scores of a forecast's uncertainty: coverage of its 68 % and 95 % intervals and the Gaussian CRPS.

``sst_uncertainty`` is the 68 % half-width (a one-sigma figure); the 95 % half-width is
``factor_95 * sst_uncertainty`` (the product's ``uncertainty_interval_95_factor``; 1.96 when not given).
The CRPS treats the forecast as N(pred, sst_uncertainty^2) and comes from xskillscore's closed form
(``crps_gaussian``, via properscoring): ``scores`` has no normal CRPS, and a threshold-integrated
``crps_cdf`` would be slower and approximate. Callers: ``verification.verify`` (daily score table) and
the hindcast report (``interval_scores(pred, sigma, obs, mask)`` on its test windows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

GAUSS_95 = 1.959964


def gaussian_crps(pred: np.ndarray, sigma: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Element-wise CRPS (K) of N(pred, sigma^2) against obs (1-D arrays of equal length)."""
    import xarray as xr
    import xskillscore as xs

    da = [xr.DataArray(np.asarray(a, np.float64), dims=("cell",)) for a in (obs, pred, sigma)]
    return np.asarray(xs.crps_gaussian(*da, dim=[]).values)


def interval_scores(pred: np.ndarray, sigma: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None, *,
                    factor_95: float | np.ndarray | None = None) -> dict[str, Any]:
    """Coverage of the 68 % (pred +- sigma) and 95 % (pred +- factor_95 sigma) intervals, mean Gaussian
    CRPS and mean sigma, over cells finite in all inputs (and ``mask``). Arrays broadcast together
    (e.g. [N, H, W] with a [H, W] mask); ``factor_95`` may be per leading index (e.g. per lead, [N])."""
    pred, sigma, obs = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (pred, sigma, obs)))
    ok = np.isfinite(pred) & np.isfinite(sigma) & np.isfinite(obs) & (sigma > 0)
    if mask is not None:
        ok &= np.broadcast_to(np.asarray(mask, bool), ok.shape)
    f = np.asarray(GAUSS_95 if factor_95 is None else factor_95, np.float64)
    if f.ndim == 1 and pred.ndim > 1:
        f = f.reshape(-1, *([1] * (pred.ndim - 1)))
    f = np.broadcast_to(f, pred.shape)
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "coverage_68": None, "coverage_95": None, "crps": None, "sigma_mean": None}
    e = np.abs(pred[ok] - obs[ok])
    s = sigma[ok]
    return {"n": n, "coverage_68": float(np.mean(e <= s)), "coverage_95": float(np.mean(e <= f[ok] * s)),
            "crps": float(np.mean(gaussian_crps(pred[ok], s, obs[ok]))), "sigma_mean": float(np.mean(s))}
