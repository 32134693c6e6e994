"""The daily correction of one run: gather the declared inputs, infer, gate, publish.

``correct_run`` is idempotent: a product whose input digest (inputs, model, code, grid, mask) is
already current is not rebuilt. Publication goes through ``io.publish`` (versioned file + sidecar,
per-day index last, then the alias).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

import bias_correction
from bias_correction.correction.base import Corrector
from bias_correction.grid.mask import OceanMask, apply_mask
from bias_correction.inputs import HYCOM_SST, aux_specs
from bias_correction.io import archive
from bias_correction.io.archive import ArchiveEntry
from bias_correction.io.product import ProductInfo, build_product, existing_digest, product_key
from bias_correction.io.provenance import input_record, product_provenance
from bias_correction.pipeline.context import (
    Context,
    edge_effect_at,
    model_view,
    report_halo,
    require_mask,
    runs_on_region_grid,
)
from bias_correction.pipeline.fill import input_entries
from bias_correction.sources.hycom import run_time

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run: dt.datetime
    product: ProductInfo
    model_id: str
    model_version: str
    provider: str
    inputs: list[dict[str, Any]]


def input_digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


#: What of an input record identifies its content: which input, its run/day, the raw file's sha256, version.
CONTENT_FIELDS = ("input", "run", "day", "sha256", "version")


def content_parts(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The digest parts of the input records: content, not location. The URL (and archive key) are left
    out, so the byte-identical file from another mirror is the same input and republishes nothing."""
    return [{k: r[k] for k in CONTENT_FIELDS if k in r} for r in inputs]


def run_days_of(day: dt.date, seq_len: int) -> list[dt.date]:
    """The T run days whose forecasts feed the correction of the run of ``day`` (oldest first)."""
    return [day - dt.timedelta(days=seq_len - 1 - i) for i in range(seq_len)]


def run_inputs(ctx: Context, day: dt.date, seq_len: int, aux_inputs: tuple[str, ...] = (),
               oisst_lag_days: int = 1) -> tuple[list[dt.date], dict[str, list[ArchiveEntry]], list[dict[str, Any]]]:
    """Archive entries of every input of the run of ``day``, by input name, and their provenance.

    HYCOM SST of runs day-T+1..day, then per declared auxiliary input one field per run (its time
    rule decides which: the same run, or the analysis known when the run was issued).
    """
    run_days = run_days_of(day, seq_len)
    entries: dict[str, list[ArchiveEntry]] = {}
    records: list[dict[str, Any]] = []
    for spec in (HYCOM_SST, *aux_specs(aux_inputs)):
        entries[spec.name] = input_entries(ctx, spec, run_days, oisst_lag_days)
        records += [input_record(spec.name, spec.when_key, spec.label_for_run(d, oisst_lag_days), e)
                    for d, e in zip(run_days, entries[spec.name], strict=True)]
    return run_days, entries, records


def infer(ctx: Context, corrector: Corrector, mask: OceanMask, entries: dict[str, list[ArchiveEntry]],
          run_days: list[dt.date]) -> tuple[np.ndarray, np.ndarray, Any]:
    """(corrected [lead, lat, lon], raw HYCOM last run [lead, lat, lon], valid dates): all leads in one batch.

    ``mask`` is the archive's (model grid) mask. The model runs on the grid it was trained on (the region plus
    its halo, ``context.model_view``); both fields come back cropped to the region (the product grid)."""
    view = model_view(ctx, corrector.manifest, mask)
    mask = view.mask
    fields = [archive.read_field(ctx.store, e.key) for e in entries[HYCOM_SST.name]]
    stack = view.inputs.crop(np.stack([f.values for f in fields], axis=1))  # (lead, T, lat, lon)
    span = f"{run_days[0]}..{run_days[-1]}"
    x = apply_mask(stack, mask, f"HYCOM runs {span}")
    leads = fields[-1]["lead"].values
    aux = None
    specs = aux_specs(tuple(corrector.manifest.aux_inputs))
    if specs:
        chans = []
        for spec in specs:
            vals = [spec.values(archive.read_field(ctx.store, e.key).values) for e in entries[spec.name]]
            if spec.per_lead:  # (lead, lat, lon) per run
                a = np.stack(vals, axis=1)
            else:  # one field per run, the same for every lead
                a = np.broadcast_to(np.stack(vals)[None], (len(leads), len(vals), *vals[0].shape))
            chans.append(apply_mask(view.inputs.crop(a), mask, f"{spec.name} for runs {span}"))
        aux = np.stack(chans, axis=2)  # (lead, T, A, lat, lon)
    valid = fields[-1]["valid_date"].values
    corrected = corrector.correct(x, leads.astype(np.float32), aux, valid_days=valid)
    crop = view.outputs.crop
    return np.ascontiguousarray(crop(corrected)), np.ascontiguousarray(crop(x[:, -1])), valid


