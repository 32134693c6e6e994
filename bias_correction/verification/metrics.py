"""Scores over ocean cells, in °C (models.md 2.6): MSE, RMSE, MAE, MAPE, bias."""

from __future__ import annotations

import numpy as np


def scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Scores of ``pred`` against ``truth`` where both are finite (and ``mask`` is True)."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(pred) & np.isfinite(truth)
    if mask is not None:
        ok &= np.broadcast_to(np.asarray(mask, dtype=bool), ok.shape)
    n = int(ok.sum())
    if n == 0:
        raise ValueError("scores: no cell where prediction and truth are both finite")
    err = pred[ok] - truth[ok]
    mse = float(np.mean(err**2))
    return {
        "n": n,
        "bias": float(np.mean(err)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(100.0 * np.mean(np.abs(err / truth[ok]))),
    }


def improvement_percent(rmse_raw: float, rmse_model: float) -> float:
    """(RMSE_raw - RMSE_model) / RMSE_raw in percent, as in the ConvGRU-SA paper's Table 1."""
    return 100.0 * (rmse_raw - rmse_model) / rmse_raw
