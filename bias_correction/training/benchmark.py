"""The model benchmark (the paper's Table 1 on our twin data): every model, one dataset, one budget.

``run_benchmark`` builds the twin dataset in-process (no HTTP: :class:`Twin` daily-mean HYCOM per run and
lead, final OISST per day, on the product grid with the twin's land mask), splits the samples by valid
day into train / validation / test with gaps of >= T days, trains every gridded model with the same
:class:`Training` budget (epochs, batch, lr, patience, seed) through ``train_model`` (early stopping on
validation), fits the statistical baselines and the tree models on the same training samples, and
scores everything on the test samples against OISST: MSE, RMSE, MAE, MAPE, improvement % over raw
HYCOM, per lead day and overall, plus parameter count, training time and inference time per forecast
run (7 leads in one call). Reference rows: raw HYCOM, persistence (OISST of the day before the run,
the latest analysis at forecast time) and the twin's oracle floor (RMSE of the part of the HYCOM error
that no correction can predict). Writes ``results.json``, ``results.md`` and ``benchmark.png``.
Results per model are cached in ``out_dir/rows/``; ``resume=True`` reuses them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bias_correction.inputs import OISST_LATEST, SURF_EL
from bias_correction import zoo

if TYPE_CHECKING:  # heavy imports (torch, xarray) stay lazy: the CLI builds its parser from this module
    import torch

    from bias_correction.grid.grids import RegularGrid
    from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)

GRIDDED = list(zoo.ids(zoo.GRIDDED))
STATISTICAL = list(zoo.ids(zoo.BASELINE))
TREES = list(zoo.ids(zoo.TABULAR))
ALL_MODELS = GRIDDED + TREES + STATISTICAL
REFERENCE = ["raw-hycom", "persistence", "oracle-floor"]
LABELS = {**{s.id: s.label for s in zoo.MODELS},
          "raw-hycom": "raw HYCOM", "persistence": "persistence (latest OISST: run day - 1)",
          "oracle-floor": "oracle floor (twin)"}


@dataclass
class BenchConfig:
    # Defaults = the configuration measured in benchmarks/README.md (4 months of runs; see there for the
    # wall time on 2 cores). A whole year (end 2021-12-31) has ~3x the samples and does not fit in 60 min.
    start: dt.date = dt.date(2021, 1, 1)  # first run
    end: dt.date = dt.date(2021, 4, 30)  # last run
    leads: int = 7
    seq_len: int = 4
    features: int = 8
    hidden: int = 16
    epochs: int = 8
    batch_size: int = 4
    learning_rate: float = 1e-3  # the paper's (models.md 12)
    patience: int = 4
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    models: list[str] = field(default_factory=lambda: list(ALL_MODELS))
    tree_rows: int = 200_000
    lgbm_estimators: int = 300
    rf_estimators: int = 60
    rf_max_depth: int = 14
    export: bool = False  # also export gridded models to ONNX (parity-checked) and time ORT inference
    oisst_lag_days: int = 1  # the latest OISST at forecast time (aux input and persistence): day of run - this
    #: Auxiliary inputs per model; a model not listed gets config.default_aux_inputs(model).
    aux_inputs: dict[str, list[str]] = field(default_factory=dict)
    arch_overrides: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {s.id: dict(s.bench_overrides) for s in zoo.MODELS if s.bench_overrides})


# ----------------------------------------------------------------------------------------------- data
def twin_dataset(start: dt.date, end: dt.date, leads: int = 7, seq_len: int = 4, *, twin: Any = None,
                 region: Any = None, step: float = 0.08, preliminary: bool = False) -> dict[str, Any]:
    """HYCOM (run, lead, lat, lon), OISST (time, lat, lon), mask and the unpredictable error, in degC.

    ``twin`` (default ``Twin()``) and ``region`` (default ``Region()``) choose the synthetic ocean and the
    box; ``preliminary=True`` adds ``oisst_preliminary``: the as-issued analyses of the same days (what
    operations feed as inputs at run time; ``oisst`` stays the final version, the verifying target).
    """
    import pandas as pd
    import xarray as xr

    from bias_correction.config import Region
    from bias_correction.grid.grids import target_grid
    from bias_correction.testing.twin import Twin

    tw = Twin() if twin is None else twin
    grid = target_grid(Region() if region is None else region, step)
    lat, lon = grid.lat, grid.lon
    ocean = ~np.asarray(tw.land(lat, lon), dtype=bool)
    runs = pd.date_range(start, end, freq="D")
    hy = np.empty((len(runs), leads, grid.nlat, grid.nlon), np.float32)
    unpred = np.empty_like(hy)
    with_ssh = hasattr(tw, "hycom_daily_surf_el")
    ssh = np.empty_like(hy) if with_ssh else None
    for i, r in enumerate(runs):
        run = dt.datetime(r.year, r.month, r.day, 12)
        for k in range(1, leads + 1):
            d = tw.hycom_daily_error(run, k, lat, lon)
            hy[i, k - 1] = d["hycom"]
            unpred[i, k - 1] = d["unpredictable"]
            if ssh is not None:
                ssh[i, k - 1] = tw.hycom_daily_surf_el(run, k, lat, lon)
    # From the latest analysis of the first window's first run (aux input, persistence) to the last valid day.
    first = pd.Timestamp(start) - pd.Timedelta(days=seq_len - 1 + 7)
    days = pd.date_range(first, pd.Timestamp(end) + pd.Timedelta(days=leads))
    oi = np.stack([tw.oisst(d.date(), lat, lon)["sst"] for d in days]).astype(np.float32)
    coords = {"lat": lat, "lon": lon}
    extra: dict[str, Any] = {}
    if preliminary:
        prelim = np.stack([tw.oisst(d.date(), lat, lon, preliminary=True)["sst"] for d in days]).astype(np.float32)
        extra["oisst_preliminary"] = xr.DataArray(prelim, dims=("time", "lat", "lon"),
                                                  coords={"time": days.values, **coords})
    return {**extra,
        "grid": grid,
        "hycom": xr.DataArray(hy, dims=("run", "lead", "lat", "lon"),
                              coords={"run": (runs + pd.Timedelta(hours=12)).values,
                                      "lead": np.arange(1, leads + 1), **coords}),
        "oisst": xr.DataArray(oi, dims=("time", "lat", "lon"), coords={"time": days.values, **coords}),
        "mask": xr.DataArray(ocean, dims=("lat", "lon"), coords=coords),
        # same-run auxiliary fields the twin provides, by input name (build_samples' run_fields)
        "run_fields": {} if ssh is None else {
            SURF_EL.name: xr.DataArray(ssh, dims=("run", "lead", "lat", "lon"),
                                       coords={"run": (runs + pd.Timedelta(hours=12)).values,
                                               "lead": np.arange(1, leads + 1), **coords})},
        "unpredictable": unpred, "run_days": runs.values.astype("datetime64[D]"),
    }


def split_three(samples: SampleSet, val_fraction: float, test_fraction: float, gap_days: int) -> list[SampleSet]:
    """Chronological train / validation / test by valid day, >= gap_days empty days between them."""
    from bias_correction.training.dataset import split_by_valid_date

    days = np.sort(np.unique(samples.valid))
    n = len(days)
    b_test = days[round(n * (1 - test_fraction))]
    b_val = days[round(n * (1 - test_fraction - val_fraction))]
    parts = split_by_valid_date(samples, [b_val, b_test], gap_days=gap_days)
    if any(len(p) == 0 for p in parts):
        from bias_correction.errors import ConfigError

        raise ConfigError(f"the split leaves {[len(p) for p in parts]} train/val/test samples; use a longer period")
    return parts


# -------------------------------------------------------------------------------------------- metrics
def scores(pred: np.ndarray, y: np.ndarray, lead: np.ndarray, raw_rmse: dict[str, float] | None = None) -> dict[str, Any]:
    """MSE, RMSE, MAE, MAPE (%) overall and per lead over cells finite in both; improvement vs raw."""
    def one(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
        ok = np.isfinite(p) & np.isfinite(t)
        d = (p[ok] - t[ok]).astype(np.float64)
        mse = float(np.mean(d * d))
        return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(d))),
                "mape": float(100.0 * np.mean(np.abs(d) / np.abs(t[ok]))), "n": int(ok.sum())}
    out = {"overall": one(pred, y), "per_lead": {str(int(k)): one(pred[lead == k], y[lead == k])
                                                 for k in np.unique(lead)}}
    if raw_rmse is not None:
        for key, s in [("overall", out["overall"]), *out["per_lead"].items()]:
            r = raw_rmse[key]
            s["improvement_pct"] = 100.0 * (r - s["rmse"]) / r
    return out


def _raw_rmse(sc: dict[str, Any]) -> dict[str, float]:
    return {"overall": sc["overall"]["rmse"], **{k: v["rmse"] for k, v in sc["per_lead"].items()}}


# ------------------------------------------------------------------------------------------- models
def _predict_gridded(model: torch.nn.Module, s: SampleSet, batch: int = 16) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(s), batch):
            aux = torch.from_numpy(s.aux[i:i + batch]) if s.aux is not None else None
            out.append(model(torch.from_numpy(s.x[i:i + batch]), torch.from_numpy(s.lead[i:i + batch]).float(),
                             aux).numpy())
    return np.concatenate(out)


def _time_per_run(fn: Any, s: SampleSet, leads: int, repeats: int = 3) -> float:
    """Median seconds for one forecast run: the 7 lead samples of one run in one call."""
    last_run = s.run.max()
    sel = np.flatnonzero(s.run == last_run)[:leads]
    one = s.subset(sel)
    fn(one)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(one)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _gridded(name: str, cfg: BenchConfig, train: SampleSet, val: SampleSet, test: SampleSet, grid: RegularGrid,
             out_dir: Path, progress: bool) -> dict[str, Any]:
    import torch

    from bias_correction.config import Training
    from bias_correction.training.train import load_checkpoint, train_model

    tcfg = Training(model=name, seq_len=cfg.seq_len, features=cfg.features, hidden=cfg.hidden, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, patience=cfg.patience, seed=cfg.seed,
                    aux_inputs=list(train.aux_names))
    res = train_model(train, val, tcfg, grid=grid, mask_hash="0" * 64, data_info={"source": "twin benchmark"},
                      out_dir=out_dir / "checkpoints" / name, progress=progress,
                      arch_kwargs=cfg.arch_overrides.get(name))
    model, meta = load_checkpoint(res.checkpoint)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pred = _predict_gridded(model, test)
    row: dict[str, Any] = {"n_parameters": res.n_parameters, "train_seconds": res.train_seconds,
                           "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
                           "arch_kwargs": meta["arch_kwargs"],
                           "infer_seconds_per_run": _time_per_run(lambda s: _predict_gridded(model, s), test, cfg.leads),
                           "infer_runtime": "torch eager (CPU)", "checkpoint": str(res.checkpoint)}
    if cfg.export:
        import onnxruntime as ort

        from bias_correction.correction.manifest import load_manifest
        from bias_correction.training.export import export_package

        pkg = export_package(res.checkpoint, out_dir / "models", name.replace("-", "_"), "bench")
        man = load_manifest(pkg)
        sess = ort.InferenceSession(str(man.model_path), providers=["CPUExecutionProvider"])

        def ort_pred(s: SampleSet) -> np.ndarray:
            feed = {"sst": s.x.astype(np.float32), "lead_days": s.lead.astype(np.float32)}
            if s.aux is not None:
                feed["aux"] = s.aux.astype(np.float32)
            return sess.run(None, feed)[0]
        row.update({"onnx_parity_max_abs_degC": man.parity["cpu"]["max_abs_diff_degC"],
                    "torchscript_parity_max_abs_degC": man.parity["torchscript"]["max_abs_diff_degC"],
                    "infer_seconds_per_run": _time_per_run(ort_pred, test, cfg.leads),
                    "infer_runtime": "ONNX Runtime CPU", "package": str(pkg)})
    return {"pred": pred, **row}


def _tree(name: str, cfg: BenchConfig, train: SampleSet, val: SampleSet, test: SampleSet, grid: RegularGrid,
          out_dir: Path) -> dict[str, Any]:
    from bias_correction.training.trees import TreeModel

    kw = {arg: getattr(cfg, attr) for arg, attr in zoo.get(name).bench_params.items()}
    t0 = time.perf_counter()
    m = TreeModel(name, max_rows=cfg.tree_rows, seed=cfg.seed, **kw).fit(train, val, lat=grid.lat, lon=grid.lon)
    secs = time.perf_counter() - t0
    pred = m.predict(test)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    info = m.export_onnx(out_dir / "models" / f"{name}.onnx", val)
    row = {"n_parameters": m.n_parameters(), "parameter_unit": "tree nodes", "train_seconds": secs,
           "train_rows": m.n_rows, "export": info}
    if info["runtime"] == "onnx":
        import onnxruntime as ort

        m.onnx_session = ort.InferenceSession(str(out_dir / "models" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    row["infer_seconds_per_run"] = _time_per_run(m.predict, test, cfg.leads)
    row["infer_runtime"] = "ONNX Runtime CPU" if info["runtime"] == "onnx" else "native"
    return {"pred": pred, **row}


def _statistical(name: str, train: SampleSet, test: SampleSet, leads: int) -> dict[str, Any]:
    from bias_correction.training.baselines import build_baseline

    t0 = time.perf_counter()
    b = build_baseline(name).fit(train)
    secs = time.perf_counter() - t0
    pred = b.predict(test)
    return {"pred": pred, "n_parameters": None, "train_seconds": secs,
            "infer_seconds_per_run": _time_per_run(b.predict, test, leads), "infer_runtime": "numpy"}


# ------------------------------------------------------------------------------------------- report
def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    leads = sorted({int(k) for r in rows.values() for k in r["scores"]["per_lead"]})
    lines = ["| model | MSE | RMSE | MAE | MAPE % | improvement % | params | train s | infer s / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        o = r["scores"]["overall"]
        lines.append(f"| {LABELS.get(name, name)} | {o['mse']:.3f} | {o['rmse']:.3f} | {o['mae']:.3f} | "
                     f"{o['mape']:.2f} | {_fmt(o.get('improvement_pct'), 1)} | {_fmt(r.get('n_parameters'))} | "
                     f"{_fmt(r.get('train_seconds'), 0)} | {_fmt(r.get('infer_seconds_per_run'), 4)} |")
    lines += ["", "RMSE (°C) by lead day:", "",
              "| model | " + " | ".join(f"d{k}" for k in leads) + " |", "|---|" + "---|" * len(leads)]
    for name, r in rows.items():
        pl = r["scores"]["per_lead"]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(f"{pl[str(k)]['rmse']:.3f}" for k in leads) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], maps: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [n for n in maps]
    ncol = 4
    nmap = len(names)
    nrow = 1 + math.ceil(nmap / ncol)
    fig = plt.figure(figsize=(4 * ncol, 3.4 * nrow))
    ax = fig.add_subplot(nrow, 1, 1)
    for name, r in rows.items():
        pl = r["scores"]["per_lead"]
        ks = sorted(int(k) for k in pl)
        ax.plot(ks, [pl[str(k)]["rmse"] for k in ks], marker="o", label=LABELS.get(name, name),
                lw=2.5 if name == zoo.DEFAULT_MODEL else 1.2, ls="--" if name in REFERENCE else "-")
    ax.set_xlabel("lead day"); ax.set_ylabel("RMSE vs OISST (°C)"); ax.set_title("Test-period RMSE by lead")
    ax.legend(fontsize=7, ncol=3); ax.grid(alpha=0.3)
    vmax = float(np.nanmax(maps["raw-hycom"])) if "raw-hycom" in maps else None
    for i, name in enumerate(names):
        a = fig.add_subplot(nrow, ncol, ncol + 1 + i)
        im = a.imshow(maps[name], origin="lower", vmin=0, vmax=vmax, cmap="magma")
        a.set_title(f"{LABELS.get(name, name)}\nRMSE map", fontsize=8); a.set_xticks([]); a.set_yticks([])
        fig.colorbar(im, ax=a, shrink=0.8, label="°C")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def run_benchmark(cfg: BenchConfig, out_dir: Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    import torch

    from bias_correction.training.dataset import build_samples

    t_all = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "rows").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    from bias_correction.config import default_aux_inputs
    from bias_correction.errors import ConfigError

    unknown = set(cfg.models) - set(ALL_MODELS)
    if unknown:
        raise ConfigError(f"unknown benchmark models {sorted(unknown)}; known: {', '.join(ALL_MODELS)}")
    t0 = time.perf_counter()
    data = twin_dataset(cfg.start, cfg.end, cfg.leads, cfg.seq_len)
    available = (OISST_LATEST.name, *data["run_fields"])
    samples = build_samples(data["hycom"], data["oisst"], data["mask"], cfg.seq_len, aux_inputs=available,
                            oisst_lag_days=cfg.oisst_lag_days, **data["run_fields"])
    train, val, test = split_three(samples, cfg.val_fraction, cfg.test_fraction, gap_days=cfg.seq_len)
    data_seconds = time.perf_counter() - t0
    grid = data["grid"]
    LOG.info("twin dataset: %d samples (train %d, val %d, test %d) in %.0f s", len(samples), len(train), len(val),
             len(test), data_seconds)

    raw = test.x[:, -1]
    raw_sc = scores(raw, test.y, test.lead)
    raw_r = _raw_rmse(raw_sc)
    rows: dict[str, dict[str, Any]] = {}
    maps: dict[str, np.ndarray] = {}

    def add(name: str, pred: np.ndarray, extra: dict[str, Any]) -> None:
        rows[name] = {"scores": scores(pred, test.y, test.lead, raw_r), **extra}
        d = pred - test.y
        maps[name] = np.sqrt(np.nanmean(d * d, axis=0))

    add("raw-hycom", raw, {"n_parameters": None, "train_seconds": None, "infer_seconds_per_run": None})
    oi = data["oisst"]
    oi_days = oi["time"].values.astype("datetime64[D]")
    oi_index = {d: i for i, d in enumerate(oi_days.tolist())}
    pers = np.stack([oi.values[oi_index[(r - np.timedelta64(cfg.oisst_lag_days, "D")).tolist()]] for r in test.run])
    pers = np.where(np.isfinite(raw), pers, np.nan)
    add("persistence", pers, {"n_parameters": None, "train_seconds": None, "infer_seconds_per_run": None})
    run_index = {d: i for i, d in enumerate(data["run_days"].tolist())}
    unp = np.stack([data["unpredictable"][run_index[r.tolist()], int(k) - 1] for r, k in zip(test.run, test.lead)])
    oracle = test.y + np.where(np.isfinite(raw), unp, np.nan)  # error = unpredictable part only
    add("oracle-floor", oracle, {"n_parameters": None, "train_seconds": None, "infer_seconds_per_run": None})

    for name in cfg.models:
        cache = out_dir / "rows" / f"{name}.npz"
        if resume and cache.is_file():
            blob = np.load(cache, allow_pickle=False)
            add(name, blob["pred"], json.loads(str(blob["info"])))
            LOG.info("%s: reused %s", name, cache)
            continue
        aux = tuple(cfg.aux_inputs.get(name, default_aux_inputs(name)))
        missing = [a for a in aux if a not in available]
        if missing:
            raise ConfigError(f"{name}: auxiliary input(s) {missing} requested but the twin does not provide them")
        tr, va, te = (s.with_aux(aux) for s in (train, val, test))
        LOG.info("benchmark: %s (auxiliary inputs %s)", name, list(aux) or "none")
        if name in GRIDDED:
            r = _gridded(name, cfg, tr, va, te, grid, out_dir, progress)
        elif name in TREES:
            r = _tree(name, cfg, tr, va, te, grid, out_dir)
        else:
            r = _statistical(name, tr, te, cfg.leads)
        r["aux_inputs"] = list(aux)
        pred = r.pop("pred")
        np.savez_compressed(cache, pred=pred, info=json.dumps(r, default=str))
        add(name, pred, r)
        LOG.info("%s: test RMSE %.3f °C (raw %.3f)", name, rows[name]["scores"]["overall"]["rmse"], raw_r["overall"])

    result = {
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "data": {"source": "bias_correction.testing.twin.Twin (in-process, no HTTP)", "grid": grid.to_dict(),
                 "ocean_cells": int(data["mask"].values.sum()),
                 "samples": {"train": len(train), "val": len(val), "test": len(test)},
                 "periods": {"train": train.period(), "val": val.period(), "test": test.period()},
                 "gap_days": cfg.seq_len, "seconds": data_seconds},
        "rows": rows,
        "torch_threads": torch.get_num_threads(),
        "total_seconds": None,
    }
    result["total_seconds"] = time.perf_counter() - t_all
    (out_dir / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    head = (f"Test period {test.period()[0]} … {test.period()[1]} ({len(test)} samples), train {train.period()}, "
            f"validation {val.period()}; gaps ≥ {cfg.seq_len} days. Same budget for every gridded model: "
            f"{cfg.epochs} epochs max (early stopping, patience {cfg.patience}), batch {cfg.batch_size}, "
            f"lr {cfg.learning_rate}, F={cfg.features}, h={cfg.hidden}, T={cfg.seq_len}, seed {cfg.seed}. "
            f"Total {result['total_seconds'] / 60:.1f} min.\n\n")
    (out_dir / "results.md").write_text(head + markdown(result))
    plot(result, maps, out_dir / "benchmark.png")
    return result


def add_arguments(p: Any) -> None:
    """Command-line options shared by ``sstbc benchmark`` and ``benchmarks/models.py``."""
    d = BenchConfig()
    p.add_argument("--out", default="benchmarks/results/models", help="output folder (results.json/.md, benchmark.png)")
    p.add_argument("--start", type=dt.date.fromisoformat, default=d.start, help="first HYCOM run (YYYY-MM-DD)")
    p.add_argument("--end", type=dt.date.fromisoformat, default=d.end, help="last HYCOM run (YYYY-MM-DD)")
    p.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated subset of: " + ", ".join(ALL_MODELS))
    for name in ("epochs", "seq_len", "features", "hidden", "batch_size", "patience", "seed", "tree_rows",
                 "lgbm_estimators", "rf_estimators", "rf_max_depth"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--export", action="store_true", help="export gridded models to ONNX (parity) and time ORT")
    p.add_argument("--resume", action="store_true", help="reuse per-model results already in --out/rows")


def config_from_args(a: Any) -> BenchConfig:
    return BenchConfig(start=a.start, end=a.end, epochs=a.epochs, seq_len=a.seq_len, features=a.features,
                       hidden=a.hidden, batch_size=a.batch_size, patience=a.patience, seed=a.seed,
                       learning_rate=a.learning_rate, tree_rows=a.tree_rows, lgbm_estimators=a.lgbm_estimators,
                       rf_estimators=a.rf_estimators, rf_max_depth=a.rf_max_depth, export=a.export,
                       models=[m.strip() for m in a.models.split(",") if m.strip()])


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/models.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    res = run_benchmark(config_from_args(a), Path(a.out), resume=a.resume)
    print((Path(a.out) / "results.md").read_text())
    return 0 if res["rows"] else 1
