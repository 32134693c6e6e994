"""Export a checkpoint to a self-describing ONNX model package (models.md 13).

Package layout ``model_store/model_id/version/``: ``model.onnx``, ``manifest.json``, ``MODEL_CARD.md``.
It is built in a hidden temporary sibling folder and renamed into place only after the export,
the checker and the CPU parity test pass, so a reader never sees a half-written package.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

import bias_correction
from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.training.architectures import CorrectionModule
from bias_correction.training.train import FRAMING, load_checkpoint

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
SCHEMA_VERSION = 1
#: Export-time parity gate, torch CPU fp32 vs ORT CPU fp32, degC over ocean.
PARITY_MAX_ABS_DEGC = 0.01
INPUT_NAMES = ["sst", "lead_days"]
OUTPUT_NAMES = ["sst_corrected"]

log = logging.getLogger(__name__)


def utc_version(now: dt.datetime | None = None) -> str:
    """Sortable UTC version string, e.g. ``20210501T120000Z``."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _example_inputs(batch: int, t: int, h: int, w: int, vmin: float, vmax: float,
                    seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic degC fields inside the training range with a NaN land pattern and leads 1..7."""
    g = torch.Generator().manual_seed(seed)
    span = vmax - vmin
    base = vmin + span * (0.3 + 0.4 * torch.rand(batch, 1, h, w, generator=g))
    sst = (base + 0.02 * span * torch.randn(batch, t, h, w, generator=g)).float()
    land = torch.zeros(h, w, dtype=torch.bool)
    land[: max(1, h // 4), : max(1, w // 3)] = True  # a coastal block
    land[h // 2, w // 2] = True  # an island
    sst[:, :, land] = float("nan")
    if t > 1 and batch > 1:
        sst[1, 0, h - 1, w - 1] = float("nan")  # land in one step only -> masked for that sample
    lead = (torch.arange(batch) % 7 + 1).float()
    return sst, lead


def _export_onnx(model: CorrectionModule, path: Path, t: int, h: int, w: int, vmin: float, vmax: float) -> bool:
    """dynamo export, batch dynamic; H/W dynamic too, with a fixed-H/W fallback. Returns True if H/W dynamic."""
    # Example sizes >= 2 in every dynamic dim and H != W (models.md 13.2).
    ex_w = w if w != h else w + 1
    example = _example_inputs(2, t, h, ex_w, vmin, vmax)
    batch = torch.export.Dim("batch", min=1, max=4096)
    attempts: list[tuple[bool, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]] = [
        (True, example, {"sst": {0: batch, 2: torch.export.Dim("height", min=2, max=4096),
                                 3: torch.export.Dim("width", min=2, max=4096)}, "lead_days": {0: batch}}),
        (False, _example_inputs(2, t, h, w, vmin, vmax), {"sst": {0: batch}, "lead_days": {0: batch}}),
    ]
    last: Exception | None = None
    for dynamic_hw, args, shapes in attempts:
        try:
            # The exporter warns about torchvision ops it cannot register; we use none of them.
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, args, str(path), dynamo=True, external_data=False,
                                  input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                  dynamic_shapes=shapes, verbose=False)
            return dynamic_hw
        except Exception as exc:  # fall back to fixed H/W; batch stays dynamic
            log.warning("ONNX export with %s H/W failed: %s", "dynamic" if dynamic_hw else "fixed", exc)
            last = exc
    raise ModelContractError(f"ONNX export failed: {last}")


def _check_graph(path: Path, t: int) -> int:
    """Checker + the I/O signature we promise; returns the default-domain opset."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ins = {i.name: i for i in model.graph.input}
    outs = {o.name: o for o in model.graph.output}
    if set(ins) != set(INPUT_NAMES) or set(outs) != set(OUTPUT_NAMES):
        raise ModelContractError(f"exported graph has inputs {sorted(ins)} and outputs {sorted(outs)}, "
                                 f"expected {INPUT_NAMES} and {OUTPUT_NAMES}")
    dims = ins["sst"].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[0].dim_param or dims[1].dim_value != t:
        raise ModelContractError(f"exported sst input must be [batch(dynamic), {t}, H, W], got "
                                 f"{[d.dim_param or d.dim_value for d in dims]}")
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _write_metadata(path: Path, props: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))


