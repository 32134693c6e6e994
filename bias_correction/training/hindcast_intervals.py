"""Interval scores of the hindcast's learned rows: is the uncertainty the product would carry right?

Each row (its seed ensemble) is calibrated exactly as a package is (``correction.uncertainty.calibrate``:
split-conformal per pixel and lead) on the calibration block of each window's training side, a period
used neither for training nor for early stopping (``hindcast.split_window``), then the 68 % and 95 %
intervals are scored on the window's test days: coverage and the Gaussian CRPS
(``verification.intervals.interval_scores``, xskillscore's closed form). Issue 12's target: coverage
within ±5 points of nominal. Pooled over windows by cell count.

``live``: the same intervals as operations would issue them day by day through each test window with the
live recalibration on (``verification.recalibration`` with the ``[guard]`` defaults: the test days verified
before each run, once ``min_days`` runs exist, rescale the next runs' intervals); the first days of a window
carry the package's own intervals, as a service started at the window's first run would.
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
    live_parts: list[dict[str, dict[int, list[dict[str, Any]]]]] = []
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
        live_parts.append(live_window(test, pred, arrays["sigma68"], pos,
                                      {k: float(u["per_lead_factor_95"][str(k)]) for k in pos}))
    if not per_window:
        return None
    live = {part: {"overall": _pool([p for w in live_parts for ps in w[part].values() for p in ps]),
                   "per_lead": {str(k): _pool([p for w in live_parts for p in w[part].get(k, [])]) for k in leads}}
            for part in ("issued", "recalibrated")}
    return {"method": method, "nominal": {"coverage_68": unc.NOMINAL[0], "coverage_95": unc.NOMINAL[1]},
            "overall": _pool([p for ps in by_lead.values() for p in ps]),
            "per_lead": {str(k): _pool(ps) for k, ps in by_lead.items()}, "per_window": per_window,
            "live": live}


def live_window(test: Any, pred: np.ndarray, sigma68: np.ndarray, pos: dict[int, int],
                factor_95: dict[int, float]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Interval scores of one test window as issued day by day with live recalibration: per lead, the scores
    of every run (``issued``) and of the runs whose intervals were rescaled (``recalibrated``)."""
    from types import SimpleNamespace

    from bias_correction.guard_config import Guard
    from bias_correction.verification.intervals import interval_scores
    from bias_correction.verification.recalibration import live_scales, z_histogram
    from bias_correction.verification.verify import latest_runs

    cfg = Guard()
    run, valid = np.asarray(test.run).astype("datetime64[D]"), np.asarray(test.valid).astype("datetime64[D]")
    rows: list[Any] = []
    out: dict[str, dict[int, list[dict[str, Any]]]] = {"issued": {}, "recalibrated": {}}
    for day in np.unique(run):
        known = [r for r in rows if r.valid < day]  # verified before this run: its valid day has passed
        scales = live_scales(latest_runs(known, int(cfg.window_days)), sorted(pos), min_days=int(cfg.min_days),
                             gain=float(cfg.interval_gain))
        for k, j in pos.items():
            sel = (run == day) & (test.lead == k)
            if not sel.any():
                continue
            sc = scales.get(k)
            sigma = sigma68[j][None] * (1.0 if sc is None else sc["scale_68"])
            f95 = factor_95[k] if sc is None else sc["factor_95"]
            iv = interval_scores(pred[sel], sigma, test.y[sel], factor_95=f95)
            out["issued"].setdefault(k, []).append(iv)
            if sc is not None:
                out["recalibrated"].setdefault(k, []).append(iv)
            err = np.abs(np.asarray(pred[sel], np.float64) - test.y[sel])
            rows.append(SimpleNamespace(run=str(day), valid=valid[sel][0], lead=k, carried="model",
                                        z_hist=z_histogram(err, np.broadcast_to(sigma68[j][None], err.shape)),
                                        live_scale=None if sc is None else sc["scale_68"],
                                        coverage_68=iv["coverage_68"], coverage_95=iv["coverage_95"]))
    return out
