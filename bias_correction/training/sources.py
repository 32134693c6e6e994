"""Where the training loop's batches and validation scores come from: in-memory samples or lazy archive tiles.

``train.train_model`` is one loop over a :class:`TrainingData`: the normalisation, the correction envelope,
a fingerprint of the samples, the training batches of an epoch (:class:`EpochBatches`, seeded and resumable)
and the validation scores. :class:`InMemoryData` serves a :class:`~bias_correction.training.dataset.SampleSet`
(random crops cut from the in-memory tensors, validation over the whole domain through blended tiles);
``training.lazy_tiles.LazyTileData`` reads each tile from the archive files instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from bias_correction.correction import tiling
from bias_correction.errors import ConfigError
from bias_correction.gate import training_envelope
from bias_correction.inputs import aux_input
from bias_correction.training.architectures import CorrectionModule
from bias_correction.training.dataset import SampleSet, make_loader, normalisation

#: Samples per model call when validating.
EVAL_BATCH = 16
#: (sst [B,T,H,W] degC, lead [B] days, aux [B,T,A,H,W], target [B,H,W] degC)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EpochBatches(Protocol):
    """The training batches of one run: each iteration is one epoch; RNG state for a bitwise resume."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def rng_state(self) -> dict[str, torch.Tensor]: ...

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None: ...


class TrainingData(Protocol):
    """Training and validation samples as the loop sees them (``train``/``val``: lengths, leads, periods)."""

    train: Any
    val: Any
    lazy: bool

    def normalisation(self) -> tuple[float, float]: ...

    def envelope(self) -> float | None: ...

    def aux_normalisation(self, vmin: float, vmax: float) -> list[tuple[float, float]]: ...

    def fingerprint_sets(self, h: Any) -> list[dict[str, Any]]: ...

    def batches(self, batch_size: int, seed: int, tile: tuple[int, int] | None) -> EpochBatches: ...

    def evaluate(self, model: CorrectionModule, tile: tuple[int, int] | None) -> dict[str, Any]: ...

    def record(self) -> dict[str, Any] | None: ...


def tile_blend(tile: tuple[int, int]) -> tuple[int, int]:
    """(margin, ramp) of the blended tiling for ``tile``: the runtime's rule."""
    return tiling.auto_blend(tile)


