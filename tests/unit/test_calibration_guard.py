"""Issue 12: calibrated uncertainty, meaningful flags, the skill guard and its regime handling."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pytest

from bias_correction.config import Guard
from bias_correction.correction import uncertainty as unc
from bias_correction.correction.manifest import Manifest
from bias_correction.pipeline import guard
from bias_correction.storage import Store
from bias_correction.training import calibrate
from bias_correction.training.dataset import SampleSet, split_chronological
from bias_correction.verification.intervals import interval_scores
from bias_correction.verification.verify import ScoreTable, lead_scores

_D = np.timedelta64(1, "D")


def _samples(n_runs: int, leads: int = 7, t: int = 4, h: int = 3, w: int = 3) -> SampleSet:
    runs = np.datetime64("2021-01-01") + np.arange(n_runs) * _D
    run = np.repeat(runs, leads)
    lead = np.tile(np.arange(1, leads + 1), n_runs)
    valid = run + lead * _D
    order = np.lexsort((run, lead, valid))
    n = len(run)
    x = np.zeros((n, t, h, w), np.float32)
    y = np.zeros((n, h, w), np.float32)
    return SampleSet(x, lead[order], y, run[order], valid[order], np.ones((h, w), bool))


def test_calibration_block_is_disjoint_from_training_and_early_stopping() -> None:
    s = _samples(90)
    gap = calibrate.calibration_gap(seq_len=4, max_lead=7, lag_days=1)
    assert gap == 11
    fit, cal = calibrate.split_calibration(s, 0.15, gap)
    assert cal is not None and len(cal) > 0
    train, val = split_chronological(fit, 0.2, gap_days=4)
    last_fit = max(train.valid.max(), val.valid.max())
    # no calibration target or input (T runs back, the latest analysis lag 1 before them) was fitted or early-stopped on
    assert (cal.valid.min() - last_fit) / _D - 1 >= gap
    first_input = cal.run.min() - (4 - 1 + 1) * _D
    assert first_input > last_fit
    assert not set(cal.valid.tolist()) & (set(train.valid.tolist()) | set(val.valid.tolist()))
    # too little data: no block, the caller keeps validation residuals
    assert calibrate.split_calibration(_samples(15), 0.15, gap)[1] is None


def test_calibrated_intervals_cover_on_fresh_days() -> None:
    rng = np.random.default_rng(0)
    h, w, leads, days = 12, 12, 3, 40
    scale = np.linspace(0.1, 0.5, h * w).reshape(h, w)  # heteroscedastic: per-pixel error scale
    def draw(n_days: int, seed: int) -> tuple:
        r = np.random.default_rng(seed)
        run = np.repeat(np.datetime64("2021-03-01") + np.arange(n_days) * _D, leads)
        lead = np.tile(np.arange(1, leads + 1), n_days)
        y = 20 + r.normal(size=(len(run), h, w))
        err = r.standard_t(6, size=y.shape) * scale * (1 + 0.3 * lead[:, None, None])  # heavy-ish tails
        return y + err, y, y + 0.5, lead, run
    pred, y, raw, lead, run = draw(days, 1)
    u, c, arrays = unc.calibrate(pred, y, raw, lead, run, run + lead * _D, persistence=y + 0.2, gap_days=11)
    assert u["method"] == unc.METHOD and c["samples"] == len(pred) and len(c["daily"]["runs"]) == days
    sig = arrays["sigma68"]
    assert sig.shape == (leads, h, w)
    # the per-pixel figure follows the error's pattern
    assert np.corrcoef(sig[0].ravel(), scale.ravel())[0, 1] > 0.9
    # fresh days from the same process: coverage within 5 points of nominal
    p2, y2, _, l2, _ = draw(30, 2)
    for j, k in enumerate(range(1, leads + 1)):
        sel = l2 == k
        iv = interval_scores(p2[sel], sig[j][None], y2[sel], factor_95=u["per_lead_factor_95"][str(k)])
        assert abs(iv["coverage_68"] - 0.68) < 0.05 and abs(iv["coverage_95"] - 0.95) < 0.05, iv
    # reference quantiles for the guard's carried leads
    assert u["references"]["persistence"]["1"]["q68"] == pytest.approx(0.2)


def test_interval_scores_coverage_and_gaussian_crps() -> None:
    rng = np.random.default_rng(3)
    sigma = 0.3
    obs = rng.normal(scale=sigma, size=(20, 50, 50))
    iv = interval_scores(np.zeros_like(obs), np.full(obs.shape, sigma), obs)
    assert iv["n"] == obs.size
    assert abs(iv["coverage_68"] - 0.6827) < 0.01 and abs(iv["coverage_95"] - 0.95) < 0.01
    # E[CRPS] of a perfectly calibrated N(0, s^2) forecast is s / sqrt(pi)
    assert iv["crps"] == pytest.approx(sigma / np.sqrt(np.pi), rel=0.02)
    over = interval_scores(np.zeros_like(obs), np.full(obs.shape, 3 * sigma), obs)
    assert over["coverage_68"] > 0.95 and over["crps"] > iv["crps"]


def test_verification_stores_coverage_and_crps_in_the_score_table(tmp_path) -> None:
    store = Store(str(tmp_path))
    # a table of an older release (no uncertainty columns) is migrated, not refused
    (tmp_path / "verification").mkdir()
    con = sqlite3.connect(tmp_path / "verification" / "scores.sqlite")
    con.execute("CREATE TABLE scores (run TEXT, lead INTEGER, model_id TEXT, model_version TEXT, "
                "PRIMARY KEY (run, lead, model_id, model_version))")
    con.commit()
    con.close()
    rng = np.random.default_rng(1)
    truth = 25 + rng.normal(scale=0.1, size=(2, 20, 20))
    model = truth + rng.normal(scale=0.2, size=truth.shape)
    raw = truth + 0.5
    pers = truth[0] + 0.05
    carried = np.stack([model[0], raw[1]])  # lead 2 carried raw HYCOM
    rows = lead_scores(run=dt.datetime(2021, 4, 20, 12), model_id="m", model_version="v", product_key="k",
                       corrected=carried, raw=raw, truth=truth, truth_versions=["final"] * 2,
                       valid_dates=[dt.date(2021, 4, 21), dt.date(2021, 4, 22)], persistence=pers,
                       mask=np.ones((20, 20), bool), model=model, sigma=np.full(truth.shape, 0.2),
                       factor_95=[1.96, 1.96], carried=["model", "raw"])
    ScoreTable(store).upsert(rows)
    got = ScoreTable(store).rows(model_id="m")
    assert [r.carried for r in got] == ["model", "raw"]
    assert 0.6 < got[0].coverage_68 < 0.76 and 0.9 < got[0].coverage_95 <= 1.0
    assert got[0].crps > 0 and got[1].crps > got[0].crps  # raw HYCOM is off by 0.5 K: a worse CRPS
    assert got[1].rmse_model == pytest.approx(np.sqrt(np.mean((model[1] - truth[1]) ** 2)))
    assert got[1].rmse_corrected == pytest.approx(0.5, rel=1e-6)


def _manifest(period=("2021-01-01", "2021-03-31"), calibration=None) -> Manifest:
    return Manifest(schema_version=2, model_id="m", version="v1", architecture="mean-bias", seq_len=4,
                    lead_days=(1, 2), grid={"grid_id": "g", "nlat": 2, "nlon": 2}, mask_sha256="0",
                    normalisation={"vmin": 0, "vmax": 1}, artifacts={"model.onnx": {"sha256": "0"}},
                    training={"period_start": period[0], "period_end": period[1]},
                    uncertainty={"method": "x", "per_lead_rmse_degC": {"1": 0.2, "2": 0.2}},
                    **({"calibration": calibration} if calibration else {}))


def _rows(first: dt.date, days: int, rmse: dict[int, dict[str, float]], seed: int = 0) -> list:
    from bias_correction.verification.verify import LeadScore

    rng = np.random.default_rng(seed)
    out = []
    for i in range(days):
        run = first + dt.timedelta(days=i)
        for k, r in rmse.items():
            jit = lambda v: float(v * (1 + 0.05 * rng.normal()))  # noqa: E731
            out.append(LeadScore(run=f"{run}T12:00:00", lead=k, valid_date=str(run + dt.timedelta(days=k)),
                                 model_id="m", model_version="v1", product_key="p", oisst_version="final", n=2000,
                                 bias_corrected=0, rmse_corrected=jit(r["model"]), rmse_corrected_lo=0,
                                 rmse_corrected_hi=0, mae_corrected=0, bias_raw=0, rmse_raw=jit(r["raw"]),
                                 rmse_raw_lo=0, rmse_raw_hi=0, mae_raw=0, bias_persistence=0,
                                 rmse_persistence=jit(r["persistence"]), mae_persistence=0, skill_vs_raw=0,
                                 skill_vs_persistence=0, skill_vs_raw_lo=0, skill_vs_raw_hi=0, scored_at="",
                                 rmse_model=None))
    return out


def test_guard_falls_back_where_the_model_is_worse_and_keeps_it_where_better() -> None:
    cfg = Guard(n_boot=200)
    day = dt.date(2021, 6, 1)
    rows = _rows(dt.date(2021, 5, 1), 24, {1: {"model": 0.15, "persistence": 0.20, "raw": 0.45},   # model better
                                           2: {"model": 0.30, "persistence": 0.20, "raw": 0.45},   # worse: persistence
                                           3: {"model": 0.40, "persistence": 0.50, "raw": 0.30}})  # worse: raw better
    dec = guard.decide(_manifest(), rows, day, [1, 2, 3], cfg)
    assert [d["carried"] for d in dec] == ["model", "persistence", "raw"]
    assert dec[0]["flag"] == 0 and dec[0]["evidence"] == "live"
    assert dec[1]["rmse_diff_ci"][0] > 0 and dec[1]["flag"] & guard.QF_GUARD_PERSISTENCE
    assert dec[2]["flag"] & guard.QF_GUARD_RAW
    model = np.full((3, 2, 2), 1.0)
    field = guard.carried(dec, model, np.full((3, 2, 2), 2.0), np.full((2, 2), 3.0))
    assert field[:, 0, 0].tolist() == [1.0, 3.0, 2.0]
    # without the persistence field the guard decides between the model and raw HYCOM only
    dec2 = guard.decide(_manifest(), rows, day, [2], cfg, available=(guard.RAW,))
    assert dec2[0]["carried"] == "model" and dec2[0]["flag"] == 0
    # marginally worse (not significant): kept and flagged guard_uncertain, or the reference by config
    close = _rows(dt.date(2021, 5, 1), 12, {1: {"model": 0.201, "persistence": 0.20, "raw": 0.45}}, seed=4)
    kept = guard.decide(_manifest(), close, day, [1], cfg)[0]
    assert kept["carried"] == "model" and kept["flag"] & guard.QF_GUARD_UNCERTAIN, kept
    ref = guard.decide(_manifest(), close, day, [1], Guard(n_boot=200, between="reference"))[0]
    assert ref["carried"] == "persistence"
    # only rows of runs before the day count; too few live days -> the calibration block's statistics
    n = [[2000, 2000]] * 6
    cal = {"period": ["2021-03-10", "2021-03-31"], "samples": 12, "gap_days": 11,
           "daily": {"runs": [f"2021-03-{d:02d}" for d in range(10, 16)], "leads": [1, 2], "n": n,
                     "sse": {"model": [[2000 * 0.09, 2000 * 0.01]] * 6, "raw": [[2000 * 0.2, 2000 * 0.2]] * 6,
                             "persistence": [[2000 * 0.04, 2000 * 0.04]] * 6}}}
    few = guard.decide(_manifest(calibration=cal), rows[:9], day, [1, 2], cfg)
    assert [d["evidence"] for d in few] == ["calibration", "calibration"]
    assert [d["carried"] for d in few] == ["persistence", "model"]


def test_regime_switch_makes_the_model_unverified_until_live_days_show_it_better() -> None:
    cfg = Guard(n_boot=200, min_days=10)
    man = _manifest()  # trained on GOFS 3.1 (2021)
    better = {1: {"model": 0.15, "persistence": 0.20, "raw": 0.45}}
    # GOFS-era live rows (model better) say nothing about ESPC-D-V02: unverified, the better reference is carried
    old = _rows(dt.date(2024, 8, 10), 25, better)
    d = guard.decide(man, old, dt.date(2024, 9, 8), [1], cfg)[0]
    assert d["regime"] == "espc-d-v02" and d["trained_regimes"] == ["gofs3.1"]
    assert d["carried"] == "persistence" and d["flag"] & guard.QF_GUARD_UNVERIFIED_REGIME
    # a few live days on the new regime: still unverified
    few = old + _rows(dt.date(2024, 9, 5), 5, better)
    assert guard.decide(man, few, dt.date(2024, 9, 12), [1], cfg)[0]["carried"] == "persistence"
    # enough live days on the new regime showing the model better: the model again
    many = old + _rows(dt.date(2024, 9, 5), 12, better)
    d = guard.decide(man, many, dt.date(2024, 9, 20), [1], cfg)[0]
    assert d["carried"] == "model" and not d["flag"] & guard.QF_GUARD_UNVERIFIED_REGIME
    # the same model on its own regime with no evidence at all: kept, flagged guard_uncertain
    d = guard.decide(man, [], dt.date(2021, 4, 20), [1], cfg)[0]
    assert d["carried"] == "model" and d["flag"] == guard.QF_GUARD_UNCERTAIN


def test_normal_twin_days_flag_a_few_percent_of_cells() -> None:
    """Linear-regression baseline on a small twin box: thresholds from its training samples flag ~1 % of a
    later product's ocean cells (the old 3-sigma rule flagged most of them)."""
    from bias_correction.config import Region
    from bias_correction.grid.grids import target_grid
    from bias_correction.grid.mask import OceanMask, mask_sha256
    from bias_correction.io.product import QF_LARGE_CORRECTION, build_product
    from bias_correction.training.baselines import build_baseline
    from bias_correction.training.benchmark import twin_dataset
    from bias_correction.training.dataset import build_samples

    region = Region(name="box", lat_min=13.0, lat_max=14.6, lon_min=111.0, lon_max=112.6)
    data = twin_dataset(dt.date(2021, 3, 1), dt.date(2021, 4, 10), region=region)
    s = build_samples(data["hycom"], data["oisst"], data["mask"], 4)
    train = s.subset(np.flatnonzero(s.run < np.datetime64("2021-03-31")))
    test = s.subset(np.flatnonzero(s.run == s.run.max()))
    model = build_baseline("linear-regression").fit(train)
    thr = unc.correction_thresholds(model.predict(train) - train.x[:, -1], train.lead)
    assert thr["large_correction_percentile"] == 99.0
    order = np.argsort(test.lead)
    pred, raw = model.predict(test)[order], test.x[order, -1]
    grid = target_grid(region, 0.08)
    ocean = np.asarray(data["mask"].values, bool)
    mask = OceanMask(ocean, mask_sha256(ocean), grid.grid_id)
    leads = sorted(int(k) for k in test.lead)
    ds = build_product(run=dt.datetime(2021, 4, 2, 12), grid=grid, mask=mask, region_name="box", sst_corrected=pred,
                       sst_raw=raw, valid_dates=test.valid[order], provenance={}, input_digest="x",
                       sst_uncertainty=np.full(len(leads), 0.05),
                       large_correction_degC=np.array([thr["large_correction_degC"][str(k)] for k in leads]))
    qf = ds["quality_flag"].values[:, 0]
    share = float(((qf & QF_LARGE_CORRECTION) > 0)[:, mask.values].mean())
    assert 0.0 < share < 0.06, share
    assert "99th percentile" in ds["quality_flag"].attrs["comment"]
    old = build_product(run=dt.datetime(2021, 4, 2, 12), grid=grid, mask=mask, region_name="box", sst_corrected=pred,
                        sst_raw=raw, valid_dates=test.valid[order], provenance={}, input_digest="x",
                        sst_uncertainty=np.full(len(leads), 0.05))
    old_share = float(((old["quality_flag"].values[:, 0] & QF_LARGE_CORRECTION) > 0)[:, mask.values].mean())
    assert old_share > 5 * share


def test_guard_evidence_is_cut_at_evidence_before_whatever_the_order_rows_arrive() -> None:
    """A backfill's dates are scored in the order its workers finish: with ``evidence_before`` (its first
    date) the decision of every date is the same whichever of them have been scored already."""
    cfg = Guard(n_boot=200, min_days=10)
    before = _rows(dt.date(2021, 4, 1), 20, {1: {"model": 0.15, "persistence": 0.20, "raw": 0.45}})
    inside = _rows(dt.date(2021, 4, 21), 20, {1: {"model": 0.40, "persistence": 0.20, "raw": 0.45}}, seed=1)
    day, start = dt.date(2021, 5, 12), dt.date(2021, 4, 21)
    assert guard.decide(_manifest(), before + inside, day, [1], cfg)[0]["carried"] == "persistence"  # all evidence
    rng = np.random.default_rng(0)
    seen = set()
    for n in (0, 5, 20):
        scored = [inside[i] for i in sorted(rng.permutation(len(inside))[:n])]
        d = guard.decide(_manifest(), before + scored, day, [1], cfg, evidence_before=start)[0]
        seen.add((d["carried"], d["days"], d["evidence"]))
        assert d["evidence_before"] == "2021-04-21"
    assert seen == {("model", 20, "live")}
