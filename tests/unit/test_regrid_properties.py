"""Property tests of the regridder (reliability.md section 5, "Hypothesis for regridding").

Grids are small (<= 50 x 50) and random: sizes, spacings, offsets and longitude conventions come
from hypothesis; field values and land masks from a numpy generator seeded by hypothesis (fast to
draw, still shrinkable). Every test runs both methods unless the property is method-specific.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.lonlat import wrap_lon
from bias_correction.grid.weights import build_weights

METHODS = st.sampled_from(["bilinear", "conservative"])
SEEDS = st.integers(0, 2**32 - 1)
#: target steps that divide 180, so a grid can reach both poles and go round the globe
STEPS = st.sampled_from([0.08, 0.25, 0.5, 1.0, 2.5, 7.5, 10.0])
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _area_lat(lat: np.ndarray, step: float | None = None) -> np.ndarray:
    """sin-latitude extent of cells centred at ``lat`` (midpoint edges, or +-step/2)."""
    if step is None:
        mid = (lat[:-1] + lat[1:]) / 2
        edges = np.concatenate([[lat[0] - (lat[1] - lat[0]) / 2], mid, [lat[-1] + (lat[-1] - lat[-2]) / 2]])
    else:
        edges = np.concatenate([lat - step / 2, [lat[-1] + step / 2]])
    return np.diff(np.sin(np.deg2rad(np.clip(edges, -90, 90))))


@st.composite
def global_sources(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A global regular source: cells from pole to pole, longitudes from any start (0..360 or -180..180)."""
    nlat = draw(st.integers(4, 40))
    nlon = draw(st.integers(4, 50))
    lat = -90 + (np.arange(nlat) + 0.5) * 180 / nlat
    start = draw(st.floats(-180, 180, allow_nan=False))
    lon = start + np.arange(nlon) * 360 / nlon
    return lat, lon


@st.composite
def target_grids(draw: st.DrawFn, pole: bool = False) -> RegularGrid:
    """Any window of a global cell-centred grid, near a pole if asked, in either lon convention,
    possibly across the antimeridian or the 0/360 seam."""
    step = draw(STEPS)
    rows = round(180 / step)
    cols = round(360 / step)
    nlat = draw(st.integers(1, min(50, rows)))
    nlon = draw(st.integers(1, min(50, cols)))
    if pole:
        j0 = draw(st.sampled_from([0, rows - nlat]))
    else:
        j0 = draw(st.integers(0, rows - nlat))
    i0 = draw(st.integers(0, cols - 1))
    shift = draw(st.sampled_from([0.0, -360.0]))
    return RegularGrid(lat0=round(-90 + step * (j0 + 0.5), 10), lon0=round(step * (i0 + 0.5) + shift, 10),
                       step=step, nlat=nlat, nlon=nlon)


def _land(rng: np.random.Generator, shape: tuple[int, int], frac: float) -> np.ndarray:
    return rng.random(shape) < frac


# ----------------------------------------------------------------------------------------- (a)
@FAST
@given(src=global_sources(), grid=target_grids(pole=True), method=METHODS, value=st.floats(-5, 40), seed=SEEDS,
       land_frac=st.sampled_from([0.0, 0.0, 0.3]))
def test_constant_stays_constant_over_ocean_at_seam_and_poles(src, grid, method, value, seed, land_frac) -> None:
    lat, lon = src
    rng = np.random.default_rng(seed)
    land = _land(rng, (lat.size, lon.size), land_frac)
    field = np.where(land, np.nan, value)
    w = build_weights(lat, lon, grid, method)
    out = w.apply(field)
    finite = np.isfinite(out)
    assert np.all(np.abs(out[finite] - value) <= 1e-5)
    if land_frac == 0.0:
        # a global source fills every target cell: no NaN row at a pole, no NaN column at a seam
        assert finite.all(), f"{(~finite).sum()} NaN cells in {grid}"
    # (d) NaN exactly where no valid source cell contributes
    den = (w.matrix @ (~land).ravel().astype(float)).reshape(grid.shape)
    np.testing.assert_array_equal(~finite, den == 0)


# ----------------------------------------------------------------------------------------- (b)
@st.composite
def regional_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, RegularGrid]:
    """An irregular regional source (lon in its own convention) and a target inside it, in
    either convention."""
    nlat = draw(st.integers(2, 30))
    nlon = draw(st.integers(2, 30))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    dlat = rng.uniform(0.2, 1.0, nlat - 1)
    dlon = rng.uniform(0.2, 1.0, nlon - 1)
    lat0 = draw(st.floats(-80, 60))
    lon0 = draw(st.floats(-180, 330))
    lat = lat0 + np.concatenate([[0], np.cumsum(dlat)])
    lon = lon0 + np.concatenate([[0], np.cumsum(dlon)])
    assume(lat[-1] <= 89)
    step = draw(st.sampled_from([0.08, 0.1, 0.25, 0.3]))
    tl = draw(st.floats(lat[0], lat[-1]))
    tn = draw(st.floats(lon[0], lon[-1]))
    ny = max(1, min(50, int((lat[-1] - tl) / step)))
    nx = max(1, min(50, int((lon[-1] - tn) / step)))
    shift = draw(st.sampled_from([0.0, 360.0, -360.0]))
    grid = RegularGrid(lat0=tl, lon0=tn + shift, step=step, nlat=ny, nlon=nx)
    assume(grid.lat[-1] <= lat[-1] and grid.lon[-1] - shift <= lon[-1])
    return lat, lon, grid


