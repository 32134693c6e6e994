"""Issue 15: a HYCOM run file is validated and averaged one time step at a time, equal to the whole-file
reading, in memory that does not grow with the run's number of steps."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bias_correction.errors import InputValidationError
from bias_correction.grid.lonlat import subset_box
from bias_correction.sources.hycom import (
    daily_means,
    daily_means_of_file,
    read_surface_field,
    validate_hycom_file,
    write_run_file,
)
from bias_correction.sources.hycom.products import HYCOM_EPOCH
from bias_correction.testing.formats import glby_lat, glby_lon

RUN = dt.datetime(2021, 3, 10, 12)
TAUS = np.arange(0.0, 180.0, 3.0)  # 0..177 h: seven lead days
ATTRS = {"_FillValue": np.int16(-30000), "missing_value": np.int16(-30000), "scale_factor": 0.001,
         "add_offset": 20.0, "units": "degC", "long_name": "Water Temperature"}


def _run_file(path: Path, ny: int, nx: int, *, lon0: int = 1370, seed: int = 0, banded: bool = False) -> Path:
    lat, lon = glby_lat(np.arange(2300, 2300 + ny)), glby_lon(np.arange(lon0, lon0 + nx))
    rng = np.random.default_rng(seed)
    hours = (RUN - HYCOM_EPOCH).total_seconds() / 3600 + TAUS

    def rows(sl: slice) -> np.ndarray:
        n = len(range(*sl.indices(ny)))
        temp = 26.0 + rng.normal(0.0, 1.5, (len(TAUS), n, nx))
        temp[:, :, :3] = np.nan  # a land strip
        return np.where(np.isfinite(temp), np.round((temp - 20.0) / 0.001), -30000).astype(np.int16)

    write_run_file(path, RUN, hours, TAUS, lat, lon, rows if banded else rows(slice(0, ny)), ATTRS, "test")
    return path


@pytest.mark.parametrize("box", [None, (12.2, 13.0, 110.3, 111.0, 0.09)])
def test_banded_daily_means_equal_the_whole_file_reading(tmp_path: Path, box) -> None:
    path = _run_file(tmp_path / "run.nc", 30, 24)
    validate_hycom_file(path, RUN, 168)
    whole = read_surface_field(path, RUN)
    if box is not None:
        whole = subset_box(whole, *box)
    expected = daily_means(whole, RUN, 7)
    for banded in (False, True):
        if banded:  # the same values written band by band (another chunking)
            path = _run_file(tmp_path / "banded.nc", 30, 24, banded=True)
        got = daily_means_of_file(path, RUN, 7, box=box)
        assert got.dims == expected.dims and got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got["lat"].values, expected["lat"].values)
        np.testing.assert_array_equal(got["lon"].values, expected["lon"].values)
        np.testing.assert_array_equal(got["valid_date"].values, expected["valid_date"].values)
        np.testing.assert_allclose(got.values, expected.values, atol=2e-5, equal_nan=True)
        assert got.attrs == expected.attrs


def test_banded_validation_keeps_its_verdicts(tmp_path: Path) -> None:
    path = _run_file(tmp_path / "run.nc", 20, 10)
    import netCDF4

    with netCDF4.Dataset(path, "a") as ds:  # one out-of-range value in the last band
        ds["water_temp"].set_auto_maskandscale(False)
        ds["water_temp"][5, 0, 19, 7] = np.int16(25000)  # 45 degC
    with pytest.raises(InputValidationError, match=r"run\.nc: .*range .*\.\.45\.00 °C outside"):
        validate_hycom_file(path, RUN, 168)


def test_memory_of_a_run_file_does_not_grow_with_its_time_steps(tmp_path: Path) -> None:
    """Peak numpy allocations (tracemalloc) reading a 60-step run: the step-by-step path holds the 7-lead result
    and a step; the whole-file path the 60 steps. Measured side by side on the same file."""
    ny, nx = 400, 600
    path = _run_file(tmp_path / "big.nc", ny, nx, banded=True)

    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    stepwise = peak(lambda: (validate_hycom_file(path, RUN, 168), daily_means_of_file(path, RUN, 7)))
    whole = peak(lambda: daily_means(read_surface_field(path, RUN), RUN, 7))
    result, step, run = 7 * ny * nx * 4, ny * nx * 8, len(TAUS) * ny * nx * 4
    print(f"peak MiB: step by step {stepwise / 2**20:.1f}, whole {whole / 2**20:.1f}, result {result / 2**20:.1f}, "
          f"step {step / 2**20:.1f}, run as float32 {run / 2**20:.1f}")
    assert stepwise < result + 4 * step and stepwise < run / 2, (stepwise, result, step)  # the result and a step
    assert whole > run and whole > 5 * stepwise, (whole, stepwise)
