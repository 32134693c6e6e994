"""The offline demo: stand-in upstream servers on loopback, twin data, a short training period,
one corrected forecast run, and a report of the error reduction against OISST and the twin's
oracle floor (the RMSE of the part of the forecast error that no correction can predict)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bias_correction.config import Settings, settings_from_dict
from bias_correction.grid.halo import model_grids
from bias_correction.grid.mask import load_mask
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store


@dataclass(frozen=True)
class DemoPlan:
    """Dates of the demo. The stand-in server's "today" makes every needed OISST day final."""

    today: dt.date = dt.date(2021, 5, 26)
    train_start: dt.date = dt.date(2021, 1, 4)
    train_end: dt.date = dt.date(2021, 3, 31)
    #: The service runs (corrects, publishes, verifies) every day from here to the day before ``run_day``, as
    #: operations would have: the skill guard then decides on live verification once a lead has ten verified
    #: runs (``[guard] min_days``: lead 1 from the run of 04-14, lead 7 from 04-20), and rescales the intervals
    #: from it; the 28 live runs leave 11-17 runs per lead whose recalibrated intervals are themselves verified.
    live_start: dt.date = dt.date(2021, 4, 3)
    run_day: dt.date = dt.date(2021, 5, 1)
    twin_seed: int = 2021

    def live_days(self) -> list[dt.date]:
        return [self.live_start + dt.timedelta(days=i) for i in range((self.run_day - self.live_start).days)]


def demo_settings(workdir: Path, oisst_base: str, ncss_base: str, plan: DemoPlan) -> Settings:
    """Default settings pointed at the loopback stand-ins and a workdir-local store."""
    return settings_from_dict({
        "storage_root": str(workdir / "data"),
        "model_store": str(workdir / "models"),
        "upstream": {"oisst_https": oisst_base, "hycom_ncss": ncss_base},
        "http": {"connect_timeout_s": 5, "read_timeout_s": 60, "retries": 3, "backoff_s": 0.5, "backoff_max_s": 5},
        "training": {"start": plan.train_start.isoformat(), "end": plan.train_end.isoformat()},
    })


@contextlib.contextmanager
def stand_in_upstream(workdir: Path, plan: DemoPlan) -> Iterator[Any]:
    """Start the loopback servers that stand in for NCEI and HYCOM THREDDS."""
    from bias_correction.testing.standin import StandInServer
    from bias_correction.testing.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(seed=plan.twin_seed))
    with StandInServer(twin, workdir / "upstream", plan.today) as server:
        yield server


def oracle_floor(settings: Settings, plan: DemoPlan) -> float:
    """RMSE (°C) of the unpredictable part of the forecast error for the demo run, over the mask."""
    from bias_correction.testing.twin import Twin, TwinConfig

    model_grid, grid, halo = model_grids(settings)  # the product (region) grid, inside the archive's halo
    mask = load_mask(Store(settings.storage_root), model_grid)
    mask = None if mask is None else halo.crop_mask(mask, grid)
    twin = Twin(TwinConfig(seed=plan.twin_seed))
    leads = list(range(1, settings.lead_days + 1))
    return float(twin.oracle_floor(run_time(plan.run_day), leads, grid.lat, grid.lon,
                                   None if mask is None else mask.values))


def _pooled_rmse(pairs: list[tuple[float, float]]) -> float | None:
    """RMSE pooled over parts given as (rmse, cells): the square root of the cell-weighted mean square."""
    n = sum(c for _, c in pairs)
    return (sum(r * r * c for r, c in pairs) / n) ** 0.5 if n else None


