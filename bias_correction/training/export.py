"""Export a checkpoint to a self-describing model package (models.md 13).

Package layout ``model_store/model_id/version/``: ``model.onnx``, ``model.ts`` (TorchScript),
``manifest.json`` (schema 2), ``MODEL_CARD.md``. It is built in a hidden temporary sibling folder and
renamed into place only after the export, the checker and the parity gate pass (torch eager vs ORT
CPU, vs ORT CUDA where CUDA is active with TF32 off on both sides, and vs the TorchScript reload), so
a reader never sees a half-written package and a model that fails the gate gets no package.

Parity gate (degC, over ocean cells of fixed inputs, batches 1 and 7, the tile shape and -- when
H/W are dynamic -- an odd non-square shape): max |diff| <= 0.01 and RMSE of the difference <= 0.001
(which also bounds the change of any RMSE against OISST by the triangle inequality).
"""

from __future__ import annotations

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
from bias_correction import zoo
from bias_correction.correction import aliases
from bias_correction.correction.manifest import (  # noqa: F401  (file names re-exported for callers)
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    TORCHSCRIPT_FILE,
    Manifest,
    artifact_entry,
    utc_stamp,
    utc_version,
)
from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.hashing import sha256_file  # noqa: F401  (re-exported)
from bias_correction.io.provenance import code_version
from bias_correction.regime import manifest_regimes
from bias_correction.training.architectures import CorrectionModule
from bias_correction.inputs import aux_input
from bias_correction.training.train import FRAMING, load_checkpoint

#: Export-time parity gate, torch fp32 vs ORT fp32 (CPU; CUDA with TF32 off), degC over ocean.
PARITY_MAX_ABS_DEGC = 0.01
PARITY_RMSE_DEGC = 0.001
INPUT_NAMES = ["sst", "lead_days"]
OUTPUT_NAMES = ["sst_corrected"]

log = logging.getLogger(__name__)


def input_names(model: CorrectionModule) -> list[str]:
    """Graph input names of ``model``: ``sst``, ``lead_days`` and ``aux`` when it has auxiliary inputs."""
    return INPUT_NAMES + (["aux"] if model.n_aux else [])


def _example_inputs(model: CorrectionModule, batch: int, t: int, h: int, w: int, vmin: float, vmax: float,
                    seed: int = 1234) -> dict[str, torch.Tensor]:
    """Deterministic inputs in graph order: degC fields inside the training range with a NaN land
    pattern, leads 1..7, and auxiliary fields around their normalisation offsets (NaN on the same land)."""
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
    feed = {"sst": sst, "lead_days": lead}
    if model.n_aux:
        off = model.aux_offset.reshape(1, 1, -1, 1, 1)
        scale = model.aux_scale.reshape(1, 1, -1, 1, 1)
        aux = (off + scale * (0.3 + 0.2 * torch.randn(batch, t, model.n_aux, h, w, generator=g))).float()
        aux[:, :, :, land] = float("nan")
        feed["aux"] = aux
    return feed


def _export_onnx(model: CorrectionModule, path: Path, t: int, h: int, w: int, vmin: float, vmax: float) -> bool:
    """dynamo export, batch dynamic; H/W dynamic too, with a fixed-H/W fallback. Returns True if H/W dynamic."""
    # Example sizes >= 2 in every dynamic dim and H != W (models.md 13.2).
    ex_w = w if w != h else w + 1
    names = input_names(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    hd, wd = torch.export.Dim("height", min=2, max=4096), torch.export.Dim("width", min=2, max=4096)
    dyn = {"sst": {0: batch, 2: hd, 3: wd}, "lead_days": {0: batch}, "aux": {0: batch, 3: hd, 4: wd}}
    fixed = {"sst": {0: batch}, "lead_days": {0: batch}, "aux": {0: batch}}
    attempts = [(True, _example_inputs(model, 2, t, h, ex_w, vmin, vmax), dyn),
                (False, _example_inputs(model, 2, t, h, w, vmin, vmax), fixed)]
    last: Exception | None = None
    for dynamic_hw, feed, shapes in attempts:
        try:
            # The exporter warns about torchvision ops it cannot register; we use none of them.
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, tuple(feed[n] for n in names), str(path), dynamo=True, external_data=False,
                                  input_names=names, output_names=OUTPUT_NAMES,
                                  dynamic_shapes={n: shapes[n] for n in names}, verbose=False)
            return dynamic_hw
        except Exception as exc:  # fall back to fixed H/W; batch stays dynamic
            log.warning("ONNX export with %s H/W failed: %s", "dynamic" if dynamic_hw else "fixed", exc)
            last = exc
    raise ModelContractError(f"ONNX export failed: {last}")


