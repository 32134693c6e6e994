"""The ``[guard]`` configuration section (``pipeline.guard``), kept out of ``config.py`` for its size.

Like every section it rejects unknown keys and is frozen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Guard(BaseModel):
    """The skill guard (``pipeline.guard``): per lead, the product carries the model only where its recent
    verification is not worse than the better of persistence and raw HYCOM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: Run days of live verification considered (the most recent ones with OISST available).
    window_days: int = Field(30, ge=3, le=365)
    #: Live days needed before they replace the calibration period's statistics (and, on a regime the
    #: model was not trained on, before the model can be carried again).
    min_days: int = Field(10, ge=3)
    #: Paired moving-block bootstrap: iterations, interval level, block (None = T - 1 + max lead + lag, at
    #: most a third of the days).
    n_boot: int = Field(500, ge=50, le=10000)
    level: float = Field(0.95, gt=0.5, lt=1)
    block_days: int | None = Field(None, ge=1)
    #: Model worse than the better reference but not significantly: keep it flagged guard_uncertain
    #: ("keep_flagged") or carry the reference ("reference").
    between: Literal["keep_flagged", "reference"] = "keep_flagged"
    #: Rescale the 68 % / 95 % half-widths of the leads that carry the model from the same live evidence
    #: window (``verification.recalibration``), once ``min_days`` verified runs exist.
    recalibrate_intervals: bool = True
    #: Integral gain of that recalibration (per unit of summed coverage shortfall, on the log scale of the
    #: half-width; 0 = the pooled quantile of the latest ``min_days`` runs only).
    interval_gain: float = Field(0.5, ge=0, le=5)
