"""Generated files must match the real upstream files in structure, storage and packing."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr

from bias_correction.testing.formats import (
    HYCOM_DEPTHS,
    OISST_LAT,
    OISST_LON,
    glby_lat,
    glby_lon,
    hycom_hours,
    oisst_filename,
    oisst_time_value,
    write_hycom_ncss,
    write_oisst,
)
from bias_correction.testing.twin import Twin

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
REAL_OISST = REAL / "oisst-avhrr-v02r01.20220218.nc"
REAL_HYCOM = REAL / "hycom" / "hycom_glby_930_2019030712_t003_ts3z.nc"
needs_real = pytest.mark.skipif(not REAL_OISST.exists() or not REAL_HYCOM.exists(), reason="real sample files absent")

DAY = date(2021, 2, 18)
RUN = datetime(2019, 3, 7, 12)
# the real HYCOM subset: Cape Hatteras, rows 2859..2891, columns 3554..3571, lon in -180..180
HAT_J = np.arange(2859, 2892)
HAT_I = np.arange(3554, 3572)
VOLATILE_GLOBAL = {"id", "title", "date_created", "date_modified", "time_coverage_start", "time_coverage_end"}


def _describe(path: Path, skip_global: set[str] = frozenset(), skip_var_attr: set[tuple[str, str]] = frozenset()
              ) -> dict[str, Any]:
    """Everything about a file's structure that a reader could depend on (not the data values)."""
    with netCDF4.Dataset(path) as ds:
        nc4 = ds.data_model.startswith("NETCDF4")
        out: dict[str, Any] = {
            "data_model": ds.data_model,
            "dims": [(n, len(d), d.isunlimited()) for n, d in ds.dimensions.items()],
            "global": [(a, _norm(ds.getncattr(a))) for a in ds.ncattrs() if a not in skip_global],
            "vars": [],
        }
        for name, var in ds.variables.items():
            out["vars"].append({
                "name": name,
                "dtype": str(var.dtype),
                "dims": var.dimensions,
                "endian": var.endian(),
                "chunking": var.chunking() if nc4 else None,
                "filters": var.filters() if nc4 else None,
                "attrs": [(a, _norm(var.getncattr(a))) for a in var.ncattrs() if (name, a) not in skip_var_attr],
            })
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, np.generic):
        return (type(value).__name__, value.item())
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.tolist())
    return ("str", value)


def _assert_same(ours: dict[str, Any], real: dict[str, Any]) -> None:
    assert ours["data_model"] == real["data_model"]
    assert ours["dims"] == real["dims"]
    assert ours["global"] == real["global"]
    assert [v["name"] for v in ours["vars"]] == [v["name"] for v in real["vars"]]
    for a, b in zip(ours["vars"], real["vars"], strict=True):
        assert a == b, a["name"]


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin()


@pytest.fixture(scope="module")
def oisst_fields(twin: Twin) -> dict[str, np.ndarray]:
    return twin.oisst(DAY, OISST_LAT.astype(float), OISST_LON.astype(float))


