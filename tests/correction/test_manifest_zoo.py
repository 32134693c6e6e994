"""The model registry and the typed manifest: one list of models, one manifest both exporters write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bias_correction import zoo
from bias_correction.config import SST_ONLY_MODELS, Training, default_aux_inputs
from bias_correction.correction.manifest import MANIFEST_FILE, Manifest, load_manifest, write_manifest_json
from bias_correction.errors import ModelContractError


def test_registry_is_consistent() -> None:
    ids = zoo.ids()
    assert len(set(ids)) == len(ids) and ids[0] == zoo.DEFAULT_MODEL == Training().model
    assert set(zoo.ids(zoo.GRIDDED, zoo.TABULAR, zoo.BASELINE)) == set(ids)
    for spec in zoo.MODELS:
        assert default_aux_inputs(spec.id) == spec.default_inputs
        assert spec.package_kind == ("gridded" if spec.family == zoo.GRIDDED else "tabular")
        if spec.family == zoo.GRIDDED:
            assert spec.build and not spec.runtimes
        else:
            assert spec.runtimes and spec.framing
        if spec.family == zoo.BASELINE:
            assert spec.apply and spec.build and spec.id in SST_ONLY_MODELS
    with pytest.raises(KeyError, match="known: "):
        zoo.get("no-such-model")


def test_registry_drives_the_training_tables() -> None:
    from bias_correction.correction.tabular_apply import APPLIERS
    from bias_correction.training.architectures import ARCHITECTURES, DOMAIN_INDEPENDENT
    from bias_correction.training.baselines import BASELINES

    assert list(ARCHITECTURES) == list(zoo.ids(zoo.GRIDDED))
    assert DOMAIN_INDEPENDENT == {s.id for s in zoo.specs(zoo.GRIDDED) if not s.domain_dependent}
    assert list(BASELINES) == list(APPLIERS) == list(zoo.ids(zoo.BASELINE))
    assert all(issubclass(BASELINES[k], APPLIERS[k]) and BASELINES[k].name == k for k in BASELINES)


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "m" / "v1"
    pkg.mkdir(parents=True)
    (pkg / "model.onnx").write_bytes(b"x")
    man = {"schema_version": 1, "model_id": "m", "version": "v1", "architecture": zoo.ids(zoo.GRIDDED)[1],
           "seq_len": 4, "grid": {"grid_id": "g", "nlat": 3, "nlon": 5}, "mask_sha256": "m" * 64,
           "normalisation": {"vmin": 20, "vmax": 30.5, "units": "degC"}, "lead_days": [1, 2],
           "validation": {"rmse_raw": float("nan"), "residual_per_lead": {"1": {"rmse": 0.25, "bias": None}}},
           "custom": {"kept": True},
           "artifacts": {"model.onnx": {"sha256": hashlib.sha256(b"x").hexdigest(), "bytes": 1}}}
    write_manifest_json(pkg, man)
    return pkg


def test_manifest_typed_fields_and_round_trip(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    m = load_manifest(pkg)
    assert isinstance(m, Manifest) and m.package_dir == pkg and m.kind == "gridded" and not m.is_tabular
    assert (m.vmin, m.vmax, m.shape, m.tile_shape, m.lead_days) == (20.0, 30.5, (3, 5), (3, 5), (1, 2))
    assert m.residual_rmse_per_lead == {1: 0.25} and m.aux_inputs == () and m.oisst_lag_days == 1
    assert m.domain_dependent is zoo.get(m.architecture).domain_dependent
    assert m.raw["custom"] == {"kept": True} and "kind" not in m.raw and "tile" not in m.raw
    out = tmp_path / "copy"
    out.mkdir()
    m.write(out)
    again = json.loads((out / MANIFEST_FILE).read_text())
    assert set(again) == set(json.loads((pkg / MANIFEST_FILE).read_text()))
    assert again["validation"]["rmse_raw"] != again["validation"]["rmse_raw"]  # NaN stays NaN


def test_malformed_field_names_the_file(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    raw = json.loads((pkg / MANIFEST_FILE).read_text())
    raw["seq_len"] = "four"
    write_manifest_json(pkg, raw)
    with pytest.raises(ModelContractError, match="manifest.json is missing or has an invalid field"):
        load_manifest(pkg)
