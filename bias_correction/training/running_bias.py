"""Operational baseline: a decaying-average (Kalman-type) running bias per lead and pixel.

NCEP's GEFS/NAEFS bias correction (Cui et al. 2012; anchors.md 13): for each lead k and grid point,
``b <- (1 - w) * b + w * (forecast - verifying analysis)`` once a day as the analysis arrives, and the
corrected forecast is ``forecast - b``. No training period; it adapts to regime changes.

Only what is known at run time is used: the bias applied to run day R has absorbed exactly the
verifications of valid days v <= R - ``lag_days`` (the latest analysis at forecast time), i.e. the
forecasts of runs v - k. The verifying analysis is whatever version the caller passes; operations
have the preliminary one for the recent days, so the hindcast passes the preliminary analyses.

The same filter corrects any forecast array: raw HYCOM, or persistence of the latest analysis
(the "running bias on top of persistence" baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bias_correction.errors import ConfigError

_DAY = np.timedelta64(1, "D")


def running_bias_correct(forecast: np.ndarray, run_days: np.ndarray, leads: Sequence[int],
                         analysis: np.ndarray, analysis_days: np.ndarray, *, weight: float = 0.05,
                         lag_days: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(corrected, bias): forecast [run, lead, H, W] degC minus the running bias known at each run day.

    ``run_days`` [run] datetime64[D] strictly increasing, one run per day (a missing run is simply
    absent: its verifications are skipped); ``analysis`` [day, H, W] degC of ``analysis_days``.
    The bias of a pixel/lead starts from its first available difference (cold start), then decays
    with ``weight``; until then the forecast goes out uncorrected. A day without a finite analysis (or a missing run) leaves the bias unchanged.
    Returns the corrected forecasts and the bias each run used (NaN before the first verification).
    """
    if not 0 < weight <= 1:
        raise ConfigError(f"running-bias weight must be in (0, 1], got {weight}")
    if lag_days < 1:
        raise ConfigError(f"lag_days must be >= 1 (the analysis of the run day is not known yet), got {lag_days}")
    fc = np.asarray(forecast, dtype=np.float64)
    runs = np.asarray(run_days).astype("datetime64[D]")
    leads = [int(k) for k in leads]
    if fc.ndim != 4 or fc.shape[0] != len(runs) or fc.shape[1] != len(leads):
        raise ConfigError(f"forecast must be [run={len(runs)}, lead={len(leads)}, H, W], got {list(fc.shape)}")
    if len(runs) > 1 and not (np.diff(runs) > np.timedelta64(0, "D")).all():
        raise ConfigError("run_days must be strictly increasing")
    an = np.asarray(analysis, dtype=np.float64)
    an_index = {d: i for i, d in enumerate(np.asarray(analysis_days).astype("datetime64[D]").tolist())}
    run_index = {d: i for i, d in enumerate(runs.tolist())}
    bias = np.full(fc.shape[1:], np.nan)  # [lead, H, W]
    used = np.full(fc.shape, np.nan)
    lag = int(lag_days)
    if len(runs) == 0:
        return fc.copy(), used
    # Verifications are absorbed day by day, in valid-day order, up to R - lag before run R is corrected.
    next_valid = runs[0] + min(leads) * _DAY  # nothing earlier can verify a run of the set
    for r_i, r_day in enumerate(runs):
        last_known = r_day - lag * _DAY
        while next_valid <= last_known:
            a_i = an_index.get(next_valid.tolist())
            if a_i is not None and np.isfinite(an[a_i]).any():
                for l_i, k in enumerate(leads):
                    src = run_index.get((next_valid - k * _DAY).tolist())
                    if src is None:
                        continue
                    d = fc[src, l_i] - an[a_i]
                    b = bias[l_i]
                    bias[l_i] = np.where(np.isfinite(b), (1.0 - weight) * b + weight * d, d)
            next_valid = next_valid + _DAY
        used[r_i] = bias
    corrected = np.where(np.isfinite(used), fc - used, fc)  # uncorrected until the first verification
    return corrected, used


def persistence_forecast(run_days: np.ndarray, leads: Sequence[int], analysis: np.ndarray,
                         analysis_days: np.ndarray, lag_days: int = 1) -> np.ndarray:
    """[run, lead, H, W] degC: the analysis of run day - ``lag_days`` for every lead (NaN when missing)."""
    runs = np.asarray(run_days).astype("datetime64[D]")
    an = np.asarray(analysis, dtype=np.float64)
    idx = {d: i for i, d in enumerate(np.asarray(analysis_days).astype("datetime64[D]").tolist())}
    out = np.full((len(runs), len(leads), *an.shape[1:]), np.nan)
    for r_i, r in enumerate(runs):
        a_i = idx.get((r - int(lag_days) * _DAY).tolist())
        if a_i is not None:
            out[r_i] = an[a_i]
    return out
