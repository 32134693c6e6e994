"""Orchestration-free composition of the daily job: fetch -> regrid -> archive -> correct -> write.

Every function here is a plain, idempotent step that the Prefect flows in ``flows/`` wrap as
tasks (and that tests call directly). Nothing here retries across runs or schedules: that is
the orchestrator's job, driven by the retryable/permanent error classes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import bias_correction
from bias_correction.config import Settings
from bias_correction.errors import InputValidationError, NotYetPublishedError
from bias_correction.grid.grids import RegularGrid, target_grid
from bias_correction.grid.mask import OceanMask, apply_mask, derive_mask, load_mask, save_mask
from bias_correction.grid.regrid import Regridder
from bias_correction.io import archive
from bias_correction.io.archive import ArchiveEntry
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import ProductInfo, build_product, existing_digest, product_key
from bias_correction.sources.hycom import HycomSource, run_time
from bias_correction.sources.oisst import PRELIMINARY, OisstSource, _utc_today
from bias_correction.storage import Store
from bias_correction.verification.metrics import improvement_percent, scores

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """Everything a step needs, built once per run from the settings."""

    settings: Settings
    store: Store
    grid: RegularGrid
    oisst: OisstSource
    hycom: HycomSource
    regridder: Regridder = field(compare=False)


def make_context(settings: Settings, today: Callable[[], dt.date] | None = None) -> Context:
    store = Store(settings.storage_root, settings.storage_options or None)
    grid = target_grid(settings.region, settings.grid_step)
    return Context(
        settings=settings,
        store=store,
        grid=grid,
        oisst=OisstSource(
            settings.upstream.oisst_https, store, settings.http, today or _utc_today,
            access=settings.upstream.oisst_access, s3_base=settings.upstream.oisst_s3,
            s3_endpoint=settings.upstream.oisst_s3_endpoint, opendap_base=settings.upstream.oisst_opendap,
            region=settings.region,
        ),
        hycom=HycomSource(settings.upstream.hycom_ncss, store, settings.http, settings.region, settings.lead_days,
                          access=settings.upstream.hycom_access, opendap_base=settings.upstream.hycom_opendap,
                          files_base=settings.upstream.hycom_files),
        # Weights are cached on disk by a hash of source grid, target grid and method (local roots only).
        regridder=Regridder(grid, cache_dir=Path(store.url("grid/weights")) if store.is_local else None),
    )


def archive_oisst_day(ctx: Context, day: dt.date) -> ArchiveEntry:
    """Regridded OISST of ``day`` in the archive (downloading the raw file only if needed).

    A day archived from the preliminary file is upgraded once the final file is expected:
    the final is fetched and the day re-archived; until it is published the preliminary stays.
    """
    hit = archive.existing(ctx.store, archive.oisst_key(ctx.grid, day))
    if hit is not None and (hit.source.get("version") != PRELIMINARY or not ctx.oisst.final_expected(day)):
        return hit
    fetched = ctx.oisst.fetch(day)
    if hit is not None and fetched.version == PRELIMINARY:
        return hit
    sst = ctx.regridder(ctx.oisst.open_region(fetched, ctx.settings.region), method=ctx.settings.regrid.oisst)
    return archive.write_oisst(ctx.store, ctx.grid, day, sst.values, fetched)


def archive_hycom_run(ctx: Context, day: dt.date, variable: str = "sst") -> ArchiveEntry:
    """Regridded daily-mean HYCOM forecast of the 12Z run of ``day`` in the archive.

    ``variable``: "sst" (HYCOM ``water_temp`` at 0 m, °C) or "surf_el" (sea-surface elevation, m), each
    with its own archive key and raw file.
    """
    run = run_time(day)
    source_variable = archive.hycom_archive_variable(variable).source_variable
    hit = archive.existing(ctx.store, archive.hycom_key(ctx.grid, run, variable))
    if hit is not None:
        return hit
    fetched = ctx.hycom.fetch(run, variable=source_variable)
    daily = ctx.regridder(ctx.hycom.daily_means(fetched, run, variable=source_variable),
                          method=ctx.settings.regrid.hycom)
    return archive.write_hycom(ctx.store, ctx.grid, run, daily, fetched, variable=variable)


def ensure_mask(ctx: Context, oisst_day: dt.date, run_day: dt.date) -> OceanMask:
    """The stored ocean mask, or one derived from an archived OISST day and HYCOM run."""
    mask = load_mask(ctx.store, ctx.grid)
    if mask is not None:
        return mask
    o = archive_oisst_day(ctx, oisst_day)
    h = archive_hycom_run(ctx, run_day)
    values = derive_mask(archive.read_field(ctx.store, o.key).values, archive.read_field(ctx.store, h.key).values)
    mask = save_mask(ctx.store, ctx.grid, values, sources=f"OISST {oisst_day}; HYCOM run {run_day}")
    LOG.info("ocean mask for %s: %d ocean cells, sha256 %s", ctx.grid.grid_id, mask.ocean_cells, mask.sha256[:12])
    return mask


def require_mask(ctx: Context) -> OceanMask:
    mask = load_mask(ctx.store, ctx.grid)
    if mask is None:
        raise InputValidationError(
            f"no ocean mask for grid {ctx.grid.grid_id} under {ctx.store.root}: fill the archive first (sstbc fetch / sstbc train)"
        )
    return mask


def archive_dates(start: dt.date, end: dt.date, seq_len: int, lead_days: int,
                  oisst_lag_days: int | None = None) -> tuple[list[dt.date], list[dt.date]]:
    """HYCOM run days and OISST days needed to train on runs ``start``..``end``.

    With ``oisst_lag_days`` (the model takes the latest OISST as an input) the OISST days also cover
    the analyses known when the first window's runs were issued.
    """
    runs = [start + dt.timedelta(days=i) for i in range(-(seq_len - 1), (end - start).days + 1)]
    first = 1 if oisst_lag_days is None else min(1, -(seq_len - 1) - oisst_lag_days)
    days = [start + dt.timedelta(days=i) for i in range(first, (end - start).days + lead_days + 1)]
    return runs, days


def training_inputs(settings: Settings) -> tuple[tuple[str, ...], int | None]:
    """(auxiliary inputs, OISST lag or None) of the configured training: what the archive must hold."""
    aux = settings.training.resolved_aux_inputs
    return aux, (settings.training.oisst_lag_days if "oisst_latest" in aux else None)


def load_corrector(settings: Settings) -> Any:
    """The configured model package, verified (sha256 of every artifact), on the configured runtime/provider."""
    from bias_correction.correction.runtime import load_corrector as _load

    return _load(settings.model_store, settings.model_id, settings.model_version, settings.providers, settings.runtime)


@dataclass(frozen=True)
class RunResult:
    run: dt.datetime
    product: ProductInfo
    model_id: str
    model_version: str
    provider: str
    inputs: list[dict[str, Any]]


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


#: Replay tolerance: a regenerated product must match the published one within the parity gate.
REPLAY_TOLERANCE_DEGC = 0.01


def _record(kind: str, when: str, entry: ArchiveEntry) -> dict[str, Any]:
    """Provenance of one input field: what it is, where it came from, which version."""
    key = "run" if kind != "oisst_latest" else "day"
    return {"input": kind, key: when, "url": entry.source["url"], "sha256": entry.source["sha256"],
            "version": entry.source["version"], "archive_key": entry.key}


def _run_inputs(ctx: Context, day: dt.date, seq_len: int, aux_inputs: tuple[str, ...] = (),
                oisst_lag_days: int = 1) -> tuple[list[dt.date], dict[str, list[ArchiveEntry]], list[dict[str, Any]]]:
    """Archive entries of every input of the run of ``day``: HYCOM SST of runs day-T+1..day, and per
    auxiliary input one entry per run (surf_el of that run; OISST of run day - lag for oisst_latest)."""
    run_days = [day - dt.timedelta(days=seq_len - 1 - i) for i in range(seq_len)]
    # The requested run first, so an unpublished or broken run names itself, not a predecessor.
    entries = {"sst": [archive_hycom_run(ctx, d) for d in reversed(run_days)][::-1]}
    inputs = [_record("hycom_sst", f"{d:%Y-%m-%dT12Z}", e) for d, e in zip(run_days, entries["sst"], strict=True)]
    lag = dt.timedelta(days=oisst_lag_days)
    for name in aux_inputs:
        if name == "oisst_latest":
            entries[name] = [archive_oisst_day(ctx, d - lag) for d in reversed(run_days)][::-1]
            inputs += [_record(name, f"{d - lag}", e) for d, e in zip(run_days, entries[name], strict=True)]
        elif name == "surf_el":
            entries[name] = [archive_hycom_run(ctx, d, variable="surf_el") for d in reversed(run_days)][::-1]
            inputs += [_record(name, f"{d:%Y-%m-%dT12Z}", e) for d, e in zip(run_days, entries[name], strict=True)]
        else:
            raise InputValidationError(f"unknown auxiliary input {name!r} in the model package")
    return run_days, entries, inputs


def _infer(ctx: Context, corrector: Any, mask: OceanMask, entries: dict[str, list[ArchiveEntry]],
           run_days: list[dt.date]) -> tuple[np.ndarray, np.ndarray, Any]:
    """(corrected [lead, lat, lon], raw HYCOM last run [lead, lat, lon], valid dates): all leads in one batch."""
    fields = [archive.read_field(ctx.store, e.key) for e in entries["sst"]]
    stack = np.stack([f.values for f in fields], axis=1)  # (lead, T, lat, lon)
    span = f"{run_days[0]}..{run_days[-1]}"
    x = apply_mask(stack, mask, f"HYCOM runs {span}")
    leads = fields[-1]["lead"].values
    aux = None
    names = tuple(corrector.manifest.aux_inputs)
    if names:
        chans = []
        for name in names:
            vals = [archive.read_field(ctx.store, e.key).values for e in entries[name]]
            if name == "oisst_latest":  # one analysis per run, the same for every lead
                a = np.broadcast_to(np.stack(vals)[None], (len(leads), len(vals), *vals[0].shape))
            else:  # (lead, lat, lon) per run
                a = np.stack(vals, axis=1)
            chans.append(apply_mask(a, mask, f"{name} for runs {span}"))
        aux = np.stack(chans, axis=2)  # (lead, T, A, lat, lon)
    valid = fields[-1]["valid_date"].values
    corrected = corrector.correct(x, leads.astype(np.float32), aux, valid_days=valid)
    return corrected, x[:, -1], valid


def _publication_gate(ctx: Context, corrector: Any, mask: OceanMask, raw: np.ndarray,
                      corrected: np.ndarray) -> tuple[np.ndarray, Any]:
    """Run the gate; returns the field to publish and the failed GateResult when falling back (else None).

    With ``publication_fallback = "fail"`` a failed gate raises ProductError and nothing is published.
    """
    from bias_correction.errors import ProductError
    from bias_correction.gate import check_publication

    envelope = (corrector.manifest.raw.get("training") or {}).get("correction_envelope_degC")
    result = check_publication(inputs=raw[:, None], raw=raw, corrected=corrected, mask=mask.values,
                               providers_requested=ctx.settings.providers, active_provider=corrector.active_provider,
                               envelope_degC=envelope)
    if result.ok:
        return corrected, None
    if ctx.settings.publication_fallback == "raw":
        LOG.warning("publication gate failed (%s); publishing raw HYCOM flagged as fallback", result.message())
        return np.where(mask.values[None], raw, np.nan).astype(np.float32), result
    raise ProductError(f"publication gate failed for model {corrector.manifest.model_id} "
                       f"{corrector.manifest.version}: {result.message()}; nothing was published")


def correct_run(ctx: Context, day: dt.date, corrector: Any) -> RunResult:
    """Correct the 12Z run of ``day`` and publish its product (skipped when already up to date).

    Publication (``io.publish``): immutable versioned file + sidecar, per-day index last, then the
    alias ``product_key``. A day re-published with another model or inputs gets a new version; the
    previous one stays addressable.
    """
    from bias_correction.io import publish
    from bias_correction.io.provenance import code_version

    run = run_time(day)
    manifest = corrector.manifest
    seq_len = int(manifest.seq_len)
    mask = require_mask(ctx)
    corrector.check_contract(ctx.grid, mask.sha256, seq_len)
    run_days, entries, inputs = _run_inputs(ctx, day, seq_len, manifest.aux_inputs, manifest.oisst_lag_days)
    model_sha = {name: a["sha256"] for name, a in manifest.raw["artifacts"].items()}
    digest = _digest({"inputs": inputs, "model": model_sha, "code": bias_correction.__version__,
                      "lead_days": ctx.settings.lead_days, "grid": ctx.grid.grid_id, "mask": mask.sha256})
    region, model_id = ctx.settings.region.name, ctx.settings.model_id
    key = product_key(region, run, model_id)
    info_kwargs = dict(model_id=manifest.model_id, model_version=manifest.version, inputs=inputs)
    current = publish.current_entry(ctx.store, region, run, model_id)
    if current is not None and current.get("input_digest") == digest:
        if not publish.alias_matches(ctx.store, key, current):  # a crash after the index: repair the alias
            publish.refresh_alias(ctx.store, current["key"], key, {"input_digest": digest, "repaired": True})
        LOG.info("product %s is up to date; nothing to do", key)
        return RunResult(run, ProductInfo(key, ctx.store.url(key), False, digest, current["key"], current["sha256"]),
                         provider="(not run)", **info_kwargs)
    if current is None and existing_digest(ctx.store, key) == digest:  # published before the index existed
        LOG.info("product %s is up to date; nothing to do", key)
        return RunResult(run, ProductInfo(key, ctx.store.url(key), False, digest), provider="(not run)", **info_kwargs)
    corrected, raw, valid_dates = _infer(ctx, corrector, mask, entries, run_days)
    corrected, gate = _publication_gate(ctx, corrector, mask, raw, corrected)
    leads = list(range(1, corrected.shape[0] + 1))
    per_lead = manifest.residual_rmse_per_lead
    calibrated = all(k in per_lead for k in leads)
    uncertainty = np.array([per_lead[k] for k in leads]) if calibrated else None
    provenance = {
        "inputs": inputs, "model_id": manifest.model_id, "model_version": manifest.version,
        "model_sha256": model_sha, "code_version": code_version(),
        "config_fingerprint": ctx.settings.fingerprint(), "onnxruntime_provider": corrector.active_provider,
        "runtime": getattr(corrector, "runtime", "onnx"), "mask_sha256": mask.sha256, "grid_id": ctx.grid.grid_id,
        "region": region, "run": f"{run:%Y-%m-%dT%H:%M:%SZ}", "input_digest": digest,
        "publication_gate": "passed" if gate is None else f"failed, fallback raw HYCOM: {gate.message()}",
        "uncertainty_method": ("calibrated validation residual statistics (per-lead RMS of corrected - OISST, "
                               "model validation period)") if calibrated else "fallback: RMS of the applied correction",
        "training_data_versions": (manifest.raw.get("training") or {}).get("data_versions"),
        "parity": {k: {kk: v.get(kk) for kk in ("max_abs_diff_degC", "rmse_diff_degC", "skipped") if kk in v}
                   for k, v in (manifest.raw.get("parity") or {}).items() if isinstance(v, dict)},
    }
    ds = build_product(
        run=run, grid=ctx.grid, mask=mask, region_name=region,
        sst_corrected=corrected, sst_raw=raw, valid_dates=valid_dates,
        provenance=provenance, input_digest=digest, sst_uncertainty=uncertainty,
        uncertainty_method=provenance["uncertainty_method"], uncertainty_fallback=not calibrated,
    )
    if gate is not None:  # fallback: raw HYCOM published, flagged as such
        ds.attrs.update(sstbc_fallback="raw_hycom", sstbc_gate_failures=gate.message(),
                        summary=ds.attrs.get("summary", "") + " FALLBACK: the correction failed the publication gate "
                        "and this file carries the uncorrected HYCOM forecast in sst.")
    pub = publish.publish_product(ctx.store, region=region, run=run, model_id=model_id, ds=ds, mask=mask,
                                  product_version=f"{manifest.version}.{digest[:12]}", record=provenance)
    LOG.info("published %s (version %s, index %s)", pub.version_key, pub.product_version, pub.index_key)
    return RunResult(run, ProductInfo(key, ctx.store.url(key), True, digest, pub.version_key, pub.sha256),
                     provider=corrector.active_provider, **info_kwargs)


def replay_product(ctx: Context, product: str | Path, *, providers: str | None = None) -> dict[str, Any]:
    """Regenerate a product from its recorded inputs (archive, sha256-checked) and model (sha256-checked).

    ``product`` is a local path or a key in the storage root. Returns the max |difference| of ``sst``
    over ocean against the published file; ``ok`` when within :data:`REPLAY_TOLERANCE_DEGC`.
    """
    from bias_correction.correction.runtime import load_corrector as _load
    from bias_correction.errors import ModelContractError
    from bias_correction.io.provenance import read_provenance

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
    mask = require_mask(ctx)
    if prov.get("mask_sha256") and prov["mask_sha256"] != mask.sha256:
        raise InputValidationError(f"ocean mask sha256 {mask.sha256} differs from the product's {prov['mask_sha256']}")
    corrector.check_contract(ctx.grid, mask.sha256, corrector.manifest.seq_len)
    entries: dict[str, list[ArchiveEntry]] = {}
    run_days = []
    for rec in prov["inputs"]:
        kind = rec.get("input", "hycom_sst")
        when = rec.get("run") or rec.get("day")
        key = rec.get("archive_key") or archive.hycom_key(ctx.grid, run_time(dt.date.fromisoformat(when[:10])))
        entry = archive.existing(ctx.store, key)
        if entry is None:
            raise InputValidationError(f"replay: archived input {key} ({kind} {when}) is missing")
        if entry.source.get("sha256") != rec["sha256"]:
            raise InputValidationError(f"replay: archived input {key} comes from raw sha256 "
                                       f"{entry.source.get('sha256')}, the product used {rec['sha256']}")
        entries.setdefault("sst" if kind == "hycom_sst" else kind, []).append(entry)
        if kind == "hycom_sst":
            run_days.append(dt.date.fromisoformat(when[:10]))
    corrected, _, _ = _infer(ctx, corrector, mask, entries, run_days)
    published = ds["sst"].values
    ocean = np.isfinite(published)
    if not np.array_equal(ocean, np.isfinite(corrected)):
        raise InputValidationError("replay: the regenerated land/ocean pattern differs from the product")
    d = corrected[ocean].astype(np.float64) - published[ocean].astype(np.float64)
    max_abs = float(np.abs(d).max()) if d.size else 0.0
    return {"product": str(product), "model_id": prov["model_id"], "model_version": prov["model_version"],
            "runtime": corrector.runtime, "provider": corrector.active_provider,
            "recorded_provider": prov.get("onnxruntime_provider"), "inputs_verified": sum(len(v) for v in entries.values()),
            "max_abs_diff_degC": max_abs, "rmse_diff_degC": float(np.sqrt((d * d).mean())) if d.size else 0.0,
            "tolerance_degC": REPLAY_TOLERANCE_DEGC, "ok": max_abs <= REPLAY_TOLERANCE_DEGC}


def verify_product(ctx: Context, key: str, *, store_scores: bool = True) -> dict[str, Any]:
    """Score a product against OISST of its valid days (and persistence of the day-before analysis).

    Rows go to the score table (re-scored rows replace older ones, e.g. preliminary -> final).
    Raises NotYetPublishedError when an OISST valid day is not published yet.
    """
    from bias_correction.verification.verify import ScoreTable, lead_scores, summary

    mask = require_mask(ctx)
    with ctx.store.local_path(key) as path:
        ds = read_dataset(path, engine="netcdf4")
    corrected, raw = ds["sst"].values, ds["sst_raw"].values
    days = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values]
    run = dt.datetime.fromisoformat(str(ds["forecast_reference_time"].values)[:19])
    prov = json.loads(ds.attrs.get("sstbc_provenance", "{}"))
    entries = [archive_oisst_day(ctx, d) for d in days]
    truth = np.stack([archive.read_field(ctx.store, e.key).values for e in entries])
    try:
        pers_entry = archive_oisst_day(ctx, run.date() - dt.timedelta(days=1))
        persistence = archive.read_field(ctx.store, pers_entry.key).values
    except NotYetPublishedError:
        persistence = None
    rows = lead_scores(
        run=run, model_id=str(prov.get("model_id", "")), model_version=str(prov.get("model_version", "")),
        product_key=key, corrected=corrected, raw=raw, truth=truth,
        truth_versions=[str(e.source.get("version")) for e in entries], valid_dates=days,
        persistence=persistence, mask=mask.values,
    )
    if store_scores:
        ScoreTable(ctx.store).upsert(rows)
    pooled = summary(rows)
    r, c = scores(raw, truth, mask.values), scores(corrected, truth, mask.values)
    return {
        "raw": r, "corrected": c, "improvement_percent": improvement_percent(r["rmse"], c["rmse"]),
        "rmse_persistence": pooled.get("rmse_persistence"),
        "oisst_versions": sorted({row.oisst_version for row in rows}),
        "per_lead": [{"lead_day": row.lead, "valid_date": row.valid_date, "rmse_raw": row.rmse_raw,
                      "rmse_corrected": row.rmse_corrected, "rmse_corrected_ci": [row.rmse_corrected_lo, row.rmse_corrected_hi],
                      "rmse_persistence": row.rmse_persistence, "skill_vs_raw": row.skill_vs_raw,
                      "skill_vs_persistence": row.skill_vs_persistence} for row in rows],
    }

def training_samples(ctx: Context, start: dt.date, end: dt.date) -> tuple[Any, dict[str, int]]:
    """Samples of runs ``start``..``end`` from the archive, plus preliminary/final day counts."""
    from bias_correction.training.dataset import build_samples

    cfg = ctx.settings.training
    seq_len = cfg.seq_len
    aux, lag = training_inputs(ctx.settings)
    run_days, oisst_days = archive_dates(start, end, seq_len, ctx.settings.lead_days, lag)
    mask = require_mask(ctx)
    runs = [run_time(d) for d in run_days]
    hycom = archive.load_hycom_runs(ctx.store, ctx.grid, runs)
    surf_el = None
    if "surf_el" in aux:
        surf_el = archive.load_hycom_runs(ctx.store, ctx.grid, runs, variable="surf_el")
        hycom, surf_el = (a.sel(run=np.intersect1d(hycom["run"].values, surf_el["run"].values)) for a in (hycom, surf_el))
    oisst, versions = archive.load_oisst_days(ctx.store, ctx.grid, oisst_days)
    versions["preliminary_days"] = [str(t)[:10] for t, v in zip(oisst["time"].values, oisst.attrs["versions"], strict=True)
                                    if v == PRELIMINARY]
    samples = build_samples(hycom, oisst, mask.to_dataarray(ctx.grid), seq_len, aux_inputs=aux,
                            oisst_lag_days=cfg.oisst_lag_days, surf_el=surf_el)
    return samples, versions


def train_from_archive(ctx: Context, start: dt.date, end: dt.date, *, progress: bool = True) -> dict[str, Any]:
    """Train the configured model on runs ``start``..``end`` (chronological train/validation split).

    Gridded networks write a checkpoint file; the tabular models (trees, statistical baselines,
    ``training.tabular_export``) fit on the same samples and split and stage a verified package folder
    as their checkpoint, which :func:`export_checkpoint` installs into the model store.
    """
    from bias_correction.training.dataset import split_chronological
    from bias_correction.training.tabular_export import is_tabular_model, train_tabular
    from bias_correction.training.train import train_model

    cfg = ctx.settings.training
    mask = require_mask(ctx)
    samples, versions = training_samples(ctx, start, end)
    train, val = split_chronological(samples, cfg.val_fraction, gap_days=cfg.seq_len)
    out_dir = ctx.store.url(f"training/{ctx.settings.model_id}/{start:%Y%m%d}-{end:%Y%m%d}") if ctx.store.is_local else None
    if out_dir is None:
        raise InputValidationError("training needs a local storage_root (checkpoints are written locally)")
    data_info = {"oisst_days": {k: versions[k] for k in ("final", "preliminary")},
                 "preliminary_days": versions["preliminary_days"], "runs": [start.isoformat(), end.isoformat()],
                 "samples": {"train": len(train), "val": len(val)}}
    if is_tabular_model(cfg.model):
        return train_tabular(cfg, train, val, grid=ctx.grid, mask_hash=mask.sha256, model_id=ctx.settings.model_id,
                             out_dir=Path(out_dir), data_info=data_info)
    result = train_model(
        train, val, cfg, grid=ctx.grid, mask_hash=mask.sha256, progress=progress,
        data_info=data_info,
        out_dir=Path(out_dir),
    )
    return {
        "checkpoint": str(result.checkpoint), "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds, "n_parameters": result.n_parameters,
        "samples": {"train": len(train), "val": len(val)},
        "val": {"rmse_raw": result.val_rmse_raw, "rmse_model": result.val_rmse_corrected},
    }


def export_checkpoint(settings: Settings, checkpoint: Path) -> dict[str, Any]:
    """Export a checkpoint to a model package in the model store (parity checked).

    A gridded checkpoint file becomes an ONNX/TorchScript package; a tabular checkpoint (the package
    folder ``sstbc train`` staged) is verified and installed as ``model_store/model_id/<new version>``.
    """
    from bias_correction.correction.package import load_manifest

    if Path(checkpoint).is_dir():
        from bias_correction.correction.tabular import load_tabular_manifest
        from bias_correction.training.tabular_export import install_package

        package = install_package(Path(checkpoint), Path(settings.model_store), settings.model_id)
        manifest = load_tabular_manifest(package)
        return {"package": str(package), "version": manifest.version, "kind": "tabular",
                "architecture": manifest.architecture, "runtime": manifest.raw["runtime"],
                "parity": manifest.raw["parity"]}
    from bias_correction.training.export import export_package

    package = export_package(checkpoint, Path(settings.model_store), settings.model_id)
    manifest = load_manifest(package)
    return {"package": str(package), "version": manifest.version, "parity": manifest.raw["parity"]}


def train_and_export(ctx: Context, start: dt.date, end: dt.date, *, progress: bool = True) -> dict[str, Any]:
    """Train the configured model (gridded or tabular) and export it into the model store."""
    trained = train_from_archive(ctx, start, end, progress=progress)
    exported = export_checkpoint(ctx.settings, Path(trained["checkpoint"]))
    return {"training": trained, "export": exported}


def preliminary_days(ctx: Context) -> list[dt.date]:
    """Archived OISST days that still hold the preliminary analysis."""
    out = []
    for key in ctx.store.list(f"archive/{ctx.grid.grid_id}/oisst"):
        entry = archive.existing(ctx.store, key)
        if entry is not None and entry.source.get("version") == PRELIMINARY:
            out.append(dt.datetime.strptime(key.rsplit("/", 1)[-1], "oisst_%Y%m%d.nc").date())
    return sorted(out)


def derived_from_preliminary(ctx: Context) -> dict[str, Any]:
    """What rests on preliminary OISST: archived days, and model packages trained with such days."""
    from bias_correction.correction.package import list_versions, load_manifest

    days = preliminary_days(ctx)
    models = []
    store = Path(ctx.settings.model_store)
    for model_dir in sorted(p for p in store.glob("*") if p.is_dir()) if store.exists() else []:
        for version in list_versions(store, model_dir.name):
            raw = load_manifest(model_dir / version).raw
            used = raw.get("training", {}).get("data", {}).get("preliminary_days", [])
            if used:
                models.append({"model_id": model_dir.name, "version": version, "preliminary_days": used})
    return {"oisst_preliminary_days": [d.isoformat() for d in days], "models": models}


def refresh_preliminary(ctx: Context) -> dict[str, Any]:
    """Upgrade every archived preliminary day whose final file is published; report the rest."""
    upgraded, pending = [], []
    for day in preliminary_days(ctx):
        entry = archive_oisst_day(ctx, day)
        (upgraded if entry.written and entry.source.get("version") == "final" else pending).append(day.isoformat())
    return {"upgraded": upgraded, "still_preliminary": pending, **derived_from_preliminary(ctx)}


def wait_until_published(
    fetch_once: Callable[[], Any], what: str, *, wait_s: float, poll_s: float,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Call ``fetch_once`` until it stops raising NotYetPublishedError or ``wait_s`` has passed.

    A late upstream then delays the job instead of failing it; past the deadline the error says
    how long was waited.
    """
    deadline = clock() + wait_s
    attempts = 0
    while True:
        attempts += 1
        try:
            return fetch_once()
        except NotYetPublishedError as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                raise NotYetPublishedError(
                    f"{what}: still not published after waiting {wait_s / 60:.0f} min ({attempts} attempts): {exc}"
                ) from None
            LOG.info("%s not published yet; next check in %.0f s", what, min(poll_s, remaining))
            sleep(min(poll_s, remaining))


