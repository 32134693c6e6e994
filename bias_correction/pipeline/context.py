"""What every pipeline step needs, built once per run from the settings: store, grid, sources, regridder.

``grid`` is the model grid: the region plus ``grid_halo_cells`` on every side (``grid.halo``); the archive,
the ocean mask, training and inference live on it. ``region_grid`` is the product grid (the region's own
cells); products are cropped to it (:func:`model_view`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import logging

from bias_correction.config import Region, Settings
from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.halo import Halo, model_grids
from bias_correction.grid.mask import OceanMask, load_mask
from bias_correction.grid.regrid import Regridder
from bias_correction.sources.hycom import HycomSource
from bias_correction.sources.oisst import OisstSource, _utc_today
from bias_correction.storage import Store

if TYPE_CHECKING:
    from bias_correction.correction.base import Corrector

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
    #: The product grid (the region's cells) and how the model grid ``grid`` surrounds it.
    region_grid: RegularGrid
    halo: Halo
    #: The box the sources fetch and the regridder fills: the region widened to the model grid's cell edges.
    fetch_region: Region


def _fetch_region(region: Region, grid: RegularGrid) -> Region:
    lat_min, lat_max, lon_min, lon_max = grid.bounds()
    return region.model_copy(update={"lat_min": max(-90.0, lat_min), "lat_max": min(90.0, lat_max),
                                     "lon_min": lon_min, "lon_max": lon_max})


def make_context(settings: Settings, today: Callable[[], dt.date] | None = None) -> Context:
    store = Store(settings.storage_root, settings.storage_options or None)
    # The raw-file cache may be shared between regions (Settings.for_region): same URL, same cached file.
    raw = Store(settings.raw_cache_root, settings.storage_options or None) if settings.raw_cache_root else store
    grid, region_grid, halo = model_grids(settings)
    fetch_region = settings.region if halo.is_zero else _fetch_region(settings.region, grid)
    return Context(
        settings=settings,
        store=store,
        grid=grid,
        oisst=OisstSource(
            settings.upstream.oisst_https, raw, settings.http, today or _utc_today,
            access=settings.upstream.oisst_access, s3_base=settings.upstream.oisst_s3,
            s3_endpoint=settings.upstream.oisst_s3_endpoint, opendap_base=settings.upstream.oisst_opendap,
            region=fetch_region,
        ),
        hycom=HycomSource(settings.upstream.hycom_ncss, raw, settings.http, fetch_region, settings.lead_days,
                          access=settings.upstream.hycom_access, opendap_base=settings.upstream.hycom_opendap,
                          files_base=settings.upstream.hycom_files),
        # Weights are cached on disk by a hash of source grid, target grid and method (local roots only).
        regridder=Regridder(grid, cache_dir=Path(store.url("grid/weights")) if store.is_local else None),
        region_grid=region_grid, halo=halo, fetch_region=fetch_region,
    )


@dataclass(frozen=True)
class ModelView:
    """How one package runs on this context: the grid and mask it was trained on (its contract), the crop
    from the archive's grid to that grid (``inputs``) and from it to the product grid (``outputs``)."""

    grid: RegularGrid
    mask: OceanMask
    inputs: Halo
    outputs: Halo
    #: The product (region) grid's mask: the published cells.
    region_mask: OceanMask
    #: Cells of real data the model has beyond every product cell, and what it needs (its receptive field).
    halo_cells: int
    needed_cells: int


def region_mask(ctx: Context, mask: OceanMask) -> OceanMask:
    """The product grid's ocean mask: the authoritative (model grid) mask cropped to the region."""
    return ctx.halo.crop_mask(mask, ctx.region_grid)


def model_view(ctx: Context, manifest: object, mask: OceanMask) -> ModelView:
    """Where a package runs. Trained on the model grid (the region plus its halo): on it, output cropped to the
    region. Trained on the bare region grid (packages from before the halo, or ``grid_halo_cells`` = 0 then):
    inputs cropped to the region first, no halo. Any other grid: the model grid, so ``check_contract`` names it.

    What the package needs (``needed_cells``, its receptive field) against what it gets: ``report_halo``."""
    product_mask = region_mask(ctx, mask)
    needed = int(getattr(manifest, "halo_cells", 0) or 0)
    if runs_on_region_grid(ctx, manifest):
        return ModelView(ctx.region_grid, product_mask, ctx.halo, Halo(), product_mask, 0, needed)
    return ModelView(ctx.grid, mask, Halo(), ctx.halo, product_mask, ctx.halo.cells, needed)


