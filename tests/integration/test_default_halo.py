"""The shipped default halo (``grid_halo_cells`` = 8) through the real daily flow over the stand-ins.

The other integration tests run on the bare region for speed (``tests.conftest.settings_for``); this one runs
the configuration a user gets without setting anything: the halo is fetched, archived and masked, the
default model's package measures a receptive field the halo covers, and the product is the region's grid."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction import pipeline, zoo
from bias_correction.config import DEFAULT_HALO_CELLS, settings_from_dict
from bias_correction.grid.grids import target_grid
from bias_correction.correction.base import load_corrector
from bias_correction.io import archive
from bias_correction.pipeline.context import model_view, report_halo
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from bias_correction.training.export import export_package
from bias_correction.training.train import auto_kv_pool
from tests.conftest import settings_for
from tests.correction.helpers import make_checkpoint

pytestmark = pytest.mark.slow

RUN_DAY = dt.date(2021, 3, 10)


def test_the_daily_flow_on_the_default_halo(prefect_harness, upstream, tmp_path: Path) -> None:
    from flows.daily import daily_correction

    data = settings_for(upstream, tmp_path, product={"quicklooks": False, "report": False}).model_dump(mode="json")
    data.pop("grid_halo_cells")  # what a user gets without setting it
    settings = settings_from_dict(data)
    assert settings.grid_halo_cells == DEFAULT_HALO_CELLS == 8
    region = target_grid(settings.region, settings.grid_step)
    ctx = pipeline.make_context(settings)
    assert ctx.region_grid == region and ctx.grid.shape == (region.nlat + 16, region.nlon + 16)
    s, n, w, e = ctx.hycom.bbox()  # the halo is fetched, not only the region
    assert s < region.bounds()[0] - 8 * 0.08 + 0.01 and e > region.bounds()[3] + 8 * 0.08 - 0.01

    mask = pipeline.ensure_mask(ctx, RUN_DAY - dt.timedelta(days=1), RUN_DAY)
    assert mask.values.shape == ctx.grid.shape
    aux = zoo.default_inputs(settings.model_id)
    # keys/values pooled as training pools them on this grid (unpooled, export's parity runs took 77 s)
    ck = make_checkpoint(tmp_path / "ck.pt", ctx.grid, mask.sha256, arch=settings.model_id,
                         seq_len=settings.training.seq_len, aux_inputs=aux, kv_pool=auto_kv_pool(ctx.grid.shape))
    package = export_package(ck, Path(settings.model_store), settings.model_id)
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["grid"]["grid_id"] == ctx.grid.grid_id  # trained on the region plus its halo
    needed = manifest["halo_cells"]  # measured at export (this random checkpoint's attention is strong)
    assert needed > 0 and manifest["receptive_field"]["tolerance_degC"] > 0

    out = daily_correction(settings.model_dump(mode="json"), RUN_DAY, verify=True)
    store = Store(settings.storage_root)
    assert archive.read_field(store, archive.hycom_key(ctx.grid, run_time(RUN_DAY))).shape[-2:] == ctx.grid.shape
    with xr.open_dataset(store.url(out["product"]["key"])) as ds:
        assert ds["sst"].shape == (7, 1, region.nlat, region.nlon)
        np.testing.assert_allclose(ds["lat"].values, region.lat)
        assert ds.attrs["sstbc_grid_id"] == region.grid_id
        ocean = ds["ocean_mask"].values.astype(bool)
        assert np.array_equal(ocean, mask.values[8:-8, 8:-8])
        assert np.isfinite(ds["sst"].values[:, 0][:, ocean]).all()
        prov = json.loads(ds.attrs["sstbc_provenance"])
    assert prov["halo"]["grid_halo_cells"] == {"south": 8, "north": 8, "west": 8, "east": 8}
    assert prov["halo"]["model_grid_id"] == ctx.grid.grid_id and prov["halo"]["model_halo_cells"] == needed
    # a package whose measured reach exceeds the halo runs, and the log names it (never silently)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("bias_correction.pipeline.context")
    logger.addHandler(handler)
    try:
        manifest_obj = load_corrector(Path(settings.model_store), settings.model_id, providers="cpu").manifest
        view = model_view(ctx, manifest_obj, mask)
        report_halo(view, manifest_obj)
    finally:
        logger.removeHandler(handler)
    assert view.halo_cells == settings.grid_halo_cells
    warned = [r for r in records if "needs a halo" in r.getMessage()]
    local = manifest["receptive_field"]["converged"]  # a reach the probe measured (else attention: see below)
    assert bool(warned) == (local and needed > settings.grid_halo_cells), (needed, [r.getMessage() for r in warned])
    assert prov["halo"]["edge_effect_at_halo_degC"] == max(manifest["receptive_field"]["edge_effect_degC"][8:],
                                                           default=0.0)
    checks = out["metrics"]["product_checks"]["edge_interior"]["corrected"]
    assert checks["ring"] == 4 and checks["rmse_edge"] > 0  # verification scores the region's edge band
