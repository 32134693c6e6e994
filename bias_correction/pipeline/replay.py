"""Replay: regenerate a published product from its recorded inputs and model, both sha256-checked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.errors import InputValidationError, ModelContractError
from bias_correction.inputs import HYCOM_SST, input_spec
from bias_correction.io import archive
from bias_correction.io.archive import ArchiveEntry
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import as_single_run
from bias_correction.io.provenance import read_provenance
from bias_correction.pipeline.context import Context, model_view, require_mask
from bias_correction.pipeline.correct import infer
from bias_correction.sources.hycom import run_time

#: Replay tolerance: a regenerated product must match the published one within the parity gate.
REPLAY_TOLERANCE_DEGC = 0.01


def replay_product(ctx: Context, product: str | Path, *, providers: str | None = None) -> dict[str, Any]:
    """Regenerate a product from its recorded inputs (archive, sha256-checked) and model (sha256-checked).

    ``product`` is a local path or a key in the storage root. Returns the max |difference| of ``sst``
    over ocean against the published file; ``ok`` when within :data:`REPLAY_TOLERANCE_DEGC`.
    """
    from bias_correction.correction.base import load_corrector as _load

    local = Path(product)
    if local.is_file():
        prov, ds = read_provenance(local), read_dataset(local, engine="netcdf4")
    else:
        with ctx.store.local_path(str(product)) as path:
            prov, ds = read_provenance(path), read_dataset(path, engine="netcdf4")
    corrector = _load(ctx.settings.model_store, prov["model_id"], prov["model_version"],
                      providers or ctx.settings.providers, prov.get("runtime", "onnx"))
    have = corrector.manifest.artifact_sha256
    for name, sha in (prov.get("model_sha256") or {}).items():
        if have.get(name) != sha:
            raise ModelContractError(f"model {prov['model_id']} {prov['model_version']}: artifact {name} sha256 "
                                     f"{have.get(name)} differs from the product's record {sha}")
    mask = require_mask(ctx)  # the model grid's; the product records its region crop (grid.halo)
    view = model_view(ctx, corrector.manifest, mask)
    if prov.get("mask_sha256") and prov["mask_sha256"] not in (view.region_mask.sha256, mask.sha256):
        raise InputValidationError(f"ocean mask sha256 {view.region_mask.sha256} differs from the product's "
                                   f"{prov['mask_sha256']}")
    corrector.check_contract(view.grid, view.mask.sha256, corrector.manifest.seq_len)
    entries: dict[str, list[ArchiveEntry]] = {}
    run_days = []
    for rec in prov["inputs"]:
        kind = input_spec(rec.get("input", HYCOM_SST.name)).name
        when = rec.get("run") or rec.get("day")
        key = rec.get("archive_key") or archive.hycom_key(ctx.grid, run_time(dt.date.fromisoformat(when[:10])))
        entry = archive.existing(ctx.store, key)
        if entry is None:
            raise InputValidationError(f"replay: archived input {key} ({kind} {when}) is missing")
        if entry.source.get("sha256") != rec["sha256"]:
            raise InputValidationError(f"replay: archived input {key} comes from raw sha256 "
                                       f"{entry.source.get('sha256')}, the product used {rec['sha256']}")
        entries.setdefault(kind, []).append(entry)
        if kind == HYCOM_SST.name:
            run_days.append(dt.date.fromisoformat(when[:10]))
    corrected, _, _ = infer(ctx, corrector, mask, entries, run_days)
    one = as_single_run(ds)
    # the model's own field: where the skill guard carried a reference, ``sst`` is that reference
    published = one["sst_model" if "sst_model" in one else "sst"].values
    ocean = np.isfinite(published)
    if not np.array_equal(ocean, np.isfinite(corrected)):
        raise InputValidationError("replay: the regenerated land/ocean pattern differs from the product")
    d = corrected[ocean].astype(np.float64) - published[ocean].astype(np.float64)
    max_abs = max(float(np.abs(d).max()) if d.size else 0.0, _carried_mismatch(one))
    return {"product": str(product), "model_id": prov["model_id"], "model_version": prov["model_version"],
            "runtime": corrector.runtime, "provider": corrector.active_provider,
            "recorded_provider": prov.get("onnxruntime_provider"), "inputs_verified": sum(len(v) for v in entries.values()),
            "max_abs_diff_degC": max_abs, "rmse_diff_degC": float(np.sqrt((d * d).mean())) if d.size else 0.0,
            "tolerance_degC": REPLAY_TOLERANCE_DEGC, "ok": max_abs <= REPLAY_TOLERANCE_DEGC}


def _carried_mismatch(one: Any) -> float:
    """Largest |sst - carried field| over the leads the guard says carry the model or raw HYCOM (°C).

    Replay regenerates the model's field (``sst_model``); this ties the published ``sst`` to it, so a
    changed ``sst`` is caught on every lead that carries the model (or raw HYCOM) too.
    """
    if "sst_model" not in one:
        return 0.0
    carried = str(one.attrs.get("sstbc_guard_carried", "")).split(",")
    sst = one["sst"].values.astype(np.float64)
    worst = 0.0
    for i, what in enumerate(carried[: sst.shape[0]]):
        ref = {"model": "sst_model", "raw": "sst_raw"}.get(what.strip())
        if ref is None:
            continue
        diff = np.abs(sst[i] - one[ref].values[i].astype(np.float64))
        if np.isfinite(diff).any():
            worst = max(worst, float(np.nanmax(diff)))
    return worst