@FAST
@given(case=regional_cases(), coef=st.tuples(st.floats(-30, 30), st.floats(-2, 2), st.floats(-2, 2)), seed=SEEDS,
       land_frac=st.sampled_from([0.0, 0.2]))
def test_bilinear_reproduces_linear_fields_away_from_the_coast(case, coef, seed, land_frac) -> None:
    lat, lon, grid = case
    a, b, c = coef
    land = _land(np.random.default_rng(seed), (lat.size, lon.size), land_frac)
    field = np.where(land, np.nan, a + b * lat[:, None] + c * lon[None, :])
    w = build_weights(lat, lon, grid, "bilinear")
    out = w.apply(field)
    tlon = wrap_lon(grid.lon, lon[0] - 1e-9)  # the target's longitudes in the source's convention
    expected = a + b * grid.lat[:, None] + c * tlon[None, :]
    den = (w.matrix @ (~land).ravel().astype(float)).reshape(grid.shape)
    inland = np.abs(den - 1) < 1e-12  # every bilinear neighbour is ocean
    scale = abs(a) + abs(b) * 90 + abs(c) * 540
    np.testing.assert_allclose(out[inland], expected[inland], rtol=0, atol=1e-6 * scale + 1e-5)


# ----------------------------------------------------------------------------------------- (g)
@FAST
@given(src=global_sources(), step=st.sampled_from([7.5, 9.0, 10.0, 12.0, 15.0, 20.0, 30.0]),
       lon_shift=st.sampled_from([0.0, -180.0]), seed=SEEDS)
def test_conservative_keeps_the_area_weighted_mean_globally(src, step, lon_shift, seed) -> None:
    lat, lon = src
    grid = RegularGrid(lat0=-90 + step / 2, lon0=step / 2 + lon_shift, step=step, nlat=round(180 / step),
                       nlon=round(360 / step))
    field = np.random.default_rng(seed).normal(15, 8, (lat.size, lon.size))
    out = build_weights(lat, lon, grid, "conservative").apply(field)
    assert np.isfinite(out).all()
    src_mean = np.sum(_area_lat(lat)[:, None] * field) / (lon.size * _area_lat(lat).sum())
    dst_mean = np.sum(_area_lat(grid.lat, step)[:, None] * out) / (grid.nlon * _area_lat(grid.lat, step).sum())
    assert abs(src_mean - dst_mean) <= 1e-5 * (1 + abs(src_mean))


@FAST
@given(ny=st.integers(1, 20), nx=st.integers(1, 20), ky=st.integers(1, 4), kx=st.integers(1, 4),
       ratio=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]), lat_i=st.integers(0, 50), lon_i=st.integers(-2000, 4000),
       seed=SEEDS)
def test_conservative_keeps_the_mean_over_a_shared_region(ny, nx, ky, kx, ratio, lat_i, lon_i, seed) -> None:
    """Source cells ``ratio`` times the target step tile exactly the target's box."""
    step = 0.25
    grid = RegularGrid(lat0=-60 + step * (lat_i + 0.5), lon0=step * (lon_i + 0.5), step=step, nlat=ny * ky, nlon=nx * kx)
    lat_min, lat_max, lon_min, lon_max = grid.bounds()
    nsy = max(2, round((lat_max - lat_min) / (step * ratio)))
    nsx = max(2, round((lon_max - lon_min) / (step * ratio)))
    lat = lat_min + (np.arange(nsy) + 0.5) * (lat_max - lat_min) / nsy
    lon = wrap_lon(lon_min, -180) + (np.arange(nsx) + 0.5) * (lon_max - lon_min) / nsx  # other convention
    field = np.random.default_rng(seed).normal(15, 8, (nsy, nsx))
    out = build_weights(lat, lon, grid, "conservative").apply(field)
    assert np.isfinite(out).all()
    src_mean = np.sum(_area_lat(lat)[:, None] * field) / (nsx * _area_lat(lat).sum())
    dst_mean = np.sum(_area_lat(grid.lat, step)[:, None] * out) / (grid.nlon * _area_lat(grid.lat, step).sum())
    assert abs(src_mean - dst_mean) <= 1e-5 * (1 + abs(src_mean))


