"""Scale benchmark: the daily correction (archive -> streamed inference -> product) per domain size, ORT vs eager.

For each size (50x50, 250x250, 1000x1000, the global 0.08 deg grid 2250x4500) a synthetic regridded
archive in the exact archive format (``testing.synthetic_archive``: T HYCOM runs + the OISST days of the
latest-analysis input) and a ConvGRU-SA package (the default configuration F=8, h=16, its default inputs: latest analysis + HYCOM
tendency; random weights, trained-tile 50x50) are written; then ``pipeline.correct_run`` runs in a fresh subprocess per size and
runtime, so peak RSS (VmHWM after resetting it; else ru_maxrss) is that run's alone. Runtimes: ONNX
Runtime CPU (``runtime="onnx"``, providers "cpu"), PyTorch eager (the trained module run through the same
streamed path: the package's TorchScript corrector with the eager module as its backend) and TorchScript,
plus CUDA rows where a GPU is active (providers chosen explicitly).

The step before, from the cached raw upstream file to the archive, is the ``raw-archive-cpu`` row: a
synthetic HYCOM run file in the exact NCSS layout (GLBy0.08 native grid, 0.04 deg x 0.08 deg, 60
three-hourly steps, int16 packed, deflated) covering the size's box, placed in the raw cache with its
ledger, then validated (as after a download) and turned into the archived field by
``pipeline.fill.archive_hycom_run`` (band-by-band daily means, regrid, archive write) in a fresh
subprocess. Its box starts at 80 S (where GLBy starts; the global size is the whole grid). The daily path
of one run is one such run (the other T - 1 runs are archived already) plus the inference row.

    python benchmarks/scale.py [--sizes 50,250,1000,global] [--backends ...] [--out benchmarks/results/scale]

Rows of a size are merged per backend with earlier invocations (each backend row keeps its date and commit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bias_correction import zoo  # noqa: E402

DAY, T, TILE = dt.date(2021, 3, 10), 4, 50
SIZES = {"50": (50, 50), "250": (250, 250), "1000": (1000, 1000), "global": (2250, 4500)}


def _settings(root: Path, shape: tuple[int, int], runtime: str, providers: str) -> dict[str, Any]:
    ny, nx = shape
    region = {"name": "scale", "lat_min": -90.0 + 0.0005, "lat_max": -90.0 + 0.08 * ny - 0.0005,
              "lon_min": 0.0005, "lon_max": 0.08 * nx - 0.0005}
    return {"storage_root": str(root / "data"), "model_store": str(root / "models"), "region": region,
            "providers": providers, "runtime": runtime, "model_id": zoo.DEFAULT_MODEL,
            "training": {"model": zoo.DEFAULT_MODEL, "seq_len": T},
            "product": {"quicklooks": False, "report": False, "zarr": False}}


def prepare(root: Path, shape: tuple[int, int]) -> float:
    """Archive + package for one size; returns the seconds it took."""
    import torch

    from bias_correction import pipeline
    from bias_correction.config import settings_from_dict
    from bias_correction.correction import tiling
    from bias_correction.pipeline.correct import run_days_of
    from bias_correction.testing.synthetic_archive import write_synthetic_archive
    from bias_correction.training.export import export_package
    from tests.correction.helpers import make_checkpoint

    t0 = time.perf_counter()
    s = settings_from_dict(_settings(root, shape, "onnx", "cpu"))
    ctx = pipeline.make_context(s)
    assert ctx.grid.shape == shape, (ctx.grid.shape, shape)
    days = run_days_of(DAY, T)
    mask = write_synthetic_archive(ctx.store, ctx.grid, days, oisst_days=[d - dt.timedelta(days=1) for d in days])
    ck = make_checkpoint(root / "ckpt.pt", ctx.grid, mask.sha256, arch=zoo.DEFAULT_MODEL, seq_len=T,
                         aux_inputs=zoo.default_inputs(zoo.DEFAULT_MODEL), features=8, hidden=16, kv_pool=4)
    blob = torch.load(ck, weights_only=True)
    if shape != (TILE, TILE):
        m, r = tiling.auto_blend((TILE, TILE))
        blob["meta"]["tile"] = {"nlat": TILE, "nlon": TILE, "margin": m, "ramp": r}
    torch.save(blob, ck)
    export_package(ck, root / "models", zoo.DEFAULT_MODEL)
    return time.perf_counter() - t0


_RUN = r"""
import json, sys, time, resource, pathlib, datetime as dt
from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.pipeline.correct import correct_run
cfg = json.loads(sys.argv[1])
eager = cfg.pop("eager_checkpoint", None)
s = settings_from_dict(cfg)
ctx = pipeline.make_context(s)
corr = pipeline.load_corrector(s)
if eager:  # PyTorch eager: the trained module itself behind the package's TorchScript corrector
    import torch
    from bias_correction.correction.gridded import TorchScriptCorrector
    from bias_correction.training.train import load_checkpoint
    torch.set_num_threads(int(cfg.get("inference", {}).get("intra_op_threads") or torch.get_num_threads()))
    corr = TorchScriptCorrector(corr.manifest, load_checkpoint(pathlib.Path(eager))[0].eval(), corr.active_provider)
