"""Sea-surface elevation (HYCOM ``surf_el``) in the twin, the file writers and the loopback stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import requests
import xarray as xr

from bias_correction.sources.wire.netcdf3 import parse_nc3_header
from bias_correction.testing.formats import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_FILL,
    glby_lat,
    glby_lon,
    glby_ssh_layout,
    write_hycom_ssh_ncss,
)
from bias_correction.testing.standin import StandInServer
from bias_correction.testing.twin import Twin, TwinConfig

RUN = datetime(2021, 3, 1, 12)
BOX_LAT = 12.04 + 0.08 * np.arange(50)
BOX_LON = 110.04 + 0.08 * np.arange(50)
TODAY = date(2021, 3, 10)
ESPC_TODAY = date(2024, 10, 20)
SURF_EL_ATTR_ORDER = ["long_name", "standard_name", "units", "_FillValue", "missing_value", "scale_factor",
                      "add_offset", "NAVO_code"]


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, twin: Twin) -> Iterator[StandInServer]:
    with StandInServer(twin, tmp_path_factory.mktemp("standin_ssh"), TODAY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(server: StandInServer) -> Iterator[None]:
    server.faults.clear()
    server.today = TODAY
    yield
    server.faults.clear()
    server.today = TODAY


# ------------------------------------------------------------------------------------------ twin
def test_surf_el_is_plausible_and_warm_eddies_stand_high(twin: Twin) -> None:
    when = datetime(2021, 3, 2, 6)
    eta = twin.surf_el_truth(when, BOX_LAT, BOX_LON)
    sst = twin.truth(when, BOX_LAT, BOX_LON)
    assert eta.shape == (50, 50)
    np.testing.assert_array_equal(np.isnan(eta), np.isnan(sst))  # same land
    assert 0.2 < np.nanmean(eta) < 0.9  # tropical dynamic height, metres
    # anomalies from the zonal mean remove both climatologies: what is left is the mesoscale
    a_eta = eta - np.nanmean(eta, axis=1, keepdims=True)
    a_sst = sst - np.nanmean(sst, axis=1, keepdims=True)
    ok = np.isfinite(a_eta)
    assert 0.03 < float(np.std(a_eta[ok])) < 0.25
    assert np.corrcoef(a_eta[ok], a_sst[ok])[0, 1] > 0.8
    lat, lon = np.linspace(-79, 89, 43), np.linspace(0, 357, 120)
    glob = twin.surf_el_truth(datetime(2021, 8, 1), lat, lon)
    assert -2.0 < np.nanmin(glob) and np.nanmax(glob) < 1.5


def test_hycom_surf_el_daily_mean_and_lead_growing_error(twin: Twin) -> None:
    errs = []
    for k in (1, 4, 7):
        daily = twin.hycom_daily_surf_el(RUN, k, BOX_LAT, BOX_LON)
        taus = twin.daily_taus(k)
        np.testing.assert_allclose(daily, twin.hycom_surf_el(RUN, taus, BOX_LAT, BOX_LON).mean(axis=0), rtol=0, atol=1e-12)
        truth = np.mean([twin.surf_el_truth(datetime(2021, 3, 1 + k, h), BOX_LAT, BOX_LON) for h in range(0, 24, 3)],
                        axis=0)
        errs.append(float(np.sqrt(np.nanmean((daily - truth) ** 2))))
    assert 0.0 < errs[0] < errs[1] < errs[2] < 0.15, errs
    with pytest.raises(ValueError, match="lead_day"):
        twin.hycom_daily_surf_el(RUN, 0, BOX_LAT, BOX_LON)
    np.testing.assert_array_equal(Twin().hycom_daily_surf_el(RUN, 2, BOX_LAT[:5], BOX_LON[:5]),
                                  twin.hycom_daily_surf_el(RUN, 2, BOX_LAT[:5], BOX_LON[:5]))
    other = Twin(TwinConfig(seed=7)).hycom_daily_surf_el(RUN, 2, BOX_LAT[:5], BOX_LON[:5])
    assert np.nanmax(np.abs(other - twin.hycom_daily_surf_el(RUN, 2, BOX_LAT[:5], BOX_LON[:5]))) > 0.01


def test_ssh_knobs_leave_every_sst_field_unchanged(twin: Twin) -> None:
    """surf_el draws from its own generators: no existing field moves when its knobs change."""
    other = Twin(TwinConfig(ssh_meso_std_m=0.4, ssh_err_amp0_m=0.1, n_ssh_err_waves=5, ssh_bias_m=1.0))
    taus = np.array([12.0, 99.0])
    np.testing.assert_array_equal(other.hycom(RUN, taus, BOX_LAT, BOX_LON), twin.hycom(RUN, taus, BOX_LAT, BOX_LON))
    a, b = other.oisst(date(2021, 3, 2), BOX_LAT, BOX_LON), twin.oisst(date(2021, 3, 2), BOX_LAT, BOX_LON)
    for name in ("sst", "anom", "err"):
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(other.hycom_daily_error(RUN, 3, BOX_LAT, BOX_LON)["unpredictable"],
                                  twin.hycom_daily_error(RUN, 3, BOX_LAT, BOX_LON)["unpredictable"])
    assert np.nanmax(np.abs(other.hycom_daily_surf_el(RUN, 3, BOX_LAT, BOX_LON)
                            - twin.hycom_daily_surf_el(RUN, 3, BOX_LAT, BOX_LON))) > 0.1


# ------------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("fmt,magic", [("netcdf4", b"\x89HDF"), ("netcdf3", b"CDF\x02")])
def test_ssh_ncss_file_layout(twin: Twin, tmp_path: Path, fmt: str, magic: bytes) -> None:
    taus = np.array([0.0, 3.0, 6.0])
    lat, lon = glby_lat(np.arange(2350, 2360)), glby_lon(np.arange(1280, 1290)) - 360.0  # lon -257.6..: any convention
    eta = twin.hycom_surf_el(RUN, taus, lat, lon)
    eta[0, 0, 0] = np.nan
    path = write_hycom_ssh_ncss(tmp_path / "ssh.nc", RUN, taus, lat, lon, eta, fmt)  # type: ignore[arg-type]
    assert path.read_bytes()[:4] == magic
    with netCDF4.Dataset(path) as ds:
        assert set(ds.dimensions) == {"time", "lat", "lon"} and ds.dimensions["time"].isunlimited()
        v = ds["surf_el"]
        assert v.dimensions == ("time", "lat", "lon") and v.dtype == np.int16
        assert v.ncattrs() == SURF_EL_ATTR_ORDER
        assert (v.long_name, v.standard_name, v.units) == ("Water Surface Elevation", "sea_surface_elevation", "m")
        assert (v.scale_factor, v.add_offset, v.NAVO_code) == (np.float32(0.001), np.float32(0.0), 32)
        assert v._FillValue == v.missing_value == HYCOM_FILL
        assert ds["tau"].units == "hours since analysis" and ds.history == "archv2ncdf2d"
        v.set_auto_maskandscale(False)
        assert v[0, 0, 0] == HYCOM_FILL
        np.testing.assert_array_equal(ds["tau"][:], taus)
    with pytest.raises(ValueError):  # the tau units trap, as on the real service
        xr.open_dataset(path).close()
    decoded = xr.open_dataset(path, decode_times=False)["surf_el"].values
    np.testing.assert_allclose(decoded, eta, atol=5.01e-4, equal_nan=True)


def test_full_size_ssh_file_layout() -> None:
    layout = glby_ssh_layout(RUN)
    h = parse_nc3_header(layout.header)
    assert h.dims == {"lat": GLBY_NLAT, "lon": GLBY_NLON, "time": 1} and h.record_dim == "time"
    assert list(h.variables) == ["time", "tau", "lat", "lon", "surf_el"]
    v = h.variables["surf_el"]
    assert v.dims == ("time", "lat", "lon") and v.dtype == ">i2" and v.is_record
    assert v.attrs["units"] == "m" and float(v.attrs["add_offset"]) == 0.0 and v.attrs["_FillValue"] == -30000
    assert h.expected_size == layout.size > 2 * GLBY_NLAT * GLBY_NLON


# ------------------------------------------------------------------------------------------ stand-in
def _query(var: str, extra: str = "") -> str:
    return f"var={var}&north=14.2&south=14&west=112&east=112.3&horizStride=1&accept=netcdf4{extra}"


def test_gofs_fmrc_run_serves_surf_el_over_ncss(server: StandInServer, twin: Twin) -> None:
    run = date(2021, 3, 1)
    resp = requests.get(server.hycom_run_url(run) + "?" + _query("surf_el", "&vertCoord=0&time_start=2021-03-02T00:00:00Z"
                                                                  "&time_end=2021-03-02T21:00:00Z"), timeout=30)
    assert resp.status_code == 200 and resp.content[:4] == b"\x89HDF"
    with netCDF4.Dataset("mem.nc", memory=resp.content) as ds:
        assert "depth" not in ds.dimensions and ds["surf_el"].dimensions == ("time", "lat", "lon")
        np.testing.assert_array_equal(ds["tau"][:], 12.0 + 3.0 * np.arange(8))
        lat, lon = np.asarray(ds["lat"][:]), np.asarray(ds["lon"][:])
        values = np.ma.filled(ds["surf_el"][:], np.nan).mean(axis=0)
    np.testing.assert_allclose(values, twin.hycom_daily_surf_el(RUN, 1, lat, lon), atol=5.01e-4)
    both = requests.get(server.hycom_run_url(run) + "?" + _query("surf_el&var=water_temp"), timeout=30)
    assert both.status_code == 400 and "one variable" in both.text


def test_espc_ssh_collection_is_hourly_and_separate(server: StandInServer) -> None:
    server.today = ESPC_TODAY
    base = f"{server.base_url}/thredds/ncss/FMRC_ESPC-D-V02_{{c}}/runs/FMRC_ESPC-D-V02_{{c}}_RUN_2024-10-01T12:00:00Z"
    ssh = requests.get(base.format(c="ssh") + "?" + _query("surf_el", "&timeStride=3&accept=netcdf"), timeout=30)
    assert ssh.status_code == 200 and ssh.content[:4] == b"CDF\x02"
    with netCDF4.Dataset("mem.nc", memory=ssh.content) as ds:
        np.testing.assert_array_equal(ds["tau"][:], np.arange(0.0, 193.0, 3.0))
        assert ds["time"].calendar == "standard"
    hourly = requests.get(base.format(c="ssh") + "?" + _query("surf_el", "&time_end=2024-10-01T15:00:00Z"), timeout=30)
    with netCDF4.Dataset("mem.nc", memory=hourly.content) as ds:
        np.testing.assert_array_equal(ds["tau"][:], [0.0, 1.0, 2.0, 3.0])
    for coll, var in (("ssh", "water_temp"), ("t3z", "surf_el")):
        wrong = requests.get(base.format(c=coll) + "?" + _query(var), timeout=30)
        assert wrong.status_code == 400 and "not in dataset" in wrong.text
    dds = requests.get(f"{server.base_url}/thredds/dodsC/FMRC_ESPC-D-V02_ssh/runs/"
                       "FMRC_ESPC-D-V02_ssh_RUN_2024-10-01T12:00:00Z.dds", timeout=30)
    assert dds.status_code == 200 and "Int16 surf_el[time = 193][lat = 4251][lon = 4500];" in dds.text
    assert "depth" not in dds.text and "water_temp" not in dds.text


def test_gofs_dap_run_has_surf_el_next_to_water_temp(server: StandInServer) -> None:
    url = f"{server.hycom_opendap_base}/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_2021-03-01T12:00:00Z"
    dds = requests.get(url + ".dds", timeout=30).text
    assert "Int16 surf_el[time = 61][lat = 4251][lon = 4500];" in dds and "Int16 water_temp[time = 61]" in dds
    das = requests.get(url + ".das", timeout=30).text
    assert 'String long_name "Water Surface Elevation";' in das and 'String units "m";' in das


def test_ssh_forecast_files_by_range(server: StandInServer, twin: Twin) -> None:
    run = datetime(2021, 3, 1, 12)
    url = f"{server.hycom_files_base}/GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_2021030112_t012_ssh.nc"
    head = requests.head(url, timeout=30)
    layout = glby_ssh_layout(run)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == layout.size
    assert head.headers["ETag"] != requests.head(url.replace("_ssh.nc", "_ts3z.nc"), timeout=30).headers["ETag"]
    var = layout.variables["surf_el"]
    j, n = 2350, 3
    start = var.begin + j * GLBY_NLON * 2
    part = requests.get(url, headers={"Range": f"bytes={start}-{start + n * GLBY_NLON * 2 - 1}"}, timeout=30)
    assert part.status_code == 206
    raw = np.frombuffer(part.content, dtype=">i2").reshape(n, GLBY_NLON)[:, 1400:1410]
    eta = np.where(raw == HYCOM_FILL, np.nan, raw * 0.001)
    expected = twin.hycom_surf_el(run, np.array([12.0]), glby_lat(np.arange(j, j + n)), glby_lon(np.arange(1400, 1410)))[0]
    np.testing.assert_allclose(eta, expected, atol=5.01e-4, equal_nan=True)
    assert requests.head(url.replace("t012", "t013"), timeout=30).status_code == 404  # GOFS: 3-hourly only
    server.today = ESPC_TODAY
    espc = (f"{server.hycom_files_base}/ESPC-D-V02/data/forecasts/US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_"
            "2024100112_t0013_ssh.nc")
    assert requests.head(espc, timeout=30).status_code == 200  # ESPC ssh: hourly files
    server.faults.add(r"_t012_ssh\.nc", "status", times=1, code=503)
    assert requests.head(url, timeout=30).status_code == 503 and server.faults.pending() == 0
