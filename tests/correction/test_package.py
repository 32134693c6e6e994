from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bias_correction.correction.manifest import write_manifest_json
from bias_correction.correction.manifest import load_manifest
from bias_correction.correction.package import list_versions, resolve_package
from bias_correction.errors import ModelContractError


def _fake_package(store: Path, model_id: str, version: str, payload: bytes = b"onnx-bytes") -> Path:
    pkg = store / model_id / version
    pkg.mkdir(parents=True)
    (pkg / "model.onnx").write_bytes(payload)
    man = {"schema_version": 1, "model_id": model_id, "version": version, "architecture": "convgru-sa",
           "seq_len": 4, "grid": {"grid_id": "g0p08-12x16-x", "nlat": 12, "nlon": 16},
           "mask_sha256": "m" * 64, "normalisation": {"vmin": 20.0, "vmax": 30.0, "units": "degC"},
           "lead_days": [1, 2, 3, 4, 5, 6, 7],
           "artifacts": {"model.onnx": {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}}}
    write_manifest_json(pkg, man)
    return pkg


def test_resolve_latest_and_explicit(tmp_path: Path) -> None:
    for v in ("20210101T000000Z", "20210301T000000Z", "20210201T000000Z"):
        _fake_package(tmp_path, "m1", v)
    (tmp_path / "m1" / ".tmp-20990101T000000Z-abcd").mkdir()  # an export in progress is invisible
    (tmp_path / "m1" / "20990101T000000Z").mkdir()  # no manifest: incomplete, ignored
    assert list_versions(tmp_path, "m1") == ["20210101T000000Z", "20210201T000000Z", "20210301T000000Z"]
    assert resolve_package(tmp_path, "m1").name == "20210301T000000Z"
    assert resolve_package(tmp_path, "m1", "20210201T000000Z").name == "20210201T000000Z"
    with pytest.raises(ModelContractError, match="available: 20210101T000000Z, 20210201T000000Z"):
        resolve_package(tmp_path, "m1", "20200101T000000Z")
    with pytest.raises(ModelContractError, match="model ids present: m1"):
        resolve_package(tmp_path, "other")
    with pytest.raises(ModelContractError, match="none"):
        resolve_package(tmp_path / "nowhere", "m1")


def test_manifest_verified_and_parsed(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path, "m1", "v1")
    man = load_manifest(pkg)
    assert man.seq_len == 4 and man.shape == (12, 16) and man.lead_days == tuple(range(1, 8))
    assert man.model_path == pkg / "model.onnx" and load_manifest(pkg / "manifest.json") == man


def test_flipped_byte_names_the_file(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path, "m1", "v1")
    data = bytearray((pkg / "model.onnx").read_bytes())
    data[3] ^= 0x01
    (pkg / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelContractError, match=r"model\.onnx sha256"):
        load_manifest(pkg)


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path, "m1", "v1")
    (pkg / "model.onnx").unlink()
    with pytest.raises(ModelContractError, match="model.onnx is missing"):
        load_manifest(pkg)
    pkg2 = _fake_package(tmp_path, "m1", "v2")
    (pkg2 / "manifest.json").write_text("{not json")
    with pytest.raises(ModelContractError, match="not valid JSON"):
        load_manifest(pkg2)
    with pytest.raises(ModelContractError, match="no manifest.json"):
        load_manifest(tmp_path)
