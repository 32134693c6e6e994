"""Inference benchmark: ONNX Runtime vs PyTorch eager on the CPU, side by side (and CUDA where active).

Cases (same inputs for every backend, all leads of one run in one batch):

* ``default``: one forecast run of the default region -- 7 leads x T=4 x 50x50, ConvGRU-SA
  (features 8, hidden 16, kv_pool 4: the default training configuration);
* ``1000x1000``: one run (7 leads x T=4) on a 1000x1000 domain with the purely convolutional ConvGRU
  run on the whole domain (dynamic H/W graph);
* ``1000x1000-tiled`` (``--tiled``): the ConvGRU-SA on 1000x1000 as blended 50x50 tiles (the
  production path for attention models on domains larger than their training tile). Slow on 2 cores.

Weights are random (latency does not depend on them). Each measurement runs in a fresh process
(spawn) so peak memory is per backend: ``rss`` = peak RSS growth over the process baseline after
imports and model load (Linux: VmHWM after resetting it with /proc/self/clear_refs; else
ru_maxrss), ``py`` = tracemalloc peak of Python-level allocations. Latency:
median of ``--repeat`` runs after ``--warmup`` runs; torch and ORT get the same thread count.

    python benchmarks/inference.py [--repeat 10] [--threads 2] [--cases default,1000x1000] [--tiled] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bias_correction import zoo  # noqa: E402  (after the sys.path line: runs from a checkout)

#: The default model (attention: tiled on large domains) and the first purely convolutional one.
_ATTENTION = zoo.DEFAULT_MODEL
_CONV = next(s.id for s in zoo.specs(zoo.GRIDDED) if not s.domain_dependent)
CASES = {
    "default": {"arch": _ATTENTION, "shape": (50, 50), "kw": {"features": 8, "hidden": 16, "kv_pool": 4}},
    "1000x1000": {"arch": _CONV, "shape": (1000, 1000), "kw": {"features": 8, "hidden": 16}},
    "1000x1000-tiled": {"arch": _ATTENTION, "shape": (50, 50), "domain": (1000, 1000),
                        "kw": {"features": 8, "hidden": 16, "kv_pool": 4}},
}
T, LEADS, VMIN, VMAX = 4, 7, 20.0, 32.0


def _model(case: dict[str, Any]) -> Any:
    import torch

    from bias_correction.training.architectures import WRAPPER_CHANNELS, CorrectionModule, build_model

    torch.manual_seed(0)
    m = CorrectionModule(build_model(case["arch"], in_channels=WRAPPER_CHANNELS, seq_len=T, **case["kw"]), VMIN, VMAX)
    with torch.no_grad():
        torch.nn.init.normal_(m.core.head.weight, std=0.05)
    return m.eval()


def _inputs(shape: tuple[int, int]) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(1)
    h, w = shape
    x = (26 + rng.standard_normal((LEADS, T, h, w))).astype(np.float32)
    x[:, :, : h // 5, : w // 4] = np.nan  # land
    return x, np.arange(1, LEADS + 1, dtype=np.float32)


def _export(case_name: str, workdir: str) -> str:
    from bias_correction.training.export import _export_onnx

    case = CASES[case_name]
    path = Path(workdir) / f"{case_name}.onnx"
    if not path.exists():
        # Export at a small tile: the graph has dynamic H/W when the exporter allows it.
        h, w = (48, 56) if case["arch"] == _CONV else case["shape"]
        _export_onnx(_model(case), path, T, h, w, VMIN, VMAX)
    return str(path)


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: load one backend, warm up, time, report latency and peak memory."""
    import numpy as np
    import torch

    torch.set_num_threads(job["threads"])
    case = CASES[job["case"]]
    domain = case.get("domain", case["shape"])
    x, lead = _inputs(domain)
    backend = job["backend"]
    if backend == "torch-eager":
        model = _model(case)

        def run_tile(xb: Any, lb: Any) -> Any:
            with torch.no_grad():
                return model(torch.from_numpy(xb), torch.from_numpy(lb)).numpy()
    else:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = job["threads"]
        so.log_severity_level = 3
        if backend == "ort-cuda":
            from bias_correction.correction.session import _CUDA_OPTIONS

            sess = ort.InferenceSession(job["onnx"], so, providers=[("CUDAExecutionProvider", _CUDA_OPTIONS)])
            if "CUDAExecutionProvider" not in sess.get_providers():
                return {"backend": backend, "skipped": "CUDA not active"}
            out_name = sess.get_outputs()[0].name

            def run_tile(xb: Any, lb: Any) -> Any:  # IO binding, as the runtime does on CUDA
                b = sess.io_binding()
                b.bind_ortvalue_input("sst", ort.OrtValue.ortvalue_from_numpy(xb, "cuda", 0))
                b.bind_ortvalue_input("lead_days", ort.OrtValue.ortvalue_from_numpy(lb, "cuda", 0))
                b.bind_output(out_name, "cuda", 0)
                sess.run_with_iobinding(b)
                return b.copy_outputs_to_cpu()[0]
        else:
            sess = ort.InferenceSession(job["onnx"], so, providers=["CPUExecutionProvider"])

            def run_tile(xb: Any, lb: Any) -> Any:
                return sess.run(None, {"sst": xb, "lead_days": lb})[0]

    if "domain" in case:
        from bias_correction.correction.tiling import run_tiled

        def run() -> Any:
            return run_tiled(run_tile, x, lead, case["shape"], margin=6, ramp=6, max_batch=64)
    else:
        def run() -> Any:
            return run_tile(x, lead)

    base_rss = _reset_peak_rss()
    tracemalloc.start()
    out = None
    for _ in range(job["warmup"]):
        out = run()
    times = []
    for _ in range(job["repeat"]):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _peak_rss_kib()
    checksum = float(np.nansum(out, dtype=np.float64))
    return {"backend": backend, "median_s": statistics.median(times), "min_s": min(times),
            "rss_growth_mib": (peak_rss - base_rss) / 1024.0, "peak_rss_mib": peak_rss / 1024.0,
            "py_peak_mib": py_peak / 2 ** 20, "checksum": checksum, "runs": len(times)}


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS counter (Linux: clear_refs 5) and return the current RSS in KiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kib("VmRSS") or 0


