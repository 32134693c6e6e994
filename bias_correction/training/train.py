"""Train a correction model (residual framing) with early stopping; write a weights-only checkpoint.

The trained object is :class:`CorrectionModule` itself (degC in, degC out), so training, export and
inference share one code path for normalisation and masking. The loss is the masked MSE of the
correction in units of sigma_delta = 0.5 degC, i.e. the normalised MSE rescaled by
(range / sigma_delta)^2 (models.md 2.3): it only changes the effective learning rate.

Attention cost: full H*W self-attention at 50x50 costs ~8 min per epoch of 480 samples on 2 CPU
cores. When ``kv_pool`` is not given, ConvGRU-SA keys/values are average-pooled with the smallest
stride in (1, 2, 4, 8) that leaves at most MAX_ATTENTION_KEYS key positions (50x50 -> stride 4,
13x13 keys); queries stay at full resolution (models.md 11.2, "alternatives").
"""

from __future__ import annotations

import copy
import logging
import json
import math
import time
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
from bias_correction.training.architectures import (
    LEAD_SCALE_DAYS,
    WRAPPER_CHANNELS,
    KV_POOLED,
    CorrectionModule,
    build_model,
    count_parameters,
)
from bias_correction.training.dataset import SampleSet, make_loader, normalisation

LOG = logging.getLogger(__name__)

#: Residual scale of the loss, degC (models.md 2.3).
SIGMA_DELTA_DEGC = 0.5
#: Upper bound on attention key positions when kv_pool is chosen automatically.
MAX_ATTENTION_KEYS = 256
CHECKPOINT_NAME = "checkpoint.pt"
FRAMING = "residual: sst_corrected = hycom_last + g(x); zero-initialised 1x1 head"
EVAL_BATCH = 16


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


def auto_kv_pool(shape: tuple[int, int], max_keys: int = MAX_ATTENTION_KEYS) -> int:
    """Smallest key/value pooling stride in (1, 2, 4, 8) giving <= max_keys key positions."""
    h, w = shape
    for p in (1, 2, 4, 8):
        if math.ceil(h / p) * math.ceil(w / p) <= max_keys:
            return p
    return 8


