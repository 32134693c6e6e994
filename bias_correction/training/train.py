"""Train a correction model (residual framing) with early stopping; write a weights-only checkpoint.

The trained object is :class:`CorrectionModule` itself (degC in, degC out), so training, export and
inference share one code path for normalisation and masking. The loss is the masked MSE of the
correction in units of sigma_delta = 0.5 degC, i.e. the normalised MSE rescaled by
(range / sigma_delta)^2 (models.md 2.3): it only changes the effective learning rate.

Attention cost: full H*W self-attention at 50x50 costs ~8 min per epoch of 480 samples on 2 CPU
cores. When ``kv_pool`` is not given, ConvGRU-SA keys/values are average-pooled with the smallest
stride in (1, 2, 4, 8) that leaves at most MAX_ATTENTION_KEYS key positions (50x50 -> stride 4,
13x13 keys); queries stay at full resolution (models.md 11.2, "alternatives").

Random tiles (``Training.tile_size``, models.md 11.2): domain-dependent models train on random
tile x tile crops (one crop per sample, shared by its T steps, aux and target, drawn from a seeded
generator among crops holding ocean) and are validated on the whole domain through the blended
tiling that inference uses (``correction.tiling.run_tiled``, same tile, same margin/ramp rule as the
runtime). The checkpoint records the tile in ``meta["tile"]``; ``meta["grid"]`` stays the full grid.
With ``lazy_tiles`` the tiles are read from the archive per batch instead (``training.lazy_tiles``, the
same crops in the same order) and validation scores fixed seeded tiles, not the whole domain.

Resumable (``resume``): after every epoch ``out_dir/train_state.pt`` is replaced atomically with
everything needed for a bitwise-identical continuation (weights, optimiser, best epoch so far, early
stopping counter, RNG states of the loader, the tile sampler, torch and numpy) plus a fingerprint of
the configuration (minus ``epochs``/``resume``) and the data. A matching state is continued (``epochs``
may be raised to extend a run); a mismatching one is ignored with a warning. A finished run writes
``checkpoint.pt`` and deletes the state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import bias_correction
from bias_correction.config import Training
from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.grid.grids import RegularGrid
from bias_correction.inputs import NO_RESIDUAL
from bias_correction.training.architectures import (
    DIRECT,
    DOMAIN_INDEPENDENT,
    KV_POOLED,
    LEAD_SCALE_DAYS,
    WRAPPER_CHANNELS,
    CorrectionModule,
    build_model,
    count_parameters,
    laplacian_penalty,
)
from bias_correction.training.dataset import SampleSet
from bias_correction.training.sources import (  # noqa: F401  EVAL_BATCH, evaluate, predict: imported from here too
    EVAL_BATCH,
    EpochBatches,
    InMemoryData,
    TrainingData,
    evaluate,
    predict,
    tile_blend,
)

LOG = logging.getLogger(__name__)

#: Residual scale of the loss, degC (models.md 2.3).
SIGMA_DELTA_DEGC = 0.5
#: Upper bound on attention key positions when kv_pool is chosen automatically.
MAX_ATTENTION_KEYS = 256
CHECKPOINT_NAME = "checkpoint.pt"
#: Resumable training state, replaced after every epoch and deleted when the run completes.
STATE_NAME = "train_state.pt"
STATE_VERSION = 1
FRAMING = "residual: sst_corrected = hycom_last + g(x); zero-initialised 1x1 head"


def framing(residual_base: str) -> str:
    """Human-readable framing recorded in checkpoints, manifests and ONNX metadata."""
    if residual_base == "hycom":
        return FRAMING
    if residual_base == NO_RESIDUAL:
        return ("direct (the paper's framing): sst_corrected = g(x), the network regresses the normalised field "
                "itself; zero-initialised head (epoch 0 = the normalisation's minimum)")
    return (f"residual on the latest analysis: sst_corrected = {residual_base}_last + g(x); zero-initialised head "
            f"(epoch 0 = persistence)")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced; RMSE in degC over ocean pixels of the validation samples."""

    checkpoint: Path
    best_epoch: int  # 0 = the untrained model (raw HYCOM) was never beaten
    epochs_run: int
    val_rmse_raw: float
    val_rmse_corrected: float
    train_seconds: float
    n_parameters: int
    resumed_from_epoch: int | None = None  # last completed epoch of the state this run continued


