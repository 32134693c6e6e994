"""Rolling-origin hindcast: every model re-trained before each of several fixed test windows.

Why: one split, one seed and one test window say little (issue 11). Here the test windows are fixed
in ``benchmarks/hindcast_windows.json`` (chosen before any model ran, one per season) and never used
for a model choice. For each window, every learned model is trained only on samples whose valid day
lies at least ``span = T - 1 + max lead + lag`` days before the window's first valid day (the longest
reach of one sample: its T runs, its latest-analysis input and its target), and early stopping uses a
validation set carved from that training side, with the same gap. Each learned model runs with
several seeds; the seeds' mean is the "seed ensemble" row and the per-seed scores give the spread.

Inputs are fed as operations would have them: the latest-analysis input and persistence use the
PRELIMINARY OISST of run day - lag; targets are the FINAL OISST of the valid day. Data come from the
twin in memory (:func:`bias_correction.training.benchmark.twin_dataset`), on a sub-box of the preset's
region (``box_cells``) so full self-attention stays affordable for the paper-faithful ConvGRU-SA.

Rows: raw HYCOM; persistence; a single-run oracle (truth + this run's unpredictable HYCOM error: an
oracle, NOT a floor: a model that sees more than the last run can beat it); the decaying-average
running bias (NCEP GEFS) on raw HYCOM and on persistence (:mod:`.running_bias`); the zoo's
statistical baselines; the learned variants (:data:`VARIANTS`). Statistics: :mod:`.hindcast_stats`;
report: :mod:`.hindcast_report`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction import zoo
from bias_correction.errors import ConfigError
from bias_correction.inputs import HYCOM_TENDENCY, OISST_LATEST
from bias_correction.training.hindcast_config import (  # noqa: F401 (re-exported)
    BASELINES, FULL, ORACLE, PAPER, PERSISTENCE, RAW, RB_PERS, RB_RAW, REFERENCE_ROWS, VARIANTS, WINDOWS_FILE,
    HindcastConfig, Variant, config_dict, load_windows,
)

LOG = logging.getLogger(__name__)
_DAY = np.timedelta64(1, "D")


def _twin_and_region(cfg: HindcastConfig) -> tuple[Any, Any, str]:
    """(twin, region, source): the preset's twin and region (``testing.twin_presets``)."""
    from bias_correction.testing.twin_presets import PRESETS, make_twin

    if cfg.twin_preset not in PRESETS:
        raise ConfigError(f"unknown twin preset {cfg.twin_preset!r}; known: {sorted(PRESETS)}")
    return (make_twin(cfg.twin_preset, cfg.twin_seed), PRESETS[cfg.twin_preset].region,
            f"twin_presets.make_twin({cfg.twin_preset!r}, {cfg.twin_seed})")


def box_region(region: Any, cells: int | None, step: float, center: tuple[float, float] | None = None) -> Any:
    """The ``cells`` x ``cells`` box centred on ``center`` (lat, lon; default the region's centre).

    The region itself when ``cells`` is None.
    """
    if cells is None:
        return region
    half = cells * step / 2
    lat_c, lon_c = center if center is not None else ((region.lat_min + region.lat_max) / 2,
                                                       (region.lon_min + region.lon_max) / 2)
    if not (region.lat_min <= lat_c - half + step / 4 and lat_c + half - step / 4 <= region.lat_max
            and region.lon_min <= lon_c - half + step / 4 and lon_c + half - step / 4 <= region.lon_max):
        raise ConfigError(f"the {cells}-cell box centred on {lat_c:.2f}N {lon_c:.2f}E leaves the twin region "
                          f"{region.name} ({region.lat_min}-{region.lat_max}N, {region.lon_min}-{region.lon_max}E)")
    # snap the centre to a cell edge of the global grid so the box has exactly `cells` cells
    lat_c = round((lat_c + 90) / step) * step - 90 + (step / 2 if cells % 2 else 0.0)
    lon_c = round(lon_c / step) * step + (step / 2 if cells % 2 else 0.0)
    suffix = "" if center is None else f"-at{lat_c:.2f}N{lon_c:.2f}E".replace(".", "p")  # names: [A-Za-z0-9_-]
    return type(region)(name=f"{region.name}-box{cells}{suffix}", lat_min=lat_c - half + step / 4,
                        lat_max=lat_c + half - step / 4, lon_min=lon_c - half + step / 4,
                        lon_max=lon_c + half - step / 4)


