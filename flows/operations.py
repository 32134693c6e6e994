"""Operational flows: backfills on dask.distributed, verification with artifacts, and the
deployments that `sstbc serve` runs from one process. Wiring only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from bias_correction import backfill as backfill_lib
from bias_correction import pipeline
from bias_correction.config import Settings, settings_from_dict
from flows import server_guard, tasks

server_guard.install()  # the ephemeral Prefect server must not outlive this process


def dask_runner(settings: Settings) -> Any:
    """LocalCluster of worker processes by default; an external scheduler when configured (``flows.dask_runner``:
    resubmission on worker loss and dask retries set explicitly)."""
    from flows.dask_runner import dask_runner as _runner

    return _runner(settings)


@task(name="backfill-date", retries=2, retry_delay_seconds=30, retry_jitter_factor=0.2,
      retry_condition_fn=tasks.retry_only_retryable, cache_policy=NONE, tags=["sstbc-backfill"])
def backfill_date(settings: dict[str, Any], day: dt.date, model_id: str, evidence_before: dt.date) -> dict[str, Any]:
    return backfill_lib.run_date(settings, day, model_id, evidence_before)


@flow(name="sstbc-backfill")
def backfill(settings: dict[str, Any], start: dt.date, end: dt.date, models: list[str] | None = None,
             regions: list[str] | None = None) -> dict[str, Any]:
    """Correct (and verify) every date of the range for each model of each region (default: every configured
    region, each with its own model), a bounded number at a time; a failing date or region stops nothing else."""
    items = backfill_lib.work_items(settings_from_dict(settings), start, end, models, regions)
    steps = {it.region: tasks.configured(backfill_date, it.settings) for it in items}  # each region's retry policy
    # the skill guard's live evidence: runs before the range only (independent of the order dates finish in)
    futures = [(it, steps[it.region].submit(it.settings, it.day, it.model_id, start)) for it in items]
    from bias_correction.progress import progress

    done, failed = [], []
    per_region: dict[str, dict[str, int]] = {}
    for it, fut in progress(futures, desc="backfill"):
        fut.wait()
        tally = per_region.setdefault(it.region, {"dates": 0, "done": 0, "written": 0, "failed": 0})
        tally["dates"] += 1
        if fut.state.is_completed():
            done.append(fut.result())
            tally["done"] += 1
            tally["written"] += bool(done[-1].get("written"))
        else:
            tally["failed"] += 1
            failed.append({"region": it.region, "date": it.day.isoformat(), "model_id": it.model_id,
                           "state": fut.state.name, "message": str(fut.state.message)})
    out = {"dates": len(futures), "done": len(done), "written": sum(bool(d.get("written")) for d in done),
           "failed": failed, "regions": per_region}
    create_markdown_artifact(
        key="sstbc-backfill", description=f"backfill {start}..{end}",
        markdown=f"# Backfill {start} .. {end}\n\n{out['done']} of {out['dates']} dates done, "
                 f"{out['written']} products written, {len(failed)} failed.\n\n"
                 + "".join(f"- region {r}: {t['done']} of {t['dates']} done, {t['failed']} failed\n"
                           for r, t in per_region.items())
                 + "\n".join(f"- {f['region']} {f['date']} {f['model_id']}: {f['state']} {f['message']}" for f in failed),
    )
    return out  # failed dates are listed (the CLI exits 1), the others are done


def run_backfill(settings: Settings, start: dt.date, end: dt.date, models: list[str] | None = None,
                 regions: list[str] | None = None) -> dict[str, Any]:
    """The backfill flow on the configured dask cluster (every region's dates on the same cluster)."""
    return backfill.with_options(task_runner=dask_runner(settings))(settings.model_dump(mode="json"), start, end, models,
                                                                     regions)


@flow(name="sstbc-verification")
def verification(settings: dict[str, Any], start: dt.date, end: dt.date, plots_dir: str | None = None) -> dict[str, Any]:
    """Score every product of runs ``start``..``end`` whose OISST is out (again once it turns final);
    publish the table as a Prefect artifact and write PNG plots."""
    s = settings_from_dict(settings)
    out = tasks.verify_range(settings, start, end)
    create_markdown_artifact(key="sstbc-verification", markdown=out["markdown"],
                             description=f"verification of runs {start}..{end}")
    if out["rows"]:
        out["plots"] = tasks.verification_plots(settings, start, end, plots_dir or str(Path(s.storage_root) / "verification" / "plots"))
    return {k: v for k, v in out.items() if k != "markdown"}


@flow(name="sstbc-scheduled-daily")
def scheduled_daily(settings: dict[str, Any], day: dt.date | None = None) -> dict[str, Any]:
    """The scheduled daily job: yesterday's 12Z run by default, waiting for late inputs (HYCOM run, OISST
    day) up to ``orchestration.wait_hours``, then the fallback order of ``bias_correction.pipeline.late``."""
    from flows.daily import daily_correction

    s = settings_from_dict(settings)
    day = day or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    if len(s.regions) > 1:  # one correction per region, each its own subflow run (``bias_correction.regions``)
        return each_region(scheduled_daily, s, f"daily correction of {day}", day=day)
    late = tasks.wait_for_inputs(settings, day, s.orchestration.wait_hours * 3600, s.orchestration.poll_minutes * 60)
    out = daily_correction(settings, day)
    status = tasks.regime_status(settings)  # a new upstream regime with enough live days: retrain on it now
    if status["due"]:
        out = {**out, "regime_retraining": retraining(settings)}
    return {**out, "late_inputs": late} if late else out


@flow(name="sstbc-retraining")
def retraining(settings: dict[str, Any], days: int | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """Retraining as champion and challenger: archive the held-out window (the newest runs whose OISST is
    out), train a challenger on the ``days`` runs before it (default ``orchestration.retraining_days``; only
    the new upstream regime's when one is due:
    ``pipeline.promotion.regime_status``), export it as a candidate and score it against ``current``; it
    is promoted only when shown better (``orchestration.promotion``)."""
    from bias_correction import regime
    from bias_correction.correction.aliases import default_actor
    from bias_correction.pipeline import promotion
    from flows.daily import fill_archive, training

    s = settings_from_dict(settings)
    if len(s.regions) > 1:  # each region retrains its own model on its own archive
        return each_region(retraining, s, "retraining", days=days, end=end)
    end = end or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=s.lead_days + 2)
    days = days or s.orchestration.retraining_days
    plan = promotion.retraining_plan(s, end, days)
    window = fill_archive(settings, plan.window_start, plan.window_end)
    status = tasks.regime_status(settings)
    if status["due"]:
        plan = promotion.retraining_plan(s, end, days, new_regime=status["newest_regime"],
                                         regime_start=regime.first_day(status["newest_regime"]))
    trained = training(settings, plan.train_start, plan.train_end)
    record = tasks.score_challenger(settings, trained["export"]["version"], plan.window_start, plan.window_end,
                                    f"sstbc-retraining flow ({default_actor()})")
    return {**trained, "window_archive": window, "regime": status, "plan": plan.to_json(), "promotion": record}


def each_region(region_flow: Any, settings: Settings, what: str, **kwargs: Any) -> dict[str, Any]:
    """``region_flow`` as one subflow run per configured region, in turn; a region that fails stops only itself
    (``bias_correction.regions``). The parent run fails at the end, naming each failed region, when any did."""
    from bias_correction import regions as regions_lib

    outcomes = []
    for rs in regions_lib.split(settings, regions_lib.ALL):
        state = region_flow.with_options(flow_run_name=f"{rs.region.name}")(
            rs.model_dump(mode="json"), return_state=True, **kwargs)
        try:
            outcomes.append(regions_lib.outcome(rs.region.name, result=state.result()))
        except Exception as exc:  # noqa: BLE001 - that region's failure, recorded; the next region still runs
            outcomes.append(regions_lib.outcome(rs.region.name, exc=exc))
    create_markdown_artifact(key="sstbc-regions", description=what, markdown=f"# {what}\n\n" + "\n".join(
        f"- {o.region}: ok" if o.ok else f"- {o.line()}" for o in outcomes))
    regions_lib.raise_if_failed(outcomes, what)
    return regions_lib.summary(outcomes)


def deployments(settings: Settings) -> list[Any]:
    """The deployments `sstbc serve` runs: daily correction, daily verification, monthly retraining."""
    payload = settings.model_dump(mode="json")
    orch = settings.orchestration
    return [
        scheduled_daily.to_deployment(name="daily-correction", cron=orch.daily_cron, parameters={"settings": payload},
                                      tags=["sstbc", "daily"]),
        verification_recent.to_deployment(name="daily-verification", cron=orch.verification_cron,
                                          parameters={"settings": payload}, tags=["sstbc", "verification"]),
        retraining.to_deployment(name="retraining", cron=orch.retraining_cron, parameters={"settings": payload},
                                 tags=["sstbc", "training"]),
        backfill.to_deployment(name="backfill", parameters={"settings": payload}, tags=["sstbc", "backfill"]),
    ]


@flow(name="sstbc-verification-recent")
def verification_recent(settings: dict[str, Any], days: int = 30) -> dict[str, Any]:
    """Verify the runs of the last ``days`` days (new OISST days, and preliminary -> final re-scoring)."""
    if len(settings_from_dict(settings).regions) > 1:
        return each_region(verification_recent, settings_from_dict(settings), "verification", days=days)
    today = dt.datetime.now(dt.timezone.utc).date()
    return verification(settings, today - dt.timedelta(days=days), today - dt.timedelta(days=2))


def serve(settings: Settings) -> None:  # pragma: no cover - blocks forever; tested via deployments()
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(settings), pause_on_shutdown=False)


__all__ = ["backfill", "run_backfill", "verification", "scheduled_daily", "retraining", "deployments", "serve",
           "pipeline"]
