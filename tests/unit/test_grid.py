from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bias_correction.config import Region
from bias_correction.grid.grids import RegularGrid, target_grid
from bias_correction.grid.mask import apply_mask, derive_mask, load_mask, mask_sha256, save_mask
from bias_correction.grid.regrid import Regridder, bilinear_weights
from bias_correction.errors import InputValidationError
from bias_correction.storage import Store


def test_default_region_is_50_by_50_cell_centres() -> None:
    g = target_grid(Region(), 0.08)
    assert g.shape == (50, 50)
    assert g.lat[0] == pytest.approx(12.04) and g.lat[-1] == pytest.approx(15.96)
    assert g.lon[0] == pytest.approx(110.04) and g.lon[-1] == pytest.approx(113.96)
    assert g.bounds() == pytest.approx((12.0, 16.0, 110.0, 114.0))


def test_global_grid_is_4500_by_2250() -> None:
    g = target_grid(Region(lat_min=-90, lat_max=90, lon_min=0, lon_max=360), 0.08)
    assert g.shape == (2250, 4500)


def test_grid_id_changes_with_the_grid() -> None:
    a = target_grid(Region(), 0.08)
    b = target_grid(Region(lat_max=17), 0.08)
    assert a.grid_id != b.grid_id and a.grid_id == target_grid(Region(), 0.08).grid_id


def _src(lat0, lat1, dlat, lon0, lon1, dlon):
    return np.arange(lat0, lat1 + 1e-9, dlat), np.arange(lon0, lon1 + 1e-9, dlon)


def test_bilinear_reproduces_a_linear_field_exactly() -> None:
    lat, lon = _src(11.0, 17.0, 0.25, 109.0, 115.0, 0.25)
    field = 3.0 + 0.5 * lat[:, None] - 0.2 * lon[None, :]
    g = target_grid(Region(), 0.08)
    out = Regridder(g)(xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}))
    expected = 3.0 + 0.5 * g.lat[:, None] - 0.2 * g.lon[None, :]
    np.testing.assert_allclose(out.values, expected, atol=1e-4)


def test_land_never_leaks_into_ocean_and_no_hole_next_to_coast() -> None:
    lat, lon = _src(11.0, 17.0, 0.25, 109.0, 115.0, 0.25)
    field = np.full((lat.size, lon.size), 27.0)
    field[:, lon > 112.0] = np.nan  # land east of 112E (NaN like decoded fill)
    g = target_grid(Region(), 0.08)
    out = Regridder(g)(xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})).values
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], 27.0)  # constant preserved, never diluted by land
    # every target cell within the last ocean source column is filled
    assert finite[:, g.lon <= 112.0].all()
    assert not finite[:, g.lon > 112.25].any()


def test_periodic_source_has_no_seam_at_the_dateline() -> None:
    lat, lon = _src(-89.875, 89.875, 0.25, 0.125, 359.875, 0.25)
    field = np.full((lat.size, lon.size), 15.0)
    g = target_grid(Region(lat_min=-2, lat_max=2, lon_min=178, lon_max=182), 0.08)
    w = bilinear_weights(lat, lon, g)
    out = w.apply(field)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 15.0, atol=1e-5)


def test_regrid_rejects_wrong_dims() -> None:
    g = target_grid(Region(), 0.08)
    with pytest.raises(InputValidationError):
        Regridder(g)(xr.DataArray(np.zeros((3, 3)), dims=("y", "x")))


def test_mask_round_trip_and_hash(tmp_path) -> None:
    g = RegularGrid(lat0=0.04, lon0=0.04, step=0.08, nlat=4, nlon=5)
    store = Store(tmp_path)
    values = np.ones(g.shape, bool)
    values[0, 0] = False
    assert load_mask(store, g) is None
    saved = save_mask(store, g, values, "test")
    loaded = load_mask(store, g)
    assert loaded is not None and loaded.sha256 == saved.sha256 == mask_sha256(values)
    assert (loaded.values == values).all()


def test_mask_is_the_intersection_and_holes_are_errors() -> None:
    o = np.ones((2, 3))
    h = np.ones((7, 2, 3))
    o[0, 0] = np.nan
    h[3, 1, 2] = np.nan
    m = derive_mask(o, h)
    assert m.sum() == 4 and not m[0, 0] and not m[1, 2]
    g = RegularGrid(0.04, 0.04, 0.08, 2, 3)
    from bias_correction.grid.mask import OceanMask

    mask = OceanMask(m, mask_sha256(m), g.grid_id)
    field = np.full((2, 3), 20.0)
    out = apply_mask(field, mask, "x")
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])
    field[0, 1] = np.nan
    with pytest.raises(InputValidationError, match="ocean cell"):
        apply_mask(field, mask, "HYCOM run")
