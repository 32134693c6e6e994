"""Streaming tiled correction (``correction.streaming``, ``pipeline.correct_stream``): the same product as the
in-memory path, and peak memory that does not grow with the domain (measured in subprocesses)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.correction import streaming, tiling
from bias_correction.correction.base import load_corrector
from bias_correction.inputs import OISST_LATEST
from bias_correction.io.netcdf import read_dataset
from bias_correction.pipeline.correct import correct_run, run_days_of
from bias_correction.storage import Store
from bias_correction.testing.synthetic_archive import write_synthetic_archive
from bias_correction.training.export import export_package
from tests.correction.helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2021, 3, 10)
T = 2


def _region(n: int) -> dict[str, object]:
    lat0 = -40.0  # cell edges of the global 0.08 grid: n rows from -40 N
    return {"name": "big", "lat_min": lat0 + 0.001, "lat_max": lat0 + 0.08 * n - 0.001, "lon_min": 100.001,
            "lon_max": 100.0 + 0.08 * n - 0.001}


def _setup(root: Path, n: int, tile: int, arch: str = "convgru-sa", stream_above: int = 1, halo: int = 0) -> object:
    """Settings, synthetic archive and a tile-trained package (random weights) for an n x n region (the model
    grid: the region plus ``halo`` cells on every side)."""
    settings = settings_from_dict({
        "storage_root": str(root / "data"), "model_store": str(root / "models"), "region": _region(n),
        "providers": "cpu", "model_id": arch, "training": {"model": arch, "seq_len": T},
        "inference": {"stream_above_cells": stream_above}, "grid_halo_cells": halo,
        "product": {"quicklooks": False, "report": False, "zarr": False},
    })
    ctx = pipeline.make_context(settings)
    assert ctx.grid.shape == (n + 2 * halo, n + 2 * halo)
    days = run_days_of(DAY, T)
    mask = write_synthetic_archive(ctx.store, ctx.grid, days, oisst_days=[d - dt.timedelta(days=1) for d in days])
    kw = {"kv_pool": 2} if arch == "convgru-sa" else {}
    ck = make_checkpoint(root / "ckpt.pt", ctx.grid, mask.sha256, arch=arch, seq_len=T,
                         aux_inputs=(OISST_LATEST.name,), **kw)
    blob = torch.load(ck, weights_only=True)
    margin, ramp = tiling.auto_blend((tile, tile))
    blob["meta"]["tile"] = {"nlat": tile, "nlon": tile, "margin": margin, "ramp": ramp}
    torch.save(blob, ck)
    export_package(ck, root / "models", arch)
    return settings


def test_band_plan_is_the_separable_form_of_plan() -> None:
    shape, tile = (130, 97), (32, 24)
    bp = streaming.band_plan(shape, tile, 3, 3)
    full = tiling.plan(shape, tile, 3, 3)
    assert len(full) == len(bp.ys) * len(bp.xs)
    for (sy, sx, w) in full:
        i, j = bp.ys.index(sy.start), bp.xs.index(sx.start)
        np.testing.assert_allclose(np.outer(bp.wy[i], bp.wx[j]), w, atol=1e-12)


def test_streamed_content_checksum_matches_the_archive(tmp_path: Path) -> None:
    from bias_correction.io import archive

    settings = settings_from_dict({"storage_root": str(tmp_path), "region": _region(40)})
    ctx = pipeline.make_context(settings)
    write_synthetic_archive(ctx.store, ctx.grid, [DAY])
    key = archive.hycom_key(ctx.grid, dt.datetime(DAY.year, DAY.month, DAY.day, 12))
    with xr.open_dataset(ctx.store.url(key)) as ds:
        assert streaming.streamed_content_sha256(ds) == ds.attrs[archive.CONTENT_ATTR]
        assert streaming.streamed_content_sha256(ds, slab=3) == archive.content_sha256(ds.load())


@pytest.mark.parametrize(("n", "halo"), [(200, 0), (120, 3)])
def test_streamed_product_equals_the_in_memory_product(tmp_path: Path, n: int, halo: int, caplog) -> None:
    """n x n region, ConvGRU-SA trained on 64x64 tiles: streamed by row bands vs blended in memory; with a halo
    both run on the region plus the halo and publish the region."""
    s_mem = _setup(tmp_path / "mem", n, 64, stream_above=10 ** 9, halo=halo)
    shutil.copytree(tmp_path / "mem", tmp_path / "stream")
    s_str = s_mem.model_copy(update={"storage_root": str(tmp_path / "stream" / "data"),
                                     "model_store": str(tmp_path / "stream" / "models"),
                                     "inference": s_mem.inference.model_copy(update={"stream_above_cells": 1})})
    if halo:  # live verification: the model worse than persistence at lead 2 (better elsewhere)
        import dataclasses

        from bias_correction.verification.recalibration import z_histogram
        from bias_correction.verification.verify import ScoreTable
        from tests.correction.helpers import score_rows

        version = load_corrector(s_mem.model_store, s_mem.model_id, providers="cpu").manifest.version
        for s in (s_mem, s_str):
            z = np.abs(np.random.default_rng(0).normal(size=2000)) * 1.5  # errors 1.5x the package's half-width
            rows = score_rows(s.model_id, version, DAY - dt.timedelta(days=30), 30, s.lead_days,
                              {"model": 0.1, "persistence": 0.2, "raw": 0.5},
                              z_hist=z_histogram(z, np.ones_like(z)))
            rows = [r if r.lead != 2 else dataclasses.replace(r, rmse_corrected=0.9) for r in rows]
            ScoreTable(Store(s.storage_root)).upsert(rows)
    out = {}
    for name, s in (("mem", s_mem), ("stream", s_str)):
        ctx = pipeline.make_context(s)
        caplog.clear()
        with caplog.at_level("INFO", logger="bias_correction.pipeline.correct_stream"):
            res = correct_run(ctx, DAY, load_corrector(s.model_store, s.model_id, providers="cpu"))
        assert res.product.written
        assert ("streamed" in caplog.text) == (name == "stream"), caplog.text[-500:]
        out[name] = read_dataset(Store(s.storage_root).url(res.product.version_key), engine="netcdf4")
    a, b = out["mem"], out["stream"]
    assert a["sst"].shape == b["sst"].shape == (7, 1, n, n)
    np.testing.assert_array_equal(np.isnan(a["sst"].values), np.isnan(b["sst"].values))
    assert float(np.nanmax(np.abs(a["sst"].values - b["sst"].values))) < 1e-4
    assert float(np.nanmax(np.abs(a["sst"].values - a["sst_raw"].values))) > 1e-3  # the model did something
    for v in ("sst_raw", "ocean_mask"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    np.testing.assert_array_equal(a["quality_flag"].values, b["quality_flag"].values)  # land, guard and the rest
    assert a.attrs["sstbc_input_digest"] == b.attrs["sstbc_input_digest"]
    if halo:  # the skill guard carried persistence at lead 2 on both paths (score rows below)
        assert a.attrs["sstbc_guard_carried"] == b.attrs["sstbc_guard_carried"] == "model,persistence," + ",".join(["model"] * 5)
        np.testing.assert_array_equal(a["sst"].values[1], b["sst"].values[1])
        assert float(np.nanmax(np.abs(b["sst"].values[1] - b["sst_model"].values[1]))) > 1e-3
        np.testing.assert_allclose(a["sst_model"].values, b["sst_model"].values, atol=1e-4)
        np.testing.assert_array_equal(a["sst_uncertainty"].values, b["sst_uncertainty"].values)
        # the model leads' intervals rescaled from the live rows on both paths; lead 2 carries persistence's own
        live = json.loads(a["sst_uncertainty"].attrs["uncertainty_live_scale"])
        assert live == json.loads(b["sst_uncertainty"].attrs["uncertainty_live_scale"])
        assert "2" not in live and set(live) == {str(k) for k in range(1, 8)} - {"2"}
        assert all(1.4 < v < 1.6 for v in live.values()), live


_MEASURE = r"""
import json, sys, pathlib, resource
from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.correction.base import load_corrector
from bias_correction.pipeline.correct import correct_run
import datetime as dt
s = settings_from_dict(json.loads(sys.argv[1]))
ctx = pipeline.make_context(s)
corr = load_corrector(s.model_store, s.model_id, providers="cpu")
pathlib.Path("/proc/self/clear_refs").write_text("5")
base = int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
res = correct_run(ctx, dt.date.fromisoformat(sys.argv[2]), corr, pictures=False)
peak = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
print(json.dumps({"written": res.product.written, "growth_mib": (peak - base) / 1024, "peak_mib": peak / 1024}))
"""


def _peak(settings: object) -> dict[str, float]:
    cmd = [sys.executable, "-c", _MEASURE, json.dumps(settings.model_dump(mode="json")), DAY.isoformat()]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_peak_memory_of_a_streamed_run_does_not_grow_with_the_domain(tmp_path: Path) -> None:
    """1200x1200 (16x the cells of 300x300): the streamed run's peak RSS growth stays within a tolerance.

    Measured 2026-12-02: 1226 MiB at 1200x1200 before archive files were chunked by row bands, the netCDF
    chunk caches made small and the tile batch capped below what both domains fill (see the printed line for the current figures)."""
    small = _peak(_setup(tmp_path / "small", 300, 128, arch="convgru"))
    large = _peak(_setup(tmp_path / "large", 1200, 128, arch="convgru"))
    assert small["written"] and large["written"]
    print(f"peak RSS growth: 300x300 {small['growth_mib']:.0f} MiB, 1200x1200 {large['growth_mib']:.0f} MiB")
    # In memory, 1200x1200 x 7 leads x T=2 inputs alone (HYCOM + OISST) are 154 MiB more than at 300x300.
    assert large["growth_mib"] - small["growth_mib"] < 100, (small, large)
