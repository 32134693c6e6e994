"""Training samples: T consecutive HYCOM runs at one lead, labelled with OISST on the valid day.

One sample = (run R, lead k): x = hycom[lead=k] at runs R-T+1 .. R  -> [T, H, W] degC,
y = OISST on day R.date() + k -> [H, W] degC. Both carry NaN off the authoritative ocean mask.
Samples with a missing run in the window, or a missing OISST day, are skipped (not filled), so a
gap in the archive never produces a fabricated input.

Optional auxiliary inputs (declared in :mod:`bias_correction.inputs`) ride along per time step,
aligned with the same runs, by their time rule: an analysis input takes the OISST analysis known
when run r_j was issued, i.e. of day r_j - ``oisst_lag_days`` (never the target day: no leakage); a
same-run input takes that run's field at the same lead (given as ``run_fields``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Protocol, Sequence, TypeVar

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset

from bias_correction.errors import ConfigError, InputValidationError
from bias_correction.inputs import AUX_INPUTS as INPUT_REGISTRY

_DAY = np.timedelta64(1, "D")


class Chronological(Protocol):
    """What the chronological splits need of a sample collection (in-memory or the lazy archive source)."""

    valid: np.ndarray

    def __len__(self) -> int: ...

    def subset(self, index: np.ndarray) -> Chronological: ...


S = TypeVar("S", bound=Chronological)


def check_aux_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validated tuple of auxiliary input names (unknown or repeated names fail with the known list)."""
    out = tuple(names)
    bad = [n for n in out if n not in INPUT_REGISTRY]
    if bad or len(set(out)) != len(out):
        raise ConfigError(f"auxiliary inputs {list(out)} invalid; known (each at most once): {', '.join(INPUT_REGISTRY)}")
    return out


def check_sample_args(seq_len: int, aux_inputs: Sequence[str], oisst_lag_days: int) -> tuple[str, ...]:
    """Validated sample arguments shared by the in-memory and the lazy sample builders: the aux names."""
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    aux_names = check_aux_names(aux_inputs)
    if oisst_lag_days < 1:
        raise ConfigError(f"oisst_lag_days must be >= 1 (the analysis of the target day is not known), got {oisst_lag_days}")
    return aux_names


@dataclass(frozen=True, eq=False)
class SampleSet:
    """In-memory samples (N small: ~1500 at 50x50). Arrays are float32 degC with NaN on land."""

    x: np.ndarray  # [N, T, H, W] degC, HYCOM at lead k for runs R-T+1..R
    lead: np.ndarray  # [N] int, lead days
    y: np.ndarray  # [N, H, W] degC, OISST on the valid day
    run: np.ndarray  # [N] datetime64[D], day of the last run R
    valid: np.ndarray  # [N] datetime64[D], R + lead
    mask: np.ndarray  # [H, W] bool, True = ocean (the region mask used to build the set)
    aux: np.ndarray | None = None  # [N, T, A, H, W] auxiliary inputs (units per bias_correction.inputs), NaN on land
    aux_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.x.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.x.shape[2]), int(self.x.shape[3]))

    def subset(self, index: np.ndarray) -> SampleSet:
        """Samples selected by an integer or boolean index (copies nothing more than numpy does)."""
        return SampleSet(self.x[index], self.lead[index], self.y[index], self.run[index],
                         self.valid[index], self.mask, None if self.aux is None else self.aux[index], self.aux_names)

    def with_aux(self, names: Sequence[str]) -> SampleSet:
        """The same samples carrying only the auxiliary inputs ``names`` (in that order)."""
        names = check_aux_names(names)
        if names == self.aux_names:
            return self
        missing = [n for n in names if n not in self.aux_names]
        if missing:
            raise ConfigError(f"samples carry auxiliary inputs {list(self.aux_names)}, not {missing}")
        aux = self.aux[:, :, [self.aux_names.index(n) for n in names]] if names else None  # type: ignore[index]
        return SampleSet(self.x, self.lead, self.y, self.run, self.valid, self.mask, aux, names)

    def aux_field(self, name: str) -> np.ndarray:
        """[N, T, H, W] of one auxiliary input; a clear error when the set was built without it."""
        if name not in self.aux_names or self.aux is None:
            raise ConfigError(f"samples carry auxiliary inputs {list(self.aux_names)}, not {name!r}")
        return self.aux[:, :, self.aux_names.index(name)]

    def targets_inside(self, rows: slice, cols: slice) -> SampleSet:
        """The same samples with targets only on the cells ``[rows, cols]`` (NaN elsewhere), so loss,
        validation and calibration score those cells only: a model grid's region inside its halo
        (``grid.halo``), whose outer cells see the zero padding and are never published."""
        keep = np.zeros(self.shape, dtype=bool)
        keep[rows, cols] = True
        y = np.where(keep, self.y, np.float32(np.nan)).astype(np.float32)
        return SampleSet(self.x, self.lead, y, self.run, self.valid, self.mask, self.aux, self.aux_names)

    def period(self) -> tuple[str, str] | None:
        """First and last valid day (ISO strings), None when empty."""
        if len(self) == 0:
            return None
        return (str(self.valid.min()), str(self.valid.max()))


