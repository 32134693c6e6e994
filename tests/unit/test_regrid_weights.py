"""Regridding weights and their application on the real grids (OISST 0.25, HYCOM GLBy0.08,
global and regional 0.08 product grids): poles, seam, dask, memory, speed and bad input."""

from __future__ import annotations

import time
import tracemalloc

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from bias_correction.config import Region
from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import target_grid
from bias_correction.grid.regrid import (
    Regridder,
    bilinear_weights,
    conservative_weights,
)
from bias_correction.grid.weights import build_weights

OISST_LAT = np.round(-89.875 + 0.25 * np.arange(720), 6)
OISST_LON = np.round(0.125 + 0.25 * np.arange(1440), 6)
HYCOM_LAT = np.round(-80 + 0.04 * np.arange(4251), 6)
HYCOM_LON = np.round(0.08 * np.arange(4500), 6)
GLOBAL = target_grid(Region(name="globe", lat_min=-90, lat_max=90, lon_min=0, lon_max=360), 0.08)


def _field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth SST-like float32 field with a rectangular 'continent' of NaN."""
    f = 28 - 25 * np.sin(np.deg2rad(lat))[:, None] ** 2 + np.cos(np.deg2rad(3 * lon))[None, :]
    f = f.astype(np.float32)
    f[np.ix_((lat > 20) & (lat < 40), (lon > 100) & (lon < 120))] = np.nan
    return f


@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_global_oisst_to_global_008_has_no_nan_rows_at_poles_or_columns_at_the_seam(method: str) -> None:
    w = build_weights(OISST_LAT, OISST_LON, GLOBAL, method)
    out = w.apply(np.full((720, 1440), 21.5, np.float32))
    assert out.shape == (2250, 4500) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 21.5, atol=1e-5)


@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_hycom_native_grid_to_global_is_nan_only_south_of_its_domain(method: str) -> None:
    w = build_weights(HYCOM_LAT, HYCOM_LON, GLOBAL, method)
    out = w.apply(np.full((4251, 4500), 10.0, np.float32))
    assert np.isfinite(out[GLOBAL.lat > -80]).all()
    assert np.isnan(out[GLOBAL.lat < -80.1]).all()


def test_global_weights_build_fast_and_apply_in_bounded_memory() -> None:
    t0 = time.perf_counter()
    w = build_weights(OISST_LAT, OISST_LON, GLOBAL, "bilinear")
    assert time.perf_counter() - t0 < 2.0
    field = _field(OISST_LAT, OISST_LON)
    w.apply(field[:8, :8].repeat(90, 0).repeat(180, 1))  # warm the padded index arrays
    tracemalloc.start()
    try:
        out = w.apply(field)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * out.nbytes, f"peak {peak / 1e6:.1f} MB for a {out.nbytes / 1e6:.1f} MB output"


@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_separable_application_equals_the_full_sparse_matrix(method: str) -> None:
    rng = np.random.default_rng(3)
    lat = np.sort(rng.uniform(5, 25, 17))
    lon = np.sort(rng.uniform(100, 125, 23))
    grid = target_grid(Region(lat_min=8, lat_max=20, lon_min=105, lon_max=118), 0.25)
    field = rng.normal(20, 3, (lat.size, lon.size))
    field[rng.random(field.shape) < 0.3] = np.nan
    w = build_weights(lat, lon, grid, method)
    valid = np.isfinite(field).ravel()
    num = w.matrix @ np.where(valid, field.ravel(), 0.0)
    den = w.matrix @ valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(den > 0, num / den, np.nan).reshape(grid.shape)
    np.testing.assert_allclose(w.apply(field), expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert w.matrix.shape == (grid.nlat * grid.nlon, lat.size * lon.size)


def test_unsorted_longitudes_and_descending_latitudes_are_handled() -> None:
    lat = np.arange(-10.0, 10.01, 0.5)
    lon = np.arange(0.25, 360, 0.5)
    field = np.sin(np.deg2rad(lon))[None, :] + lat[:, None] / 10
    grid = target_grid(Region(lat_min=-5, lat_max=5, lon_min=175, lon_max=185), 0.08)
    ref = bilinear_weights(lat, lon, grid).apply(field)
    pm = np.where(lon > 180, lon - 360, lon)  # converted to -180..180 but not re-sorted
    got = bilinear_weights(lat[::-1], pm, grid).apply(field[::-1])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    ref_c = conservative_weights(lat, lon, grid).apply(field)
    np.testing.assert_allclose(conservative_weights(lat[::-1], pm, grid).apply(field[::-1]), ref_c, atol=1e-6)


def _regional_source() -> xr.DataArray:
    lat = np.round(np.arange(11.125, 17, 0.25), 6)
    lon = np.round(np.arange(109.125, 115, 0.25), 6)
    f = _field(lat, lon)
    f[:, lon > 113.5] = np.nan
    return xr.DataArray(f, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="sst", attrs={"units": "degC"})


def test_regridder_keeps_leading_dims_coords_and_attrs_and_dask_matches_numpy() -> None:
    src = _regional_source()
    da = xr.concat([src + k for k in range(7)], dim="lead").assign_coords(
        lead=np.arange(1, 8), valid_date=("lead", np.arange(7) * 10))
    da.attrs = {"units": "degC"}
    grid = target_grid(Region(), 0.08)
    for method in ("bilinear", "conservative"):
        r = Regridder(grid, method=method)
        eager = r(da)
        assert eager.dims == ("lead", "lat", "lon") and eager.shape == (7, 50, 50)
        assert (eager["valid_date"].values == np.arange(7) * 10).all() and eager.attrs["units"] == "degC"
        np.testing.assert_allclose(eager["lon"].values, grid.lon)
        lazy = r(da.chunk({"lead": 2, "lat": 5}))
        assert isinstance(lazy.data, dsa.Array) and lazy.chunks[0] == (2, 2, 2, 1)
        np.testing.assert_array_equal(lazy.values, eager.values)
    # the per-call method overrides the default
    np.testing.assert_array_equal(Regridder(grid)(da, method="conservative").values,
                                  Regridder(grid, method="conservative")(da).values)


def test_small_region_regrids_in_milliseconds() -> None:
    src = _regional_source()
    r = Regridder(target_grid(Region(), 0.08))
    r(src)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        r(src)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.02, f"median {np.median(times) * 1e3:.2f} ms"


@pytest.mark.parametrize(("lat", "lon", "match"), [
    (np.array([0.0, 1.0, 1.0]), np.arange(3.0), "repeat"),
    (np.array([0.0, np.nan, 2.0]), np.arange(3.0), "finite"),
    (np.array([0.0]), np.arange(3.0), "at least 2"),
    (np.array([80.0, 95.0]), np.arange(3.0), r"\[-90, 90\]"),
])
def test_bad_source_coordinates_are_rejected_with_what_was_expected(lat, lon, match) -> None:
    grid = target_grid(Region(), 0.08)
    with pytest.raises(InputValidationError, match=match):
        build_weights(lat, lon, grid)


def test_bad_method_and_field_shape_are_rejected() -> None:
    grid = target_grid(Region(), 0.08)
    with pytest.raises(InputValidationError, match="method"):
        Regridder(grid, method="nearest")
    src = _regional_source()
    with pytest.raises(InputValidationError, match="method"):
        Regridder(grid)(src, method="cubic")
    w = bilinear_weights(src["lat"].values, src["lon"].values, grid)
    with pytest.raises(InputValidationError, match="source shape"):
        w.apply(np.zeros((3, 4)))
    with pytest.raises(InputValidationError, match="trailing dims"):
        Regridder(grid)(src.rename(lat="y"))


@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_the_per_mask_normaliser_cache_never_serves_another_mask(method: str) -> None:
    """Days with different NaN patterns on the same weights give what fresh weights give."""
    src = _regional_source()
    lat, lon = src["lat"].values, src["lon"].values
    grid = target_grid(Region(), 0.08)
    w = build_weights(lat, lon, grid, method)
    rng = np.random.default_rng(7)
    fields = []
    for _ in range(4):
        f = rng.normal(20, 3, src.shape)
        f[rng.random(f.shape) < 0.4] = np.nan
        fields.append(f)
    for f in fields + fields[::-1]:  # more masks than the cache holds, revisited
        np.testing.assert_array_equal(w.apply(f), build_weights(lat, lon, grid, method).apply(f))
    valid = np.isfinite(fields[0])
    inv = w.normaliser(valid)
    den = (w.matrix @ valid.ravel().astype(float)).reshape(grid.shape)
    np.testing.assert_allclose(inv[den > 0], 1 / den[den > 0], rtol=1e-6)
    assert np.isnan(inv[den == 0]).all()
