"""The model zoo: every gridded architecture has the common interface, the models.md 11.1 sizes,
TorchScript parity, trains through ``train_model`` and exports through ``export_package``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bias_correction.config import Training
from bias_correction.training.architectures import (
    ARCHITECTURES,
    DOMAIN_INDEPENDENT,
    CorrectionModule,
    build_model,
    count_parameters,
)
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.export import export_package
from bias_correction.training.train import architecture_kwargs, train_model
from tests.correction.helpers import make_checkpoint
from tests.training import synthetic_cubes, synthetic_surf_el

ZOO = ["convlstm", "cbam-convlstm-at", "faconvlstm", "ca-convlstm"]


@pytest.mark.parametrize(("name", "hidden", "kw", "expected"), [
    ("convlstm", 32, {}, 55_937), ("convlstm", 64, {}, 185_121),
    ("cbam-convlstm-at", 32, {}, 56_217), ("cbam-convlstm-at", 64, {}, 185_433),
    ("faconvlstm", 32, {}, 13_317), ("faconvlstm", 64, {}, 47_401),
    ("ca-convlstm", 32, {"layers": 2}, 258_881), ("ca-convlstm", 64, {"layers": 2}, 1_027_713),
    ("ca-convlstm", 32, {"layers": 3}, 419_265), ("ca-convlstm", 64, {"layers": 3}, 1_667_969),
])
def test_parameter_counts_match_models_md(name: str, hidden: int, kw: dict, expected: int) -> None:
    assert count_parameters(build_model(name, in_channels=1, features=16, hidden=hidden, **kw)) == expected


def _wrapper(name: str, t: int = 3, randomise: bool = False) -> CorrectionModule:
    torch.manual_seed(0)
    kw = {"layers": 1} if name == "ca-convlstm" else {}
    m = CorrectionModule(build_model(name, in_channels=3, features=4, hidden=8, seq_len=t, **kw), 20.0, 32.0).eval()
    if randomise:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return m


def _sst(b: int = 2, t: int = 3, h: int = 12, w: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = 25.0 + 3.0 * torch.rand(b, t, h, w, generator=g)
    x[:, :, :3, :4] = float("nan")
    return x


@pytest.mark.parametrize("name", ZOO)
def test_untrained_is_raw_hycom_and_land_is_nan(name: str) -> None:
    m = _wrapper(name)
    sst = _sst()
    with torch.no_grad():
        out = m(sst, torch.tensor([1.0, 7.0]))
    land = torch.isnan(sst).any(dim=1)
    assert out.shape == (2, 12, 16) and torch.equal(torch.isnan(out), land)
    torch.testing.assert_close(out[~land], sst[:, -1][~land], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ZOO)
def test_torchscript_matches_eager_and_land_values_ignored(name: str) -> None:
    m = _wrapper(name, randomise=True)
    sst, lead = _sst(h=13, w=10), torch.tensor([3.0, 4.0])
    scripted = torch.jit.script(m)
    with torch.no_grad():
        a = m(sst, lead)
        torch.testing.assert_close(scripted(sst, lead), a, equal_nan=True, atol=1e-5, rtol=0)
        b = m(torch.where(torch.isnan(sst), torch.full_like(sst, float("inf")), sst), lead)
    torch.testing.assert_close(a, b, equal_nan=True, atol=0, rtol=0)
    assert torch.isfinite(a[~torch.isnan(sst).any(dim=1)]).all()


def test_registry_and_tiling_flags() -> None:
    assert {"convgru-sa", "convgru", *ZOO} <= set(ARCHITECTURES)
    assert DOMAIN_INDEPENDENT == {"convgru", "convlstm"}
    cfg = Training(model="ca-convlstm")
    assert architecture_kwargs(cfg, (50, 50))["kv_pool"] == 4
    assert "kv_pool" not in architecture_kwargs(Training(model="faconvlstm"), (50, 50))


@pytest.mark.parametrize("name", ZOO)
def test_trains_through_train_model(name: str, tmp_path: Path) -> None:
    hy, oi, mask, grid = synthetic_cubes(nruns=10, nlat=8, nlon=10, noise=0.05, seed=3)
    cfg = Training(model=name, seq_len=2, features=4, hidden=4, epochs=1, batch_size=16,
                   learning_rate=3e-3, patience=1, seed=0)
    aux = cfg.resolved_aux_inputs  # the model's default: surf_el for CA-ConvLSTM, else the latest OISST
    s = build_samples(hy, oi, mask, seq_len=2, aux_inputs=aux, surf_el=synthetic_surf_el(hy))
    assert s.aux_names == aux and s.aux is not None and s.aux.shape[2] == len(aux)
    train, val = split_chronological(s, 0.25, gap_days=2)
    extra = {"layers": 1} if name == "ca-convlstm" else None
    res = train_model(train, val, cfg, grid=grid, mask_hash="f" * 64, data_info={}, out_dir=tmp_path,
                      progress=False, arch_kwargs=extra)
    meta = torch.load(res.checkpoint, weights_only=True)["meta"]
    assert meta["architecture"] == name and res.epochs_run == 1 and meta["aux_inputs"] == list(aux)
    assert res.val_rmse_corrected <= res.val_rmse_raw + 1e-9


# Export costs 12-40 s per model on 2 cores; cbam-convlstm-at and faconvlstm export through the same
# path with parity <= 4e-6 degC (checked when the zoo was added; `sstbc benchmark --export` redoes it).
@pytest.mark.parametrize("name", ["convlstm", pytest.param("ca-convlstm", marks=pytest.mark.slow)])
def test_exports_through_the_common_path(name: str, tmp_path: Path) -> None:
    *_, grid = synthetic_cubes(nruns=2)
    kw = {"layers": 1, "hidden": 4} if name == "ca-convlstm" else {}
    aux = ("surf_el",) if name == "ca-convlstm" else ("oisst_latest",)
    ck = make_checkpoint(tmp_path / "ckpt.pt", grid, "a" * 64, arch=name, seq_len=2, aux_inputs=aux, **kw)
    pkg = export_package(ck, tmp_path / "store", "zoo")
    man = json.loads((pkg / "manifest.json").read_text())
    assert man["architecture"] == name and man["aux_inputs"] == list(aux)
    assert man["inputs"][-1]["name"] == "aux" and man["inputs"][-1]["channels"] == list(aux)
    assert man["tile"]["domain_dependent"] is (name not in DOMAIN_INDEPENDENT)
    assert man["parity"]["cpu"]["max_abs_diff_degC"] <= 1e-3
    assert man["parity"]["torchscript"]["max_abs_diff_degC"] <= 1e-3
