"""A regridded archive of any size written directly (no servers, no raw files), for scale tests and benchmarks.

Fields are smooth twin-like SST (°C) with a land block, written by the archive's own writers
(``io.archive.write_hycom`` / ``write_oisst``: the exact archive format, checksummed), one field at a
time so that even the global grid is written in bounded memory (7 leads x the grid, float32).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import xarray as xr

from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.mask import OceanMask, save_mask
from bias_correction.io import archive
from bias_correction.sources.cache import Fetched
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store


def land_mask(grid: RegularGrid) -> np.ndarray:
    """Ocean (True) everywhere but a land block in the north-west corner and a small island."""
    ocean = np.ones(grid.shape, bool)
    ny, nx = grid.shape
    ocean[: max(1, ny // 5), : max(1, nx // 4)] = False
    ocean[ny // 2: ny // 2 + max(1, ny // 20), nx // 2: nx // 2 + max(1, nx // 20)] = False
    return ocean


def _fetched(what: str, version: str = "final") -> Fetched:
    sha = hashlib.sha256(what.encode()).hexdigest()
    return Fetched(key=f"raw/synthetic/{what}", url=f"synthetic://{what}", size=0, sha256=sha, version=version,
                   fetched_at="2021-01-01T00:00:00Z")


def _sst(grid: RegularGrid, seed: int, nlead: int | None = None) -> np.ndarray:
    """(nlead, lat, lon) or (lat, lon) float32 °C: a meridional gradient plus seeded waves."""
    rng = np.random.default_rng(seed)
    lat = grid.lat.astype(np.float32)[:, None]
    lon = grid.lon.astype(np.float32)[None, :]
    a, b = rng.uniform(0.5, 1.5, 2).astype(np.float32)
    base = 28.0 - 0.25 * np.abs(lat - 10.0) + a * np.sin(np.radians(3 * lon)) * np.cos(np.radians(4 * lat + b * 10))
    base = np.clip(base, -1.5, 35.0).astype(np.float32)
    if nlead is None:
        return base
    return np.stack([base + np.float32(0.05 * k) for k in range(1, nlead + 1)]).astype(np.float32)


def write_synthetic_archive(store: Store, grid: RegularGrid, run_days: list[dt.date], *, oisst_days: list[dt.date] = (),
                            lead_days: int = 7, seed: int = 0) -> OceanMask:
    """Ocean mask, one HYCOM run per day of ``run_days`` and one OISST day per ``oisst_days``, in the archive."""
    ocean = land_mask(grid)
    mask = save_mask(store, grid, ocean, "synthetic")
    for i, day in enumerate(run_days):
        run = run_time(day)
        vals = np.where(ocean, _sst(grid, seed + i, lead_days), np.float32(np.nan))
        valid = np.array([np.datetime64(day + dt.timedelta(days=k), "ns") for k in range(1, lead_days + 1)])
        daily = xr.DataArray(vals, dims=("lead", "lat", "lon"),
                             coords={"lead": np.arange(1, lead_days + 1), "valid_date": ("lead", valid)},
                             attrs={"units": "degC"})
        archive.write_hycom(store, grid, run, daily, _fetched(f"hycom_{day:%Y%m%d}"))
        del vals, daily
    for i, day in enumerate(oisst_days):
        vals = np.where(ocean, _sst(grid, seed + 1000 + i) - np.float32(0.3), np.float32(np.nan))
        archive.write_oisst(store, grid, day, vals, _fetched(f"oisst_{day:%Y%m%d}"))
    return mask
