"""The model inputs, declared once: what each field is, where it comes from and which time it takes.

Every layer that handles inputs (archive filling, the daily run, provenance, replay, the dataset
builder, training normalisation, tree features, config validation) iterates over these
declarations instead of naming an input. A new input is one :class:`InputSpec` here (plus, for a new
upstream variable, its entry in the source's product table).

Time rules (a sample is the same lead day from the last T runs r_1..r_T):

* ``same_run``: the field of run r_j at the sample's lead (HYCOM SST, HYCOM sea-surface elevation);
* ``analysis_before_run``: the analysis of day r_j - ``oisst_lag_days``, the newest one known when the
  run was issued (never the target day); one field per run, broadcast over the leads.

A *derived* input (``derive``) is computed from an archived field instead of archived itself: the HYCOM
tendency is the same run's SST at the sample's lead minus its SST at lead day 1 (:meth:`InputSpec.values`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from bias_correction.errors import ConfigError

import numpy as np

TimeRule = Literal["same_run", "analysis_before_run"]
Normalisation = Literal["sst_minmax", "anomaly"]
#: How a derived input is made from its archived field: ``change_since_first_lead`` = field(lead) - field(lead 1)
#: of the same run (the forecast's own evolution: a lead-independent bias cancels in it).
Derivation = Literal["change_since_first_lead"]


@dataclass(frozen=True)
class InputSpec:
    """One input field of a model.

    ``source`` and ``variable`` name the archived field (``io.archive``: HYCOM variables by archive
    name; OISST ``sst``); ``native`` is the upstream variable it is made from. ``normalisation``: ``sst_minmax`` shares HYCOM SST's Min-Max pair (same units
    and scale, models.md 2.2); ``anomaly`` subtracts the training mean and divides by 4 standard
    deviations. ``anchor``: an SST field in °C that can serve as the residual base and gives tree
    models a "this minus HYCOM" feature. ``as_issued``: an analysis input takes the version that
    existed at run time (the archived preliminary, else the final), in the daily run and in training;
    targets always use the final.
    """

    name: str
    source: Literal["hycom", "oisst"]
    variable: str
    time_rule: TimeRule
    units: str
    description: str
    native: str = "sst"
    normalisation: Normalisation = "sst_minmax"
    anchor: bool = False
    as_issued: bool = False
    derive: Derivation | None = None

    @property
    def archived(self) -> bool:
        """False for a derived input: nothing of its own is fetched or archived (its base field is)."""
        return self.derive is None

    def values(self, field: np.ndarray, lead_axis: int = 0) -> np.ndarray:
        """The input's values from its archived field (all leads from lead day 1 along ``lead_axis``); the
        field itself unless the input is derived. Every reader (daily run, streamed run, training) calls this."""
        if self.derive is None:
            return field
        if self.derive == "change_since_first_lead":
            return field - np.take(field, [0], axis=lead_axis)
        raise ValueError(f"input {self.name}: unknown derivation {self.derive!r}")  # pragma: no cover

    @property
    def per_lead(self) -> bool:
        """True when the field differs per lead (same run and lead), False when broadcast over leads."""
        return self.time_rule == "same_run"

    @property
    def when_key(self) -> str:
        """Provenance key of the input's time: ``run`` (a forecast run) or ``day`` (an analysis day)."""
        return "run" if self.time_rule == "same_run" else "day"

    def day_for_run(self, run_day: dt.date, oisst_lag_days: int) -> dt.date:
        """The date of the field this input takes for the run of ``run_day``."""
        if self.time_rule == "same_run":
            return run_day
        return run_day - dt.timedelta(days=oisst_lag_days)

    def label_for_run(self, run_day: dt.date, oisst_lag_days: int) -> str:
        """How provenance names the field's time: ``YYYY-MM-DDT12Z`` for a run, ISO date for a day."""
        if self.time_rule == "same_run":
            return f"{run_day:%Y-%m-%dT12Z}"
        return self.day_for_run(run_day, oisst_lag_days).isoformat()


