"""A model trained on tiles smaller than the grid is exported at the tile size and runs tiled on the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bias_correction.correction import tiling
from bias_correction.correction.gridded import OnnxCorrector
from bias_correction.grid.grids import RegularGrid
from bias_correction.training.export import export_package
from bias_correction.training.train import load_checkpoint
from tests.correction.helpers import make_checkpoint


def test_tile_trained_package_runs_as_blended_tiles(tmp_path: Path) -> None:
    grid = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=24, nlon=28)
    ck = make_checkpoint(tmp_path / "ckpt.pt", grid, "c" * 64, arch="convgru-sa", seq_len=2, kv_pool=1,
                         aux_inputs=("oisst_latest",))
    blob = torch.load(ck, weights_only=True)
    blob["meta"]["tile"] = {"nlat": 16, "nlon": 16, "margin": 2, "ramp": 2}
    torch.save(blob, ck)
    pkg = export_package(ck, tmp_path / "store", "tiled")
    corr = OnnxCorrector.load(tmp_path / "store", "tiled", providers="cpu")
    assert corr.manifest.shape == (24, 28) and corr.manifest.tile_shape == (16, 16)
    assert (pkg / "manifest.json").is_file()

    rng = np.random.default_rng(0)
    sst = (26 + rng.standard_normal((3, 2, 24, 28))).astype(np.float32)
    sst[:, :, :4, :5] = np.nan
    aux = (sst + 0.2)[:, :, None]
    lead = np.array([1, 4, 7], np.float32)
    got = corr.correct(sst, lead, aux)  # the grid: larger than the 16x16 graph -> tiles

    model, _ = load_checkpoint(ck)

    def eager(x: np.ndarray, ld: np.ndarray, a: np.ndarray | None) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(ld), torch.from_numpy(a)).numpy()

    # the runtime's blend: the zero-weight margin at a cut is at least the package's measured halo_cells
    margin, ramp = tiling.auto_blend((16, 16), corr.manifest.halo_cells)
    assert margin >= max(2, corr.manifest.halo_cells)
    ref = tiling.run_tiled(eager, sst, lead, (16, 16), aux=aux, margin=margin, ramp=ramp)
    whole = eager(sst, lead, aux)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, atol=1e-4, equal_nan=True)
    assert np.nanmax(np.abs(whole - ref)) > 1e-4  # attention: whole-domain output differs, so tiling mattered
