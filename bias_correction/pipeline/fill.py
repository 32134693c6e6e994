"""Filling the archive: regridded OISST days and HYCOM runs, the ocean mask, what a fill would download.

Every step is idempotent: an archived field is reused, a raw file is downloaded only when the cache
does not hold it, and a day archived from a preliminary OISST file is upgraded once the final is due.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from bias_correction.config import Settings
from bias_correction.grid.mask import OceanMask, derive_mask, load_mask, save_mask
from bias_correction.inputs import HYCOM_SST, InputSpec, analysis_lag, aux_specs
from bias_correction.io import archive
from bias_correction.io.archive import ArchiveEntry
from bias_correction.errors import NotYetPublishedError
from bias_correction.pipeline.context import Context
from bias_correction.sources.hycom import run_time
from bias_correction.sources.oisst import PRELIMINARY

LOG = logging.getLogger(__name__)


def archive_oisst_day(ctx: Context, day: dt.date) -> ArchiveEntry:
    """Regridded OISST of ``day`` in the archive (downloading the raw file only if needed).

    A day archived from the preliminary file is upgraded once the final file is expected:
    the final is fetched and the day re-archived; until it is published the preliminary stays.
    The preliminary as issued is also kept under ``archive.oisst_preliminary_key`` and never replaced.
    """
    hit = archive.existing(ctx.store, archive.oisst_key(ctx.grid, day))
    if hit is not None and (hit.source.get("version") != PRELIMINARY or not ctx.oisst.final_expected(day)):
        return hit
    fetched = ctx.oisst.fetch(day)
    if hit is not None and fetched.version == PRELIMINARY:
        return hit
    if hit is not None:  # the final replaces the main entry; the as-issued preliminary stays under its own key
        archive.keep_preliminary(ctx.store, ctx.grid, day)
    # the region plus the model grid's halo (pipeline.context): the archive and the mask live on the model grid
    sst = ctx.regridder(ctx.oisst.open_region(fetched, ctx.fetch_region), method=ctx.settings.regrid.oisst)
    return archive.write_oisst(ctx.store, ctx.grid, day, sst.values, fetched)


def archive_hycom_run(ctx: Context, day: dt.date, variable: str = "sst") -> ArchiveEntry:
    """Regridded daily-mean HYCOM forecast of the 12Z run of ``day`` in the archive.

    ``variable``: an archive variable of ``io.archive.HYCOM_VARIABLES`` (SST in °C, sea-surface
    elevation in m, ...), each with its own archive key and raw file.
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


def archive_input(ctx: Context, spec: InputSpec, day: dt.date) -> ArchiveEntry:
    """The archived field of input ``spec`` for ``day`` (a run day or an analysis day, per its rule;
    an ``as_issued`` analysis gets the version that existed at run time)."""
    if spec.source == "hycom":
        return archive_hycom_run(ctx, day, variable=spec.variable)
    entry = archive_oisst_day(ctx, day)
    if spec.as_issued:  # what the run had: the kept preliminary where one was archived
        return archive.as_issued_oisst(ctx.store, ctx.grid, day) or entry
    return entry


def input_entries(ctx: Context, spec: InputSpec, run_days: list[dt.date], oisst_lag_days: int) -> list[ArchiveEntry]:
    """Archive entries of ``spec`` for each run day, in run order.

    The newest run is fetched first, so an unpublished or broken run names itself, not a predecessor.
    """
    days = [spec.day_for_run(d, oisst_lag_days) for d in run_days]
    return [archive_input(ctx, spec, d) for d in reversed(days)][::-1]


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
    """(auxiliary inputs, analysis lag or None) of the configured training: what the archive must hold."""
    aux = settings.training.resolved_aux_inputs
    return aux, analysis_lag(aux, settings.training.oisst_lag_days)


def extra_run_fields(settings: Settings) -> list[tuple[str, str]]:
    """(input name, HYCOM archive variable) of the configured auxiliary inputs archived per run beside
    HYCOM SST; analysis inputs are covered by the OISST days of :func:`archive_dates`."""
    aux, _ = training_inputs(settings)
    return [(s.name, s.variable) for s in aux_specs(aux)
            if s.source == "hycom" and s.variable != HYCOM_SST.variable]


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