# ------------------------------------------------------------------------------------ (c), (d)
@FAST
@given(src=global_sources(), grid=target_grids(), method=METHODS, seed=SEEDS, land_frac=st.floats(0, 0.9))
def test_output_within_input_range_and_no_land_leak(src, grid, method, seed, land_frac) -> None:
    lat, lon = src
    rng = np.random.default_rng(seed)
    land = _land(rng, (lat.size, lon.size), land_frac)
    assume(not land.all())
    ocean = rng.normal(15, 8, land.shape)
    # land carries a huge value and is NaN-masked: if it leaked, the output would exceed the ocean max
    with_land = np.where(land, 1e6, ocean)
    field = np.where(land, np.nan, with_land)
    out = build_weights(lat, lon, grid, method).apply(field)
    lo, hi = ocean[~land].min(), ocean[~land].max()
    tol = 1e-5 * (1 + max(abs(lo), abs(hi)))
    finite = np.isfinite(out)
    assert np.all(out[finite] >= lo - tol) and np.all(out[finite] <= hi + tol)


@FAST
@given(case=regional_cases(), method=METHODS, seed=SEEDS, land_frac=st.floats(0, 0.9))
def test_regional_output_within_input_range_and_nan_land_stays_nan(case, method, seed, land_frac) -> None:
    lat, lon, grid = case
    rng = np.random.default_rng(seed)
    land = _land(rng, (lat.size, lon.size), land_frac)
    field = np.where(land, np.nan, rng.normal(15, 8, land.shape))
    w = build_weights(lat, lon, grid, method)
    out = w.apply(field)
    den = (w.matrix @ (~land).ravel().astype(float)).reshape(grid.shape)
    np.testing.assert_array_equal(np.isnan(out), den == 0)
    if (~land).any():
        finite = np.isfinite(out)
        assert np.all(out[finite] >= np.nanmin(field) - 1e-4) and np.all(out[finite] <= np.nanmax(field) + 1e-4)


# ----------------------------------------------------------------------------------------- (f)
@FAST
@given(grid=target_grids(), method=METHODS, seed=SEEDS, land_frac=st.sampled_from([0.0, 0.3]))
def test_same_grid_is_the_identity(grid, method, seed, land_frac) -> None:
    assume(grid.nlat >= 2 and grid.nlon >= 2)
    rng = np.random.default_rng(seed)
    field = rng.normal(15, 8, grid.shape).astype(np.float32)
    field[_land(rng, grid.shape, land_frac)] = np.nan
    out = build_weights(grid.lat, grid.lon, grid, method).apply(field)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(field))
    np.testing.assert_allclose(out, field, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------- (e)
@FAST
@given(src=global_sources(), grid=target_grids(), method=METHODS, seed=SEEDS, land_frac=st.sampled_from([0.0, 0.3]))
def test_lon_convention_shift_gives_the_same_result(src, grid, method, seed, land_frac) -> None:
    lat, lon = src
    rng = np.random.default_rng(seed)
    field = rng.normal(15, 8, (lat.size, lon.size))
    field[_land(rng, field.shape, land_frac)] = np.nan
    # the same data in 0..360 and in -180..180, each sorted ascending
    out = {}
    for start in (0.0, -180.0):
        wl = wrap_lon(lon, start)
        order = np.argsort(wl)
        out[start] = build_weights(lat, wl[order], grid, method).apply(field[:, order])
    # ... and the target expressed in the other convention
    other = RegularGrid(grid.lat0, float(wrap_lon(grid.lon0, -180.0 if grid.lon0 >= 0 else 0.0)), grid.step,
                        grid.nlat, grid.nlon)
    out["target"] = build_weights(lat, lon, other, method).apply(field)
    np.testing.assert_allclose(out[0.0], out[-180.0], rtol=0, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(out[0.0], out["target"], rtol=0, atol=1e-5, equal_nan=True)


@FAST
@given(src=global_sources(), method=METHODS, value=st.floats(-2, 35), lon_min=st.sampled_from([170.0, 178.0, 179.9, -180.0, 340.0]),
       width=st.sampled_from([1.0, 4.0, 20.0]), lat_min=st.floats(-88, 80), step=st.sampled_from([0.08, 0.25]))
def test_regions_across_the_antimeridian_work(src, method, value, lon_min, width, lat_min, step) -> None:
    from bias_correction.config import Region
    from bias_correction.grid.grids import target_grid

    lat, lon = src
    grid = target_grid(Region(lat_min=lat_min, lat_max=min(90, lat_min + 2), lon_min=lon_min,
                              lon_max=min(360.0, lon_min + width)), step)
    field = np.full((lat.size, lon.size), value)
    out = build_weights(lat, lon, grid, method).apply(field)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, value, atol=1e-5)
    # a smooth periodic field agrees with the same regridding of the other convention
    f2 = np.cos(np.deg2rad(lon))[None, :] * np.ones((lat.size, 1))
    a = build_weights(lat, lon, grid, method).apply(f2)
    wl = wrap_lon(lon, 0.0)
    order = np.argsort(wl)
    b = build_weights(lat, wl[order], grid, method).apply(f2[:, order])
    np.testing.assert_allclose(a, b, atol=1e-6)
