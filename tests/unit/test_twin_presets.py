"""Twin presets: classic is bit-identical to Twin(); the hard preset has the statistics it documents."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bias_correction.config import Region
from bias_correction.testing.twin import Twin, TwinConfig
from bias_correction.testing.twin_presets import PRESETS, error_statistics, make_twin, oisst_version_statistics, sample_runs

LAT = np.arange(12.04, 16.0, 0.4)
LON = np.arange(110.04, 114.0, 0.4)


@pytest.fixture(scope="module")
def hard():
    return make_twin("hard")


def test_classic_preset_is_twin_bit_for_bit() -> None:
    a, b = make_twin("classic"), Twin(TwinConfig())
    run = dt.datetime(2021, 4, 20, 12)
    assert np.array_equal(a.hycom(run, a.daily_taus(3), LAT, LON), b.hycom(run, b.daily_taus(3), LAT, LON), equal_nan=True)
    for prelim in (False, True):
        assert np.array_equal(a.oisst(run.date(), LAT, LON, prelim)["sst"], b.oisst(run.date(), LAT, LON, prelim)["sst"],
                              equal_nan=True)
    ea, eb = a.hycom_daily_error(run, 2, LAT, LON), b.hycom_daily_error(run, 2, LAT, LON)
    assert np.array_equal(ea["unpredictable"], eb["unpredictable"], equal_nan=True)
    assert make_twin("classic", seed=7).config.seed == 7 and PRESETS["classic"].region == Region()
    with pytest.raises(ValueError, match="unknown twin preset 'nope'"):
        make_twin("nope")


def test_hard_preset_error_statistics(hard) -> None:
    # a reduced sample: 2 consecutive runs a month, leads 1 and 7, a 10 x 10 subgrid of the default box
    s = error_statistics(hard, Region(), sample_runs(2021, pair_days=(3,)), leads=(1, 7), stride=5)
    assert 0.45 <= s["rmse"] <= 0.60
    assert s["monthly_rmse_ratio"] >= 1.3
    assert s["lag1_same_lead"] >= 0.5
    assert s["kurtosis"] > 3.0
    assert s["unpredictable_rmse"] > 0.2  # harder than classic's ~0.19 floor
    regime = error_statistics(hard, Region(), [dt.datetime(2024, m, 10, 12) for m in range(1, 13)], leads=(1,), stride=5)
    assert regime["mean_bias_before"] - regime["mean_bias_after"] >= 0.15


def test_hard_region_has_coast_and_islands(hard) -> None:
    from scipy import ndimage

    from bias_correction.grid.grids import target_grid

    grid = target_grid(PRESETS["hard"].region, 0.08)
    land = np.asarray(hard.land(grid.lat, grid.lon), dtype=bool)
    _, pieces = ndimage.label(land)
    assert 0.05 < land.mean() < 0.3 and pieces >= 2  # Vietnam's coast and Hainan (an island)


def test_hard_wakes_are_missed_then_taken_in(hard) -> None:
    wakes = hard.wakes(float(7671), float(8036))  # 2021
    assert 2 <= len([w for w in wakes if 2021 == (dt.datetime(2000, 1, 1) + dt.timedelta(days=w.onset)).year]) <= 8
    w = next(w for w in wakes if 12 < w.lat < 16 and 110 < w.lon < 114)
    onset = dt.datetime(2000, 1, 1) + dt.timedelta(days=w.onset)
    band = hard.wake_shape(w, LAT, LON) > 0.5
    valid = onset + dt.timedelta(days=6)
    day12 = dt.datetime(onset.year, onset.month, onset.day, 12)

    def warm_error(run: dt.datetime) -> float:  # HYCOM - truth in the wake band minus elsewhere, at the valid time
        err = hard.hycom(run, np.array([(valid - run).total_seconds() / 3600.0]), LAT, LON)[0, 0] - hard.truth(valid, LAT, LON)
        return float(np.nanmean(err[band]) - np.nanmean(err[~band]))

    before, after = warm_error(day12 - dt.timedelta(days=1)), warm_error(day12 + dt.timedelta(days=5))
    assert before - after > 0.2 * w.amp  # the run before the onset misses the cooling, one 5 days later has it


def test_hard_preliminary_noisier_and_final_borrows_neighbour_days(hard) -> None:
    days = [dt.date(2021, m, 10) for m in (1, 4, 7, 10)]
    v = oisst_version_statistics(hard, Region(), days, stride=5)
    assert v["rmse_preliminary"] > v["rmse_final"] + 0.02
    # consecutive finals share two of their three days (3 days of AVHRR): they change far less from day to
    # day than the preliminaries (one day each, independent noise), though the truth changes the same
    change = {p: np.sqrt(np.nanmean(np.stack([hard.oisst(d + dt.timedelta(days=1), LAT, LON, p)["sst"]
                                              - hard.oisst(d, LAT, LON, p)["sst"] for d in days]) ** 2))
              for p in (False, True)}
    assert change[False] < 0.6 * change[True]