def plan_fetch(ctx: Context, run_days: list[dt.date], oisst_days: list[dt.date]) -> list[dict[str, Any]]:
    """What an archive fill would download: per item its state and size (HEAD requests only)."""
    from bias_correction.sources.http import head_size

    plan: list[dict[str, Any]] = []
    for day in run_days:
        run = run_time(day)
        if ctx.store.exists(archive.hycom_key(ctx.grid, run)):
            state, size = "archived", 0
        elif ctx.hycom.cached(run) is not None:
            state, size = "cached", 0
        else:
            size = head_size(ctx.hycom.url(run), ctx.settings.http)
            state = "missing" if size is not None else "unpublished"
        plan.append({"kind": "hycom", "date": day.isoformat(), "state": state, "bytes": size})
    for day in oisst_days:
        entry = archive.existing(ctx.store, archive.oisst_key(ctx.grid, day))
        if entry is not None and not (entry.source.get("version") == PRELIMINARY and ctx.oisst.final_expected(day)):
            state, size = "archived", 0
        elif ctx.oisst.cached(day, versions=("final",)) is not None:
            state, size = "cached", 0
        else:
            size = ctx.oisst.available_size(day)
            state = ("stale-preliminary" if entry is not None else "missing") if size is not None else "unpublished"
        plan.append({"kind": "oisst", "date": day.isoformat(), "state": state, "bytes": size})
    return plan


