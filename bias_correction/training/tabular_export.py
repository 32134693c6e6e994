"""Fit the tabular models (LightGBM, Random Forest, statistical baselines) and package them.

The package has the layout and guarantees of the gridded ones (``training.export``): it is built in a
hidden temporary sibling folder and renamed into place only once every check passed; the manifest
(schema 2, ``"kind": "tabular"``) records the sha256 and size of every artifact, which
``correction.tabular.load_tabular_manifest`` checks before anything else; a ``MODEL_CARD.md`` goes
with it. Artifacts (no pickle anywhere):

* Random Forest: ``model.onnx`` (skl2onnx), run by ONNX Runtime on the CPU. A forest that does not
  convert (or fails the converter's parity check) gets no package: it has no pickle-free native form.
* LightGBM: ``model.onnx`` (onnxmltools) when it passes parity, else LightGBM's text model
  ``lightgbm_booster.txt`` with ``"runtime": "native"`` in the manifest.
* mean-bias, linear-regression, quantile-mapping: their fitted parameters as ``params.npz``.

Gate before the rename: the package is reloaded through :class:`~bias_correction.correction.tabular.
TabularCorrector` (what the daily pipeline runs) and its output on every validation sample compared
with the in-memory model's: identical for the npz baselines, within ``trees.PARITY_ATOL_DEGC``
(1e-4 degC) for trees (float32 tree sums in ONNX Runtime).

Training hyperparameters come from :data:`TABULAR_PARAMS` (models.md 10.4, with the forest capped as in
the benchmark: the ONNX file grows with the number of nodes), overridable per call.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bias_correction import zoo
from bias_correction.correction import aliases
from bias_correction.correction.manifest import (
    BOOSTER_FILE,
    CARD_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    PARAMS_FILE,
    SCHEMA_VERSION,
    Manifest,
    artifact_entry,
    utc_stamp,
    utc_version,
)
from bias_correction.correction.manifest import TABULAR as KIND
from bias_correction.correction.tabular import (
    BASELINE_MODELS,
    NATIVE,
    TABULAR_MODELS,
    TREE_MODELS,
    TabularCorrector,
    load_tabular_manifest,
)
from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.gate import training_envelope
from bias_correction.grid.grids import RegularGrid
from bias_correction.training.baselines import _Base, build_baseline, save_npz
from bias_correction.inputs import aux_input
from bias_correction.regime import manifest_regimes
from bias_correction.training.dataset import SampleSet, normalisation
from bias_correction.training.trees import PARITY_ATOL_DEGC, TreeModel

if TYPE_CHECKING:
    from bias_correction.config import Training

LOG = logging.getLogger(__name__)
STAGED_PACKAGE = "package"
__all__ = ["BOOSTER_FILE", "CARD_FILE", "MANIFEST_FILE", "ONNX_FILE", "PARAMS_FILE", "SCHEMA_VERSION",
           "TABULAR_MODELS", "build_package", "export_tabular_package", "install_package",
           "train_tabular", "utc_version"]

#: Per-model training parameters (TreeModel: ``max_rows`` plus estimator arguments; baselines: their
#: constructor arguments), from the registry. LightGBM's other defaults (learning rate 0.05, 63 leaves,
#: early stopping after 100 rounds on the validation split, ...) are TreeModel's, as in models.md 10.4.
TABULAR_PARAMS: dict[str, dict[str, Any]] = {s.id: dict(s.train_params) for s in zoo.specs(zoo.TABULAR, zoo.BASELINE)}
#: What each model's output is, as the manifest and the model card say (from the registry).
FRAMING = {s.id: s.framing for s in zoo.specs(zoo.TABULAR, zoo.BASELINE)}


def build_tabular(name: str, *, seed: int = 0, params: dict[str, Any] | None = None) -> TreeModel | _Base:
    """An unfitted tabular model with :data:`TABULAR_PARAMS` updated by ``params``."""
    if not zoo.is_tabular(name):
        raise ConfigError(f"{name!r} is not a tabular model; known: {', '.join(TABULAR_MODELS)}")
    p = {**TABULAR_PARAMS.get(name, {}), **(params or {})}
    if name in TREE_MODELS:
        return TreeModel(name, max_rows=int(p.pop("max_rows", 200_000)), seed=seed, **p)
    if p.get("engine") == "xsdba":  # the quantile mapping's default engine
        try:
            import xsdba  # noqa: F401
        except ImportError:
            LOG.warning("xsdba is not installed; quantile mapping is fitted with the numpy engine (same mapping)")
            p["engine"] = "numpy"
    return build_baseline(name, **p)


def fit_tabular(name: str, train: SampleSet, val: SampleSet, *, grid: RegularGrid, seed: int = 0,
                params: dict[str, Any] | None = None) -> TreeModel | _Base:
    """Fit ``name`` on ``train`` (trees: their auxiliary inputs are features; LightGBM early-stops on ``val``)."""
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"{name}: need training and validation samples, got {len(train)} and {len(val)}")
    model = build_tabular(name, seed=seed, params=params)
    if isinstance(model, TreeModel):
        return model.fit(train, val, lat=grid.lat, lon=grid.lon)
    return model.fit(train)


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = repr(v)
    return out


def hyperparameters(model: TreeModel | _Base) -> dict[str, Any]:
    """What was fitted with: estimator parameters (trees) or the baseline's scalar settings."""
    if isinstance(model, TreeModel):
        hp = {"max_rows": model.max_rows, "seed": model.seed, **_json_safe(model.estimator.get_params())}
        best = getattr(model.estimator, "best_iteration_", None)
        if model.boosted and best:
            hp["best_iteration"] = int(best)
        return hp
    return {k: v.item() for k, v in model.to_arrays().items() if np.ndim(v) == 0}