def build_data(cfg: HindcastConfig, windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The twin dataset covering every window and its training side, and its samples (as-issued inputs)."""
    from bias_correction.training.benchmark import twin_dataset
    from bias_correction.training.dataset import build_samples

    twin, region, source = _twin_and_region(cfg)
    box = box_region(region, cfg.box_cells, cfg.step, cfg.box_center)
    first_valid = min(w["start"] for w in windows) - dt.timedelta(days=cfg.span + cfg.max_train_days())
    run_start = first_valid - dt.timedelta(days=cfg.leads + cfg.seq_len - 1)
    run_end = max(w["end"] for w in windows) - dt.timedelta(days=1)
    t0 = time.perf_counter()
    data = twin_dataset(run_start, run_end, cfg.leads, cfg.seq_len, twin=twin, region=box, step=cfg.step,
                        preliminary=True)
    if int(data["mask"].values.sum()) == 0:
        raise ConfigError(f"the box {box} has no ocean cell in twin preset {cfg.twin_preset!r}")
    # every input any row may take (each row keeps its own with ``with_aux``): the analysis, the twin's same-run
    # fields and the derived HYCOM tendency
    aux = (OISST_LATEST.name, *data["run_fields"], HYCOM_TENDENCY.name)
    samples = build_samples(data["hycom"], data["oisst"], data["mask"], cfg.seq_len, aux_inputs=aux,
                            oisst_lag_days=cfg.oisst_lag_days, issued_oisst=data["oisst_preliminary"],
                            **data["run_fields"])
    # the same samples with FINAL analyses as inputs (rows trained where the archive holds only finals)
    final = build_samples(data["hycom"], data["oisst"], data["mask"], cfg.seq_len, aux_inputs=aux,
                          oisst_lag_days=cfg.oisst_lag_days, **data["run_fields"])
    if not (np.array_equal(final.run, samples.run) and np.array_equal(final.lead, samples.lead)):
        raise ConfigError("the final-input samples do not line up with the as-issued ones")  # pragma: no cover
    data.update(samples=samples, samples_final=final, source=source, region=box, seconds=time.perf_counter() - t0)
    LOG.info("hindcast data: runs %s..%s, %d samples on %dx%d cells in %.0f s", run_start, run_end, len(samples),
             *data["grid"].shape, data["seconds"])
    return data


def split_window(samples: Any, window: dict[str, Any], cfg: HindcastConfig, train_days: int | None = None
                 ) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """(train, val, test, calibration, info) of one window; everything fitted ends >= span days before it.

    With ``cfg.calibration_fraction`` > 0 the latest part of the training side is held out (behind its own
    span-day gap) as a calibration block for the rows' uncertainty (None when the side is too short for one);
    validation is carved from what is before it. ``train_days`` overrides ``cfg.train_days`` (a row's lever)."""
    from bias_correction.training.calibrate import split_calibration
    from bias_correction.training.dataset import split_chronological

    days = int(train_days or cfg.train_days)
    start, end = np.datetime64(window["start"], "D"), np.datetime64(window["end"], "D")
    test = samples.subset(np.flatnonzero((samples.valid >= start) & (samples.valid <= end)))
    last_fit = start - (cfg.span + 1) * _DAY
    pre = samples.subset(np.flatnonzero((samples.valid <= last_fit) & (samples.valid > last_fit - days * _DAY)))
    if len(test) == 0 or len(pre) == 0:
        raise ConfigError(f"window {window['name']}: {len(pre)} training and {len(test)} test samples; "
                          "the data do not cover it")
    fit, cal = split_calibration(pre, cfg.calibration_fraction, gap_days=cfg.span)
    train, val = split_chronological(fit, cfg.val_fraction, gap_days=cfg.span)
    fit_last = max(train.valid.max(), val.valid.max(), *(() if cal is None else (cal.valid.max(),)))
    first_input = test.run.min() - (cfg.seq_len - 1 + cfg.oisst_lag_days) * _DAY
    info = {"name": window["name"], "season": window["season"], "test": [str(start), str(end)], "train_days": days,
            "train_period": train.period(), "val_period": val.period(),
            "calibration_period": None if cal is None else cal.period(),
            "samples": {"train": len(train), "val": len(val), "test": len(test), "calibration": 0 if cal is None
                        else len(cal)},
            "train_run_days": int(len(np.unique(train.run))),
            # empty days between the last training/validation target and the first test valid day
            "gap_days": int((test.valid.min() - fit_last) / _DAY) - 1,
            # ... and between it and the earliest day any test sample reads (runs, latest analysis)
            "gap_days_to_first_test_input": int((first_input - fit_last) / _DAY) - 1,
            "required_gap_days": cfg.span}
    if info["gap_days"] < cfg.span or info["gap_days_to_first_test_input"] < 0:
        raise ConfigError(f"window {window['name']}: gap {info['gap_days']} days < {cfg.span}")  # pragma: no cover
    return train, val, test, cal, info


def _select_runs(arr: np.ndarray, run_days: np.ndarray, leads: list[int], test: Any) -> np.ndarray:
    """arr [run, lead, H, W] -> [N_test, H, W] at the test samples' (run, lead)."""
    r_idx = {d: i for i, d in enumerate(run_days.tolist())}
    return np.stack([arr[r_idx[r], leads.index(int(k))] for r, k in zip(test.run.tolist(), test.lead.tolist())])


def reference_rows(data: dict[str, Any], test: Any, cfg: HindcastConfig, rb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw, persistence (preliminary analysis of run day - lag), the single-run oracle, running biases."""
    run_days = data["run_days"]
    leads = list(range(1, cfg.leads + 1))
    ocean = test.mask
    raw = test.x[:, -1]
    pre = data["oisst_preliminary"]
    p_idx = {d: i for i, d in enumerate(pre["time"].values.astype("datetime64[D]").tolist())}
    lag = cfg.oisst_lag_days * _DAY
    pers = np.stack([pre.values[p_idx[(r - lag).tolist()]] for r in test.run])
    unp = _select_runs(data["unpredictable"], run_days, leads, test)
    out = {RAW: raw, PERSISTENCE: np.where(ocean, pers, np.nan),
           ORACLE: test.y + np.where(ocean, unp, np.nan)}
    for name, arr in rb.items():
        out[name] = np.where(ocean, _select_runs(arr, run_days, leads, test), np.nan)
    return out


def running_bias_rows(data: dict[str, Any], cfg: HindcastConfig) -> dict[str, np.ndarray]:
    """The NCEP-style running bias over every run of the data (only past verifications at each run)."""
    from bias_correction.training.running_bias import persistence_forecast, running_bias_correct

    ocean = np.asarray(data["mask"].values, bool)
    hy = np.where(ocean, data["hycom"].values, np.nan)
    pre = data["oisst_preliminary"]
    an, an_days = np.where(ocean, pre.values, np.nan), pre["time"].values
    leads = list(range(1, cfg.leads + 1))
    kw = {"weight": cfg.running_bias_weight, "lag_days": cfg.oisst_lag_days}
    rb_raw, _ = running_bias_correct(hy, data["run_days"], leads, an, an_days, **kw)
    pers = persistence_forecast(data["run_days"], leads, an, an_days, cfg.oisst_lag_days)
    rb_pers, _ = running_bias_correct(pers, data["run_days"], leads, an, an_days, **kw)
    return {RB_RAW: rb_raw, RB_PERS: rb_pers}


def train_variant(name: str, seed: int, train: Any, val: Any, test: Any, grid: Any, cfg: HindcastConfig,
                  out_dir: Path, progress: bool, cal: Any = None) -> dict[str, Any]:
    """Train one learned row with one seed on the window's training side (with the row's budget); predict its
    test samples and, when given, the calibration block (``pred_cal``)."""
    from bias_correction.config import Training, default_aux_inputs

    v = VARIANTS[name]
    budget = v.budget(cfg)
    aux = tuple(v.aux_inputs if v.aux_inputs is not None else default_aux_inputs(v.model))
    tr, va, te = (s.with_aux(aux) for s in (train, val, test))
    ca = None if cal is None else cal.with_aux(aux)
    if zoo.get(v.model).family == zoo.TABULAR:
        return _train_tree(v.model, seed, tr, va, te, grid, cfg, aux, ca, budget)
    from bias_correction.training.benchmark import _predict_gridded
    from bias_correction.training.train import load_checkpoint, train_model

    arch = None
    if v.full_attention and zoo.get(v.model).kv_pooled:
        arch = {"kv_pool": 1} if grid.nlat * grid.nlon <= cfg.full_attention_max_keys else None
    tcfg = Training(model=v.model, seq_len=cfg.seq_len, features=cfg.features, hidden=cfg.hidden,
                    epochs=budget["epochs"], batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                    weight_decay=budget["weight_decay"], patience=budget["patience"], seed=seed,
                    aux_inputs=list(aux), residual_base=v.residual_base, oisst_lag_days=cfg.oisst_lag_days)
    res = train_model(tr, va, tcfg, grid=grid, mask_hash="0" * 64, data_info={"source": "twin hindcast"},
                      out_dir=out_dir, progress=progress, arch_kwargs=arch)
    model, meta = load_checkpoint(res.checkpoint)
    return {"pred": _predict_gridded(model, te), "train_seconds": res.train_seconds, "epochs_run": res.epochs_run,
            **({} if ca is None else {"pred_cal": _predict_gridded(model, ca)}),
            "best_epoch": res.best_epoch, "n_parameters": res.n_parameters, "arch_kwargs": meta["arch_kwargs"],
            "aux_inputs": list(aux), "residual_base": tcfg.resolved_residual_base, "budget": budget,
            "train_period": tr.period(), "train_samples": len(tr),
            "train_samples_per_s": res.epochs_run * len(tr) / max(res.train_seconds, 1e-9)}


def _train_tree(model: str, seed: int, tr: Any, va: Any, te: Any, grid: Any, cfg: HindcastConfig,
                aux: tuple[str, ...], ca: Any = None, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tree ensemble (the benchmark's sizes) on the residual against raw HYCOM; one core per worker."""
    from bias_correction.training.trees import TreeModel

    kw = {arg: getattr(cfg, attr) for arg, attr in zoo.get(model).bench_params.items()}
    t0 = time.perf_counter()
    m = TreeModel(model, max_rows=cfg.tree_rows, seed=seed, n_jobs=1 if cfg.workers > 1 else 2, **kw)
    m.fit(tr, va, lat=grid.lat, lon=grid.lon)
    secs = time.perf_counter() - t0
    return {"pred": m.predict(te), "train_seconds": secs, "n_parameters": m.n_parameters(),
            **({} if ca is None else {"pred_cal": m.predict(ca)}), "budget": {"train_days": (budget or {}).get("train_days")},
            "parameter_unit": "tree nodes", "train_rows": m.n_rows, "aux_inputs": list(aux), "residual_base": "hycom",
            "train_period": tr.period(), "train_samples": len(tr),
            "train_samples_per_s": len(tr) / max(secs, 1e-9)}


def _job(args: tuple[Any, ...]) -> dict[str, Any]:
    """One training in a worker process: a single torch thread, so two workers fill two cores."""
    import torch

    torch.set_num_threads(1)
    return train_variant(*args)


def _worker_init() -> None:
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _run_jobs(jobs: list[tuple[Any, tuple[Any, ...]]], workers: int, on_done: Any) -> None:
    """Run ``(key, args)`` trainings, ``workers`` at a time in spawned processes (1 = here, in order).

    Each training is seeded and single-threaded, so the results do not depend on ``workers`` or on the
    order in which they finish (tested). ``on_done(key, result)`` runs in this process as each ends.
    """
    from bias_correction.progress import progress as bar

    if workers <= 1 or len(jobs) <= 1:
        for key, args in bar(jobs, desc="hindcast trainings", unit="fit"):
            on_done(key, train_variant(*args))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
        futs = {ex.submit(_job, args): key for key, args in jobs}
        try:
            for f in bar(as_completed(futs), desc="hindcast trainings", total=len(futs), unit="fit"):
                on_done(futs[f], f.result())
        except BaseException:
            for f in futs:
                f.cancel()
            raise


def _store(wo: dict[str, Any], name: str, seed: int, r: dict[str, Any]) -> None:
    r = dict(r)
    wo["seed_preds"][name][seed] = r.pop("pred")
    if "pred_cal" in r:
        wo["seed_preds_cal"].setdefault(name, {})[seed] = r.pop("pred_cal")
    wo["extra"].setdefault(name, {"seeds": {}})["seeds"][str(seed)] = r


def _trained_samples(wo: dict[str, Any], name: str) -> float:
    """Sample-epochs of one row's trainings in one window (samples/s x seconds, as each training reported)."""
    return sum(v["train_samples_per_s"] * v["train_seconds"] for v in wo["extra"].get(name, {}).get("seeds", {}).values())


def _check(cfg: HindcastConfig) -> None:
    unknown = sorted(set(cfg.learned) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown learned rows {unknown}; known: {', '.join(VARIANTS)}")
    bad = sorted(set(cfg.baselines) - set(BASELINES))
    if bad:
        raise ConfigError(f"unknown baselines {bad}; known: {', '.join(BASELINES)}")
    if not cfg.seeds:
        raise ConfigError("at least one seed is needed")
    unknown_refs = sorted(set(cfg.refs) - {*REFERENCE_ROWS, *BASELINES, *VARIANTS})  # absent ones are skipped
    if unknown_refs:
        raise ConfigError(f"unknown reference rows {unknown_refs}")
    if cfg.workers < 1:
        raise ConfigError(f"workers must be >= 1, got {cfg.workers}")


def run_hindcast(cfg: HindcastConfig, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Run every window, score every row, write results.json/.md and hindcast.png under ``out_dir``."""
    import torch

    from bias_correction.training import hindcast_report as report
    from bias_correction.training.baselines import build_baseline

    _check(cfg)
    t_all = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    windows = load_windows(cfg.windows_file, cfg.windows)
    data = build_data(cfg, windows)
    samples, grid = data["samples"], data["grid"]
    rb = running_bias_rows(data, cfg)
    win_out: list[dict[str, Any]] = []
    jobs: list[tuple[Any, tuple[Any, ...]]] = []
    for w in windows:
        train, val, test, _, info = split_window(samples, w, cfg)
        LOG.info("window %s %s: train %s, val %s, calibration %s, test %d samples, gap %d days", w["name"],
                 info["test"], info["train_period"], info["val_period"], info["calibration_period"], len(test),
                 info["gap_days"])
        splits: dict[tuple[int, bool], tuple[Any, ...]] = {}  # (train days, final-trained) -> its split

        def split_for(days: int, final: bool) -> tuple[Any, ...]:
            if (days, final) not in splits:
                splits[(days, final)] = split_window(data["samples_final"] if final else samples, w, cfg, days)
            return splits[(days, final)]

        preds = reference_rows(data, test, cfg, rb)
        extra: dict[str, Any] = {}
        for b in cfg.baselines:
            t0 = time.perf_counter()
            preds[b] = build_baseline(b).fit(train.with_aux(())).predict(test.with_aux(()))
            extra[b] = {"train_seconds": time.perf_counter() - t0}
        seeds: dict[str, dict[int, np.ndarray]] = {name: {} for name in cfg.learned}
        wo = {"info": info, "test": test, "preds": preds, "seed_preds": seeds, "seed_preds_cal": {}, "cal_sets": {},
              "cal_preds": {}, "extra": extra}
        win_out.append(wo)
        for name in cfg.learned:
            v = VARIANTS[name]
            tr, va, _, ca, _ = split_for(v.budget(cfg)["train_days"], v.final_trained)
            # the row is calibrated on the as-issued inputs it is tested with, whatever it trained on
            ca = split_for(v.budget(cfg)["train_days"], False)[3] if v.final_trained else ca
            wo["cal_sets"][name] = ca
            for s in cfg.seeds:
                cache = out_dir / "rows" / w["name"] / f"{name}-seed{s}.npz"
                if cache.is_file():
                    blob = np.load(cache, allow_pickle=False)
                    _store(wo, name, s, {"pred": blob["pred"], **({"pred_cal": blob["pred_cal"]} if "pred_cal" in blob
                                                                   else {}), **json.loads(str(blob["info"]))})
                    continue
                args = (name, s, tr, va, test, grid, cfg, out_dir / "checkpoints" / w["name"] / f"{name}-seed{s}",
                        progress and cfg.workers <= 1, ca)
                jobs.append(((len(win_out) - 1, name, s, cache), args))

    def done(key: tuple[int, str, int, Path], r: dict[str, Any]) -> None:
        i, name, s, cache = key
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        arrays = {k: r[k] for k in ("pred", "pred_cal") if k in r}
        np.savez_compressed(tmp, **arrays, info=json.dumps({k: v for k, v in r.items() if k not in arrays},
                                                           default=str))
        tmp.replace(cache)  # never a half-written cache; a rerun resumes from the finished trainings
        LOG.info("window %s: %s seed %d trained in %.0f s (%.1f samples/s)", win_out[i]["info"]["name"], name, s,
                 r["train_seconds"], r["train_samples_per_s"])
        _store(win_out[i], name, s, r)

    t_fit = time.perf_counter()
    _run_jobs(jobs, cfg.workers, done)
    fit_wall = time.perf_counter() - t_fit
    for wo in win_out:
        for name in cfg.learned:  # the seed ensemble, in the configured seed order
            wo["preds"][name] = np.mean(np.stack([wo["seed_preds"][name][s] for s in cfg.seeds]), axis=0)
            cal_preds = wo["seed_preds_cal"].get(name, {})
            if wo["cal_sets"].get(name) is not None and len(cal_preds) == len(cfg.seeds):
                wo["cal_preds"][name] = np.mean(np.stack([cal_preds[s] for s in cfg.seeds]), axis=0)
    result = report.assemble(cfg, data, win_out, threads_before)
    result["total_seconds"] = time.perf_counter() - t_all
    result["training_wall"] = {"seconds": fit_wall, "trainings": len(jobs), "workers": cfg.workers,
                               "trained_samples": int(sum(_trained_samples(wo, n) for wo in win_out for n in cfg.learned)),
                               "resumed_from_cache": sum(len(cfg.seeds) * len(cfg.learned) for _ in win_out) - len(jobs)}
    result["training_wall"]["samples_per_s"] = result["training_wall"]["trained_samples"] / max(fit_wall, 1e-9)
    report.write(result, win_out, out_dir)
    return result


