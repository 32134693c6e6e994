"""Validation of HYCOM ``surf_el`` run files: errors name the run, the variable and the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from bias_correction.errors import InputValidationError
from bias_correction.sources.hycom import read_surface_field, validate_hycom_file
from bias_correction.testing.formats import (
    glby_lat,
    glby_lon,
    write_hycom_ncss,
    write_hycom_ssh_ncss,
)

RUN = dt.datetime(2021, 2, 10, 12)
LAT, LON = glby_lat(np.arange(2350, 2354)), glby_lon(np.arange(1400, 1403))
TAUS = np.arange(0.0, 28.0, 3.0)  # 0..27 h


def _ssh(tmp_path: Path, values: float | np.ndarray = 0.5, taus: np.ndarray = TAUS, name: str = "ssh.nc") -> Path:
    eta = np.broadcast_to(np.asarray(values, dtype=np.float64), (len(taus), len(LAT), len(LON))).copy()
    return write_hycom_ssh_ncss(tmp_path / name, RUN, taus, LAT, LON, eta)


def test_a_good_file_passes_and_reads_in_metres(tmp_path: Path) -> None:
    path = _ssh(tmp_path, 0.5 + 0.01 * np.arange(len(TAUS))[:, None, None])
    validate_hycom_file(path, RUN, 27, variable="surf_el")
    field = read_surface_field(path, RUN, "surf_el")
    assert field.dims == ("time", "lat", "lon") and field.attrs["units"] == "m"
    np.testing.assert_allclose(field.values[:, 0, 0], 0.5 + 0.01 * np.arange(len(TAUS)), atol=5.01e-4)
    assert str(field["time"].values[1])[:19] == "2021-02-10T15:00:00"


def test_values_outside_the_physical_range(tmp_path: Path) -> None:
    path = _ssh(tmp_path, 5.0, name="hycom_glby_930_2021021012_ssh_subset.nc")
    with pytest.raises(InputValidationError,
                       match=r"HYCOM run 2021-02-10 12Z surf_el file hycom_glby_930_2021021012_ssh_subset\.nc: "
                             r"surf_el range 5\.00\.\.5\.00 m outside \(-3\.0, 3\.0\)"):
        validate_hycom_file(path, RUN, 27, variable="surf_el")


def test_all_fill_and_wrong_units(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="surf_el has no valid value"):
        validate_hycom_file(_ssh(tmp_path, np.nan, name="fill.nc"), RUN, 27, variable="surf_el")
    path = _ssh(tmp_path, 0.5, name="cm.nc")
    with netCDF4.Dataset(path, "a") as ds:
        ds["surf_el"].setncattr("units", "cm")
    with pytest.raises(InputValidationError, match=r"cm\.nc: surf_el units 'cm', expected m"):
        validate_hycom_file(path, RUN, 27, variable="surf_el")


def test_missing_leads_and_hourly_steps(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match=r"surf_el file short\.nc: lead hours \[27\] missing"):
        validate_hycom_file(_ssh(tmp_path, taus=TAUS[:-1], name="short.nc"), RUN, 27, variable="surf_el")
    hourly = _ssh(tmp_path, taus=np.arange(0.0, 28.0), name="hourly.nc")
    with pytest.raises(InputValidationError, match=r"off the 3-hourly steps.*stride of 3"):
        validate_hycom_file(hourly, RUN, 27, variable="surf_el")


def test_a_temperature_file_is_not_surf_el(tmp_path: Path) -> None:
    temp = np.full((len(TAUS), 1, len(LAT), len(LON)), 25.0)
    path = write_hycom_ncss(tmp_path / "ts3z.nc", RUN, TAUS, LAT, LON, np.array([0.0]), temp)
    validate_hycom_file(path, RUN, 27)  # fine as water_temp
    with pytest.raises(InputValidationError, match=r"ts3z\.nc: no variable surf_el"):
        validate_hycom_file(path, RUN, 27, variable="surf_el")
    with pytest.raises(InputValidationError, match=r"ssh\.nc: no variable water_temp"):
        validate_hycom_file(_ssh(tmp_path), RUN, 27)