def n_parameters(model: TreeModel | _Base) -> int:
    """Tree nodes (trees) or the count of fitted numbers (baselines)."""
    if isinstance(model, TreeModel):
        return model.n_parameters()
    return int(sum(np.size(v) for k, v in model.to_arrays().items() if np.ndim(v) > 0))


def _arch(model: TreeModel | _Base) -> str:
    return model.kind if isinstance(model, TreeModel) else model.name


def _aux_of(model: TreeModel | _Base) -> tuple[str, ...]:
    return tuple(model.aux_names) if isinstance(model, TreeModel) else ()


def _scores(pred: np.ndarray, val: SampleSet, leads: list[int]) -> dict[str, Any]:
    """Validation scores (degC, ocean cells) and the per-lead residual statistics (corrected - OISST).

    A trained lead without validation samples (the chronological split by valid day favours the long
    leads at its end) gets the all-lead RMSE, marked as such, as the gridded export does.
    """
    raw = val.x[:, -1].astype(np.float64)
    y = val.y.astype(np.float64)
    p = pred.astype(np.float64)
    ok = np.isfinite(p) & np.isfinite(y) & np.isfinite(raw)
    if not ok.any():
        raise ModelContractError("no validation cell with a prediction and an OISST value")
    e, r = (p - y)[ok], (raw - y)[ok]
    per = {}
    for k in np.unique(val.lead):
        sel = ok & (val.lead == k)[:, None, None]
        d = (p - y)[sel]
        if d.size:
            per[str(int(k))] = {"rmse": float(np.sqrt(np.mean(d * d))), "bias": float(d.mean()), "n": int(d.size),
                                "source": "per-lead validation residuals"}
    rmse_raw, rmse = float(np.sqrt(np.mean(r * r))), float(np.sqrt(np.mean(e * e)))
    for k in leads:
        per.setdefault(str(k), {"rmse": rmse, "bias": None, "n": int(ok.sum()),
                                "source": "all-lead validation RMSE (no validation sample at this lead)"})
    per = dict(sorted(per.items(), key=lambda kv: int(kv[0])))
    return {"rmse_raw": rmse_raw, "rmse_corrected": rmse, "mae_raw": float(np.abs(r).mean()),
            "mae_corrected": float(np.abs(e).mean()), "bias_corrected": float(e.mean()),
            "improvement_pct": 100.0 * (rmse_raw - rmse) / rmse_raw if rmse_raw > 0 else 0.0,
            "n_samples": len(val), "n_cells": int(ok.sum()), "residual_per_lead": per}


