"""Resumable training, random-tile training for attention models and FAConvLSTM's Laplacian term."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bias_correction.config import Training
from bias_correction.correction import tiling
from bias_correction.errors import ConfigError
from bias_correction.training import train as train_mod
from bias_correction.training.architectures import CorrectionModule, build_model
from bias_correction.training.dataset import build_samples, make_loader, split_chronological
from bias_correction.training.train import (
    CHECKPOINT_NAME,
    STATE_NAME,
    evaluate,
    load_checkpoint,
    tile_blend,
    train_model,
    training_loss,
    training_tile,
)
from tests.training import synthetic_cubes


class Crash(RuntimeError):
    pass


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(nruns: int = 14, nlat: int = 12, nlon: int = 16, seq_len: int = 2, aux: tuple[str, ...] = ()):
    hy, oi, mask, grid = synthetic_cubes(nruns=nruns, nlat=nlat, nlon=nlon, leads=3, noise=0.05, seed=5)
    s = build_samples(hy, oi, mask, seq_len=seq_len, aux_inputs=aux)
    train, val = split_chronological(s, 0.25, gap_days=seq_len)
    return train, val, grid


def _run(train, val, grid, cfg: Training, out: Path, **kw: Any):
    return train_model(train, val, cfg, grid=grid, mask_hash="f" * 64, data_info={}, out_dir=out, progress=False, **kw)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """FAConvLSTM (dropout: torch RNG) on random tiles (tile RNG) with shuffling (loader RNG): crash after
    epoch 2 of 4, rerun -> identical to an uninterrupted 4-epoch run."""
    train, val, grid = _data()
    cfg = Training(model="faconvlstm", seq_len=2, features=4, hidden=8, epochs=4, batch_size=8, learning_rate=3e-3,
                   patience=10, seed=0, aux_inputs=[], tile_size=8, laplacian_weight=1e-3)
    ref = _run(train, val, grid, cfg, tmp_path / "ref")
    assert not (tmp_path / "ref" / STATE_NAME).exists() and ref.resumed_from_epoch is None

    def crash_after_2(epoch: int, scores: dict) -> None:
        if epoch == 2:
            raise Crash("simulated crash")

    out = tmp_path / "run"
    with pytest.raises(Crash):
        _run(train, val, grid, cfg, out, on_epoch_end=crash_after_2)
    assert (out / STATE_NAME).is_file() and not (out / CHECKPOINT_NAME).exists()
    state = torch.load(out / STATE_NAME, weights_only=True)  # tensors and primitives only
    assert state["epoch"] == 2 and state["fingerprint"] and set(state["rng"]) == {"loader", "tiles", "torch", "numpy"}

    bars: list[dict] = []
    real_tqdm = train_mod.tqdm

    def spy(*a: Any, **k: Any):
        bars.append(k)
        return real_tqdm(*a, **k)

    monkeypatch.setattr(train_mod, "tqdm", spy)
    with caplog.at_level(logging.INFO, logger=train_mod.__name__):
        res = _run(train, val, grid, cfg, out)
    assert res.resumed_from_epoch == 2 and res.epochs_run == 4
    assert any("resuming from" in r.getMessage() and "after epoch 2/4" in r.getMessage() for r in caplog.records)
    assert bars[-1]["initial"] == 2 * bars[-1]["total"] // 4 and "resumed after epoch 2" in bars[-1]["desc"]
    assert not (out / STATE_NAME).exists()

    a, ma = load_checkpoint(ref.checkpoint)
    b, mb = load_checkpoint(res.checkpoint)
    assert ma["best_epoch"] == mb["best_epoch"] and mb["resumed_at_epochs"] == [2]
    assert ma["val_scores"]["rmse_corrected"] == pytest.approx(mb["val_scores"]["rmse_corrected"], abs=1e-9)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6, msg=k)


def test_mismatching_state_is_ignored_with_a_warning_and_resume_off(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    train, val, grid = _data()
    cfg = Training(model="convgru", seq_len=2, features=4, hidden=8, epochs=3, batch_size=8, patience=10,
                   aux_inputs=[])

    def crash(epoch: int, scores: dict) -> None:
        raise Crash

    with pytest.raises(Crash):
        _run(train, val, grid, cfg, tmp_path, on_epoch_end=crash)
    other = cfg.model_copy(update={"learning_rate": 5e-3})
    with caplog.at_level(logging.WARNING, logger=train_mod.__name__):
        res = _run(train, val, grid, other, tmp_path)
    assert res.resumed_from_epoch is None and res.epochs_run == 3
    assert any("different configuration or data" in r.getMessage() for r in caplog.records)

    with pytest.raises(Crash):
        _run(train, val, grid, cfg, tmp_path, on_epoch_end=crash)
    assert _run(train, val, grid, cfg, tmp_path, resume=False).resumed_from_epoch is None
    # more epochs extend a run (epochs is not part of the fingerprint)
    with pytest.raises(Crash):
        _run(train, val, grid, cfg, tmp_path, on_epoch_end=crash)
    res = _run(train, val, grid, cfg.model_copy(update={"epochs": 4}), tmp_path)
    assert res.resumed_from_epoch == 1 and res.epochs_run == 4


def test_training_tile_rules() -> None:
    sa = Training(model="convgru-sa", tile_size=16)
    assert training_tile(sa, (24, 28)) == (16, 16)
    assert training_tile(sa, (16, 16)) is None and training_tile(sa, (12, 40)) == (12, 16)
    assert training_tile(Training(model="convgru-sa"), (24, 28)) is None
    assert training_tile(Training(model="convgru", tile_size=16), (24, 28)) is None  # conv: whole domain
    assert training_tile(Training(model="convgru", tile_size=16, tile_all_models=True), (24, 28)) == (16, 16)
    assert tile_blend((16, 16)) == (2, 2) and tile_blend((64, 64)) == (6, 6)


def test_attention_model_trains_on_tiles_and_validates_tiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, val, grid = _data(nruns=10, nlat=24, nlon=28, aux=("oisst_latest",))
    cfg = Training(model="convgru-sa", seq_len=2, features=4, hidden=8, epochs=1, batch_size=8, patience=2,
                   aux_inputs=["oisst_latest"], tile_size=16)
    seen: dict[bool, set] = {True: set(), False: set()}

    def build(name: str, **kw: Any) -> torch.nn.Module:
        core = build_model(name, **kw)
        core.register_forward_pre_hook(lambda m, args: seen[m.training].add(tuple(args[0].shape[-2:])))
        return core

    monkeypatch.setattr(train_mod, "build_model", build)
    res = _run(train, val, grid, cfg, tmp_path)
    assert seen[True] == {(16, 16)}  # every training batch is a 16x16 crop
    assert seen[False] == {(16, 16)}  # validation: tiled inference with the same tile

    model, meta = load_checkpoint(res.checkpoint)
    assert meta["tile"] == {"nlat": 16, "nlon": 16, "margin": 2, "ramp": 2}
    assert meta["grid"] == grid.to_dict() and meta["hyperparameters"]["tile_size"] == 16
    assert meta["arch_kwargs"]["kv_pool"] == 1  # 16x16 = 256 keys: no pooling needed on the tile
    # the recorded validation covers the whole domain and equals blended tiling over it
    n_ocean = int((np.isfinite(val.x).all(axis=1) & np.isfinite(val.y)).sum())
    assert meta["val_scores"]["n_cells"] == n_ocean
    assert evaluate(model, val, (16, 16))["rmse_corrected"] == pytest.approx(meta["val_scores"]["rmse_corrected"])
    with torch.no_grad():
        fn = lambda x, ld, a: model(*(torch.from_numpy(v) if v is not None else None for v in (x, ld, a))).numpy()  # noqa: E731
        full = tiling.run_tiled(fn, val.x, val.lead.astype(np.float32), (16, 16), aux=val.aux, margin=2, ramp=2)
    assert full.shape == val.y.shape and np.isfinite(full).sum() == np.isfinite(val.x).all(axis=1).sum()


def test_laplacian_term_changes_the_loss_and_is_faconvlstm_only(tmp_path: Path) -> None:
    train, val, grid = _data()
    torch.manual_seed(0)
    core = build_model("faconvlstm", in_channels=3, features=4, hidden=8, seq_len=2)
    model = CorrectionModule(core, 20.0, 32.0).eval()  # eval: no dropout, the same batch gives the same output
    x, lead, aux, y = next(iter(make_loader(train, 8, shuffle=False)))
    l0, sq0, n0 = training_loss(model, x, lead, aux, y, 0.0)
    l1, sq1, n1 = training_loss(model, x, lead, aux, y, 0.5)
    assert torch.equal(sq0, sq1) and int(n0) == int(n1)
    assert float(l1.detach()) > float(l0.detach())  # the hidden state is not constant in space
    assert not core.hidden_tap._forward_hooks  # the hook lives for one forward only
    torch.jit.script(model)  # the tap does not get in the way of export

    cfg = Training(model="faconvlstm", seq_len=2, features=4, hidden=8, epochs=1, batch_size=8,
                   aux_inputs=[], laplacian_weight=1e-3)
    res = _run(train, val, grid, cfg, tmp_path / "fa")
    _, meta = load_checkpoint(res.checkpoint)
    assert meta["hyperparameters"]["laplacian_weight"] == 1e-3 and "Laplacian" in meta["hyperparameters"]["loss"]

    bad = cfg.model_copy(update={"model": "convgru"})
    with pytest.raises(ConfigError, match="laplacian_weight.*FAConvLSTM"):
        _run(train, val, grid, bad, tmp_path / "bad")
