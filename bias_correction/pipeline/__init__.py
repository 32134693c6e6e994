"""Orchestration-free composition of the jobs: fill the archive, correct a run, replay, verify, train.

Every function is a plain, idempotent step that the Prefect flows in ``flows/`` wrap as tasks (and
that tests call directly). Nothing here retries across runs or schedules: that is the
orchestrator's job, driven by the retryable/permanent error classes. One module per job:

* ``context``: the settings-built context (store, grid, sources, regridder), mask and model loading;
* ``fill``: archiving OISST days and HYCOM runs, the ocean mask, fetch planning, waiting;
* ``correct``: one run's inputs, inference, publication gate and publishing;
* ``late``: waiting for late inputs and the fallback order (HYCOM-only package, then raw HYCOM);
* ``replay``: regenerating a product from its recorded inputs and model;
* ``verification``: scoring products against OISST, the score table, plots;
* ``training``: training from the archive and export into the model store;
* ``lifecycle``: the OISST preliminary -> final upgrade of archived days and what rests on them.
"""

from __future__ import annotations

from bias_correction.pipeline.context import Context, load_corrector, load_fallback_corrector, make_context, require_mask
from bias_correction.pipeline.correct import RunResult, correct_run, infer, run_inputs
from bias_correction.pipeline.fill import (
    archive_dates,
    archive_hycom_run,
    archive_input,
    archive_oisst_day,
    ensure_mask,
    extra_run_fields,
    plan_fetch,
    training_inputs,
    wait_until_published,
)
from bias_correction.pipeline.late import correct_with_fallback, wait_for_inputs
from bias_correction.pipeline.lifecycle import derived_from_preliminary, preliminary_days, refresh_preliminary
from bias_correction.pipeline.replay import REPLAY_TOLERANCE_DEGC, replay_product
from bias_correction.pipeline.training import export_checkpoint, train_and_export, train_from_archive, training_samples
from bias_correction.pipeline.verification import verification_plots, verify_product, verify_range

__all__ = [
    "Context", "load_corrector", "load_fallback_corrector", "make_context", "require_mask",
    "correct_with_fallback", "wait_for_inputs",
    "RunResult", "correct_run", "infer", "run_inputs",
    "archive_dates", "archive_hycom_run", "archive_input", "archive_oisst_day", "ensure_mask", "extra_run_fields",
    "plan_fetch", "training_inputs", "wait_until_published",
    "derived_from_preliminary", "preliminary_days", "refresh_preliminary",
    "REPLAY_TOLERANCE_DEGC", "replay_product",
    "export_checkpoint", "train_and_export", "train_from_archive", "training_samples",
    "verification_plots", "verify_product", "verify_range",
]
