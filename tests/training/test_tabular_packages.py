"""Tabular model packages (trees, statistical baselines): round trip, integrity, contract, providers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bias_correction.config import default_aux_inputs
from bias_correction.correction.manifest import write_manifest_json
from bias_correction.correction.manifest import CARD_FILE, MANIFEST_FILE
from bias_correction.correction.base import load_corrector
from bias_correction.correction.tabular import (
    BOOSTER_FILE,
    ONNX_FILE,
    PARAMS_FILE,
    TabularCorrector,
    load_tabular_manifest,
)
from bias_correction.errors import (
    ConfigError,
    ModelContractError,
    ProviderUnavailableError,
)
from bias_correction.grid.grids import RegularGrid
from bias_correction.training.baselines import build_baseline, load_npz, save_npz
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.tabular_export import export_tabular_package, fit_tabular
from bias_correction.training.trees import TreeModel, feature_names, features
from tests.training import synthetic_cubes, synthetic_surf_el

MODELS = ["random-forest", "lightgbm", "mean-bias", "linear-regression", "quantile-mapping"]
TREES = {"random-forest", "lightgbm"}
SMALL = {"lightgbm": {"n_estimators": 30, "num_leaves": 15, "max_rows": 20_000, "n_jobs": 1},
         "random-forest": {"n_estimators": 8, "max_depth": 8, "max_rows": 20_000, "n_jobs": 1}}
MASK_HASH = "a" * 64


def _split(cubes, name: str):
    hy, oi, mask, _ = cubes
    s = build_samples(hy, oi, mask, seq_len=2, aux_inputs=default_aux_inputs(name))
    return split_chronological(s, 0.25, gap_days=2)


@pytest.fixture(scope="module")
def cubes():
    return synthetic_cubes(nruns=24, seed=2)


@pytest.fixture(scope="module")
def packages(cubes, tmp_path_factory):
    """name -> (fitted in-memory model, package folder, train, val); one store for all five."""
    grid = cubes[3]
    store = tmp_path_factory.mktemp("tabular-store")
    out = {}
    for name in MODELS:
        train, val = _split(cubes, name)
        model = fit_tabular(name, train, val, grid=grid, params=SMALL.get(name))
        pkg = export_tabular_package(model, train, val, grid=grid, mask_hash=MASK_HASH, model_store=store,
                                     model_id=name, data_info={"oisst_days": {"final": 30, "preliminary": 2}})
        out[name] = (model, pkg, train, val)
    return store, out


def _copy(pkg: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "store" / name / pkg.name
    shutil.copytree(pkg, dst)
    return tmp_path / "store"


@pytest.mark.parametrize("name", MODELS)
def test_package_round_trip_equals_in_memory_model(packages, name: str) -> None:
    store, pk = packages
    model, pkg, _train, val = pk[name]
    c = load_corrector(store, name)  # the daily pipeline's entry point
    assert isinstance(c, TabularCorrector) and c.package_dir == pkg and not c.on_gpu
    m = c.manifest
    assert (m.model_id, m.architecture, m.seq_len, m.mask_sha256) == (name, name, 2, MASK_HASH)
    assert m.raw["kind"] == "tabular" and m.schema_version == 2
    assert m.aux_inputs == default_aux_inputs(name) and m.oisst_lag_days == 1
    assert set(m.residual_rmse_per_lead) == set(range(1, 8)) == set(m.lead_days)
    assert m.raw["training"]["correction_envelope_degC"] > 0
    assert m.raw["training"]["data_versions"]["oisst_preliminary_days"] == 2
    assert (pkg / CARD_FILE).read_text().startswith(f"# Model card: {name} ")
    assert not [p for p in pkg.parent.iterdir() if p.name.startswith(".")]  # no temp folders left

    got = c.correct(val.x, val.lead.astype(np.float32), val.aux, valid_days=val.valid)
    ref = model.predict(val)
    assert got.shape == val.y.shape and got.dtype == np.float32
    assert np.array_equal(np.isnan(got), ~np.isfinite(val.x).all(axis=1))
    if name in TREES:
        assert m.raw["model_file"] == ONNX_FILE and c.active_provider == "CPUExecutionProvider" and c.runtime == "onnx"
        assert m.raw["features"] == feature_names(2, ("oisst_latest",))
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
        assert m.raw["parity"]["max_abs_diff_degC"] <= 1e-4
    else:
        assert m.raw["model_file"] == PARAMS_FILE and c.active_provider == "native" and c.runtime == "native"
        assert np.array_equal(got, ref, equal_nan=True)  # exact
        assert m.raw["parity"]["max_abs_diff_degC"] == 0.0
    rmse = lambda p: float(np.sqrt(np.nanmean((p - val.y) ** 2)))
    assert rmse(got) < 0.6 * rmse(val.x[:, -1])
    # per-lead uncertainty = the validation residuals of the model
    k = 3
    sel = val.lead == k
    assert m.residual_rmse_per_lead[k] == pytest.approx(float(np.sqrt(np.nanmean((ref[sel] - val.y[sel]) ** 2))),
                                                        rel=1e-6)
    # chunking does not change the answer
    np.testing.assert_array_equal(c.correct(val.x, val.lead, val.aux, valid_days=val.valid, max_batch=5), got)


@pytest.mark.parametrize("name", MODELS)
def test_flipped_byte_and_missing_artifact_are_refused(packages, tmp_path: Path, name: str) -> None:
    _, pk = packages
    pkg = pk[name][1]
    store = _copy(pkg, tmp_path, name)
    art = store / name / pkg.name / json.loads((pkg / MANIFEST_FILE).read_text())["model_file"]
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))
    with pytest.raises(ModelContractError, match=rf"artifact {art.name} sha256 .* does not match"):
        load_corrector(store, name)
    art.unlink()
    with pytest.raises(ModelContractError, match=rf"artifact {art.name} is missing"):
        load_corrector(store, name)


def test_contract_mismatch_is_refused(packages, cubes) -> None:
    store, pk = packages
    grid = cubes[3]
    _, _, _, val = pk["random-forest"]
    c = load_corrector(store, "random-forest")
    c.check_contract(grid, MASK_HASH, 2)
    other = RegularGrid(lat0=grid.lat0, lon0=grid.lon0, step=grid.step, nlat=grid.nlat + 1, nlon=grid.nlon)
    with pytest.raises(ModelContractError, match="expects grid"):
        c.check_contract(other, MASK_HASH, 2)
    with pytest.raises(ModelContractError, match="ocean mask"):
        c.check_contract(grid, "b" * 64, 2)
    with pytest.raises(ModelContractError, match="T=2"):
        c.check_contract(grid, MASK_HASH, 3)
    x, lead, aux, valid = val.x[:3], val.lead[:3], val.aux[:3], val.valid[:3]
    with pytest.raises(ModelContractError, match="shape"):
        c.correct(x[:, :1], lead, aux[:, :1], valid_days=valid)
    with pytest.raises(ModelContractError, match="needs auxiliary inputs"):
        c.correct(x, lead, None, valid_days=valid)
    with pytest.raises(ModelContractError, match="needs valid_days"):
        c.correct(x, lead, aux)
    with pytest.raises(ModelContractError, match="valid_days"):
        c.correct(x, lead, aux, valid_days=valid[:2])
    with pytest.raises(ModelContractError, match="outside the model's trained leads"):
        c.correct(x, np.array([1, 2, 9]), aux, valid_days=valid)
    big = np.pad(x, ((0, 0), (0, 0), (0, 4), (0, 4)), constant_values=np.nan)
    with pytest.raises(ModelContractError, match="per-pixel model of grid"):
        c.correct(big, lead, np.pad(aux, ((0, 0), (0, 0), (0, 0), (0, 4), (0, 4))), valid_days=valid,
                  allow_larger=True)
    lr = load_corrector(store, "linear-regression")
    with pytest.raises(ModelContractError, match="takes no auxiliary inputs"):
        lr.correct(x, lead, aux)
    np.testing.assert_array_equal(lr.correct(x, lead), pk["linear-regression"][0].predict(val.subset(np.arange(3))))


@pytest.mark.parametrize("name", ["random-forest", "mean-bias"])
def test_gpu_providers_and_torchscript_are_refused_clearly(packages, name: str) -> None:
    store, _ = packages
    for prov in ("cuda", "tensorrt"):
        with pytest.raises(ProviderUnavailableError, match=rf"providers='{prov}'.*CPU only.*'auto' or 'cpu'"):
            load_corrector(store, name, providers=prov)
    with pytest.raises(ConfigError, match="no TorchScript artifact"):
        load_corrector(store, name, runtime="torchscript")
    with pytest.raises(ConfigError, match="providers must be one of"):
        load_corrector(store, name, providers="gpu")
    assert load_corrector(store, name, providers="cpu").manifest.model_id == name


def test_lightgbm_falls_back_to_the_native_booster(cubes, tmp_path: Path, monkeypatch) -> None:
    import onnxmltools

    def broken(*a, **k):
        raise RuntimeError("converter unavailable")

    monkeypatch.setattr(onnxmltools, "convert_lightgbm", broken)
    grid = cubes[3]
    train, val = _split(cubes, "lightgbm")
    model = fit_tabular("lightgbm", train, val, grid=grid, params=SMALL["lightgbm"])
    pkg = export_tabular_package(model, train, val, grid=grid, mask_hash=MASK_HASH, model_store=tmp_path,
                                 model_id="lightgbm")
    raw = json.loads((pkg / MANIFEST_FILE).read_text())
    assert raw["runtime"] == "native" and raw["model_file"] == BOOSTER_FILE and list(raw["artifacts"]) == [BOOSTER_FILE]
    assert "converter unavailable" in raw["export"]["rejected"]["onnx"]
    assert not (pkg / ONNX_FILE).exists()
    c = load_corrector(tmp_path, "lightgbm")
    assert c.active_provider == "native" and c.runtime == "native"
    got = c.correct(val.x, val.lead, val.aux, valid_days=val.valid)
    np.testing.assert_allclose(got, model.predict(val), atol=1e-5, rtol=0)
    # replay records runtime "native": it must load again with that runtime
    assert load_corrector(tmp_path, "lightgbm", runtime="native").runtime == "native"


def test_random_forest_without_onnx_gets_no_package(cubes, tmp_path: Path, monkeypatch) -> None:
    import skl2onnx

    monkeypatch.setattr(skl2onnx, "to_onnx", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no converter")))
    grid = cubes[3]
    train, val = _split(cubes, "random-forest")
    model = fit_tabular("random-forest", train, val, grid=grid, params=SMALL["random-forest"])
    with pytest.raises(ModelContractError, match="no artifact passed the export checks.*no converter"):
        export_tabular_package(model, train, val, grid=grid, mask_hash=MASK_HASH, model_store=tmp_path,
                               model_id="random-forest")
    assert list((tmp_path / "random-forest").iterdir()) == []  # the temp folder is gone, nothing half-written
    with pytest.raises(ModelContractError, match="no package for model"):
        load_corrector(tmp_path, "random-forest")


def test_tree_features_include_auxiliary_inputs(cubes) -> None:
    hy, oi, mask, grid = cubes
    s = build_samples(hy, oi, mask, seq_len=2, aux_inputs=("oisst_latest", "surf_el"), surf_el=synthetic_surf_el(hy))
    names = feature_names(2, s.aux_names)
    assert names[-3:] == ["oisst_latest_lag0", "oisst_latest_minus_hycom_lag0", "surf_el_lag0"]
    assert feature_names(2) == names[:-3]
    rows, idx = features(s, grid.lat, grid.lon)
    assert rows.shape[1] == len(names) and rows.dtype == np.float32 and np.isfinite(rows).all()
    lat0 = s.aux_field("oisst_latest")[:, -1].reshape(-1)[idx]
    np.testing.assert_array_equal(rows[:, names.index("oisst_latest_lag0")], lat0.astype(np.float32))
    np.testing.assert_allclose(rows[:, names.index("oisst_latest_minus_hycom_lag0")],
                               lat0 - s.x[:, -1].reshape(-1)[idx], atol=1e-5)
    np.testing.assert_array_equal(rows[:, names.index("surf_el_lag0")], s.aux_field("surf_el")[:, -1].reshape(-1)[idx])
    # a fitted tree refuses samples carrying other inputs than it was fitted with
    train, val = split_chronological(s.with_aux(("oisst_latest",)), 0.25, gap_days=2)
    m = TreeModel("random-forest", max_rows=5_000, n_estimators=3, max_depth=4, n_jobs=1).fit(
        train, val, lat=grid.lat, lon=grid.lon)
    assert len(m.feature_names) == len(feature_names(2)) + 2
    with pytest.raises(ModelContractError, match="auxiliary inputs"):
        m.predict(val.with_aux(()))


@pytest.mark.parametrize(("name", "kw"), [("mean-bias", {"window_days": 5, "min_samples": 2}),
                                          ("linear-regression", {}),
                                          ("quantile-mapping", {"engine": "numpy", "nquantiles": 20}),
                                          ("quantile-mapping", {"engine": "xsdba", "nquantiles": 20})])
def test_baseline_parameters_round_trip_without_pickle(cubes, tmp_path: Path, name: str, kw: dict) -> None:
    train, val = _split(cubes, name)
    b = build_baseline(name, **kw).fit(train)
    path = tmp_path / "p.npz"
    save_npz(b, path)
    with np.load(path, allow_pickle=False) as z:  # every array is plain numbers/text
        assert all(z[k].dtype.kind in "biufU" for k in z.files)
    again = load_npz(path, expected=name)
    assert type(again) is type(b) and again.to_arrays().keys() == b.to_arrays().keys()
    np.testing.assert_array_equal(again.predict(val), b.predict(val))
    with pytest.raises(ModelContractError, match="manifest says 'linear-regression'|holds a"):
        load_npz(path, expected="linear-regression" if name != "linear-regression" else "mean-bias")
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelContractError, match=r"p\.npz are not a readable"):
        load_npz(path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as zf:  # an object array needs pickle: refused
        zf.write(tmp_path / "obj.npy", "baseline.npy")
    with pytest.raises(ModelContractError, match="not a readable pickle-free"):
        load_npz(tmp_path / "obj.npz")


def test_tampered_manifest_is_refused(packages, tmp_path: Path) -> None:
    _, pk = packages
    pkg = pk["mean-bias"][1]
    store = _copy(pkg, tmp_path, "mean-bias")
    mpath = store / "mean-bias" / pkg.name / MANIFEST_FILE
    raw = json.loads(mpath.read_text())
    raw["model_file"] = "other.npz"
    write_manifest_json(mpath.parent, raw)  # re-sealed: the deeper checks are under test
    with pytest.raises(ModelContractError, match="must list its model as params.npz"):
        load_corrector(store, "mean-bias")
    raw["model_file"] = PARAMS_FILE
    raw["grid"]["nlat"] += 1
    write_manifest_json(mpath.parent, raw)  # re-sealed: the deeper checks are under test
    with pytest.raises(ModelContractError, match="grid parameters give grid id"):
        load_tabular_manifest(mpath.parent)
    raw["kind"] = "something"
    write_manifest_json(mpath.parent, raw)  # re-sealed: the deeper checks are under test
    with pytest.raises(ModelContractError, match="unknown package kind 'something'"):
        load_corrector(store, "mean-bias")