def crop_starts(ocean: np.ndarray, tile: tuple[int, int]) -> torch.Tensor:
    """[K, 2] top-left corners (int32) of every tile position holding at least one ocean cell (all when none does)."""
    ty, tx = tile
    c = np.pad(np.asarray(ocean, dtype=np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = c[ty:, tx:] - c[:-ty, tx:] - c[ty:, :-tx] + c[:-ty, :-tx]  # ocean cells per tile position
    iy, ix = np.nonzero(counts > 0) if (counts > 0).any() else np.nonzero(np.ones_like(counts, dtype=bool))
    return torch.from_numpy(np.stack([iy, ix], axis=1).astype(np.int32))


def pick_crops(starts: torch.Tensor, n: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """``n`` random tile corners among ``starts`` (one draw of ``gen``), as (row, col)."""
    return [(int(a), int(b)) for a, b in starts[torch.randint(0, starts.shape[0], (n,), generator=gen)].tolist()]


def random_crop(x: torch.Tensor, aux: torch.Tensor, y: torch.Tensor, tile: tuple[int, int],
                starts: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random crop per sample (x [B,T,H,W], aux [B,T,A,H,W], y [B,H,W]), the same for all of its fields."""
    ty, tx = tile
    pick = pick_crops(starts, x.shape[0], gen)
    xs = torch.stack([x[i, :, a:a + ty, b:b + tx] for i, (a, b) in enumerate(pick)])
    ays = torch.stack([aux[i, :, :, a:a + ty, b:b + tx] for i, (a, b) in enumerate(pick)])
    ys = torch.stack([y[i, a:a + ty, b:b + tx] for i, (a, b) in enumerate(pick)])
    return xs, ays, ys


@torch.no_grad()
def predict(model: CorrectionModule, x: torch.Tensor, lead: torch.Tensor, aux: torch.Tensor,
            tile: tuple[int, int] | None) -> torch.Tensor:
    """Model output [B, H, W] degC on the whole domain: directly, or blended over ``tile`` tiles."""
    a = aux if model.n_aux else None
    if tile is None:
        return model(x, lead, a)
    margin, ramp = tile_blend(tile)

    def fn(xb: np.ndarray, lb: np.ndarray, ab: np.ndarray | None) -> np.ndarray:
        return model(torch.from_numpy(xb), torch.from_numpy(lb),
                     None if ab is None else torch.from_numpy(ab)).numpy()

    out = tiling.run_tiled(fn, x.numpy(), lead.numpy(), tile, aux=None if a is None else a.numpy(),
                           margin=margin, ramp=ramp)
    return torch.from_numpy(out)


def score(pairs: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], n_samples: int
          ) -> dict[str, Any]:
    """RMSE/MAE (degC) of raw HYCOM and of the model over the cells finite in all three, from batches of
    (model output, raw HYCOM, target, lead), plus bias/RMSE of the correction per lead."""
    sq_raw = sq_cor = ab_raw = ab_cor = 0.0
    n = 0
    per_lead: dict[int, list[float]] = {}  # lead -> [sum d, sum d^2, count] of corrected - OISST
    for out, raw, y, lead in pairs:
        ok = torch.isfinite(out) & torch.isfinite(y) & torch.isfinite(raw)
        for k in torch.unique(lead).tolist():
            sel = ok & (lead == k).reshape(-1, 1, 1)
            dk = (out - y)[sel].double()
            acc = per_lead.setdefault(int(k), [0.0, 0.0, 0])
            acc[0] += float(dk.sum()); acc[1] += float((dk * dk).sum()); acc[2] += int(dk.numel())
        dc = (out - y)[ok].double()
        dr = (raw - y)[ok].double()
        sq_cor += float((dc * dc).sum())
        sq_raw += float((dr * dr).sum())
        ab_cor += float(dc.abs().sum())
        ab_raw += float(dr.abs().sum())
        n += int(ok.sum())
    if n == 0:
        raise ConfigError("validation samples have no ocean cells finite in HYCOM, OISST and the model")
    rmse_raw, rmse_cor = math.sqrt(sq_raw / n), math.sqrt(sq_cor / n)
    return {"rmse_raw": rmse_raw, "rmse_corrected": rmse_cor, "mae_raw": ab_raw / n,
            "mae_corrected": ab_cor / n,
            "improvement_pct": 100.0 * (rmse_raw - rmse_cor) / rmse_raw if rmse_raw > 0 else 0.0,
            "n_samples": n_samples, "n_cells": n,
            "residual_per_lead": {str(k): {"bias": a[0] / a[2], "rmse": math.sqrt(a[1] / a[2]), "n": a[2]}
                                  for k, a in sorted(per_lead.items()) if a[2]}}


@torch.no_grad()
def evaluate(model: CorrectionModule, samples: SampleSet, tile: tuple[int, int] | None = None) -> dict[str, Any]:
    """RMSE/MAE (degC) of raw HYCOM (last input frame) and of the model, over the same ocean cells.

    ``tile``: run the model as blended overlapping tiles of that size over the whole domain (as inference does).
    """
    model.eval()
    loader = make_loader(samples, EVAL_BATCH, shuffle=False)
    return score(((predict(model, x, lead, aux, tile), x[:, -1], y, lead) for x, lead, aux, y in loader), len(samples))


def aux_normalisation(samples: SampleSet, vmin: float, vmax: float) -> list[tuple[float, float]]:
    """(offset, scale) per auxiliary input from the training samples only.

    Each input's declared normalisation (``bias_correction.inputs``): ``sst_minmax`` shares the SST
    Min-Max pair (same units, same scale as HYCOM: models.md 2.2); ``anomaly`` becomes an anomaly from
    its training mean in units of 4 standard deviations.
    """
    out: list[tuple[float, float]] = []
    for name in samples.aux_names:
        if aux_input(name).normalisation == "sst_minmax":
            out.append((vmin, vmax - vmin))
            continue
        v = samples.aux_field(name)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise ConfigError(f"auxiliary input {name} has no finite ocean value in the training samples")
        sd = float(v.std())
        out.append((float(v.mean()), 4.0 * sd if sd > 0 else 1.0))
    return out


class InMemoryBatches:
    """Shuffled batches of an in-memory set (seeded loader), each sample cropped to a random tile when given."""

    def __init__(self, samples: SampleSet, batch_size: int, seed: int, tile: tuple[int, int] | None) -> None:
        self.loader = make_loader(samples, batch_size, shuffle=True, seed=seed)
        self.tile_gen = torch.Generator().manual_seed(seed + 1)  # tile sampler
        self.tile = tile
        self.starts = crop_starts(samples.mask, tile) if tile is not None else None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for x, lead, aux, y in self.loader:
            if self.tile is not None:
                x, aux, y = random_crop(x, aux, y, self.tile, self.starts, self.tile_gen)  # type: ignore[arg-type]
            yield x, lead, aux, y

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"loader": self.loader.generator.get_state(), "tiles": self.tile_gen.get_state()}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.loader.generator.set_state(state["loader"])
        self.tile_gen.set_state(state["tiles"])


class InMemoryData:
    """:class:`TrainingData` of in-memory sample sets; validation over the whole domain (blended tiles)."""

    lazy = False

    def __init__(self, train: SampleSet, val: SampleSet) -> None:
        self.train, self.val = train, val

    def normalisation(self) -> tuple[float, float]:
        return normalisation(self.train)

    def envelope(self) -> float | None:
        return training_envelope(self.train.y, self.train.x[:, -1])

    def aux_normalisation(self, vmin: float, vmax: float) -> list[tuple[float, float]]:
        return aux_normalisation(self.train, vmin, vmax)

    def fingerprint_sets(self, h: Any) -> list[dict[str, Any]]:
        """Counts, aux names, shapes and periods of both sets; their arrays go into ``h`` (no copy)."""
        sets = []
        for s in (self.train, self.val):
            sets.append({"n": len(s), "aux": list(s.aux_names), "x": list(s.x.shape), "y": list(s.y.shape),
                         "aux_shape": None if s.aux is None else list(s.aux.shape), "valid": s.period()})
            for a in (s.x, s.y, s.lead, s.aux):
                if a is not None:
                    h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        return sets

    def batches(self, batch_size: int, seed: int, tile: tuple[int, int] | None) -> InMemoryBatches:
        return InMemoryBatches(self.train, batch_size, seed, tile)

    def evaluate(self, model: CorrectionModule, tile: tuple[int, int] | None) -> dict[str, Any]:
        return evaluate(model, self.val, tile)

    def record(self) -> None:
        return None

