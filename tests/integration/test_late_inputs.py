"""Late inputs: the daily run waits for every input, then falls back in the documented order
(HYCOM-only package, then raw HYCOM), flagged in the product and the per-day index; the regular
product replaces the fallback once the late input is published."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import NotYetPublishedError
from bias_correction.inputs import aux_input
from bias_correction.io import publish
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.hycom import run_time
from tests.conftest import TRAIN_END, TRAIN_START, settings_for

pytestmark = pytest.mark.slow


class _Clock:
    """A clock that advances when the waiter sleeps: waiting hours takes no wall time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps += 1
        self.now += s


def _unpublished_oisst(upstream, day: dt.date) -> None:
    upstream.faults.add(f"oisst-avhrr-v02r01\\.{day:%Y%m%d}", "status", times=None, code=404)


def _current(settings, day: dt.date) -> dict:
    entry = publish.current_entry(pipeline.make_context(settings).store, settings.region.name, run_time(day),
                                  settings.model_id)
    assert entry is not None
    return entry


def test_wait_reports_a_late_analysis_and_raises_for_a_late_hycom_run(trained, upstream) -> None:
    settings, _, _ = trained
    ctx, corrector = pipeline.make_context(settings), pipeline.load_corrector(settings)
    day = dt.date(2021, 4, 9)
    _unpublished_oisst(upstream, day - dt.timedelta(days=corrector.manifest.oisst_lag_days))
    clock = _Clock()
    late = pipeline.wait_for_inputs(ctx, day, corrector, wait_s=3 * 3600, poll_s=900, sleep=clock.sleep, clock=clock)
    # the analysis input is late; a same-run input (the derived HYCOM tendency) comes with the HYCOM run
    analyses = [a for a in corrector.manifest.aux_inputs if not aux_input(a).per_lead]
    assert list(late) == analyses == ["oisst_latest"] and "still not published after waiting" in late[analyses[0]]
    assert clock.sleeps == 12  # polled every 15 min for 3 h
    upstream.faults.add("RUN_2021-04-10", "status", times=None, code=404)
    with pytest.raises(NotYetPublishedError, match="HYCOM run 2021-04-10"):
        pipeline.wait_for_inputs(ctx, dt.date(2021, 4, 10), corrector, wait_s=600, poll_s=300, sleep=clock.sleep,
                                 clock=clock)


def test_late_analysis_falls_back_to_hycom_only_model_then_raw_and_recovers(trained, upstream) -> None:
    settings, _, root = trained
    # A HYCOM-only package beside the default: the mean-bias baseline takes no auxiliary input.
    fb_settings = settings_for(upstream, root, model_id="mean-bias", training={
        "model": "mean-bias", "start": TRAIN_START.isoformat(), "end": TRAIN_END.isoformat()})
    pipeline.train_and_export(pipeline.make_context(fb_settings), TRAIN_START, TRAIN_END)
    fallback = pipeline.load_fallback_corrector(
        settings_for(upstream, root, orchestration={"fallback_model_id": "mean-bias"}))
    assert fallback is not None and fallback.manifest.aux_inputs == ()
    ctx, corrector = pipeline.make_context(settings), pipeline.load_corrector(settings)
    lag = dt.timedelta(days=corrector.manifest.oisst_lag_days)

    day = dt.date(2021, 4, 7)
    _unpublished_oisst(upstream, day - lag)
    res = pipeline.correct_with_fallback(ctx, day, corrector, fallback)
    assert res.product.written and res.model_id == "mean-bias"
    entry = _current(settings, day)
    assert entry["fallback"].startswith("hycom_only_model mean-bias:") and "not published" in entry["fallback"]
    with ctx.store.local_path(entry["key"]) as path:
        assert read_dataset(path, engine="netcdf4").attrs["sstbc_fallback"] == entry["fallback"]

    day = dt.date(2021, 4, 8)
    _unpublished_oisst(upstream, day - lag)
    res = pipeline.correct_with_fallback(ctx, day, corrector, None)
    entry = _current(settings, day)
    assert res.product.written and entry["fallback"].startswith("raw_hycom:")
    with ctx.store.local_path(entry["key"]) as path:
        ds = read_dataset(path, engine="netcdf4")
    ocean = np.isfinite(ds["sst_raw"].values)
    assert ocean.any() and np.array_equal(ds["sst"].values[ocean], ds["sst_raw"].values[ocean])
    assert ds.attrs["sstbc_fallback"].startswith("raw_hycom:")

    upstream.faults.clear()  # the analysis arrives: the next run publishes the regular product over the fallback
    res = pipeline.correct_with_fallback(ctx, day, corrector, None)
    entry = _current(settings, day)
    assert res.product.written and entry["fallback"] is None and res.model_id == corrector.manifest.model_id
    assert not pipeline.correct_with_fallback(ctx, day, corrector, None).product.written  # then up to date


def test_verification_goes_on_past_a_product_it_cannot_read(trained, upstream, tmp_path) -> None:
    """Date by date: one unreadable product is listed as failed with its reason; the others are scored."""
    import shutil

    from bias_correction.io.product import product_key

    settings, _, _ = trained
    ctx = pipeline.make_context(settings)
    corrector = pipeline.load_corrector(settings)
    days = [dt.date(2021, 4, 12), dt.date(2021, 4, 13)]
    for day in days:
        pipeline.correct_run(ctx, day, corrector)
    # a private copy of the store, so the shared one stays intact for other tests
    copy = settings_for(upstream, tmp_path, storage_root=str(tmp_path / "copy"), model_store=settings.model_store)
    shutil.copytree(settings.storage_root, copy.storage_root)
    bad = ctx.store.url(product_key(settings.region.name, run_time(days[0]), settings.model_id))
    broken = tmp_path / "copy" / bad[len(settings.storage_root.rstrip("/")) + 1:]
    broken.write_bytes(broken.read_bytes()[:200])
    out = pipeline.verify_range(pipeline.make_context(copy), days[0], days[1])
    assert [f["date"] for f in out["failed"]] == [days[0].isoformat()] and out["failed"][0]["message"]
    assert days[1].isoformat() in out["scored"]