def _days(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype("datetime64[D]")


def _check_coords(a: xr.DataArray, b: xr.DataArray, what: str) -> None:
    for c in ("lat", "lon"):
        if a.sizes[c] != b.sizes[c]:
            raise InputValidationError(f"{what}: {c} has {b.sizes[c]} cells, HYCOM has {a.sizes[c]}")
        if c in a.coords and c in b.coords and not np.allclose(a[c].values, b[c].values, atol=1e-6):
            raise InputValidationError(f"{what}: {c} coordinates differ from HYCOM's")


def build_samples(hycom: xr.DataArray, oisst: xr.DataArray, mask: xr.DataArray, seq_len: int, *,
                  aux_inputs: Sequence[str] = (), oisst_lag_days: int = 1,
                  issued_oisst: xr.DataArray | None = None, **run_fields: xr.DataArray) -> SampleSet:
    """Every complete (run, lead) sample, sorted by valid day, then lead, then run.

    hycom (run, lead, lat, lon) degC; oisst (time, lat, lon) degC; mask (lat, lon) bool, True = ocean.
    ``run_fields``: per same-run auxiliary input named in ``aux_inputs``, its (run, lead, lat, lon)
    field in the input's units, covering the same runs and leads as hycom.
    ``issued_oisst`` (time, lat, lon) degC: the analyses as operations had them at run time (the
    preliminary version) for the analysis-type auxiliary inputs; targets stay ``oisst`` (the final).
    None = ``oisst`` for both.
    A field counts as missing when it has no finite value over the ocean; a sample with any missing
    input (aux included) is skipped.
    """
    aux_names = check_sample_args(seq_len, aux_inputs, oisst_lag_days)
    specs = [INPUT_REGISTRY[n] for n in aux_names]
    for spec in specs:
        if spec.per_lead and spec.archived and run_fields.get(spec.name) is None:
            raise InputValidationError(f"auxiliary input {spec.name} requested but no {spec.name} runs were given")
    for da, dims, what in ((hycom, {"run", "lead", "lat", "lon"}, "hycom"),
                           (oisst, {"time", "lat", "lon"}, "oisst"), (mask, {"lat", "lon"}, "mask")):
        if set(da.dims) != dims:
            raise InputValidationError(f"{what} must have dims {sorted(dims)}, got {list(da.dims)}")
    _check_coords(hycom, oisst, "oisst")
    _check_coords(hycom, mask, "mask")

    ocean = np.asarray(mask.transpose("lat", "lon").values, dtype=bool)
    hy = np.asarray(hycom.transpose("run", "lead", "lat", "lon").values, dtype=np.float32)
    hy = np.where(ocean, hy, np.float32(np.nan))
    oi = np.asarray(oisst.transpose("time", "lat", "lon").values, dtype=np.float32)
    oi = np.where(ocean, oi, np.float32(np.nan))
    oi_in, oi_in_index = oi, None  # the analyses fed as inputs (as issued), by day
    if issued_oisst is not None:
        if set(issued_oisst.dims) != {"time", "lat", "lon"}:
            raise InputValidationError(f"issued_oisst must have dims ['lat', 'lon', 'time'], got {list(issued_oisst.dims)}")
        _check_coords(hycom, issued_oisst, "issued_oisst")
        oi_in = np.where(ocean, np.asarray(issued_oisst.transpose("time", "lat", "lon").values, dtype=np.float32),
                         np.float32(np.nan))
        in_days = _days(issued_oisst["time"].values)
        in_ok = np.isfinite(oi_in).any(axis=(1, 2))
        oi_in_index = {d: i for i, d in enumerate(in_days.tolist()) if in_ok[i]}
    run_days = _days(hycom["run"].values)
    leads = np.asarray(hycom["lead"].values).astype(int)
    oi_days = _days(oisst["time"].values)
    if len(np.unique(run_days)) != len(run_days):
        raise InputValidationError("hycom has more than one run on the same day")

    # presence: at least one finite ocean value
    hy_ok = np.isfinite(hy).any(axis=(2, 3))  # [run, lead]
    oi_ok = np.isfinite(oi).any(axis=(1, 2))
    oi_index = {d: i for i, d in enumerate(oi_days.tolist()) if oi_ok[i]}
    in_index = oi_index if oi_in_index is None else oi_in_index
    per_run: dict[str, np.ndarray] = {}  # same-run inputs: (run, lead, lat, lon), NaN off the ocean
    for spec in specs:
        if not spec.per_lead:
            continue
        if not spec.archived:  # derived from the HYCOM SST runs themselves (inputs.InputSpec.values)
            if leads.size == 0 or int(leads[0]) != 1:
                raise InputValidationError(f"{spec.name} is derived from lead day 1; hycom leads start at "
                                           f"{leads[:1].tolist()}")
            per_run[spec.name] = spec.values(hy, lead_axis=1)
            continue
        field = run_fields[spec.name]
        _check_coords(hycom, field, spec.name)
        fr = field.transpose("run", "lead", "lat", "lon")
        if not (np.array_equal(_days(fr["run"].values), run_days)
                and np.array_equal(np.asarray(fr["lead"].values).astype(int), leads)):
            raise InputValidationError(f"{spec.name} must cover the same runs and leads as the HYCOM SST")
        per_run[spec.name] = np.where(ocean, np.asarray(fr.values, dtype=np.float32), np.float32(np.nan))
    per_run_ok = {n: np.isfinite(a).any(axis=(2, 3)) for n, a in per_run.items()}
    needs_analysis = any(not spec.per_lead for spec in specs)

    plan = plan_samples(run_days.tolist(), leads.tolist(), hy_ok, list(per_run_ok.values()), oi_index, in_index,
                        seq_len, int(oisst_lag_days), needs_analysis)
    h, w = ocean.shape
    if len(plan) == 0:
        empty = np.zeros((0,), dtype="datetime64[D]")
        return SampleSet(np.zeros((0, seq_len, h, w), np.float32), np.zeros(0, int),
                         np.zeros((0, h, w), np.float32), empty, empty.copy(), ocean,
                         np.zeros((0, seq_len, len(aux_names), h, w), np.float32) if aux_names else None, aux_names)
    li = plan.lead_index[:, None]
    aux_arr = None
    if aux_names:
        aux_arr = np.stack([per_run[spec.name][plan.window, li] if spec.per_lead else oi_in[plan.latest]
                            for spec in specs], axis=2)  # [N, T, A, H, W]
    return SampleSet(hy[plan.window, li], plan.lead, oi[plan.target], plan.run, plan.valid, ocean, aux_arr, aux_names)


@dataclass(frozen=True)
class SamplePlan:
    """Which fields feed each sample, sorted by valid day, then lead, then run (indices, no data).

    ``window`` [N, T] run indices (runs R-T+1..R); ``latest`` [N, T] indices of the analysis input day of
    each step (-1 when no analysis input is needed); ``lead_index`` [N] position of the lead; ``target`` [N]
    index of the target day."""

    window: np.ndarray
    latest: np.ndarray
    lead_index: np.ndarray
    lead: np.ndarray
    target: np.ndarray
    run: np.ndarray  # [N] datetime64[D]
    valid: np.ndarray  # [N] datetime64[D]

    def __len__(self) -> int:
        return int(self.lead.shape[0])


def plan_samples(run_days: Sequence[dt.date], leads: Sequence[int], hy_ok: np.ndarray, per_run_ok: Sequence[np.ndarray],
                 oi_index: dict[dt.date, int], in_index: dict[dt.date, int], seq_len: int, lag_days: int,
                 needs_analysis: bool) -> SamplePlan:
    """Every complete (run, lead) sample: the rule of :func:`build_samples`, shared with the lazy archive source.

    ``hy_ok`` and each of ``per_run_ok``: [run, lead] presence of the HYCOM (same-run) fields; ``oi_index``:
    target day -> index of the days present; ``in_index``: analysis input day -> index (days present)."""
    cols: list[tuple[list[int], list[int], int, int, int, dt.date, dt.date]] = []
    one = dt.timedelta(days=1)
    lag = one * int(lag_days)
    run_index = {d: i for i, d in enumerate(run_days)}
    for r_day in run_days:
        window_days = [r_day - one * (seq_len - 1 - j) for j in range(seq_len)]
        window = [run_index.get(d) for d in window_days]
        if any(w is None for w in window):
            continue
        latest = [in_index.get(d - lag) for d in window_days]
        if needs_analysis and any(o is None for o in latest):
            continue
        for l_i, k in enumerate(leads):
            if not all(hy_ok[w, l_i] for w in window):
                continue
            if not all(ok[w, l_i] for ok in per_run_ok for w in window):
                continue
            valid = r_day + one * int(k)
            o_i = oi_index.get(valid)
            if o_i is None:
                continue
            steps = [-1 if o is None else o for o in latest]
            cols.append((window, steps, l_i, int(k), o_i, r_day, valid))  # type: ignore[arg-type]
    run_arr = np.array([c[5] for c in cols], dtype="datetime64[D]")
    valid_arr = np.array([c[6] for c in cols], dtype="datetime64[D]")
    lead_arr = np.array([c[3] for c in cols], dtype=int)
    order = np.lexsort((run_arr, lead_arr, valid_arr))
    win = np.array([c[0] for c in cols], dtype=np.int64).reshape(-1, seq_len)
    lat = np.array([c[1] for c in cols], dtype=np.int64).reshape(-1, seq_len)
    return SamplePlan(win[order], lat[order], np.array([c[2] for c in cols], dtype=np.int64)[order], lead_arr[order],
                      np.array([c[4] for c in cols], dtype=np.int64)[order], run_arr[order], valid_arr[order])


def split_by_valid_date(samples: S, boundaries: Sequence[dt.date | str | np.datetime64],
                        gap_days: int = 0) -> list[S]:
    """Cut into len(boundaries)+1 chronological periods by valid day.

    Period i holds boundaries[i-1] <= valid < boundaries[i]. The gap is carved out of the earlier
    period: samples with valid >= boundary - gap_days are dropped from it, so at least ``gap_days``
    empty days separate consecutive periods (the input windows overlap in time).
    """
    b = [np.datetime64(x, "D") for x in boundaries]
    if any(b2 <= b1 for b1, b2 in zip(b, b[1:])):
        raise ConfigError(f"split boundaries must be strictly increasing, got {[str(x) for x in b]}")
    out: list[S] = []
    lo: np.datetime64 | None = None
    for hi in [*b, None]:
        sel = np.ones(len(samples), dtype=bool)
        if lo is not None:
            sel &= samples.valid >= lo
        if hi is not None:
            sel &= samples.valid < hi - gap_days * _DAY
        out.append(samples.subset(np.flatnonzero(sel)))  # type: ignore[arg-type]
        lo = hi
    return out


def split_chronological(samples: S, val_fraction: float, gap_days: int) -> tuple[S, S]:
    """Last ``val_fraction`` of samples (by valid day) for validation, ``gap_days`` empty days before it."""
    n = len(samples)
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, math.ceil(val_fraction * n))
    if n < 2 or n_val >= n:
        raise ConfigError(f"too few samples ({n}) to split off a validation fraction of {val_fraction}")
    boundary = np.sort(samples.valid)[n - n_val]
    train, val = split_by_valid_date(samples, [boundary], gap_days=gap_days)
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(
            f"split at {boundary} with a {gap_days}-day gap leaves {len(train)} training and "
            f"{len(val)} validation samples; more data is needed")
    return train, val


