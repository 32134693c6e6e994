"""The hindcast's results: statistics per row, lead and window, then results.json, results.md, hindcast.png.

Every number is on TWIN data and every table says so and names its references (raw HYCOM,
persistence of the preliminary analysis). Intervals are 95 % paired moving-block bootstrap
intervals over valid days (:mod:`.hindcast_stats`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction import zoo
from bias_correction.training import hindcast_config as hc
from bias_correction.training import hindcast_stats as hs
from bias_correction.training.hindcast_intervals import row_interval_scores

_DAY = np.timedelta64(1, "D")
PRELIMINARY, FINAL = "preliminary", "final"


def labels(cfg: hc.HindcastConfig) -> dict[str, str]:
    lag = cfg.oisst_lag_days
    out = {hc.RAW: "raw HYCOM", hc.PERSISTENCE: f"persistence (preliminary OISST of run day - {lag})",
           hc.ORACLE: "oracle, not a floor (truth + this run's unpredictable HYCOM error)",
           hc.RB_RAW: f"running bias on HYCOM (NCEP decaying average, w={cfg.running_bias_weight})",
           hc.RB_PERS: f"running bias on persistence (w={cfg.running_bias_weight})"}
    out.update({b: zoo.label(b) for b in hc.BASELINES})
    out.update({n: f"{v.label} — seed ensemble ({len(cfg.seeds)} seeds)" for n, v in hc.VARIANTS.items()})
    return out


def input_versions(name: str, cfg: hc.HindcastConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Which OISST version each row read at run time (inputs) and was scored against (target)."""
    base = {"hycom": "the run as issued", "target": FINAL}
    if name in (hc.PERSISTENCE, hc.RB_PERS):
        return {**base, "hycom": None, "latest_analysis": PRELIMINARY,
                **({"running_bias_verification": PRELIMINARY} if name == hc.RB_PERS else {})}
    if name == hc.RB_RAW:
        return {**base, "running_bias_verification": PRELIMINARY}
    if name == hc.ORACLE:
        return {**base, "oracle": "final OISST + the twin's unpredictable error of this run"}
    if name in hc.VARIANTS:
        seeds = next(iter(extra.get(name, {}).get("seeds", {}).values()), {})
        aux = seeds.get("aux_inputs", [])
        return {**base, "aux_inputs": aux, "latest_analysis": PRELIMINARY if aux else None,
                "training_latest_analysis": (FINAL if hc.VARIANTS[name].final_trained else PRELIMINARY) if aux else None,
                "training_targets": FINAL}
    return {**base, "training_targets": FINAL}


