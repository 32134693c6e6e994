"""Interval scores of the hindcast's learned rows: is the uncertainty the product would carry right?

Each row (its seed ensemble) is calibrated exactly as a package is (``correction.uncertainty.calibrate``:
split-conformal per pixel and lead) on the calibration block of each window's training side, a period
used neither for training nor for early stopping (``hindcast.split_window``), then the 68 % and 95 %
intervals are scored on the window's test days: coverage and the Gaussian CRPS
(``verification.intervals.interval_scores``, xskillscore's closed form). Issue 12's target: coverage
within ±5 points of nominal. Pooled over windows by cell count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = ("coverage_68", "coverage_95", "crps", "sigma_mean")


def _pool(parts: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(p["n"] for p in parts if p["n"])
    if not n:
        return {"n": 0, **{k: None for k in KEYS}}
    return {"n": n, **{k: float(sum(p[k] * p["n"] for p in parts if p["n"]) / n) for k in KEYS}}


def row_interval_scores(name: str, win_out: list[dict[str, Any]], leads: list[int], gap_days: int) -> dict[str, Any] | None:
    """Coverage and CRPS of row ``name`` (overall, per lead, per window), or None without a calibration block."""
    from bias_correction.correction import uncertainty as unc
    from bias_correction.verification.intervals import interval_scores

    per_window: dict[str, Any] = {}
    by_lead: dict[int, list[dict[str, Any]]] = {k: [] for k in leads}
    method = None
    for w in win_out:
        cal, cal_pred = w["cal_sets"].get(name), w["cal_preds"].get(name)
        if cal is None or cal_pred is None:
            continue
        u, c, arrays = unc.calibrate(cal_pred, cal.y, cal.x[:, -1], cal.lead, cal.run, cal.valid, gap_days=gap_days)
        method = u["method"]
        test, pred = w["test"], w["preds"][name]
        pos = {int(k): j for j, k in enumerate(arrays["leads"].tolist())}
        parts = []
        for k in leads:
            sel = test.lead == k
            if k not in pos or not sel.any():
                continue
            sc = interval_scores(pred[sel], arrays["sigma68"][pos[k]][None], test.y[sel],
                                 factor_95=float(u["per_lead_factor_95"][str(k)]))
            by_lead[k].append(sc)
            parts.append(sc)
        per_window[w["info"]["name"]] = {"calibration_period": c["period"], "calibration_samples": c["samples"],
                                         **_pool(parts)}
    if not per_window:
        return None
    return {"method": method, "nominal": {"coverage_68": unc.NOMINAL[0], "coverage_95": unc.NOMINAL[1]},
            "overall": _pool([p for ps in by_lead.values() for p in ps]),
            "per_lead": {str(k): _pool(ps) for k, ps in by_lead.items()}, "per_window": per_window}
