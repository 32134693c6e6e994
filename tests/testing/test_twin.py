"""The synthetic ocean: determinism, plausibility in the SCS box, exact error bookkeeping, speed."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from bias_correction.testing.formats import OISST_LAT, OISST_LON, glby_lat, glby_lon
from bias_correction.testing.twin import Twin, TwinConfig

# SCS box on the native GLBy grid (101 x 51) and on a 0.08 degree product-like grid (50 x 50)
HY_LAT = glby_lat(np.arange(2300, 2401))
HY_LON = glby_lon(np.arange(1375, 1426))
BOX_LAT = 12.04 + 0.08 * np.arange(50)
BOX_LON = 110.04 + 0.08 * np.arange(50)
TAUS = np.arange(0.0, 181.0, 3.0)
RUN = datetime(2021, 3, 1, 12)


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin()


def test_deterministic_and_seeded(twin: Twin) -> None:
    a = Twin().hycom(RUN, TAUS[:4], BOX_LAT[:10], BOX_LON[:10])
    b = twin.hycom(RUN, TAUS[:4], BOX_LAT[:10], BOX_LON[:10])
    c = Twin(TwinConfig(seed=7)).hycom(RUN, TAUS[:4], BOX_LAT[:10], BOX_LON[:10])
    np.testing.assert_array_equal(a, b)
    assert np.nanmax(np.abs(a - c)) > 0.05


def test_land_mask_any_lon_convention(twin: Twin) -> None:
    lat = np.array([10.0, 14.0, 21.0, 45.0])
    lon360 = np.array([106.0, 112.0, 260.0, 350.0])
    land = twin.land(lat, lon360)
    assert land.dtype == bool and land.shape == (4, 4)
    np.testing.assert_array_equal(land, twin.land(lat, lon360 - np.where(lon360 > 180, 360, 0)))
    assert land[0, 0]  # Mekong delta region (10N, 106E)
    assert not land[1, 1]  # central South China Sea
    assert land[3, 2]  # North America (45N, 100W)


def test_truth_plausible_in_box(twin: Twin) -> None:
    feb = twin.truth(datetime(2021, 2, 15, 12), BOX_LAT, BOX_LON)
    aug = twin.truth(datetime(2021, 8, 15, 12), BOX_LAT, BOX_LON)
    assert feb.shape == (50, 50)
    assert 25.5 < np.nanmean(feb) < 27.5
    assert 27.0 < np.nanmean(aug) < 28.5
    swing = np.nanmean(aug) - np.nanmean(feb)
    assert 0.8 < swing < 2.4
    assert 0.2 < np.nanstd(feb) < 1.0  # mesoscale structure


def test_truth_nan_on_land_and_periodic_in_lon(twin: Twin) -> None:
    when = datetime(2021, 5, 1)
    lat = np.array([-60.0, 0.5, 14.0, 48.0])
    a = twin.truth(when, lat, np.array([0.0, 112.0, 180.0]))
    b = twin.truth(when, lat, np.array([360.0, -248.0, -180.0]))
    np.testing.assert_allclose(a, b, atol=1e-9)
    land = twin.truth(when, np.array([48.0]), np.array([2.0]))  # France
    assert np.isnan(land).all()


def test_truth_smooth_in_time(twin: Twin) -> None:
    a = twin.truth(datetime(2021, 6, 1), BOX_LAT, BOX_LON)
    b = twin.truth(datetime(2021, 6, 1, 3), BOX_LAT, BOX_LON)
    c = twin.truth(datetime(2021, 6, 11), BOX_LAT, BOX_LON)
    assert np.nanmax(np.abs(a - b)) < 0.05
    assert np.nanstd(a - c) > 0.05


def test_oisst_fields_global(twin: Twin) -> None:
    lat = OISST_LAT[::4].astype(float)
    lon = OISST_LON[::4].astype(float)
    o = twin.oisst(date(2021, 2, 18), lat, lon)
    assert set(o) == {"sst", "anom", "err", "ice"}
    land = twin.land(lat, lon)
    for key in ("sst", "anom", "err"):
        assert o[key].shape == (180, 360)
        assert np.isnan(o[key][land]).all() and np.isfinite(o[key][~land]).all()
    assert np.nanmin(o["sst"]) >= -1.8 and np.nanmax(o["sst"]) < 32
    assert 0.08 < np.nanmean(o["err"]) < 0.2
    ice = np.isfinite(o["ice"])
    assert ice.any()
    assert (o["sst"][ice] < -1.5).all() and np.nanmin(o["ice"]) >= 15 and np.nanmax(o["ice"]) <= 100
    assert np.isnan(o["ice"][np.isfinite(o["sst"]) & (o["sst"] >= -1.5)]).all()
    assert abs(np.nanmean(o["anom"])) < 0.5


def test_oisst_is_smoother_than_truth_and_preliminary_differs(twin: Twin) -> None:
    day = date(2021, 4, 10)
    final = twin.oisst(day, BOX_LAT, BOX_LON)["sst"]
    prelim = twin.oisst(day, BOX_LAT, BOX_LON, preliminary=True)["sst"]
    truth = twin.truth(datetime(2021, 4, 10, 12), BOX_LAT, BOX_LON)
    d_final = np.nanstd(np.diff(final, axis=1))
    d_truth = np.nanstd(np.diff(truth, axis=1))
    assert d_final < d_truth
    diff = np.abs(prelim - final)
    assert 0.01 < np.nanmean(diff) < 0.3


def test_hycom_shape_land_depth(twin: Twin) -> None:
    lat = np.array([10.0, 12.0, 14.0])
    lon = np.array([106.0, 112.0])
    depth = np.array([0.0, 10.0, 100.0, 1000.0])
    h = twin.hycom(RUN, np.array([0.0, 3.0, 6.0]), lat, lon, depth)
    assert h.shape == (3, 4, 3, 2)
    assert np.isnan(h[:, :, 0, 0]).all()  # land
    sea = h[:, :, 2, 1]
    np.testing.assert_array_equal(sea[:, 0], sea[:, 1])  # mixed layer
    assert (np.diff(sea[:, 1:], axis=1) < 0).all()
    np.testing.assert_array_equal(twin.hycom(RUN, np.array([0.0, 3.0, 6.0]), lat, lon)[:, 0], h[:, 0])


def test_hycom_subset_consistency_near_coast(twin: Twin) -> None:
    """The same native cell gets the same value whatever window it is evaluated in (coastal term included)."""
    lat = glby_lat(np.arange(2250, 2330))  # 10-13.2N, Vietnam coast
    lon = glby_lon(np.arange(1350, 1400))  # 108-111.9E
    big = twin.hycom(RUN, np.array([24.0]), lat, lon)
    small = twin.hycom(RUN, np.array([24.0]), lat[30:45], lon[5:12])
    np.testing.assert_allclose(small, big[:, :, 30:45, 5:12], atol=1e-12)
    coast = twin.coast_distance_km(lat, lon)
    assert np.nanmin(coast[~twin.land(lat, lon)]) < 10 and coast.max() > 100


def test_hycom_diurnal_peaks_in_afternoon(twin: Twin) -> None:
    # 112E: local = UTC + 7.5 h, so 06Z ~ 13:30 local (warm) and 21Z ~ 04:30 local (cold)
    taus = np.array([18.0, 27.0])  # 06Z and 15Z of day+1
    h = twin.hycom(RUN, taus, BOX_LAT, BOX_LON)[:, 0]
    assert np.nanmean(h[0] - h[1]) > 0.3


def test_daily_error_is_exactly_consistent(twin: Twin) -> None:
    run = datetime(2021, 7, 3, 12)
    for k in (1, 4):
        d = twin.hycom_daily_error(run, k, BOX_LAT, BOX_LON)
        taus = 24.0 * k - 12 + 3 * np.arange(8)
        assert taus[0] == 24 * k - 12 and taus[-1] == 24 * k + 9
        daily = twin.hycom(run, taus, BOX_LAT, BOX_LON)[:, 0].mean(axis=0)
        ois = twin.oisst(run.date() + timedelta(days=k), BOX_LAT, BOX_LON)["sst"]
        np.testing.assert_allclose(d["predictable"] + d["unpredictable"], daily - ois, atol=1e-10)
        np.testing.assert_allclose(d["total"], daily - ois, atol=1e-10)
    with pytest.raises(ValueError):
        twin.hycom_daily_error(run, 0, BOX_LAT, BOX_LON)


def test_random_error_correlated_between_neighbouring_leads(twin: Twin) -> None:
    run = datetime(2021, 9, 9, 12)
    u = [twin._unpredictable(run, k, BOX_LAT, BOX_LON).ravel() for k in (2, 3, 7)]
    near = np.corrcoef(u[0], u[1])[0, 1]
    far = np.corrcoef(u[0], u[2])[0, 1]
    assert near > 0.4
    assert near > far
    assert np.nanstd(u[2]) > np.nanstd(u[0])  # grows with lead


def test_scs_targets_over_twenty_runs(twin: Twin) -> None:
    """Raw RMSE(daily HYCOM - OISST) ~0.4-0.6 degC; oracle floor ~0.15-0.25 degC (leads 1..7)."""
    runs = [datetime(2021, 1, 3, 12) + timedelta(days=18 * i) for i in range(20)]
    sq, floors = [], []
    for run in runs:
        for k in range(1, 8):
            total = twin.hycom_daily_error(run, k, BOX_LAT, BOX_LON)["total"]
            sq.append(np.nanmean(total**2))
        floors.append(twin.oracle_floor(run, range(1, 8), BOX_LAT, BOX_LON))
    raw = float(np.sqrt(np.mean(sq)))
    floor = float(np.sqrt(np.mean(np.square(floors))))
    assert 0.4 <= raw <= 0.6, raw
    assert 0.15 <= floor <= 0.25, floor
    assert floor < 0.6 * raw


def test_oracle_floor_mask(twin: Twin) -> None:
    mask = np.zeros((50, 50), dtype=bool)
    mask[:10, :10] = True
    part = twin.oracle_floor(RUN, [1, 2], BOX_LAT, BOX_LON, mask=mask)
    assert part > 0
    with pytest.raises(ValueError):
        twin.oracle_floor(RUN, [1], BOX_LAT, BOX_LON, mask=np.zeros((50, 50), dtype=bool))


def _best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = np.inf
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_performance(twin: Twin) -> None:
    twin.hycom(RUN, TAUS, HY_LAT, HY_LON)  # warm the land/coast caches
    t_hycom = _best_of(3, lambda: twin.hycom(RUN + timedelta(days=1), TAUS, HY_LAT, HY_LON))
    lat, lon = OISST_LAT.astype(float), OISST_LON.astype(float)
    twin.land(lat, lon)
    t_oisst = _best_of(2, lambda: twin.oisst(date(2021, 5, 5), lat, lon))
    assert t_hycom < 0.5, t_hycom
    assert t_oisst < 1.0, t_oisst
