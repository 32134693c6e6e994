"""Contract tests of the DAP2 stand-in and the virtual whole forecast files against data_formats.md."""

from __future__ import annotations

import datetime as dt

import netCDF4
import numpy as np
import pytest
import requests
import xarray as xr

from bias_correction.errors import CorruptInputError
from bias_correction.sources.wire.netcdf3 import parse_nc3_header
from bias_correction.sources.wire.dap2 import decode_dods
from bias_correction.sources.validate import netcdf3_expected_size
from bias_correction.testing import dap
from bias_correction.testing.formats import glby_lat, glby_lon, write_hycom_ncss

RUN = dt.datetime(2021, 2, 10, 12)
GOFS_RUN = "/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_2021-02-10T12:00:00Z"
ESPC_RUN = "/FMRC_ESPC-D-V02_t3z/runs/FMRC_ESPC-D-V02_t3z_RUN_2024-10-01T12:00:00Z"
GOFS_FILE = "/GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_2021021012_t024_ts3z.nc"
ESPC_FILE = "/ESPC-D-V02/data/forecasts/US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_2024100112_t0024_t3z.nc"


def test_fmrc_run_dds_and_das_carry_the_navo_layout(upstream) -> None:
    url = upstream.hycom_opendap_base + GOFS_RUN
    dds = requests.get(url + ".dds", timeout=10).text
    assert "Int16 water_temp[time = 61][depth = 40][lat = 4251][lon = 4500];" in dds
    assert "Grid {" in dds and "MAPS:" in dds and "Float64 tau[time = 61];" in dds
    das = requests.get(url + ".das", timeout=10).text
    for line in ('Int16 _FillValue -30000;', 'Int16 missing_value -30000;', 'Float32 scale_factor 0.001;',
                 'Float32 add_offset 20;', 'String units "degC";', 'String units "hours since analysis";',
                 'String time_origin "2021-02-10 12:00:00";', 'String units "hours since 2000-01-01 00:00:00";',
                 'String calendar "gregorian";', 'String modulo "360 degrees";', 'Int32 NAVO_code 15;'):
        assert line in das, line
    espc = requests.get(upstream.base_url + "/thredds/dodsC" + ESPC_RUN + ".dds", timeout=10)
    assert espc.status_code == 404  # ESPC runs are published only after their date (stand-in clock: 2021)
    assert requests.get(url.replace("2021-02-10", "2021-05-15") + ".dds", timeout=10).status_code == 404


def test_netcdf_c_reads_coordinates_hyperslab_and_unpacks(upstream, twin) -> None:
    url = upstream.hycom_opendap_base + GOFS_RUN
    ds = netCDF4.Dataset(url)
    try:
        assert ds["water_temp"].shape == (61, 40, 4251, 4500)
        assert ds["tau"].units == "hours since analysis" and ds["water_temp"].scale_factor == np.float32(0.001)
        np.testing.assert_allclose(ds["lat"][2300:2302], glby_lat(np.arange(2300, 2302)))
        wt = ds["water_temp"][4:6, 0:1, 2300:2303, 1375:1379]
    finally:
        ds.close()
    want = twin.hycom(RUN, np.array([12.0, 15.0]), glby_lat(np.arange(2300, 2303)), glby_lon(np.arange(1375, 1379)))
    np.testing.assert_allclose(np.ma.filled(wt, np.nan), want, atol=6e-4)
    x = xr.open_dataset(url, engine="netcdf4", decode_times=False)
    try:
        assert x.sizes == {"time": 61, "depth": 40, "lat": 4251, "lon": 4500}
        v = x["water_temp"].isel(time=4, depth=0, lat=2300, lon=1375).values
        assert abs(float(v) - want[0, 0, 0, 0]) < 6e-4
    finally:
        x.close()


def test_oisst_dataset_over_dap_matches_the_file_packing(upstream) -> None:
    url = upstream.oisst_opendap_base + "/202102/oisst-avhrr-v02r01.20210210.nc"
    das = requests.get(url + ".das", timeout=10).text
    for line in ('Int16 _FillValue -999;', 'Float32 scale_factor 0.01;', 'String units "Celsius";',
                 'String units "days since 1978-01-01 12:00:00";', 'Int16 valid_max 4500;'):
        assert line in das, line
    assert "Int16 sst[time = 1][zlev = 1][lat = 720][lon = 1440];" in requests.get(url + ".dds", timeout=10).text
    body = requests.get(url + ".dods?sst.sst[0:1:0][0:1:0][408:1:409][440:2:444],time", timeout=10).content
    (name, sst), (tname, t) = decode_dods(body, "test")
    assert name == "sst" and sst.shape == (1, 1, 2, 3) and tname == "time" and t[0] == 15746.0  # 2021-02-10
    assert requests.get(url.replace("20210210", "20210514") + ".dds", timeout=10).status_code == 404