def auto_kv_pool(shape: tuple[int, int], max_keys: int = MAX_ATTENTION_KEYS) -> int:
    """Smallest key/value pooling stride in (1, 2, 4, 8) giving <= max_keys key positions."""
    h, w = shape
    for p in (1, 2, 4, 8):
        if math.ceil(h / p) * math.ceil(w / p) <= max_keys:
            return p
    return 8


def architecture_kwargs(cfg: Training, shape: tuple[int, int], overrides: dict[str, Any] | None = None,
                        n_aux: int = 0) -> dict[str, Any]:
    """Constructor kwargs of the core network for ``cfg`` (JSON primitives, stored in the checkpoint)."""
    kw: dict[str, Any] = {"in_channels": WRAPPER_CHANNELS + int(n_aux), "features": int(cfg.features),
                          "hidden": int(cfg.hidden), "seq_len": int(cfg.seq_len)}
    if cfg.model in KV_POOLED:
        kw["kv_pool"] = auto_kv_pool(shape)
    kw.update(overrides or {})
    return kw


def _masked_sq(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared degC errors and pixel count over cells finite in both (where, not multiply: no NaN grads)."""
    ok = torch.isfinite(out) & torch.isfinite(y)
    d = torch.where(ok, out - y, torch.zeros_like(out))
    return (d * d).sum(), ok.sum()


def training_tile(cfg: Training, shape: tuple[int, int]) -> tuple[int, int] | None:
    """(rows, cols) of the random training tile of ``cfg`` on a ``shape`` domain; None = whole domain.

    Only when ``tile_size`` is set, the model is domain-dependent (or ``tile_all_models``) and the domain
    is larger than the tile in either dimension; a dimension smaller than the tile keeps its full size.
    """
    if cfg.tile_size is None or (cfg.model in DOMAIN_INDEPENDENT and not cfg.tile_all_models):
        return None
    h, w = (int(v) for v in shape)
    t = int(cfg.tile_size)
    if t >= h and t >= w:
        return None
    return (min(t, h), min(t, w))


def _hidden_tap(model: CorrectionModule, cfg_model: str) -> torch.nn.Module:
    tap = getattr(model.core, "hidden_tap", None)
    if not isinstance(tap, torch.nn.Module):
        raise ConfigError(f"training.laplacian_weight > 0 needs a core that exposes its last hidden state "
                          f"(FAConvLSTM, models.md 7.3); {cfg_model!r} does not: set laplacian_weight to 0")
    return tap


def training_loss(model: CorrectionModule, x: torch.Tensor, lead: torch.Tensor, aux: torch.Tensor | None,
                  y: torch.Tensor, laplacian_weight: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, sum of squared degC errors, ocean cell count) of one batch.

    loss = masked MSE / SIGMA_DELTA^2, plus ``laplacian_weight * laplacian_penalty(H_T)`` on the last
    hidden state (FAConvLSTM's ``hidden_tap``) when the weight is > 0.
    """
    hidden: list[torch.Tensor] = []
    handle = None
    if laplacian_weight > 0:
        handle = _hidden_tap(model, type(model.core).__name__).register_forward_hook(
            lambda _m, _i, out: hidden.append(out))
    try:
        out = model(x, lead, aux if model.n_aux else None)
    finally:
        if handle is not None:
            handle.remove()
    sq, n = _masked_sq(out, y)
    loss = sq / n.clamp(min=1) / (SIGMA_DELTA_DEGC ** 2)
    if laplacian_weight > 0:
        loss = loss + laplacian_weight * laplacian_penalty(hidden[-1])
    return loss, sq, n


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so the checkpoint meta holds only primitives (weights_only loading)."""
    return json.loads(json.dumps(obj, default=str))


def train_fingerprint(cfg: Training, data: TrainingData, *, grid: RegularGrid, mask_hash: str,
                      arch_kwargs: dict[str, Any] | None = None) -> str:
    """sha256 of what a resumed run must share with the interrupted one: the configuration (without
    ``epochs``, which may be raised to extend a run, and ``resume``), architecture overrides, grid, mask
    and the samples (counts, aux names, shapes, first/last valid day and a digest of the arrays, or for
    lazy tiles of the index and the archive files' content digests)."""
    h = hashlib.sha256()
    sets = data.fingerprint_sets(h)
    doc = {"state_version": STATE_VERSION, "training": cfg.model_dump(mode="json", exclude={"epochs", "resume"}),
           "arch_kwargs": arch_kwargs or {}, "grid": grid.to_dict(), "mask_hash": mask_hash, "samples": sets}
    h.update(json.dumps(doc, sort_keys=True, default=str).encode())
    return h.hexdigest()


def training_data(samples_train: Any, samples_val: Any, cfg: Training) -> TrainingData:
    """The loop's data: in-memory sample sets, or lazy archive samples (``cfg.lazy_tiles``); they must agree."""
    if isinstance(samples_train, SampleSet) and isinstance(samples_val, SampleSet):
        if cfg.lazy_tiles:
            raise ConfigError("training.lazy_tiles reads tiles from the archive (sstbc train); these samples are in memory")
        return InMemoryData(samples_train, samples_val)
    from bias_correction.training.lazy_batches import LazyTileData, check_lazy_config
    from bias_correction.training.lazy_tiles import LazySamples

    if not (isinstance(samples_train, LazySamples) and isinstance(samples_val, LazySamples)):
        raise ConfigError(f"training samples must be SampleSets or LazySamples, got {type(samples_train).__name__}")
    check_lazy_config(cfg)
    return LazyTileData(samples_train, samples_val, seed=cfg.seed)


def _numpy_rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_rng_state(st: dict[str, Any]) -> None:
    np.random.set_state((st["kind"], st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"], st["gauss"]))


def _save_state(path: Path, blob: dict[str, Any]) -> None:
    """Atomic replace (tmp + fsync + rename): a crash leaves the previous state or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(blob, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_train_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The resumable state at ``path`` when it loads weights-only and matches ``fingerprint``; else None
    (with a warning when a state exists but cannot be used)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  corrupt, truncated, or not weights-only
        LOG.warning("training state %s cannot be loaded (%s); starting fresh", path, exc)
        return None
    if not isinstance(blob, dict) or blob.get("version") != STATE_VERSION:
        LOG.warning("training state %s has an unknown layout; starting fresh", path)
        return None
    if blob.get("fingerprint") != fingerprint:
        LOG.warning("training state %s belongs to a different configuration or data (fingerprint %.12s, this "
                    "run %.12s); starting fresh and replacing it", path, blob.get("fingerprint"), fingerprint)
        return None
    return blob


def train_model(
    samples_train: Any,
    samples_val: Any,
    cfg: Training,
    *,
    grid: RegularGrid,
    mask_hash: str,
    data_info: dict[str, Any],
    out_dir: Path,
    progress: bool = True,
    arch_kwargs: dict[str, Any] | None = None,
    resume: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on the samples, keep the best validation epoch, save ``out_dir/checkpoint.pt``.

    The samples are in-memory :class:`SampleSet` s, or with ``cfg.lazy_tiles`` the archive index of
    ``training.lazy_tiles`` (tiles read per batch; validation on fixed seeded tiles, see that module).

    ``arch_kwargs`` overrides constructor arguments (e.g. ``{"kv_pool": 1}`` for full attention).
    ``resume`` (None = ``cfg.resume``, default on): continue from ``out_dir/train_state.pt`` when its
    fingerprint matches (see module doc). ``on_epoch_end(epoch, val_scores)`` runs after the state of each
    epoch is saved; an exception raised there stops the run like a crash would (the state stays).
    """
    t0 = time.perf_counter()
    data = training_data(samples_train, samples_val, cfg)
    if len(samples_train) == 0 or len(samples_val) == 0:
        raise ConfigError(f"need training and validation samples, got {len(samples_train)} and {len(samples_val)}")
    for s, what in ((samples_train, "training"), (samples_val, "validation")):
        if s.seq_len != cfg.seq_len:
            raise ConfigError(f"{what} samples have T={s.seq_len}, configuration says seq_len={cfg.seq_len}")
        if s.shape != grid.shape:
            raise ModelContractError(f"{what} samples are {s.shape[0]}x{s.shape[1]}, grid {grid.grid_id} is "
                                     f"{grid.nlat}x{grid.nlon}")
    resume = cfg.resume if resume is None else bool(resume)

    want_aux = cfg.resolved_aux_inputs
    for s, what in ((samples_train, "training"), (samples_val, "validation")):
        if tuple(s.aux_names) != tuple(want_aux):
            raise ConfigError(f"{what} samples carry auxiliary inputs {list(s.aux_names)}, the configuration "
                              f"asks for {list(want_aux)}")
    vmin, vmax = data.normalisation()
    # Largest correction the model learns from: the publication gate refuses corrections far outside it.
    envelope = data.envelope()
    aux_norm = data.aux_normalisation(vmin, vmax)
    tile = training_tile(cfg, grid.shape)
    # attention size (auto kv_pool) is the tile's when training on tiles
    kw = architecture_kwargs(cfg, tile or grid.shape, arch_kwargs, n_aux=len(aux_norm))
    base = cfg.resolved_residual_base
    base_aux = {"hycom": -1, NO_RESIDUAL: DIRECT}.get(base)
    base_aux = list(samples_train.aux_names).index(base) if base_aux is None else base_aux

    def fresh() -> tuple[CorrectionModule, torch.optim.Optimizer, EpochBatches]:
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        m = CorrectionModule(build_model(cfg.model, **kw), vmin, vmax, aux_norm, base_aux)
        opt = (torch.optim.AdamW(m.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
               if cfg.weight_decay > 0 else torch.optim.Adam(m.parameters(), lr=cfg.learning_rate))
        return (m, opt,
                data.batches(cfg.batch_size, cfg.seed, tile))

    model, opt, loader = fresh()
    lap_w = float(cfg.laplacian_weight)
    if lap_w > 0:
        _hidden_tap(model, cfg.model)  # fail before any work when the core cannot take the term
    n_params = count_parameters(model)
    if tile is not None:
        LOG.info("%s trains on random %dx%d tiles of the %dx%d domain; validation runs %s %dx%d tiles",
                 cfg.model, *tile, *grid.shape, "fixed seeded" if data.lazy else "blended", *tile)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_NAME
    fingerprint = train_fingerprint(cfg, data, grid=grid, mask_hash=mask_hash, arch_kwargs=arch_kwargs)
    state = load_train_state(state_path, fingerprint) if resume else None
    if not resume and state_path.is_file():
        LOG.info("resume is off: ignoring %s, starting fresh", state_path)
    start_epoch = 0
    prior_seconds = 0.0
    resumed_at: list[int] = []
    stopped = False
    epoch_seconds: list[float] = []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            loader.set_rng_state(state["rng"])
            torch.set_rng_state(state["rng"]["torch"])
            _set_numpy_rng_state(state["rng"]["numpy"])
        except Exception as exc:  # noqa: BLE001  e.g. the architecture code changed, configuration did not
            LOG.warning("training state %s matches this run but cannot be restored (%s); starting fresh",
                        state_path, exc)
            state = None
            model, opt, loader = fresh()
    if state is not None:
        start_epoch = int(state["epoch"])
        best_state, best_epoch = state["best_state"], int(state["best_epoch"])
        best_rmse, best_scores = float(state["best_rmse"]), state["best_scores"]
        scores, since_best = state["scores"], int(state["since_best"])
        stopped = bool(state["stopped"])
        epoch_seconds = [float(v) for v in state["epoch_seconds"]]
        prior_seconds = float(state["train_seconds"])
        resumed_at = [*[int(v) for v in state["resumed_at"]], start_epoch]
        LOG.info("%s: resuming from %s after epoch %d/%d (best epoch %d, validation RMSE %.3f °C)",
                 cfg.model, state_path, start_epoch, cfg.epochs, best_epoch, best_rmse)
    else:
        scores = data.evaluate(model, tile)  # epoch 0: zero head => raw HYCOM
        best_rmse, best_epoch = scores["rmse_corrected"], 0
        best_state = copy.deepcopy(model.state_dict())
        best_scores = scores
        since_best = 0
    epochs_run = start_epoch
    resumed = f" (resumed after epoch {start_epoch})" if state is not None else ""
    # disable=None: the bar shows on a terminal and stays out of logs; epochs are also logged.
    bar = tqdm(total=cfg.epochs * len(loader), initial=min(start_epoch, cfg.epochs) * len(loader),
               disable=None if progress else True, unit="batch", leave=True,
               desc=f"{cfg.model} epoch {min(start_epoch + 1, cfg.epochs)}/{cfg.epochs}{resumed}")
    bar.set_postfix(val_rmse_degC=f"{scores['rmse_corrected']:.3f}", raw_degC=f"{scores['rmse_raw']:.3f}")
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if stopped:
                break
            bar.set_description(f"{cfg.model} epoch {epoch}/{cfg.epochs}{resumed}")
            model.train()
            te = time.perf_counter()
            tot, cnt = 0.0, 0
            for x, lead, aux, y in loader:
                loss, sq, n = training_loss(model, x, lead, aux, y, lap_w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                tot += float(sq.detach())
                cnt += int(n)
                bar.update(1)
                bar.set_postfix(loss=f"{tot / max(cnt, 1) / SIGMA_DELTA_DEGC ** 2:.4f}",
                                val_rmse_degC=f"{scores['rmse_corrected']:.3f}")
            epochs_run = epoch
            scores = data.evaluate(model, tile)
            epoch_seconds.append(round(time.perf_counter() - te, 2))
            bar.set_postfix(loss=f"{tot / max(cnt, 1) / SIGMA_DELTA_DEGC ** 2:.4f}",
                            val_rmse_degC=f"{scores['rmse_corrected']:.3f}", raw_degC=f"{scores['rmse_raw']:.3f}")
            LOG.info("%s epoch %d/%d%s: train loss %.4f, validation RMSE %.3f °C (raw HYCOM %.3f °C), %.1f s",
                     cfg.model, epoch, cfg.epochs, resumed, tot / max(cnt, 1) / SIGMA_DELTA_DEGC ** 2,
                     scores["rmse_corrected"], scores["rmse_raw"], epoch_seconds[-1])
            if scores["rmse_corrected"] < best_rmse:
                best_rmse, best_epoch, best_scores = scores["rmse_corrected"], epoch, scores
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
                stopped = since_best >= cfg.patience
            _save_state(state_path, {
                "version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "best_state": best_state, "best_epoch": best_epoch, "best_rmse": float(best_rmse),
                "best_scores": _jsonable(best_scores), "scores": _jsonable(scores), "since_best": since_best,
                "stopped": stopped, "epoch_seconds": epoch_seconds, "resumed_at": resumed_at,
                "train_seconds": prior_seconds + time.perf_counter() - t0,
                "rng": {**loader.rng_state(), "torch": torch.get_rng_state(), "numpy": _numpy_rng_state()},
            })
            if on_epoch_end is not None:
                on_epoch_end(epoch, scores)
    finally:
        bar.close()
    seconds = prior_seconds + time.perf_counter() - t0

    leads = sorted({int(k) for k in samples_train.lead.tolist()})
    period = samples_train.period()
    loss_doc = f"masked MSE / ({SIGMA_DELTA_DEGC} degC)^2"
    if lap_w > 0:
        loss_doc += f" + {lap_w:g} * mean squared neighbour difference of H_T (Laplacian smoothness)"
    meta = _jsonable({
        "architecture": cfg.model,
        "arch_kwargs": kw,
        "seq_len": int(cfg.seq_len),
        "vmin": vmin,
        "correction_envelope_degC": envelope,
        "vmax": vmax,
        "units": "degC",
        "framing": framing(base),
        "input_channels": ["sst_normalised (0 on land)", "ocean_mask", f"lead_days/{LEAD_SCALE_DAYS:g}",
                           *[f"{n} normalised (0 on land)" for n in samples_train.aux_names]],
        "aux_inputs": list(samples_train.aux_names),
        "aux_norm": [list(p) for p in aux_norm],
        "oisst_lag_days": int(cfg.oisst_lag_days),
        "residual_base": base,
        "base_aux": base_aux,
        "grid": grid.to_dict(),
        # Training/inference tile (None = whole domain). "grid" stays the contract grid.
        "tile": None if tile is None else {"nlat": tile[0], "nlon": tile[1], "margin": tile_blend(tile)[0],
                                           "ramp": tile_blend(tile)[1]},
        "mask_hash": mask_hash,
        "lead_days": leads,
        "training_period": {"start": period[0], "end": period[1]} if period else None,
        "validation_period": dict(zip(("start", "end"), samples_val.period() or (None, None))),
        "data_info": data_info,
        "val_scores": best_scores,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "resumed_at_epochs": resumed_at,
        "n_train": len(samples_train),
        "n_val": len(samples_val),
        "n_parameters": n_params,
        "train_seconds": seconds,
        "epoch_seconds": epoch_seconds,
        "hyperparameters": {"learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                            "epochs": cfg.epochs, "patience": cfg.patience, "seed": cfg.seed,
                            "loss": loss_doc, "grad_clip": 1.0, "laplacian_weight": lap_w,
                            "tile_size": cfg.tile_size, "tile_all_models": cfg.tile_all_models,
                            "lazy_tiles": cfg.lazy_tiles},
        # lazy tiles: how batches were read and which fixed tiles validated (None = in-memory samples)
        "lazy_tiles": data.record(),
        "code_version": bias_correction.__version__,
        "torch_version": torch.__version__,
    })
    ckpt = out_dir / CHECKPOINT_NAME
    tmp = ckpt.with_suffix(".pt.tmp")
    torch.save({"state_dict": best_state, "meta": meta}, tmp)
    tmp.replace(ckpt)
    state_path.unlink(missing_ok=True)
    return TrainResult(checkpoint=ckpt, best_epoch=best_epoch, epochs_run=epochs_run,
                       val_rmse_raw=float(best_scores["rmse_raw"]),
                       val_rmse_corrected=float(best_scores["rmse_corrected"]),
                       train_seconds=seconds, n_parameters=n_params,
                       resumed_from_epoch=start_epoch if state is not None else None)


def load_checkpoint(path: Path) -> tuple[CorrectionModule, dict[str, Any]]:
    """Rebuild the trained wrapper (eval mode) and its meta; loads with ``weights_only=True``."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelContractError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # unpickling refused or corrupt file
        raise ModelContractError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ModelContractError(f"checkpoint {path} lacks 'state_dict' or 'meta'")
    meta = blob["meta"]
    model = CorrectionModule(build_model(meta["architecture"], **meta["arch_kwargs"]),
                             meta["vmin"], meta["vmax"], [tuple(p) for p in meta.get("aux_norm", [])],
                             int(meta.get("base_aux", -1)))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), meta