def _check_graph(path: Path, t: int, names: list[str] | None = None) -> int:
    """Checker + the I/O signature we promise; returns the default-domain opset."""
    names = names or INPUT_NAMES
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ins = {i.name: i for i in model.graph.input}
    outs = {o.name: o for o in model.graph.output}
    if set(ins) != set(names) or set(outs) != set(OUTPUT_NAMES):
        raise ModelContractError(f"exported graph has inputs {sorted(ins)} and outputs {sorted(outs)}, "
                                 f"expected {names} and {OUTPUT_NAMES}")
    dims = ins["sst"].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[0].dim_param or dims[1].dim_value != t:
        raise ModelContractError(f"exported sst input must be [batch(dynamic), {t}, H, W], got "
                                 f"{[d.dim_param or d.dim_value for d in dims]}")
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def write_onnx_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace an ONNX file's metadata_props with ``props`` (contract facts a reader can check)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))


def _compare(ref: np.ndarray, got: np.ndarray, what: str) -> tuple[float, float, int]:
    """(max |diff|, sum of squared diffs, n) over ocean; shapes and NaN patterns must agree."""
    if got.shape != ref.shape:
        raise ModelContractError(f"parity ({what}): output shape {got.shape} != torch {ref.shape}")
    if not np.array_equal(np.isnan(got), np.isnan(ref)):
        raise ModelContractError(f"parity ({what}): NaN (land) pattern differs from torch")
    ocean = ~np.isnan(ref)
    d = got[ocean].astype(np.float64) - ref[ocean].astype(np.float64)
    if not d.size:
        return 0.0, 0.0, 0
    return float(np.abs(d).max()), float((d * d).sum()), int(d.size)


def parity_shapes(t: int, h: int, w: int, dynamic_hw: bool) -> list[tuple[int, int, int]]:
    """The tile shape, plus an odd non-square one when H/W are dynamic (models.md 13.5)."""
    shapes = [(t, h, w)]
    if dynamic_hw:
        shapes.append((t, h + 3 if (h + 3) % 2 else h + 4, w + 5 if (w + 5) % 2 else w + 6))
    return shapes


def _gate(name: str, max_abs: float, rmse: float) -> None:
    max_tol, rmse_tol = PARITY_MAX_ABS_DEGC, PARITY_RMSE_DEGC  # read at call time (tests tighten them)
    if not max_abs <= max_tol:
        raise ModelContractError(f"parity failed ({name}): max |diff| = {max_abs:.3g} degC over ocean "
                                 f"> {max_tol} degC")
    if not rmse <= rmse_tol:
        raise ModelContractError(f"parity failed ({name}): RMSE of the difference = {rmse:.3g} degC over "
                                 f"ocean > {rmse_tol} degC")