def live_verification(settings: Settings, plan: DemoPlan, version: str) -> dict[str, Any]:
    """Per lead, over the live days' products (runs ``live_start`` .. ``run_day`` - 1, every lead scored):
    RMSE (°C) of the product, the model's own field, persistence and raw HYCOM, and the coverage of the
    product's 68 / 95 % intervals (cell-weighted)."""
    from bias_correction.verification.verify import ScoreTable

    first, last = plan.live_start.isoformat(), plan.run_day.isoformat()
    rows = [r for r in ScoreTable(Store(settings.storage_root)).rows(model_id=settings.model_id, since=first)
            if r.model_version == version and r.run[:10] < last]
    out: dict[str, Any] = {"runs": len({r.run[:10] for r in rows}), "first": first,
                           "last": (plan.run_day - dt.timedelta(days=1)).isoformat(), "per_lead": []}
    for k in sorted({int(r.lead) for r in rows}):
        sel = [r for r in rows if int(r.lead) == k]
        rmse = lambda get: _pooled_rmse([(get(r), r.n) for r in sel])  # noqa: E731
        def cov(name: str, rows: list[Any] = sel) -> float | None:
            m = sum(r.n for r in rows)
            return (sum(getattr(r, name) * r.n for r in rows) / m
                    if m and all(getattr(r, name) is not None for r in rows) else None)

        rescaled = [r for r in sel if r.live_scale is not None]
        own = [r for r in sel if r.live_scale is None]
        out["per_lead"].append({
            "lead_day": k, "runs": len(sel), "rmse_product": rmse(lambda r: r.rmse_corrected),
            "rmse_model": rmse(lambda r: r.rmse_model if r.rmse_model is not None else r.rmse_corrected),
            "rmse_persistence": (rmse(lambda r: r.rmse_persistence)
                                 if all(r.rmse_persistence is not None for r in sel) else None),
            "rmse_raw": rmse(lambda r: r.rmse_raw), "coverage_68": cov("coverage_68"),
            "coverage_95": cov("coverage_95"), "carried": sorted({r.carried or "model" for r in sel}),
            # the package's own intervals vs those rescaled from live verification (verification.recalibration)
            "package_intervals": {"runs": len(own), "coverage_68": cov("coverage_68", own),
                                  "coverage_95": cov("coverage_95", own)},
            "recalibrated": {"runs": len(rescaled), "coverage_68": cov("coverage_68", rescaled),
                             "coverage_95": cov("coverage_95", rescaled),
                             "scale_68": [round(min(r.live_scale for r in rescaled), 3),
                                          round(max(r.live_scale for r in rescaled), 3)] if rescaled else None}})
    return out


def edge_band(metrics: list[dict[str, Any] | None], halo_cells: int) -> dict[str, Any]:
    """The edge band pooled over products from their verifications' ``product_checks.edge_interior`` (outer
    ring vs interior RMSE against OISST, product and raw HYCOM). One day is a noisy measure of it: the twin's
    own error differs between the edge and the inside on a given day."""
    checks = [m["product_checks"]["edge_interior"] for m in metrics
              if m and (m.get("product_checks") or {}).get("edge_interior")]
    out: dict[str, Any] = {"runs": len(checks), "grid_halo_cells": halo_cells}
    for name, row in (("product", "corrected"), ("raw", "raw")):
        parts = [c[row] for c in checks if c.get(row)]
        if not parts:
            continue
        edge = _pooled_rmse([(p["rmse_edge"], p["cells_edge"]) for p in parts])
        interior = _pooled_rmse([(p["rmse_interior"], p["cells_interior"]) for p in parts])
        out[name] = {"ring": parts[0]["ring"], "rmse_edge": edge, "rmse_interior": interior,
                     "ratio": edge / interior if edge is not None and interior else None}
    return out


def package_record(settings: Settings, version: str, leads: list[int]) -> dict[str, Any]:
    """What the demo's package says of itself: its reach (the export probe) against the running halo, and per
    lead the RMSE (°C) of the model, persistence and raw HYCOM on its calibration block, the period its
    intervals and the guard's first evidence come from."""
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import resolve_package
    from bias_correction.pipeline.context import edge_effect_at
    from bias_correction.pipeline.guard import calibration_errors

    manifest = load_manifest(resolve_package(Path(settings.model_store), settings.model_id, version))
    block = calibration_errors(manifest, leads)
    rows = sorted({row for errs in block.values() for row in errs})
    rmse = {row: [(float(sse.sum()) / float(n.sum())) ** 0.5 for sse, n in (block[k][row] for k in sorted(block))]
            for row in rows}  # per lead: square root of the block's summed squared error over its cells
    rf = manifest.receptive_field or {}
    return {"halo_cells": manifest.halo_cells, "probe_converged": rf.get("converged"),
            "edge_effect_at_halo_degC": edge_effect_at(manifest, settings.grid_halo_cells),
            "grid_halo_cells": settings.grid_halo_cells,
            "calibration_period": list(manifest.calibration.period) if manifest.calibration else None,
            "calibration_rmse": rmse}


