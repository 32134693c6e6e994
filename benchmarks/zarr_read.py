"""Read speed of the per-region Zarr store against the NetCDF products (issue 14).

Builds N synthetic runs on the default 50x50 grid (no model: ``build_product`` on random fields),
publishes each as a NetCDF file and appends it to the Zarr store, then times reading one point's full
series (every run, every lead) and one map (one run, one lead) both ways, best of R repeats, each
from a freshly opened dataset. Usage: ``python benchmarks/zarr_read.py [N]``; prints one JSON object.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.mask import OceanMask, mask_sha256
from bias_correction.io import zarr_store
from bias_correction.io.product import _encoding, build_product
from bias_correction.storage import Store

GRID = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=50, nlon=50)
REPEATS = 3


def best(fn) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(n: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="sstbc-zarr-bench-"))
    store = Store(root)
    mask_v = np.ones(GRID.shape, bool)
    mask_v[:5, :5] = False
    mask = OceanMask(mask_v, mask_sha256(mask_v), GRID.grid_id)
    files, append_s = [], []
    for i in range(n):
        run = dt.datetime(2021, 1, 1, 12) + dt.timedelta(days=i)
        raw = 27 + np.random.default_rng(i).normal(0, 0.5, (7, *GRID.shape)).astype(np.float32)
        valid = np.array([np.datetime64(run.date()) + np.timedelta64(k, "D") for k in range(1, 8)])
        ds = build_product(run=run, grid=GRID, mask=mask, region_name="scs", sst_corrected=raw - 0.2, sst_raw=raw,
                           valid_dates=valid, provenance={"model_id": "m"}, input_digest=str(i),
                           sst_uncertainty=np.full(7, 0.3))
        path = root / f"sstbc_scs_{run:%Y%m%d}T12Z_m.nc"
        ds.to_netcdf(path, encoding=_encoding(ds))
        files.append(path)
        t = time.perf_counter()
        zarr_store.append_run(store, "scs", "m", ds, path.name)
        append_s.append(time.perf_counter() - t)

    def nc_point() -> np.ndarray:
        with xr.open_mfdataset(files, combine="by_coords", data_vars="minimal", coords="minimal", compat="override") as c:
            return c["sst"].isel(lat=25, lon=25).values

    def zarr_point() -> np.ndarray:
        return zarr_store.open_store(store, "scs", "m")["sst"].isel(lat=25, lon=25).values

    def nc_map() -> np.ndarray:
        with xr.open_dataset(files[n // 2]) as one:
            return one["sst"].isel(lead_day=2, forecast_reference_time=0).values

    def zarr_map() -> np.ndarray:
        return zarr_store.open_store(store, "scs", "m")["sst"].isel(lead_day=2, forecast_reference_time=n // 2).values

    np.testing.assert_array_equal(nc_point(), zarr_point())
    np.testing.assert_array_equal(nc_map(), zarr_map())
    return {"runs": n, "grid": list(GRID.shape), "repeats": REPEATS,
            "point_series_s": {"netcdf_open_mfdataset": best(nc_point), "zarr": best(zarr_point)},
            "map_s": {"netcdf_one_file": best(nc_map), "zarr": best(zarr_map)},
            "append_s_median": float(np.median(append_s)), "append_s_max": float(np.max(append_s))}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 90), indent=1))
