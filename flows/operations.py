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
    """LocalCluster of worker processes by default; an external scheduler when configured."""
    from prefect_dask import DaskTaskRunner

    orch = settings.orchestration
    if orch.dask_scheduler:
        return DaskTaskRunner(address=orch.dask_scheduler)
    return DaskTaskRunner(cluster_kwargs={"n_workers": orch.backfill_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@task(name="backfill-date", retries=2, retry_delay_seconds=30, retry_jitter_factor=0.2,
      retry_condition_fn=tasks.retry_only_retryable, cache_policy=NONE, tags=["sstbc-backfill"])
def backfill_date(settings: dict[str, Any], day: dt.date, model_id: str) -> dict[str, Any]:
    return backfill_lib.run_date(settings, day, model_id)


@flow(name="sstbc-backfill")
def backfill(settings: dict[str, Any], start: dt.date, end: dt.date, models: list[str] | None = None) -> dict[str, Any]:
    """Correct (and verify) every date of the range for each model, a bounded number at a time."""
    s = settings_from_dict(settings)
    models = models or [s.model_id]
    step = tasks.configured(backfill_date, settings)
    futures = [(d, m, step.submit(settings, d, m)) for m in models for d in backfill_lib.dates(start, end)]
    from bias_correction.progress import progress

    done, failed = [], []
    for day, model_id, fut in progress(futures, desc="backfill"):
        fut.wait()
        if fut.state.is_completed():
            done.append(fut.result())
        else:
            failed.append({"date": day.isoformat(), "model_id": model_id, "state": fut.state.name,
                           "message": str(fut.state.message)})
    out = {"dates": len(futures), "done": len(done), "written": sum(bool(d.get("written")) for d in done),
           "failed": failed}
    create_markdown_artifact(
        key="sstbc-backfill", description=f"backfill {start}..{end}",
        markdown=f"# Backfill {start} .. {end}\n\n{out['done']} of {out['dates']} dates done, "
                 f"{out['written']} products written, {len(failed)} failed.\n\n"
                 + "\n".join(f"- {f['date']} {f['model_id']}: {f['state']} {f['message']}" for f in failed),
    )
    return out  # failed dates are listed (the CLI exits 1), the others are done


def run_backfill(settings: Settings, start: dt.date, end: dt.date, models: list[str] | None = None) -> dict[str, Any]:
    """The backfill flow on the configured dask cluster."""
    return backfill.with_options(task_runner=dask_runner(settings))(settings.model_dump(mode="json"), start, end, models)


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
    late = tasks.wait_for_inputs(settings, day, s.orchestration.wait_hours * 3600, s.orchestration.poll_minutes * 60)
    out = daily_correction(settings, day)
    return {**out, "late_inputs": late} if late else out


@flow(name="sstbc-retraining")
def retraining(settings: dict[str, Any], days: int = 120) -> dict[str, Any]:
    """Periodic retraining on the most recent ``days`` runs whose OISST is out."""
    from flows.daily import training

    end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=settings_from_dict(settings).lead_days + 2)
    return training(settings, end - dt.timedelta(days=days), end)


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
    today = dt.datetime.now(dt.timezone.utc).date()
    return verification(settings, today - dt.timedelta(days=days), today - dt.timedelta(days=2))


def serve(settings: Settings) -> None:  # pragma: no cover - blocks forever; tested via deployments()
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(settings), pause_on_shutdown=False)


__all__ = ["backfill", "run_backfill", "verification", "scheduled_daily", "retraining", "deployments", "serve",
           "pipeline"]