def architecture_kwargs(cfg: Training, shape: tuple[int, int], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Constructor kwargs of the core network for ``cfg`` (JSON primitives, stored in the checkpoint)."""
    kw: dict[str, Any] = {"in_channels": WRAPPER_CHANNELS, "features": int(cfg.features),
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


@torch.no_grad()
def evaluate(model: CorrectionModule, samples: SampleSet) -> dict[str, float]:
    """RMSE/MAE (degC) of raw HYCOM (last input frame) and of the model, over the same ocean cells."""
    model.eval()
    sq_raw = sq_cor = ab_raw = ab_cor = 0.0
    n = 0
    per_lead: dict[int, list[float]] = {}  # lead -> [sum d, sum d^2, count] of corrected - OISST
    loader = make_loader(samples, EVAL_BATCH, shuffle=False)
    for x, lead, y in loader:
        out = model(x, lead)
        raw = x[:, -1]
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
            "n_samples": len(samples), "n_cells": n,
            "residual_per_lead": {str(k): {"bias": a[0] / a[2], "rmse": math.sqrt(a[1] / a[2]), "n": a[2]}
                                  for k, a in sorted(per_lead.items()) if a[2]}}


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so the checkpoint meta holds only primitives (weights_only loading)."""
    return json.loads(json.dumps(obj, default=str))


def train_model(
    samples_train: SampleSet,
    samples_val: SampleSet,
    cfg: Training,
    *,
    grid: RegularGrid,
    mask_hash: str,
    data_info: dict[str, Any],
    out_dir: Path,
    progress: bool = True,
    arch_kwargs: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on the samples, keep the best validation epoch, save ``out_dir/checkpoint.pt``.

    ``arch_kwargs`` overrides constructor arguments (e.g. ``{"kv_pool": 1}`` for full attention).
    """
    t0 = time.perf_counter()
    if len(samples_train) == 0 or len(samples_val) == 0:
        raise ConfigError(f"need training and validation samples, got {len(samples_train)} and {len(samples_val)}")
    for s, what in ((samples_train, "training"), (samples_val, "validation")):
        if s.seq_len != cfg.seq_len:
            raise ConfigError(f"{what} samples have T={s.seq_len}, configuration says seq_len={cfg.seq_len}")
        if s.shape != grid.shape:
            raise ModelContractError(f"{what} samples are {s.shape[0]}x{s.shape[1]}, grid {grid.grid_id} is "
                                     f"{grid.nlat}x{grid.nlon}")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    vmin, vmax = normalisation(samples_train)
    # Largest corrections the model learns from (99.9th percentile of |OISST - HYCOM_last| over ocean):
    # the publication gate refuses corrections far outside this envelope.
    delta = np.abs(samples_train.y - samples_train.x[:, -1])
    envelope = float(np.nanpercentile(delta[np.isfinite(delta)], 99.9)) if np.isfinite(delta).any() else None
    kw = architecture_kwargs(cfg, grid.shape, arch_kwargs)
    model = CorrectionModule(build_model(cfg.model, **kw), vmin, vmax)
    n_params = count_parameters(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loader = make_loader(samples_train, cfg.batch_size, shuffle=True, seed=cfg.seed)

    scores = evaluate(model, samples_val)  # epoch 0: zero head => raw HYCOM
    best_rmse, best_epoch = scores["rmse_corrected"], 0
    best_state = copy.deepcopy(model.state_dict())
    best_scores = scores
    since_best = 0
    epochs_run = 0
    epoch_seconds: list[float] = []
    # disable=None: the bar shows on a terminal and stays out of logs; epochs are also logged.
    bar = tqdm(total=cfg.epochs * len(loader), disable=None if progress else True, unit="batch", leave=True,
               desc=f"{cfg.model} epoch 1/{cfg.epochs}")
    bar.set_postfix(val_rmse_degC=f"{scores['rmse_corrected']:.3f}", raw_degC=f"{scores['rmse_raw']:.3f}")
    try:
        for epoch in range(1, cfg.epochs + 1):
            bar.set_description(f"{cfg.model} epoch {epoch}/{cfg.epochs}")
            model.train()
            te = time.perf_counter()
            tot, cnt = 0.0, 0
            for x, lead, y in loader:
                out = model(x, lead)
                sq, n = _masked_sq(out, y)
                loss = sq / n.clamp(min=1) / (SIGMA_DELTA_DEGC ** 2)
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
            scores = evaluate(model, samples_val)
            epoch_seconds.append(round(time.perf_counter() - te, 2))
            bar.set_postfix(loss=f"{tot / max(cnt, 1) / SIGMA_DELTA_DEGC ** 2:.4f}",
                            val_rmse_degC=f"{scores['rmse_corrected']:.3f}", raw_degC=f"{scores['rmse_raw']:.3f}")
            LOG.info("%s epoch %d/%d: train loss %.4f, validation RMSE %.3f °C (raw HYCOM %.3f °C), %.1f s",
                     cfg.model, epoch, cfg.epochs, tot / max(cnt, 1) / SIGMA_DELTA_DEGC ** 2,
                     scores["rmse_corrected"], scores["rmse_raw"], epoch_seconds[-1])
            if scores["rmse_corrected"] < best_rmse:
                best_rmse, best_epoch, best_scores = scores["rmse_corrected"], epoch, scores
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    break
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    leads = sorted({int(k) for k in samples_train.lead.tolist()})
    period = samples_train.period()
    meta = _jsonable({
        "architecture": cfg.model,
        "arch_kwargs": kw,
        "seq_len": int(cfg.seq_len),
        "vmin": vmin,
        "correction_envelope_degC": envelope,
        "vmax": vmax,
        "units": "degC",
        "framing": FRAMING,
        "input_channels": ["sst_normalised (0 on land)", "ocean_mask", f"lead_days/{LEAD_SCALE_DAYS:g}"],
        "grid": grid.to_dict(),
        "mask_hash": mask_hash,
        "lead_days": leads,
        "training_period": {"start": period[0], "end": period[1]} if period else None,
        "validation_period": dict(zip(("start", "end"), samples_val.period() or (None, None))),
        "data_info": data_info,
        "val_scores": best_scores,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "n_train": len(samples_train),
        "n_val": len(samples_val),
        "n_parameters": n_params,
        "train_seconds": seconds,
        "epoch_seconds": epoch_seconds,
        "hyperparameters": {"learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                            "epochs": cfg.epochs, "patience": cfg.patience, "seed": cfg.seed,
                            "loss": f"masked MSE / ({SIGMA_DELTA_DEGC} degC)^2", "grad_clip": 1.0},
        "code_version": bias_correction.__version__,
        "torch_version": torch.__version__,
    })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT_NAME
    tmp = ckpt.with_suffix(".pt.tmp")
    torch.save({"state_dict": best_state, "meta": meta}, tmp)
    tmp.replace(ckpt)
    return TrainResult(checkpoint=ckpt, best_epoch=best_epoch, epochs_run=epochs_run,
                       val_rmse_raw=float(best_scores["rmse_raw"]),
                       val_rmse_corrected=float(best_scores["rmse_corrected"]),
                       train_seconds=seconds, n_parameters=n_params)


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
                             meta["vmin"], meta["vmax"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), meta
