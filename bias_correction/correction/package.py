"""Find model packages (``model_store/model_id/version/``) and read their verified manifests.

The manifest itself (fields, file names, schema, verification) lives in
:mod:`bias_correction.correction.manifest`.
"""

from __future__ import annotations

from pathlib import Path

from bias_correction.correction.aliases import resolve_alias
from bias_correction.correction.manifest import MANIFEST_FILE
from bias_correction.errors import ModelContractError


def list_versions(model_store: Path, model_id: str) -> list[str]:
    """Complete package versions (folders holding a manifest), sorted ascending; temp folders skipped."""
    parent = Path(model_store) / model_id
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file())


def resolve_package(model_store: Path, model_id: str, version: str = "latest") -> Path:
    """Folder of ``model_id`` at ``version``: an explicit version, an alias ("current", "previous":
    ``correction.aliases``) or "latest", the highest (UTC-timestamp-sortable) name."""
    store = Path(model_store)
    versions = list_versions(store, model_id)
    if not versions:
        ids = sorted(p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if store.is_dir() else []
        raise ModelContractError(
            f"no package for model {model_id!r} in model store {store}; "
            f"model ids present: {', '.join(ids) if ids else 'none'}")
    version = resolve_alias(store, model_id, version, versions)
    if version not in versions:
        raise ModelContractError(
            f"model {model_id!r} has no version {version!r} in {store}; available: {', '.join(versions)}")
    return store / model_id / version
