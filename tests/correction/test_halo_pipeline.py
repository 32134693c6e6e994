"""The daily run on a halo'ed model grid (``grid.halo``): the archive and the model on the region plus the halo,
the product on the region's cells; a package from before the halo (trained on the bare region) still runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.correction.base import load_corrector
from bias_correction.grid.grids import target_grid
from bias_correction.inputs import OISST_LATEST
from bias_correction.io.netcdf import read_dataset
from bias_correction.pipeline.context import model_view
from bias_correction.pipeline.correct import correct_run, run_days_of
from bias_correction.testing.synthetic_archive import write_synthetic_archive
from bias_correction.training.export import export_package
from tests.correction.helpers import make_checkpoint

DAY = dt.date(2021, 3, 10)
T, HALO = 2, 3
REGION = {"name": "halo", "lat_min": -40.0 + 0.001, "lat_max": -40.0 + 0.08 * 16 - 0.001, "lon_min": 100.001,
          "lon_max": 100.0 + 0.08 * 16 - 0.001}


def _settings(root: Path, model_id: str):
    return settings_from_dict({
        "storage_root": str(root / "data"), "model_store": str(root / "models"), "region": REGION,
        "grid_halo_cells": HALO, "providers": "cpu", "model_id": model_id,
        "training": {"model": "convgru", "seq_len": T},
        "product": {"quicklooks": False, "report": False, "zarr": False},
    })


def test_daily_run_on_the_halo_grid_publishes_the_region(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "convgru")
    ctx = pipeline.make_context(settings)
    region = target_grid(settings.region, settings.grid_step)
    assert ctx.region_grid == region and ctx.grid.shape == (16 + 2 * HALO, 16 + 2 * HALO)
    s, n, w, e = ctx.hycom.bbox()
    assert s < region.bounds()[0] - HALO * 0.08 + 0.01 and e > region.bounds()[3] + HALO * 0.08  # the halo is fetched
    days = run_days_of(DAY, T)
    mask = write_synthetic_archive(ctx.store, ctx.grid, days, oisst_days=[d - dt.timedelta(days=1) for d in days])
    ck = make_checkpoint(tmp_path / "ck.pt", ctx.grid, mask.sha256, arch="convgru", seq_len=T, head_std=0.3,
                         aux_inputs=(OISST_LATEST.name,))
    package = export_package(ck, tmp_path / "models", "convgru")
    corrector = load_corrector(tmp_path / "models", "convgru", providers="cpu")
    assert 0 < corrector.manifest.halo_cells <= T + 1  # measured at export (ConvGRU: T + 1 cells at most)
    assert corrector.manifest.receptive_field["converged"] and (package / "manifest.json").is_file()

    res = correct_run(ctx, DAY, corrector, pictures=False)
    with ctx.store.local_path(res.product.key) as path:
        ds = read_dataset(path, engine="netcdf4")
    view = model_view(ctx, corrector.manifest, mask)
    assert ds.sizes["lat"] == 16 and ds.sizes["lon"] == 16
    np.testing.assert_allclose(ds["lat"].values, region.lat)
    assert np.array_equal(ds["ocean_mask"].values.astype(bool), mask.values[HALO:-HALO, HALO:-HALO])
    assert ds.attrs["sstbc_grid_id"] == region.grid_id and view.region_mask.grid_id == region.grid_id
    # the published cells are the model's output on the halo grid, cropped: run it here on the same inputs
    full = pipeline.correct.infer(ctx, corrector, mask, pipeline.correct.run_inputs(
        ctx, DAY, T, (OISST_LATEST.name,))[1], days)[0]
    sst = ds["sst"].values.reshape(full.shape)
    np.testing.assert_allclose(sst[np.isfinite(sst)], full[np.isfinite(full)], atol=1e-4)
    assert pipeline.replay_product(ctx, res.product.key)["ok"]

    # a package trained on the bare region (no halo_cells): inputs cropped to the region, still published
    old = make_checkpoint(tmp_path / "old.pt", region, view.region_mask.sha256, arch="convgru", seq_len=T,
                          aux_inputs=(OISST_LATEST.name,))
    export_package(old, tmp_path / "models", "oldconv")
    octx = pipeline.make_context(_settings(tmp_path, "oldconv"))
    oc = load_corrector(tmp_path / "models", "oldconv", providers="cpu")
    ov = model_view(octx, oc.manifest, mask)
    assert ov.grid == region and ov.inputs == ctx.halo and ov.outputs.is_zero
    out = correct_run(octx, DAY, oc, pictures=False)
    with octx.store.local_path(out.product.key) as path:
        ods = read_dataset(path, engine="netcdf4")
        assert ods.sizes["lat"] == 16
    # it ran with no halo: the provenance gives the edge effect at the domain edge itself, not at HALO cells
    effect = oc.manifest.receptive_field["edge_effect_degC"]
    assert json.loads(ods.attrs["sstbc_provenance"])["halo"]["edge_effect_at_halo_degC"] == max(effect)
    assert max(effect) > max(effect[HALO:], default=0.0)


def test_a_whole_domain_model_warns_only_when_its_edge_effect_at_the_halo_matters(tmp_path: Path) -> None:
    """Attention reaches the whole domain, so its probe never converges; the run warns when what the edge still
    changes at the running halo exceeds EDGE_WARN_DEGC, and only logs it below (the demo model: 0.024 degC at 8)."""
    import logging
    from types import SimpleNamespace

    from bias_correction.grid.mask import OceanMask, mask_sha256
    from bias_correction.pipeline.context import EDGE_WARN_DEGC, edge_effect_at, report_halo

    ctx = pipeline.make_context(_settings(tmp_path, "convgru"))
    values = np.ones(ctx.grid.shape, bool)
    mask = OceanMask(values, mask_sha256(values), ctx.grid.grid_id)
    small = [0.4, 0.1, 0.05, 0.024, 0.02, 0.01, 0.0]  # edge effect by distance, cells 0..6
    large = [0.4, 0.3, 0.2, 0.1, 0.09, 0.08, 0.0]
    logger = logging.getLogger("bias_correction.pipeline.context")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for effect, converged, warns in ((small, False, False), (large, False, True), (small, True, True)):
            seen.clear()
            man = SimpleNamespace(model_id="m", version="v", grid_id=ctx.grid.grid_id, halo_cells=6,
                                  receptive_field={"converged": converged, "edge_effect_degC": effect})
            view = model_view(ctx, man, mask)
            assert view.halo_cells == HALO and view.needed_cells == 6
            report_halo(view, man)
            assert edge_effect_at(man, HALO) == max(effect[HALO:])
            levels = {r.levelno for r in seen}
            assert (logging.WARNING in levels) == warns, (effect, converged, [r.getMessage() for r in seen])
            assert levels  # never silent when the package reaches beyond its halo
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert max(small[HALO:]) < EDGE_WARN_DEGC < max(large[HALO:])
    assert edge_effect_at(SimpleNamespace(), 3) is None