def assemble(cfg: hc.HindcastConfig, data: dict[str, Any], win_out: list[dict[str, Any]],
             threads_before: int) -> dict[str, Any]:
    """The JSON result: config, data, windows and, per row, RMSE and paired differences with intervals."""
    leads = list(range(1, cfg.leads + 1))
    rows = [*hc.REFERENCE_ROWS, *cfg.baselines, *cfg.learned]
    per_window_errs = []
    for w in win_out:
        t, (a, b) = w["test"], w["info"]["test"]
        days = np.arange(np.datetime64(a, "D"), np.datetime64(b, "D") + _DAY)
        per_window_errs.append({r: hs.daily_errors(w["preds"][r], t.y, t.valid, t.lead, days, leads) for r in rows})
    boot = hs.paired_bootstrap(per_window_errs, block=cfg.span, n_boot=cfg.n_boot, seed=cfg.boot_seed)
    refs = list(cfg.refs)
    overall = hs.summarise(boot, refs)
    by_lead = {k: hs.summarise(boot, refs, leads=[j]) for j, k in enumerate(leads)}
    names = [w["info"]["name"] for w in win_out]
    by_win = {n: hs.summarise(boot, refs, windows=[i]) for i, n in enumerate(names)}
    by_win_lead = {n: {k: hs.summarise(boot, refs, windows=[i], leads=[j]) for j, k in enumerate(leads)}
                   for i, n in enumerate(names)}
    lab = labels(cfg)
    extra_all: dict[str, Any] = {}
    for w in win_out:
        for k, v in w["extra"].items():
            extra_all.setdefault(k, {})[w["info"]["name"]] = v
    gap = min(w["info"]["gap_days"] for w in win_out)
    out_rows: dict[str, Any] = {}
    for r in rows:
        entry: dict[str, Any] = {
            "model": r, "label": lab.get(r, r),
            "kind": "reference" if r in hc.REFERENCE_ROWS else ("baseline" if r in hc.BASELINES else "learned"),
            "seeds": list(cfg.seeds) if r in cfg.learned else None, "windows": names, "leads": leads,
            "input_versions": input_versions(r, cfg, win_out[0]["extra"]), "gap_days": gap,
            "overall": overall[r], "per_lead": {str(k): by_lead[k][r] for k in leads},
            "per_window": {n: {"overall": by_win[n][r], "per_lead": {str(k): by_win_lead[n][k][r] for k in leads}}
                           for n in names},
            "diebold_mariano": {n: {ref: hs.diebold_mariano(per_window_errs[i][r], per_window_errs[i][ref], leads,
                                                            cfg.oisst_lag_days)
                                    for ref in refs if ref in rows and ref != r} for i, n in enumerate(names)},
        }
        if r in cfg.learned:
            entry["per_seed"] = _per_seed(r, cfg, win_out, leads)
            tot = [v["overall_rmse"] for v in entry["per_seed"].values()]
            entry["seed_spread"] = {"mean": float(np.mean(tot)), "std": float(np.std(tot, ddof=1)) if len(tot) > 1
                                    else 0.0, "min": float(np.min(tot)), "max": float(np.max(tot))}
            sps = [s["train_samples_per_s"] for w in extra_all[r].values() for s in w["seeds"].values()]
            entry["train_samples_per_s"] = float(np.median(sps))
            entry["train_seconds"] = float(sum(s["train_seconds"] for w in extra_all[r].values()
                                               for s in w["seeds"].values()))
            entry["training"] = extra_all[r]
            entry["intervals"] = row_interval_scores(r, win_out, leads, cfg.span)
        elif r in extra_all:
            entry["training"] = extra_all[r]
        out_rows[r] = entry
    import torch

    return {
        "data_kind": "twin (synthetic) data, not real-ocean data",
        "references": {"raw": hc.RAW, "persistence": hc.PERSISTENCE},
        "config": hc.config_dict(cfg),
        "data": {"source": data["source"], "region": data["region"].model_dump(), "grid": data["grid"].to_dict(),
                 "ocean_cells": int(data["mask"].values.sum()),
                 "land_share": float(1.0 - data["mask"].values.mean()), "samples": len(data["samples"]),
                 "seconds": data["seconds"], "span_days": cfg.span,
                 "input_versions": {"latest_analysis_and_persistence": PRELIMINARY, "target": FINAL}},
        "windows": [w["info"] for w in win_out],
        "bootstrap": {"method": "paired circular moving-block bootstrap over valid days (scores.block_bootstrap), "
                                "windows resampled independently and pooled", "block_days": boot["block"],
                      "iterations": boot["n_boot"], "seed": boot["seed"], "level": 0.95},
        "rows": out_rows,
        "torch_threads": {"default": threads_before, "used": torch.get_num_threads()},
        "cpu_count": os.cpu_count(),
    }


