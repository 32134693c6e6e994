"""The skill guard: per lead, the product carries the model only where it is not worse than its references.

Evidence, per lead, as daily squared-error sums of the model, persistence (the OISST analysis of the day
before the run) and raw HYCOM, paired by run day:

* live: the score table (``verification.verify``; the model's own field ``sst_model`` is scored even on
  leads where the product carried a reference) of the last ``window_days`` run days of this model version
  and of this run's upstream regime, once at least ``min_days`` of them exist;
* else the package's calibration block (``Calibration.daily``), which was used neither for training nor
  for early stopping -- only on a regime the model was trained on.

Rule (``[guard]``), with d = RMSE(model) - RMSE(best reference) and its paired moving-block bootstrap
interval (``training.hindcast_stats``, blocks of up to T - 1 + max lead + lag days, at most a third of
the days, so consecutive correlated days stay together):

* d <= 0: the model (no flag);
* d > 0 with the interval clear of zero: the better reference (flag ``guard_carries_persistence`` /
  ``guard_carries_raw_hycom``): the product is never knowingly worse than its references;
* in between (worse, not significantly): ``between = "keep_flagged"`` (default) keeps the model and flags
  ``guard_uncertain``; ``"reference"`` carries the better reference (flagged as above).
* no evidence at all: the model, flagged ``guard_uncertain``.

Intervals (``recalibrate_intervals``): on leads that carry the model, with at least ``min_days`` verified runs
in the same window, the decision also carries ``interval`` (``verification.recalibration``): the live scale of
the package's 68 % half-width and the 95 % factor, measured on the products' own verification.

Regime (``bias_correction.regime``): on a run whose upstream regime is not among the package's training
regimes the model is unverified: the better reference is carried (``guard_unverified_regime`` plus the
carried flag) until the live verification on that regime has ``min_days`` days with the model not worse
than the better reference; then the model.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from bias_correction.correction.manifest import Manifest
from bias_correction.io.product import (
    QF_GUARD_PERSISTENCE,
    QF_GUARD_RAW,
    QF_GUARD_UNCERTAIN,
    QF_GUARD_UNVERIFIED_REGIME,
)

LOG = logging.getLogger(__name__)

MODEL, PERSISTENCE, RAW = "model", "persistence", "raw"
REFERENCES = (PERSISTENCE, RAW)
CARRY_FLAG = {MODEL: 0, PERSISTENCE: QF_GUARD_PERSISTENCE, RAW: QF_GUARD_RAW}
#: Daily errors of one lead: row -> (sse [day], n [day]).
LeadErrors = dict[str, tuple[np.ndarray, np.ndarray]]


def _entry(lead: int, carried: str, reason: str, evidence: str, flag: int = 0, **kw: Any) -> dict[str, Any]:
    return {"lead": int(lead), "carried": carried, "flag": int(flag | CARRY_FLAG[carried]), "reason": reason,
            "evidence": evidence, **kw}


def compare(errs: LeadErrors, *, block: int, n_boot: int, level: float, seed: int = 0) -> dict[str, Any]:
    """RMSE of each row and RMSE(model) - RMSE(best reference) with its paired bootstrap interval."""
    from bias_correction.training.hindcast_stats import paired_bootstrap, summarise

    rows = [r for r in (MODEL, *REFERENCES) if r in errs]
    days = len(next(iter(errs.values()))[0])
    window = {r: (errs[r][0][:, None], errs[r][1][:, None]) for r in rows}
    boot = paired_bootstrap([window], block=max(1, min(block, days)), n_boot=n_boot, seed=seed)
    refs = [r for r in rows if r != MODEL]
    out = summarise(boot, refs, level=level)
    rmse = {r: out[r]["rmse"] for r in rows}
    best = min(refs, key=lambda r: rmse[r]) if refs else None
    diff = out[MODEL]["diff"].get(best) if best else None
    return {"rmse": rmse, "best_reference": best, "diff": None if diff is None else diff["rmse_diff"],
            "diff_ci": None if diff is None else diff["ci"], "days": days}


def decide_lead(lead: int, errs: LeadErrors | None, evidence: str, *, between: str, block: int, n_boot: int,
                level: float, unverified: bool = False, enough: bool = True,
                available: Sequence[str] = REFERENCES) -> dict[str, Any]:
    """The decision of one lead from its paired daily errors (see the module doc for the rule)."""
    if errs is not None:
        errs = {r: e for r, e in errs.items() if r == MODEL or r in available}
    if not errs or MODEL not in errs or len(errs) < 2:
        if unverified:
            ref = next((r for r in REFERENCES if r in available), RAW)
            return _entry(lead, ref, "model unverified on this regime and no evidence yet: the reference is carried",
                          evidence, QF_GUARD_UNVERIFIED_REGIME)
        return _entry(lead, MODEL, "no verification of the model against its references yet", "none",
                      QF_GUARD_UNCERTAIN)
    c = compare(errs, block=block, n_boot=n_boot, level=level, seed=lead)
    stats = {"rmse": c["rmse"], "best_reference": c["best_reference"], "rmse_diff": c["diff"],
             "rmse_diff_ci": c["diff_ci"], "days": c["days"]}
    best = c["best_reference"]
    if unverified:
        if enough and c["diff"] <= 0:
            return _entry(lead, MODEL, f"live verification on this regime ({c['days']} days) shows the model not worse "
                          f"than {best}", evidence, **stats)
        return _entry(lead, best, "model unverified on this regime (not yet shown better by live verification): the "
                      f"better reference ({best}) is carried", evidence, QF_GUARD_UNVERIFIED_REGIME, **stats)
    if c["diff"] <= 0:
        return _entry(lead, MODEL, f"model not worse than {best}", evidence, **stats)
    if c["diff_ci"][0] > 0:
        return _entry(lead, best, f"model worse than {best} (interval clear of zero)", evidence, **stats)
    if between == "reference":
        return _entry(lead, best, f"model worse than {best}, not significantly: the reference is carried "
                      "([guard] between = reference)", evidence, **stats)
    return _entry(lead, MODEL, f"model worse than {best}, not significantly: kept, flagged guard_uncertain",
                  evidence, QF_GUARD_UNCERTAIN, **stats)


def live_errors(rows: Sequence[Any], leads: Sequence[int]) -> tuple[dict[int, LeadErrors], int]:
    """Per lead the paired daily errors of score-table rows (the model's own field where the row has it),
    over run days where every present row was scored; and the number of distinct run days."""
    by_run: dict[str, dict[int, Any]] = {}
    for r in rows:
        by_run.setdefault(r.run[:10], {})[int(r.lead)] = r
    runs = sorted(by_run)
    out: dict[int, LeadErrors] = {}
    for k in leads:
        sel = [by_run[d][k] for d in runs if k in by_run[d]]
        if not sel:
            continue
        n = np.array([float(r.n) for r in sel])
        model = np.array([(r.rmse_model if getattr(r, "rmse_model", None) is not None else r.rmse_corrected) for r in sel])
        errs: LeadErrors = {MODEL: (model ** 2 * n, n), RAW: (np.array([r.rmse_raw for r in sel]) ** 2 * n, n)}
        if all(r.rmse_persistence is not None for r in sel):
            errs[PERSISTENCE] = (np.array([r.rmse_persistence for r in sel]) ** 2 * n, n)
        out[int(k)] = errs
    return out, len(runs)


def calibration_errors(manifest: Manifest, leads: Sequence[int]) -> dict[int, LeadErrors]:
    """Per lead the paired daily errors of the package's calibration block (empty when it has none)."""
    cal = manifest.calibration
    daily = cal.daily if cal is not None else None
    if not daily or not daily.get("sse"):
        return {}
    n = np.asarray(daily["n"], np.float64)  # [run, lead]
    cl = [int(k) for k in daily["leads"]]
    out: dict[int, LeadErrors] = {}
    for k in leads:
        if k not in cl:
            continue
        j = cl.index(k)
        keep = n[:, j] > 0
        out[int(k)] = {row: (np.asarray(v, np.float64)[keep, j], n[keep, j]) for row, v in daily["sse"].items()}
    return out


def block_days(seq_len: int, max_lead: int, lag: int, days: int, configured: int | None = None) -> int:
    """Bootstrap block: the configured one, else T - 1 + max lead + lag, and at most a third of the days."""
    span = configured or (int(seq_len) - 1 + int(max_lead) + int(lag))
    return max(1, min(span, days // 3 if days >= 3 else 1))


def decide(manifest: Manifest, rows: Sequence[Any], day: dt.date, leads: Sequence[int], cfg: Any, *,
           available: Sequence[str] = REFERENCES, evidence_before: dt.date | None = None) -> list[dict[str, Any]]:
    """Per-lead decisions for the run of ``day`` from score-table ``rows`` (this model version, earlier runs;
    with ``evidence_before``, runs before that date only)."""
    from bias_correction.regime import regime_of_day, training_regimes
    from bias_correction.verification.verify import latest_runs

    regime = regime_of_day(day)
    trained = training_regimes(manifest)
    unverified = bool(trained) and regime not in trained
    first_excluded = min(day, evidence_before) if evidence_before is not None else day
    rows = [r for r in rows if r.run[:10] < first_excluded.isoformat() and r.valid_date < day.isoformat()
            and regime_of_day(dt.date.fromisoformat(r.run[:10])) == regime]
    rows = latest_runs(rows, int(cfg.window_days))
    live, n_live = live_errors(rows, leads)
    cal = {} if unverified else calibration_errors(manifest, leads)
    scales: dict[int, dict[str, Any]] = {}
    if cfg.recalibrate_intervals:
        from bias_correction.verification.recalibration import live_scales

        scales = live_scales(rows, leads, min_days=int(cfg.min_days), gain=float(cfg.interval_gain))
    out = []
    for k in leads:
        errs, evidence = live.get(int(k)), "live"
        days = 0 if errs is None else len(errs[MODEL][0])
        enough = days >= int(cfg.min_days)
        if not enough and not unverified and int(k) in cal:
            errs, evidence = cal[int(k)], "calibration"
            days = len(errs[MODEL][0])
        block = block_days(manifest.seq_len, max(leads), manifest.oisst_lag_days, days, cfg.block_days)
        d = decide_lead(int(k), errs if days else None, evidence, between=cfg.between, block=block,
                        n_boot=int(cfg.n_boot), level=float(cfg.level), unverified=unverified, enough=enough,
                        available=available)
        d.update(regime=regime, trained_regimes=sorted(trained))
        if d["carried"] == MODEL and int(k) in scales:
            d["interval"] = scales[int(k)]
        if evidence_before is not None:
            d["evidence_before"] = evidence_before.isoformat()
        out.append(d)
    LOG.info("skill guard for %s (regime %s, %d live run days): %s", day, regime, n_live,
             ", ".join(f"{d['lead']}: {d['carried']}" for d in out))
    return out


def decide_for_run(ctx: Any, day: dt.date, manifest: Manifest, leads: Sequence[int], *,
                   available: Sequence[str] = REFERENCES,
                   evidence_before: dt.date | None = None) -> list[dict[str, Any]] | None:
    """The guard's decisions for the run of ``day`` (None when ``[guard] enabled = false``).

    ``evidence_before``: only runs before this date count as live evidence. A backfill passes its first
    date: the scores its own dates produce arrive in whatever order its workers finish, so without this the
    decision of a date (and the product) would depend on scheduling, and a retried or repeated date could
    be issued twice with different content."""
    cfg = ctx.settings.guard
    if not cfg.enabled:
        return None
    from bias_correction.verification.verify import ScoreTable

    since = (day - dt.timedelta(days=int(cfg.window_days) + max(leads) + 1)).isoformat()
    rows = [r for r in ScoreTable(ctx.store).rows(model_id=ctx.settings.model_id, since=since)
            if r.model_version == manifest.version]
    return decide(manifest, rows, day, leads, cfg, available=available, evidence_before=evidence_before)


def carried(decisions: list[dict[str, Any]] | None, model: np.ndarray, raw: np.ndarray,
            persistence: np.ndarray | None) -> np.ndarray:
    """The field the product carries per lead: the model's, or the decided reference's ([lead, lat, lon] degC);
    numpy, or dask (the streamed path: a lead map per chunk, nothing computed here)."""
    if not decisions:
        return model
    if any(d["carried"] == PERSISTENCE for d in decisions) and persistence is None:
        raise ValueError("the guard decided persistence but no persistence field was given")
    if hasattr(model, "dask"):
        import dask.array as dsa

        layers = [raw[j] if d["carried"] == RAW else
                  dsa.from_array(np.asarray(persistence, model.dtype), chunks=-1) if d["carried"] == PERSISTENCE else
                  model[j] for j, d in enumerate(decisions)]
        return dsa.stack(layers).astype(model.dtype)
    out = np.array(model, copy=True)
    for j, d in enumerate(decisions):
        if d["carried"] == RAW:
            out[j] = raw[j]
        elif d["carried"] == PERSISTENCE:
            if persistence is None:
                raise ValueError("the guard decided persistence but no persistence field was given")
            out[j] = persistence
    return out


def digest_part(decisions: list[dict[str, Any]] | None) -> list[list[Any]] | None:
    """What of the decisions changes the product (carried field, flags and live interval scale per lead), for
    its input digest."""
    if not decisions:
        return None
    return [[d["lead"], d["carried"], d["flag"], *([d["interval"]["scale_68"], d["interval"]["factor_95"]]
                                                   if d.get("interval") else [])] for d in decisions]
