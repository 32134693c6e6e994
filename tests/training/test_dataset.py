from __future__ import annotations

import numpy as np
import pytest

from bias_correction.errors import ConfigError
from bias_correction.training.dataset import (
    build_samples,
    make_loader,
    normalisation,
    split_by_valid_date,
    split_chronological,
)
from tests.training import synthetic_cubes


def test_samples_windows_targets_and_missing_runs() -> None:
    hy, oi, mask, _ = synthetic_cubes(nruns=12, missing_runs=(5,))
    s = build_samples(hy, oi, mask, seq_len=3)
    # runs 0..11 minus 5; a window of 3 consecutive runs ends at 2,3,4,8,9,10,11 -> 7 runs x 7 leads
    assert len(s) == 7 * 7
    assert s.x.shape == (49, 3, 12, 16) and s.y.shape == (49, 12, 16) and s.x.dtype == np.float32
    assert np.all(np.diff(s.valid.astype(int)) >= 0)
    np.testing.assert_array_equal(s.valid, s.run + s.lead.astype("timedelta64[D]"))
    # the last frame is the HYCOM field of run R at lead k, the target OISST of day R+k
    i = int(np.flatnonzero((s.lead == 2) & (s.run == np.datetime64("2021-01-09")))[0])
    run_sel = hy.sel(run=np.datetime64("2021-01-09T12:00"), lead=2).values
    np.testing.assert_array_equal(s.x[i, -1], run_sel)
    np.testing.assert_array_equal(s.y[i], oi.sel(time="2021-01-11").values)
    np.testing.assert_array_equal(s.x[i, 0], hy.sel(run=np.datetime64("2021-01-07T12:00"), lead=2).values)
    assert np.isnan(s.x[:, :, ~mask.values]).all() and np.isfinite(s.x[:, :, mask.values]).all()


def test_missing_oisst_day_skips_samples() -> None:
    hy, oi, mask, _ = synthetic_cubes(nruns=8)
    oi = oi.where(oi.time != np.datetime64("2021-01-06"))  # all NaN that day -> missing
    s = build_samples(hy, oi, mask, seq_len=2)
    assert np.datetime64("2021-01-06") not in set(s.valid.tolist())
    # windows end on runs Jan 2..8 (7 x 7 leads); Jan 6 is the valid day of runs Jan 2..5 (leads 4..1)
    assert len(s) == 7 * 7 - 4


def test_chronological_split_has_gap_and_fraction() -> None:
    hy, oi, mask, _ = synthetic_cubes(nruns=40)
    s = build_samples(hy, oi, mask, seq_len=4)
    train, val = split_chronological(s, 0.2, gap_days=4)
    assert abs(len(val) / len(s) - 0.2) < 0.05
    gap = (val.valid.min() - train.valid.max()).astype(int)
    assert gap >= 4 + 1  # at least 4 whole empty days between the periods
    a, b, c = split_by_valid_date(s, ["2021-01-15", "2021-01-30"], gap_days=2)
    assert a.valid.max() < np.datetime64("2021-01-13") and b.valid.min() >= np.datetime64("2021-01-15")
    assert b.valid.max() < np.datetime64("2021-01-28") and c.valid.min() >= np.datetime64("2021-01-30")
    with pytest.raises(ConfigError):
        split_by_valid_date(s, ["2021-02-01", "2021-01-01"])


def test_normalisation_uses_given_samples_only() -> None:
    hy, oi, mask, _ = synthetic_cubes(nruns=30)
    s = build_samples(hy, oi, mask, seq_len=2)
    train, val = split_chronological(s, 0.3, gap_days=2)
    vmin, vmax = normalisation(train)
    assert vmin == pytest.approx(min(np.nanmin(train.x), np.nanmin(train.y)))
    assert vmax == pytest.approx(max(np.nanmax(train.x), np.nanmax(train.y)))
    assert (vmin, vmax) != normalisation(s)
    x, lead, aux, y = next(iter(make_loader(train, 5, shuffle=True, seed=0)))
    assert aux.shape == (5, 2, 0, *train.shape)  # no auxiliary inputs requested
    assert x.shape == (5, 2, 12, 16) and lead.shape == (5,) and y.shape == (5, 12, 16)


def test_latest_oisst_input_is_the_analysis_known_at_each_run() -> None:
    hy, oi, mask, _ = synthetic_cubes(nruns=20)
    s = build_samples(hy, oi, mask, seq_len=3, aux_inputs=("oisst_latest",), oisst_lag_days=2)
    plain = build_samples(hy, oi, mask, seq_len=3)
    assert s.aux_names == ("oisst_latest",) and s.aux.shape == (len(s), 3, 1, *s.shape)
    assert 0 < len(s) < len(plain)  # the first runs have no analysis 2 days before them
    days = oi["time"].values.astype("datetime64[D]")
    for i in (0, len(s) // 2, len(s) - 1):
        for j in range(3):  # step j is run R-2+j; its latest analysis is 2 days older than that run
            want = days.tolist().index((s.run[i] - np.timedelta64(2 - j, "D") - np.timedelta64(2, "D")).tolist())
            np.testing.assert_array_equal(s.aux[i, j, 0], np.where(mask.values, oi.values[want], np.nan))
        assert (s.run[i] - np.timedelta64(2, "D")) < s.valid[i]  # never the target day (no leakage)
    assert s.with_aux(()).aux is None and s.subset(np.arange(2)).aux.shape[0] == 2
    with pytest.raises(Exception, match="surf_el"):
        s.with_aux(("surf_el",))


def test_hycom_tendency_is_the_same_runs_change_since_lead_day_one() -> None:
    """The derived input needs no field of its own: sample i, step j = run R-T+1+j's SST at the lead minus at lead 1."""
    hy, oi, mask, _ = synthetic_cubes(nruns=12)
    s = build_samples(hy, oi, mask, seq_len=3, aux_inputs=("oisst_latest", "hycom_tendency"))
    assert s.aux_names == ("oisst_latest", "hycom_tendency")
    runs = hy["run"].values.astype("datetime64[D]")
    ocean = mask.values
    lead_pos = {int(k): i for i, k in enumerate(hy["lead"].values)}
    checked = 0
    for i in range(0, len(s), max(1, len(s) // 9)):
        r = runs.tolist().index(s.run[i].tolist())
        k = lead_pos[int(s.lead[i])]
        for j in range(3):
            run_j = hy.values[r - 2 + j]
            want = np.where(ocean, run_j[k] - run_j[0], np.nan)
            np.testing.assert_allclose(s.aux[i, j, 1], want, rtol=0, atol=1e-6)
        checked += 1
        if int(s.lead[i]) == 1:
            assert np.nanmax(np.abs(s.aux[i, :, 1])) == 0.0
    assert checked >= 5 and np.nanmax(np.abs(s.aux[:, :, 1])) > 0
