"""The training loop's data for lazy tiles (``Training.lazy_tiles``): batches and validation read from the archive.

Training batches are the in-memory path's: the same seeded shuffle of the samples and the same seeded tile
corners (``sources.pick_crops`` on the tile generator), so the crops, and the weights they train, equal
those cut from an in-memory :class:`~bias_correction.training.dataset.SampleSet`; only the tile windows are read
(``lazy_tiles.LazySamples.read``).

Validation (early stopping) cannot blend tiles over the whole domain without reading it: each validation
sample is scored on :data:`VAL_TILES_PER_SAMPLE` fixed tile positions, drawn once among the tiles holding ocean
from a generator seeded ``Training.seed + 2`` (the same positions every epoch and on resume), the model run
on each tile directly (no blending). Its RMSE is over the cells of those tiles (a cell of two overlapping
tiles counts twice), so it is not the whole-domain score the in-memory path records; the checkpoint's
``meta["lazy_tiles"]`` says so. A model that trains on the whole domain (``train.training_tile`` None: a
convolutional model without ``tile_all_models``, or a domain no larger than the tile) reads whole samples per
batch and is validated once per sample on its whole domain.

Not supported on lazy tiles, each a ConfigError (:func:`check_lazy_config`, ``pipeline.training``): training
without ``tile_size``, tabular models (they fit whole samples in memory), and the calibration block
(``calibration_fraction`` > 0: its conformal calibration predicts whole-domain samples in memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bias_correction.config import Training
from bias_correction.errors import ConfigError
from bias_correction.training.architectures import CorrectionModule
from bias_correction.training.lazy_tiles import CHUNK_CACHE_BYTES, OPEN_FILES, LazySamples
from bias_correction.training.sources import EVAL_BATCH, Batch, crop_starts, pick_crops, predict, score

#: Fixed validation tiles per validation sample.
VAL_TILES_PER_SAMPLE = 4


def check_lazy_config(cfg: Training, calibrating: bool = False) -> None:
    """ConfigError (one line) for what lazy tiles cannot train; ``calibrating``: the run would carve a calibration block."""
    from bias_correction.zoo import is_tabular

    if cfg.tile_size is None:
        raise ConfigError("training.lazy_tiles reads one tile per sample: set training.tile_size")
    if is_tabular(cfg.model):
        raise ConfigError(f"training.lazy_tiles trains gridded networks; {cfg.model!r} fits whole samples in memory")
    if calibrating and cfg.calibration_fraction > 0:
        raise ConfigError("training.lazy_tiles cannot calibrate (the calibration predicts whole-domain samples in "
                          "memory): set training.calibration_fraction = 0")


def _stack(samples: LazySamples, items: list[tuple[int, int, int]], win: tuple[int, int]) -> Batch:
    """Tensors of the windows (sample, row, col) of ``win`` cells."""
    ty, tx = win
    got = [samples.read(i, slice(a, a + ty), slice(b, b + tx)) for i, a, b in items]
    lead = samples.lead[[i for i, _, _ in items]].astype(np.float32)
    return (torch.from_numpy(np.stack([g[0] for g in got])), torch.from_numpy(lead),
            torch.from_numpy(np.stack([g[1] for g in got])), torch.from_numpy(np.stack([g[2] for g in got])))


class LazyTileBatches:
    """``sources.EpochBatches`` of lazy samples: the in-memory path's shuffle and crops, windows read per batch."""

    def __init__(self, samples: LazySamples, batch_size: int, seed: int, tile: tuple[int, int] | None) -> None:
        gen = torch.Generator()
        gen.manual_seed(seed)
        indices: Any = range(len(samples))  # the in-memory loader's sampler over the same length: the same order
        self.loader = DataLoader(indices, batch_size=batch_size, shuffle=True, generator=gen, num_workers=0,
                                 drop_last=False)
        self.tile_gen = torch.Generator().manual_seed(seed + 1)  # tile sampler, as sources.InMemoryBatches
        self.samples, self.tile = samples, tile
        self.starts = crop_starts(samples.mask, tile) if tile is not None else None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.loader:
            rows = idx.tolist()
            picks = pick_crops(self.starts, len(rows), self.tile_gen) if self.starts is not None else [(0, 0)] * len(rows)
            yield _stack(self.samples, [(i, a, b) for i, (a, b) in zip(rows, picks, strict=True)],
                         self.tile or self.samples.shape)

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"loader": self.loader.generator.get_state(), "tiles": self.tile_gen.get_state()}  # type: ignore[union-attr]

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.loader.generator.set_state(state["loader"])  # type: ignore[union-attr]
        self.tile_gen.set_state(state["tiles"])


class LazyTileData:
    """``sources.TrainingData`` of lazy samples (statistics streamed, validation on fixed seeded tiles)."""

    lazy = True

    def __init__(self, train: LazySamples, val: LazySamples, seed: int = 0) -> None:
        self.train, self.val, self.seed = train, val, int(seed) + 2
        self._positions: dict[tuple[int, int], list[tuple[int, int, int]]] = {}

    def normalisation(self) -> tuple[float, float]:
        return self.train.normalisation()

    def envelope(self) -> float | None:
        return self.train.envelope()

    def aux_normalisation(self, vmin: float, vmax: float) -> list[tuple[float, float]]:
        return self.train.aux_normalisation(vmin, vmax)

    def fingerprint_sets(self, h: Any) -> list[dict[str, Any]]:
        return [self.train.fingerprint_doc(h), self.val.fingerprint_doc(h)]

    def batches(self, batch_size: int, seed: int, tile: tuple[int, int] | None) -> LazyTileBatches:
        return LazyTileBatches(self.train, batch_size, seed, tile)

    def positions(self, win: tuple[int, int]) -> list[tuple[int, int, int]]:
        """(validation sample, row, col) of the fixed validation windows of ``win`` cells (seeded once)."""
        if win not in self._positions:
            starts = crop_starts(self.val.mask, win)
            gen = torch.Generator().manual_seed(self.seed)
            out = []
            for i in range(len(self.val)):
                for k in torch.randperm(starts.shape[0], generator=gen)[:VAL_TILES_PER_SAMPLE].tolist():
                    out.append((i, int(starts[k, 0]), int(starts[k, 1])))
            self._positions[win] = out
        return self._positions[win]

    @torch.no_grad()
    def evaluate(self, model: CorrectionModule, tile: tuple[int, int] | None) -> dict[str, Any]:
        model.eval()
        win = tile or self.val.shape
        items = self.positions(win)

        def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
            for j in range(0, len(items), EVAL_BATCH):
                x, lead, aux, y = _stack(self.val, items[j:j + EVAL_BATCH], win)
                yield predict(model, x, lead, aux, None), x[:, -1], y, lead

        return {**score(pairs(), len(self.val)), "coverage": f"{len(items)} fixed {win[0]}x{win[1]} tiles"}

    def record(self) -> dict[str, Any]:
        return {"reads": "tile windows from the archive files per batch", "open_files": OPEN_FILES,
                "chunk_cache_bytes": CHUNK_CACHE_BYTES,
                "validation": {"tiles_per_sample": VAL_TILES_PER_SAMPLE, "seed": self.seed,
                               "rule": "fixed positions among tiles holding ocean, model run per tile, no blending"}}
