"""Find and verify model packages (``model_store/model_id/version/``) written by training.export.

Integrity first: :func:`load_manifest` checks the sha256 and size of every listed artefact before
any other field is trusted, so a corrupted or half-copied package fails loudly and by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bias_correction.errors import ModelContractError
from bias_correction.hashing import sha256_file

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts"
CARD_FILE = "MODEL_CARD.md"
#: Schema 1: ONNX only. Schema 2 adds the TorchScript artifact, input variables, tile, data versions,
#: per-lead residual statistics (uncertainty) and CPU/CUDA/TorchScript parity figures.
CURRENT_SCHEMA = 2
SUPPORTED_SCHEMAS = (1, 2)
#: Fields a schema-2 manifest must have (on top of the schema-1 ones parsed into :class:`Manifest`).
SCHEMA2_FIELDS = ("input_variables", "tile", "training", "validation", "parity", "code_version", "artifacts")


def list_versions(model_store: Path, model_id: str) -> list[str]:
    """Complete package versions (folders holding a manifest), sorted ascending; temp folders skipped."""
    parent = Path(model_store) / model_id
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file())


def resolve_package(model_store: Path, model_id: str, version: str = "latest") -> Path:
    """Folder of ``model_id`` at ``version``; "latest" is the highest (UTC-timestamp-sortable) name."""
    store = Path(model_store)
    versions = list_versions(store, model_id)
    if not versions:
        ids = sorted(p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if store.is_dir() else []
        raise ModelContractError(
            f"no package for model {model_id!r} in model store {store}; "
            f"model ids present: {', '.join(ids) if ids else 'none'}")
    if version == "latest":
        return store / model_id / versions[-1]
    if version not in versions:
        raise ModelContractError(
            f"model {model_id!r} has no version {version!r} in {store}; available: {', '.join(versions)}")
    return store / model_id / version


@dataclass(frozen=True)
class Manifest:
    """Verified manifest of one package; ``raw`` keeps every field as written."""

    package_dir: Path
    model_id: str
    version: str
    architecture: str
    seq_len: int
    grid: dict[str, Any]
    mask_sha256: str
    vmin: float
    vmax: float
    lead_days: tuple[int, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def grid_id(self) -> str:
        return str(self.grid["grid_id"])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.grid["nlat"]), int(self.grid["nlon"]))

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(nlat, nlon) of the exported graph: the training tile (the grid unless trained on tiles)."""
        tile = self.raw.get("tile") or {}
        if "nlat" in tile and "nlon" in tile:
            return (int(tile["nlat"]), int(tile["nlon"]))
        return self.shape

    @property
    def model_path(self) -> Path:
        return self.package_dir / MODEL_FILE

    @property
    def schema_version(self) -> int:
        return int(self.raw["schema_version"])

    @property
    def torchscript_path(self) -> Path | None:
        """The TorchScript artifact, if the package has one (schema 2)."""
        return self.package_dir / TORCHSCRIPT_FILE if TORCHSCRIPT_FILE in self.raw["artifacts"] else None

    @property
    def artifact_sha256(self) -> dict[str, str]:
        return {name: str(a["sha256"]) for name, a in self.raw["artifacts"].items()}

    @property
    def domain_dependent(self) -> bool:
        """True when outputs depend on the whole domain (attention): larger domains must be tiled."""
        tile = self.raw.get("tile") or {}
        return bool(tile.get("domain_dependent", self.architecture != "convgru"))

    @property
    def dynamic_hw(self) -> bool:
        """True when the exported graph accepts any H and W (else exactly the tile)."""
        tile = self.raw.get("tile") or {}
        return bool(tile.get("dynamic_hw", (self.raw.get("parity") or {}).get("dynamic_hw", False)))

    @property
    def aux_inputs(self) -> tuple[str, ...]:
        """Auxiliary input channels (``aux`` graph input), in order; empty for SST-only models."""
        return tuple(self.raw.get("aux_inputs") or ())

    @property
    def oisst_lag_days(self) -> int:
        """Age in days of the ``oisst_latest`` input relative to each run day."""
        return int(self.raw.get("oisst_lag_days") or 1)

    @property
    def residual_rmse_per_lead(self) -> dict[int, float]:
        """Calibrated validation RMS residual (corrected - OISST) per lead day, degC (may be empty)."""
        unc = (self.raw.get("validation") or {}).get("residual_per_lead") or {}
        return {int(k): float(v["rmse"]) for k, v in unc.items()}