def publication_gate(ctx: Context, corrector: Corrector, mask: OceanMask, raw: np.ndarray,
                     corrected: np.ndarray) -> tuple[np.ndarray, Any]:
    """Run the gate; returns the field to publish and the failed GateResult when falling back (else None).

    With ``publication_fallback = "fail"`` a failed gate raises ProductError and nothing is published.
    """
    from bias_correction.errors import ProductError
    from bias_correction.gate import check_publication

    envelope = corrector.manifest.correction_envelope_degC
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


def _after_publish(ctx: Context, run: dt.datetime, ikey: str, alias: str, ds: Any = None, *,
                   pictures: bool = True) -> None:
    """The steps after publication, on the published (current) version: quicklooks, the Zarr append,
    the catalogue (``io.catalog_write``: STAC item, latest pointer), then the day's HTML report.
    Without ``ds`` (a re-run finding the product up to date) only what is missing is redone, so an interrupted post-publish step is repaired.
    ``pictures=False`` (backfills) leaves out the quicklooks and the report (``sstbc plot`` makes them later)."""
    from bias_correction.io import catalog_write, publish, quicklook
    from bias_correction.io.netcdf import read_dataset

    region, model_id, meta = ctx.settings.region.name, ctx.settings.model_id, ctx.settings.product
    entry = publish.current_entry(ctx.store, region, run, model_id)
    if entry is None:
        return
    quicklooks, report = meta.quicklooks and pictures, meta.report and pictures
    if ds is None and catalog_write.is_complete(ctx.store, region, run, model_id, entry, quicklooks=quicklooks):
        return  # nothing to repair: a re-run writes nothing
    if ds is None:  # repairing an interrupted post-publish step: work from the published file
        with ctx.store.local_path(entry["key"]) as path:
            ds = read_dataset(path, engine="netcdf4")
    assets = quicklook.write_quicklooks(ctx.store, entry["key"], ds) if quicklooks else {}
    if meta.zarr:
        from bias_correction.io import zarr_store

        z = zarr_store.append_run(ctx.store, region, model_id, ds, entry["key"])
        assets["zarr"] = {"key": z["key"], "title": f"all runs of {region} (icechunk Zarr v3 repository)",
                          "media_type": "application/vnd+zarr", "roles": ["data", "zarr"]}
    catalog_write.after_publish(ctx.store, region=region, run=run, model_id=model_id, entry=entry, index_key=ikey,
                                alias_key=alias, base_url=meta.base_url, attrs=dict(ds.attrs), extra_assets=assets)
    if report:
        from bias_correction.report import SKILL_DAYS, write_day_report
        from bias_correction.verification.verify import ScoreTable

        since = (run.date() - dt.timedelta(days=SKILL_DAYS - 1)).isoformat()
        write_day_report(ctx.store, region, run.date(), model_id=model_id,
                         score_rows=ScoreTable(ctx.store).rows(model_id=model_id, since=since))


def _with_lead(uncertainty: Any, j: int, value: float, *, scale: bool = False) -> Any:
    """``uncertainty`` with lead ``j`` set to ``value`` everywhere, or multiplied by it (``scale``); numpy in
    place, dask lazily (a new array)."""
    if hasattr(uncertainty, "dask"):
        import dask.array as dsa

        layer = uncertainty[j:j + 1] * value if scale else dsa.full_like(uncertainty[j:j + 1], value)
        return dsa.concatenate([uncertainty[:j], layer, uncertainty[j + 1:]], axis=0).rechunk(uncertainty.chunks)
    uncertainty[j] = uncertainty[j] * value if scale else value
    return uncertainty


