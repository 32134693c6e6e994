"""Thin Prefect task wrappers around ``bias_correction.pipeline``: retries for retryable errors only."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.errors import RetryableError


def retry_only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network trouble and not-yet-published data; never corrupt input or bad config."""
    try:
        state.result()
    except RetryableError:
        return True
    except Exception:
        return False
    return False


_RETRY = dict(retries=2, retry_delay_seconds=30, retry_jitter_factor=0.2,
              retry_condition_fn=retry_only_retryable, cache_policy=NONE)


def configured(task_: Any, settings: dict[str, Any]) -> Any:
    """The task with the retry policy of the run's settings (``orchestration`` section)."""
    orch = settings_from_dict(settings).orchestration
    return task_.with_options(retries=orch.task_retries, retry_delay_seconds=orch.task_retry_delay_s)


def _ctx(settings: dict[str, Any]) -> pipeline.Context:
    return pipeline.make_context(settings_from_dict(settings))


@task(name="archive-hycom-run", **_RETRY)
def archive_hycom_run(settings: dict[str, Any], day: dt.date, variable: str = "sst") -> dict[str, Any]:
    entry = pipeline.archive_hycom_run(_ctx(settings), day, variable=variable)
    return {"key": entry.key, "written": entry.written, "source": entry.source}


@task(name="archive-oisst-day", **_RETRY)
def archive_oisst_day(settings: dict[str, Any], day: dt.date) -> dict[str, Any]:
    entry = pipeline.archive_oisst_day(_ctx(settings), day)
    return {"key": entry.key, "written": entry.written, "source": entry.source}


@task(name="ensure-ocean-mask", **_RETRY)
def ensure_mask(settings: dict[str, Any], oisst_day: dt.date, run_day: dt.date) -> dict[str, Any]:
    mask = pipeline.ensure_mask(_ctx(settings), oisst_day, run_day)
    return {"sha256": mask.sha256, "ocean_cells": mask.ocean_cells, "grid_id": mask.grid_id}


@task(name="correct-run", **_RETRY)
def correct_run(settings: dict[str, Any], day: dt.date) -> dict[str, Any]:
    s = settings_from_dict(settings)
    result = pipeline.correct_with_fallback(pipeline.make_context(s), day, pipeline.load_corrector(s),
                                            pipeline.load_fallback_corrector(s))
    out = asdict(result)
    out["run"] = result.run.isoformat()
    return out


@task(name="verify-product", **_RETRY)
def verify_product(settings: dict[str, Any], key: str) -> dict[str, Any]:
    return pipeline.verify_product(_ctx(settings), key)


@task(name="train-and-export", cache_policy=NONE)
def train_and_export(settings: dict[str, Any], start: dt.date, end: dt.date) -> dict[str, Any]:
    return pipeline.train_and_export(_ctx(settings), start, end)


@task(name="score-challenger", cache_policy=NONE)
def score_challenger(settings: dict[str, Any], version: str, start: dt.date, end: dt.date, actor: str) -> dict[str, Any]:
    from bias_correction.pipeline import promotion

    return promotion.score_challenger(_ctx(settings), version, window=(start, end), actor=actor)


@task(name="regime-status", cache_policy=NONE)
def regime_status(settings: dict[str, Any]) -> dict[str, Any]:
    from bias_correction.pipeline import promotion

    return promotion.regime_status(_ctx(settings))


@task(name="verify-range", cache_policy=NONE)
def verify_range(settings: dict[str, Any], start: dt.date, end: dt.date) -> dict[str, Any]:
    return pipeline.verify_range(_ctx(settings), start, end)


@task(name="verification-plots", cache_policy=NONE)
def verification_plots(settings: dict[str, Any], start: dt.date, end: dt.date, out_dir: str) -> list[str]:
    from pathlib import Path

    return pipeline.verification_plots(_ctx(settings), start, end, Path(out_dir))


@task(name="wait-for-inputs", cache_policy=NONE)
def wait_for_inputs(settings: dict[str, Any], day: dt.date, wait_s: float, poll_s: float) -> dict[str, str]:
    s = settings_from_dict(settings)
    return pipeline.wait_for_inputs(pipeline.make_context(s), day, pipeline.load_corrector(s), wait_s=wait_s,
                                    poll_s=poll_s)
