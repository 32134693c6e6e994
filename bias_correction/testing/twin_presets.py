"""Named twin presets: which synthetic ocean, and which benchmark region, a run or a test uses.

Why: old numbers must stay reproducible (``classic`` is today's ``Twin(TwinConfig())`` bit for bit and
the default everywhere) while new work measures against the harder twin (``hard``,
:mod:`bias_correction.testing.twin_hard`). Every preset's object has the methods of
:class:`~bias_correction.testing.twin.Twin` (truth, oisst, hycom, hycom_daily_error, land,
hycom_surf_el, hycom_daily_surf_el, daily_taus, oracle_floor), so stand-ins and benchmarks take either.

:func:`error_statistics` measures what the hard preset is documented to match (``python -m
bias_correction.testing.twin_presets`` prints it for both presets).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bias_correction.config import Region
from bias_correction.testing.twin import Twin, TwinConfig
from bias_correction.testing.twin_hard import HardTwin, HardTwinConfig


@dataclass(frozen=True)
class TwinPreset:
    """A named twin: what it is, its benchmark region, and how to build it for a seed (None = default)."""

    name: str
    description: str
    region: Region
    make: Callable[[int | None], Twin]


def _classic(seed: int | None) -> Twin:
    return Twin(TwinConfig() if seed is None else TwinConfig(seed=seed))


def _hard(seed: int | None) -> HardTwin:
    return HardTwin(HardTwinConfig() if seed is None else HardTwinConfig(seed=seed))


PRESETS: dict[str, TwinPreset] = {p.name: p for p in (
    TwinPreset("classic", "the original twin (Twin(TwinConfig())): old numbers reproduce", Region(), _classic),
    TwinPreset("hard", "persistent run-to-run errors, misplaced eddies, GOFS->ESPC regime change on 2024-09-05, "
               "missed cold wakes, heavy tails; as-issued preliminary vs 3-day final OISST; coastal box",
               Region(name="scs-coast", lat_min=15.0, lat_max=19.0, lon_min=108.0, lon_max=112.0), _hard),
)}


def make_twin(preset: str = "classic", seed: int | None = None) -> Twin:
    """The twin of ``preset`` (a :data:`PRESETS` name) for ``seed`` (None = the preset's default)."""
    try:
        return PRESETS[preset].make(seed)
    except KeyError:
        raise ValueError(f"unknown twin preset {preset!r}; known: {', '.join(PRESETS)}") from None


def sample_runs(year: int, pair_days: Sequence[int] = (3, 17)) -> list[dt.datetime]:
    """12Z runs of ``year``: per month, each of ``pair_days`` and the day after (consecutive pairs)."""
    return [dt.datetime(year, m, d + j, 12) for m in range(1, 13) for d in pair_days for j in (0, 1)]


def error_statistics(twin: Twin, region: Region, runs: Sequence[dt.datetime], leads: Sequence[int] = range(1, 8),
                     stride: int = 2, step: float = 0.08) -> dict[str, Any]:
    """Statistics of (daily-mean HYCOM - final OISST) over ``runs`` x ``leads`` on every ``stride``-th cell.

    rmse (degC); monthly_rmse_ratio (max/min of monthly RMSE); lag1_same_lead (correlation of the error
    anomaly, minus its per-cell per-lead mean, between runs r and r+1 at the same lead) and
    lag1_same_valid (runs r, lead k vs r+1, lead k-1; consecutive ``leads``), None without consecutive runs; kurtosis (Pearson, 3 for a normal) of that anomaly;
    mean_bias_before/after the hard twin's regime switch (None when no run falls on that side);
    unpredictable_rmse; land_share of the region's grid.
    """
    from scipy import stats

    from bias_correction.grid.grids import target_grid

    grid = target_grid(region, step)
    lat, lon = grid.lat[::stride], grid.lon[::stride]
    land_full = np.asarray(twin.land(grid.lat, grid.lon), dtype=bool)
    runs = list(runs)
    leads = list(leads)
    err = np.full((len(runs), len(leads), len(lat), len(lon)), np.nan)
    unpred = np.full_like(err, np.nan)
    for i, run in enumerate(runs):
        for j, k in enumerate(leads):
            d = twin.hycom_daily_error(run, k, lat, lon)
            err[i, j] = d["hycom"] - d["oisst"]
            unpred[i, j] = d["unpredictable"]
    months = np.array([r.month for r in runs])
    monthly = [float(np.sqrt(np.nanmean(err[months == m] ** 2))) for m in np.unique(months)]
    anom = err - np.nanmean(err, axis=0, keepdims=True)
    index = {r: i for i, r in enumerate(runs)}
    pairs = [(i, index[r + dt.timedelta(days=1)]) for i, r in enumerate(runs) if r + dt.timedelta(days=1) in index]

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    same_lead = same_valid = None  # no consecutive runs sampled
    if pairs:
        same_lead = corr(np.stack([anom[i] for i, _ in pairs]), np.stack([anom[n] for _, n in pairs]))
        same_valid = corr(np.stack([anom[i, 1:] for i, _ in pairs]), np.stack([anom[n, :-1] for _, n in pairs]))
    switch = getattr(twin, "after_switch", None)
    after = np.array([bool(switch(r)) if switch else False for r in runs])
    flat = anom[np.isfinite(anom)]
    return {
        "rmse": float(np.sqrt(np.nanmean(err**2))), "monthly_rmse": monthly,
        "monthly_rmse_ratio": max(monthly) / min(monthly), "lag1_same_lead": same_lead, "lag1_same_valid": same_valid,
        "kurtosis": float(stats.kurtosis(flat, fisher=False)),
        "mean_bias_before": float(np.nanmean(err[~after])) if (~after).any() else None,
        "mean_bias_after": float(np.nanmean(err[after])) if after.any() else None,
        "unpredictable_rmse": float(np.sqrt(np.nanmean(unpred**2))), "land_share": float(land_full.mean()),
    }


def oisst_version_statistics(twin: Twin, region: Region, days: Sequence[dt.date], stride: int = 2,
                             step: float = 0.08) -> dict[str, float]:
    """RMSE (degC) of the preliminary and of the final against the daily-mean truth of day d, and the
    correlation of each one's error (version - truth of d) with the truth's change to d-1 and to d+1:
    how much a version borrows from the neighbouring days (the final does, by construction of 3-day AVHRR)."""
    from bias_correction.grid.grids import target_grid

    grid = target_grid(region, step)
    lat, lon = grid.lat[::stride], grid.lon[::stride]

    def daily_truth(day: dt.date) -> np.ndarray:
        base = dt.datetime(day.year, day.month, day.day)
        return np.mean([twin.truth(base + dt.timedelta(hours=3 * h), lat, lon) for h in range(8)], axis=0)

    rows: dict[str, list[np.ndarray]] = {"preliminary": [], "final": [], "prev": [], "next": []}
    for day in days:
        truth = {j: daily_truth(day + dt.timedelta(days=j)) for j in (-1, 0, 1)}
        rows["preliminary"].append(twin.oisst(day, lat, lon, preliminary=True)["sst"] - truth[0])
        rows["final"].append(twin.oisst(day, lat, lon)["sst"] - truth[0])
        rows["prev"].append(truth[-1] - truth[0])
        rows["next"].append(truth[1] - truth[0])
    a = {k: np.stack(v) for k, v in rows.items()}
    ok = np.isfinite(a["final"])
    out = {}
    for version in ("preliminary", "final"):
        e = a[version][ok]
        out[f"rmse_{version}"] = float(np.sqrt(np.mean(e**2)))
        for side in ("prev", "next"):
            out[f"corr_{version}_error_truth_change_{side}"] = float(np.corrcoef(e, a[side][ok])[0, 1])
    return out


if __name__ == "__main__":  # pragma: no cover - the measurement behind the module docstrings
    import json
    import sys

    year = int(sys.argv[1]) if len(sys.argv) > 1 else 2021
    for name, preset in PRESETS.items():
        tw = make_twin(name)
        days = [dt.date(year, m, 10) for m in range(1, 13)]
        out = {"default_box": error_statistics(tw, Region(), sample_runs(year)),
               "preset_box": error_statistics(tw, preset.region, sample_runs(year)),
               "regime_2024": error_statistics(tw, Region(), sample_runs(2024), leads=(1, 4, 7)),
               "oisst_versions": oisst_version_statistics(tw, Region(), days)}
        print(name, json.dumps(out, indent=1))