#: The primary input of every model: the HYCOM daily-mean SST forecast of the run at the lead.
HYCOM_SST = InputSpec("hycom_sst", "hycom", "sst", "same_run", "degC",
                      "HYCOM daily-mean surface temperature forecast of the same run and lead", native="water_temp")
#: The latest OISST analysis known at forecast time (day of run - oisst_lag_days: preliminary latency).
OISST_LATEST = InputSpec("oisst_latest", "oisst", "sst", "analysis_before_run", "degC",
                         "latest OISST analysis at forecast time (day of run - oisst_lag_days)", anchor=True,
                            as_issued=True)
#: HYCOM sea-surface elevation of the same run and lead (CA-ConvLSTM's stream 2, models.md 6.3).
SURF_EL = InputSpec("surf_el", "hycom", "surf_el", "same_run", "m",
                    "HYCOM sea surface elevation of the same run and lead (daily mean)", native="surf_el",
                    normalisation="anomaly")

#: HYCOM's own SST change from lead day 1 to the sample's lead (same run): where the forecast says the ocean
#: goes since the analysis, with the lead-independent part of its bias cancelled (issue 11, lever "tendency").
HYCOM_TENDENCY = InputSpec("hycom_tendency", "hycom", "sst", "same_run", "degC",
                           "HYCOM SST change of the same run from lead day 1 to the lead (derived from HYCOM SST)",
                           native="water_temp", normalisation="anomaly", derive="change_since_first_lead")

#: Auxiliary inputs a model may take besides HYCOM SST, by name (config ``training.aux_inputs``,
#: manifest ``aux_inputs``), in declaration order.
AUX_INPUTS: dict[str, InputSpec] = {s.name: s for s in (OISST_LATEST, SURF_EL, HYCOM_TENDENCY)}
#: Every declared input, the primary one included (provenance records name them).
ALL_INPUTS: dict[str, InputSpec] = {HYCOM_SST.name: HYCOM_SST, **AUX_INPUTS}
#: Residual bases: raw HYCOM (the paper's framing) or an anchor input.
#: The HYCOM fields the archive holds per run, by archive variable (SST first).
HYCOM_FIELDS: dict[str, InputSpec] = {s.variable: s for s in ALL_INPUTS.values() if s.source == "hycom" and s.archived}
#: ``"none"``: no residual base, the direct framing of the ConvGRU-SA paper (the network outputs the field).
NO_RESIDUAL = "none"
RESIDUAL_BASES: tuple[str, ...] = ("hycom", NO_RESIDUAL, *(s.name for s in AUX_INPUTS.values() if s.anchor))


def aux_input(name: str) -> InputSpec:
    """The declared auxiliary input ``name``; ConfigError naming the known ones otherwise."""
    try:
        return AUX_INPUTS[name]
    except KeyError:
        raise ConfigError(f"unknown auxiliary input {name!r}; known: {', '.join(AUX_INPUTS)}") from None


def input_spec(name: str) -> InputSpec:
    """Any declared input (the primary HYCOM SST included) by name."""
    try:
        return ALL_INPUTS[name]
    except KeyError:
        raise ConfigError(f"unknown input {name!r}; known: {', '.join(ALL_INPUTS)}") from None


def aux_specs(names: tuple[str, ...] | list[str]) -> tuple[InputSpec, ...]:
    return tuple(aux_input(n) for n in names)


def analysis_lag(names: tuple[str, ...] | list[str], oisst_lag_days: int) -> int | None:
    """The analysis lag the archive must cover for these inputs (None when none takes an analysis)."""
    return oisst_lag_days if any(not aux_input(n).per_lead for n in names) else None


def anchor_input(names: tuple[str, ...] | list[str]) -> str | None:
    """The first anchor among ``names`` (the default residual base when present)."""
    return next((n for n in names if aux_input(n).anchor), None)
