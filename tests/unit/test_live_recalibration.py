"""Issue 12: the product's intervals are recalibrated from the verification of its own recent products."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from bias_correction.config import Guard
from bias_correction.pipeline import guard
from bias_correction.verification import recalibration as rc
from bias_correction.verification.verify import lead_scores
from tests.unit.test_calibration_guard import _manifest, _rows


def test_pooled_histogram_quantiles_match_the_pooled_scores() -> None:
    rng = np.random.default_rng(0)
    a, b = np.abs(rng.normal(size=5000)) * 0.7, np.abs(rng.standard_t(4, size=8000)) * 1.6
    counts = rc.pooled_counts([rc.z_histogram(a, np.ones_like(a)), rc.z_histogram(b, np.ones_like(b))])
    assert counts.sum() == a.size + b.size
    both = np.concatenate([a, b])
    for q in (0.68, 0.95):
        assert abs(rc.quantile(counts, q) / np.quantile(both, q) - 1) < 0.01
    # cells without a usable sigma are left out; a field with none gives no histogram
    s = np.ones(4)
    s[0], s[1] = 0.0, np.nan
    assert rc.pooled_counts([rc.z_histogram(np.ones(4), s)]).sum() == 2
    assert rc.z_histogram(np.ones(3), np.zeros(3)) is None


def _day(rng, base: np.ndarray, inflation: float, scale: float | None = None, carried: str = "model",
         i: int = 0) -> list:
    """Score rows (one lead) of a product whose errors are N(0, (inflation * base)^2) and whose
    sst_uncertainty was issued as ``scale * base`` (None: the package's own, ``base``)."""
    truth = 25 + rng.normal(scale=0.3, size=(1, *base.shape))
    corrected = truth + rng.normal(size=truth.shape) * inflation * base
    run = dt.datetime(2021, 5, 1, 12) + dt.timedelta(days=i)
    return lead_scores(run=run, model_id="m", model_version="v1", product_key="k",
                       corrected=corrected, raw=truth + 0.4, truth=truth, truth_versions=["preliminary"],
                       valid_dates=[run.date() + dt.timedelta(days=1)], persistence=truth[0] + 0.1, mask=np.ones(base.shape, bool),
                       sigma=((scale or 1.0) * base)[None], factor_95=[1.96], carried=[carried], live_scale=[scale])


def test_recalibration_brings_an_under_covering_interval_to_its_nominal_coverage() -> None:
    """Errors 1.6 x what the package says: its 68 % interval covers ~47 %; after ``min_days`` verified runs the
    next products carry 1.6 x the package's half-width and cover 68 % / 95 %."""
    rng = np.random.default_rng(3)
    base = np.linspace(0.1, 0.3, 40 * 40).reshape(40, 40)  # the package's per-pixel 68 % half-width
    before = [_day(rng, base, 1.6, i=i)[0] for i in range(12)]
    assert 0.40 < np.mean([r.coverage_68 for r in before]) < 0.54
    scales = rc.live_scales(before, [1], min_days=12)
    assert abs(scales[1]["scale_68"] - 1.6 * 0.994) < 0.05 and abs(scales[1]["factor_95"] - 1.96 / 0.994) < 0.08
    assert scales[1]["days"] == 12 and scales[1]["cells"] == 12 * base.size
    assert rc.live_scales(before[:9], [1], min_days=10) == {}
    assert scales[1]["integral_68"] == 0  # nothing was issued with live intervals yet
    s68, f95 = scales[1]["scale_68"], scales[1]["factor_95"]
    after = [_day(rng, base, 1.6, scale=s68, i=20 + i)[0] for i in range(20)]
    assert abs(np.mean([r.coverage_68 for r in after]) - 0.68) < 0.03
    z = np.concatenate([np.abs(rng.normal(size=base.size)) * 1.6 for _ in range(20)])  # |error| / base
    assert abs(np.mean(z <= f95 * s68) - 0.95) < 0.02
    # the normalised scores of recalibrated products are relative to the package's sigma: no feedback
    again = rc.live_scales(after, [1], min_days=20)
    assert abs(again[1]["q68"] - scales[1]["q68"]) < 0.05
    assert abs(again[1]["integral_68"]) < 0.3 and abs(again[1]["scale_68"] - scales[1]["scale_68"]) < 0.1
    # leads that carried a reference hold no normalised scores
    assert _day(rng, base, 1.6, carried="persistence")[0].z_hist is None


def test_the_guard_attaches_the_live_scale_to_model_leads_with_enough_days() -> None:
    rng = np.random.default_rng(5)
    base = np.full((30, 30), 0.2)
    hist = [_day(rng, base, 2.0)[0].z_hist for _ in range(24)]
    rows = _rows(dt.date(2021, 5, 1), 24, {1: {"model": 0.15, "persistence": 0.20, "raw": 0.45},
                                           2: {"model": 0.30, "persistence": 0.20, "raw": 0.45}})
    rows = [dataclasses.replace(r, z_hist=hist[i // 2], carried="model") for i, r in enumerate(rows)]
    day = dt.date(2021, 6, 1)
    dec = guard.decide(_manifest(), rows, day, [1, 2], Guard(n_boot=200))
    assert dec[0]["carried"] == "model" and 1.9 < dec[0]["interval"]["scale_68"] < 2.1
    assert dec[0]["interval"]["days"] == 24
    assert dec[1]["carried"] == "persistence" and "interval" not in dec[1]  # a reference keeps its own
    assert "interval" not in guard.decide(_manifest(), rows, day, [1], Guard(n_boot=200, recalibrate_intervals=False))[0]
    few = guard.decide(_manifest(), rows[:16], day, [1], Guard(n_boot=200, min_days=10))[0]
    assert few["carried"] == "model" and "interval" not in few  # 8 runs < min_days
    # the scale is part of what the product is: it enters the digest
    assert guard.digest_part(dec)[0][-2:] == [dec[0]["interval"]["scale_68"], dec[0]["interval"]["factor_95"]]


def test_the_integral_widens_what_the_quantile_still_misses() -> None:
    """Errors that keep growing: the latest runs' quantile lags; the intervals issued with it covered 58 %
    on ten runs, and the next half-width is exp(gain x 10 x 0.10) wider than the quantile alone."""
    rng = np.random.default_rng(11)
    base = np.full((30, 30), 0.2)
    rows = [dataclasses.replace(r, coverage_68=0.58, coverage_95=0.90)
            for r in (_day(rng, base, 1.3, scale=1.2, i=i)[0] for i in range(10))]
    p_only = rc.live_scales(rows, [1], min_days=10, gain=0.0)[1]
    pi = rc.live_scales(rows, [1], min_days=10, gain=0.5)[1]
    assert pi["integral_68"] == 1.0 and abs(pi["integral_95"] - 0.5) < 1e-9
    assert abs(pi["scale_68"] / p_only["scale_68"] - np.exp(0.5)) < 1e-3
    assert abs(pi["factor_95"] * pi["scale_68"] / (p_only["q95"] * np.exp(0.25)) - 1) < 1e-3
    assert p_only["scale_68"] == p_only["q68"] and p_only["recent_days"] == 10


def test_the_hindcast_issues_its_test_windows_day_by_day_with_live_recalibration() -> None:
    """A row whose test errors are 1.6 x its calibrated half-width: the first runs of a window keep the package's
    intervals (~47 % covered); from 10 verified runs on, the rescaled ones cover 68 % / 95 %."""
    from types import SimpleNamespace

    from bias_correction.training.hindcast_intervals import live_window

    rng = np.random.default_rng(2)
    days, leads, sigma = 45, (1, 2), np.full((2, 20, 20), 0.2)
    run = np.repeat(np.datetime64("2022-01-01") + np.arange(days) * np.timedelta64(1, "D"), len(leads))
    lead = np.tile(np.array(leads), days)
    y = 25 + rng.normal(size=(len(run), 20, 20))
    pred = y + rng.normal(size=y.shape) * 1.6 * 0.2
    test = SimpleNamespace(run=run, lead=lead, valid=run + lead * np.timedelta64(1, "D"), y=y)
    out = live_window(test, pred, sigma, {1: 0, 2: 1}, {1: 1.96, 2: 1.96})
    for k in leads:
        issued, rescaled = out["issued"][k], out["recalibrated"][k]
        assert len(issued) == days and len(rescaled) == days - 10 - k  # evidence: runs whose valid day has passed
        assert abs(np.mean([iv["coverage_68"] for iv in issued[:10]]) - 0.47) < 0.04
        assert abs(np.mean([iv["coverage_68"] for iv in rescaled]) - 0.68) < 0.04
        assert abs(np.mean([iv["coverage_95"] for iv in rescaled]) - 0.95) < 0.03