def _parity_figures(model: CorrectionModule, run: Any, name: str, shapes: list[tuple[int, int, int]],
                    vmin: float, vmax: float, device: str = "cpu") -> dict[str, Any]:
    """Run torch eager (on ``device``) and ``run(feed)`` (numpy inputs by graph name) on fixed inputs;
    gate and return the figures."""
    max_abs, sq, n = 0.0, 0.0, 0
    names = input_names(model)
    for t, h, w in shapes:
        for batch in (1, 7):
            feed = _example_inputs(model, batch, t, h, w, vmin, vmax, seed=99 + batch + h)
            with torch.no_grad():
                ref = model.to(device)(*(feed[k].to(device) for k in names)).cpu().numpy()
            got = np.asarray(run({k: v.numpy() for k, v in feed.items()}))
            m, s2, k = _compare(ref, got, f"{name}, batch {batch}, {h}x{w}")
            max_abs, sq, n = max(max_abs, m), sq + s2, n + k
    model.to("cpu")
    rmse = float(np.sqrt(sq / n)) if n else 0.0
    _gate(name, max_abs, rmse)
    return {"max_abs_diff_degC": max_abs, "rmse_diff_degC": rmse, "batches": [1, 7],
            "shapes": [list(s) for s in shapes], "n_ocean_values": n}


def parity_check(model: CorrectionModule, onnx_path: Path, t: int, h: int, w: int,
                 vmin: float, vmax: float, dynamic_hw: bool = False) -> dict[str, Any]:
    """torch CPU vs ORT CPU in degC on fixed inputs (batch 1 and 7, NaN land); raises over the gate."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    fig = _parity_figures(model, lambda feed: sess.run(None, feed)[0],
                          "ONNX Runtime CPU vs torch CPU", parity_shapes(t, h, w, dynamic_hw), vmin, vmax)
    return {"provider": "CPUExecutionProvider", **fig, "shape": [t, h, w],
            "tolerance_degC": PARITY_MAX_ABS_DEGC, "tolerance_rmse_degC": PARITY_RMSE_DEGC}


def parity_check_cuda(model: CorrectionModule, onnx_path: Path, t: int, h: int, w: int,
                      vmin: float, vmax: float, dynamic_hw: bool = False) -> dict[str, Any]:
    """torch CUDA vs ORT CUDA, TF32 off on both sides; {"skipped": why} where CUDA is not active."""
    from bias_correction.correction.session import CUDA, create_session
    from bias_correction.errors import ProviderUnavailableError

    if not torch.cuda.is_available():
        return {"provider": CUDA, "skipped": "no CUDA device visible to torch"}
    try:
        sess, _ = create_session(onnx_path, "cuda")
    except ProviderUnavailableError as exc:
        return {"provider": CUDA, "skipped": str(exc)}
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fig = _parity_figures(model, lambda feed: sess.run(None, feed)[0],
                              "ONNX Runtime CUDA vs torch CUDA (TF32 off)", parity_shapes(t, h, w, dynamic_hw),
                              vmin, vmax, device="cuda")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    return {"provider": CUDA, "tf32": False, "device": torch.cuda.get_device_name(0), **fig}


def export_torchscript(model: CorrectionModule, path: Path, t: int, h: int, w: int,
                       vmin: float, vmax: float) -> str:
    """``torch.jit.script`` (fallback ``torch.jit.trace`` at fixed T) -> ``path``; returns the method."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model.eval())
        method = "script"
    except Exception as exc:
        log.warning("torch.jit.script failed (%s); tracing at T=%d instead", exc, t)
        feed = _example_inputs(model, 2, t, h, w, vmin, vmax)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.trace(model.eval(), tuple(feed[n] for n in input_names(model)))
        method = "trace"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(path))
    return method


def parity_check_torchscript(model: CorrectionModule, ts_path: Path, t: int, h: int, w: int,
                             vmin: float, vmax: float, dynamic_hw: bool = False) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(ts_path), map_location="cpu").eval()

    names = input_names(model)

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return loaded(*(torch.from_numpy(feed[n]) for n in names)).numpy()

    fig = _parity_figures(model, run, "TorchScript vs torch eager", parity_shapes(t, h, w, dynamic_hw), vmin, vmax)
    return {"runtime": "torchscript", **fig}


def _data_versions(data_info: dict[str, Any] | None) -> dict[str, Any]:
    """OISST final/preliminary day counts and the preliminary share of the training data."""
    days = dict((data_info or {}).get("oisst_days") or {})
    final, prelim = int(days.get("final", 0)), int(days.get("preliminary", 0))
    total = final + prelim
    return {"oisst_final_days": final, "oisst_preliminary_days": prelim,
            "oisst_preliminary_share": (prelim / total) if total else None,
            "oisst_product": "NOAA OISST v2.1 AVHRR", "hycom": "GOFS 3.1 GLBy0.08 expt_93.0 FMRC runs"}


