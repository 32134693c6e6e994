"""The per-region Zarr store: appends in any order match the NetCDF products, a SIGKILL between
writing chunks and committing leaves the previous snapshot whole, and it rebuilds from the products."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bias_correction import catalog
from bias_correction.errors import ProductError
from bias_correction.io import zarr_store
from bias_correction.storage import Store
from tests.io.test_catalog import publish_runs
from tests.io.test_product_stack import RUNS, one_run

REPO = Path(__file__).resolve().parents[2]


def check(z, runs) -> None:
    np.testing.assert_array_equal(z["forecast_reference_time"].values, [np.datetime64(r, "ns") for r in runs])
    for j, run in enumerate(runs):
        ref = one_run(run)
        for v in ("sst", "sst_raw", "sst_uncertainty", "quality_flag"):
            np.testing.assert_array_equal(z[v].values[:, j], ref[v].values[:, 0], err_msg=v)
        np.testing.assert_array_equal(z["time"].values[:, j], ref["time"].values[:, 0])


def test_appends_in_any_order_match_the_products(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(ProductError, match="no Zarr store"):
        zarr_store.open_store(store, "scs", "m")
    actions = [zarr_store.append_run(store, "scs", "m", one_run(r), f"k{r:%d}")["action"]
               for r in (RUNS[0], RUNS[2], RUNS[3], RUNS[1], RUNS[2])]
    assert actions == ["created", "appended", "appended", "merged", "replaced"]
    z = zarr_store.open_store(store, "scs", "m")
    check(z, RUNS)
    assert z["sst"].encoding["chunks"] == (7, zarr_store.RUN_CHUNK, 6, 8)  # a map or a point series: few chunks
    assert "provenance" not in " ".join(z.attrs) and z.attrs["Conventions"].startswith("CF-1.11")


CRASH = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    import xarray as xr
    from bias_correction.io import zarr_store
    from bias_correction.storage import Store
    zarr_store.append_run(Store({root!r}), "scs", "m", xr.load_dataset({nc!r}), "k25")
    print("committed")
""")


def test_sigkill_between_chunks_and_commit_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    for r in RUNS[:2]:
        zarr_store.append_run(store, "scs", "m", one_run(r), "k")
    repo_dir = tmp_path / "root" / zarr_store.store_key("scs", "m")
    before = {p for p in repo_dir.rglob("*") if p.is_file()}
    nc = tmp_path / "run25.nc"
    one_run(RUNS[3] + dt.timedelta(days=2)).to_netcdf(nc)
    env = {**os.environ, "SSTBC_CRASH_AT": "zarr_before_commit"}
    proc = subprocess.run([sys.executable, "-c", CRASH.format(repo=str(REPO), root=str(tmp_path / "root"), nc=str(nc))],
                          env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9 and "committed" not in proc.stdout, proc.stderr[-2000:]
    written = {p for p in repo_dir.rglob("*") if p.is_file()} - before
    assert any("chunks" in p.parts for p in written)  # it died after writing the run's chunks, before the commit
    z = zarr_store.open_store(store, "scs", "m")
    check(z, RUNS[:2])  # the killed append is invisible: the store is the last commit, whole
    zarr_store.append_run(store, "scs", "m", one_run(RUNS[2]), "k")  # and the next append works
    check(zarr_store.open_store(store, "scs", "m"), RUNS[:3])


def test_rebuild_from_the_netcdf_products(tmp_path: Path) -> None:
    store = Store(tmp_path)
    publish_runs(store, RUNS[:3])
    out = zarr_store.rebuild(store, "scs", "convgru-sa")
    assert out["runs"] == 3
    z = zarr_store.open_store(store, "scs", "convgru-sa")
    cube = catalog.open_products(store, "scs", model_id="convgru-sa")
    np.testing.assert_array_equal(z["sst"].transpose("forecast_reference_time", ...).values, cube["sst"].values)
    check(z, RUNS[:3])
