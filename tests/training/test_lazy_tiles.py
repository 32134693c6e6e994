"""Lazy tile training (``training.lazy_tiles``, ``training.lazy_batches``): the same samples as the in-memory
path read tile by tile from the archive, an end-to-end training that exports, and peak memory that does not
grow with the domain (measured in subprocesses)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
import torch

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.correction.manifest import load_manifest
from bias_correction.errors import ArchiveIntegrityError, ConfigError
from bias_correction.gate import training_envelope
from bias_correction.io import archive
from bias_correction.pipeline.fill import archive_dates
from bias_correction.pipeline.training import train_and_export, train_from_archive, training_samples
from bias_correction.sources.cache import Fetched
from bias_correction.sources.hycom import run_time
from bias_correction.testing.synthetic_archive import write_synthetic_archive
from bias_correction.training import sources
from bias_correction.training.dataset import normalisation, split_chronological
from bias_correction.training.lazy_batches import LazyTileBatches, LazyTileData
from bias_correction.training.train import load_checkpoint, train_model

ROOT = Path(__file__).resolve().parents[2]
START, END = dt.date(2021, 3, 4), dt.date(2021, 3, 11)
T = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _settings(root: Path, n: int, *, lazy: bool = True, aux: tuple[str, ...] = ("oisst_latest",), **training: Any) -> Any:
    lat0 = -40.0  # n cells of the global 0.08 grid from -40 N
    region = {"name": "box", "lat_min": lat0 + 0.001, "lat_max": lat0 + 0.08 * n - 0.001, "lon_min": 100.001,
              "lon_max": 100.0 + 0.08 * n - 0.001}
    return settings_from_dict({
        "storage_root": str(root / "data"), "model_store": str(root / "models"), "region": region, "providers": "cpu",
        "model_id": "lazy" if lazy else "mem", "lead_days": 2,
        "training": {"model": "convgru-sa", "seq_len": T, "features": 4, "hidden": 8, "epochs": 2, "batch_size": 4,
                     "patience": 5, "tile_size": 16, "aux_inputs": list(aux), "calibration_fraction": 0.0,
                     "lazy_tiles": lazy, **training},
        "product": {"quicklooks": False, "report": False, "zarr": False},
    })


def _fetched(what: str, version: str) -> Fetched:
    return Fetched(key=f"raw/test/{what}", url=f"test://{what}", size=0, sha256="0" * 64, version=version,
                   fetched_at="2021-01-01T00:00:00Z")


def _archive(settings: Any, end: dt.date = END, *, extras: bool = False) -> Any:
    """The archive ``train_from_archive`` reads for START..END; ``extras``: also surf_el runs, preliminary
    analyses kept beside their finals (as-issued inputs differ from targets), one run and one day missing."""
    ctx = pipeline.make_context(settings)
    runs, days = archive_dates(START, end, T, settings.lead_days, settings.training.oisst_lag_days)
    mask = write_synthetic_archive(ctx.store, ctx.grid, runs, oisst_days=days, lead_days=settings.lead_days)
    if extras:
        ocean = mask.values
        rng = np.random.default_rng(1)
        for i, day in enumerate(runs):
            sst = archive.read_field(ctx.store, archive.hycom_key(ctx.grid, run_time(day)))
            eta = (0.1 * (sst - 27.0) + 0.01 * i).astype(np.float32)
            eta.attrs = {"units": "m"}
            archive.write_hycom(ctx.store, ctx.grid, run_time(day), eta, _fetched(f"eta{i}", "final"), variable="surf_el")
        for day in days[-8:]:  # issued as preliminary, then replaced by a different final
            final = archive.read_field(ctx.store, archive.oisst_key(ctx.grid, day)).values
            noise = rng.normal(0, 0.2, final.shape).astype(np.float32)
            archive.write_oisst(ctx.store, ctx.grid, day, final + noise, _fetched(f"p{day}", "preliminary"))
            archive.write_oisst(ctx.store, ctx.grid, day, final, _fetched(f"f{day}", "final"))
        Path(ctx.store.url(archive.hycom_key(ctx.grid, run_time(runs[3])))).unlink()
        Path(ctx.store.url(archive.oisst_key(ctx.grid, days[5]))).unlink()
    return ctx


def test_lazy_samples_equal_the_in_memory_crops_and_statistics(tmp_path: Path) -> None:
    """Surf_el (same-run, anomaly-normalised), the derived HYCOM tendency, as-issued preliminary analyses, a
    missing run and day, a target window: the index has the in-memory sample list, every tile read equals the
    in-memory crop, and the normalisation, envelope and first training batch are the in-memory ones."""
    settings = _settings(tmp_path, 40, aux=("oisst_latest", "surf_el", "hycom_tendency"))
    ctx = _archive(settings, extras=True)
    mem, v_mem = training_samples(ctx, START, END)
    lazy, v_lazy = training_samples(ctx, START, END, lazy=True)
    assert v_lazy == v_mem and v_mem["as_issued_inputs"]["preliminary"] == 8
    assert len(lazy) == len(mem) >= 10 and lazy.aux_names == mem.aux_names
    for f in ("lead", "run", "valid"):
        np.testing.assert_array_equal(getattr(lazy, f), getattr(mem, f))
    window = (slice(2, 37), slice(3, 38))
    mem, lazy = mem.targets_inside(*window), lazy.targets_inside(*window)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(mem), 5, replace=False):
        a, b = (int(v) for v in rng.integers(0, 40 - 16, 2))
        rows, cols = slice(a, a + 16), slice(b, b + 16)
        x, aux, y = lazy.read(int(i), rows, cols)
        np.testing.assert_array_equal(x, mem.x[i, :, rows, cols])
        np.testing.assert_array_equal(aux, mem.aux[i, :, :, rows, cols])  # type: ignore[index]
        np.testing.assert_array_equal(y, mem.y[i, rows, cols])
        assert x.dtype == aux.dtype == y.dtype == np.float32
    assert np.isnan(mem.aux[:, :, 0]).sum() > 0 and not np.array_equal(  # type: ignore[index]
        mem.aux[:, -1, 0], mem.y)  # land is NaN; inputs are not the targets

    (m_tr, m_va), (l_tr, l_va) = (split_chronological(s, 0.25, gap_days=T) for s in (mem, lazy))
    vmin, vmax = normalisation(m_tr)
    assert l_tr.normalisation() == (vmin, vmax)
    assert l_tr.envelope() == training_envelope(m_tr.y, m_tr.x[:, -1])
    n_m, n_l = sources.aux_normalisation(m_tr, vmin, vmax), l_tr.aux_normalisation(vmin, vmax)
    assert n_l[0] == n_m[0] == (vmin, vmax - vmin)
    for j in (1, 2):  # surf_el, and the tendency's own statistics (not those of the SST it derives from)
        np.testing.assert_allclose(n_l[j], n_m[j], rtol=1e-5, atol=1e-6)
        assert n_l[j][1] > 0
    assert abs(n_m[2][0]) < 1.0 < vmin  # a change in degC, centred near 0

    got = next(iter(LazyTileBatches(l_tr, 4, 0, (16, 16))))
    want = next(iter(sources.InMemoryBatches(m_tr, 4, 0, (16, 16))))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)
    lazy.close()


def test_a_changed_archive_file_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 24)
    ctx = _archive(settings)
    key = archive.hycom_key(ctx.grid, run_time(START))
    with netCDF4.Dataset(ctx.store.url(key), "a") as nc:
        nc["sst"][0, 10, 10] = 99.0
    with pytest.raises(ArchiveIntegrityError, match="does not match"):
        training_samples(ctx, START, END, lazy=True)


def test_lazy_training_exports_and_records_lazy_tiles(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 40)
    ctx = _archive(settings)
    out = train_and_export(ctx, START, END, progress=False)
    _, meta = load_checkpoint(Path(out["training"]["checkpoint"]))
    assert meta["hyperparameters"]["lazy_tiles"] is True and meta["tile"]["nlat"] == 16
    assert meta["lazy_tiles"]["validation"]["tiles_per_sample"] == 4
    n_val = out["training"]["samples"]["val"]
    assert meta["val_scores"]["coverage"] == f"{4 * n_val} fixed 16x16 tiles" and meta["val_scores"]["n_samples"] == n_val
    assert np.isfinite(meta["val_scores"]["rmse_corrected"]) and meta["vmin"] < meta["vmax"]
    manifest = load_manifest(Path(out["export"]["package"]))
    assert manifest.raw["training"]["hyperparameters"]["lazy_tiles"] is True
    assert out["export"]["parity"]

    # what lazy tiles refuse, each with one line
    for bad, match in (({"tile_size": None}, "set training.tile_size"),
                       ({"calibration_fraction": 0.15}, "calibration_fraction = 0")):
        with pytest.raises(ConfigError, match=match):
            train_from_archive(pipeline.make_context(_settings(tmp_path, 40, **bad)), START, END, progress=False)
    mem, _ = training_samples(ctx, START, END)
    tr, va = split_chronological(mem, 0.25, gap_days=T)
    with pytest.raises(ConfigError, match="in memory"):
        train_model(tr, va, settings.training, grid=ctx.grid, mask_hash="0" * 64, data_info={}, out_dir=tmp_path / "x")


def test_lazy_validation_tiles_are_fixed_and_seeded(tmp_path: Path) -> None:
    ctx = _archive(_settings(tmp_path, 40))
    lazy, _ = training_samples(ctx, START, END, lazy=True)
    a, b = LazyTileData(lazy, lazy, seed=3), LazyTileData(lazy, lazy, seed=4)
    pa = a.positions((16, 16))
    assert pa == a.positions((16, 16)) == LazyTileData(lazy, lazy, seed=3).positions((16, 16)) != b.positions((16, 16))
    assert len(pa) == 4 * len(lazy) and len({p for p in pa if p[0] == 0}) == 4
    ocean = lazy.mask
    assert all(ocean[r:r + 16, c:c + 16].any() for _, r, c in pa)
    lazy.close()


_MEASURE = r"""
import json, sys, pathlib, time, resource, datetime as dt, torch, torch._dynamo  # imports before the baseline
torch.set_num_threads(1)
from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.pipeline.training import training_samples
from bias_correction.training.dataset import split_chronological
from bias_correction.training.train import train_model
s = settings_from_dict(json.loads(sys.argv[1]))
ctx = pipeline.make_context(s)
start, end = (dt.date.fromisoformat(v) for v in sys.argv[2:4])
pathlib.Path("/proc/self/clear_refs").write_text("5")
status = lambda k: int([l for l in open("/proc/self/status") if l.startswith(k)][0].split()[1])
base = status("VmRSS")
cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
t0, c0 = time.perf_counter(), cpu()
samples, _ = training_samples(ctx, start, end, lazy=s.training.lazy_tiles)
train, val = split_chronological(samples, s.training.val_fraction, gap_days=s.training.seq_len)
t1, c1 = time.perf_counter(), cpu()
res = train_model(train, val, s.training, grid=ctx.grid, mask_hash="0" * 64, data_info={}, progress=False,
                  out_dir=pathlib.Path(s.storage_root) / ("out-lazy" if s.training.lazy_tiles else "out-mem"))
