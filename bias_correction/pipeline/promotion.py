"""Champion and challenger: a retrained version replaces ``current`` only when it is shown better.

Both packages are applied, as the daily run applies them (``Corrector.correct``), to the samples of the
most recent held-out window: the archive's newest run days, after the last day either package used for
training, early stopping or calibration (and, for a retraining, ``lead_days`` after its training runs, so
that no target day is shared). The RMSE difference challenger - current gets a paired moving-block
bootstrap interval over valid days (``training.hindcast_stats``: the same resampled days for both, blocks
as long as one sample's span, since consecutive days' errors are correlated). The rule
(``orchestration.promotion``, default: upper bound of the 95 % interval below 0) decides; either way the
record goes to ``promotion.json`` in the challenger's folder and the alias log says what happened and why.

Regimes (``bias_correction.regime``): when the newest upstream regime is not among the current package's
training regimes and enough live days of it are archived, retraining is due, on that regime only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction import regime
from bias_correction.config import Promotion, Settings
from bias_correction.correction import aliases
from bias_correction.errors import SstbcError
from bias_correction.pipeline.context import Context, require_mask

LOG = logging.getLogger(__name__)

CURRENT_ROW, CHALLENGER_ROW, RAW_ROW = "current", "challenger", "raw"
_HYCOM_RUN = re.compile(r"hycom_(\d{8})T\d{2}Z\.nc$")
_OISST_DAY = re.compile(r"oisst_(\d{8})\.nc$")


# ------------------------------------------------------------------------------------------ periods
@dataclasses.dataclass(frozen=True)
class RetrainingPlan:
    """Where a retraining trains and where its challenger is scored (run days, inclusive)."""

    train_start: dt.date
    train_end: dt.date
    window_start: dt.date
    window_end: dt.date
    #: The new upstream regime the retraining is restricted to (None: not regime-triggered).
    regime: str | None = None
    reason: str = "scheduled retraining"

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in dataclasses.asdict(self).items()}


def retraining_plan(settings: Settings, end: dt.date, days: int, *, new_regime: str | None = None,
                    regime_start: dt.date | None = None) -> RetrainingPlan:
    """Train on ``days`` runs ending ``lead_days`` before the held-out window, which ends at ``end``.

    With ``new_regime`` (regime-triggered) the training starts no earlier than ``regime_start``, the
    regime's first day, so the challenger learns the new upstream model's errors only.
    """
    hold = settings.orchestration.promotion.holdout_days
    window_start = end - dt.timedelta(days=hold - 1)
    train_end = window_start - dt.timedelta(days=settings.lead_days)
    train_start = train_end - dt.timedelta(days=days - 1)
    reason = "scheduled retraining"
    if new_regime is not None and regime_start is not None:
        train_start = max(train_start, regime_start)
        reason = f"new upstream regime {new_regime} since {regime_start}"
    if train_start > train_end:
        train_start = train_end
    return RetrainingPlan(train_start, train_end, window_start, end, new_regime, reason)


def last_training_day(manifest: Any) -> dt.date | None:
    """The last day a package's training used (training, validation and calibration valid days, runs)."""
    raw = manifest.raw if hasattr(manifest, "raw") else dict(manifest)
    training, found = raw.get("training") or {}, []
    found += [training.get("period_end"), *(training.get("validation_period") or [])]
    found += list(((training.get("data") or {}).get("runs")) or [])
    found += list(((raw.get("validation") or {}).get("period")) or [])
    found += list(((raw.get("calibration") or {}).get("period")) or [])
    days = []
    for v in found:
        try:
            days.append(dt.date.fromisoformat(str(v)[:10]))
        except ValueError:
            continue
    return max(days) if days else None


def archived_days(ctx: Context) -> tuple[set[dt.date], set[dt.date]]:
    """(HYCOM run days, OISST days) in the archive of this grid."""
    base = f"archive/{ctx.grid.grid_id}"
    runs = {dt.datetime.strptime(m.group(1), "%Y%m%d").date()
            for k in ctx.store.list(f"{base}/hycom") if (m := _HYCOM_RUN.search(k))}
    days = {dt.datetime.strptime(m.group(1), "%Y%m%d").date()
            for k in ctx.store.list(f"{base}/oisst") if (m := _OISST_DAY.search(k))}
    return runs, days


def scoreable_run_days(ctx: Context) -> list[dt.date]:
    """Archived run days whose every lead's OISST is archived too (live days with full verification)."""
    runs, days = archived_days(ctx)
    leads = range(1, ctx.settings.lead_days + 1)
    return sorted(d for d in runs if all(d + dt.timedelta(days=k) in days for k in leads))


