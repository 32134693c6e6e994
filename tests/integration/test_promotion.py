"""Champion and challenger on a real archive: a worse challenger is refused (the reason recorded in
``promotion.json`` and the alias log), a better one is promoted; the retraining flow trains a challenger
on the runs before the held-out window and promotes it only when better; a new upstream regime makes
retraining due once enough live days are archived.

The archive is written with the archive's own writers from a small synthetic twin on the product grid
(HYCOM = OISST of the valid day + a smooth bias + 0.05 °C per lead + noise), so every day costs
milliseconds and nothing is downloaded; the packages are mean-bias baselines (the cheapest model), the
degraded one fitted to targets shifted by +0.4 °C.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.correction import aliases
from bias_correction.grid.mask import load_mask, save_mask
from bias_correction.io import archive
from bias_correction.pipeline import promotion
from bias_correction.sources.cache import Fetched
from bias_correction.sources.hycom import run_time
from bias_correction.training.baselines import build_baseline
from bias_correction.training.dataset import split_chronological
from bias_correction.training.tabular_export import export_tabular_package

LEADS = 7
MEAN_BIAS = "mean-bias"


def _settings(root: Path, **promo):
    return settings_from_dict({
        "storage_root": str(root / "data"), "model_store": str(root / "models"), "grid_step": 0.25,
        "model_id": MEAN_BIAS, "training": {"model": MEAN_BIAS, "seq_len": 1},
        "orchestration": {"task_retries": 0, "task_retry_delay_s": 0.1,
                          "promotion": {"holdout_days": 12, "min_window_days": 8, "n_boot": 300, **promo}}})


def _fetched(what: str) -> Fetched:
    return Fetched(key=f"raw/synthetic/{what}", url=f"synthetic://twin/{what}", size=0, sha256="0" * 64,
                   version="final", fetched_at="2021-05-15T00:00:00Z")


def write_archive(ctx, start: dt.date, end: dt.date, seed: int = 0) -> None:
    """Runs ``start``..``end`` and the OISST days of all their leads, on ``ctx.grid``."""
    grid, rng = ctx.grid, np.random.default_rng(seed)
    jj, ii = np.meshgrid(np.arange(grid.nlat), np.arange(grid.nlon), indexing="ij")
    ocean = np.ones(grid.shape, bool)
    ocean[:3, :3] = False
    bias = 0.3 + 0.3 * np.sin(jj / 2.5) * np.cos(ii / 3.0)

    def truth(day: dt.date) -> np.ndarray:
        t = day.toordinal()
        return (27.0 + np.sin(2 * np.pi * t / 40.0) + 0.5 * np.sin(jj / 3.0 + t / 7.0) + 0.4 * np.cos(ii / 4.0))

    n_runs = (end - start).days + 1
    for i in range(n_runs + LEADS):
        day = start + dt.timedelta(days=i + 1)
        archive.write_oisst(ctx.store, grid, day, np.where(ocean, truth(day), np.nan), _fetched(f"oisst/{day}"))
    for i in range(n_runs):
        day = start + dt.timedelta(days=i)
        valid = [day + dt.timedelta(days=k) for k in range(1, LEADS + 1)]
        fields = np.stack([truth(v) + bias + 0.05 * k + 0.1 * rng.standard_normal(grid.shape)
                           for k, v in enumerate(valid, 1)])
        daily = xr.DataArray(np.where(ocean, fields, np.nan).astype(np.float32), dims=("lead", "lat", "lon"),
                             coords={"lead": np.arange(1, LEADS + 1), "valid_date": ("lead", np.array(valid, "datetime64[ns]")),
                                     "lat": grid.lat, "lon": grid.lon}, attrs={"units": "degC"})
        archive.write_hycom(ctx.store, grid, run_time(day), daily, _fetched(f"hycom/{day}"))
    if load_mask(ctx.store, grid) is None:
        save_mask(ctx.store, grid, ocean, sources="synthetic twin")


def export_mean_bias(ctx, start: dt.date, end: dt.date, version: str, shift_degC: float = 0.0) -> Path:
    """A mean-bias package fitted on runs ``start``..``end`` (targets shifted by ``shift_degC``: degraded)."""
    samples, _ = pipeline.training_samples(ctx, start, end)
    train, val = split_chronological(samples, 0.25, gap_days=1)
    fit_on = dataclasses.replace(train, y=train.y + np.float32(shift_degC))
    model = build_baseline(MEAN_BIAS).fit(fit_on)
    return export_tabular_package(model, train, val, grid=ctx.grid, mask_hash=pipeline.require_mask(ctx).sha256,
                                  model_store=Path(ctx.settings.model_store), model_id=MEAN_BIAS, version=version,
                                  data_info={"runs": [start.isoformat(), end.isoformat()]})


TRAIN = (dt.date(2021, 2, 1), dt.date(2021, 2, 14))
WINDOW = (dt.date(2021, 2, 22), dt.date(2021, 3, 5))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One archive; a good and a degraded mean-bias package, each in its own model store."""
    root = tmp_path_factory.mktemp("promotion")
    ctx = pipeline.make_context(_settings(root))
    write_archive(ctx, TRAIN[0], WINDOW[1])
    return root, ctx


