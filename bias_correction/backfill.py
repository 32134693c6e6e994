"""Backfills over date ranges: what each date needs (plan), and the per-date unit of work with its ledger.

A date is ``done`` when its product exists for the current model version and code, and its
verification (if scored) used final OISST; ``stale`` when the product was made by another model
version or code version, or was scored against a preliminary OISST analysis that has since been
replaced; ``missing`` otherwise. The per-date ledger (``backfill/<region>/<model>/<YYYYMMDD>.json``)
records every attempt, so an interrupted backfill resumes where it stopped and a report can say
what failed and why. The work itself is idempotent (products carry an input digest), so running a
finished backfill again downloads and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import bias_correction
from bias_correction import pipeline
from bias_correction.config import Settings, settings_from_dict
from bias_correction.errors import NotYetPublishedError, SstbcError
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.verification.verify import ScoreTable

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateState:
    date: str
    model_id: str
    state: str  # done | missing | stale | failed (cannot be planned: reason says why)
    reason: str
    product_key: str
    bytes_to_download: int | None


def dates(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass(frozen=True)
class WorkItem:
    """One unit of a backfill: a (region, model, date), with the region's settings as the plain data a worker
    rebuilds them from (:meth:`Settings.for_region`: the region's own store and model store)."""

    region: str
    settings: dict[str, Any]
    day: dt.date
    model_id: str


def work_items(settings: Settings, start: dt.date, end: dt.date, models: list[str] | None = None,
               regions: list[str] | None = None) -> list[WorkItem]:
    """Every (region, model, date) of a backfill over the named regions (default: every configured one), each
    region with its own model unless ``models`` names some; dates interleaved so that all regions progress."""
    per_region = [(rs, rs.model_dump(mode="json")) for rs in
                  (settings.for_region(n) for n in (regions or settings.region_names))]
    return [WorkItem(rs.region.name, data, day, m) for day in dates(start, end) for rs, data in per_region
            for m in (models or [rs.model_id])]


def ledger_key(settings: Settings, model_id: str, day: dt.date) -> str:
    return f"backfill/{settings.region.name}/{model_id}/{day:%Y%m%d}.json"


def _product_state(ctx: pipeline.Context, key: str, model_version: str, scored: list[Any]) -> tuple[str, str]:
    if not ctx.store.exists(key):
        return "missing", "no product"
    with ctx.store.local_path(key) as path:
        attrs = read_dataset(path, engine="netcdf4").attrs
    prov = json.loads(attrs.get("sstbc_provenance", "{}"))
    if str(prov.get("model_version")) != model_version:
        return "stale", f"model changed ({prov.get('model_version')} -> {model_version})"
    code = prov.get("code_version")
    made_by = code.get("sstbc") if isinstance(code, dict) else code
    if str(made_by) != bias_correction.__version__:
        return "stale", f"code changed ({made_by} -> {bias_correction.__version__})"
    rows = [r for r in scored if r.product_key == key]
    if any(r.oisst_version == "preliminary" and ctx.oisst.final_expected(dt.date.fromisoformat(r.valid_date))
           for r in rows):
        return "stale", "verified against preliminary OISST; the final analysis is now due"
    return "done", "product up to date" + ("" if rows else " (not verified yet)")


def plan(settings: Settings, start: dt.date, end: dt.date, model_ids: list[str]) -> list[DateState]:
    """State of every (date, model) of the range and the bytes still to download; downloads nothing."""
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import resolve_package

    from bias_correction.verification.verify import ScoreTable

    ctx = pipeline.make_context(settings)
    scored = ScoreTable(ctx.store).rows()
    out = []
    for model_id in model_ids:
        manifest = load_manifest(resolve_package(settings.model_store, model_id, settings.model_version))
        seq_len = manifest.seq_len
        for day in dates(start, end):
            key = product_key(settings.region.name, run_time(day), model_id)
            try:  # a date that cannot be planned is listed with its reason; the others still are
                state, reason = _product_state(ctx, key, manifest.version, scored)
                size: int | None = 0
                if state != "done":
                    needed = [day - dt.timedelta(days=k) for k in range(seq_len)]
                    items = pipeline.plan_fetch(ctx, needed, [])
                    size = None if any(i["bytes"] is None and i["state"] == "unpublished" for i in items) else \
                        sum(i["bytes"] or 0 for i in items)
            except SstbcError as exc:
                state, reason, size = "failed", f"{type(exc).__name__}: {exc}", None
            out.append(DateState(day.isoformat(), model_id, state, reason, key, size))
    return out


@functools.lru_cache(maxsize=8)
def _corrector(model_store: str, model_id: str, version: str, providers: str) -> Any:
    from bias_correction.correction.base import load_corrector

    return load_corrector(model_store, model_id, version, providers)  # type: ignore[arg-type]


def run_date(settings_data: dict[str, Any], day: dt.date, model_id: str,
             evidence_before: dt.date | None = None) -> dict[str, Any]:
    """Correct (and verify, when OISST is out) one date for one model, recording the attempt.

    ``evidence_before`` (the backfill's first date): the skill guard decides from the verification of runs
    before it only, so a date's product does not depend on which other dates of the backfill have been
    verified yet (``pipeline.guard.decide_for_run``).

    Safe to run in any process (dask workers): it takes plain data and builds what it needs.
    Retryable failures propagate (the orchestrator retries); the ledger keeps the last outcome.
    """
    settings = settings_from_dict({**settings_data, "model_id": model_id})
    ctx = pipeline.make_context(settings)
    lkey = ledger_key(settings, model_id, day)
    entry: dict[str, Any] = {"date": day.isoformat(), "model_id": model_id,
                             "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    previous = json.loads(ctx.store.read_bytes(lkey)) if ctx.store.exists(lkey) else None
    record = True
    try:
        corrector = _corrector(settings.model_store, model_id, settings.model_version, settings.providers)
        result = pipeline.correct_run(ctx, day, corrector, pictures=False,  # no quicklooks/report per backfilled date
                                      guard_evidence_before=evidence_before)
        entry.update(state="done", product_key=result.product.key, written=result.product.written,
                     model_version=result.model_version)
        scored = ScoreTable(ctx.store).versions(result.product.key)
        if result.product.written or scored != {"final"}:
            try:
                metrics = pipeline.verify_product(ctx, result.product.key)
                entry.update(verified=True, rmse_corrected=metrics["corrected"]["rmse"],
                             rmse_raw=metrics["raw"]["rmse"], oisst_versions=metrics["oisst_versions"])
            except NotYetPublishedError as exc:
                entry.update(verified=False, verification_pending=str(exc))
        elif previous is not None and previous.get("state") == "done" \
                and previous.get("model_version") == result.model_version:
            entry = {**previous, "written": False}
            record = False  # nothing changed: no write at all, not even the ledger
        else:  # up to date and scored on final analyses, no ledger of it: an attempt killed after verifying
            entry.update(verified=True, oisst_versions=sorted(scored), verified_by="an earlier attempt")
    except SstbcError as exc:
        entry.update(state="failed", error=type(exc).__name__, message=str(exc))
        raise
    finally:
        if record and entry.get("state") is not None:
            entry["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            ctx.store.write_bytes(lkey, json.dumps(entry, indent=1).encode())
    return entry


def ledger(settings: Settings, model_id: str, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """The recorded outcome of every date of the range that has been attempted."""
    from bias_correction.storage import Store

    store = Store(settings.storage_root)
    out = []
    for day in dates(start, end):
        key = ledger_key(settings, model_id, day)
        if store.exists(key):
            out.append(json.loads(store.read_bytes(key)))
    return out


def as_dicts(states: list[DateState]) -> list[dict[str, Any]]:
    return [asdict(s) for s in states]