def product_dataset(ctx: Context, run: dt.datetime, corrector: Corrector, mask: OceanMask, corrected: Any, raw: Any,
                    valid_dates: Any, gate: Any, inputs: list[dict[str, Any]], digest: str,
                    fallback: str | None, *, guard_decision: list[dict[str, Any]] | None = None,
                    persistence: np.ndarray | None = None, issue_digest: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(product dataset, provenance record) of a corrected run: numpy arrays, or dask arrays (lead by lead)
    from the streaming path (``pipeline.correct_stream``), which shares this assembly.

    ``guard_decision`` (``pipeline.guard``): per lead what ``sst`` carries; the model's own field then goes
    to ``sst_model`` and the lead's uncertainty is the carried reference's (calibration-period quantiles)."""
    from bias_correction.correction import uncertainty as unc_mod
    from bias_correction.pipeline import guard as guard_mod

    manifest, region, model_sha = corrector.manifest, ctx.settings.region.name, corrector.manifest.artifact_sha256
    leads = list(range(1, corrected.shape[0] + 1))
    lazy = hasattr(corrected, "dask")  # streamed: dask arrays, a lead map per chunk
    # a per-pixel uncertainty of a package on the model grid is cropped to the product grid like the fields
    on_model_grid = getattr(manifest, "grid_id", None) == ctx.grid.grid_id and not ctx.halo.is_zero
    uncertainty, factor95, unc_attrs = unc_mod.product_uncertainty(manifest, leads, tuple(corrected.shape[1:]),
                                                                   crop=ctx.halo.crop if on_model_grid else None)
    calibrated = uncertainty is not None
    if lazy and uncertainty is not None:  # a lead map per dask chunk, per pixel where the package has it
        import dask.array as dsa

        uncertainty = (uncertainty[:, 0, 0].copy() if uncertainty.strides[1:] == (0, 0)
                       else dsa.from_array(np.asarray(uncertainty, np.float32), chunks=(1, -1, -1)))
    thresholds = unc_mod.large_correction_thresholds(manifest, leads)
    model_field = None
    if guard_decision and gate is None:
        model_field = corrected  # sst_model on every guarded product: the zarr cube needs one variable set
        corrected = guard_mod.carried(guard_decision, corrected, raw, persistence)
        if uncertainty is not None and not hasattr(uncertainty, "dask"):
            uncertainty = np.array(uncertainty)  # written per lead below
        live: dict[str, dict[str, Any]] = {}  # lead -> its live recalibration (verification.recalibration)
        for j, d in enumerate(guard_decision):
            if uncertainty is None:
                break
            if d["carried"] == guard_mod.MODEL:
                if d.get("interval"):
                    live[str(d["lead"])] = d["interval"]
                    uncertainty = _with_lead(uncertainty, j, float(d["interval"]["scale_68"]), scale=True)
                    factor95[j] = float(d["interval"]["factor_95"])
                continue
            ref = unc_mod.reference_sigma(manifest, d["carried"], d["lead"])
            if ref is None and (d.get("rmse") or {}).get(d["carried"]):
                ref = (float(d["rmse"][d["carried"]]), unc_mod.GAUSS_95 * float(d["rmse"][d["carried"]]))
            if ref is not None:
                uncertainty = _with_lead(uncertainty, j, ref[0])
                factor95[j] = ref[1] / ref[0] if ref[0] > 0 else unc_mod.GAUSS_95
        if unc_attrs:
            unc_attrs["uncertainty_interval_95_factor"] = json.dumps({str(k): round(float(f), 4)
                                                                      for k, f in zip(leads, factor95)})
        if live:
            days = sorted(int(iv["days"]) for iv in live.values())
            recent = max(int(iv["recent_days"]) for iv in live.values())
            unc_attrs["uncertainty_live_scale"] = json.dumps({k: float(iv["scale_68"]) for k, iv in live.items()})
            unc_attrs["uncertainty_method"] += (
                f"; recalibrated at leads {','.join(live)} on the live verification of the last {days[0]}-{days[-1]} "
                f"verified runs (quantile of the latest {recent}, integral of the coverage shortfall; "
                "sst_uncertainty = uncertainty_live_scale x the package's; see sstbc_guard)")
    elif gate is not None:
        guard_decision = None
    provenance = product_provenance(
        inputs=inputs, manifest=manifest, model_sha256=model_sha, config_fingerprint=ctx.settings.fingerprint(),
        active_provider=corrector.active_provider, runtime=corrector.runtime,
        mask_sha256=mask.sha256, grid_id=ctx.region_grid.grid_id, region=region, run=run, input_digest=digest,
        gate_failure=None if gate is None else gate.message(), uncertainty_calibrated=calibrated,
    )
    if issue_digest:
        provenance["issue_digest"] = issue_digest
    # the model ran on the region plus this halo (grid.halo); the product holds the region's cells only
    ran_with = 0 if runs_on_region_grid(ctx, manifest) else ctx.halo.cells  # model_view's halo_cells
    provenance["halo"] = {"grid_halo_cells": ctx.halo.to_dict(), "model_grid_id": ctx.grid.grid_id,
                          "model_halo_cells": int(getattr(manifest, "halo_cells", 0) or 0),
                          "edge_effect_at_halo_degC": edge_effect_at(manifest, ran_with)}
    if unc_attrs.get("uncertainty_method"):
        provenance["uncertainty_method"] = unc_attrs["uncertainty_method"]
    if guard_decision:
        provenance["guard"] = guard_decision
        provenance["guard_carried"] = ",".join(d["carried"] for d in guard_decision)
    if fallback:
        provenance["fallback"] = fallback
    synthetic = ctx.settings.product.is_synthetic(ctx.settings.upstream)
    ds = build_product(
        run=run, grid=ctx.region_grid, mask=mask, region_name=region,
        sst_corrected=corrected, sst_raw=raw, valid_dates=valid_dates,
        provenance=provenance, input_digest=digest, sst_uncertainty=uncertainty,
        uncertainty_method=provenance["uncertainty_method"], uncertainty_fallback=not calibrated,
        metadata=ctx.settings.product.global_attrs(synthetic=synthetic), synthetic=synthetic,
        sst_model=model_field, uncertainty_attrs=unc_attrs, large_correction_degC=thresholds, guard=guard_decision,
    )
    if gate is not None:  # fallback: raw HYCOM published, flagged as such
        ds.attrs.update(sstbc_fallback="raw_hycom", sstbc_gate_failures=gate.message(),
                        summary=ds.attrs.get("summary", "") + " FALLBACK: the correction failed the publication gate "
                        "and this file carries the uncorrected HYCOM forecast in sst.")
    if fallback:  # a late input: the documented fallback order of pipeline.late
        ds.attrs.update(sstbc_fallback=fallback, summary=ds.attrs.get("summary", "") + f" FALLBACK ({fallback}).")
    return ds, provenance


def guard_inputs(ctx: Context, day: dt.date, manifest: Any, entries: dict[str, list[ArchiveEntry]],
                 mask: OceanMask, evidence_before: dt.date | None = None,
                 ) -> tuple[list[dict[str, Any]] | None, np.ndarray | None]:
    """The skill guard's per-lead decisions for this run and, when a lead carries persistence, its field
    (the analysis of run day - 1: the model's latest-analysis input, else the archive; without it the
    guard decides again between the model and raw HYCOM)."""
    from bias_correction.errors import SstbcError
    from bias_correction.inputs import OISST_LATEST
    from bias_correction.pipeline import guard
    from bias_correction.pipeline.fill import archive_oisst_day

    leads = list(range(1, ctx.settings.lead_days + 1))
    decision = guard.decide_for_run(ctx, day, manifest, leads, evidence_before=evidence_before)
    if not decision or all(d["carried"] != guard.PERSISTENCE for d in decision):
        return decision, None
    try:
        if OISST_LATEST.name in manifest.aux_inputs and manifest.oisst_lag_days == 1:
            entry = entries[OISST_LATEST.name][-1]
        else:
            entry = archive_oisst_day(ctx, day - dt.timedelta(days=1))
        field = np.asarray(archive.read_field(ctx.store, entry.key).values, np.float32)
        return decision, np.where(mask.values, field, np.nan).astype(np.float32)
    except (SstbcError, OSError, KeyError) as exc:
        LOG.warning("skill guard: persistence (OISST of %s) unavailable (%s); deciding between model and raw",
                    day - dt.timedelta(days=1), exc)
        return guard.decide_for_run(ctx, day, manifest, leads, available=(guard.RAW,),
                                    evidence_before=evidence_before), None


def guard_digest(decision: list[dict[str, Any]] | None) -> list[list[Any]] | None:
    """The guard's part of the input digest: only when it changes the product (a carried reference or a flag)."""
    from bias_correction.pipeline import guard

    if not decision or all(d["carried"] == guard.MODEL and not d["flag"] and not d.get("interval") for d in decision):
        return None
    return guard.digest_part(decision)


def correct_run(ctx: Context, day: dt.date, corrector: Corrector, *, fallback: str | None = None,
                pictures: bool = True, guard_evidence_before: dt.date | None = None) -> RunResult:
    """Correct the 12Z run of ``day`` and publish its product (skipped when already up to date).

    ``fallback``: why this product is a late-input fallback (``pipeline.late``), recorded in the
    product, its provenance and the per-day index; it is part of the digest, so the regular product
    replaces it once the late input arrives.

    Publication (``io.publish``): immutable versioned file + sidecar, per-day index last, then the
    alias ``product_key``. A day re-published with another model or inputs gets a new version; the
    previous one stays addressable.

    A product is issued once per identity (inputs, model, code, grid, mask, fallback: ``issue_digest``):
    the skill guard's decision is made at first issue with the evidence of that time and is not a reason to
    re-issue when later verification would decide otherwise. ``guard_evidence_before``: see
    ``guard.decide_for_run`` (backfills).
    """
    from bias_correction.io import publish

    run = run_time(day)
    manifest = corrector.manifest
    seq_len = int(manifest.seq_len)
    mask = require_mask(ctx)  # the archive's (model grid) mask; products carry its region crop (``view.region_mask``)
    view = model_view(ctx, manifest, mask)
    report_halo(view, manifest)
    corrector.check_contract(view.grid, view.mask.sha256, seq_len)
    run_days, entries, inputs = run_inputs(ctx, day, seq_len, tuple(manifest.aux_inputs), manifest.oisst_lag_days)
    model_sha = manifest.artifact_sha256
    identity = {"inputs": content_parts(inputs), "model": model_sha, "code": bias_correction.__version__,
                "lead_days": ctx.settings.lead_days, "grid": ctx.grid.grid_id, "mask": mask.sha256,
                **({"fallback": fallback} if fallback else {})}
    issue = input_digest(identity)  # what makes it the same product; the content digest adds the guard's part
    region, model_id = ctx.settings.region.name, ctx.settings.model_id
    key = product_key(region, run, model_id)
    info_kwargs = dict(model_id=manifest.model_id, model_version=manifest.version, inputs=inputs)
    current = publish.current_entry(ctx.store, region, run, model_id)
    decision, persistence, digest = None, None, None
    if current is None or current.get("issue_digest") != issue:  # the guard (scores, bootstrap) only to (re)issue
        decision, persistence = guard_inputs(ctx, day, manifest, entries, mask, guard_evidence_before)
        persistence = None if persistence is None else np.ascontiguousarray(ctx.halo.crop(persistence))
        guard_part = guard_digest(decision)
        digest = input_digest({**identity, **({"guard": guard_part} if guard_part else {})})
    if current is not None and (current.get("issue_digest") == issue or current.get("input_digest") == digest):
        digest = str(current.get("input_digest"))
        if not publish.alias_matches(ctx.store, key, current):  # a crash after the index: repair the alias
            publish.refresh_alias(ctx.store, current["key"], key, {"input_digest": digest, "repaired": True})
        LOG.info("product %s is up to date; nothing to do", key)
        _after_publish(ctx, run, publish.index_key(region, run), key, pictures=pictures)  # repairs an interrupted step
        return RunResult(run, ProductInfo(key, ctx.store.url(key), False, digest, current["key"], current["sha256"]),
                         provider="(not run)", **info_kwargs)
    if current is None and existing_digest(ctx.store, key) == digest:  # published before the index existed
        LOG.info("product %s is up to date; nothing to do", key)
        return RunResult(run, ProductInfo(key, ctx.store.url(key), False, digest), provider="(not run)", **info_kwargs)
    from bias_correction.pipeline import correct_stream

    if correct_stream.should_stream(ctx, corrector):  # large grid: bounded memory, lead by lead
        pub = correct_stream.correct_streamed(ctx, run, corrector, mask, entries, run_days, inputs, digest, fallback,
                                              assemble=product_dataset, after_publish=_after_publish, pictures=pictures,
                                              issue_digest=issue, guard_decision=decision, persistence=persistence)
        return RunResult(run, ProductInfo(key, ctx.store.url(key), True, digest, pub.version_key, pub.sha256),
                         provider=corrector.active_provider, **info_kwargs)
    corrected, raw, valid_dates = infer(ctx, corrector, mask, entries, run_days)  # cropped to the region
    mask = view.region_mask
    corrected, gate = publication_gate(ctx, corrector, mask, raw, corrected)
    ds, provenance = product_dataset(ctx, run, corrector, mask, corrected, raw, valid_dates, gate, inputs, digest,
                                     fallback, guard_decision=decision, persistence=persistence, issue_digest=issue)
    pub = publish.publish_product(ctx.store, region=region, run=run, model_id=model_id, ds=ds, mask=mask,
                                  product_version=f"{manifest.version}.{digest[:12]}", record=provenance)
    LOG.info("published %s (version %s, index %s)", pub.version_key, pub.product_version, pub.index_key)
    _after_publish(ctx, run, pub.index_key, key, ds, pictures=pictures)
    return RunResult(run, ProductInfo(key, ctx.store.url(key), True, digest, pub.version_key, pub.sha256),
                     provider=corrector.active_provider, **info_kwargs)
