"""Regridding benchmark: one global OISST day (0.25 deg) and one global HYCOM GLBy0.08 surface
field (4251 x 4500) onto the global 0.08 degree product grid (2250 x 4500), with

* sstbc's separable sparse weights (bilinear and conservative; weight build/save/load timed apart),
* ``xarray.Dataset.interp`` (scipy, linear) -- the reference for values,
* ``xarray-regrid`` (``ds.regrid.linear`` and ``ds.regrid.conservative``),

side by side on the same inputs. Each case runs in a forked child so its peak memory is its
own: ``peak MB`` is the child's peak RSS minus its RSS at the fork (the inputs are already
resident), so it counts every allocation (numpy, scipy, C) beyond the inputs.

Why a script and not a timed test: wall times on a shared 2-core machine are too noisy to
assert on; the unit tests assert the properties, this prints the numbers (benchmarks/README.md).

    python benchmarks/regrid.py [--repeat 3] [--timeout 240] [--skip-xarray-regrid] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bias_correction.config import Region
from bias_correction.grid.grids import RegularGrid, target_grid
from bias_correction.grid.regrid import Regridder
from bias_correction.grid.weights import (
    build_weights,
    clear_memory_cache,
    get_weights,
    save_weights,
)

DAY = dt.date(2021, 4, 20)
GRID = target_grid(Region(name="globe", lat_min=-90, lat_max=90, lon_min=0, lon_max=360), 0.08)
OUT_MB = 2250 * 4500 * 4 / 1e6  # one global float32 output field


# ------------------------------------------------------------------------------------ inputs
def oisst_day() -> xr.Dataset:
    """One OISST-like global day from the twin (0.25 deg, NaN on land), float32 like the file."""
    from bias_correction.testing.twin import Twin

    lat = np.round(-89.875 + 0.25 * np.arange(720), 6)
    lon = np.round(0.125 + 0.25 * np.arange(1440), 6)
    sst = Twin().oisst(DAY, lat, lon)["sst"].astype(np.float32)
    return xr.Dataset({"sst": (("lat", "lon"), sst)}, coords={"lat": lat, "lon": lon})


def hycom_field() -> xr.Dataset:
    """A global GLBy0.08 surface field (4251 x 4500): analytic climatology + eddies, twin land mask."""
    from bias_correction.testing.twin import Twin

    lat = np.round(-80 + 0.04 * np.arange(4251), 6)
    lon = np.round(0.08 * np.arange(4500), 6)
    rlat, rlon = np.deg2rad(lat), np.deg2rad(lon)
    sst = (28.5 - 27.0 * np.sin(rlat) ** 2).astype(np.float32)[:, None] + np.zeros(lon.size, np.float32)
    sst += (0.5 * np.cos(rlat * 35)).astype(np.float32)[:, None] * np.sin(rlon * 49).astype(np.float32)[None, :]
    sst[Twin().land(lat, lon)] = np.nan
    return xr.Dataset({"sst": (("lat", "lon"), sst)}, coords={"lat": lat, "lon": lon})


# ---------------------------------------------------------------------------- isolation
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e3
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(case: str, src_file: str, out_file: str, kwargs: dict[str, Any], queue: Any) -> None:
    """Load the inputs, reset the peak-RSS mark, run one case; report wall time and the peak
    RSS above the RSS with the inputs loaded."""
    try:
        z = np.load(src_file)
        ds = xr.Dataset({"sst": (("lat", "lon"), z["sst"])}, coords={"lat": z["lat"], "lon": z["lon"]})
        fn = CASES[case](ds, GRID, **kwargs)
        base = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM (Linux >= 4.0)
            fh.write("5")
        res = fn()
        peak = _status_mb("VmHWM") - base
        out = res.pop("out", None)
        if out is not None:
            np.save(out_file, np.asarray(out, dtype=np.float32))
        queue.put({**res, "peak_mb": peak})
    except BaseException as exc:  # noqa: BLE001  (report any failure, never hang the parent)
        queue.put({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)})


def isolated(case: str, src_file: Path, out_file: Path, kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one case in a fresh (spawned) interpreter, so its memory and threads are its own."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(case, str(src_file), str(out_file), kwargs, q))
    p.start()
    try:
        res = q.get(timeout=timeout)
    except queue_mod.Empty:
        res = {"error": f"timed out after {timeout:.0f} s"}
    p.join(10)
    if p.is_alive():
        p.kill()
        p.join()
    return res


# -------------------------------------------------------------------------------- cases
def case_sstbc(ds: xr.Dataset, grid: RegularGrid, method: str, cache_dir: str, repeat: int) -> Callable[[], dict]:
    def run() -> dict[str, Any]:
        clear_memory_cache()
        r = Regridder(grid, method=method, cache_dir=Path(cache_dir))
        t0 = time.perf_counter()
        r(ds["sst"])  # weights from the disk cache written before; computes the mask normaliser
        first = time.perf_counter() - t0
        wall, out = _median_time(lambda: r(ds["sst"]).values, repeat)
        return {"wall_s": wall, "first_s": first, "out": out}
    return run


def case_sstbc_dask(ds: xr.Dataset, grid: RegularGrid, days: int) -> Callable[[], dict]:
    """``days`` days produced lazily one per chunk (as from files opened with dask) and reduced as
    they stream: peak memory must not grow with the number of days."""
    def run() -> dict[str, Any]:
        import dask
        import dask.array as dsa

        clear_memory_cache()
        base = ds["sst"].values

        def one_day(i: int) -> np.ndarray:
            return (base + np.float32(0.01 * i))[None]  # a fresh array per day, like a file read

        parts = [dsa.from_delayed(dask.delayed(one_day)(i), shape=(1, *base.shape), dtype=np.float32)
                 for i in range(days)]
        stack = xr.DataArray(dsa.concatenate(parts), dims=("day", "lat", "lon"),
                             coords={"day": np.arange(days), "lat": ds["lat"].values, "lon": ds["lon"].values})
        r = Regridder(grid)
        r.weights_for(ds["lat"].values, ds["lon"].values)
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            means = r(stack).mean(("lat", "lon")).compute()
        wall = time.perf_counter() - t0
        assert np.isfinite(means.values).all()
        return {"wall_s": wall / days,
                "note": f"{days} days made inside the graph, 1 per chunk, 2 threads: peak holds 2 x (input + output)"}
    return run


def _median_time(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out  # do not hold two outputs at once
        out = None
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def case_interp(ds: xr.Dataset, grid: RegularGrid, repeat: int) -> Callable[[], dict]:
    def run() -> dict[str, Any]:
        ds.interp(lat=grid.lat[:4], lon=grid.lon[:4], method="linear")  # import scipy.interpolate
        wall, out = _median_time(lambda: ds.interp(lat=grid.lat, lon=grid.lon, method="linear")["sst"].values,
                                 repeat)
        return {"wall_s": wall, "out": out}
    return run


def case_xrr(ds: xr.Dataset, grid: RegularGrid, method: str, repeat: int) -> Callable[[], dict]:
    def run() -> dict[str, Any]:
        import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

        target = xr.Dataset(coords={"lat": ("lat", grid.lat, {"units": "degrees_north"}),
                                    "lon": ("lon", grid.lon, {"units": "degrees_east"})})

        def once() -> np.ndarray:
            if method == "linear":
                res = ds.regrid.linear(target)
            else:
                res = ds.regrid.conservative(target, latitude_coord="lat")
            return res["sst"].transpose("lat", "lon").values

        wall, out = _median_time(once, repeat)
        return {"wall_s": wall, "out": out}
    return run


CASES: dict[str, Callable[..., Callable[[], dict]]] = {
    "xarray interp (scipy linear)": case_interp,
    "sstbc bilinear": lambda ds, grid, **kw: case_sstbc(ds, grid, "bilinear", **kw),
    "sstbc conservative": lambda ds, grid, **kw: case_sstbc(ds, grid, "conservative", **kw),
    "sstbc bilinear, dask stream": case_sstbc_dask,
    "xarray-regrid linear": lambda ds, grid, **kw: case_xrr(ds, grid, "linear", **kw),
    "xarray-regrid conservative": lambda ds, grid, **kw: case_xrr(ds, grid, "conservative", **kw),
}


# --------------------------------------------------------------------------------- main
def _describe(out: np.ndarray, grid: RegularGrid) -> str:
    """Where the NaNs are: all-NaN rows north of 89N (Arctic ocean: a pole gap), all-NaN columns
    (a seam gap), and the NaN share (land, plus any gaps)."""
    nan = ~np.isfinite(out)
    polar = int(nan[grid.lat > 89].all(axis=1).sum())
    return f"{polar} NaN rows >89N, {int(nan.all(axis=0).sum())} NaN cols, {nan.mean() * 100:.2f}% NaN"


def _max_diff(a: np.ndarray, b: np.ndarray) -> float | None:
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case (the median is reported)")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per case before it is reported as failed")
    ap.add_argument("--dask-days", type=int, default=8)
    ap.add_argument("--skip-xarray-regrid", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    grid = GRID
    print(f"target: global 0.08 deg, {grid.nlat} x {grid.nlon}, one float32 field = {OUT_MB:.1f} MB", flush=True)
    t0 = time.perf_counter()
    inputs = {"OISST 0.25": oisst_day(), "HYCOM GLBy0.08": hycom_field()}
    print(f"inputs built in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v['sst'].shape} {np.isnan(v['sst'].values).mean() * 100:.0f}% land"
                      for k, v in inputs.items()), flush=True)

    names = ["xarray interp (scipy linear)", "sstbc bilinear", "sstbc conservative", "sstbc bilinear, dask stream"]
    if not args.skip_xarray_regrid:
        names += ["xarray-regrid linear", "xarray-regrid conservative"]
    results: list[dict[str, Any]] = []
    builds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sstbc-bench-") as tmp_s:
        tmp = Path(tmp_s)
        cache = tmp / "weights"
        for s_i, (src_name, ds) in enumerate(inputs.items()):
            lat, lon = ds["lat"].values, ds["lon"].values
            src_file = tmp / f"src{s_i}.npz"
            np.savez(src_file, lat=lat, lon=lon, sst=ds["sst"].values)
            # weight build (cold), cache write and cache read, timed apart from application
            for method in ("bilinear", "conservative"):
                clear_memory_cache()
                t0 = time.perf_counter()
                w = build_weights(lat, lon, grid, method)
                t_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                path = save_weights(w, cache)
                t_save = time.perf_counter() - t0
                clear_memory_cache()
                t0 = time.perf_counter()
                get_weights(lat, lon, grid, method, cache)
                t_load = time.perf_counter() - t0
                clear_memory_cache()
                builds.append({"source": src_name, "method": method, "build_s": t_build, "save_s": t_save,
                               "load_s": t_load, "file_kb": path.stat().st_size / 1e3,
                               "nnz_lat": int(w.lat.nnz), "nnz_lon": int(w.lon.nnz)})
            outs: dict[str, Path] = {}
            for c_i, name in enumerate(names):
                kwargs: dict[str, Any] = {"repeat": args.repeat}
                if name in ("sstbc bilinear", "sstbc conservative"):
                    kwargs["cache_dir"] = str(cache)
                if name.endswith("dask stream"):
                    kwargs = {"days": args.dask_days}
                out_file = tmp / f"out{s_i}-{c_i}.npy"
                t0 = time.perf_counter()
                res = isolated(name, src_file, out_file, kwargs, args.timeout)
                res.update(source=src_name, case=name)
                results.append(res)
                if out_file.exists():
                    outs[name] = out_file
                status = res.get("error") or (f"{res['wall_s']:.3f} s, peak {res['peak_mb']:.0f} MB"
                                              + (f", first call {res['first_s']:.3f} s" if "first_s" in res else ""))
                print(f"  {src_name:15s} {name:30s} {status}   ({time.perf_counter() - t0:.0f} s in all)", flush=True)
            # values: against interp, and against xarray-regrid with the same method
            ref = np.load(outs[names[0]]) if names[0] in outs else None
            ref_r = next((r for r in results if r["source"] == src_name and r["case"] == names[0]), {})
            for r in results:
                if r["source"] != src_name or "error" in r:
                    continue
                if r["case"] in outs:
                    out = np.load(outs[r["case"]])
                    r["nan"] = _describe(out, grid)
                    if ref is not None:
                        r["max_abs_diff_vs_interp"] = _max_diff(out, ref)
                    twin = {"sstbc bilinear": "xarray-regrid linear",
                            "sstbc conservative": "xarray-regrid conservative"}.get(r["case"])
                    if twin in outs:
                        r["max_abs_diff_vs_xarray_regrid"] = _max_diff(out, np.load(outs[twin]))
                if "wall_s" in ref_r:
                    r["speedup_vs_interp"] = ref_r["wall_s"] / r["wall_s"]
                    r["peak_vs_interp"] = r["peak_mb"] / ref_r["peak_mb"] if ref_r["peak_mb"] > 0 else float("nan")

    print()
    print(f"weights (built once, then cached on disk; target {grid.nlat} x {grid.nlon})")
    print("| source | method | build s | save s | load s | file kB | nnz (lat + lon) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for b in builds:
        print(f"| {b['source']} | {b['method']} | {b['build_s']:.3f} | {b['save_s']:.3f} | {b['load_s']:.3f} "
              f"| {b['file_kb']:.0f} | {b['nnz_lat']} + {b['nnz_lon']} |")
    print()
    print(f"per day once weights exist (median of {args.repeat + 1}; peak MB = peak RSS beyond the inputs; "
          f"output = {OUT_MB:.1f} MB)")
    print("| source | method | wall s | speed-up vs interp | peak MB | peak / output | peak vs interp "
          "| max abs diff vs interp | vs xarray-regrid same method | NaN |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")

    def fmt(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    for r in results:
        if "error" in r:
            print(f"| {r['source']} | {r['case']} | failed: {r['error']} | | | | | | | |")
            continue
        print(f"| {r['source']} | {r['case']} | {r['wall_s']:.3f} | {fmt(r.get('speedup_vs_interp'), '.1f')}x "
              f"| {r['peak_mb']:.0f} | {r['peak_mb'] / OUT_MB:.2f}x | {fmt(r.get('peak_vs_interp'), '.2f')}x "
              f"| {fmt(r.get('max_abs_diff_vs_interp'), '.1e')} | {fmt(r.get('max_abs_diff_vs_xarray_regrid'), '.1e')} "
              f"| {r.get('nan', r.get('note', ''))} |")
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'}), "
          f"Python {platform.python_version()}, numpy {np.__version__}, scipy {_version('scipy')}, "
          f"xarray {xr.__version__}, xarray-regrid {_version('xarray-regrid')}; {dt.date.today()}; "
          f"total {time.perf_counter() - t_start:.0f} s; load average {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    if args.json:
        args.json.write_text(json.dumps({"builds": builds, "results": results}, indent=1, default=str))
    return 0 if not any("error" in r for r in results if r["case"].startswith("sstbc")) else 1


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
