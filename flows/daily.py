"""Flows: the daily correction, archive filling and training. Wiring only; logic is in bias_correction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.errors import NotYetPublishedError, PermanentError
from flows import server_guard, tasks

server_guard.install()  # the ephemeral Prefect server must not outlive this process


@flow(name="sstbc-daily-correction", task_runner=ThreadPoolTaskRunner(max_workers=2))
def daily_correction(settings: dict[str, Any], day: dt.date, verify: bool = True) -> dict[str, Any]:
    """Fetch the run and its predecessors, correct it, publish the product, verify if OISST exists."""
    result = tasks.configured(tasks.correct_run, settings)(settings, day)
    out: dict[str, Any] = {"product": result["product"], "model": {"id": result["model_id"], "version": result["model_version"]},
                           "provider": result["provider"], "metrics": None}
    if verify:
        verify_task = tasks.configured(tasks.verify_product, settings)
        state = verify_task(settings, result["product"]["key"], return_state=True)
        try:
            out["metrics"] = state.result()
        except NotYetPublishedError as exc:
            out["metrics_unavailable"] = str(exc)
    return out


@flow(name="sstbc-fill-archive", task_runner=ThreadPoolTaskRunner(max_workers=2))
def fill_archive(settings: dict[str, Any], start: dt.date, end: dt.date) -> dict[str, Any]:
    """Archive every HYCOM run and OISST day needed to train on runs ``start``..``end``."""
    s = settings_from_dict(settings)
    _, lag = pipeline.training_inputs(s)
    run_days, oisst_days = pipeline.archive_dates(start, end, s.training.seq_len, s.lead_days, lag)
    mask = tasks.configured(tasks.ensure_mask, settings)(settings, oisst_days[0], run_days[0])
    runs = tasks.configured(tasks.archive_hycom_run, settings).map(unmapped(settings), run_days, wait_for=[mask])
    days = tasks.configured(tasks.archive_oisst_day, settings).map(unmapped(settings), oisst_days, wait_for=[mask])
    extra = {name: tasks.configured(tasks.archive_hycom_run, settings).map(unmapped(settings), run_days,
                                                                          unmapped(variable), wait_for=[mask])
             for name, variable in pipeline.extra_run_fields(s)}
    failed: list[dict[str, Any]] = []
    run_results = _settled(runs, run_days, "hycom", failed)
    day_results = _settled(days, oisst_days, "oisst", failed)
    out = {
        "mask": mask,
        "hycom_runs": len(run_results), "hycom_written": sum(r["written"] for r in run_results),
        "oisst_days": len(day_results), "oisst_written": sum(r["written"] for r in day_results),
    }
    for name, futures in extra.items():  # auxiliary inputs archived per run (e.g. sea-surface elevation)
        results = _settled(futures, run_days, name, failed)
        out.update({f"{name}_runs": len(results), f"{name}_written": sum(r["written"] for r in results)})
    out["failed"] = failed
    return out


def _settled(futures: Any, days: list[dt.date], kind: str, failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of the dates that succeeded; each failed date (after its bounded retries) is recorded
    with its reason in ``failed`` instead of stopping the other dates."""
    done = []
    from bias_correction.progress import progress

    for day, fut in progress(list(zip(days, futures)), desc=f"fetch {kind}"):
        fut.wait()
        value = fut.state.result(raise_on_failure=False)
        if fut.state.is_completed():
            done.append(value)
        else:
            failed.append({"kind": kind, "date": day.isoformat(), "error": type(value).__name__,
                           "message": str(value)})
    return done


@flow(name="sstbc-training")
def training(settings: dict[str, Any], start: dt.date, end: dt.date) -> dict[str, Any]:
    """Fill the archive for the training period, then train, export and package the model."""
    fill = fill_archive(settings, start, end)
    if fill["failed"]:  # training needs every date: name the first that could not be archived
        first = fill["failed"][0]
        raise NotYetPublishedError(f"training {start}..{end}: {len(fill['failed'])} archive item(s) failed, first "
                                   f"{first['kind']} {first['date']}: {first['message']}") \
            if first["error"] == "NotYetPublishedError" else PermanentError(
                f"training {start}..{end}: {len(fill['failed'])} archive item(s) failed, first "
                f"{first['kind']} {first['date']}: {first['error']}: {first['message']}")
    trained = tasks.train_and_export(settings, start, end)
    return {"archive": fill, **trained}