t2, c2 = time.perf_counter(), cpu()
epoch_s = torch.load(res.checkpoint, weights_only=True)["meta"]["epoch_seconds"]
print(json.dumps({"growth_mib": (status("VmHWM") - base) / 1024, "samples": len(train), "load_s": t1 - t0,
                  "load_cpu_s": c1 - c0, "train_s": t2 - t1, "train_cpu_s": c2 - c1, "epoch_s": epoch_s,
                  "total_cpu_s": c2}))
"""


def _peak(settings: Any, end: dt.date) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _MEASURE, json.dumps(settings.model_dump(mode="json")), START.isoformat(), end.isoformat()]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_peak_memory_of_lazy_training_does_not_grow_with_the_domain(tmp_path: Path) -> None:
    """Lazy training (index, statistics, 2 epochs, validation) at 1000x1000 (16x the cells of 250x250, same
    tile and batch) grows its peak RSS by about what it does at 250x250; the in-memory path at 1000x1000
    (samples loaded, then the same training) by clearly more."""
    end = START + dt.timedelta(days=5)
    kw: dict[str, Any] = {"model": "convgru", "tile_all_models": True, "tile_size": 64, "features": 2, "hidden": 4}
    small = _settings(tmp_path / "small", 250, **kw)
    large = _settings(tmp_path / "large", 1000, **kw)
    _archive(small, end)
    _archive(large, end)
    res = {"small": _peak(small, end), "large": _peak(large, end),
           "memory": _peak(_settings(tmp_path / "large", 1000, lazy=False, **kw), end)}
    print(json.dumps(res))
    assert res["large"]["samples"] == res["memory"]["samples"] >= 4
    assert res["large"]["growth_mib"] - res["small"]["growth_mib"] < 100, res
    # in memory, 1000x1000 x 2 leads x the runs and days (HYCOM, OISST, as-issued inputs, samples) is > 300 MiB
    assert res["memory"]["growth_mib"] > res["large"]["growth_mib"] + 300, res