def read_manifest_json(path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(manifest path, package folder, parsed JSON object) of ``path`` (package folder or the file)."""
    path = Path(path)
    mpath = path / MANIFEST_FILE if path.is_dir() else path
    pkg = mpath.parent
    try:
        raw = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ModelContractError(f"model package {pkg} has no {MANIFEST_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelContractError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelContractError(f"{mpath} must hold a JSON object")
    return mpath, pkg, raw


def verify_artifacts(pkg: Path, mpath: Path, artifacts: Any, required: str | None = None) -> None:
    """Every listed artifact present, inside the package, with the recorded size and sha256."""
    if not isinstance(artifacts, dict) or not artifacts or (required is not None and required not in artifacts):
        raise ModelContractError(f"{mpath} lists no artifacts (expected at least {required or 'one'})")
    for name, info in artifacts.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelContractError(f"{mpath}: artifact name {name!r} escapes the package folder")
        if not isinstance(info, dict) or "sha256" not in info:
            raise ModelContractError(f"{mpath}: artifact {name} has no sha256")
        fpath = pkg / name
        if not fpath.is_file():
            raise ModelContractError(f"model package {pkg}: artifact {name} is missing")
        size = fpath.stat().st_size
        if "bytes" in info and size != int(info["bytes"]):
            raise ModelContractError(f"model package {pkg}: artifact {name} has {size} bytes, "
                                     f"manifest says {info['bytes']}")
        digest = sha256_file(fpath)
        if digest != info["sha256"]:
            raise ModelContractError(f"model package {pkg}: artifact {name} sha256 {digest} does not match "
                                     f"the manifest ({info['sha256']}); the file is corrupt or was changed")


def manifest_from_raw(pkg: Path, mpath: Path, raw: dict[str, Any]) -> Manifest:
    """The typed view of a verified manifest; a missing or malformed field names the file."""
    try:
        norm = raw["normalisation"]
        return Manifest(package_dir=pkg, model_id=str(raw["model_id"]), version=str(raw["version"]),
                        architecture=str(raw["architecture"]), seq_len=int(raw["seq_len"]),
                        grid=dict(raw["grid"]), mask_sha256=str(raw["mask_sha256"]),
                        vmin=float(norm["vmin"]), vmax=float(norm["vmax"]),
                        lead_days=tuple(int(k) for k in raw["lead_days"]), raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"{mpath} is missing or has an invalid field: {exc!r}") from None


def load_manifest(path: Path) -> Manifest:
    """Read ``manifest.json`` (``path`` = package folder or the file) after verifying every artefact."""
    mpath, pkg, raw = read_manifest_json(path)
    gridded = raw.get("kind", "gridded") == "gridded"  # tabular packages may carry npz or native boosters
    verify_artifacts(pkg, mpath, raw.get("artifacts"), MODEL_FILE if gridded else None)
    if raw.get("schema_version") not in SUPPORTED_SCHEMAS:
        raise ModelContractError(f"{mpath}: schema_version {raw.get('schema_version')!r} is not supported "
                                 f"(expected one of {list(SUPPORTED_SCHEMAS)})")
    if raw["schema_version"] >= 2:
        missing = [k for k in SCHEMA2_FIELDS if k not in raw]
        if missing:
            raise ModelContractError(f"{mpath}: schema 2 manifest lacks {', '.join(missing)}")
    return manifest_from_raw(pkg, mpath, raw)
