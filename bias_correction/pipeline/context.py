"""What every pipeline step needs, built once per run from the settings: store, grid, sources, regridder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bias_correction.config import Settings
from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid, target_grid
from bias_correction.grid.mask import OceanMask, load_mask
from bias_correction.grid.regrid import Regridder
from bias_correction.sources.hycom import HycomSource
from bias_correction.sources.oisst import OisstSource, _utc_today
from bias_correction.storage import Store

if TYPE_CHECKING:
    from bias_correction.correction.base import Corrector


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


def require_mask(ctx: Context) -> OceanMask:
    mask = load_mask(ctx.store, ctx.grid)
    if mask is None:
        raise InputValidationError(
            f"no ocean mask for grid {ctx.grid.grid_id} under {ctx.store.root}: fill the archive first (sstbc fetch / sstbc train)"
        )
    return mask


def load_fallback_corrector(settings: Settings) -> Corrector | None:
    """The HYCOM-only package of ``orchestration.fallback_model_id`` (newest version), or None."""
    from bias_correction.correction.base import load_corrector as _load

    model_id = settings.orchestration.fallback_model_id
    if not model_id:
        return None
    return _load(settings.model_store, model_id, "latest", settings.providers, settings.runtime)


def load_corrector(settings: Settings) -> Corrector:
    """The configured model package, verified (sha256 of every artifact), on the configured runtime/provider."""
    from bias_correction.correction.base import load_corrector as _load

    return _load(settings.model_store, settings.model_id, settings.model_version, settings.providers, settings.runtime)