def runs_on_region_grid(ctx: Context, manifest: object) -> bool:
    """Whether a package trained on the bare region runs (without a halo) inside a deployment that has one."""
    return getattr(manifest, "grid_id", None) == ctx.region_grid.grid_id and not ctx.halo.is_zero


def report_halo(view: ModelView, manifest: object) -> None:
    """Log, once per run, a package reaching beyond the halo it runs with: its outer cells then see the zero
    padding (an edge band). A warning where a larger halo would help (a converged probe, or an edge effect
    over ``EDGE_WARN_DEGC``); information for a whole-domain (attention) model whose remaining effect is small."""
    if view.needed_cells <= view.halo_cells:
        return
    name = f"{getattr(manifest, 'model_id', '?')} {getattr(manifest, 'version', '?')}"
    left = edge_effect_at(manifest, view.halo_cells)
    rf = getattr(manifest, "receptive_field", None) or {}
    if rf.get("converged", True) or left is None or left > EDGE_WARN_DEGC:
        LOG.warning("model %s needs a halo of %d cells (its receptive field) but runs with %d: products carry "
                    "an edge band (the edge changes outputs by up to %s degC there); set grid_halo_cells >= %d "
                    "and retrain", name, view.needed_cells, view.halo_cells, "?" if left is None else f"{left:.3g}",
                    view.needed_cells)
    else:  # attention: the whole domain matters, weakly; no halo removes that, the probe says how much
        LOG.info("model %s depends on the whole domain (attention: its probe did not converge within %d cells); "
                 "with a halo of %d cells the domain edge changes its outputs by up to %.3g degC", name,
                 view.needed_cells, view.halo_cells, left)


#: Largest edge effect (degC, the export probe's max change of an output) a global-reach model (attention: the
#: probe does not converge) may keep at the running halo without a warning: a tenth of raw HYCOM's typical
#: error against OISST (~0.5 degC). Demo model at the default halo of 8 cells: 0.024 degC.
EDGE_WARN_DEGC = 0.05


def edge_effect_at(manifest: object, cells: int) -> float | None:
    """Largest change (degC) the domain edge makes to outputs ``cells`` or more cells inside it (the export
    probe's ``receptive_field.edge_effect_degC``), None for packages without the probe."""
    effect = (getattr(manifest, "receptive_field", None) or {}).get("edge_effect_degC") or []
    if not effect:
        return None
    return float(max(effect[cells:], default=0.0))


def require_mask(ctx: Context) -> OceanMask:
    mask = load_mask(ctx.store, ctx.grid)
    if mask is None:
        raise InputValidationError(
            f"no ocean mask for grid {ctx.grid.grid_id} under {ctx.store.root}: fill the archive first (sstbc fetch / sstbc train)"
        )
    return mask


def load_fallback_corrector(settings: Settings) -> Corrector | None:
    """The HYCOM-only package of ``orchestration.fallback_model_id`` (its ``current`` version), or None."""
    from bias_correction.correction.base import load_corrector as _load

    model_id = settings.orchestration.fallback_model_id
    if not model_id:
        return None
    from bias_correction.correction.session import OrtOptions

    return _load(settings.model_store, model_id, "current", settings.providers, settings.runtime,
                 OrtOptions.from_settings(settings.inference))


def load_corrector(settings: Settings) -> Corrector:
    """The configured model package, verified (sha256 of every artifact), on the configured runtime/provider."""
    from bias_correction.correction.base import load_corrector as _load
    from bias_correction.correction.session import OrtOptions

    return _load(settings.model_store, settings.model_id, settings.model_version, settings.providers, settings.runtime,
                 OrtOptions.from_settings(settings.inference))
