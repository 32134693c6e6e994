"""Configuration of the rolling-origin hindcast (:mod:`.hindcast`): rows, windows, budgets.

The "default" configuration: every zoo model, 3 seeds, the 4 test windows of 2022, 2 worker processes.
Rows have one of two budgets, each the same for every row that has it: the recommended recipe of the lever
study (365 training days, <= 8 epochs, patience 3: the recommended ConvGRU-SA, its final-trained twin and the
paper-faithful row, which the paper trained on a year) and the configuration's budget B0 (120 training days,
<= 4 epochs, patience 2: every other network and the previous default), the budget of the 2026-12-02 run, which all zoo models at the recommended
recipe would exceed 90 min on 2 cores by far (benchmarks/README.md). The lever study ("levers" preset, the
2021 development windows) compared ConvGRU-SA, FAConvLSTM and CBAM-AT at one recipe. :data:`FULL` is the
documented longer configuration.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bias_correction import zoo
from bias_correction.errors import ConfigError
from bias_correction.inputs import HYCOM_TENDENCY, NO_RESIDUAL, OISST_LATEST

WINDOWS_FILE = Path("benchmarks/hindcast_windows.json")


@dataclass(frozen=True)
class Variant:
    """One learned row: a zoo model with its inputs and framing (None = the zoo's defaults)."""

    model: str
    aux_inputs: tuple[str, ...] | None = None
    residual_base: str | None = None
    full_attention: bool = False  # kv_pool = 1 when the domain has <= full_attention_max_keys cells
    label: str = ""
    #: train (and early-stop) on FINAL analyses as inputs, test on the as-issued preliminary ones: the
    #: effect of training where the archive holds only finals (NCEI keeps ~14 preliminary days)
    final_trained: bool = False
    #: the configuration's budget this row takes: "base" (B0: ``train_days``, ``epochs``, ``patience``) or
    #: "recommended" (``recommended_train_days``, ``recommended_epochs``, ``recommended_patience``)
    tier: str = "base"
    #: budget overrides of this row (None = its tier's): the levers of issue 11 item 5
    train_days: int | None = None
    epochs: int | None = None
    patience: int | None = None
    weight_decay: float | None = None

    def budget(self, cfg: HindcastConfig) -> dict[str, Any]:
        """The row's training budget: its tier's in the configuration, with this row's overrides."""
        rec = self.tier == "recommended"
        days, epochs, patience = ((cfg.recommended_train_days, cfg.recommended_epochs, cfg.recommended_patience)
                                  if rec else (cfg.train_days, cfg.epochs, cfg.patience))
        return {"train_days": self.train_days or days, "epochs": self.epochs or epochs,
                "patience": self.patience or patience,
                "weight_decay": cfg.weight_decay if self.weight_decay is None else self.weight_decay}


PAPER = f"{zoo.DEFAULT_MODEL}-paper"
FINAL_TRAINED = f"{zoo.DEFAULT_MODEL}-final-trained"
def _default_label(s: zoo.ModelSpec) -> str:
    inputs = ", ".join(s.default_inputs) or "HYCOM only"
    anchored = ", persistence-anchored" if OISST_LATEST.name in s.default_inputs and s.family == zoo.GRIDDED else ""
    return f"{s.label} (project default: {inputs}{anchored})"


#: The recommended recipe of the lever study (benchmarks/results/levers, chosen on the 2021 development windows
#: by the rule in benchmarks/hindcast_dev_windows.json): a year of training, <= 8 epochs, patience 3, and the
#: default model's inputs (latest analysis + HYCOM tendency). The project's defaults follow it.
RECOMMENDED_BUDGET: dict[str, int] = {"train_days": 365, "epochs": 8, "patience": 3}  # HindcastConfig.recommended_*
#: The project default before the lever study (2026-12-02): latest analysis only, the configuration's budget.
PREVIOUS_DEFAULT = f"{zoo.DEFAULT_MODEL}-2026-12-02"
_DL = zoo.label(zoo.DEFAULT_MODEL)

#: The learned rows a configuration can name: the recommended ConvGRU-SA (the project default), the same trained
#: on final analyses, the paper-faithful ConvGRU-SA (HYCOM only, residual on HYCOM, full attention), the previous
#: default, every other gridded zoo model with its project defaults and the tree ensembles (residual on HYCOM, the
#: same inputs as features). Rows without budget overrides take the configuration's budget.
VARIANTS: dict[str, Variant] = {
    zoo.DEFAULT_MODEL: Variant(zoo.DEFAULT_MODEL, label=f"{_DL} recommended (project default: latest analysis + HYCOM "
                               "tendency, persistence-anchored; 365 training days, <= 8 epochs)", tier="recommended"),
    FINAL_TRAINED: Variant(zoo.DEFAULT_MODEL, label=f"{_DL} recommended, trained on FINAL analyses, tested on the "
                           "as-issued preliminary ones", final_trained=True, tier="recommended"),
    # the paper's setting: HYCOM SST only, the direct framing (no residual), full attention, a year of data
    PAPER: Variant(zoo.DEFAULT_MODEL, (), NO_RESIDUAL, True, f"{_DL} paper-faithful (HYCOM only, direct framing, "
                   "full attention; 365 training days, <= 8 epochs)", tier="recommended"),
    PREVIOUS_DEFAULT: Variant(zoo.DEFAULT_MODEL, (OISST_LATEST.name,),
                              label=f"{_DL} 2026-12-02 default (latest analysis only, persistence-anchored)"),
    **{s.id: Variant(s.id, label=_default_label(s)) for s in zoo.specs(zoo.GRIDDED) if s.id != zoo.DEFAULT_MODEL},
    **{s.id: Variant(s.id, label=_default_label(s)) for s in zoo.specs(zoo.TABULAR)},
}
#: The levers of issue 11 item 5, each a ConvGRU-SA row that changes the 2026-12-02 default recipe (120 training
#: days, <= 4 epochs, the latest analysis as input): the HYCOM tendency input, a year of training, training longer,
#: weight decay; and the runners-up of the default hindcast with the year + tendency recipe, so the
#: recommended configuration is chosen among architectures at one budget. Run on DEVELOPMENT windows
#: (``DEV_WINDOWS_FILE``, preset "levers"), never on the test windows.
TENDENCY_INPUTS = (OISST_LATEST.name, HYCOM_TENDENCY.name)
YEAR_DAYS = 365


def _lever(model: str, what: str, **kw: Any) -> Variant:
    return Variant(model, label=f"{zoo.label(model)} lever: {what}", **kw)


_D = zoo.DEFAULT_MODEL
LEVER_VARIANTS: dict[str, Variant] = {
    f"{_D}+tendency": _lever(_D, "+ HYCOM tendency input", aux_inputs=TENDENCY_INPUTS),
    f"{_D}@365d": _lever(_D, f"{YEAR_DAYS} training days", train_days=YEAR_DAYS),
    f"{_D}@365d+tendency": _lever(_D, f"{YEAR_DAYS} days + tendency", train_days=YEAR_DAYS, aux_inputs=TENDENCY_INPUTS),
    f"{_D}@365d+tendency-8ep": _lever(_D, f"{YEAR_DAYS} days + tendency, <= 8 epochs (patience 3)", train_days=YEAR_DAYS,
                                      aux_inputs=TENDENCY_INPUTS, epochs=8, patience=3),
    f"{_D}@365d+tendency-wd": _lever(_D, f"{YEAR_DAYS} days + tendency, AdamW weight decay 0.01", train_days=YEAR_DAYS,
                                     aux_inputs=TENDENCY_INPUTS, weight_decay=0.01),
    **{f"{m}@365d+tendency": _lever(m, f"{YEAR_DAYS} days + tendency", train_days=YEAR_DAYS, aux_inputs=TENDENCY_INPUTS)
       for m in zoo.ids(zoo.GRIDDED) if m != _D},
}
VARIANTS.update(LEVER_VARIANTS)
#: The lever study's rows: the default recipe, each lever, and the two runners-up of the 2026-12-02 default
#: hindcast (CBAM-AT and FAConvLSTM, the rows that beat persistence there) with the year + tendency recipe.
LEVERS = [PREVIOUS_DEFAULT, *(n for n in LEVER_VARIANTS if n.startswith(_D + "+") or n.startswith(_D + "@")),
          *(f"{m}@365d+tendency" for m in zoo.ids(zoo.GRIDDED) if zoo.get(m).label.startswith(("3DCNN", "FAConv")))]
DEV_WINDOWS_FILE = Path("benchmarks/hindcast_dev_windows.json")

#: Every learned row: the default configuration runs them all.
ALL_LEARNED = [zoo.DEFAULT_MODEL, FINAL_TRAINED, PAPER, PREVIOUS_DEFAULT,
               *(i for i in zoo.ids(zoo.GRIDDED) if i != zoo.DEFAULT_MODEL), *zoo.ids(zoo.TABULAR)]
#: Centre (lat, lon) of the default scored box: southern Hainan's coast and the sea south of it (24 % land
#: in the hard twin). Chosen by its land share alone, before any model ran on it.
COAST_BOX_CENTER = (18.0, 109.92)  # a cell edge of the global 0.08° grid
BASELINES = list(zoo.ids(zoo.BASELINE))
RAW, PERSISTENCE, ORACLE = "raw-hycom", "persistence", "oracle-run"
RB_RAW, RB_PERS = "running-bias-hycom", "running-bias-persistence"
REFERENCE_ROWS = [RAW, PERSISTENCE, ORACLE, RB_RAW, RB_PERS]


@dataclass
class HindcastConfig:
    # The "default" configuration (benchmarks/README.md, "Hindcast"): every model, 3 seeds, 4 windows.
    windows_file: str = str(WINDOWS_FILE)
    windows: list[str] | None = None  # names from the windows file; None = all
    twin_preset: str = "hard"  # bias_correction.testing.twin_presets; "classic" is the old twin
    twin_seed: int = 0
    box_cells: int | None = 20  # square sub-box, cells; None = the whole region
    #: (lat, lon) of the box's centre; None = the region's centre (the all-ocean box of earlier results)
    box_center: tuple[float, float] | None = COAST_BOX_CENTER
    step: float = 0.08
    leads: int = 7
    seq_len: int = 4
    oisst_lag_days: int = 1
    train_days: int = 120  # valid days of training + validation samples before each window's gap
    #: the recommended recipe's budget (rows of tier "recommended"): a year, <= 8 epochs, patience 3
    recommended_train_days: int = RECOMMENDED_BUDGET["train_days"]
    recommended_epochs: int = RECOMMENDED_BUDGET["epochs"]
    recommended_patience: int = RECOMMENDED_BUDGET["patience"]
    val_fraction: float = 0.15
    epochs: int = 4
    patience: int = 2
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    #: share of the training side (its latest valid days, behind a span-day gap) held out to calibrate each
    #: learned row's per-pixel uncertainty (split conformal, ``correction.uncertainty``); 0 = no interval scores
    calibration_fraction: float = 0.15
    features: int = 8
    hidden: int = 16
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    learned: list[str] = field(default_factory=lambda: list(ALL_LEARNED))
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    running_bias_weight: float = 0.05
    full_attention_max_keys: int = 400
    n_boot: int = 1000
    boot_seed: int = 0
    refs: list[str] = field(default_factory=lambda: [zoo.DEFAULT_MODEL, PERSISTENCE, RAW])
    torch_threads: int = 1  # 2 threads on 2 shared cores measured ~100x slower (oversubscription)
    #: trainings run side by side in this many processes (one torch thread each); 1 = in this process
    workers: int = 2
    # tree ensembles: the benchmark's sizes (zoo ModelSpec.bench_params names these attributes)
    tree_rows: int = 200_000
    lgbm_estimators: int = 300
    rf_estimators: int = 60
    rf_max_depth: int = 14

    def max_train_days(self) -> int:
        """The longest training side any configured row needs (rows may override ``train_days``)."""
        return max([self.train_days, *(VARIANTS[n].budget(self)["train_days"] for n in self.learned if n in VARIANTS)])

    @property
    def span(self) -> int:
        """Days one sample reaches: T - 1 runs back, the analysis lag before them, the lead ahead."""
        return self.seq_len - 1 + self.leads + self.oisst_lag_days


#: The documented, not-run "full" configuration (overrides of the default).
FULL: dict[str, Any] = {"box_cells": None, "train_days": 365, "epochs": 12, "patience": 4,
                        "seeds": [0, 1, 2, 3, 4], "n_boot": 2000}
#: The lever study (issue 11 item 5) on the development windows: ConvGRU-SA's levers and the runners-up.
LEVERS_PRESET: dict[str, Any] = {"windows_file": str(DEV_WINDOWS_FILE), "learned": LEVERS, "baselines": []}
PRESETS: dict[str, dict[str, Any]] = {"default": {}, "full": FULL, "levers": LEVERS_PRESET}


def load_windows(path: str | Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Test windows (name, season, start, end: valid days, inclusive) from the committed JSON file."""
    p = Path(path)
    try:
        blob = json.loads(p.read_text())
        wins = [{"name": str(w["name"]), "season": str(w.get("season", w["name"])),
                 "start": dt.date.fromisoformat(w["start"]), "end": dt.date.fromisoformat(w["end"])}
                for w in blob["windows"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p}: expected {{'windows': [{{'name', 'start', 'end'}}]}} with ISO dates ({exc})") from None
    if names is not None:
        unknown = sorted(set(names) - {w["name"] for w in wins})
        if unknown:
            raise ConfigError(f"{p}: no window named {unknown}; known: {[w['name'] for w in wins]}")
        wins = [w for w in wins if w["name"] in names]
    wins.sort(key=lambda w: w["start"])
    for a, b in zip(wins, wins[1:]):
        if b["start"] <= a["end"]:
            raise ConfigError(f"{p}: windows {a['name']} and {b['name']} overlap")
    if not wins or any(w["end"] < w["start"] for w in wins):
        raise ConfigError(f"{p}: need at least one window with start <= end")
    return wins


def config_dict(cfg: HindcastConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def add_arguments(p: Any) -> None:
    """Command-line options shared by ``sstbc hindcast`` and ``benchmarks/hindcast.py``."""
    d = HindcastConfig()
    p.add_argument("--out", default=None, help="output folder (results.json/.md, hindcast.png); default "
                   "benchmarks/results/hindcast, benchmarks/results/levers for --preset levers")
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="default: every model, 3 seeds, 4 test windows; full: the documented longer configuration; "
                        "levers: the default model's levers on the 2021 development windows (--out "
                        "benchmarks/results/levers)")
    p.add_argument("--windows-file", default=None, help=f"default {d.windows_file} ({DEV_WINDOWS_FILE} for levers)")
    p.add_argument("--windows", help="comma-separated window names (default: all in the file)")
    p.add_argument("--twin-preset", default=None, help=f"twin preset (default {d.twin_preset!r})")
    p.add_argument("--learned", help="comma-separated learned rows: " + ", ".join(VARIANTS))
    p.add_argument("--baselines", help="comma-separated statistical baselines ('' for none): " + ", ".join(BASELINES))
    p.add_argument("--seeds", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--refs", help="comma-separated rows every row is compared with, paired (default "
                                  f"{','.join(d.refs)}); the first is the reference of the by-lead difference table")
    p.add_argument("--box-cells", type=int, help="square sub-box size in cells (0 = whole region)")
    p.add_argument("--box-center", help="LAT,LON of the box centre, or 'region' for the region's centre "
                                        f"(default {d.box_center[0]},{d.box_center[1]}: a coastal box)")
    for name in ("epochs", "train_days", "patience", "n_boot", "torch_threads", "workers"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None)


def output_dir(a: Any) -> Path:
    """Where the results go: ``--out``, else the preset's folder under benchmarks/results/."""
    return Path(a.out or f"benchmarks/results/{'levers' if a.preset == 'levers' else 'hindcast'}")


def config_from_args(a: Any) -> HindcastConfig:
    kw: dict[str, Any] = dict(PRESETS[a.preset])
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    if a.windows:
        kw["windows"] = split(a.windows)
    if a.learned is not None:
        kw["learned"] = split(a.learned)
    if a.baselines is not None:
        kw["baselines"] = split(a.baselines)
    if a.seeds:
        kw["seeds"] = [int(s) for s in split(a.seeds)]
    if a.refs:
        kw["refs"] = split(a.refs)
    if a.twin_preset:
        kw["twin_preset"] = a.twin_preset
    if a.box_cells is not None:
        kw["box_cells"] = a.box_cells or None
    if a.box_center:
        kw["box_center"] = None if a.box_center.strip() == "region" else _lat_lon(a.box_center)
    for name in ("epochs", "train_days", "patience", "n_boot", "torch_threads", "workers"):
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    if a.windows_file:
        kw["windows_file"] = a.windows_file
    return HindcastConfig(**kw)


def _lat_lon(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--box-center: expected LAT,LON in degrees (e.g. 18.0,109.92), got {text!r}") from None
    return lat, lon