# ------------------------------------------------------------------------------------------ scoring
def _package_settings(settings: Settings, manifest: Any) -> Settings:
    """The settings whose training samples are what ``manifest``'s package takes (T, inputs, lag)."""
    training = settings.training.model_copy(update={
        "seq_len": int(manifest.seq_len), "aux_inputs": list(manifest.aux_inputs),
        "oisst_lag_days": int(manifest.oisst_lag_days)})
    return settings.model_copy(update={"training": training})


def _keys(samples: Any) -> np.ndarray:
    return samples.run.astype("datetime64[D]").astype(np.int64) * 100 + samples.lead.astype(np.int64)


def window_errors(ctx: Context, correctors: dict[str, Any], start: dt.date, end: dt.date) -> dict[str, Any]:
    """Daily squared-error sums of every corrector (and raw HYCOM) on the samples of runs ``start``..``end``.

    Each package gets the samples it takes (its T, auxiliary inputs, analysis lag) on the grid it runs on
    in the daily run (``context.model_view``: the region plus its halo, or the bare region for older
    packages); errors are counted on the product (region) cells only. Only (run, lead) pairs every
    package has are scored, so the rows are paired.
    """
    from bias_correction.pipeline.context import model_view
    from bias_correction.pipeline.training import training_samples
    from bias_correction.training.hindcast_stats import daily_errors

    mask = require_mask(ctx)

    sets = {}
    for name, corr in correctors.items():
        pctx = dataclasses.replace(ctx, settings=_package_settings(ctx.settings, corr.manifest))
        sets[name], _ = training_samples(pctx, start, end)
    leads = sorted(set.intersection(*[{int(k) for k in c.manifest.lead_days} for c in correctors.values()])
                   & {int(k) for s in sets.values() for k in np.unique(s.lead)})
    common = None
    for s in sets.values():
        k = _keys(s)[np.isin(s.lead, leads)]
        common = k if common is None else np.intersect1d(common, k)
    assert common is not None
    if common.size == 0:
        return {"leads": leads, "days": [], "errors": {}, "n_samples": 0}
    preds: dict[str, tuple[np.ndarray, Any]] = {}
    for name, corr in correctors.items():
        s = sets[name].subset(np.flatnonzero(np.isin(_keys(sets[name]), common)))
        s = s.subset(np.argsort(_keys(s), kind="stable"))
        view = model_view(ctx, corr.manifest, mask)
        corr.check_contract(view.grid, view.mask.sha256, int(corr.manifest.seq_len))
        aux = None if s.aux is None else view.inputs.crop(s.aux)
        aux = None if aux is None else np.ascontiguousarray(aux)
        pred = corr.correct(np.ascontiguousarray(view.inputs.crop(s.x)), s.lead.astype(np.float32), aux,
                            valid_days=s.valid)
        preds[name] = (view.outputs.crop(pred), s)
    ref = next(iter(preds.values()))[1]
    days = np.unique(ref.valid.astype("datetime64[D]"))
    y = {name: ctx.halo.crop(s.y) for name, (_, s) in preds.items()}
    errors = {name: daily_errors(p, y[name], s.valid, s.lead, days, leads) for name, (p, s) in preds.items()}
    errors[RAW_ROW] = daily_errors(ctx.halo.crop(ref.x[:, -1]), ctx.halo.crop(ref.y), ref.valid, ref.lead, days, leads)
    return {"leads": leads, "days": [str(d) for d in days], "errors": errors, "n_samples": int(common.size)}


