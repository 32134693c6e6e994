"""The demo's record of its live days (``demo.live_verification``): per lead, cell-weighted RMSEs and interval
coverages of the products of the runs before the demo run, for the demo's model version only."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from bias_correction.config import settings_from_dict
from bias_correction.demo import DemoPlan, edge_band, format_summary, live_verification
from bias_correction.storage import Store
from bias_correction.verification.verify import ScoreTable
from tests.correction.helpers import score_rows


def test_live_verification_pools_the_live_runs_of_the_demo_version(tmp_path: Path) -> None:
    plan = DemoPlan()
    settings = settings_from_dict({"storage_root": str(tmp_path / "data")})
    days = len(plan.live_days())
    assert plan.live_days()[0] == plan.live_start and plan.live_days()[-1] == plan.run_day - dt.timedelta(days=1)
    rows = score_rows(settings.model_id, "v1", plan.live_start, days, 2,
                      {"model": 0.2, "raw": 0.5, "persistence": 0.3})
    # coverage known per row; the first half of the runs weigh 3x (more cells)
    half = (plan.live_start + dt.timedelta(days=days // 2)).isoformat()
    # the second half of the runs carried intervals rescaled from live verification
    rows = [dataclasses.replace(r, coverage_68=0.6 if i % 2 else 0.7, coverage_95=0.9,
                                n=3000 if r.run[:10] < half else 1000,
                                live_scale=None if r.run[:10] < half else 1.2 + 0.01 * i) for i, r in enumerate(rows)]
    others = score_rows(settings.model_id, "v0", plan.live_start, days, 2, {"model": 9.0, "raw": 9.0, "persistence": 9.0})
    after = score_rows(settings.model_id, "v1", plan.run_day, 3, 2, {"model": 9.0, "raw": 9.0, "persistence": 9.0})
    ScoreTable(Store(settings.storage_root)).upsert(rows + others + after)

    live = live_verification(settings, plan, "v1")
    assert live["runs"] == days and [r["lead_day"] for r in live["per_lead"]] == [1, 2]
    for k, row in zip((1, 2), live["per_lead"]):
        sel = [r for r in rows if r.lead == k]
        n = sum(r.n for r in sel)
        assert row["runs"] == days
        assert row["rmse_product"] == pytest.approx((sum(r.rmse_corrected ** 2 * r.n for r in sel) / n) ** 0.5)
        assert row["rmse_persistence"] == pytest.approx(0.3) and row["rmse_raw"] == pytest.approx(0.5)
        assert row["coverage_68"] == pytest.approx(sum(r.coverage_68 * r.n for r in sel) / n)
        assert row["coverage_95"] == pytest.approx(0.9) and row["carried"] == ["model"]
        rec, own = [r for r in sel if r.live_scale is not None], [r for r in sel if r.live_scale is None]
        assert row["recalibrated"]["runs"] == len(rec) == days - days // 2 and row["package_intervals"]["runs"] == len(own)
        assert row["recalibrated"]["coverage_68"] == pytest.approx(sum(r.coverage_68 * r.n for r in rec)
                                                                   / sum(r.n for r in rec))
        assert row["recalibrated"]["scale_68"] == [round(min(r.live_scale for r in rec), 3),
                                                   round(max(r.live_scale for r in rec), 3)]
    text = format_summary({"plan": {"run_day": str(plan.run_day)}, "product": "p", "training": {},
                           "model": {"id": "m", "version": "v1"}, "provider": "cpu", "rmse_raw": 0.5,
                           "rmse_corrected": 0.2, "improvement_percent": 60.0, "oracle_floor": 0.1,
                           "metrics": {}, "live": live})
    assert f"live verification before the run ({days} daily runs" in text and "lead 2" in text
    assert f"| {days - days // 2} runs" in text  # the recalibrated runs' coverage is printed


def test_edge_band_pools_the_verifications_by_cells() -> None:
    """Pooled over products: the cell-weighted mean square of each part's RMSE, per ring and row; products
    without verification are left out."""
    def check(edge: float, interior: float, ce: int, ci: int) -> dict:
        return {"ring": 4, "rmse_edge": edge, "rmse_interior": interior, "cells_edge": ce, "cells_interior": ci}

    metrics = [{"product_checks": {"edge_interior": {"corrected": check(0.2, 0.1, 100, 300),
                                                     "raw": check(0.5, 0.4, 100, 300)}}},
               None,
               {"product_checks": {"edge_interior": {"corrected": check(0.1, 0.1, 300, 100),
                                                     "raw": check(0.5, 0.5, 300, 100)}}}]
    band = edge_band(metrics, 8)
    assert band["runs"] == 2 and band["grid_halo_cells"] == 8
    edge = ((0.04 * 100 + 0.01 * 300) / 400) ** 0.5
    assert band["product"]["rmse_edge"] == pytest.approx(edge)
    assert band["product"]["rmse_interior"] == pytest.approx(0.1)
    assert band["product"]["ratio"] == pytest.approx(edge / 0.1) and band["raw"]["ring"] == 4
    assert band["raw"]["rmse_interior"] == pytest.approx(((0.16 * 300 + 0.25 * 100) / 400) ** 0.5)
    text = format_summary({"plan": {"run_day": "2021-04-20"}, "product": "p", "training": {},
                           "model": {"id": "m", "version": "v1"}, "provider": "cpu", "rmse_raw": 0.5,
                           "rmse_corrected": 0.2, "improvement_percent": 60.0, "oracle_floor": 0.1,
                           "metrics": {}, "edge_band": band})
    assert "edge band over all 2 products (halo 8 cells)" in text and f"ratio {edge / 0.1:.2f}" in text