def verify_range(ctx: Context, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Score the products of runs ``start``..``end`` that are unscored, or scored against a
    preliminary OISST day whose final analysis is now due. Days without OISST yet are pending."""
    from bias_correction.verification.verify import ScoreTable, markdown_table

    table = ScoreTable(ctx.store)
    scored_rows = table.rows(model_id=ctx.settings.model_id)
    by_product: dict[str, list[Any]] = {}
    for r in scored_rows:
        by_product.setdefault(r.product_key, []).append(r)
    scored, pending, skipped = [], [], []
    day = start
    while day <= end:
        key = product_key(ctx.settings.region.name, run_time(day), ctx.settings.model_id)
        rows = by_product.get(key, [])
        due = not rows or any(r.oisst_version == PRELIMINARY and ctx.oisst.final_expected(dt.date.fromisoformat(r.valid_date))
                              for r in rows)
        if not ctx.store.exists(key):
            skipped.append(day.isoformat())
        elif due:
            try:
                verify_product(ctx, key)
                scored.append(day.isoformat())
            except NotYetPublishedError as exc:
                pending.append({"run": day.isoformat(), "reason": str(exc)})
        day += dt.timedelta(days=1)
    rows = [r for r in table.rows(model_id=ctx.settings.model_id) if start.isoformat() <= r.run[:10] <= end.isoformat()]
    return {"scored": scored, "pending": pending, "no_product": skipped, "rows": len(rows),
            "markdown": markdown_table(rows) if rows else "no verified product in this period"}


def verification_plots(ctx: Context, start: dt.date, end: dt.date, out_dir: Path) -> list[str]:
    """PNG plots of the period: RMSE by lead over time, and maps of mean correction and mean error."""
    from bias_correction.verification.verify import ScoreTable, plot_maps, plot_rmse_by_lead

    rows = [r for r in ScoreTable(ctx.store).rows(model_id=ctx.settings.model_id)
            if start.isoformat() <= r.run[:10] <= end.isoformat()]
    if not rows:
        return []
    paths = [plot_rmse_by_lead(rows, out_dir / f"rmse_by_lead_{start:%Y%m%d}_{end:%Y%m%d}.png")]
    corr_sum = err_sum = None
    count = 0
    for key in sorted({r.product_key for r in rows}):
        with ctx.store.local_path(key) as path:
            ds = read_dataset(path, engine="netcdf4")
        days = [dt.date.fromisoformat(str(t)[:10]) for t in ds["time"].values]
        truth = np.stack([archive.read_field(ctx.store, archive.oisst_key(ctx.grid, d)).values for d in days])
        corr = (ds["sst"].values - ds["sst_raw"].values).mean(axis=0)
        err = (ds["sst"].values - truth).mean(axis=0)
        corr_sum = corr if corr_sum is None else corr_sum + corr
        err_sum = err if err_sum is None else err_sum + err
        count += 1
    paths.append(plot_maps(ctx.grid.lat, ctx.grid.lon, corr_sum / count, err_sum / count,
                           out_dir / f"mean_correction_error_{start:%Y%m%d}_{end:%Y%m%d}.png"))
    return [str(p) for p in paths]