def normalisation(samples: SampleSet) -> tuple[float, float]:
    """One scalar Min-Max pair (vmin, vmax) in degC over ocean pixels of HYCOM and OISST (models.md 2.2).

    Call it on the training samples only, so validation and test data never leak into the scale.
    """
    if len(samples) == 0:
        raise ConfigError("cannot compute the normalisation of an empty sample set")
    vals = [a[np.isfinite(a)] for a in (samples.x, samples.y)]
    allv = np.concatenate(vals)
    if allv.size == 0:
        raise ConfigError("no finite ocean values in the training samples")
    vmin, vmax = float(allv.min()), float(allv.max())
    if not vmax > vmin:
        raise ConfigError(f"degenerate normalisation: vmin = vmax = {vmin} degC")
    return vmin, vmax


class SampleDataset(Dataset):
    """Torch view of a :class:`SampleSet`: (sst [T,H,W] degC, lead_days scalar, aux [T,A,H,W], target [H,W] degC).

    ``aux`` has A = 0 channels when the set carries no auxiliary inputs.
    """

    def __init__(self, samples: SampleSet) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(samples.x, dtype=np.float32))
        self.lead = torch.from_numpy(samples.lead.astype(np.float32))
        self.y = torch.from_numpy(np.ascontiguousarray(samples.y, dtype=np.float32))
        n, t, h, w = samples.x.shape
        aux = samples.aux if samples.aux is not None else np.zeros((n, t, 0, h, w), np.float32)
        self.aux = torch.from_numpy(np.ascontiguousarray(aux, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.lead[i], self.aux[i], self.y[i]


def make_loader(samples: SampleSet, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
    """Single-process loader (data are in memory); a seeded generator makes shuffling reproducible."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(SampleDataset(samples), batch_size=batch_size, shuffle=shuffle, generator=gen,
                      num_workers=0, drop_last=False)
