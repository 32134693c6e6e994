"""End to end: tiny training -> ONNX package -> verified load -> parity with torch (CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bias_correction.config import Training, default_aux_inputs
from bias_correction.correction.gridded import OnnxCorrector
from bias_correction.correction.session import create_session
from bias_correction.errors import ModelContractError, ProviderUnavailableError
from bias_correction.grid.grids import RegularGrid
from bias_correction.training import export as export_mod
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.export import export_package, parity_check
from bias_correction.training.train import load_checkpoint, train_model
from tests.training import synthetic_cubes

MASK_HASH = "a" * 64
T = 3


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pkg")
    hy, oi, mask, grid = synthetic_cubes(nruns=16, nlat=12, nlon=16, noise=0.05)
    s = build_samples(hy, oi, mask, seq_len=T, aux_inputs=default_aux_inputs("convgru-sa"))
    train, val = split_chronological(s, 0.25, gap_days=T)
    cfg = Training(model="convgru-sa", seq_len=T, features=4, hidden=8, epochs=1, batch_size=8, patience=1)
    res = train_model(train, val, cfg, grid=grid, mask_hash=MASK_HASH, data_info={"runs": 16},
                      out_dir=root / "ckpt", progress=False)
    store = root / "store"
    pkg = export_package(res.checkpoint, store, "tiny", version="20210501T120000Z")
    return {"store": store, "pkg": pkg, "ckpt": res.checkpoint, "grid": grid, "val": val}


def test_package_layout_and_metadata(package: dict) -> None:
    pkg: Path = package["pkg"]
    assert sorted(p.name for p in pkg.iterdir()) == ["MODEL_CARD.md", "manifest.json", "model.onnx", "model.ts"]
    # no temp dir left behind (the alias files of the model id sit beside its versions)
    assert [p.name for p in pkg.parent.iterdir() if p.is_dir()] == [pkg.name]
    man = json.loads((pkg / "manifest.json").read_text())
    assert man["seq_len"] == T and man["inputs"][0]["shape"] == ["batch", T, 12, 16]
    assert man["grid"] == package["grid"].to_dict() and man["mask_sha256"] == MASK_HASH
    assert man["parity"]["max_abs_diff_degC"] < 1e-3 and man["lead_days"] == list(range(1, 8))
    model = onnx.load(str(pkg / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["seq_len"] == str(T) and props["grid_id"] == package["grid"].grid_id
    assert props["mask_sha256"] == MASK_HASH and "residual" in props["framing"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == T
    with pytest.raises(ModelContractError, match="already exists"):
        export_package(package["ckpt"], package["store"], "tiny", version="20210501T120000Z")


def test_load_and_parity_with_torch(package: dict) -> None:
    corr = OnnxCorrector.load(package["store"], "tiny", "latest", providers="auto")
    assert corr.active_provider == "CPUExecutionProvider" and corr.package_dir == package["pkg"]
    corr.check_contract(package["grid"], MASK_HASH, T)
    val = package["val"]
    x, lead, aux = val.x[:9], val.lead[:9], val.aux[:9]
    assert corr.manifest.aux_inputs == ("oisst_latest", "hycom_tendency")  # the default model's inputs
    out = corr.correct(x, lead, aux)  # int leads, all 7 in one batch
    model, _ = load_checkpoint(package["ckpt"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(lead).float(), torch.from_numpy(aux)).numpy()
    assert out.shape == (9, 12, 16) and out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-5, equal_nan=True)
    with pytest.raises(AttributeError):
        corr.active_provider = "x"  # type: ignore[misc]


def test_contract_mismatches(package: dict) -> None:
    corr = OnnxCorrector.load(package["store"], "tiny", providers="cpu")
    g = package["grid"]
    other = RegularGrid(lat0=g.lat0, lon0=g.lon0, step=g.step, nlat=g.nlat + 1, nlon=g.nlon)
    with pytest.raises(ModelContractError, match=f"expects grid {g.grid_id}"):
        corr.check_contract(other, MASK_HASH)
    with pytest.raises(ModelContractError, match="ocean mask sha256"):
        corr.check_contract(g, "b" * 64)
    with pytest.raises(ModelContractError, match=f"T={T}"):
        corr.check_contract(g, MASK_HASH, seq_len=T + 1)
    x, aux = package["val"].x[:2], package["val"].aux[:2]
    with pytest.raises(ModelContractError, match="shape"):
        corr.correct(x[:, 1:], np.array([1, 2]), aux)
    with pytest.raises(ModelContractError, match="lead_days must have shape"):
        corr.correct(x, np.array([1]), aux)
    with pytest.raises(ModelContractError, match="outside"):
        corr.correct(x, np.array([1, 9]), aux)
    with pytest.raises(ModelContractError, match="floating"):
        corr.correct(np.zeros(x.shape, np.int32), np.array([1, 2]), aux)
    with pytest.raises(ModelContractError, match=r"needs auxiliary inputs \['oisst_latest', 'hycom_tendency'\]"):
        corr.correct(x, np.array([1, 2]))
    with pytest.raises(ModelContractError, match="aux"):
        corr.correct(x, np.array([1, 2]), aux[:, :, :, :-1])
    holed = aux.copy()
    holed[0, -1, 0, -1, -1] = np.nan  # an ocean cell without the latest analysis
    with pytest.raises(ModelContractError, match="oisst_latest is NaN at 1 ocean cells"):
        corr.correct(x, np.array([1, 2]), holed)


def test_tampered_package_refused(package: dict, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(package["store"], store)
    onnx_file = store / "tiny" / "20210501T120000Z" / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ModelContractError, match="model.onnx"):
        OnnxCorrector.load(store, "tiny")


def test_providers(package: dict) -> None:
    onnx_path = package["pkg"] / "model.onnx"
    sess, active = create_session(onnx_path, "auto")
    cuda_active = "CUDAExecutionProvider" in sess.get_providers()
    assert active == ("CUDAExecutionProvider" if cuda_active else "CPUExecutionProvider")
    assert create_session(onnx_path, "cpu")[1] == "CPUExecutionProvider"
    if cuda_active:
        assert create_session(onnx_path, "cuda")[1] == "CUDAExecutionProvider"
    else:
        with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
            create_session(onnx_path, "cuda")


def test_parity_gate_and_atomic_failure(package: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, meta = load_checkpoint(package["ckpt"])
    with torch.no_grad():
        model.core.head.bias.add_(0.05)  # ~0.05 * range degC away from the exported graph
    with pytest.raises(ModelContractError, match="parity failed"):
        parity_check(model, package["pkg"] / "model.onnx", T, 12, 16, meta["vmin"], meta["vmax"])

    def broken(model, path, *a, **k):  # an export that produces garbage
        Path(path).write_bytes(b"junk")
        return True

    monkeypatch.setattr(export_mod, "_export_onnx", broken)
    with pytest.raises(Exception):
        export_package(package["ckpt"], tmp_path / "store", "tiny", version="v1")
    assert list((tmp_path / "store" / "tiny").iterdir()) == []
