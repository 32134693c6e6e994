from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from bias_correction.config import Training
from bias_correction.training.architectures import CorrectionModule
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.train import auto_kv_pool, load_checkpoint, train_model
from tests.training import synthetic_cubes


def test_auto_kv_pool() -> None:
    assert auto_kv_pool((12, 16)) == 1
    assert auto_kv_pool((50, 50)) == 4
    assert auto_kv_pool((64, 64)) == 4


def test_tiny_training_beats_raw_and_checkpoint_is_weights_only(tmp_path: Path) -> None:
    hy, oi, mask, grid = synthetic_cubes(nruns=24, noise=0.05, seed=3)
    s = build_samples(hy, oi, mask, seq_len=2)
    train, val = split_chronological(s, 0.25, gap_days=2)
    cfg = Training(model="convgru-sa", seq_len=2, features=4, hidden=8, epochs=4, batch_size=8,
                   learning_rate=3e-3, patience=2, seed=0, aux_inputs=[])  # the paper's framing: HYCOM only
    res = train_model(train, val, cfg, grid=grid, mask_hash="f" * 64, data_info={"final_runs": 24},
                      out_dir=tmp_path, progress=False)
    assert res.checkpoint.is_file() and res.best_epoch >= 1
    assert res.val_rmse_corrected < 0.7 * res.val_rmse_raw, res

    blob = torch.load(res.checkpoint, weights_only=True)
    meta = blob["meta"]
    json.dumps(meta)  # primitives only
    assert meta["architecture"] == "convgru-sa" and meta["seq_len"] == 2
    assert meta["grid"] == grid.to_dict() and meta["mask_hash"] == "f" * 64
    assert meta["lead_days"] == list(range(1, 8)) and meta["data_info"] == {"final_runs": 24}
    assert meta["training_period"]["end"] < meta["validation_period"]["start"]
    assert meta["vmin"] < meta["vmax"]

    model, meta2 = load_checkpoint(res.checkpoint)
    assert isinstance(model, CorrectionModule) and meta2 == meta
    x = torch.from_numpy(val.x[:3])
    with torch.no_grad():
        out = model(x, torch.from_numpy(val.lead[:3]).float())
    assert torch.equal(torch.isnan(out), torch.isnan(x).any(dim=1))


def test_latest_analysis_base_starts_at_persistence_and_improves(tmp_path: Path) -> None:
    """With residual_base = oisst_latest the untrained model is persistence; training must beat it."""
    hy, oi, mask, grid = synthetic_cubes(nruns=24, noise=0.05, seed=3)
    s = build_samples(hy, oi, mask, seq_len=2, aux_inputs=("oisst_latest",))
    train, val = split_chronological(s, 0.25, gap_days=2)
    cfg = Training(model="convgru", seq_len=2, features=4, hidden=8, epochs=4, batch_size=8,
                   learning_rate=3e-3, patience=2, seed=0)
    assert cfg.resolved_aux_inputs == ("oisst_latest",) and cfg.resolved_residual_base == "oisst_latest"
    res = train_model(train, val, cfg, grid=grid, mask_hash="f" * 64, data_info={}, out_dir=tmp_path / "a",
                      progress=False)
    model, meta = load_checkpoint(res.checkpoint)
    assert meta["residual_base"] == "oisst_latest" and meta["base_aux"] == 0 and "persistence" in meta["framing"]
    persistence = val.aux[:, -1, 0]
    rmse_pers = float(np.sqrt(np.nanmean((persistence - val.y) ** 2)))
    with torch.no_grad():
        torch.nn.init.zeros_(model.core.head.weight)
        torch.nn.init.zeros_(model.core.head.bias)
        zero = model(torch.from_numpy(val.x), torch.from_numpy(val.lead).float(), torch.from_numpy(val.aux)).numpy()
    np.testing.assert_allclose(zero, np.where(np.isnan(zero), np.nan, persistence), atol=1e-4)
    assert res.val_rmse_corrected < rmse_pers, (res.val_rmse_corrected, rmse_pers)
