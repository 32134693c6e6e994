"""Provenance of products: what went in (inputs, model, code, config, provider) and how to read it back.

Every product carries its provenance twice: in the global attributes (``sstbc_provenance`` holds the
full JSON record, ``sstbc_*`` attributes a readable summary) and in a sidecar JSON next to the file
(``<product>.provenance.json``), which also records the product's own sha256 and size. ``sstbc
inspect`` prints either; ``sstbc replay`` uses the record to rebuild the product.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import bias_correction

SIDECAR_SUFFIX = ".provenance.json"
PROVENANCE_SCHEMA = 1


def sidecar_key(key: str) -> str:
    return key + SIDECAR_SUFFIX


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """sstbc version plus the git commit of the source tree when it is a git checkout (else None)."""
    commit, dirty = None, None
    src = Path(__file__).resolve().parents[2]
    if (src / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=5, check=True).stdout.strip() or None
            dirty = bool(subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True, timeout=5).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return {"sstbc": bias_correction.__version__, "git_commit": commit, "git_dirty": dirty}


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance record of a product file (``.nc``: global attributes) or of a sidecar ``.json``.

    For a ``.nc`` with a sidecar next to it, the sidecar's extra fields (product sha256, size, keys)
    are merged in.
    """
    from bias_correction.errors import ProductError
    from bias_correction.io.netcdf import read_dataset

    path = Path(path)
    if path.suffix == ".json":
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProductError(f"{path} is not a provenance sidecar: {exc}") from None
    try:
        ds = read_dataset(path, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path} does not open as a NetCDF product: {exc}") from None
    if "sstbc_provenance" not in ds.attrs:
        raise ProductError(f"{path} has no sstbc_provenance attribute; it is not an sstbc product")
    prov = dict(json.loads(ds.attrs["sstbc_provenance"]))
    prov.setdefault("input_digest", ds.attrs.get("sstbc_input_digest"))
    prov.setdefault("conventions", ds.attrs.get("Conventions"))
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if side.is_file():
        with_side = json.loads(side.read_text())
        if with_side.get("input_digest") == prov.get("input_digest"):
            prov = {**with_side, **prov}
    return prov


def format_provenance(prov: dict[str, Any]) -> str:
    """Human-readable provenance (``sstbc inspect PRODUCT``)."""
    code = prov.get("code_version")
    code_s = code if isinstance(code, str) else (
        f"{(code or {}).get('sstbc')} (git {(code or {}).get('git_commit') or 'unknown'}"
        f"{' dirty' if (code or {}).get('git_dirty') else ''})")
    lines = [
        f"product: {prov.get('product_key') or prov.get('product_id', '?')}",
        f"  version: {prov.get('product_version', '?')}   input digest: {prov.get('input_digest', '?')}",
        f"  sha256: {prov.get('sha256', '(see sidecar)')}   bytes: {prov.get('bytes', '?')}",
        f"  model: {prov.get('model_id')} {prov.get('model_version')} "
        f"(runtime {prov.get('runtime', 'onnx')}, active provider {prov.get('onnxruntime_provider')})",
    ]
    for name, sha in sorted((prov.get("model_sha256") or {}).items()):
        lines.append(f"    {name} sha256 {sha}")
    lines += [f"  code: {code_s}", f"  config hash: {prov.get('config_fingerprint')}",
              f"  ocean mask sha256: {prov.get('mask_sha256')}",
              f"  uncertainty: {prov.get('uncertainty_method', '?')}",
              f"  training data: {json.dumps(prov.get('training_data_versions'))}",
              "  inputs:"]
    for i in prov.get("inputs", []):
        lines.append(f"    {i.get('run')}: {i.get('url')}")
        lines.append(f"      sha256 {i.get('sha256')}  version {i.get('version')}  archive {i.get('archive_key', '?')}")
    return "\n".join(lines)


def input_record(name: str, when_key: str, when: str, entry: Any) -> dict[str, Any]:
    """Provenance of one input field: which input, its run or day, where it came from, which version."""
    return {"input": name, when_key: when, "url": entry.source["url"], "sha256": entry.source["sha256"],
            "version": entry.source["version"], "archive_key": entry.key}


def product_provenance(
    *, inputs: list[dict[str, Any]], manifest: Any, model_sha256: dict[str, str], config_fingerprint: str,
    active_provider: str, runtime: str, mask_sha256: str, grid_id: str, region: str, run: Any,
    input_digest: str, gate_failure: str | None, uncertainty_calibrated: bool,
) -> dict[str, Any]:
    """The provenance record of a product (global attribute ``sstbc_provenance`` and the sidecar)."""
    return {
        "inputs": inputs, "model_id": manifest.model_id, "model_version": manifest.version,
        "model_sha256": model_sha256, "code_version": code_version(),
        "config_fingerprint": config_fingerprint, "onnxruntime_provider": active_provider,
        "runtime": runtime, "mask_sha256": mask_sha256, "grid_id": grid_id,
        "region": region, "run": f"{run:%Y-%m-%dT%H:%M:%SZ}", "input_digest": input_digest,
        "publication_gate": "passed" if gate_failure is None else f"failed, fallback raw HYCOM: {gate_failure}",
        "uncertainty_method": ("calibrated validation residual statistics (per-lead RMS of corrected - OISST, "
                               "model validation period)") if uncertainty_calibrated
        else "fallback: RMS of the applied correction",
        "training_data_versions": manifest.data_versions,
        "parity": {k: {kk: v.get(kk) for kk in ("max_abs_diff_degC", "rmse_diff_degC", "skipped") if kk in v}
                   for k, v in (manifest.parity or {}).items() if isinstance(v, dict)},
    }