def _ctx_with_store(world, name: str):
    root, ctx = world
    s = ctx.settings.model_copy(update={"model_store": str(root / name)})
    return dataclasses.replace(ctx, settings=s)


def test_a_worse_challenger_is_refused_and_the_reason_recorded(world) -> None:
    ctx = _ctx_with_store(world, "models-refuse")
    store = Path(ctx.settings.model_store)
    export_mean_bias(ctx, *TRAIN, "v1-good")
    export_mean_bias(ctx, *TRAIN, "v2-degraded", shift_degC=0.4)
    assert aliases.alias_version(store, MEAN_BIAS, "current") == "v1-good"  # bootstrap; v2 is a candidate
    rec = promotion.score_challenger(ctx, "v2-degraded", actor="test")
    assert rec["decision"] == "refused" and not rec["promoted"]
    pooled = rec["comparison"]["pooled"]
    assert pooled["rmse_diff"] > 0.2 and pooled["ci"][0] > 0  # clearly worse, interval clear of zero
    # the default window is the newest held-out run days, after both packages' training
    assert rec["window"]["end"] == WINDOW[1].isoformat() and rec["window"]["start"] >= TRAIN[1].isoformat()
    assert rec["window"]["regimes"] == ["gofs3.1"] and rec["window"]["valid_days"] >= 8
    assert aliases.alias_version(store, MEAN_BIAS, "current") == "v1-good"
    on_disk = json.loads((store / MEAN_BIAS / "v2-degraded" / aliases.PROMOTION_FILE).read_text())
    assert on_disk["reason"] == rec["reason"] and "stays a candidate" in on_disk["reason"]
    last = aliases.log_entries(store, MEAN_BIAS)[-1]
    assert (last["action"], last["candidate"], last["to"], last["why"]) == ("refused", "v2-degraded", "v1-good",
                                                                        rec["reason"])
    status = aliases.status_of(store, MEAN_BIAS, "v2-degraded", aliases.read_aliases(store, MEAN_BIAS))
    assert status == {"status": "candidate", "reason": rec["reason"]}


def test_a_better_challenger_is_promoted_with_its_record(world) -> None:
    ctx = _ctx_with_store(world, "models-promote")
    store = Path(ctx.settings.model_store)
    export_mean_bias(ctx, *TRAIN, "v1-degraded", shift_degC=0.4)
    export_mean_bias(ctx, *TRAIN, "v2-good")
    rec = promotion.score_challenger(ctx, "v2-good", window=WINDOW, actor="test")
    assert rec["decision"] == "promoted", rec["reason"]
    per_lead = rec["comparison"]["per_lead"]
    assert sorted(per_lead, key=int) == [str(k) for k in range(1, LEADS + 1)]
    assert all(v["ci"][1] < 0 for v in per_lead.values())
    assert rec["comparison"]["pooled"]["rmse"]["challenger"] < rec["comparison"]["pooled"]["rmse"]["raw"]
    found = aliases.read_aliases(store, MEAN_BIAS)
    assert (found.current, found.previous) == ("v2-good", "v1-degraded")
    last = aliases.log_entries(store, MEAN_BIAS)[-1]
    assert (last["action"], last["from"], last["to"], last["by"]) == ("promote", "v1-degraded", "v2-good", "test")
    assert last["window"] == [d.isoformat() for d in WINDOW]
    # and the daily run now loads the promoted version through the alias
    assert pipeline.load_corrector(ctx.settings).manifest.version == "v2-good"