def block_days(rule: Promotion, manifests: list[Any], max_lead: int, n_days: int) -> int:
    """Moving-block length: the configured one, else one sample's span (T - 1 + lead + lag), capped at a
    third of the window so the bootstrap still has blocks to draw."""
    if rule.block_days is not None:
        block = rule.block_days
    else:
        block = max(int(m.seq_len) for m in manifests) - 1 + max_lead + max(int(m.oisst_lag_days) for m in manifests)
    return max(1, min(block, n_days // 3))


def compare(scored: dict[str, Any], rule: Promotion, block: int, seed: int = 0) -> dict[str, Any]:
    """Pooled and per-lead RMSE of each row and RMSE(challenger) - RMSE(current) with paired intervals."""
    from bias_correction.training.hindcast_stats import paired_bootstrap, summarise

    rows = [CHALLENGER_ROW, CURRENT_ROW, RAW_ROW]
    boot = paired_bootstrap([{r: scored["errors"][r] for r in rows}], block=block, n_boot=rule.n_boot, seed=seed)
    pooled = summarise(boot, [CURRENT_ROW, RAW_ROW], level=rule.level)
    per_lead = {str(k): summarise(boot, [CURRENT_ROW, RAW_ROW], leads=[j], level=rule.level)
                for j, k in enumerate(scored["leads"])}

    def brief(s: dict[str, Any]) -> dict[str, Any]:
        d = s[CHALLENGER_ROW]["diff"][CURRENT_ROW]
        return {"rmse": {r: s[r]["rmse"] for r in rows}, "rmse_diff": d["rmse_diff"], "ci": d["ci"],
                "p_not_better": d["p_not_better"]}

    return {"pooled": brief(pooled), "per_lead": {k: brief(v) for k, v in per_lead.items()},
            "block_days": block, "n_boot": rule.n_boot, "level": rule.level}


def decide(comparison: dict[str, Any], rule: Promotion) -> tuple[bool, str]:
    """(promote?, the reason in one line) from the pooled difference and its interval."""
    p = comparison["pooled"]
    diff, (lo, hi) = p["rmse_diff"], p["ci"]
    what = (f"RMSE challenger {p['rmse'][CHALLENGER_ROW]:.4f} vs current {p['rmse'][CURRENT_ROW]:.4f} °C: "
            f"difference {diff:+.4f} °C, {rule.level:.0%} interval [{lo:+.4f}, {hi:+.4f}]")
    if rule.rule == "interval":
        ok = bool(np.isfinite(hi) and hi < -rule.margin_degC)
        test = f"upper bound {'<' if ok else '>='} {-rule.margin_degC:+.4f}"
    else:
        ok = bool(np.isfinite(diff) and diff < -rule.margin_degC)
        test = f"difference {'<' if ok else '>='} {-rule.margin_degC:+.4f}"
    return ok, f"{what}; {test}: {'better, promoted' if ok else 'not shown better, stays a candidate'}"


# ------------------------------------------------------------------------------------------ promotion
def _record(model_store: Path, model_id: str, version: str, record: dict[str, Any]) -> dict[str, Any]:
    aliases.write_json_atomic(aliases.model_dir(model_store, model_id) / version / aliases.PROMOTION_FILE, record)
    return record


def score_challenger(ctx: Context, version: str, *, window: tuple[dt.date, dt.date] | None = None,
                     actor: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Score ``version`` of the configured model id against its ``current`` on the held-out window and
    promote it when the rule says it is better; the record (``promotion.json``) is returned.

    ``window``: run days to score (default: the newest ``holdout_days`` scoreable archived run days). It
    is narrowed to start after the last training day of either package. A model id without a current
    version makes ``version`` current (bootstrap).
    """
    from bias_correction.correction.base import load_corrector
    from bias_correction.correction.session import OrtOptions

    s = ctx.settings
    store, model_id, rule = Path(s.model_store), s.model_id, s.orchestration.promotion
    current = aliases.alias_version(store, model_id, aliases.CURRENT)
    base = {"model_id": model_id, "challenger": version, "current": current, "at": aliases._now(),
            "by": actor or aliases.default_actor(), "rule": rule.model_dump(mode="json")}
    if current is None:
        aliases.bootstrap(store, model_id, version, actor)
        return _record(store, model_id, version, {**base, "decision": "bootstrap", "promoted": True,
                                                  "reason": "no current version yet: the first becomes current"})
    if current == version:  # the export made it current: the model id had none (bootstrap)
        boot = any(e.get("action") == "bootstrap" and e.get("to") == version
                   for e in aliases.log_entries(store, model_id))
        return _record(store, model_id, version, {
            **base, "decision": "bootstrap" if boot else "unchanged", "promoted": boot,
            "reason": "first version of this model id: current without a comparison" if boot
            else f"{version} already is current"})

    def refuse(reason: str, **extra: Any) -> dict[str, Any]:
        rec = _record(store, model_id, version, {**base, **extra, "decision": "refused", "promoted": False,
                                                 "reason": reason})
        aliases.record_refusal(store, model_id, version, why=reason, actor=actor)
        LOG.warning("model %s %s stays a candidate: %s", model_id, version, reason)
        return rec

    opts = OrtOptions.from_settings(s.inference)
    try:
        correctors = {CHALLENGER_ROW: load_corrector(store, model_id, version, s.providers, s.runtime, opts),
                      CURRENT_ROW: load_corrector(store, model_id, current, s.providers, s.runtime, opts)}
    except SstbcError as exc:
        return refuse(f"could not load both packages: {exc}")
    manifests = [c.manifest for c in correctors.values()]
    newest = scoreable_run_days(ctx)
    start, end = window if window is not None else (
        (newest[-1] - dt.timedelta(days=rule.holdout_days - 1), newest[-1]) if newest else (None, None))
    if start is None or end is None:
        return refuse("no archived run day with every lead's OISST: nothing to score on")
    used = [d for d in (last_training_day(m) for m in manifests) if d is not None]
    if used and max(used) >= start:  # run r's lead-1 target is r + 1: runs from the last used day are unseen
        start = max(used)
    window_info = {"start": start.isoformat(), "end": end.isoformat(),
                   "regimes": sorted(regime.regimes_of_period(start, end)) if start <= end else [],
                   "training_regimes": {r: sorted(regime.training_regimes(c.manifest)) for r, c in correctors.items()}}
    n_days = (end - start).days + 1
    if n_days < rule.min_window_days:
        return refuse(f"held-out window {start}..{end} has {max(n_days, 0)} run days after both packages' "
                      f"training (< orchestration.promotion.min_window_days = {rule.min_window_days})",
                      window=window_info)
    try:
        scored = window_errors(ctx, correctors, start, end)
    except SstbcError as exc:
        return refuse(f"could not score on {start}..{end}: {exc}", window=window_info)
    if not scored["days"]:
        return refuse(f"no sample of runs {start}..{end} is scoreable by both packages", window=window_info)
    block = block_days(rule, manifests, max(scored["leads"]), len(scored["days"]))
    comparison = compare(scored, rule, block, seed)
    ok, reason = decide(comparison, rule)
    window_info.update(n_samples=scored["n_samples"], valid_days=len(scored["days"]), leads=scored["leads"])
    if not ok:
        return refuse(reason, window=window_info, comparison=comparison)
    rec = _record(store, model_id, version, {**base, "window": window_info, "comparison": comparison,
                                             "decision": "promoted", "promoted": True, "reason": reason})
    aliases.set_current(store, model_id, version, why=reason, actor=actor, action="promote",
                        window=[start.isoformat(), end.isoformat()])
    return rec


# ------------------------------------------------------------------------------------------ regimes
def regime_status(ctx: Context, *, today: dt.date | None = None) -> dict[str, Any]:
    """Whether retraining on a new upstream regime is due: the current package's training regimes, the
    scoreable live days per regime, and the rule's ``regime_min_days``."""
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import resolve_package

    s = ctx.settings
    min_days = s.orchestration.promotion.regime_min_days
    days = [d for d in scoreable_run_days(ctx) if today is None or d <= today]
    live = regime.live_days_by_regime(days)
    newest = regime.newest_regime([r for r, n in live.items() if n > 0])
    try:
        manifest = load_manifest(resolve_package(Path(s.model_store), s.model_id, s.model_version))
    except SstbcError as exc:
        return {"due": False, "reason": f"no current package: {exc}", "live_days": live}
    trained = sorted(regime.training_regimes(manifest))
    due = regime.retraining_due(manifest, live, min_days)
    out: dict[str, Any] = {"due": due, "newest_regime": newest, "training_regimes": trained, "live_days": live,
                           "min_days": min_days, "model_version": manifest.version}
    if newest is not None:
        out["regime_start"] = min(d for d in days if regime.regime_of_day(d) == newest).isoformat()
    if due:  # one retraining per min_days of the new regime: a candidate already trained on it waits
        latest = days[-1]
        for v in _candidates_on(Path(s.model_store), s.model_id, newest):
            if v["last_day"] is not None and (latest - v["last_day"]).days < min_days:
                out.update(due=False, reason=f"candidate {v['version']} was trained on {newest} up to "
                                             f"{v['last_day']}: next attempt after {min_days} more live days")
                return out
        out["reason"] = (f"{newest} has {live[newest]} live days (>= {min_days}); the current version "
                         f"{manifest.version} was trained on {', '.join(trained) or 'unknown regimes'}")
    else:
        out["reason"] = ("the current version was trained on the newest regime" if newest in trained else
                         f"{newest} has {live.get(newest, 0)} live days (< {min_days})" if newest else "no live days")
    return out


def _candidates_on(model_store: Path, model_id: str, regime_name: str | None) -> list[dict[str, Any]]:
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import list_versions

    out = []
    for v in list_versions(model_store, model_id):
        try:
            m = load_manifest(model_store / model_id / v)
        except SstbcError:
            continue
        if regime_name in regime.training_regimes(m):
            out.append({"version": v, "last_day": last_training_day(m)})
    return out


def retrain_and_score(ctx: Context, plan: RetrainingPlan, *, actor: str | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Train the configured model on the plan's training runs, export it (a candidate unless the model id
    has no current yet) and score it against ``current`` on the plan's held-out window."""
    from bias_correction.pipeline.training import train_and_export

    trained = train_and_export(ctx, plan.train_start, plan.train_end, progress=progress)
    version = trained["export"]["version"]
    record = score_challenger(ctx, version, window=(plan.window_start, plan.window_end), actor=actor)
    return {**trained, "plan": plan.to_json(), "promotion": record}