def parity_check(model: CorrectionModule, onnx_path: Path, t: int, h: int, w: int,
                 vmin: float, vmax: float) -> dict[str, Any]:
    """torch CPU vs ORT CPU in degC on fixed inputs (batch 1 and 7, NaN land); raises over the gate."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_abs, sq, n = 0.0, 0.0, 0
    for batch in (1, 7):
        sst, lead = _example_inputs(batch, t, h, w, vmin, vmax, seed=99 + batch)
        with torch.no_grad():
            ref = model(sst, lead).numpy()
        got = sess.run(None, {"sst": sst.numpy(), "lead_days": lead.numpy()})[0]
        if got.shape != ref.shape:
            raise ModelContractError(f"parity: ONNX output shape {got.shape} != torch {ref.shape}")
        if not np.array_equal(np.isnan(got), np.isnan(ref)):
            raise ModelContractError(f"parity: NaN (land) pattern differs between ONNX and torch (batch {batch})")
        ocean = ~np.isnan(ref)
        d = (got[ocean].astype(np.float64) - ref[ocean].astype(np.float64))
        if d.size:
            max_abs = max(max_abs, float(np.abs(d).max()))
            sq += float((d * d).sum())
            n += d.size
    rmse = float(np.sqrt(sq / n)) if n else 0.0
    result = {"provider": "CPUExecutionProvider", "max_abs_diff_degC": max_abs, "rmse_diff_degC": rmse,
              "batches": [1, 7], "shape": [t, h, w], "tolerance_degC": PARITY_MAX_ABS_DEGC}
    if not max_abs <= PARITY_MAX_ABS_DEGC:
        raise ModelContractError(f"parity failed: ONNX vs torch max |diff| = {max_abs:.3g} degC over ocean "
                                 f"> {PARITY_MAX_ABS_DEGC} degC")
    return result


def _model_card(man: dict[str, Any]) -> str:
    tr, val, par, norm = man["training"], man["training"]["val"] or {}, man["parity"], man["normalisation"]
    g = man["grid"]
    lines = [
        f"# Model card: {man['model_id']} {man['version']}",
        "",
        f"Bias correction of HYCOM daily-mean SST forecasts against NOAA OISST v2.1, architecture "
        f"**{man['architecture']}** ({json.dumps(man['arch_kwargs'])}).",
        "",
        "## Contract",
        f"- Input `sst`: [batch, {man['seq_len']}, {g['nlat']}, {g['nlon']}] HYCOM SST in degC for runs R-T+1..R "
        "at one lead, NaN on land.",
        "- Input `lead_days`: [batch] lead in days (1-7) of those fields.",
        f"- Output `sst_corrected`: [batch, {g['nlat']}, {g['nlon']}] corrected SST in degC for day R+lead, "
        "NaN where any input step is NaN.",
        f"- Framing: {man['framing']}.",
        f"- Grid: `{g['grid_id']}` (lat0 {g['lat0']}, lon0 {g['lon0']}, step {g['step']} deg).",
        f"- Ocean mask sha256: `{man['mask_sha256']}`.",
        f"- Normalisation: Min-Max, vmin {norm['vmin']:.4f} degC, vmax {norm['vmax']:.4f} degC (training data only).",
        "",
        "## Training",
        f"- Period (valid days): {tr['period_start']} to {tr['period_end']}; epochs run {tr['epochs']}, "
        f"best epoch {tr.get('best_epoch')}, {tr['seconds']:.1f} s.",
        f"- Data: {json.dumps(tr['data'])}.",
        "",
        "## Validation (degC, ocean cells)",
        f"- RMSE raw HYCOM {val.get('rmse_raw', float('nan')):.4f}, corrected "
        f"{val.get('rmse_corrected', float('nan')):.4f} (improvement {val.get('improvement_pct', float('nan')):.1f} %).",
        f"- MAE raw {val.get('mae_raw', float('nan')):.4f}, corrected {val.get('mae_corrected', float('nan')):.4f}; "
        f"{val.get('n_samples')} samples.",
        "",
        "## Export",
        f"- ONNX opset {man['onnx_opset']}, torch {man['torch_version']}, sstbc {man['code_version']}.",
        f"- Parity torch vs ONNX Runtime ({par['provider']}): max |diff| {par['max_abs_diff_degC']:.2e} degC, "
        f"RMSE diff {par['rmse_diff_degC']:.2e} degC.",
        f"- `model.onnx` sha256 `{man['artifacts'][MODEL_FILE]['sha256']}`.",
        "",
    ]
    return "\n".join(lines)


def export_package(checkpoint_path: Path, model_store: Path, model_id: str, version: str | None = None) -> Path:
    """Checkpoint -> ``model_store/model_id/version/`` (atomic). Returns the package folder."""
    if not model_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"model_id must be alphanumeric with - or _, got {model_id!r}")
    version = version or utc_version()
    if not version.replace("-", "").replace("_", "").replace(".", "").isalnum() or version.startswith("."):
        raise ConfigError(f"version must be alphanumeric (with - _ .), got {version!r}")
    t0 = time.perf_counter()
    model, meta = load_checkpoint(Path(checkpoint_path))
    t = int(meta["seq_len"])
    g = meta["grid"]
    h, w = int(g["nlat"]), int(g["nlon"])
    vmin, vmax = float(meta["vmin"]), float(meta["vmax"])

    parent = Path(model_store) / model_id
    final = parent / version
    if final.exists():
        raise ModelContractError(f"model package {final} already exists; choose another version")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        onnx_path = tmp / MODEL_FILE
        dynamic_hw = _export_onnx(model, onnx_path, t, h, w, vmin, vmax)
        opset = _check_graph(onnx_path, t)
        period = meta.get("training_period") or {}
        _write_metadata(onnx_path, {
            "seq_len": str(t), "vmin_degC": repr(vmin), "vmax_degC": repr(vmax),
            "grid_id": str(g["grid_id"]), "mask_sha256": str(meta["mask_hash"]),
            "training_period": f"{period.get('start')}/{period.get('end')}",
            "framing": FRAMING, "architecture": str(meta["architecture"]),
            "inputs": "sst[batch,T,H,W] degC NaN=land; lead_days[batch] days",
            "outputs": "sst_corrected[batch,H,W] degC NaN=land",
            "code_version": bias_correction.__version__, "torch_version": torch.__version__,
            "model_id": model_id, "version": version,
        })
        parity = parity_check(model, onnx_path, t, h, w, vmin, vmax)
        parity["dynamic_hw"] = dynamic_hw
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "model_id": model_id,
            "version": version,
            "architecture": meta["architecture"],
            "arch_kwargs": meta["arch_kwargs"],
            "seq_len": t,
            "framing": FRAMING,
            "inputs": [{"name": "sst", "units": "degC", "shape": ["batch", t, h, w]},
                       {"name": "lead_days", "units": "days", "shape": ["batch"]}],
            "outputs": [{"name": "sst_corrected", "units": "degC", "shape": ["batch", h, w]}],
            "lead_days": meta.get("lead_days") or list(range(1, 8)),
            "grid": g,
            "mask_sha256": meta["mask_hash"],
            "normalisation": {"vmin": vmin, "vmax": vmax, "units": "degC"},
            "training": {"period_start": period.get("start"), "period_end": period.get("end"),
                         "data": meta.get("data_info"), "val": meta.get("val_scores"),
                         "epochs": meta.get("epochs_run"), "best_epoch": meta.get("best_epoch"),
                         "seconds": meta.get("train_seconds"),
                         "hyperparameters": meta.get("hyperparameters")},
            "parity": parity,
            "code_version": bias_correction.__version__,
            "torch_version": torch.__version__,
            "onnx_opset": opset,
            "artifacts": {MODEL_FILE: {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}},
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "export_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(_model_card(manifest))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
