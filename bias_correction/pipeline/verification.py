"""Verification of published products against OISST: per-lead scores, the score table, plots."""

from __future__ import annotations

import datetime as dt
import logging
import json
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.errors import NotYetPublishedError, SstbcError
from bias_correction.io import archive
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import as_single_run, product_key
from bias_correction.pipeline.context import Context, region_mask, require_mask
from bias_correction.pipeline.fill import archive_oisst_day
from bias_correction.sources.hycom import run_time
from bias_correction.sources.oisst import PRELIMINARY
from bias_correction.verification.metrics import improvement_percent, scores
from bias_correction.verification.product_checks import edge_interior_rmse, flag_shares

LOG = logging.getLogger(__name__)


def verify_product(ctx: Context, key: str, *, store_scores: bool = True) -> dict[str, Any]:
    """Score a product against OISST of its valid days (and persistence of the day-before analysis).

    Rows go to the score table (re-scored rows replace older ones, e.g. preliminary -> final).
    Raises NotYetPublishedError when an OISST valid day is not published yet.
    """
    from bias_correction.verification.verify import ScoreTable, lead_scores, summary

    mask = region_mask(ctx, require_mask(ctx))  # products hold the region's cells; the archive adds the halo
    crop = ctx.halo.crop
    with ctx.store.local_path(key) as path:
        ds = as_single_run(read_dataset(path, engine="netcdf4"))
    corrected, raw = ds["sst"].values, ds["sst_raw"].values
    days = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values]
    run = dt.datetime.fromisoformat(str(ds["forecast_reference_time"].values)[:19])
    prov = json.loads(ds.attrs.get("sstbc_provenance", "{}"))
    entries = [archive_oisst_day(ctx, d) for d in days]
    truth = np.stack([crop(archive.read_field(ctx.store, e.key).values) for e in entries])
    try:
        pers_entry = archive_oisst_day(ctx, run.date() - dt.timedelta(days=1))
        persistence = crop(archive.read_field(ctx.store, pers_entry.key).values)
    except NotYetPublishedError:
        persistence = None
    unc = ds["sst_uncertainty"] if "sst_uncertainty" in ds else None
    factors = json.loads(unc.attrs.get("uncertainty_interval_95_factor", "{}")) if unc is not None else {}
    leads = [int(v) for v in ds["lead_day"].values] if "lead_day" in ds.coords else list(range(1, len(days) + 1))
    carried = ds.attrs.get("sstbc_guard_carried")
    scales = json.loads(unc.attrs.get("uncertainty_live_scale", "{}")) if unc is not None else {}
    rows = lead_scores(
        run=run, model_id=str(prov.get("model_id", "")), model_version=str(prov.get("model_version", "")),
        product_key=key, corrected=corrected, raw=raw, truth=truth,
        truth_versions=[str(e.source.get("version")) for e in entries], valid_dates=days,
        persistence=persistence, mask=mask.values,
        model=ds["sst_model"].values if "sst_model" in ds else None,
        sigma=None if unc is None else unc.values,
        factor_95=[float(factors.get(str(k), 1.959964)) for k in leads],
        carried=carried.split(",") if carried else None,
        live_scale=[scales.get(str(k)) for k in leads],
        normalised_scores="sstbc_fallback" not in ds.attrs,
    )
    if store_scores:
        ScoreTable(ctx.store).upsert(rows)
    pooled = summary(rows)
    r, c = scores(raw, truth, mask.values), scores(corrected, truth, mask.values)
    checks: dict[str, Any] = {"edge_interior": {name: edge_interior_rmse(field, truth, mask.values)
                                                for name, field in (("corrected", corrected), ("raw", raw))}}
    if "quality_flag" in ds:
        qf = ds["quality_flag"]
        checks["flag_share"] = flag_shares(qf.values, mask.values, tuple(int(v) for v in np.atleast_1d(qf.attrs["flag_masks"])),
                                           str(qf.attrs["flag_meanings"]))
    return {
        "raw": r, "corrected": c, "improvement_percent": improvement_percent(r["rmse"], c["rmse"]),
        "rmse_persistence": pooled.get("rmse_persistence"),
        "oisst_versions": sorted({row.oisst_version for row in rows}),
        "per_lead": [{"lead_day": row.lead, "valid_date": row.valid_date, "rmse_raw": row.rmse_raw,
                      "rmse_corrected": row.rmse_corrected, "rmse_corrected_ci": [row.rmse_corrected_lo, row.rmse_corrected_hi],
                      "rmse_persistence": row.rmse_persistence, "skill_vs_raw": row.skill_vs_raw,
                      "skill_vs_persistence": row.skill_vs_persistence, "rmse_model": row.rmse_model,
                      "carried": row.carried, "coverage_68": row.coverage_68, "coverage_95": row.coverage_95,
                      "crps": row.crps, "live_scale": row.live_scale} for row in rows],
        "product_checks": checks,
    }