try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
except OSError:
    pass
t0 = time.perf_counter()
res = correct_run(ctx, dt.date.fromisoformat(sys.argv[2]), corr, pictures=False)
wall = time.perf_counter() - t0
peak = None
try:
    peak = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_rss_mib": peak / 1024, "provider": corr.active_provider,
                  "runtime": "eager" if eager else corr.runtime, "written": res.product.written}))
"""


def measure(root: Path, shape: tuple[int, int], runtime: str, providers: str, tag: str) -> dict[str, Any]:
    from bias_correction.io.product import product_key  # noqa: F401  (import check before the subprocess)

    data = _settings(root, shape, "torchscript" if runtime == "eager" else runtime, providers)
    if runtime == "eager":
        data["eager_checkpoint"] = str(root / "ckpt.pt")
    data["storage_root"] = str(root / f"data-{tag}")
    if not (root / f"data-{tag}").exists():
        import shutil

        shutil.copytree(root / "data", root / f"data-{tag}")
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(data), DAY.isoformat()], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["cells_per_s"] = shape[0] * shape[1] / out["wall_s"]
    return out


def prepare_raw(root: Path, shape: tuple[int, int]) -> tuple[dict[str, Any], float]:
    """Settings of the raw-archive row and a synthetic raw HYCOM run file (with its ledger) in their raw cache;
    returns (settings, seconds it took)."""
    import numpy as np

    from bias_correction import pipeline
    from bias_correction.config import settings_from_dict
    from bias_correction.grid.lonlat import wrap_lon
    from bias_correction.hashing import sha256_file
    from bias_correction.sources.cache import Fetched, ledger_key
    from bias_correction.sources.hycom import run_time, write_run_file
    from bias_correction.sources.hycom.products import HYCOM_EPOCH
    from bias_correction.testing.formats import glby_lat, glby_lon

    t0 = time.perf_counter()
    data = _settings(root, shape, "onnx", "cpu")
    data["storage_root"] = str(root / "data-raw")
    if shape != SIZES["global"]:  # inside GLBy's coverage (80 S .. 90 N)
        ny, nx = shape
        data["region"].update(lat_min=-80.0 + 0.0005, lat_max=-80.0 + 0.08 * ny - 0.0005)
    ctx = pipeline.make_context(settings_from_dict(data))
    run = run_time(DAY)
    south, north, west, east = ctx.hycom.bbox()
    rows = np.arange(max(0, int(np.floor((south + 80.0) / 0.04)) - 1), min(4251, int(np.ceil((north + 80.0) / 0.04)) + 2))
    if east - west >= 359.9:
        cols, lon = np.arange(4500), glby_lon(np.arange(4500))
    else:
        cols = np.arange(int(np.floor(west / 0.08)) - 1, int(np.ceil(east / 0.08)) + 2)
        lon = glby_lon(cols % 4500)
        lon = wrap_lon(lon, -180.0) if west < 0 else lon
    lat = glby_lat(rows)
    taus = np.arange(0.0, ctx.hycom.max_tau() + 1, 3.0)
    hours = (run - HYCOM_EPOCH).total_seconds() / 3600 + taus
    lon_term = 0.5 * np.sin(np.deg2rad(lon))[None, None, :]
    diurnal = 0.2 * np.sin(2 * np.pi * taus / 24.0)[:, None, None]

    def packed(sl: slice) -> np.ndarray:
        temp = 14.0 + 14.0 * np.cos(np.deg2rad(lat[sl]))[None, :, None] + lon_term + diurnal  # degC
        return np.round((temp - 20.0) / 0.001).astype(np.int16)

    key = ctx.hycom.raw_key(run)
    path = Path(ctx.store.url(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    attrs = {"_FillValue": np.int16(-30000), "missing_value": np.int16(-30000), "scale_factor": 0.001,
             "add_offset": 20.0, "units": "degC", "long_name": "Water Temperature"}
    write_run_file(path, run, hours, taus, lat, lon, packed, attrs, "benchmarks/scale.py synthetic")
    fetched = Fetched(key=key, url=ctx.hycom.url(run), size=path.stat().st_size, sha256=sha256_file(path),
                      version="forecast", fetched_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    ctx.store.write_bytes(ledger_key(key), fetched.ledger_json().encode())
    return data, time.perf_counter() - t0


_RAW = r"""
import json, sys, time, resource, pathlib, datetime as dt
from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.pipeline.fill import archive_hycom_run
from bias_correction.sources.hycom import run_time, validate_hycom_file
s = settings_from_dict(json.loads(sys.argv[1]))
day = dt.date.fromisoformat(sys.argv[2])
ctx = pipeline.make_context(s)
key = ctx.hycom.raw_key(run_time(day))
try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
except OSError:
    pass