def _peak_rss_kib() -> int:
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cuda_available() -> bool:
    try:
        import onnxruntime as ort
        import torch

        return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cases", default="default,1000x1000")
    ap.add_argument("--tiled", action="store_true", help="add the 1000x1000 tiled ConvGRU-SA case")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c] + (["1000x1000-tiled"] if args.tiled else [])
    ctx = mp.get_context("spawn")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sstbc-bench-") as work:
        for name in cases:
            onnx_path = _export(name, work)
            backends = ["torch-eager", "ort-cpu"] + (["ort-cuda"] if _cuda_available() else [])
            row: dict[str, Any] = {"case": name, "arch": CASES[name]["arch"],
                                   "domain": list(CASES[name].get("domain", CASES[name]["shape"])), "leads": LEADS,
                                   "T": T, "threads": args.threads}
            for b in backends:
                heavy = name != "default"
                job = {"case": name, "backend": b, "onnx": onnx_path, "threads": args.threads,
                       "repeat": max(2, args.repeat // 3) if heavy else args.repeat, "warmup": 1 if heavy else args.warmup}
                with ctx.Pool(1) as pool:
                    row[b] = pool.apply(_measure, (job,))
            row["speedup_ort_vs_eager_cpu"] = row["torch-eager"]["median_s"] / row["ort-cpu"]["median_s"]
            results.append(row)
            if not args.json:
                e, o = row["torch-eager"], row["ort-cpu"]
                print(f"{name:16s} {row['arch']:10s} {row['domain'][0]}x{row['domain'][1]}, {LEADS} leads x T={T}, "
                      f"{args.threads} threads")
                for k in backends:
                    r = row[k]
                    if "skipped" in r:
                        print(f"  {k:12s} skipped: {r['skipped']}")
                        continue
                    print(f"  {k:12s} {1000 * r['median_s']:9.1f} ms/run (min {1000 * r['min_s']:.1f})   "
                          f"peak RSS +{r['rss_growth_mib']:7.1f} MiB   python peak {r['py_peak_mib']:6.1f} MiB")
                print(f"  ORT CPU vs eager: {row['speedup_ort_vs_eager_cpu']:.2f}x faster "
                      f"(|checksum diff| {abs(e['checksum'] - o['checksum']):.3g})")
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
