"""Late inputs: wait for every input the model needs, then fall back in a documented order.

The daily run needs the HYCOM run of the day (and its T-1 predecessors) and each auxiliary input of
the model package (e.g. the latest OISST analysis). Waiting (``wait_for_inputs``) polls until each is
published or ``orchestration.wait_hours`` has passed. Past the deadline:

1. the configured model, when every input is there;
2. else, when only an auxiliary input is late, the HYCOM-only package ``orchestration.fallback_model_id``
   (a model trained beside the default without auxiliary inputs), if configured and installed;
3. else raw HYCOM, published under the same product key and flagged (``sstbc_fallback``, the per-day
   index's ``fallback``), so consumers always get the forecast and know what it is.

A late HYCOM run is not a fallback case: without it there is nothing to publish
(NotYetPublishedError). A fallback product is replaced by the regular one at the next run of that
date once the late input is published (the fallback reason is part of the input digest).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bias_correction.correction.base import Corrector
from bias_correction.errors import NotYetPublishedError
from bias_correction.inputs import HYCOM_SST, aux_specs
from bias_correction.pipeline.context import Context
from bias_correction.pipeline.correct import RunResult, correct_run, run_days_of
from bias_correction.pipeline.fill import archive_input, input_entries, wait_until_published

LOG = logging.getLogger(__name__)


@dataclass
class RawHycom:
    """The last resort of the fallback order: the newest HYCOM run itself, under the model's contract.

    It takes the model's grid, mask and T checks (so the product is the same shape) but no auxiliary
    input, and returns the raw forecast unchanged.
    """

    model: Corrector
    active_provider: str = "none (raw HYCOM)"
    runtime: str = "none"

    def __post_init__(self) -> None:
        self.manifest = self.model.manifest.model_copy(update={"aux_inputs": ()})

    def check_contract(self, grid: Any, mask_hash: str, seq_len: int | None = None) -> None:
        self.model.check_contract(grid, mask_hash, seq_len)

    def correct(self, sst: np.ndarray, lead_days: np.ndarray, aux: np.ndarray | None = None, *,
                valid_days: np.ndarray | None = None, **kw: Any) -> np.ndarray:
        return np.asarray(sst[:, -1], dtype=np.float32)


def wait_for_inputs(ctx: Context, day: dt.date, corrector: Corrector, *, wait_s: float, poll_s: float,
                    **clock: Any) -> dict[str, str]:
    """Wait until every input of the run of ``day`` is published, or the deadline passes.

    Returns ``{input name: reason}`` of the auxiliary inputs still late at the deadline (empty when all
    are there). A HYCOM run still missing at the deadline raises NotYetPublishedError.
    """
    manifest = corrector.manifest
    lag = manifest.oisst_lag_days
    days = run_days_of(day, int(manifest.seq_len))
    wait_until_published(lambda: input_entries(ctx, HYCOM_SST, days, lag), f"HYCOM run {day} 12Z",
                         wait_s=wait_s, poll_s=poll_s, **clock)
    late: dict[str, str] = {}
    for spec in aux_specs(tuple(manifest.aux_inputs)):
        try:
            # the run's own field first (the newest: the one that can be late); then its predecessors
            wait_until_published(lambda s=spec: archive_input(ctx, s, s.day_for_run(day, lag)),
                                 f"{spec.name} for run {day}", wait_s=wait_s, poll_s=poll_s, **clock)
            input_entries(ctx, spec, days, lag)
        except NotYetPublishedError as exc:
            late[spec.name] = str(exc)
    return late


def correct_with_fallback(ctx: Context, day: dt.date, corrector: Corrector,
                          fallback_model: Corrector | None = None) -> RunResult:
    """The daily correction with the fallback order of this module for late auxiliary inputs."""
    try:
        return correct_run(ctx, day, corrector)
    except NotYetPublishedError as exc:
        lag = corrector.manifest.oisst_lag_days
        # a late HYCOM run is not a fallback case: this raises NotYetPublishedError naming the run
        input_entries(ctx, HYCOM_SST, run_days_of(day, int(corrector.manifest.seq_len)), lag)
        reason = str(exc)
    LOG.warning("run %s: an auxiliary input is late (%s); falling back", day, reason)
    if fallback_model is not None and not fallback_model.manifest.aux_inputs:
        try:
            return correct_run(ctx, day, fallback_model,
                               fallback=f"hycom_only_model {fallback_model.manifest.model_id}: {reason}")
        except NotYetPublishedError as exc:
            LOG.warning("run %s: the HYCOM-only fallback %s cannot run either (%s)", day,
                        fallback_model.manifest.model_id, exc)
    return correct_run(ctx, day, RawHycom(corrector), fallback=f"raw_hycom: {reason}")
