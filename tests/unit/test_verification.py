from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest

from bias_correction.storage import Store
from bias_correction.verification.verify import ScoreTable, lead_scores, markdown_table, plot_maps, plot_rmse_by_lead, score_lead, summary


def _fields(seed=0, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    truth = 27 + rng.normal(0, 0.5, shape)
    raw = truth + 0.4 + rng.normal(0, 0.3, shape)
    corrected = truth + rng.normal(0, 0.2, shape)
    persistence = truth + rng.normal(0, 0.35, shape)
    mask = np.ones(shape, bool)
    mask[:3, :7] = False
    return corrected, raw, truth, persistence, mask


def test_scores_and_bootstrap_intervals() -> None:
    corrected, raw, truth, persistence, mask = _fields()
    s = score_lead(corrected, raw, truth, persistence, mask)
    assert s["n"] == mask.sum()
    assert s["rmse_corrected_lo"] < s["rmse_corrected"] < s["rmse_corrected_hi"]
    assert s["rmse_raw"] == pytest.approx(np.sqrt(0.4**2 + 0.3**2), abs=0.02)
    assert s["bias_raw"] == pytest.approx(0.4, abs=0.02)
    assert 0 < s["skill_vs_raw_lo"] < s["skill_vs_raw"] < s["skill_vs_raw_hi"] < 1
    assert s["skill_vs_persistence"] == pytest.approx(1 - s["rmse_corrected"] ** 2 / s["rmse_persistence"] ** 2)
    # land never counts
    corrected[~mask] = 1e6
    assert score_lead(corrected, raw, truth, persistence, mask)["rmse_corrected"] == pytest.approx(s["rmse_corrected"])


def test_table_accumulates_and_rescoring_replaces(tmp_path) -> None:
    corrected, raw, truth, persistence, mask = _fields()
    days = [dt.date(2021, 4, 21), dt.date(2021, 4, 22)]
    kw = dict(run=dt.datetime(2021, 4, 20, 12), model_id="m", model_version="v1", product_key="p.nc",
              corrected=np.stack([corrected] * 2), raw=np.stack([raw] * 2), truth=np.stack([truth] * 2),
              valid_dates=days, persistence=persistence, mask=mask)
    rows = lead_scores(truth_versions=["preliminary", "preliminary"], **kw)
    table = ScoreTable(Store(tmp_path))
    table.upsert(rows)
    assert table.versions("p.nc") == {"preliminary"}
    table.upsert(lead_scores(truth_versions=["final", "final"], **kw))
    stored = table.rows()
    assert len(stored) == 2 and {r.oisst_version for r in stored} == {"final"}
    assert stored[0].rmse_corrected == pytest.approx(rows[0].rmse_corrected)
    table.upsert([replace(rows[0], run="2021-04-21T12:00:00")])
    assert len(table.rows()) == 3 and len(table.rows(since="2021-04-21")) == 1
    md = markdown_table(stored)
    assert md.count("\n") == 3 and "| 2021-04-20 | 1 | 2021-04-21 | final |" in md
    pooled = summary(stored)
    assert pooled["rmse_corrected"] < pooled["rmse_raw"] and pooled["improvement_percent"] > 0


def test_plots_are_written(tmp_path) -> None:
    corrected, raw, truth, persistence, mask = _fields()
    rows = lead_scores(run=dt.datetime(2021, 4, 20, 12), model_id="m", model_version="v1", product_key="p",
                       corrected=corrected[None], raw=raw[None], truth=truth[None], truth_versions=["final"],
                       valid_dates=[dt.date(2021, 4, 21)], persistence=persistence, mask=mask)
    p1 = plot_rmse_by_lead(rows, tmp_path / "rmse.png")
    p2 = plot_maps(np.arange(40.0), np.arange(50.0), raw - corrected, corrected - truth, tmp_path / "maps.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000



def test_rmse_plot_of_one_run_has_markers_intervals_a_short_axis_and_a_titled_period() -> None:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from bias_correction.verification.verify import rmse_by_lead_figure

    corrected, raw, truth, persistence, mask = _fields()
    rows = lead_scores(run=dt.datetime(2021, 4, 20, 12), model_id="convgru-sa", model_version="v7", product_key="p",
                       corrected=np.stack([corrected] * 2), raw=np.stack([raw] * 2), truth=np.stack([truth] * 2),
                       truth_versions=["final"] * 2, valid_dates=[dt.date(2021, 4, 21), dt.date(2021, 4, 22)],
                       persistence=persistence, mask=mask)
    fig = rmse_by_lead_figure(rows)
    try:
        left, right = fig.axes[:2]
        points = [ln for ln in left.get_lines() if ln.get_marker() == "o"]
        assert len(points) == 2 and all(len(ln.get_xdata()) == 1 for ln in points)  # one visible point per lead
        assert left.collections, "no interval bars drawn"
        lo, hi = left.get_xlim()
        assert 1.5 <= hi - lo <= 3.0  # days: the run +- a day, not years
        assert mdates.num2date(lo).date() == dt.date(2021, 4, 19)
        assert "convgru-sa v7" in fig._suptitle.get_text() and "runs 2021-04-20 (1 run)" in fig._suptitle.get_text()
        assert right.get_lines() and right.collections  # pooled RMSE with intervals
    finally:
        plt.close(fig)


def _upsert_many(root: str, worker: int, n: int) -> None:
    corrected, raw, truth, persistence, mask = _fields(shape=(6, 7))
    table = ScoreTable(Store(root))
    for i in range(n):
        run = dt.datetime(2021, 1, 1, 12) + dt.timedelta(days=worker * 1000 + i)
        table.upsert(lead_scores(run=run, model_id="m", model_version="v1", product_key=f"p{worker}-{i}.nc",
                                 corrected=corrected[None], raw=raw[None], truth=truth[None],
                                 valid_dates=[run.date() + dt.timedelta(days=1)], persistence=persistence,
                                 mask=mask, truth_versions=["final"]))


def test_concurrent_writers_in_separate_processes_lose_no_rows(tmp_path) -> None:
    """Backfill workers verify at once: read-modify-write of the table must be serialised."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_upsert_many, args=(str(tmp_path), w, 12)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rows = ScoreTable(Store(tmp_path)).rows()
    assert len(rows) == 36 and len({r.product_key for r in rows}) == 36