def _parity(ref: np.ndarray, got: np.ndarray, tol: float, what: str) -> dict[str, Any]:
    if got.shape != ref.shape:
        raise ModelContractError(f"parity ({what}): package output shape {list(got.shape)} != model {list(ref.shape)}")
    if not np.array_equal(np.isnan(got), np.isnan(ref)):
        raise ModelContractError(f"parity ({what}): the NaN (land) pattern of the package output differs from the "
                                 f"in-memory model's in {int((np.isnan(got) != np.isnan(ref)).sum())} cells")
    ok = ~np.isnan(ref)
    d = got[ok].astype(np.float64) - ref[ok].astype(np.float64)
    max_abs = float(np.abs(d).max()) if d.size else 0.0
    rmse = float(np.sqrt(np.mean(d * d))) if d.size else 0.0
    if not max_abs <= tol:
        raise ModelContractError(f"parity failed ({what}): max |package - in-memory model| = {max_abs:.3g} degC over "
                                 f"ocean > {tol} degC")
    return {"max_abs_diff_degC": max_abs, "rmse_diff_degC": rmse, "n_ocean_values": int(d.size), "tolerance_degC": tol}


def _write_artifact(model: TreeModel | _Base, runtime: str, tmp: Path, val: SampleSet,
                    contract: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Write the model artifact for ``runtime`` into ``tmp``; (file name, manifest block)."""
    if isinstance(model, TreeModel):
        if runtime == "onnx":
            info = model.export_onnx(tmp / ONNX_FILE, val)
            if info.get("runtime") != "onnx":
                raise ModelContractError(f"{model.kind} ONNX conversion failed: {info.get('reason')}")
            from bias_correction.training.export import write_onnx_metadata

            write_onnx_metadata(tmp / ONNX_FILE, {**contract, "features": ",".join(info["features"]),
                                             "inputs": f"features[rows,{len(info['features'])}] float32",
                                             "outputs": "residual[rows] degC (OISST - HYCOM lag 0)"})
            info["bytes"] = (tmp / ONNX_FILE).stat().st_size
            return ONNX_FILE, info
        return BOOSTER_FILE, model.save_native(tmp / BOOSTER_FILE)
    save_npz(model, tmp / PARAMS_FILE)
    return PARAMS_FILE, {"kind": model.name, "runtime": NATIVE, "file": PARAMS_FILE,
                         "format": "numpy .npz (allow_pickle=False)", "arrays": sorted(model.to_arrays())}


def _data_versions(data_info: dict[str, Any] | None) -> dict[str, Any]:
    from bias_correction.training.export import _data_versions as dv

    return dv(data_info)


def _manifest(model: TreeModel | _Base, *, model_id: str, version: str, runtime: str, model_file: str,
              artifact_info: dict[str, Any], train: SampleSet, val: SampleSet, grid: RegularGrid, mask_hash: str,
              oisst_lag_days: int, data_info: dict[str, Any] | None, train_seconds: float | None,
              val_scores: dict[str, Any], leads: list[int], tmp: Path) -> Manifest:
    from bias_correction.io.provenance import code_version

    arch, aux = _arch(model), list(_aux_of(model))
    t, (h, w) = train.seq_len, grid.shape
    vmin, vmax = normalisation(train)
    envelope = training_envelope(train.y, train.x[:, -1])
    needs_valid = isinstance(model, TreeModel) or bool(model.needs_valid_days)
    tr_period, val_period = train.period(), val.period()
    residuals = val_scores["residual_per_lead"]
    return Manifest(**{
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "model_id": model_id,
        "version": version,
        "architecture": arch,
        "runtime": runtime,
        "model_file": model_file,
        "seq_len": t,
        "framing": FRAMING[arch],
        "features": artifact_info.get("features"),
        "inputs": [{"name": "sst", "units": "degC", "shape": ["batch", t, h, w]},
                   {"name": "lead_days", "units": "days", "shape": ["batch"]},
                   *([{"name": "aux", "units": [aux_input(a).units for a in aux], "channels": aux,
                       "shape": ["batch", t, len(aux), h, w]}] if aux else []),
                   *([{"name": "valid_days", "units": "date", "shape": ["batch"]}] if needs_valid else [])],
        "aux_inputs": aux,
        "oisst_lag_days": int(oisst_lag_days),
        "outputs": [{"name": "sst_corrected", "units": "degC", "shape": ["batch", h, w]}],
        "input_variables": [
            {"name": "sst", "source": "HYCOM water_temp at 0 m, daily mean of lead day k", "units": "degC",
             "steps": f"runs R-{t - 1}..R", "land": "NaN"},
            {"name": "lead_days", "source": "forecast lead day k", "units": "days"},
            *[{"name": a, "source": aux_input(a).description.replace("oisst_lag_days", str(oisst_lag_days)),
               "units": aux_input(a).units, "steps": f"runs R-{t - 1}..R (lag 0 used)", "land": "NaN"} for a in aux],
            *([{"name": "valid_days", "source": "valid day R + k (day of year)", "units": "date"}] if needs_valid else []),
        ],
        "lead_days": leads,
        "grid": grid.to_dict(),
        "tile": {"nlat": h, "nlon": w, "domain_dependent": False, "dynamic_hw": False,
                 "note": "per-pixel model of this grid (lat/lon are features): runs on exactly this grid"},
        "mask_sha256": mask_hash,
        "normalisation": {"method": "none (features in physical units)", "vmin": vmin, "vmax": vmax, "units": "degC",
                          "note": "vmin/vmax: training range of HYCOM and OISST, informative only"},
        **manifest_regimes(tr_period[0] if tr_period else None, tr_period[1] if tr_period else None, data_info),
        "training": {"period_start": tr_period[0] if tr_period else None,
                     "period_end": tr_period[1] if tr_period else None,
                     "validation_period": list(val_period) if val_period else None,
                     "samples": {"train": len(train), "val": len(val)},
                     "rows": getattr(model, "n_rows", None),
                     "data": data_info, "data_versions": _data_versions(data_info),
                     "seconds": train_seconds, "correction_envelope_degC": envelope,
                     "hyperparameters": hyperparameters(model), "n_parameters": n_parameters(model)},
        "validation": val_scores,
        "uncertainty": {"method": "calibrated validation residual statistics",
                        "per_lead_rmse_degC": {k: v["rmse"] for k, v in residuals.items()}},
        "export": artifact_info,
        "parity": {},
        "code_version": code_version(),
        "artifacts": {model_file: artifact_entry(tmp / model_file)},
        "created": utc_stamp(),
    })


def _fmt(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def model_card(man: dict[str, Any]) -> str:
    """MODEL_CARD.md of a tabular package."""
    tr, val, par, g, exp = man["training"], man["validation"], man["parity"], man["grid"], man.get("export") or {}
    dv = tr["data_versions"]
    share = dv.get("oisst_preliminary_share")
    unc = man["uncertainty"]["per_lead_rmse_degC"]
    code = man["code_version"]
    t, aux = man["seq_len"], man["aux_inputs"]
    runtime = ("ONNX Runtime, CPU execution provider" if man["runtime"] == "onnx"
               else "LightGBM booster (native)" if man["model_file"] == BOOSTER_FILE else "numpy (fitted parameters)")
    lines = [
        f"# Model card: {man['model_id']} {man['version']}",
        "",
        (f"Bias correction of HYCOM daily-mean SST forecasts against NOAA OISST v2.1 with the tabular model "
        f"**{man['architecture']}** ({json.dumps(tr['hyperparameters'])}). Manifest schema {man['schema_version']}, "
        f"kind {man['kind']}."),
        "",
        "## Contract",
        (f"- Input `sst`: [batch, {t}, {g['nlat']}, {g['nlon']}] HYCOM SST in degC for runs R-{t - 1}..R at one lead, "
        "NaN on land."),
        "- Input `lead_days`: [batch] lead in days of those fields; trained leads " + str(man["lead_days"]) + ".",
        *([(f"- Input `aux`: [batch, {t}, {len(aux)}, {g['nlat']}, {g['nlon']}] channels {aux} (latest OISST = day "
           f"of run - {man['oisst_lag_days']}); the lag-0 values are features.")] if aux else []),
        *(["- Input `valid_days`: [batch] valid day R + lead (day of year)."]
          if any(i["name"] == "valid_days" for i in man["inputs"]) else []),
        f"- Output: [batch, {g['nlat']}, {g['nlon']}] corrected SST in degC, NaN on land.",
        f"- Framing: {man['framing']}.",
        *([f"- Features ({len(man['features'])}): {', '.join(man['features'])}."] if man.get("features") else []),
        f"- Grid: `{g['grid_id']}` (lat0 {g['lat0']}, lon0 {g['lon0']}, step {g['step']} deg); runs on exactly this grid.",
        f"- Ocean mask sha256: `{man['mask_sha256']}`.",
        f"- Model artifact `{man['model_file']}`, run by {runtime}. No pickle.",
        "",
        "## Training",
        f"- Period (valid days): {tr['period_start']} to {tr['period_end']}; {tr['samples']['train']} training samples"
        + (f", {tr['rows']} rows" if tr.get("rows") else "")
        + (f"; fitted in {float(tr['seconds']):.1f} s." if tr.get("seconds") is not None else "."),
        (f"- OISST days: {dv['oisst_final_days']} final, {dv['oisst_preliminary_days']} preliminary "
        f"(preliminary share {'n/a' if share is None else f'{100 * share:.1f} %'})."),
        f"- Correction envelope (largest |OISST - HYCOM| in training): {_fmt(tr['correction_envelope_degC'], 3)} degC.",
        f"- Data: {json.dumps(tr['data'])}.",
        "",
        "## Validation (degC, ocean cells)",
        f"- Period {val.get('period', man['training'].get('validation_period'))}; {val['n_samples']} samples.",
        (f"- RMSE raw HYCOM {_fmt(val['rmse_raw'])}, corrected {_fmt(val['rmse_corrected'])} "
        f"(improvement {val['improvement_pct']:.1f} %); MAE raw {_fmt(val['mae_raw'])}, corrected "
        f"{_fmt(val['mae_corrected'])}."),
        "- Uncertainty (RMS residual corrected - OISST per lead day, used as `sst_uncertainty`): "
        + ", ".join(f"{k}: {v:.3f}" for k, v in unc.items()) + ".",
        "",
        f"## Export and parity (gate: max |diff| <= {par['tolerance_degC']} degC)",
        (f"- Package reloaded ({par['runtime']}, {par['provider']}) vs the in-memory model on every validation "
        f"sample: max |diff| {par['max_abs_diff_degC']:.2e} degC, RMSE diff {par['rmse_diff_degC']:.2e} degC "
        f"over {par['n_ocean_values']} ocean values."),
        *([(f"- ONNX conversion vs native estimator: max |diff| {exp['parity_max_abs_degC']:.2e} degC over "
           f"{exp['n_rows_checked']} rows.")] if "parity_max_abs_degC" in exp else []),
        *[f"- Rejected {k} artifact: {v}" for k, v in (exp.get("rejected") or {}).items()],
        f"- sstbc {code['sstbc']} (git {code.get('git_commit') or 'unknown'}{' dirty' if code.get('git_dirty') else ''}).",
        *[f"- `{name}` sha256 `{a['sha256']}` ({a['bytes']} bytes)" for name, a in man["artifacts"].items()],
        "",
    ]
    return "\n".join(lines)


def _write(tmp: Path, manifest: Manifest) -> None:
    manifest.write(tmp, model_card(manifest.raw))


def _check_names(model_id: str, version: str) -> None:
    if not model_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"model_id must be alphanumeric with - or _, got {model_id!r}")
    if not version.replace("-", "").replace("_", "").replace(".", "").isalnum() or version.startswith("."):
        raise ConfigError(f"version must be alphanumeric (with - _ .), got {version!r}")


def _place(tmp: Path, dest: Path, replace: bool) -> None:
    """Rename the finished ``tmp`` onto ``dest`` (atomic); with ``replace`` an older ``dest`` goes afterwards."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    if not replace:
        raise ModelContractError(f"model package {dest} already exists; choose another version")
    old = dest.parent / f".old-{dest.name}-{uuid.uuid4().hex[:8]}"
    os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def build_package(model: TreeModel | _Base, train: SampleSet, val: SampleSet, dest: Path, *, grid: RegularGrid,
                  mask_hash: str, model_id: str, version: str, oisst_lag_days: int = 1,
                  data_info: dict[str, Any] | None = None, train_seconds: float | None = None,
                  replace: bool = False) -> Path:
    """Package a fitted tabular ``model`` as folder ``dest`` (atomic: hidden temp sibling, then rename)."""
    t0 = time.perf_counter()
    _check_names(model_id, version)
    arch, aux = _arch(model), _aux_of(model)
    for s, what in ((train, "training"), (val, "validation")):
        if len(s) == 0:
            raise ConfigError(f"{arch}: the {what} samples are empty")
        if s.shape != grid.shape:
            raise ModelContractError(f"{what} samples are {s.shape[0]}x{s.shape[1]}, grid {grid.grid_id} is "
                                     f"{grid.nlat}x{grid.nlon}")
        if s.seq_len != train.seq_len:
            raise ModelContractError(f"{what} samples have T={s.seq_len}, training samples T={train.seq_len}")
    if isinstance(model, TreeModel):
        if not hasattr(model, "estimator"):
            raise ConfigError(f"{arch} is not fitted")
        if model.seq_len != train.seq_len or not (np.allclose(model.lat, grid.lat) and np.allclose(model.lon, grid.lon)):
            raise ModelContractError(f"{arch} was fitted with T={model.seq_len} on other lat/lon than grid {grid.grid_id}")
    val_in = val.with_aux(aux)
    ref = model.predict(val_in)  # the in-memory model: the reference of the parity gate and the validation scores
    leads = sorted(int(k) for k in np.unique(train.lead))
    val_scores = _scores(ref, val_in, leads)
    val_scores["period"] = list(val.period() or ())
    contract = {"architecture": arch, "seq_len": str(train.seq_len), "grid_id": grid.grid_id, "mask_sha256": mask_hash,
                "aux_inputs": ",".join(aux), "framing": FRAMING[arch], "kind": KIND}
    candidates = list(zoo.get(arch).runtimes)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not replace:
        raise ModelContractError(f"model package {dest} already exists; choose another version")
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        failures: dict[str, str] = {}
        for runtime in candidates:
            for f in tmp.iterdir():
                f.unlink()
            try:
                model_file, info = _write_artifact(model, runtime, tmp, val_in, contract)
                manifest = _manifest(model, model_id=model_id, version=version, runtime=runtime, model_file=model_file,
                                     artifact_info=info, train=train, val=val_in, grid=grid, mask_hash=mask_hash,
                                     oisst_lag_days=oisst_lag_days, data_info=data_info, train_seconds=train_seconds,
                                     val_scores=val_scores, leads=leads, tmp=tmp)
                _write(tmp, manifest.model_copy(update={"parity": {
                    "tolerance_degC": 0.0, "runtime": runtime, "provider": "", "max_abs_diff_degC": 0.0,
                    "rmse_diff_degC": 0.0, "n_ocean_values": 0}}))
                corrector = TabularCorrector.load(tmp, "cpu", "onnx")
                got = corrector.correct(val_in.x, val_in.lead, val_in.aux, valid_days=val_in.valid)
                tol = PARITY_ATOL_DEGC if isinstance(model, TreeModel) else 0.0
                fig = _parity(ref, got, tol, f"{arch} {runtime} package vs in-memory model")
            except ModelContractError as exc:
                failures[runtime] = str(exc)
                LOG.warning("%s: %s artifact refused: %s", arch, runtime, exc)
                continue
            parity = {"what": "package reloaded through TabularCorrector vs the in-memory fitted model, every "
                              "validation sample", "runtime": runtime, "provider": corrector.active_provider, **fig}
            parity["cpu"] = dict(parity)
            export = {k: v for k, v in info.items() if k != "features"}
            if failures:  # e.g. LightGBM whose ONNX conversion failed its parity check: runs natively
                export["rejected"] = {k: v[:300] for k, v in failures.items()}
            manifest = manifest.model_copy(update={"parity": parity, "export": export,
                                                   "export_seconds": round(time.perf_counter() - t0, 2)})
            _write(tmp, manifest)
            load_tabular_manifest(tmp)  # what was written verifies
            break
        else:
            raise ModelContractError(f"{arch}: no artifact passed the export checks; no package written "
                                     f"({'; '.join(f'{k}: {v}' for k, v in failures.items())})")
        _place(tmp, dest, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOG.info("%s package %s written (%s, parity %.2e degC)", arch, dest, manifest.runtime,
             manifest.parity["max_abs_diff_degC"])
    return dest


def export_tabular_package(model: TreeModel | _Base, train: SampleSet, val: SampleSet, *, grid: RegularGrid,
                           mask_hash: str, model_store: Path | str, model_id: str, version: str | None = None,
                           oisst_lag_days: int = 1, data_info: dict[str, Any] | None = None,
                           train_seconds: float | None = None) -> Path:
    """Fitted ``model`` -> ``model_store/model_id/version/`` (atomic, verified). Returns the package folder."""
    version = version or utc_version()
    _check_names(model_id, version)
    dest = build_package(model, train, val, Path(model_store) / model_id / version, grid=grid, mask_hash=mask_hash,
                         model_id=model_id, version=version, oisst_lag_days=oisst_lag_days, data_info=data_info,
                         train_seconds=train_seconds)
    aliases.bootstrap(model_store, model_id, version)  # the first version of a model id becomes current
    return dest


def install_package(src: Path | str, model_store: Path | str, model_id: str, version: str | None = None) -> Path:
    """Copy a verified tabular package (e.g. the one ``train_tabular`` staged) into the model store as
    ``model_store/model_id/version`` (default version: now, UTC), atomically; artifacts are re-verified."""
    src = Path(src)
    if not (src / MANIFEST_FILE).is_file():
        raise ModelContractError(f"{src} is not a model package (no {MANIFEST_FILE}); expected a tabular package "
                                 "folder written by `sstbc train` or a gridded checkpoint file")
    man = load_tabular_manifest(src)
    version = version or utc_version()
    _check_names(model_id, version)
    dest = Path(model_store) / model_id / version
    if dest.exists():
        raise ModelContractError(f"model package {dest} already exists; choose another version")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name in man.artifacts:
            shutil.copyfile(src / name, tmp / name)
        _write(tmp, man.model_copy(update={
            "model_id": model_id, "version": version,
            "installed": {"from": str(src), "model_id": man.model_id, "version": man.version, "at": utc_stamp()}}))
        TabularCorrector.load(tmp, "cpu", "onnx")  # verifies every artifact again and opens the backend
        _place(tmp, dest, replace=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    aliases.bootstrap(model_store, model_id, version)  # the first version of a model id becomes current
    return dest


def train_tabular(cfg: Training, train: SampleSet, val: SampleSet, *, grid: RegularGrid, mask_hash: str,
                  model_id: str, out_dir: Path, data_info: dict[str, Any] | None = None,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit ``cfg.model`` and stage its verified package as ``out_dir/package`` (the tabular "checkpoint":
    ``pipeline.export_checkpoint`` installs it into the model store). Returns what ``sstbc train`` reports."""
    want_aux = tuple(cfg.resolved_aux_inputs) if cfg.model in TREE_MODELS else ()
    if cfg.model in TREE_MODELS and tuple(train.aux_names) != want_aux:
        raise ConfigError(f"training samples carry auxiliary inputs {list(train.aux_names)}, the configuration asks "
                          f"for {list(want_aux)}")
    if cfg.model in BASELINE_MODELS and cfg.resolved_aux_inputs:
        LOG.warning("%s takes no auxiliary inputs; %s ignored", cfg.model, list(cfg.resolved_aux_inputs))
    tr, va = train.with_aux(want_aux), val.with_aux(want_aux)
    t0 = time.perf_counter()
    model = fit_tabular(cfg.model, tr, va, grid=grid, seed=cfg.seed, params=params)
    secs = time.perf_counter() - t0
    out_dir = Path(out_dir)
    staged = build_package(model, tr, va, out_dir / STAGED_PACKAGE, grid=grid, mask_hash=mask_hash, model_id=model_id,
                           version=utc_version(), oisst_lag_days=cfg.oisst_lag_days, data_info=data_info,
                           train_seconds=secs, replace=True)
    man = load_tabular_manifest(staged)
    v = man.validation
    assert v is not None  # a tabular manifest always has its validation scores
    return {"checkpoint": str(staged), "kind": KIND, "architecture": cfg.model, "runtime": man.runtime,
            "epochs_run": None, "best_epoch": None, "train_seconds": secs, "n_parameters": n_parameters(model),
            "samples": {"train": len(train), "val": len(val)},
            "val": {"rmse_raw": v.rmse_raw, "rmse_model": v.rmse_corrected}}
