"""Schema-2 model packages: self-describing manifest, TorchScript artifact and runtime, parity gate
(max |diff| and RMSE), tiling of larger domains, providers (GPU parts run where CUDA is active)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bias_correction.config import settings_from_dict
from bias_correction.correction import tiling
from bias_correction.correction.manifest import MANIFEST_FILE, write_manifest_json
from bias_correction.doctor import _model
from bias_correction.correction.manifest import load_manifest
from bias_correction.correction.base import load_corrector
from bias_correction.correction.gridded import OnnxCorrector
from bias_correction.correction.session import CUDA, create_session, cuda_active
from bias_correction.errors import ModelContractError, ProviderUnavailableError
from bias_correction.grid.grids import RegularGrid
from bias_correction.training import export as export_mod
from bias_correction.training.export import export_package
from tests.correction.helpers import make_checkpoint

MASK = "b" * 64
T = 3
CONV_GRID = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=24, nlon=32)
SA_GRID = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=12, nlon=16)
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not cuda_active(), reason="needs an active CUDA device")


def _fields(shape: tuple[int, int], batch: int = 7, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = shape
    jj, ii = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    base = 26 + np.sin(jj / 5.0) + 0.5 * np.cos(ii / 7.0)
    x = (base[None, None] + 0.2 * rng.standard_normal((batch, T, h, w))).astype(np.float32)
    x[:, :, : h // 5, : w // 6] = np.nan  # coast
    x[:, :, h // 2, w // 3] = np.nan  # island
    return x, (np.arange(batch) % 7 + 1).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("v2")
    ck = make_checkpoint(root / "conv.pt", CONV_GRID, MASK, arch="convgru", seq_len=T)
    export_package(ck, root / "store", "conv", version="v1")
    ck = make_checkpoint(root / "sa.pt", SA_GRID, MASK, arch="convgru-sa", seq_len=T, kv_pool=2)
    export_package(ck, root / "store", "sa", version="v1")
    return root / "store"


def test_manifest_is_self_describing(store: Path) -> None:
    pkg = store / "conv" / "v1"
    assert sorted(p.name for p in pkg.iterdir()) == ["MODEL_CARD.md", "manifest.json", "model.onnx", "model.ts"]
    man = json.loads((pkg / "manifest.json").read_text())
    assert man["schema_version"] == 2 and man["architecture"] == "convgru" and man["seq_len"] == T
    assert [v["name"] for v in man["input_variables"]] == ["sst", "lead_days"]
    assert man["input_variables"][0]["units"] == "degC"
    assert man["grid"] == CONV_GRID.to_dict() and man["mask_sha256"] == MASK
    assert man["tile"] == {"nlat": 24, "nlon": 32, "domain_dependent": False, "dynamic_hw": True}
    dv = man["training"]["data_versions"]
    assert (dv["oisst_final_days"], dv["oisst_preliminary_days"], dv["oisst_preliminary_share"]) == (60, 20, 0.25)
    assert man["training"]["period_start"] == "2021-01-01"
    assert man["validation"]["rmse_corrected"] == 0.3
    assert man["uncertainty"]["method"] == "calibrated validation residual statistics"
    assert man["uncertainty"]["per_lead_rmse_degC"]["7"] == pytest.approx(0.34)
    par = man["parity"]
    for which in ("cpu", "torchscript"):
        assert par[which]["max_abs_diff_degC"] <= 0.01 and par[which]["rmse_diff_degC"] <= 0.001, which
    assert len(par["cpu"]["shapes"]) == 2  # the tile and an odd non-square shape (dynamic H/W)
    assert par["torchscript"]["method"] == "script" and par["torchscript"]["max_abs_diff_degC"] <= 1e-6
    assert ("skipped" in par["cuda"]) != cuda_active()
    assert man["code_version"]["sstbc"] and "git_commit" in man["code_version"]
    m = load_manifest(pkg)
    from bias_correction.training.export import sha256_file

    for name in ("model.onnx", "model.ts"):
        assert man["artifacts"][name]["sha256"] == sha256_file(pkg / name)
    assert m.residual_rmse_per_lead[1] == pytest.approx(0.22) and not m.domain_dependent and m.dynamic_hw
    card = (pkg / "MODEL_CARD.md").read_text()
    assert "TorchScript (script) vs torch eager" in card and "preliminary share 25.0 %" in card
    assert json.loads((store / "sa" / "v1" / "manifest.json").read_text())["tile"]["domain_dependent"] is True


@pytest.mark.parametrize("artifact", ["model.onnx", "model.ts"])
def test_flipped_byte_in_any_artifact_is_refused(store: Path, tmp_path: Path, artifact: str) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store / "conv", copy / "conv")
    f = copy / "conv" / "v1" / artifact
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0x01
    f.write_bytes(bytes(data))
    for runtime in ("onnx", "torchscript"):
        with pytest.raises(ModelContractError, match=rf"{artifact.replace('.', '[.]')} sha256 .* does not match"):
            load_corrector(copy, "conv", "v1", "cpu", runtime)


def test_parity_rmse_gate_refuses_a_package(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = make_checkpoint(tmp_path / "c.pt", CONV_GRID, MASK, arch="convgru", seq_len=T)
    monkeypatch.setattr(export_mod, "PARITY_RMSE_DEGC", 0.0)  # any float difference at all now fails
    monkeypatch.setattr(export_mod, "_compare", lambda ref, got, what: (1e-4, 1e-8, 1))
    with pytest.raises(ModelContractError, match="RMSE of the difference"):
        export_package(ck, tmp_path / "store", "conv", version="v9")
    assert list((tmp_path / "store" / "conv").iterdir()) == []  # no package, no temp folder
    monkeypatch.setattr(export_mod, "PARITY_RMSE_DEGC", 0.001)
    monkeypatch.setattr(export_mod, "_compare", lambda ref, got, what: (0.02, 0.0, 1))
    with pytest.raises(ModelContractError, match="max \\|diff\\|"):
        export_package(ck, tmp_path / "store", "conv", version="v9")
    assert list((tmp_path / "store" / "conv").iterdir()) == []


def test_torchscript_runtime_matches_onnx_runtime(store: Path) -> None:
    onnx_c = load_corrector(store, "conv", "v1", "cpu", "onnx")
    ts_c = load_corrector(store, "conv", "v1", "cpu", "torchscript")
    assert (onnx_c.runtime, onnx_c.active_provider) == ("onnx", "CPUExecutionProvider")
    assert (ts_c.runtime, ts_c.active_provider) == ("torchscript", "torch-cpu")
    x, lead = _fields((24, 32))
    a, b = onnx_c.correct(x, lead), ts_c.correct(x, lead)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, atol=1e-4, equal_nan=True)
    assert float(np.nanmax(np.abs(a - x[:, -1]))) > 1e-3  # the model does something
    with pytest.raises(ModelContractError, match="no TorchScript artifact"):
        legacy = Path(str(store)) / ".." / "legacy"
        shutil.copytree(store / "conv", legacy / "conv", dirs_exist_ok=True)
        man = json.loads((legacy / "conv" / "v1" / "manifest.json").read_text())
        del man["artifacts"]["model.ts"]
        man["schema_version"] = 1
        write_manifest_json(legacy / "conv" / "v1", man)
        load_corrector(legacy, "conv", "v1", "cpu", "torchscript")


def test_blend_weights_sum_to_one_and_vanish_at_cuts() -> None:
    tiles = tiling.plan((60, 80), (24, 32), margin=5, ramp=4)
    total = np.zeros((60, 80))
    for sy, sx, w in tiles:
        total[sy, sx] += w
        assert (w >= 0).all()
        if sy.start > 0:  # an interior cut on the top edge of this tile: zero weight in the margin
            assert (w[:5] == 0).all()
        if sx.stop < 80:
            assert (w[:, -5:] == 0).all()
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    x, lead = _fields((60, 80))
    same = tiling.run_tiled(lambda xb, lb, ab: xb[:, -1], x, lead, (24, 32), margin=5, ramp=4)
    np.testing.assert_array_equal(same, x[:, -1])  # an identity model tiles to the identity: no seams


def test_tiled_output_equals_untiled_output_for_a_convolutional_model(store: Path) -> None:
    corr = load_corrector(store, "conv", "v1", "cpu")
    x, lead = _fields((61, 83))  # odd sizes: the last tile overlaps more
    whole = corr.correct(x, lead, allow_larger=True, tiles="never")
    tiled = corr.correct(x, lead, allow_larger=True, tiles="always", margin=T + 2, ramp=3, max_batch=10)
    assert whole.shape == tiled.shape == (7, 61, 83)
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(tiled))
    np.testing.assert_allclose(tiled, whole, atol=2e-5, equal_nan=True)
    with pytest.raises(ModelContractError, match="shape"):
        corr.correct(x, lead)  # larger than the tile only when asked for


def test_attention_model_runs_larger_domains_as_blended_tiles(store: Path) -> None:
    corr = load_corrector(store, "sa", "v1", "cpu")
    assert corr.manifest.domain_dependent
    x, lead = _fields((30, 41))
    out = corr.correct(x, lead, allow_larger=True)  # auto: tiles for attention models
    land = ~np.isfinite(x).all(axis=1)
    assert np.isnan(out[land]).all() and np.isfinite(out[~land]).all()
    corr_tile = corr.correct(x[:, :, :12, :16], lead)  # a corner tile on its own
    # Cells of the corner tile that only that tile covers (before the first cut's margin) are identical.
    np.testing.assert_allclose(out[:, :6, :6], corr_tile[:, :6, :6], atol=1e-5, equal_nan=True)
    # No seams: the blended field is no rougher across tile cuts than the tiles themselves.
    jump = np.nanmax(np.abs(np.diff(out - x[:, -1], axis=2)))
    tile_jump = max(np.nanmax(np.abs(np.diff(corr.correct(x[:, :, :12, c:c + 16], lead) - x[:, -1, :12, c:c + 16],
                                             axis=2))) for c in (0, 12, 25))
    assert jump <= 3 * tile_jump + 1e-3


def test_providers_and_gpu_requests_fail_when_not_active(store: Path) -> None:
    path = store / "conv" / "v1" / "model.onnx"
    assert create_session(path, "cpu")[1] == "CPUExecutionProvider"
    if not cuda_active():
        for p in ("cuda", "tensorrt"):
            with pytest.raises(ProviderUnavailableError, match="ExecutionProvider"):
                create_session(path, p)
        with pytest.raises(ProviderUnavailableError, match="torch sees no CUDA"):
            load_corrector(store, "conv", "v1", "cuda", "torchscript")
        assert load_corrector(store, "conv", "v1", "auto").active_provider == "CPUExecutionProvider"


def test_cli_inspect_prints_the_model_card(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main

    assert main(["inspect", str(store / "conv" / "v1")]) == 0
    out = capsys.readouterr().out
    assert "# Model card: conv v1" in out and "model.ts" in out and "schema 2" in out
    assert main(["inspect", str(store / "conv" / "v1"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["kind"] == "model" and payload["manifest"]["parity"]["cpu"]["max_abs_diff_degC"] <= 0.01
    bad = store.parent / "nothing-here"
    assert main(["inspect", str(bad)]) == 2


@gpu
@needs_cuda
def test_cuda_parity_and_io_binding(store: Path, tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "c.pt", CONV_GRID, MASK, arch="convgru-sa", seq_len=T, kv_pool=2)
    pkg = export_package(ck, tmp_path / "store", "sa", version="gpu")
    par = json.loads((pkg / "manifest.json").read_text())["parity"]["cuda"]
    assert "skipped" not in par and par["tf32"] is False
    assert par["max_abs_diff_degC"] <= 0.01 and par["rmse_diff_degC"] <= 0.001
    cpu = load_corrector(tmp_path / "store", "sa", "gpu", "cpu")
    cuda = load_corrector(tmp_path / "store", "sa", "gpu", "cuda")
    assert cuda.active_provider == CUDA and isinstance(cuda, OnnxCorrector)
    x, lead = _fields((24, 32))
    np.testing.assert_allclose(cuda.correct(x[:, :, :24, :32][:, :, :12, :16], lead),
                               cpu.correct(x[:, :, :12, :16], lead), atol=1e-3, equal_nan=True)
    ts = load_corrector(tmp_path / "store", "sa", "gpu", "cuda", "torchscript")
    assert ts.active_provider == "torch-cuda"
    np.testing.assert_allclose(ts.correct(x[:, :, :12, :16], lead), cpu.correct(x[:, :, :12, :16], lead),
                               atol=1e-3, equal_nan=True)


# --- issue 13: manifest.json is covered by its own hash, checked by the runtime, doctor and inspect ---

def test_exported_manifest_is_sealed_and_loads(store: Path) -> None:
    package = store / "conv" / "v1"
    raw = json.loads((package / MANIFEST_FILE).read_text())
    assert len(raw["manifest_sha256"]) == 64
    assert load_manifest(package).oisst_lag_days == raw.get("oisst_lag_days", 1)


def test_hand_edited_lag_is_refused_by_runtime_and_doctor(store: Path, tmp_path: Path) -> None:
    package, store = store / "conv" / "v1", tmp_path / "store"
    pkg = store / "conv" / "v1"
    shutil.copytree(package, pkg)
    mpath = pkg / MANIFEST_FILE
    text = mpath.read_text()
    raw = json.loads(text)
    raw["oisst_lag_days"] = 1
    write_manifest_json(pkg, raw)  # a sealed package with the field present, as exported
    assert load_corrector(store, "conv", "v1", "cpu", "onnx").manifest.oisst_lag_days == 1
    text = mpath.read_text()
    assert '"oisst_lag_days": 1' in text
    mpath.write_text(text.replace('"oisst_lag_days": 1', '"oisst_lag_days": 3'))  # the operator's edit
    with pytest.raises(ModelContractError, match=r"manifest\.json: content sha256 .* does not match its "
                                                 r"manifest_sha256 .* edited or corrupted"):
        load_corrector(store, "conv", "v1", "cpu", "onnx")
    check = _model(settings_from_dict({"model_store": str(store), "model_id": "conv", "model_version": "v1"}))
    assert not check.ok and "manifest_sha256" in check.detail


def test_reindented_manifest_still_loads_unsealed_one_does_not(store: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    shutil.copytree(store / "conv" / "v1", pkg)
    raw = json.loads((pkg / MANIFEST_FILE).read_text())
    (pkg / MANIFEST_FILE).write_text(json.dumps(raw, indent=4, sort_keys=True))  # same content, new layout
    assert load_manifest(pkg).model_id == "conv"
    del raw["manifest_sha256"]
    (pkg / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelContractError, match="has no manifest_sha256"):
        load_manifest(pkg)