t0 = time.perf_counter()
validate_hycom_file(pathlib.Path(ctx.store.url(key)), run_time(day), ctx.hycom.max_tau())  # as after a download
t1 = time.perf_counter()
entry = archive_hycom_run(ctx, day)
wall = time.perf_counter() - t0
try:
    peak = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "validate_s": t1 - t0, "peak_rss_mib": peak / 1024, "archive_key": entry.key,
                  "raw_bytes": pathlib.Path(ctx.store.url(key)).stat().st_size}))
"""


def measure_raw(root: Path, shape: tuple[int, int]) -> dict[str, Any]:
    """The raw-archive row of one size (synthetic raw run file written first, not timed in the row)."""
    data, prep = prepare_raw(root, shape)
    done = subprocess.run([sys.executable, "-c", _RAW, json.dumps(data), DAY.isoformat()], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out.update(cells_per_s=shape[0] * shape[1] / out["wall_s"], prepare_s=prep)
    return out


def _commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def meta(backends: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "date": dt.date.today().isoformat(), "model": f"{zoo.DEFAULT_MODEL} F=8 h=16 kv_pool=4, tile {TILE}",
            "T": T, "leads": 7, "backends": [b[0] for b in backends],
            "note": "inference rows: archive written directly; raw-archive-cpu: one run from its cached raw file to "
                    "the archive; streamed above 250000 cells"}


def write(out: Path, rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """Merge ``rows`` into ``out``/scale.json (sizes measured earlier are kept unless re-measured) and
    rewrite scale.md; called after every size, so a long run killed later keeps what it measured."""
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / "scale.json").read_text()) if (out / "scale.json").is_file() else {"rows": []}
    merged = {r["size"]: r for r in previous["rows"]}
    for r in rows:  # per backend: a size re-measured on some backends keeps the others' earlier rows
        merged[r["size"]] = {**merged.get(r["size"], {}), **r}
    rows = sorted(merged.values(), key=lambda r: r["cells"])
    tmp = out / ".scale.json.tmp"
    tmp.write_text(json.dumps({"meta": info, "rows": rows}, indent=1) + "\n")
    tmp.replace(out / "scale.json")
    lines = ["| size | cells | backend | wall s | cells/s | peak RSS MiB | ORT speed-up vs eager | date, commit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for tag in [k for k in ("raw-archive-cpu", "ort-cpu", "eager-cpu", "torchscript-cpu", "ort-cuda", "eager-cuda")
                    if k in r]:
            v = r[tag]
            when = f"{v.get('date', r.get('date'))}, {v.get('commit', r.get('commit'))}"
            if "wall_s" in v:
                sp = f"{r['ort_vs_eager_speedup']:.2f}x" if tag == "ort-cpu" and "ort_vs_eager_speedup" in r else ""
                lines.append(f"| {r['shape'][0]}x{r['shape'][1]} | {r['cells']} | {tag} | {v['wall_s']:.1f} | "
                             f"{v['cells_per_s']:.0f} | {v['peak_rss_mib']:.0f} | {sp} | {when} |")
            else:
                lines.append(f"| {r['shape'][0]}x{r['shape'][1]} | {r['cells']} | {tag} | error: {v.get('error')} | | | | {when} |")
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,250,1000,global")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale"))
    ap.add_argument("--backends", help="comma-separated subset of raw-archive-cpu,ort-cpu,eager-cpu,torchscript-cpu "
                                       "(default all)")
    args = ap.parse_args(argv)
    from bias_correction.correction.session import cuda_active

    backends = [("raw-archive-cpu", "raw", "cpu"), ("ort-cpu", "onnx", "cpu"), ("eager-cpu", "eager", "cpu"),
                ("torchscript-cpu", "torchscript", "cpu")]
    if cuda_active():
        backends += [("ort-cuda", "onnx", "cuda"), ("eager-cuda", "eager", "cuda")]
    backends = [b for b in backends if b[0] in args.backends.split(",")] if args.backends else backends
    rows, table = [], ""
    for name in [s for s in args.sizes.split(",") if s]:
        shape = SIZES[name]
        with tempfile.TemporaryDirectory(prefix="sstbc-scale-") as work:
            root = Path(work)
            row: dict[str, Any] = {"size": name, "shape": list(shape), "cells": shape[0] * shape[1]}
            if any(b[1] != "raw" for b in backends):
                row["prepare_s"] = prepare(root, shape)
            for tag, runtime, providers in backends:
                row[tag] = measure_raw(root, shape) if runtime == "raw" else measure(root, shape, runtime, providers, tag)
                row[tag].update(date=dt.date.today().isoformat(), commit=_commit())
                print(f"{name:7s} {tag:16s} {json.dumps(row[tag])}", flush=True)
            e, o = row.get("eager-cpu", {}), row.get("ort-cpu", {})
            if "wall_s" in e and "wall_s" in o:  # side by side, same run, same archive
                row["ort_vs_eager_speedup"] = e["wall_s"] / o["wall_s"]
                row["ort_vs_eager_peak_rss_ratio"] = o["peak_rss_mib"] / e["peak_rss_mib"]
            row.update(date=dt.date.today().isoformat(), commit=_commit())
            rows.append(row)
            table = write(Path(args.out), rows, meta(backends))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