def _residual_stats(val: dict[str, Any] | None, leads: list[int]) -> dict[str, Any]:
    """Per-lead validation RMS residual (uncertainty source); the overall RMSE where not recorded."""
    val = val or {}
    per = val.get("residual_per_lead") or {}
    out = {}
    for k in leads:
        if str(k) in per:
            out[str(k)] = {"rmse": float(per[str(k)]["rmse"]), "bias": float(per[str(k)]["bias"]),
                           "n": int(per[str(k)]["n"]), "source": "per-lead validation residuals"}
        elif "rmse_corrected" in val:
            out[str(k)] = {"rmse": float(val["rmse_corrected"]), "bias": None, "n": val.get("n_cells"),
                           "source": "all-lead validation RMSE (per-lead statistics not recorded)"}
    return out


def _fmt_parity(par: dict[str, Any]) -> str:
    if "skipped" in par:
        return f"not run ({par['skipped']})"
    return f"max |diff| {par['max_abs_diff_degC']:.2e} degC, RMSE diff {par['rmse_diff_degC']:.2e} degC"


def _model_card(man: dict[str, Any]) -> str:
    tr, val, par, norm = man["training"], man["validation"] or {}, man["parity"], man["normalisation"]
    g, tile = man["grid"], man["tile"]
    dv = tr["data_versions"]
    share = dv["oisst_preliminary_share"]
    unc = man["uncertainty"]["per_lead_rmse_degC"]
    code = man["code_version"]
    lines = [
        f"# Model card: {man['model_id']} {man['version']}",
        "",
        f"Bias correction of HYCOM daily-mean SST forecasts against NOAA OISST v2.1, architecture "
        f"**{man['architecture']}** ({json.dumps(man['arch_kwargs'])}). Manifest schema {man['schema_version']}.",
        "",
        "## Contract",
        f"- Input `sst`: [batch, {man['seq_len']}, {g['nlat']}, {g['nlon']}] HYCOM SST in degC for runs R-T+1..R "
        "at one lead, NaN on land.",
        "- Input `lead_days`: [batch] lead in days (1-7) of those fields.",
        *([f"- Input `aux`: [batch, {man['seq_len']}, {len(man['aux_inputs'])}, {g['nlat']}, {g['nlon']}] "
           f"auxiliary fields per step, channels {man['aux_inputs']} (latest OISST = day of run - "
           f"{man['oisst_lag_days']}), NaN on land."] if man.get("aux_inputs") else []),
        f"- Output `sst_corrected`: [batch, {g['nlat']}, {g['nlon']}] corrected SST in degC for day R+lead, "
        "NaN where any input step is NaN.",
        f"- Framing: {man['framing']}.",
        f"- Grid: `{g['grid_id']}` (lat0 {g['lat0']}, lon0 {g['lon0']}, step {g['step']} deg).",
        f"- Ocean mask sha256: `{man['mask_sha256']}`.",
        f"- Tile {tile['nlat']}x{tile['nlon']}; domain-dependent (attention): {tile['domain_dependent']}; "
        f"dynamic H/W in the graph: {tile['dynamic_hw']}. Larger domains run as blended overlapping tiles.",
        f"- Halo: the domain edge changes outputs up to {man.get('halo_cells', 0)} cells in (perturbation probe, "
        f"{(man.get('receptive_field') or {}).get('tolerance_degC')} degC); runs need grid_halo_cells >= that.",
        f"- Normalisation: Min-Max, vmin {norm['vmin']:.4f} degC, vmax {norm['vmax']:.4f} degC (training data only).",
        "",
        "## Training",
        f"- Period (valid days): {tr['period_start']} to {tr['period_end']}; epochs run {tr['epochs']}, "
        f"best epoch {tr.get('best_epoch')}, {float(tr['seconds'] or 0):.1f} s.",
        f"- OISST days: {dv['oisst_final_days']} final, {dv['oisst_preliminary_days']} preliminary "
        f"(preliminary share {'n/a' if share is None else f'{100 * share:.1f} %'}).",
        f"- Data: {json.dumps(tr['data'])}.",
        "",
        "## Validation (degC, ocean cells)",
        f"- RMSE raw HYCOM {val.get('rmse_raw', float('nan')):.4f}, corrected "
        f"{val.get('rmse_corrected', float('nan')):.4f} (improvement {val.get('improvement_pct', float('nan')):.1f} %).",
        f"- MAE raw {val.get('mae_raw', float('nan')):.4f}, corrected {val.get('mae_corrected', float('nan')):.4f}; "
        f"{val.get('n_samples')} samples.",
        "- Uncertainty (RMS residual corrected - OISST per lead day, used as `sst_uncertainty`): "
        + ", ".join(f"{k}: {v:.3f}" for k, v in unc.items()) + ".",
        "",
        "## Export and parity (gate: max |diff| <= "
        f"{par['tolerance_degC']} degC, RMSE diff <= {par['tolerance_rmse_degC']} degC)",
        f"- ONNX opset {man['onnx_opset']}, torch {man['torch_version']}, sstbc {code['sstbc']} "
        f"(git {code.get('git_commit') or 'unknown'}{' dirty' if code.get('git_dirty') else ''}).",
        f"- ONNX Runtime CPU vs torch CPU: {_fmt_parity(par['cpu'])}.",
        f"- ONNX Runtime CUDA vs torch CUDA (TF32 off): {_fmt_parity(par['cuda'])}.",
        f"- TorchScript ({par['torchscript'].get('method')}) vs torch eager: {_fmt_parity(par['torchscript'])}.",
        *[f"- `{name}` sha256 `{a['sha256']}` ({a['bytes']} bytes)" for name, a in man["artifacts"].items()],
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
    # --- tile-trained models (train.py, Training.tile_size): the graph example, the parity shapes and the
    # manifest "tile"/"inputs"/"outputs" shapes use the training tile; "grid" stays the full contract grid.
    if meta.get("tile"):
        h, w = int(meta["tile"]["nlat"]), int(meta["tile"]["nlon"])
    # ---
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
        names = input_names(model)
        opset = _check_graph(onnx_path, t, names)
        aux_names = list(meta.get("aux_inputs") or [])
        lag = int(meta.get("oisst_lag_days") or 1)
        period = meta.get("training_period") or {}
        write_onnx_metadata(onnx_path, {
            "seq_len": str(t), "vmin_degC": repr(vmin), "vmax_degC": repr(vmax),
            "grid_id": str(g["grid_id"]), "mask_sha256": str(meta["mask_hash"]),
            "training_period": f"{period.get('start')}/{period.get('end')}",
            "framing": meta.get("framing", FRAMING), "architecture": str(meta["architecture"]),
            "inputs": "sst[batch,T,H,W] degC NaN=land; lead_days[batch] days"
                      + (f"; aux[batch,T,{len(aux_names)},H,W] {','.join(aux_names)}" if aux_names else ""),
            "aux_inputs": ",".join(aux_names),
            "outputs": "sst_corrected[batch,H,W] degC NaN=land",
            "code_version": bias_correction.__version__, "torch_version": torch.__version__,
            "model_id": model_id, "version": version,
        })
        parity = parity_check(model, onnx_path, t, h, w, vmin, vmax, dynamic_hw)
        parity["dynamic_hw"] = dynamic_hw
        ts_path = tmp / TORCHSCRIPT_FILE
        ts_method = export_torchscript(model, ts_path, t, h, w, vmin, vmax)
        ts_parity = {"method": ts_method, **parity_check_torchscript(model, ts_path, t, h, w, vmin, vmax, dynamic_hw)}
        cuda_parity = parity_check_cuda(model, onnx_path, t, h, w, vmin, vmax, dynamic_hw)
        leads = [int(k) for k in (meta.get("lead_days") or range(1, 8))]
        residuals = _residual_stats(meta.get("val_scores"), leads)
        from bias_correction.training.receptive_field import measure_halo  # the halo the run needs (grid.halo)

        probe = measure_halo(model, t, leads=sorted({leads[0], leads[len(leads) // 2], leads[-1]}))
        manifest = Manifest(**{
            "schema_version": SCHEMA_VERSION,
            "model_id": model_id,
            "version": version,
            "architecture": meta["architecture"],
            "arch_kwargs": meta["arch_kwargs"],
            "seq_len": t,
            "framing": meta.get("framing", FRAMING),
            "inputs": [{"name": "sst", "units": "degC", "shape": ["batch", t, h, w]},
                       {"name": "lead_days", "units": "days", "shape": ["batch"]},
                       *([{"name": "aux", "units": [aux_input(a).units for a in aux_names],
                           "channels": aux_names, "shape": ["batch", t, len(aux_names), h, w]}] if aux_names else [])],
            "aux_inputs": aux_names,
            "oisst_lag_days": lag,
            "outputs": [{"name": "sst_corrected", "units": "degC", "shape": ["batch", h, w]}],
            "input_variables": [
                {"name": "sst", "source": "HYCOM water_temp at 0 m, daily mean of lead day k", "units": "degC",
                 "steps": f"runs R-{t - 1}..R", "land": "NaN"},
                {"name": "lead_days", "source": "forecast lead day k", "units": "days"},
                *[{"name": a, "source": aux_input(a).description.replace("oisst_lag_days", str(lag)), "units": aux_input(a).units,
                   "steps": f"runs R-{t - 1}..R", "land": "NaN"} for a in aux_names],
            ],
            "lead_days": leads,
            "grid": g,
            "tile": {"nlat": h, "nlon": w, "domain_dependent": zoo.domain_dependent(meta["architecture"]),
                     "dynamic_hw": dynamic_hw},
            "halo_cells": probe.pop("halo_cells"), "receptive_field": probe,
            "mask_sha256": meta["mask_hash"],
            "normalisation": {"vmin": vmin, "vmax": vmax, "units": "degC",
                              "aux": {a: {"offset": o, "scale": sc} for a, (o, sc) in
                                      zip(aux_names, meta.get("aux_norm") or [])}},
            **manifest_regimes(period.get("start"), period.get("end"), meta.get("data_info")),
            "training": {"period_start": period.get("start"), "period_end": period.get("end"),
                         "validation_period": meta.get("validation_period"),
                         "data": meta.get("data_info"), "data_versions": _data_versions(meta.get("data_info")),
                         "epochs": meta.get("epochs_run"), "best_epoch": meta.get("best_epoch"),
                         "seconds": meta.get("train_seconds"),
                         "correction_envelope_degC": meta.get("correction_envelope_degC"),
                         "hyperparameters": meta.get("hyperparameters")},
            "validation": {**(meta.get("val_scores") or {}), "residual_per_lead": residuals},
            "uncertainty": {"method": "calibrated validation residual statistics",
                            "per_lead_rmse_degC": {k: v["rmse"] for k, v in residuals.items()}},
            "parity": {**parity, "cpu": dict(parity), "cuda": cuda_parity, "torchscript": ts_parity},
            "code_version": code_version(),
            "torch_version": torch.__version__,
            "onnx_opset": opset,
            "artifacts": {name: artifact_entry(tmp / name) for name in (MODEL_FILE, TORCHSCRIPT_FILE)},
            "created": utc_stamp(),
            "export_seconds": round(time.perf_counter() - t0, 2),
        })
        manifest.write(tmp, _model_card(manifest.raw))
        # the calibration block's uncertainty and the flag thresholds (training.calibrate), before anything is visible
        from bias_correction.training.calibrate import attach_sidecar

        attach_sidecar(Path(checkpoint_path), tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    aliases.bootstrap(model_store, model_id, version)  # the first version of a model id becomes current
    return final
