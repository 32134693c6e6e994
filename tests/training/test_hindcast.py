"""Rolling-origin hindcast: a tiny run end to end, the running-bias baseline, the block bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bias_correction import zoo
from bias_correction.inputs import OISST_LATEST
from bias_correction.training import hindcast as hc
from bias_correction.training import hindcast_stats as hs
from bias_correction.training.running_bias import persistence_forecast, running_bias_correct

_DAY = np.timedelta64(1, "D")
WINDOWS = {"windows": [{"name": "early", "season": "x", "start": "2021-03-01", "end": "2021-03-10"},
                       {"name": "late", "season": "y", "start": "2021-04-01", "end": "2021-04-10"}]}


BOOSTED = next(m for m in zoo.ids(zoo.TABULAR) if zoo.get(m).boosted)
#: a lever row (issue 11 item 5): the default model with the derived HYCOM tendency input
TENDENCY_ROW = f"{zoo.DEFAULT_MODEL}+tendency"


def tiny(tmp: Path, **kw: object) -> hc.HindcastConfig:
    (tmp / "windows.json").write_text(json.dumps(WINDOWS))
    base = dict(windows_file=str(tmp / "windows.json"), twin_preset="classic", box_cells=8, box_center=None, leads=2,
                seq_len=2, train_days=30, epochs=2, patience=2, recommended_train_days=30, recommended_epochs=2,
                recommended_patience=2, features=4, hidden=4, seeds=[0, 1],
                learned=[hc.PAPER, BOOSTED, TENDENCY_ROW], baselines=[], n_boot=100, lgbm_estimators=20, tree_rows=5000,
                workers=2)
    return hc.HindcastConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[hc.HindcastConfig, dict, Path]:
    tmp = tmp_path_factory.mktemp("hindcast")
    cfg = tiny(tmp)
    res = hc.run_hindcast(cfg, tmp / "out")
    return cfg, res, tmp / "out"


@pytest.mark.slow  # a real (tiny) hindcast: ~15 s CPU, >60 s wall on the loaded 2-core box
def test_windows_never_touch_training_and_validation_precedes_them(run) -> None:
    cfg, _, _ = run
    assert cfg.span == 2 - 1 + 2 + 1
    wins = hc.load_windows(cfg.windows_file)
    data = hc.build_data(cfg, wins)
    for w in wins:
        train, val, test, cal, info = hc.split_window(data["samples"], w, cfg)
        start = np.datetime64(w["start"], "D")
        assert test.valid.min() == start and test.valid.max() == np.datetime64(w["end"], "D")
        fit_last = max(train.valid.max(), val.valid.max(), cal.valid.max())
        # the gap: >= T - 1 + max lead + lag empty days before the first test valid day ...
        assert (test.valid.min() - fit_last) / _DAY - 1 >= cfg.span == info["gap_days"]
        # ... so no training target is a day any test sample reads (its runs and its latest analysis)
        assert fit_last < test.run.min() - (cfg.seq_len - 1 + cfg.oisst_lag_days) * _DAY
        # validation comes from the training side: after training (with a gap), before the window
        assert val.valid.max() < start and val.valid.min() > train.valid.max()
        assert len(train) and len(val)
        # the calibration block: after validation, behind its own span-day gap, before the window's gap
        assert cal is not None and len(cal) and info["samples"]["calibration"] == len(cal)
        assert (cal.valid.min() - val.valid.max()) / _DAY - 1 >= cfg.span
        assert (test.valid.min() - cal.valid.max()) / _DAY - 1 >= cfg.span
        # training only on data before this window: the later window never trains on the earlier's test days
        assert not np.isin(train.valid, test.valid).any()
        # a row's own training side (lever "train_days"): as long as asked, ending where the default one ends
        short, *_ = hc.split_window(data["samples"], w, cfg, train_days=cfg.train_days // 2)
        assert short.valid.min() > train.valid.min() and (test.valid.min() - short.valid.max()) / _DAY - 1 >= cfg.span


@pytest.mark.slow  # a real (tiny) hindcast: ~15 s CPU, >60 s wall on the loaded 2-core box
def test_test_inputs_are_the_preliminary_analyses(run) -> None:
    cfg, _, _ = run
    wins = hc.load_windows(cfg.windows_file)
    data = hc.build_data(cfg, wins)
    _, _, test, _, _ = hc.split_window(data["samples"], wins[0], cfg)
    pre, fin = data["oisst_preliminary"], data["oisst"]
    day = test.run - cfg.oisst_lag_days * _DAY
    want_pre = pre.sel(time=day.astype("datetime64[ns]")).values
    want_fin = fin.sel(time=day.astype("datetime64[ns]")).values
    latest = test.aux_field(OISST_LATEST.name)[:, -1]
    ocean = test.mask
    np.testing.assert_array_equal(latest[:, ocean], want_pre[:, ocean].astype(np.float32))
    assert np.abs(latest[:, ocean] - want_fin[:, ocean]).max() > 1e-3  # the final version differs
    # targets are the final analyses of the valid day
    np.testing.assert_array_equal(test.y[:, ocean], fin.sel(time=test.valid.astype("datetime64[ns]")).values[:, ocean]
                                  .astype(np.float32))
    rows = hc.reference_rows(data, test, cfg, {})
    np.testing.assert_allclose(rows[hc.PERSISTENCE][:, ocean], want_pre[:, ocean], atol=1e-6)


@pytest.mark.slow  # a real (tiny) hindcast: ~15 s CPU, >60 s wall on the loaded 2-core box
def test_results_json_and_files(run) -> None:
    cfg, res, out = run
    blob = json.loads((out / "results.json").read_text())
    assert "twin" in blob["data_kind"] and blob["references"] == {"raw": hc.RAW, "persistence": hc.PERSISTENCE}
    assert [w["name"] for w in blob["windows"]] == ["early", "late"]
    assert set(blob["rows"]) == {*hc.REFERENCE_ROWS, hc.PAPER, BOOSTED, TENDENCY_ROW}
    lever = blob["rows"][TENDENCY_ROW]["training"]["early"]["seeds"]["0"]
    assert lever["aux_inputs"] == ["oisst_latest", "hycom_tendency"] and lever["residual_base"] == "oisst_latest"
    assert lever["budget"] == {"train_days": cfg.train_days, "epochs": cfg.epochs, "patience": cfg.patience,
                               "weight_decay": 0.0}
    for name, r in blob["rows"].items():
        assert r["model"] == name and r["windows"] == ["early", "late"] and r["leads"] == [1, 2]
        assert r["gap_days"] >= cfg.span
        lo, hi = r["overall"]["ci"]
        assert lo <= r["overall"]["rmse"] <= hi and r["overall"]["rmse"] > 0
        for ref in (hc.PERSISTENCE, hc.RAW):
            d = r["overall"]["diff"][ref]
            assert d["ci"][0] <= d["rmse_diff"] <= d["ci"][1]
        assert set(r["per_lead"]) == {"1", "2"} and set(r["per_window"]) == {"early", "late"}
        assert r["input_versions"]["target"] == "final"
    assert blob["rows"][hc.PERSISTENCE]["input_versions"]["latest_analysis"] == "preliminary"
    paper = blob["rows"][hc.PAPER]
    assert paper["seeds"] == [0, 1] and set(paper["per_seed"]) == {"0", "1"}
    assert paper["input_versions"]["aux_inputs"] == []  # HYCOM only, as in the paper
    seed0 = paper["training"]["early"]["seeds"]["0"]
    assert seed0["residual_base"] == "none" and seed0["arch_kwargs"]["kv_pool"] == 1  # direct framing, full attention
    assert paper["train_samples_per_s"] > 0
    # issue 12: each learned row's uncertainty, calibrated on the block before the gap, scored on the test days
    for row in (paper, blob["rows"][BOOSTED]):
        iv = row["intervals"]
        assert iv["overall"]["n"] > 0 and set(iv["per_lead"]) == {"1", "2"} and set(iv["per_window"]) == {"early", "late"}
        assert 0 < iv["overall"]["coverage_68"] < iv["overall"]["coverage_95"] <= 1 and iv["overall"]["crps"] > 0
        # the same intervals issued day by day with live recalibration: every test cell scored once
        assert iv["live"]["issued"]["overall"]["n"] == iv["overall"]["n"]
        cal_end = iv["per_window"]["early"]["calibration_period"][1]
        assert np.datetime64(cal_end) < np.datetime64(WINDOWS["windows"][0]["start"]) - cfg.span * _DAY
    assert blob["rows"][hc.RAW].get("intervals") is None
    assert blob["rows"][hc.RAW]["overall"]["diff"][hc.RAW]["ci"] == [0.0, 0.0]
    tree = blob["rows"][BOOSTED]
    assert tree["kind"] == "learned" and tree["seeds"] == [0, 1] and set(tree["per_seed"]) == {"0", "1"}
    assert tree["input_versions"]["latest_analysis"] == "preliminary"  # the tree sees the as-issued analysis too
    tw = blob["training_wall"]
    assert tw["workers"] == 2 and tw["trainings"] == 3 * 2 * 2 and tw["resumed_from_cache"] == 0
    assert tw["samples_per_s"] > 0
    md = (out / "results.md").read_text()
    assert "TWIN DATA" in md and "oracle, not a floor" in md and "persistence" in md and "68 % coverage" in md
    assert (out / "hindcast.png").stat().st_size > 10_000


@pytest.mark.slow  # one more tiny training, in this process
def test_parallel_workers_give_the_same_fields_as_one_process(run, tmp_path: Path) -> None:
    """Trainings are seeded and single-threaded: 2 spawned workers must equal 1 in-process run exactly."""
    _, _, out = run
    cfg1 = tiny(tmp_path, windows=["early"], seeds=[1], workers=1)
    hc.run_hindcast(cfg1, tmp_path / "one")
    for name in (hc.PAPER, BOOSTED):
        par = np.load(out / "rows" / "early" / f"{name}-seed1.npz")["pred"]
        one = np.load(tmp_path / "one" / "rows" / "early" / f"{name}-seed1.npz")["pred"]
        np.testing.assert_array_equal(par, one)


def test_box_can_be_centred_on_the_coast_and_must_stay_in_the_region() -> None:
    from bias_correction.testing.twin_presets import PRESETS

    region = PRESETS["hard"].region
    box = hc.box_region(region, 20, 0.08, hc.HindcastConfig().box_center)
    assert abs((box.lat_max - box.lat_min) - 19 * 0.08 - 0.04) < 1e-9  # 20 cell centres span 19 steps (+ 2 x step/4)
    assert region.lat_min <= box.lat_min < box.lat_max <= region.lat_max
    assert abs((box.lat_min + box.lat_max) / 2 - 18.0) < 1e-9 and abs((box.lon_min + box.lon_max) / 2 - 109.92) < 1e-9
    with pytest.raises(hc.ConfigError, match="leaves the twin region"):
        hc.box_region(region, 20, 0.08, (19.0, 112.0))


def test_running_bias_uses_only_analyses_known_at_run_time() -> None:
    rng = np.random.default_rng(3)
    runs = np.arange(np.datetime64("2021-01-01"), np.datetime64("2021-02-01"))
    leads, lag = [1, 2, 3], 2
    fc = 20 + rng.normal(0, 1, (len(runs), len(leads), 3, 3))
    days = np.arange(runs[0] - 5 * _DAY, runs[-1] + 5 * _DAY)
    an = 20 + rng.normal(0, 1, (len(days), 3, 3))
    corr, used = running_bias_correct(fc, runs, leads, an, days, weight=1.0, lag_days=lag)
    # weight 1: the bias of run R at lead k is exactly the error of run R-lag-k verified on day R-lag
    d_idx = {d: i for i, d in enumerate(days.tolist())}
    for r_i in range(lag + 3, len(runs)):
        v = runs[r_i] - lag * _DAY
        for l_i, k in enumerate(leads):
            src = r_i - lag - k
            np.testing.assert_allclose(used[r_i, l_i], fc[src, l_i] - an[d_idx[v.tolist()]])
            np.testing.assert_allclose(corr[r_i, l_i], fc[r_i, l_i] - used[r_i, l_i])
    # poisoning every analysis after R - lag changes nothing at runs <= R (decaying weight too)
    base, _ = running_bias_correct(fc, runs, leads, an, days, weight=0.05, lag_days=lag)
    r_cut = 15
    poisoned = an.copy()
    poisoned[days > runs[r_cut] - lag * _DAY] += 100.0
    after, _ = running_bias_correct(fc, runs, leads, poisoned, days, weight=0.05, lag_days=lag)
    np.testing.assert_array_equal(after[: r_cut + 1], base[: r_cut + 1])
    assert np.abs(after[r_cut + 1:] - base[r_cut + 1:]).min() > 1.0
    # persistence: the analysis of run day - lag at every lead
    p = persistence_forecast(runs, leads, an, days, lag)
    np.testing.assert_array_equal(p[4, 2], an[d_idx[(runs[4] - lag * _DAY).tolist()]])


def test_block_bootstrap_covers_the_known_rmse_and_identical_rows_differ_by_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    true_rmse, days, cells = 0.4, 60, 50
    # AR(1) daily error levels (autocorrelated days), cells around them
    lvl = np.zeros(days)
    for t in range(1, days):
        lvl[t] = 0.8 * lvl[t - 1] + rng.normal(0, 0.05)
    e = lvl[:, None, None] + rng.normal(0, true_rmse, (days, 2, cells))
    sse, n = (e ** 2).sum(-1), np.full((days, 2), float(cells))
    other = (1.5 * e) ** 2
    windows = [{"a": (sse, n), "a_copy": (sse.copy(), n.copy()), "worse": (other.sum(-1), n)}]
    boot = hs.paired_bootstrap(windows, block=11, n_boot=400, seed=1)
    s = hs.summarise(boot, ["a"])
    lo, hi = s["a"]["ci"]
    known = np.sqrt(true_rmse ** 2 + 0.05 ** 2 / (1 - 0.8 ** 2))  # population RMSE: cell noise + AR(1) level
    assert lo < known < hi and hi - lo < 0.1
    assert s["a_copy"]["diff"]["a"] == {"rmse_diff": 0.0, "ci": [0.0, 0.0], "p_not_better": 1.0}
    rm = np.sqrt(boot["sse"][0] / boot["n"][0]).sum(-1)  # every iteration, identical rows
    np.testing.assert_array_equal(rm[0], rm[1])
    d = s["worse"]["diff"]["a"]
    assert d["ci"][0] > 0 and d["p_not_better"] == 1.0  # a 1.5x worse row is worse in every resample
    with pytest.raises(Exception, match="longer than the window"):
        hs.paired_bootstrap([{"a": (sse[:5], n[:5])}], block=11, n_boot=10)