def summary(plan: DemoPlan, trained: dict[str, Any], daily: dict[str, Any], floor: float,
            live: dict[str, Any] | None = None, edges: dict[str, Any] | None = None,
            package: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = daily.get("metrics") or {}
    return {
        "plan": {k: str(v) for k, v in asdict(plan).items()},
        "product": daily["product"]["url"],
        "model": daily["model"],
        "provider": daily["provider"],
        "training": trained,
        "rmse_raw": metrics.get("raw", {}).get("rmse"),
        "rmse_corrected": metrics.get("corrected", {}).get("rmse"),
        "improvement_percent": metrics.get("improvement_percent"),
        "oracle_floor": floor,
        "metrics": metrics,
        "product_checks": metrics.get("product_checks", {}),
        "live": live or {},
        "edge_band": edges or {},
        "package": package or {},
    }


def format_summary(out: dict[str, Any]) -> str:
    t = out["training"].get("training", {})
    lines = [
        "sstbc demo finished",
        f"  product:   {out['product']}",
        f"  model:     {out['model']['id']} {out['model']['version']} ({out['provider']}), "
        f"{t.get('n_parameters', '?')} parameters, trained in {t.get('train_seconds', 0):.0f} s",
        f"  run:       {out['plan']['run_day']} 12Z, lead days 1-7",
        f"  RMSE vs OISST: raw HYCOM {out['rmse_raw']:.3f} °C -> corrected {out['rmse_corrected']:.3f} °C "
        f"({out['improvement_percent']:+.1f} %)",
        f"  oracle floor (unpredictable error of the twin): {out['oracle_floor']:.3f} °C",
    ]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    for row in out["metrics"].get("per_lead", []):
        pers = row.get("rmse_persistence")
        lines.append(f"    lead {row['lead_day']} ({row['valid_date']}): {row['rmse_raw']:.3f} -> {row['rmse_corrected']:.3f} °C"
                     + ("" if pers is None else f" (persistence {pers:.3f})")
                     + f", carries {row.get('carried') or 'model'}, 68/95 % interval coverage "
                     f"{pct(row.get('coverage_68'))}/{pct(row.get('coverage_95'))}"
                     + ("" if row.get("live_scale") is None else f" (intervals x{row['live_scale']:.2f}, live)"))
    checks = out.get("product_checks") or {}
    ei = (checks.get("edge_interior") or {}).get("corrected") or {}
    if ei.get("ratio") is not None:
        lines.append(f"  edge band: outer {ei['ring']} rows/cols RMSE {ei['rmse_edge']:.3f} °C vs interior "
                     f"{ei['rmse_interior']:.3f} °C (ratio {ei['ratio']:.2f})")
    shares = {k: v for k, v in (checks.get("flag_share") or {}).items() if k != "land"}
    if shares:
        lines.append("  quality_flag share of ocean cells: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items()))
    live = out.get("live") or {}
    if live.get("per_lead"):
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"  live verification before the run ({live['runs']} daily runs {live['first']} .. {live['last']}, "
                     "every lead scored; RMSE °C product / model / persistence / raw, 68/95 % coverage, carried):")
        for row in live["per_lead"]:
            lines.append(f"    lead {row['lead_day']} ({row['runs']} runs): {f(row['rmse_product'])} / "
                         f"{f(row['rmse_model'])} / {f(row['rmse_persistence'])} / {f(row['rmse_raw'])}, "
                         f"{pct(row['coverage_68'])}/{pct(row['coverage_95'])}, {'+'.join(row['carried'])}")
        lines.append("  interval coverage 68/95 % over those runs: the package's own intervals | rescaled from live "
                     "verification (scale of the 68 % half-width):")
        for row in live["per_lead"]:
            own, rec = row.get("package_intervals") or {}, row.get("recalibrated") or {}
            lines.append(f"    lead {row['lead_day']}: {own.get('runs', 0)} runs {pct(own.get('coverage_68'))}/"
                         f"{pct(own.get('coverage_95'))} | {rec.get('runs', 0)} runs {pct(rec.get('coverage_68'))}/"
                         f"{pct(rec.get('coverage_95'))}"
                         + (f" (x{rec['scale_68'][0]:.2f}..{rec['scale_68'][1]:.2f})" if rec.get("scale_68") else ""))
    eb = out.get("edge_band") or {}
    if eb.get("product"):
        lines.append(f"  edge band over all {eb['runs']} products (halo {eb['grid_halo_cells']} cells): outer "
                     f"{eb['product']['ring']} rows/cols RMSE {eb['product']['rmse_edge']:.3f} °C vs interior "
                     f"{eb['product']['rmse_interior']:.3f} °C (ratio {eb['product']['ratio']:.2f}; raw HYCOM "
                     f"{eb['raw']['ratio']:.2f})")
    pk = out.get("package") or {}
    if pk.get("calibration_rmse"):
        f3 = lambda vs: ", ".join(f"{v:.3f}" for v in vs)  # noqa: E731
        lines.append(f"  calibration block {'..'.join(pk['calibration_period'] or [])} (intervals and the guard's "
                     "first evidence), RMSE °C by lead: " + "; ".join(f"{row} {f3(v)}" for row, v in
                                                                    pk["calibration_rmse"].items()))
    if pk.get("halo_cells") is not None:
        effect = pk["edge_effect_at_halo_degC"]
        lines.append(f"  model reach (export probe): halo_cells {pk['halo_cells']} "
                     f"({'converged' if pk['probe_converged'] else 'not converged: whole domain'}); the edge changes "
                     f"an output by up to {'n/a' if effect is None else f'{effect:.3f}'} °C at the running halo of "
                     f"{pk['grid_halo_cells']} cells")
    return "\n".join(lines)
