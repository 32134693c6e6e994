"""Products of many runs stack into one (lead, run, lat, lon) cube: open_mfdataset and kerchunk agree
with the per-file valid times; the grid has a CRS GDAL reads; operator metadata reaches the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction.config import ProductMetadata, Upstream
from bias_correction.io.product import _encoding, build_product
from tests.io.test_product_cf import GRID, PROV, _mask

RUNS = [dt.datetime(2021, 4, 20, 12) + dt.timedelta(days=i) for i in range(4)]
COORD_DIMS = ["lat", "lon", "lead_day", "forecast_period", "forecast_period_bnds", "depth", "crs", "ocean_mask"]


def one_run(run: dt.datetime, **kw: object) -> xr.Dataset:
    raw = 27 + np.random.default_rng(run.day).normal(0, 0.5, (7, *GRID.shape)).astype(np.float32)
    valid = np.array([np.datetime64(run.date()) + np.timedelta64(k, "D") for k in range(1, 8)])
    return build_product(run=run, grid=GRID, mask=_mask(), region_name="scs", sst_corrected=raw - 0.1 * run.day,
                         sst_raw=raw, valid_dates=valid, provenance=PROV, input_digest=f"d{run:%d}", **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("runs")
    paths = []
    for run in reversed(RUNS):  # written newest first: combining must sort by run, not by file order
        ds = one_run(run)
        p = out / f"sstbc_scs_{run:%Y%m%dT%H}Z.nc"
        ds.to_netcdf(p, encoding=_encoding(ds))
        paths.append(p)
    return paths


def expected_valid(run: dt.datetime) -> list[np.datetime64]:
    return [np.datetime64(run + dt.timedelta(days=k), "ns") for k in range(1, 8)]


def check_cube(cube: xr.Dataset, files: list[Path]) -> None:
    assert cube["sst"].sizes == {"lead_day": 7, "forecast_reference_time": len(RUNS), "lat": 6, "lon": 8}
    np.testing.assert_array_equal(cube["forecast_reference_time"].values, [np.datetime64(r, "ns") for r in RUNS])
    assert cube["time"].dims == ("lead_day", "forecast_reference_time")
    for j, run in enumerate(RUNS):
        np.testing.assert_array_equal(cube["time"].values[:, j], expected_valid(run))
        with xr.open_dataset(next(p for p in files if f"{run:%Y%m%d}" in p.name)) as one:
            np.testing.assert_array_equal(cube["sst"].values[:, j], one["sst"].values[:, 0])
    # a valid day seen by several runs: 2021-04-23 is lead 3 of the 20th, lead 1 of the 22nd
    hit = cube["time"].values == np.datetime64("2021-04-23T12:00")
    assert sorted(zip(*np.nonzero(hit))) == [(0, 2), (1, 1), (2, 0)]


def test_open_mfdataset_by_coords_stacks_runs_with_2d_valid_time(files: list[Path]) -> None:
    with xr.open_mfdataset(files, combine="by_coords", data_vars="minimal", coords="minimal",
                           compat="override") as cube:
        check_cube(cube, files)
    with xr.set_options(use_new_combine_kwarg_defaults=True), xr.open_mfdataset(files, combine="by_coords") as cube:
        check_cube(cube, files)


def test_kerchunk_references_over_runs_keep_each_runs_valid_times(files: list[Path]) -> None:
    hdf = pytest.importorskip("kerchunk.hdf")
    from kerchunk.combine import MultiZarrToZarr

    refs = [hdf.SingleHdf5ToZarr(str(p)).translate() for p in files]
    combined = MultiZarrToZarr(refs, concat_dims=["forecast_reference_time"], identical_dims=COORD_DIMS).translate()
    with xr.open_dataset("reference://", engine="zarr", backend_kwargs={
            "consolidated": False, "storage_options": {"fo": combined}}) as cube:
        check_cube(cube, files)


def test_gdal_reads_the_grid_mapping_and_coverage_matches_the_cells(files: list[Path]) -> None:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(f"netcdf:{files[0]}:sst") as r:
        assert r.crs.to_epsg() == 4326 and r.count == 7
    with xr.open_dataset(files[0]) as ds:
        assert ds["sst"].attrs["grid_mapping"] == "crs" and ds["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
        assert ds["sst"].attrs["units_metadata"] == "temperature: on_scale"
        assert ds["sst_correction"].attrs["units_metadata"] == "temperature: difference"
        t = ds["time"].values[:, 0]
        start, end = ds.attrs["time_coverage_start"], ds.attrs["time_coverage_end"]
        # the coverage is the union of the valid UTC days: first centre - 12 h .. last centre + 12 h
        assert np.datetime64(start[:-1]) == t[0] - np.timedelta64(12, "h")
        assert np.datetime64(end[:-1]) == t[-1] + np.timedelta64(12, "h")
        assert ds.attrs["time_coverage_duration"] == "P7D"
        bnds = ds["forecast_period_bnds"].values
        np.testing.assert_array_equal(bnds[:, 1] - bnds[:, 0], 24.0)


def test_operator_metadata_and_synthetic_origin_reach_the_attributes() -> None:
    meta = ProductMetadata(institution="Example Ocean Office", creator_name="Forecast desk",
                           license="CC-BY-4.0; not for navigation", doi="10.1234/abcd",
                           metadata_link="https://example.org/sst")
    loopback = Upstream(oisst_https="http://127.0.0.1:1/o", hycom_ncss="http://127.0.0.1:2/n",
                        hycom_opendap="http://127.0.0.1:2/d", hycom_files="http://127.0.0.1:3/f")
    assert meta.is_synthetic(loopback) and not meta.is_synthetic(Upstream())
    assert ProductMetadata(origin="real").is_synthetic(loopback) is False
    ds = one_run(RUNS[0], metadata=meta.global_attrs(synthetic=True), synthetic=True)
    a = ds.attrs
    assert (a["institution"], a["creator_institution"], a["creator_name"]) == ("Example Ocean Office",) * 2 + ("Forecast desk",)
    assert a["doi"] == "10.1234/abcd" and a["metadata_link"] == "https://example.org/sst"
    assert a["license"].startswith("SYNTHETIC") and "not for navigation" in a["license"]
    assert a["title"].startswith("SYNTHETIC") and a["sstbc_synthetic"] == "true"
    default = one_run(RUNS[0]).attrs
    assert "not for navigation" in default["license"] and default["sstbc_synthetic"] == "false"