def verify_range(ctx: Context, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Score the products of runs ``start``..``end`` that are unscored, or scored against a
    preliminary OISST day whose final analysis is now due. Days without OISST yet are pending.

    Date by date: a product that cannot be scored (corrupt file, bad input) is listed under ``failed``
    with its reason and the other dates go on."""
    from bias_correction.progress import progress
    from bias_correction.verification.verify import ScoreTable, markdown_table

    table = ScoreTable(ctx.store)
    scored_rows = table.rows(model_id=ctx.settings.model_id)
    by_product: dict[str, list[Any]] = {}
    for r in scored_rows:
        by_product.setdefault(r.product_key, []).append(r)
    scored, pending, skipped, failed = [], [], [], []
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    for day in progress(days, desc="verify"):
        key = product_key(ctx.settings.region.name, run_time(day), ctx.settings.model_id)
        rows = by_product.get(key, [])
        due = not rows or any(r.oisst_version == PRELIMINARY and ctx.oisst.final_expected(dt.date.fromisoformat(r.valid_date))
                              for r in rows)
        if not ctx.store.exists(key):
            skipped.append(day.isoformat())
        elif due:
            try:
                verify_product(ctx, key)
                scored.append(day.isoformat())
            except NotYetPublishedError as exc:
                pending.append({"run": day.isoformat(), "reason": str(exc)})
            except (SstbcError, OSError, ValueError, KeyError) as exc:  # this date only: the rest go on
                LOG.warning("verification of run %s failed: %s", day, exc)
                failed.append({"date": day.isoformat(), "kind": "verify", "error": type(exc).__name__,
                               "message": str(exc)})
    rows = [r for r in table.rows(model_id=ctx.settings.model_id) if start.isoformat() <= r.run[:10] <= end.isoformat()]
    return {"scored": scored, "pending": pending, "no_product": skipped, "failed": failed, "rows": len(rows),
            "markdown": markdown_table(rows) if rows else "no verified product in this period"}


def verification_plots(ctx: Context, start: dt.date, end: dt.date, out_dir: Path) -> list[str]:
    """PNG plots of the period: RMSE by lead over time, and maps of mean correction and mean error."""
    from bias_correction.verification.verify import ScoreTable, plot_maps, plot_rmse_by_lead

    rows = [r for r in ScoreTable(ctx.store).rows(model_id=ctx.settings.model_id)
            if start.isoformat() <= r.run[:10] <= end.isoformat()]
    if not rows:
        return []
    paths = [plot_rmse_by_lead(rows, out_dir / f"rmse_by_lead_{start:%Y%m%d}_{end:%Y%m%d}.png")]
    corr_sum = err_sum = None
    count = 0
    for key in sorted({r.product_key for r in rows}):
        with ctx.store.local_path(key) as path:
            ds = as_single_run(read_dataset(path, engine="netcdf4"))
        days = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values]
        truth = np.stack([ctx.halo.crop(archive.read_field(ctx.store, archive.oisst_key(ctx.grid, d)).values)
                          for d in days])
        corr = (ds["sst"].values - ds["sst_raw"].values).mean(axis=0)
        err = (ds["sst"].values - truth).mean(axis=0)
        corr_sum = corr if corr_sum is None else corr_sum + corr
        err_sum = err if err_sum is None else err_sum + err
        count += 1
    paths.append(plot_maps(ctx.region_grid.lat, ctx.region_grid.lon, corr_sum / count, err_sum / count,
                           out_dir / f"mean_correction_error_{start:%Y%m%d}_{end:%Y%m%d}.png",
                           title=f"{ctx.settings.model_id}: mean over {count} product(s), runs {start} to {end}"))
    return [str(p) for p in paths]