def test_constraint_parser_and_truncation_detection() -> None:
    ds = dap.DapDataset("d", {"x": 5, "y": 4})
    ds.add(dap.DapVariable("x", "f8", ("x",), [], lambda ix: ix[0] * 1.0))
    ds.add(dap.DapVariable("y", "f8", ("y",), [], lambda ix: ix[0] * 10.0))
    ds.add(dap.DapVariable("v", "i2", ("x", "y"), [("units", "K")],
                           lambda ix: (ix[0][:, None] * 10 + ix[1][None, :]).astype(np.int16)))
    body = dap.dods_response(ds, "v[1:2:3][0:3]")
    arrays = decode_dods(body, "t")
    assert [a[0] for a in arrays] == ["v", "x", "y"]  # a whole Grid comes with its cut maps
    np.testing.assert_array_equal(arrays[0][1], [[10, 11, 12, 13], [30, 31, 32, 33]])
    np.testing.assert_array_equal(arrays[1][1], [1.0, 3.0])
    assert b"Structure {" in dap.dods_response(ds, "v.v[0][1]")
    for bad, status in (("v[0:9][0]", 400), ("nope", 404), ("v[0]", 400), ("v[0][0]&x>1", 400)):
        with pytest.raises(dap.DapError) as err:
            dap.dods_response(ds, bad)
        assert err.value.status == status
    with pytest.raises(Exception, match="cut short"):
        decode_dods(body[:-5], "t")


def test_virtual_whole_file_header_is_the_glby_layout(upstream) -> None:
    url = upstream.hycom_files_base + GOFS_FILE
    size = int(requests.head(url, timeout=10).headers["Content-Length"])
    r = requests.get(url, headers={"Range": "bytes=0-65535"}, timeout=10)
    assert r.status_code == 206 and r.headers["Content-Range"] == f"bytes 0-65535/{size}" and len(r.content) == 65536
    h = parse_nc3_header(r.content)
    assert r.content[:4] == b"CDF\x02" and h.version == 2 and h.numrecs == 1 and h.expected_size == size > 3e9
    assert h.dims == {"lat": 4251, "lon": 4500, "depth": 40, "time": 1} and h.record_dim == "time"
    wt = h.variables["water_temp"]
    assert wt.dims == ("time", "depth", "lat", "lon") and wt.dtype == ">i2" and wt.is_record
    assert wt.attrs["_FillValue"] == -30000 and wt.attrs["missing_value"] == -30000
    assert wt.attrs["scale_factor"] == np.float32(0.001) and wt.attrs["add_offset"] == np.float32(20.0)
    assert h.variables["tau"].attrs["units"] == "hours since analysis"
    assert h.variables["tau"].attrs["time_origin"] == "2021-02-10 12:00:00"
    assert h.variables["lat"].dtype == ">f8" and "salinity" in h.variables
    assert h.attrs["Conventions"] == "CF-1.6 NAVO_netcdf_v1.1"
    # the bytes of a row are the twin's packed values
    row = requests.get(url, headers={"Range": f"bytes={wt.begin + 2300 * 4500 * 2}-{wt.begin + 2301 * 4500 * 2 - 1}"},
                       timeout=10)
    assert row.status_code == 206 and len(row.content) == 9000
    raw = np.frombuffer(row.content, ">i2")[1375:1378]
    assert np.all((raw > -10000) & (raw < 15000))


def test_espc_virtual_file_and_hdf5_refusal(upstream) -> None:
    upstream.today = dt.date(2024, 10, 20)
    r = requests.get(upstream.hycom_files_base + ESPC_FILE, headers={"Range": "bytes=0-65535"}, timeout=10)
    h = parse_nc3_header(r.content)
    assert "salinity" not in h.variables and h.variables["time"].attrs["calendar"] == "standard"
    assert h.variables["tau"].attrs["time_origin"] == "2024-10-01 12:00:00"
    with pytest.raises(CorruptInputError, match="not a NetCDF-3"):
        parse_nc3_header(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)


def test_header_parser_agrees_with_netcdf_c(tmp_path) -> None:
    path = tmp_path / "sub.nc"
    lat, lon = glby_lat(np.arange(10)), glby_lon(np.arange(7))
    taus = np.array([0.0, 3.0])
    write_hycom_ncss(path, RUN, taus, lat, lon, np.array([0.0, 2.0]), np.full((2, 2, 10, 7), 25.0), "netcdf3")
    data = path.read_bytes()
    h = parse_nc3_header(data)
    assert h.expected_size == len(data) == netcdf3_expected_size(path, "t")
    wt = h.variables["water_temp"]
    raw = np.frombuffer(data[wt.begin:wt.begin + 2 * 10 * 7 * 2], ">i2")
    assert np.all(raw == 5000)  # (25 - 20) / 0.001, record 0, both depths
    with netCDF4.Dataset(path) as ds:
        assert list(ds.dimensions) == list(h.dims) and list(ds.variables) == list(h.variables)
