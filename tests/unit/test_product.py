from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import xarray as xr

from bias_correction.errors import ProductError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.mask import OceanMask, mask_sha256
from bias_correction.io.product import build_product, product_key, validate_product, write_product
from bias_correction.storage import Store

GRID = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=6, nlon=8)
RUN = dt.datetime(2021, 4, 20, 12)


def _mask() -> OceanMask:
    v = np.ones(GRID.shape, bool)
    v[0, :3] = False
    return OceanMask(v, mask_sha256(v), GRID.grid_id)


def _product(corrected: np.ndarray | None = None) -> xr.Dataset:
    mask = _mask()
    rng = np.random.default_rng(0)
    raw = 27 + rng.normal(0, 0.5, (7, *GRID.shape)).astype(np.float32)
    valid = np.array([np.datetime64(RUN.date()) + np.timedelta64(k, "D") for k in range(1, 8)])
    return build_product(
        run=RUN, grid=GRID, mask=mask, region_name="scs", sst_corrected=raw - 0.3 if corrected is None else corrected,
        sst_raw=raw, valid_dates=valid, provenance={"model_id": "convgru-sa", "model_version": "v1", "inputs": []},
        input_digest="abc",
    )


def test_product_round_trip_cf_encoding(tmp_path) -> None:
    store = Store(tmp_path)
    key = product_key("scs", RUN, "convgru-sa")
    assert key == "products/scs/2021/04/sstbc_scs_20210420T12Z_convgru-sa.nc"
    write_product(store, key, _product(), _mask())
    with xr.open_dataset(store.url(key)) as ds:
        assert ds["sst"].shape == (7, 1, 6, 8)  # (lead_day, forecast_reference_time, lat, lon)
        assert ds["sst"].attrs["units"] == "degree_Celsius"
        assert ds["time"].values[0, 0] == np.datetime64("2021-04-21T12:00:00")
        assert ds["forecast_period"].values.tolist() == [24.0 * k for k in range(1, 8)]
        assert np.isnan(ds["sst"].values[:, 0, 0, 0]).all() and np.isfinite(ds["sst"].values[:, 0, 1, 1]).all()
        assert json.loads(ds.attrs["sstbc_provenance"])["model_id"] == "convgru-sa"
        assert ds.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    with xr.open_dataset(store.url(key), decode_cf=False) as raw:
        assert raw["sst"].attrs["_FillValue"] == -999.0
        assert raw["time"].dtype == np.float64  # not int64 (CF checkers flag int64 time)
        for c in ("lat", "lon", "time"):
            assert "_FillValue" not in raw[c].attrs


def test_invalid_product_is_never_published(tmp_path) -> None:
    store = Store(tmp_path)
    key = product_key("scs", RUN, "convgru-sa")
    bad = np.full((7, *GRID.shape), 55.0, np.float32)  # outside the physical range
    with pytest.raises(ProductError, match="outside"):
        write_product(store, key, _product(bad), _mask())
    assert not store.exists(key)
    assert store.list("products") == []


def test_nan_inside_the_mask_fails_validation(tmp_path) -> None:
    ds = _product()
    ds["sst"].values[2, 0, 3, 3] = np.nan
    path = tmp_path / "p.nc"
    from bias_correction.io.product import _encoding

    ds.to_netcdf(path, encoding=_encoding(ds))
    with pytest.raises(ProductError, match="NaN pattern"):
        validate_product(path, _mask())


def test_product_passes_cf_and_acdd_compliance_checks(tmp_path) -> None:
    cc = pytest.importorskip("compliance_checker.runner")
    store = Store(tmp_path)
    key = product_key("scs", RUN, "convgru-sa")
    write_product(store, key, _product(), _mask())
    cc.CheckSuite.load_all_available_checkers()
    report = tmp_path / "report.json"
    ok, errors = cc.ComplianceChecker.run_checker(
        store.url(key), ["cf:1.11", "acdd:1.3"], verbose=0, criteria="strict", output_filename=str(report),
        output_format="json",
    )
    result = json.loads(report.read_text())
    assert set(result) == {"cf:1.11", "acdd:1.3"}
    failed = {(name, prio, m["name"]) for name, res in result.items()
              for prio in ("high_priorities", "medium_priorities")
              for m in res[prio] if m["value"][0] < m["value"][1]}
    # CF has no standard name for a forecast correction (see tests/io/test_product_cf.py).
    assert failed - {("acdd:1.3", "high_priorities", 'variable "sst_correction" missing the following attributes:')} == set()
    assert result["cf:1.11"]["scored_points"] == result["cf:1.11"]["possible_points"] > 100
