"""Completeness checks on real upstream files and damaged copies of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import xarray as xr

from bias_correction.config import Region
from bias_correction.errors import CorruptInputError, InputValidationError, TruncatedDownloadError
from bias_correction.sources.hycom import read_surface_temperature, validate_hycom_file
from bias_correction.sources.oisst import read_oisst_sst, validate_oisst_file
from bias_correction.sources.validate import check_complete

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
OISST_REAL = REAL / "oisst-avhrr-v02r01.20220218.nc"
HYCOM_REAL = REAL / "hycom" / "hycom_glby_930_2019030712_t003_ts3z.nc"

needs_real = pytest.mark.skipif(not OISST_REAL.exists(), reason="shared/data/real not present")


@needs_real
@pytest.mark.parametrize("path,fmt", [(OISST_REAL, "netcdf4"), (HYCOM_REAL, "netcdf3")])
@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_truncated_real_files_are_detected(tmp_path, path, fmt, fraction) -> None:
    assert check_complete(path, "real") == fmt
    data = path.read_bytes()
    cut = tmp_path / path.name
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(TruncatedDownloadError, match="truncated"):
        check_complete(cut, "cut")


@pytest.mark.parametrize("body,match", [(b"<!DOCTYPE html><html>503</html>", "HTML"), (b"GIF89a....", "not NetCDF"), (b"", "empty")])
def test_non_netcdf_bodies_are_rejected(tmp_path, body, match) -> None:
    p = tmp_path / "x.nc"
    p.write_bytes(body)
    with pytest.raises((CorruptInputError, TruncatedDownloadError), match=match):
        check_complete(p, "x")


@needs_real
def test_real_oisst_file_reads_and_validates() -> None:
    validate_oisst_file(OISST_REAL, dt.date(2022, 2, 18))
    sst = read_oisst_sst(OISST_REAL, Region(), margin=0.5)
    # data_formats.md 1.4: SCS box on 2022-02-18 is 25.96-27.56 °C with no fill
    inner = sst.sel(lat=slice(12, 16), lon=slice(110, 114))
    assert inner.shape == (16, 16) and bool(inner.notnull().all())
    assert 25.9 < float(inner.min()) and float(inner.max()) < 27.6
    with pytest.raises(InputValidationError, match="expected 2022-02-19"):
        validate_oisst_file(OISST_REAL, dt.date(2022, 2, 19))


@needs_real
def test_real_hycom_subset_needs_manual_time_decoding() -> None:
    with pytest.raises(ValueError, match="hours since analysis"):
        xr.open_dataset(HYCOM_REAL)  # the trap: tau's units cannot be decoded
    sst = read_surface_temperature(HYCOM_REAL, dt.datetime(2019, 3, 7, 12))
    assert str(sst["time"].values[0])[:19] == "2019-03-07T15:00:00"
    assert float(sst["lon"].min()) == pytest.approx(-75.68, abs=1e-3)
    assert 2.0 < float(sst.min()) and float(sst.max()) < 25.1


@needs_real
def test_hycom_validator_names_missing_leads(tmp_path) -> None:
    with pytest.raises(InputValidationError, match="lead hours"):
        validate_hycom_file(HYCOM_REAL, dt.datetime(2019, 3, 7, 12), max_tau=3)
