"""A checkpoint with random (non-trivial) weights, without training: for export/runtime/tiling tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from bias_correction.grid.grids import RegularGrid
from bias_correction.training.architectures import WRAPPER_CHANNELS, CorrectionModule, build_model


def make_checkpoint(path: Path, grid: RegularGrid, mask_hash: str, *, arch: str = "convgru", seq_len: int = 3,
                    vmin: float = 20.0, vmax: float = 32.0, seed: int = 0, head_std: float = 0.05,
                    aux_inputs: tuple[str, ...] = (), **arch_kw: Any) -> Path:
    """A random (not trained) checkpoint; ``aux_inputs`` adds auxiliary channels (oisst_latest = residual base)."""
    torch.manual_seed(seed)
    kw = {"in_channels": WRAPPER_CHANNELS + len(aux_inputs), "features": 4, "hidden": 6, "seq_len": seq_len, **arch_kw}
    aux_norm = [(vmin, vmax - vmin) if a == "oisst_latest" else (0.0, 0.4) for a in aux_inputs]
    base_aux = list(aux_inputs).index("oisst_latest") if "oisst_latest" in aux_inputs else -1
    model = CorrectionModule(build_model(arch, **kw), vmin, vmax, aux_norm, base_aux)
    with torch.no_grad():  # a zero head would make the model the identity; give it something to do
        torch.nn.init.normal_(model.core.head.weight, std=head_std)
        model.core.head.bias.fill_(-0.01)
        if arch == "convgru-sa":
            model.core.att_x.gamma.fill_(0.5)
            model.core.att_h.gamma.fill_(0.5)
    per_lead = {str(k): {"bias": 0.01, "rmse": 0.2 + 0.02 * k, "n": 1000} for k in range(1, 8)}
    meta = {"architecture": arch, "arch_kwargs": kw, "seq_len": seq_len, "vmin": vmin, "vmax": vmax,
            "units": "degC", "grid": grid.to_dict(), "mask_hash": mask_hash, "lead_days": list(range(1, 8)),
            "training_period": {"start": "2021-01-01", "end": "2021-02-28"},
            "validation_period": {"start": "2021-03-05", "end": "2021-03-31"},
            "data_info": {"oisst_days": {"final": 60, "preliminary": 20}, "runs": ["2021-01-01", "2021-03-31"]},
            "val_scores": {"rmse_raw": 0.5, "rmse_corrected": 0.3, "mae_raw": 0.4, "mae_corrected": 0.25,
                           "improvement_pct": 40.0, "n_samples": 10, "n_cells": 7000,
                           "residual_per_lead": per_lead},
            "best_epoch": 1, "epochs_run": 1, "train_seconds": 1.0,
            "hyperparameters": {"learning_rate": 1e-3},
            "aux_inputs": list(aux_inputs), "aux_norm": [list(p) for p in aux_norm], "base_aux": base_aux,
            "oisst_lag_days": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.eval().state_dict(), "meta": meta}, path)
    return path


def score_rows(model_id: str, version: str, first: dt.date, days: int, leads: int, rmse: dict[str, float],
               z_hist: str | None = None) -> list:
    """Score-table rows of ``days`` consecutive runs from ``first``, leads 1..``leads``, with these RMSEs (and
    this normalised-score histogram, ``verification.recalibration``)."""
    from bias_correction.verification.verify import LeadScore

    return [LeadScore(run=f"{first + dt.timedelta(days=i)}T12:00:00", lead=k,
                      valid_date=str(first + dt.timedelta(days=i + k)), model_id=model_id, model_version=version,
                      product_key="p", oisst_version="final", n=2000, bias_corrected=0,
                      rmse_corrected=rmse["model"] * (1 + 0.01 * ((i * 7 + k) % 5)), rmse_corrected_lo=0,
                      rmse_corrected_hi=0, mae_corrected=0, bias_raw=0, rmse_raw=rmse["raw"], rmse_raw_lo=0,
                      rmse_raw_hi=0, mae_raw=0, bias_persistence=0, rmse_persistence=rmse["persistence"],
                      mae_persistence=0, skill_vs_raw=0, skill_vs_persistence=0, skill_vs_raw_lo=0,
                      skill_vs_raw_hi=0, scored_at="", rmse_model=None, z_hist=z_hist)
            for i in range(days) for k in range(1, leads + 1)]