def test_a_window_overlapping_training_is_narrowed_or_refused(world) -> None:
    ctx = _ctx_with_store(world, "models-overlap")
    export_mean_bias(ctx, *TRAIN, "v1")
    export_mean_bias(ctx, TRAIN[0], WINDOW[1] - dt.timedelta(days=3), "v2-late")  # trained on the window
    rec = promotion.score_challenger(ctx, "v2-late", window=WINDOW, actor="test")
    assert rec["decision"] == "refused" and "held-out window" in rec["reason"] and "min_window_days" in rec["reason"]


def test_retraining_plan_holds_out_the_newest_days_and_follows_a_new_regime(world) -> None:
    _, ctx = world
    s = ctx.settings
    plan = promotion.retraining_plan(s, dt.date(2021, 3, 5), days=20)
    assert (plan.window_start, plan.window_end) == (dt.date(2021, 2, 22), dt.date(2021, 3, 5))
    assert plan.train_end == plan.window_start - dt.timedelta(days=s.lead_days)  # no target day shared
    assert (plan.train_end - plan.train_start).days == 19
    switch = dt.date(2024, 9, 5)
    plan = promotion.retraining_plan(s, dt.date(2024, 12, 1), days=120, new_regime="espc-d-v02", regime_start=switch)
    assert plan.train_start == switch and plan.regime == "espc-d-v02"


def test_regime_switch_makes_retraining_due_once_enough_live_days_exist(tmp_path) -> None:
    ctx = pipeline.make_context(_settings(tmp_path, regime_min_days=15))
    write_archive(ctx, dt.date(2024, 8, 10), dt.date(2024, 9, 12))  # 8 live days of ESPC-D-V02
    export_mean_bias(ctx, dt.date(2024, 8, 10), dt.date(2024, 8, 25), "v1-gofs")
    status = promotion.regime_status(ctx)
    assert status["training_regimes"] == ["gofs3.1"] and status["newest_regime"] == "espc-d-v02"
    assert status["live_days"]["espc-d-v02"] == 8 and not status["due"]
    write_archive(ctx, dt.date(2024, 9, 13), dt.date(2024, 9, 25), seed=1)  # now 21 live days
    status = promotion.regime_status(ctx)
    assert status["due"] and status["regime_start"] == "2024-09-05", status
    # a candidate trained on the new regime: no second retraining until regime_min_days more live days
    export_mean_bias(ctx, dt.date(2024, 9, 5), dt.date(2024, 9, 20), "v2-espc")
    status = promotion.regime_status(ctx)
    assert not status["due"] and "v2-espc" in status["reason"]


@pytest.mark.slow
def test_the_retraining_flow_trains_a_challenger_and_promotes_it_when_better(prefect_harness, tmp_path) -> None:
    from flows.operations import retraining

    ctx = pipeline.make_context(_settings(tmp_path))
    end = dt.date(2021, 3, 5)
    write_archive(ctx, dt.date(2021, 2, 1), end)
    export_mean_bias(ctx, dt.date(2021, 2, 1), dt.date(2021, 2, 10), "v0-degraded", shift_degC=0.4)
    out = retraining(ctx.settings.model_dump(mode="json"), days=10, end=end)
    version = out["export"]["version"]
    assert out["plan"]["window_end"] == end.isoformat() and out["plan"]["train_end"] == "2021-02-15"
    assert out["promotion"]["decision"] == "promoted", out["promotion"]["reason"]
    found = aliases.read_aliases(Path(ctx.settings.model_store), MEAN_BIAS)
    assert (found.current, found.previous) == (version, "v0-degraded")
    assert out["regime"]["due"] is False and out["promotion"]["by"].startswith("sstbc-retraining flow")
