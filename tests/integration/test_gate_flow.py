"""The publication gate inside the daily correction: refuse, or fall back to raw HYCOM flagged."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.correction.manifest import write_manifest_json
from bias_correction.errors import ProductError
from bias_correction.io import archive
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from tests.conftest import settings_for
from tests.correction.helpers import score_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def narrow_envelope(trained, upstream, tmp_path):
    """A copy of the trained package whose recorded training envelope is absurdly small."""
    settings, out, _ = trained
    package = Path(out["export"]["package"])
    store = tmp_path / "models"
    dest = store / package.parent.name / package.name
    shutil.copytree(package, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["training"]["correction_envelope_degC"] > 0.1  # recorded by training
    manifest["training"]["correction_envelope_degC"] = 1e-4
    write_manifest_json(dest, manifest)  # a deliberate edit, re-sealed
    s = settings_for(upstream, tmp_path, model_store=str(store))
    shutil.copytree(Path(settings.storage_root) / "grid", Path(s.storage_root) / "grid")
    return s


def test_gate_failure_publishes_nothing(narrow_envelope) -> None:
    s = narrow_envelope
    ctx = pipeline.make_context(s)
    with pytest.raises(ProductError, match="publication gate failed.*training envelope.*nothing was published"):
        pipeline.correct_run(ctx, dt.date(2021, 3, 10), pipeline.load_corrector(s))
    assert not [k for k in Store(s.storage_root).list("products") if k.endswith(".nc")]


def test_gate_failure_with_raw_fallback_publishes_flagged_raw_hycom(narrow_envelope) -> None:
    s = narrow_envelope.model_copy(update={"publication_fallback": "raw"})
    ctx = pipeline.make_context(s)
    result = pipeline.correct_run(ctx, dt.date(2021, 3, 10), pipeline.load_corrector(s))
    assert result.product.written
    ds = read_dataset(Store(s.storage_root).url(product_key("scs", run_time(dt.date(2021, 3, 10)), s.model_id)))
    assert ds.attrs["sstbc_fallback"] == "raw_hycom" and "training envelope" in ds.attrs["sstbc_gate_failures"]
    np.testing.assert_array_equal(ds["sst"].values, ds["sst_raw"].values)
    assert "failed, fallback raw HYCOM" in json.loads(ds.attrs["sstbc_provenance"])["publication_gate"]


def test_a_product_is_issued_once_whatever_later_verification_says(trained, upstream, tmp_path) -> None:
    """The guard decides at first issue; verification arriving later changes the next runs, never re-issues
    this one (a rerun, a retried backfill task, a repeated backfill publish nothing new)."""
    from bias_correction.io import publish
    from bias_correction.pipeline import guard
    from bias_correction.verification.verify import ScoreTable

    settings, _, _ = trained
    s = settings_for(upstream, tmp_path, model_store=settings.model_store)
    shutil.copytree(Path(settings.storage_root) / "grid", Path(s.storage_root) / "grid")
    ctx, corrector = pipeline.make_context(s), pipeline.load_corrector(s)
    man, day = corrector.manifest, dt.date(2021, 3, 10)
    first = pipeline.correct_run(ctx, day, corrector)
    assert first.product.written
    carried_first = json.loads(read_dataset(Store(s.storage_root).url(first.product.key)).attrs["sstbc_provenance"])
    assert "issue_digest" in carried_first

    # 30 days of live verification: the model far worse than persistence at every lead
    leads = list(range(1, s.lead_days + 1))
    ScoreTable(ctx.store).upsert(score_rows(s.model_id, man.version, day - dt.timedelta(days=30), 30, s.lead_days,
                                             {"model": 0.9, "persistence": 0.2, "raw": 0.5}))
    now = guard.decide_for_run(ctx, day, man, leads)
    assert now is not None and {d["carried"] for d in now} == {"persistence"}, now  # the evidence would change it
    assert carried_first.get("guard_carried", "") != ",".join(d["carried"] for d in now)

    again = pipeline.correct_run(ctx, day, corrector)
    assert not again.product.written and again.product.key == first.product.key
    index = publish.read_index(ctx.store, publish.index_key("scs", run_time(day)))
    versions = index["products"][publish.product_id("scs", run_time(day), s.model_id)]["versions"]
    assert len(versions) == 1
    # the evidence a backfill starting at ``day`` may use excludes the runs it produces itself
    frozen = guard.decide_for_run(ctx, day + dt.timedelta(days=5), man, leads, evidence_before=day - dt.timedelta(days=25))
    assert [d["days"] for d in frozen] == [5] * len(leads), frozen  # runs day-30..day-26 only
    assert {d["evidence_before"] for d in frozen} == {(day - dt.timedelta(days=25)).isoformat()}


def test_live_verification_rescales_the_intervals_of_the_next_product(trained, upstream, tmp_path) -> None:
    """30 verified runs whose errors were twice the package's 68 % half-width: the next product carries twice
    the package's sst_uncertainty on its model leads, says so, and its own verification scores it against
    the package's half-width (the scale divided out: no feedback)."""
    from bias_correction.correction import uncertainty as unc
    from bias_correction.pipeline.verification import verify_product
    from bias_correction.verification import recalibration as rc
    from bias_correction.verification.verify import ScoreTable

    settings, _, _ = trained
    s = settings_for(upstream, tmp_path, model_store=settings.model_store)
    shutil.copytree(Path(settings.storage_root) / "grid", Path(s.storage_root) / "grid")
    ctx, corrector = pipeline.make_context(s), pipeline.load_corrector(s)
    man, day = corrector.manifest, dt.date(2021, 3, 10)
    z = np.abs(np.random.default_rng(0).normal(size=4000)) * 2.0
    ScoreTable(ctx.store).upsert(score_rows(s.model_id, man.version, day - dt.timedelta(days=30), 30, s.lead_days,
                                             {"model": 0.15, "persistence": 0.2, "raw": 0.5},
                                             z_hist=rc.z_histogram(z, np.ones_like(z))))
    res = pipeline.correct_run(ctx, day, corrector)
    ds = read_dataset(Store(s.storage_root).url(res.product.key))
    u = ds["sst_uncertainty"]
    scale = {int(k): v for k, v in json.loads(u.attrs["uncertainty_live_scale"]).items()}
    assert set(scale) == set(range(1, s.lead_days + 1)) and all(1.9 < v < 2.1 for v in scale.values()), scale
    assert "recalibrated at leads" in u.attrs["uncertainty_method"]
    factors = json.loads(u.attrs["uncertainty_interval_95_factor"])
    assert all(abs(f - 1.96 / 0.994) < 0.1 for f in factors.values()), factors
    base, _, _ = unc.product_uncertainty(man, sorted(scale), tuple(u.shape[-2:]))
    got = np.squeeze(u.values)
    ocean = np.isfinite(got)
    assert ocean.any()
    np.testing.assert_allclose(got[ocean], (np.array([scale[k] for k in sorted(scale)])[:, None, None] * base)[ocean],
                               rtol=1e-5)
    # only runs whose valid day had passed count: 30 - lead of the 30
    assert all(d["interval"]["days"] == 30 - d["lead"] for d in json.loads(ds.attrs["sstbc_guard"]))
    # its own verification: normalised scores against the package's half-width, not the rescaled one
    verify_product(ctx, res.product.key)
    mine = sorted((r for r in ScoreTable(ctx.store).rows(model_id=s.model_id) if r.run[:10] == day.isoformat()),
                  key=lambda r: r.lead)
    assert len(mine) == s.lead_days
    sst = np.squeeze(ds["sst"].values)
    for j, r in enumerate(mine):
        truth = archive.read_field(ctx.store, archive.oisst_key(ctx.grid, dt.date.fromisoformat(r.valid_date))).values
        zz = (np.abs(sst[j] - truth) / base[j])[ocean[j]]
        counts = rc.pooled_counts([r.z_hist])
        assert counts.sum() == zz.size and r.live_scale == pytest.approx(scale[r.lead])
        assert abs(rc.quantile(counts, 0.68) / np.quantile(zz, 0.68) - 1) < 0.05