@pytest.fixture(scope="module")
def oisst_file(tmp_path_factory: pytest.TempPathFactory, oisst_fields: dict[str, np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("oisst") / oisst_filename(DAY)
    return write_oisst(path, DAY, oisst_fields)


@pytest.fixture(scope="module")
def hatteras(twin: Twin) -> dict[str, Any]:
    lat = glby_lat(HAT_J)
    lon = glby_lon(HAT_I) - 360.0
    temp = twin.hycom(RUN, np.array([3.0]), lat, lon, HYCOM_DEPTHS)
    return {"lat": lat, "lon": lon, "temp": temp, "sal": np.where(np.isfinite(temp), 35.0, np.nan)}


@pytest.fixture(scope="module")
def hycom_nc3(tmp_path_factory: pytest.TempPathFactory, hatteras: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("hycom") / "hycom_glby_930_2019030712_t003_ts3z.nc"
    return write_hycom_ncss(path, RUN, np.array([3.0]), hatteras["lat"], hatteras["lon"], HYCOM_DEPTHS,
                            hatteras["temp"], "netcdf3", salinity_psu=hatteras["sal"])


# ------------------------------------------------------------------------------------------------ OISST
def test_oisst_filename_and_time() -> None:
    assert oisst_filename(date(2021, 1, 5)) == "oisst-avhrr-v02r01.20210105.nc"
    assert oisst_filename(date(2021, 1, 5), True) == "oisst-avhrr-v02r01.20210105_preliminary.nc"
    assert oisst_time_value(date(2022, 2, 18)) == 16119.0
    assert oisst_time_value(date(2021, 1, 1)) == 15706.0
    assert oisst_time_value(date(2024, 9, 5)) == 17049.0


@needs_real
def test_oisst_structure_matches_real_file(oisst_file: Path) -> None:
    ours = _describe(oisst_file, VOLATILE_GLOBAL)
    real = _describe(REAL_OISST, VOLATILE_GLOBAL)
    _assert_same(ours, real)
    assert oisst_file.read_bytes()[:4] == REAL_OISST.read_bytes()[:4] == b"\x89HDF"


@needs_real
def test_oisst_storage_matches_real_file(oisst_file: Path) -> None:
    """HDF5-level: fill values, chunks, compression, coordinate values."""
    with h5py.File(oisst_file, "r") as ours, h5py.File(REAL_OISST, "r") as real:
        for name in ("time", "zlev", "lat", "lon", "sst", "anom", "err", "ice"):
            a, b = ours[name], real[name]
            assert (a.dtype, a.shape, a.maxshape, a.chunks, a.compression, a.compression_opts, a.shuffle) == \
                (b.dtype, b.shape, b.maxshape, b.chunks, b.compression, b.compression_opts, b.shuffle), name
            if name in ("sst", "anom", "err", "ice"):
                assert a.fillvalue == b.fillvalue == -999
        np.testing.assert_array_equal(ours["lat"][:], real["lat"][:])
        np.testing.assert_array_equal(ours["lon"][:], real["lon"][:])
        np.testing.assert_array_equal(ours["zlev"][:], real["zlev"][:])


def test_oisst_volatile_attributes(oisst_file: Path, tmp_path: Path, oisst_fields: dict[str, np.ndarray]) -> None:
    with netCDF4.Dataset(oisst_file) as ds:
        assert ds.id == "oisst-avhrr-v02r01.20210218.nc"
        assert ds.title.endswith("Version 2.1 - Final")
        assert ds.time_coverage_start == "2021-02-18T00:00:00Z"
        assert ds.time_coverage_end == "2021-02-18T23:59:59Z"
        assert ds["time"][0] == np.float32(oisst_time_value(DAY))
        decoded = netCDF4.num2date(ds["time"][0], ds["time"].units)
        assert (decoded.year, decoded.month, decoded.day, decoded.hour) == (2021, 2, 18, 12)
    prelim = write_oisst(tmp_path / oisst_filename(DAY, True), DAY, {"sst": oisst_fields["sst"]}, preliminary=True)
    with netCDF4.Dataset(prelim) as ds:
        assert ds.id == "oisst-avhrr-v02r01.20210218_preliminary.nc"
        assert ds.title.endswith("Version 2.1 - Interim")
        assert ds["ice"][:].mask.all()  # missing field -> all fill


def test_oisst_values_round_trip(oisst_file: Path, oisst_fields: dict[str, np.ndarray]) -> None:
    with netCDF4.Dataset(oisst_file) as ds:
        for name, values in oisst_fields.items():
            got = ds[name][0, 0]
            if name == "ice":  # stored like NCEI: decodes to a fraction although units say "%"
                assert float(got.max()) <= 1.0
                got = got * 100.0
                values = values.copy()
                values[np.isfinite(values)] = np.round(values[np.isfinite(values)])
            assert isinstance(got, np.ma.MaskedArray)
            np.testing.assert_array_equal(got.mask, ~np.isfinite(values))
            ok = np.isfinite(values)
            assert np.max(np.abs(got.data[ok] - values[ok])) <= 0.005 + 1e-6, name
        ds.set_auto_maskandscale(False)
        raw = ds["sst"][0, 0]
        assert raw.dtype == np.int16 and (raw[~np.isfinite(oisst_fields["sst"])] == -999).all()
    with xr.open_dataset(oisst_file) as xds:  # the real file opens plainly; ours must too
        sst = xds["sst"].isel(time=0, zlev=0).values
        assert str(xds["time"].values[0])[:19] == "2021-02-18T12:00:00"
        np.testing.assert_allclose(sst, oisst_fields["sst"], atol=0.0051, equal_nan=True)
    with pytest.raises(ValueError):
        write_oisst(oisst_file.parent / "bad.nc", DAY, {"sst": np.zeros((10, 10))})


# ------------------------------------------------------------------------------------------------ HYCOM
@needs_real
def test_hycom_netcdf3_structure_matches_real_subset(hycom_nc3: Path) -> None:
    ours = _describe(hycom_nc3, skip_var_attr={("tau", "time_origin")})
    real = _describe(REAL_HYCOM, skip_var_attr={("tau", "time_origin")})
    _assert_same(ours, real)
    assert hycom_nc3.read_bytes()[:4] == b"CDF\x02" == REAL_HYCOM.read_bytes()[:4]


@needs_real
def test_hycom_coordinates_identical_to_real_subset(hycom_nc3: Path) -> None:
    """Same native cells -> the same float32-rounded coordinates, time and tau.

    lat, depth, time and tau are bit-identical; the real lon values wobble by up to one float32 ulp
    (3e-5 deg) around the nearest float32 of 0.08*i, so they are matched with a tolerance (data_formats 2.4).
    """
    with netCDF4.Dataset(hycom_nc3) as ours, netCDF4.Dataset(REAL_HYCOM) as real:
        for name in ("lat", "depth", "time", "tau"):
            np.testing.assert_array_equal(ours[name][:], real[name][:], err_msg=name)
        np.testing.assert_allclose(ours["lon"][:], real["lon"][:], rtol=0, atol=4e-5)
        assert ours["lon"][0] == real["lon"][0] == 284.32000732421875 - 360.0
        assert ours["tau"].time_origin == real["tau"].time_origin == "2019-03-07 12:00:00"
    assert hycom_hours(datetime(2021, 1, 1, 12)) == 184116.0
    assert hycom_hours(datetime(2021, 6, 1)) == 187728.0


def test_hycom_values_round_trip(hycom_nc3: Path, hatteras: dict[str, Any]) -> None:
    temp = hatteras["temp"]
    with netCDF4.Dataset(hycom_nc3) as ds:
        got = ds["water_temp"][:]
        np.testing.assert_array_equal(got.mask, ~np.isfinite(temp))
        ok = np.isfinite(temp)
        assert np.max(np.abs(got.data[ok] - temp[ok])) <= 0.0005 + 1e-6
        bottom = ds["water_temp_bottom"][:]
        assert bottom.shape == (1, 33, 18)
        assert np.all(bottom <= got[:, 0] + 1e-3)
        ds.set_auto_maskandscale(False)
        assert (ds["water_temp"][:][~ok] == -30000).all()


def test_hycom_plain_xarray_open_fails_like_the_real_file(hycom_nc3: Path) -> None:
    """The ``tau`` units "hours since analysis" break CF time decoding: readers must handle it."""
    with pytest.raises(ValueError, match="hours since analysis"):
        xr.open_dataset(hycom_nc3)
    if REAL_HYCOM.exists():
        with pytest.raises(ValueError, match="hours since analysis"):
            xr.open_dataset(REAL_HYCOM)
    with xr.open_dataset(hycom_nc3, decode_times=False) as xds:
        assert xds["water_temp"].dims == ("time", "depth", "lat", "lon")
        assert float(xds["water_temp"].isel(time=0, depth=0).max()) < 35


def test_hycom_netcdf4_variant(tmp_path: Path, twin: Twin) -> None:
    run = datetime(2021, 3, 1, 12)
    taus = np.arange(24.0, 48.0, 3.0)
    lat = glby_lat(np.arange(2300, 2311))
    lon = glby_lon(np.arange(1375, 1381))
    temp = twin.hycom(run, taus, lat, lon)
    path = write_hycom_ncss(tmp_path / "sub.nc", run, taus, lat, lon, np.array([0.0]), temp, "netcdf4")
    assert path.read_bytes()[:4] == b"\x89HDF"
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF4"
        assert [d for d in ds.dimensions] == ["lat", "lon", "depth", "time"]
        assert ds.dimensions["time"].isunlimited()
        assert ds["water_temp"].filters()["zlib"]
        np.testing.assert_allclose(ds["time"][:], hycom_hours(run) + taus)
        np.testing.assert_array_equal(ds["tau"][:], taus)
        np.testing.assert_allclose(ds["water_temp"][:], temp, atol=0.00051)
        assert list(ds["water_temp"].ncattrs()) == ["long_name", "standard_name", "units", "_FillValue",
                                                    "missing_value", "scale_factor", "add_offset", "NAVO_code",
                                                    "comment"]
        assert "salinity" not in ds.variables
        assert 284.3200073 == pytest.approx(float(glby_lon(3554)), abs=1e-7)
    with pytest.raises(ValueError):
        write_hycom_ncss(tmp_path / "bad.nc", run, taus, lat, lon, np.array([0.0]), temp[:, :, :2], "netcdf4")
    with pytest.raises(ValueError):
        write_hycom_ncss(tmp_path / "bad.nc", run, taus, lat, lon, np.array([0.0]), temp,
                         "grib")  # type: ignore[arg-type]
