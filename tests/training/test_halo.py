"""The halo (``grid.halo``): the model runs on the region plus a margin of real data and the product is cropped
to the region, so the network's zero padding never reaches a published cell.

On the twin a deterministic convolutional corrector (HYCOM + the 9x9 box mean of latest OISST - HYCOM, four
zero-padded 3x3 layers: correct only where the padding is out of reach) shows the edge band without a halo and
none with it; the probe of ``training.receptive_field`` measures that model's reach exactly."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from bias_correction.config import Region
from bias_correction.correction import tiling
from bias_correction.grid.grids import target_grid
from bias_correction.grid.halo import Halo, with_halo
from bias_correction.grid.mask import OceanMask, mask_sha256
from bias_correction.inputs import OISST_LATEST
from bias_correction.sources.hycom import run_time
from bias_correction.testing.twin import Twin, TwinConfig
from bias_correction.training.architectures import CorrectionModule, build_model
from bias_correction.training.dataset import build_samples
from bias_correction.training.receptive_field import measure_halo

LAYERS = 4  # 3x3 box layers: reach 4 cells
RING = 4  # the edge band: the outer 4 rows and columns


class BoxBias(nn.Module):
    """Normalised HYCOM + box mean (LAYERS x 3x3, zero padding) of (latest OISST - HYCOM): a fixed corrector."""

    def __init__(self) -> None:
        super().__init__()
        self.box = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.box.weight.fill_(1.0 / 9.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last = x[:, -1]
        d = (last[:, 3:4] - last[:, 0:1]) * mask
        for _ in range(LAYERS):
            d = self.box(d)
        return (last[:, 0:1] + d) * mask


def _fixed_model(vmin: float = 20.0, vmax: float = 32.0) -> CorrectionModule:
    return CorrectionModule(BoxBias(), vmin, vmax, [(vmin, vmax - vmin)], -1).eval()


def test_halo_grid_surrounds_the_region_grid_exactly() -> None:
    region = target_grid(Region(), 0.08)
    outer, halo = with_halo(region, 6)
    assert outer.shape == (62, 62) and halo == Halo(6, 6, 6, 6) and halo.cells == 6
    assert halo.inner(outer).grid_id == region.grid_id  # the product grid is the region's, not re-derived
    values = np.zeros(outer.shape, bool)
    values[3:50, 10:] = True
    mask = OceanMask(values, mask_sha256(values), outer.grid_id)
    inner = halo.crop_mask(mask, region)
    assert inner.values.shape == region.shape and inner.grid_id == region.grid_id
    assert np.array_equal(inner.values, values[6:-6, 6:-6]) and inner.sha256 == mask_sha256(values[6:-6, 6:-6])
    polar = target_grid(Region(name="p", lat_min=89.7, lat_max=90.0, lon_min=0.0, lon_max=1.0), 0.08)
    _, ph = with_halo(polar, 5)
    assert ph.north == 0 and ph.south == 5  # clipped where the globe ends
    assert with_halo(region, 0) == (region, Halo())


def test_probe_measures_the_reach_of_the_padding() -> None:
    probe = measure_halo(_fixed_model(), 2)
    assert probe["halo_cells"] == LAYERS and probe["converged"]
    assert probe["edge_effect_degC"][LAYERS - 1] > probe["tolerance_degC"] >= probe["edge_effect_degC"][LAYERS]
    torch.manual_seed(0)
    core = build_model("convgru", in_channels=3, features=4, hidden=6, seq_len=2)
    nn.init.normal_(core.head.weight, std=0.3)
    conv = measure_halo(CorrectionModule(core, 20.0, 32.0).eval(), 2)
    # a ConvGRU over T steps reaches T + 1 cells (front conv, input conv, T - 1 recurrent convs): never beyond
    assert 0 < conv["halo_cells"] <= 3 and conv["converged"]
    assert tiling.auto_blend((20, 20), conv["halo_cells"])[0] >= conv["halo_cells"]


def _twin_samples(grid, runs, leads=(1, 3)):
    twin = Twin(TwinConfig(seed=5))
    lat, lon = grid.lat, grid.lon
    hy = np.stack([np.stack([twin.hycom(run_time(d), Twin.daily_taus(k), lat, lon)[:, 0].mean(0) for k in leads])
                   for d in runs])
    days = [runs[0] - dt.timedelta(days=2) + dt.timedelta(days=i) for i in range(len(runs) + max(leads) + 2)]
    oi = np.stack([twin.oisst(d, lat, lon)["sst"] for d in days])
    c = {"lat": lat, "lon": lon}
    hycom = xr.DataArray(hy, dims=("run", "lead", "lat", "lon"),
                         coords={"run": np.array(runs, "datetime64[ns]"), "lead": list(leads), **c})
    oisst = xr.DataArray(oi, dims=("time", "lat", "lon"), coords={"time": np.array(days, "datetime64[ns]"), **c})
    mask = xr.DataArray(np.isfinite(oi[0]) & np.isfinite(hy[0, 0]), dims=("lat", "lon"), coords=c)
    return build_samples(hycom, oisst, mask, 2, aux_inputs=(OISST_LATEST.name,))


def _edge_interior(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    d2 = (pred - y) ** 2
    ok = np.isfinite(d2)
    edge = np.zeros(d2.shape[1:], bool)
    edge[:RING] = edge[-RING:] = True
    edge[:, :RING] = edge[:, -RING:] = True
    e, i = ok & edge[None], ok & ~edge[None]
    return float(np.sqrt(d2[e].mean())), float(np.sqrt(d2[i].mean()))


@pytest.mark.parametrize("n", [28])
def test_halo_removes_the_edge_band_on_the_twin(n: int) -> None:
    region = target_grid(Region(name="box", lat_min=14.0, lat_max=14.0 + 0.08 * n - 0.001, lon_min=112.5,
                                lon_max=112.5 + 0.08 * n - 0.001), 0.08)
    model = _fixed_model()
    halo_cells = measure_halo(model, 2)["halo_cells"]  # what export records: the grid's halo must cover it
    runs = [dt.date(2021, 2, 1) + dt.timedelta(days=i) for i in range(30)]
    ratios = {}
    for h in (0, halo_cells):
        grid, halo = with_halo(region, h)
        s = _twin_samples(grid, runs)
        with torch.no_grad():
            out = model(torch.from_numpy(s.x), torch.from_numpy(s.lead.astype(np.float32)),
                        torch.from_numpy(s.aux)).numpy()
        pred, y = halo.crop(out), halo.crop(s.y)  # the product: the region's cells
        assert pred.shape[1:] == region.shape
        edge, interior = _edge_interior(pred, y)
        ratios[h] = edge / interior
        print(f"halo {h}: outer {RING} rows/cols RMSE {edge:.3f} degC, interior {interior:.3f} degC, "
              f"ratio {edge / interior:.3f} ({len(s)} samples)")
    assert abs(ratios[halo_cells] - 1.0) <= 0.10, ratios  # the criterion, with the halo
    assert ratios[0] > 1.10 and ratios[0] > ratios[halo_cells] + 0.1, ratios  # the band the halo removes