def _per_seed(name: str, cfg: hc.HindcastConfig, win_out: list[dict[str, Any]], leads: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in cfg.seeds:
        sse_all = n_all = 0.0
        per_w: dict[str, float] = {}
        for w in win_out:
            t = w["test"]
            d = w["seed_preds"][name][s] - t.y
            ok = np.isfinite(d)
            sse, n = float(np.sum(np.where(ok, d * d, 0.0))), float(ok.sum())
            per_w[w["info"]["name"]] = float(np.sqrt(sse / n))
            sse_all, n_all = sse_all + sse, n_all + n
        out[str(s)] = {"overall_rmse": float(np.sqrt(sse_all / n_all)), "per_window_rmse": per_w}
    return out


def _ci(e: dict[str, Any]) -> str:
    return f"{e['rmse']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"


def _dci(e: dict[str, Any], ref: str) -> str:
    d = e["diff"].get(ref)
    if d is None:
        return "–"
    return f"{d['rmse_diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def markdown(result: dict[str, Any]) -> str:
    cfg, rows, wins = result["config"], result["rows"], result["windows"]
    refs = cfg["refs"]
    lab = {r: v["label"] for r, v in rows.items()}
    leads = rows[hc.RAW]["leads"]
    lines = [
        "# Rolling-origin hindcast (TWIN DATA, not real-ocean numbers)", "",
        f"Data: {result['data']['source']}, box {result['data']['region']['name']} "
        f"({result['data']['grid']['nlat']}×{result['data']['grid']['nlon']} cells, "
        f"{result['data']['ocean_cells']} ocean, {100 * result['data'].get('land_share', 0.0):.0f} % land: the "
        f"scored box has coast in it). References: raw HYCOM (`{hc.RAW}`) and persistence "
        f"(`{hc.PERSISTENCE}`: the PRELIMINARY OISST of run day − {cfg['oisst_lag_days']}, what operations have). "
        "Targets: FINAL OISST of the valid day. Inputs of the learned models: HYCOM runs as issued and, where "
        "listed, the preliminary latest analysis.", "",
        f"RMSE in °C with 95 % intervals from a paired circular moving-block bootstrap over valid days "
        f"(block {result['bootstrap']['block_days']} days = T − 1 + max lead + lag, "
        f"{result['bootstrap']['iterations']} iterations, windows resampled independently). Δ = RMSE(row) − "
        "RMSE(reference): negative = the row is better; an interval excluding 0 is a difference the test "
        "windows support. The oracle row is truth + this run's unpredictable error: an oracle, NOT a floor. "
        "No 'best achievable given all inputs' row: the twin has no closed form for the expected truth given "
        "every input (4 runs, analyses), so none is claimed.", "",
        f"Learned rows: {len(cfg['seeds'])} seeds {cfg['seeds']}; the row is the seed ensemble (mean of the "
        f"seeds' fields); per-seed spread below. Budget per training, unless the row has its own (the Seeds "
        f"table's budget column): {cfg['train_days']} training days, ≤ {cfg['epochs']} epochs (early stopping "
        f"on validation carved from the training side, patience {cfg['patience']}); for every network batch "
        f"{cfg['batch_size']}, lr {cfg['learning_rate']}, F={cfg['features']}, h={cfg['hidden']}, "
        f"T={cfg['seq_len']}; trees: LightGBM {cfg.get('lgbm_estimators')} estimators (early stopping on the same "
        f"validation), random forest {cfg.get('rf_estimators')} trees of depth ≤ {cfg.get('rf_max_depth')}, "
        f"≤ {cfg.get('tree_rows')} rows. " + _wall(result), "",
        ("## DEVELOPMENT windows (fixed in advance; the recommended configuration is chosen on them, not tested)"
         if Path(cfg["windows_file"]) == hc.DEV_WINDOWS_FILE else
         "## Windows (fixed in advance; never used for a model choice)"), "",
        "| window | test valid days | train valid days | validation | samples train/val/test | run days | gap (days) |",
        "|---|---|---|---|---|---|---|"]
    for w in wins:
        s = w["samples"]
        lines.append(f"| {w['name']} ({w['season']}) | {w['test'][0]} … {w['test'][1]} | {w['train_period'][0]} … "
                     f"{w['train_period'][1]} | {w['val_period'][0]} … {w['val_period'][1]} | "
                     f"{s['train']}/{s['val']}/{s['test']} | {w['train_run_days']} | {w['gap_days']} "
                     f"(≥ {w['required_gap_days']}) |")
    lines += ["", "## All windows and leads (twin data; references raw HYCOM and persistence)", "",
              "| row | RMSE [95 % CI] | " + " | ".join(f"Δ vs {lab.get(r, r).split(' (')[0]}" for r in refs) + " |",
              "|---|---|" + "---|" * len(refs)]
    for r, e in rows.items():
        lines.append(f"| {lab[r]} | {_ci(e['overall'])} | " + " | ".join(_dci(e["overall"], ref) for ref in refs) + " |")
    lines += ["", "## RMSE by lead day, all windows (twin data)", "",
              "| row | " + " | ".join(f"d{k}" for k in leads) + " |", "|---|" + "---|" * len(leads)]
    for r, e in rows.items():
        lines.append(f"| {lab[r]} | " + " | ".join(_ci(e["per_lead"][str(k)]) for k in leads) + " |")
    first = refs[0] if refs else hc.RAW
    lines += ["", f"## Δ RMSE vs {lab.get(first, first)} by lead day (twin data)", "",
              "| row | " + " | ".join(f"d{k}" for k in leads) + " |", "|---|" + "---|" * len(leads)]
    for r, e in rows.items():
        if r != first:
            lines.append(f"| {lab[r]} | " + " | ".join(_dci(e["per_lead"][str(k)], first) for k in leads) + " |")
    names = [w["name"] for w in wins]
    lines += ["", "## RMSE by window / season, all leads (twin data; Δ vs persistence)", "",
              "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r, e in rows.items():
        lines.append(f"| {lab[r]} | " + " | ".join(
            f"{_ci(e['per_window'][n]['overall'])}<br>Δ {_dci(e['per_window'][n]['overall'], hc.PERSISTENCE)}"
            for n in names) + " |")
    learned = [r for r, e in rows.items() if e["kind"] == "learned"]
    if learned:
        lines += ["", "## Seeds (twin data)", "",
                  "| row | budget | per-seed RMSE | mean ± sd | ensemble | train samples/s (median) | train s (all) |",
                  "|---|---|---|---|---|---|---|"]
        for r in learned:
            e = rows[r]
            ps = ", ".join(f"s{s}: {v['overall_rmse']:.3f}" for s, v in e["per_seed"].items())
            lines.append(f"| {lab[r]} | {_budget(e)} | {ps} | {e['seed_spread']['mean']:.3f} ± "
                         f"{e['seed_spread']['std']:.3f} | {e['overall']['rmse']:.3f} | {e['train_samples_per_s']:.1f} | "
                         f"{e['train_seconds']:.0f} |")
    lines += _interval_lines(rows, lab, leads)
    return "\n".join(lines) + "\n"


def _budget(e: dict[str, Any]) -> str:
    """'365 d, ≤ 8 ep, p3' from the row's recorded budget (trees: the training days only)."""
    seeds = next(iter(e.get("training", {}).values()), {}).get("seeds", {})
    b = next(iter(seeds.values()), {}).get("budget")
    if not b:
        return "–"
    if "epochs" not in b:  # trees: their own stopping rules (the configuration's sizes)
        return f"{b['train_days']} d"
    wd = f", wd {b['weight_decay']}" if b.get("weight_decay") else ""
    return f"{b['train_days']} d, ≤ {b['epochs']} ep, p{b['patience']}{wd}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}"


def _interval_lines(rows: dict[str, Any], lab: dict[str, str], leads: list[int]) -> list[str]:
    have = [r for r, e in rows.items() if e.get("intervals")]
    if not have:
        return []
    nom = rows[have[0]]["intervals"]["nominal"]
    out = ["", "## Uncertainty of the learned rows (twin data)", "",
           f"{rows[have[0]]['intervals']['method']}; calibrated per window on the calibration block of its training "
           "side (after validation, behind a span-day gap: used neither for training nor for early stopping), "
           f"scored on the test days. Nominal coverage {100 * nom['coverage_68']:.0f} % and "
           f"{100 * nom['coverage_95']:.0f} %; target ±5 points. CRPS of N(pred, σ²) in K.", "",
           "| row | 68 % coverage | 95 % coverage | CRPS | mean σ68 | 68 % coverage by lead (" +
           ", ".join(f"d{k}" for k in leads) + ") |", "|---|---|---|---|---|---|"]
    for r in have:
        iv = rows[r]["intervals"]
        o = iv["overall"]
        by = ", ".join(_pct(iv["per_lead"][str(k)]["coverage_68"]) for k in leads)
        out.append(f"| {lab[r]} | {_pct(o['coverage_68'])} % | {_pct(o['coverage_95'])} % | "
                   f"{o['crps']:.3f} | {o['sigma_mean']:.3f} | {by} |")
    live = [r for r in have if rows[r]["intervals"].get("live")]
    if live:
        out += ["", "The same intervals issued day by day through each test window with the live recalibration on "
                "(`verification.recalibration`, `[guard]` defaults: from 10 verified test runs on, the quantile of "
                "the latest 10 runs times the integral of the coverage shortfall rescales the next runs' "
                "intervals; the first days of a window keep the package's). *All test runs* = what operations "
                "would have issued; *rescaled runs* = only the runs whose intervals were rescaled.", "",
                "| row | all test runs: 68 % / 95 % coverage, CRPS | rescaled runs: 68 % / 95 % coverage | "
                "rescaled runs: 68 % coverage by lead (" + ", ".join(f"d{k}" for k in leads) + ") |",
                "|---|---|---|---|"]
        for r in live:
            lv = rows[r]["intervals"]["live"]
            a, b = lv["issued"]["overall"], lv["recalibrated"]["overall"]
            by = ", ".join(_pct(lv["recalibrated"]["per_lead"][str(k)]["coverage_68"]) for k in leads)
            crps = "–" if a["crps"] is None else f"{a['crps']:.3f}"
            out.append(f"| {lab[r]} | {_pct(a['coverage_68'])} % / {_pct(a['coverage_95'])} %, {crps} | "
                       f"{_pct(b['coverage_68'])} % / {_pct(b['coverage_95'])} % | {by} |")
    return out


def _wall(result: dict[str, Any]) -> str:
    tw = result.get("training_wall", {})
    txt = f"Total {result['total_seconds'] / 60:.1f} min on {result.get('cpu_count')} cores"
    if tw:
        txt += (f"; {tw['trainings']} trainings in {tw['seconds'] / 60:.1f} min with {tw['workers']} worker "
                f"process(es) ({tw['samples_per_s']:.0f} trained samples/s overall)")
        if tw.get("resumed_from_cache"):
            txt += f"; {tw['resumed_from_cache']} trainings RESUMED from an earlier run's cache"
    return txt + "."


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, wins = result["rows"], [w["name"] for w in result["windows"]]
    # One colour per row in both panels (tab20: up to 20 rows without repeats); one legend below both.
    colours = plt.get_cmap("tab20")
    legend_lines = -(-len(rows) // 4)  # four columns of row ids (results.md maps each id to its label)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(15, 5.5 + 0.22 * legend_lines))
    fig.subplots_adjust(left=0.05, right=0.99, top=0.93, bottom=0.12 + 0.035 * legend_lines, wspace=0.15)
    for i, (r, e) in enumerate(rows.items()):
        ks = e["leads"]
        m = [e["per_lead"][str(k)]["rmse"] for k in ks]
        lo = [m[j] - e["per_lead"][str(k)]["ci"][0] for j, k in enumerate(ks)]
        hi = [e["per_lead"][str(k)]["ci"][1] - m[j] for j, k in enumerate(ks)]
        a1.errorbar(np.asarray(ks) + 0.04 * (i - len(rows) / 2), m, yerr=[lo, hi], marker="o", capsize=2,
                    label=r, ls="--" if e["kind"] == "reference" else "-", color=colours(i % 20),
                    lw=2.4 if r == zoo.DEFAULT_MODEL else 1.1, ms=6 if r == zoo.DEFAULT_MODEL else 3)
    a1.set_xlabel("lead day"); a1.set_ylabel("RMSE vs final OISST (°C)")
    a1.set_title("Hindcast RMSE by lead, all windows (TWIN data), 95 % block-bootstrap CI"); a1.grid(alpha=0.3)
    x = np.arange(len(wins))
    wd = 0.8 / max(1, len(rows))
    for i, (r, e) in enumerate(rows.items()):
        m = [e["per_window"][n]["overall"]["rmse"] for n in wins]
        ci = np.array([e["per_window"][n]["overall"]["ci"] for n in wins])
        a2.bar(x + i * wd - 0.4, m, wd, yerr=[np.subtract(m, ci[:, 0]), ci[:, 1] - m], capsize=1.5,
               color=colours(i % 20))
    a2.set_xticks(x, wins); a2.set_ylabel("RMSE (°C)"); a2.set_title("By window / season (TWIN data)")
    a2.grid(alpha=0.3, axis="y")
    fig.legend(*a1.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def write(result: dict[str, Any], win_out: list[dict[str, Any]], out_dir: Path) -> None:
    """results.json, results.md, hindcast.png, each replaced atomically (never half-written)."""
    for name, text in (("results.json", json.dumps(result, indent=2, default=str) + "\n"),
                       ("results.md", markdown(result))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)
    plot(result, out_dir / "hindcast.png")
