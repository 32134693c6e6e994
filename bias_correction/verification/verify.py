"""Verification of published products against OISST: scores per lead with bootstrap confidence
intervals, the accumulating score table, and plots.

References scored side by side with the corrected forecast (all on the ocean mask, °C):

* raw HYCOM (``sst_raw`` of the product);
* persistence: the latest OISST analysis available at forecast time (the day before the run).

Confidence intervals come from a spatial block bootstrap (blocks of ``BLOCK`` × ``BLOCK`` cells
resampled with replacement): neighbouring cells are strongly correlated, so resampling single
cells would give intervals far too narrow. Skill is ``1 - MSE_model / MSE_reference``.

Scores are stored per (run, lead, model id, model version) with the OISST version (preliminary or
final) they were computed against, so a day whose final analysis arrives later is re-scored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.storage import Store

BLOCK = 10
N_BOOT = 200
TABLE_KEY = "verification/scores.sqlite"


@dataclass(frozen=True)
class LeadScore:
    """Scores of one lead day of one product."""

    run: str
    lead: int
    valid_date: str
    model_id: str
    model_version: str
    product_key: str
    oisst_version: str
    n: int
    bias_corrected: float
    rmse_corrected: float
    rmse_corrected_lo: float
    rmse_corrected_hi: float
    mae_corrected: float
    bias_raw: float
    rmse_raw: float
    rmse_raw_lo: float
    rmse_raw_hi: float
    mae_raw: float
    bias_persistence: float | None
    rmse_persistence: float | None
    mae_persistence: float | None
    skill_vs_raw: float
    skill_vs_persistence: float | None
    skill_vs_raw_lo: float
    skill_vs_raw_hi: float
    scored_at: str
    #: The model's own field (``sst_model``; = corrected where the skill guard kept the model).
    rmse_model: float | None = None
    #: What the product carried at this lead (skill guard: model / persistence / raw).
    carried: str | None = None
    #: Uncertainty scores of ``sst_uncertainty`` (``verification.intervals``): interval coverages and Gaussian CRPS.
    coverage_68: float | None = None
    coverage_95: float | None = None
    crps: float | None = None
    sigma_mean: float | None = None
    #: Histogram of |error| / the package's own 68 % half-width (``verification.recalibration``): the
    #: evidence of the next runs' live interval scale. None where the lead carried a reference.
    z_hist: str | None = None
    #: The live scale this lead's ``sst_uncertainty`` was issued with (None: the package's own intervals).
    live_scale: float | None = None


def _block_sums(err2: np.ndarray, ok: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per spatial block: sum of squared errors and number of valid cells (flattened)."""
    ny, nx = err2.shape
    by, bx = -(-ny // block), -(-nx // block)
    pad = ((0, by * block - ny), (0, bx * block - nx))
    e = np.pad(np.where(ok, err2, 0.0), pad).reshape(by, block, bx, block).sum(axis=(1, 3)).ravel()
    c = np.pad(ok.astype(np.float64), pad).reshape(by, block, bx, block).sum(axis=(1, 3)).ravel()
    keep = c > 0
    return e[keep], c[keep]


def bootstrap_mse(
    err2: dict[str, np.ndarray], ok: np.ndarray, *, block: int = BLOCK, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the MSE of each named squared-error field, resampling the same blocks
    for every field so that skill ratios get paired intervals."""
    sums = {name: _block_sums(e2, ok, block) for name, e2 in err2.items()}
    nblocks = next(iter(sums.values()))[0].size
    idx = np.random.default_rng(seed).integers(0, nblocks, size=(n_boot, nblocks))
    return {name: s[idx].sum(axis=1) / c[idx].sum(axis=1) for name, (s, c) in sums.items()}


def score_lead(
    corrected: np.ndarray, raw: np.ndarray, truth: np.ndarray, persistence: np.ndarray | None, mask: np.ndarray,
    *, seed: int = 0,
) -> dict[str, Any]:
    """All scores of one lead day (2-D fields, °C)."""
    ok = mask & np.isfinite(corrected) & np.isfinite(raw) & np.isfinite(truth)
    if persistence is not None:
        ok &= np.isfinite(persistence)
    n = int(ok.sum())
    if n == 0:
        raise ValueError("verification: no ocean cell where forecast and OISST are both finite")
    errs = {"corrected": corrected - truth, "raw": raw - truth}
    if persistence is not None:
        errs["persistence"] = persistence - truth
    out: dict[str, Any] = {"n": n}
    for name, e in errs.items():
        v = e[ok]
        out[f"bias_{name}"] = float(v.mean())
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(v**2)))
        out[f"mae_{name}"] = float(np.mean(np.abs(v)))
    boot = bootstrap_mse({k: e**2 for k, e in errs.items()}, ok, seed=seed)
    for name in ("corrected", "raw"):
        lo, hi = np.percentile(np.sqrt(boot[name]), [2.5, 97.5])
        out[f"rmse_{name}_lo"], out[f"rmse_{name}_hi"] = float(lo), float(hi)
    skill = 1.0 - boot["corrected"] / boot["raw"]
    out["skill_vs_raw"] = 1.0 - out["rmse_corrected"] ** 2 / out["rmse_raw"] ** 2
    out["skill_vs_raw_lo"], out["skill_vs_raw_hi"] = (float(x) for x in np.percentile(skill, [2.5, 97.5]))
    if persistence is not None:
        out["skill_vs_persistence"] = 1.0 - out["rmse_corrected"] ** 2 / out["rmse_persistence"] ** 2
    else:
        out.update(bias_persistence=None, rmse_persistence=None, mae_persistence=None, skill_vs_persistence=None)
    return out


def lead_scores(
    *, run: dt.datetime, model_id: str, model_version: str, product_key: str, corrected: np.ndarray, raw: np.ndarray,
    truth: np.ndarray, truth_versions: Sequence[str], valid_dates: Sequence[dt.date], persistence: np.ndarray | None,
    mask: np.ndarray, model: np.ndarray | None = None, sigma: np.ndarray | None = None,
    factor_95: Sequence[float] | None = None, carried: Sequence[str] | None = None,
    live_scale: Sequence[float | None] | None = None, normalised_scores: bool = True,
) -> list[LeadScore]:
    """Rows of the score table for every lead day of one product.

    ``model``: the model's own field where the skill guard carried a reference (else ``corrected`` is it);
    ``sigma`` [lead, lat, lon]: ``sst_uncertainty`` (68 % half-width), with the per-lead 95 % ``factor_95``;
    ``live_scale``: per lead the scale it was issued with (``verification.recalibration``; None: not rescaled),
    divided out of the normalised-score histogram of leads that carried the model (``normalised_scores``:
    False for a product whose ``sst`` is not the model's, a publication-gate fallback).
    """
    from bias_correction.verification.intervals import interval_scores
    from bias_correction.verification.recalibration import z_histogram

    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for k, day in enumerate(valid_dates):
        s = score_lead(corrected[k], raw[k], truth[k], persistence, mask, seed=k)
        ok = mask & np.isfinite(corrected[k]) & np.isfinite(raw[k]) & np.isfinite(truth[k])
        if persistence is not None:
            ok &= np.isfinite(persistence)
        own = corrected[k] if model is None else model[k]
        s["rmse_model"] = float(np.sqrt(np.nanmean(((own - truth[k])[ok & np.isfinite(own)]) ** 2)))
        s["carried"] = None if carried is None else str(carried[k])
        if sigma is not None:
            iv = interval_scores(corrected[k], sigma[k], truth[k], ok,
                                 factor_95=None if factor_95 is None else float(factor_95[k]))
            s.update({c: iv[c] for c in ("coverage_68", "coverage_95", "crps", "sigma_mean")})
            scale = None if live_scale is None else live_scale[k]
            s["live_scale"] = None if scale is None else float(scale)
            if normalised_scores and s["carried"] in (None, "model"):
                base = sigma[k] / (1.0 if scale is None else float(scale))
                s["z_hist"] = z_histogram(np.where(ok, np.abs(corrected[k] - truth[k]), np.nan), base)
        rows.append(LeadScore(run=run.isoformat(), lead=k + 1, valid_date=day.isoformat(), model_id=model_id,
                              model_version=model_version, product_key=product_key, oisst_version=truth_versions[k],
                              scored_at=now, **s))
    return rows


def latest_runs(rows: Sequence[Any], window_days: int) -> list[Any]:
    """The rows of the latest ``window_days`` run days among ``rows`` (the skill guard's evidence
    window, ``pipeline.guard``)."""
    runs = set(sorted({r.run[:10] for r in rows})[-int(window_days):])
    return [r for r in rows if r.run[:10] in runs]


def summary(rows: Sequence[LeadScore]) -> dict[str, Any]:
    """Pooled scores over the rows (RMSE pooled as the root of the mean MSE)."""
    w = np.array([r.n for r in rows], dtype=np.float64)

    def pooled(attr: str) -> float:
        return float(np.sqrt(np.sum(w * np.array([getattr(r, attr) for r in rows]) ** 2) / w.sum()))

    out = {"rmse_corrected": pooled("rmse_corrected"), "rmse_raw": pooled("rmse_raw"), "rows": len(rows)}
    if all(r.rmse_persistence is not None for r in rows):
        out["rmse_persistence"] = pooled("rmse_persistence")
    out["improvement_percent"] = 100.0 * (out["rmse_raw"] - out["rmse_corrected"]) / out["rmse_raw"]
    return out


def markdown_table(rows: Sequence[LeadScore]) -> str:
    """A markdown table of the rows, for Prefect artifacts and reports."""
    head = ("| run | lead | valid | OISST | RMSE corrected [95% CI] | RMSE raw | RMSE persistence | "
            "skill vs raw [95% CI] | skill vs persistence |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        pers = "–" if r.rmse_persistence is None else f"{r.rmse_persistence:.3f}"
        spers = "–" if r.skill_vs_persistence is None else f"{r.skill_vs_persistence:+.2f}"
        lines.append(
            f"| {r.run[:10]} | {r.lead} | {r.valid_date} | {r.oisst_version} | {r.rmse_corrected:.3f} "
            f"[{r.rmse_corrected_lo:.3f}, {r.rmse_corrected_hi:.3f}] | {r.rmse_raw:.3f} | {pers} | "
            f"{r.skill_vs_raw:+.2f} [{r.skill_vs_raw_lo:+.2f}, {r.skill_vs_raw_hi:+.2f}] | {spers} |")
    return "\n".join(lines)


_COLUMNS = [f.name for f in fields(LeadScore)]
_TYPES = {"lead": "INTEGER", "n": "INTEGER"}


class ScoreTable:
    """The accumulating score table: one SQLite file under the storage root.

    Every update is read-modify-write of the whole file, written atomically. On a local root writers are
    serialised with an exclusive ``flock`` (``Store.exclusive``; backfill workers are separate
    processes verifying at once; without it one worker's rows can be lost). A remote root keeps a single
    writer at a time (the backfill and daily flows write from one process per root).
    """

    def __init__(self, store: Store, key: str = TABLE_KEY) -> None:
        self.store, self.key = store, key

    @contextlib.contextmanager
    def _db(self, write: bool) -> Iterator[sqlite3.Connection]:
        with self.store.exclusive(self.key) if write else contextlib.nullcontext(), \
                tempfile.TemporaryDirectory(prefix="sstbc-scores-") as tmp:
            local = Path(tmp) / "scores.sqlite"
            if self.store.exists(self.key):
                local.write_bytes(self.store.read_bytes(self.key))
            con = sqlite3.connect(local)
            try:
                cols = ", ".join(f"{c} {_TYPES.get(c, 'REAL' if c not in _TEXT else 'TEXT')}" for c in _COLUMNS)
                con.execute(f"CREATE TABLE IF NOT EXISTS scores ({cols}, "
                            "PRIMARY KEY (run, lead, model_id, model_version))")
                have = {r[1] for r in con.execute("PRAGMA table_info(scores)")}
                for c in (c for c in _COLUMNS if c not in have):  # a table of an older release: add new columns
                    con.execute(f"ALTER TABLE scores ADD COLUMN {c} {'TEXT' if c in _TEXT else 'REAL'}")
                yield con
                con.commit()
            finally:
                con.close()
            if write:
                self.store.write_bytes(self.key, local.read_bytes())

    def upsert(self, rows: Sequence[LeadScore]) -> None:
        if not rows:
            return
        with self._db(write=True) as con:
            con.executemany(
                f"INSERT OR REPLACE INTO scores ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [tuple(asdict(r)[c] for c in _COLUMNS) for r in rows],
            )

    def rows(self, *, model_id: str | None = None, since: str | None = None) -> list[LeadScore]:
        if not self.store.exists(self.key):
            return []
        query, args = "SELECT * FROM scores WHERE 1=1", []
        if model_id:
            query += " AND model_id = ?"
            args.append(model_id)
        if since:
            query += " AND run >= ?"
            args.append(since)
        with self._db(write=False) as con:
            cur = con.execute(query + " ORDER BY run, lead", args)
            names = [d[0] for d in cur.description]
            return [LeadScore(**dict(zip(names, rec, strict=True))) for rec in cur.fetchall()]

    def versions(self, product_key: str) -> set[str]:
        """OISST versions the stored rows of a product were scored against."""
        return {r.oisst_version for r in self.rows() if r.product_key == product_key}


_TEXT = {"run", "valid_date", "model_id", "model_version", "product_key", "oisst_version", "scored_at", "carried",
         "z_hist"}


def _describe(rows: Sequence[LeadScore]) -> str:
    """'model v (runs A to B, N runs)' for plot titles."""
    models = ", ".join(sorted({f"{r.model_id} {r.model_version}" for r in rows}))
    runs = sorted({r.run[:10] for r in rows})
    period = runs[0] if len(runs) == 1 else f"{runs[0]} to {runs[-1]}"
    return f"{models}; runs {period} ({len(runs)} run{'s' if len(runs) != 1 else ''})"


def plot_rmse_by_lead(rows: Sequence[LeadScore], path: Path) -> Path:
    """PNG of :func:`rmse_by_lead_figure`."""
    import matplotlib.pyplot as plt

    fig = rmse_by_lead_figure(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def rmse_by_lead_figure(rows: Sequence[LeadScore]) -> Any:
    """RMSE by run for each lead (markers and bootstrap 95 % intervals, so a single run shows; the axis
    spans the runs plus a day), and RMSE by lead pooled over the runs (corrected and raw with their
    intervals, persistence); the title names the model(s) and the period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    leads = sorted({r.lead for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    days = sorted({np.datetime64(r.run[:10]) for r in rows})
    for i, lead in enumerate(leads):
        sel = sorted((r for r in rows if r.lead == lead), key=lambda r: r.run)
        t = np.array([np.datetime64(r.run[:10]) for r in sel]) + np.timedelta64(i * 2, "h")  # offset: no overlap
        mid = np.array([r.rmse_corrected for r in sel])
        lo = np.clip(mid - np.array([r.rmse_corrected_lo for r in sel]), 0, None)
        hi = np.clip(np.array([r.rmse_corrected_hi for r in sel]) - mid, 0, None)
        axes[0].errorbar(t.astype("datetime64[ms]").astype(object), mid, yerr=[lo, hi], fmt="o-", ms=4, capsize=2,
                         lw=1, label=f"lead {lead}")
    pad = np.timedelta64(1, "D")
    axes[0].set_xlim((days[0] - pad).astype("datetime64[ms]").astype(object),
                     (days[-1] + pad).astype("datetime64[ms]").astype(object))
    axes[0].xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    axes[0].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    axes[0].set_title("corrected SST RMSE vs OISST by run (95 % intervals)", fontsize=10)
    axes[0].set_xlabel("forecast run")
    axes[0].set_ylabel("RMSE (°C)")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=7, ncol=2)
    by_lead = {k: [r for r in rows if r.lead == k] for k in leads}

    def pooled(attr: str) -> np.ndarray:
        return np.array([np.sqrt(np.mean([getattr(r, attr) ** 2 for r in by_lead[k]]))
                         if all(getattr(r, attr) is not None for r in by_lead[k]) else np.nan for k in leads])

    for name, attr, lo_a, hi_a in (("corrected", "rmse_corrected", "rmse_corrected_lo", "rmse_corrected_hi"),
                                   ("raw HYCOM", "rmse_raw", "rmse_raw_lo", "rmse_raw_hi"),
                                   ("persistence", "rmse_persistence", None, None)):
        mid = pooled(attr)
        if np.isnan(mid).all():
            continue
        if lo_a is None:
            axes[1].plot(leads, mid, "s--", label=name)
            continue
        lo = np.array([np.mean([getattr(r, lo_a) for r in by_lead[k]]) for k in leads])
        hi = np.array([np.mean([getattr(r, hi_a) for r in by_lead[k]]) for k in leads])
        axes[1].errorbar(leads, mid, yerr=[np.clip(mid - lo, 0, None), np.clip(hi - mid, 0, None)], fmt="o-",
                         capsize=3, label=f"{name} (95 % interval)")
    axes[1].set_xticks(leads)
    axes[1].set_xlabel("lead day")
    axes[1].set_ylabel("RMSE (°C)")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("RMSE by lead, pooled over the runs", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.suptitle(_describe(rows))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_maps(lat: np.ndarray, lon: np.ndarray, mean_correction: np.ndarray, mean_error: np.ndarray, path: Path,
              title: str = "") -> Path:
    """PNG: maps of the mean correction (corrected − raw) and the mean error (corrected − OISST), on a
    diverging perceptual colour map centred on zero, with the coastline of the bundled land mask."""
    import cmocean
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bias_correction.io.quicklook import coastline

    coast = coastline(np.asarray(lat), np.asarray(lon))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, field, label in ((axes[0], mean_correction, "mean correction (K)"),
                             (axes[1], mean_error, "mean error vs OISST (K)")):
        lim = float(np.nanmax(np.abs(field))) if np.isfinite(field).any() else 1.0
        lim = lim or 1.0
        im = ax.pcolormesh(lon, lat, field, cmap=cmocean.cm.balance, vmin=-lim, vmax=lim, shading="auto")
        if coast[2].any() and not coast[2].all():
            ax.contour(coast[1], coast[0], coast[2], levels=[0.5], colors="k", linewidths=0.8)
        ax.set_title(label)
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
