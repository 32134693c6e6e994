"""Synthetic HYCOM/OISST cubes with a learnable HYCOM-minus-OISST bias, shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bias_correction.grid.grids import RegularGrid


def synthetic_cubes(nruns: int = 30, nlat: int = 12, nlon: int = 16, leads: int = 7, seed: int = 0,
                    start: str = "2021-01-01", missing_runs: tuple[int, ...] = (),
                    noise: float = 0.1) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray, RegularGrid]:
    """HYCOM = OISST(valid day) + bias(lat, lon) + 0.05*lead + noise, degC; land in one corner.

    The bias (0.3 degC mean plus a smooth spatial pattern) is what a model can learn.
    """
    rng = np.random.default_rng(seed)
    grid = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=nlat, nlon=nlon)
    days = pd.date_range(start, periods=nruns + leads + 1, freq="D")
    jj, ii = np.meshgrid(np.arange(nlat), np.arange(nlon), indexing="ij")
    t = np.arange(len(days))[:, None, None]
    truth = (27.0 + 1.0 * np.sin(2 * np.pi * t / 40.0) + 0.5 * np.sin(jj / 3.0 + t / 7.0)
             + 0.4 * np.cos(ii / 4.0)).astype(np.float32)
    ocean = np.ones((nlat, nlon), dtype=bool)
    ocean[: nlat // 4, : nlon // 4] = False
    bias = 0.3 + 0.3 * np.sin(jj / 2.5) * np.cos(ii / 3.0)
    runs = days[:nruns] + pd.Timedelta(hours=12)
    hy = np.empty((nruns, leads, nlat, nlon), np.float32)
    for r in range(nruns):
        for k in range(1, leads + 1):
            hy[r, k - 1] = truth[r + k] + bias + 0.05 * k + noise * rng.standard_normal((nlat, nlon))
    hy[:, :, ~ocean] = np.nan
    oi = truth.copy()
    oi[:, ~ocean] = np.nan
    coords = {"lat": grid.lat, "lon": grid.lon}
    hycom = xr.DataArray(hy, dims=("run", "lead", "lat", "lon"),
                         coords={"run": runs.values, "lead": np.arange(1, leads + 1), **coords})
    if missing_runs:
        hycom = hycom.drop_isel(run=list(missing_runs))
    oisst = xr.DataArray(oi, dims=("time", "lat", "lon"), coords={"time": days.values, **coords})
    mask = xr.DataArray(ocean, dims=("lat", "lon"), coords=coords)
    return hycom, oisst, mask, grid


def synthetic_surf_el(hycom: xr.DataArray, seed: int = 1) -> xr.DataArray:
    """HYCOM-like sea surface elevation (m) on the same runs/leads: a smooth field tied to the SST anomaly."""
    rng = np.random.default_rng(seed)
    anom = hycom - hycom.mean(("lat", "lon"))
    eta = 0.08 * anom + 0.01 * rng.standard_normal(hycom.shape).astype(np.float32)
    return eta.astype(np.float32).rename("surf_el")
