"""CF-1.11 + ACDD-1.3 products (GHRSST-L4-like variables) checked with the IOOS compliance-checker."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.mask import OceanMask, mask_sha256
from bias_correction.io.product import QF_LAND, QF_LARGE_CORRECTION, build_product, product_key, write_product
from bias_correction.storage import Store

GRID = RegularGrid(lat0=12.04, lon0=110.04, step=0.08, nlat=6, nlon=8)
RUN = dt.datetime(2021, 4, 20, 12)
CF = "cf:1.11"  # the highest CF the installed checker knows
PROV = {"model_id": "convgru-sa", "model_version": "v1", "model_sha256": {"model.onnx": "ab" * 32},
        "code_version": {"sstbc": "0.1.0"}, "config_fingerprint": "f" * 16, "onnxruntime_provider": "CPUExecutionProvider",
        "runtime": "onnx",
        "inputs": [{"run": "2021-04-20T12Z", "url": "http://x/y", "sha256": "c" * 64, "version": "forecast"}]}


def _mask() -> OceanMask:
    v = np.ones(GRID.shape, bool)
    v[0, :3] = False
    return OceanMask(v, mask_sha256(v), GRID.grid_id)


def product(uncertainty: np.ndarray | None = None) -> xr.Dataset:
    rng = np.random.default_rng(0)
    raw = 27 + rng.normal(0, 0.5, (7, *GRID.shape)).astype(np.float32)
    corrected = raw - 0.3
    corrected[3, 4, 4] -= 5.0  # one huge correction -> large_correction flag
    valid = np.array([np.datetime64(RUN.date()) + np.timedelta64(k, "D") for k in range(1, 8)])
    unc = np.linspace(0.2, 0.5, 7) if uncertainty is None else uncertainty
    return build_product(run=RUN, grid=GRID, mask=_mask(), region_name="scs", sst_corrected=corrected, sst_raw=raw,
                         valid_dates=valid, provenance=PROV, input_digest="abc", sst_uncertainty=unc)


def write(tmp_path: Path) -> Path:
    store = Store(tmp_path)
    key = product_key("scs", RUN, "convgru-sa")
    write_product(store, key, product(), _mask())
    return Path(store.url(key))


def test_product_variables_coordinates_and_flags(tmp_path: Path) -> None:
    with xr.open_dataset(write(tmp_path)) as ds:
        assert ds.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
        assert ds["sst"].dims == ("lead_day", "forecast_reference_time", "lat", "lon")
        assert ds["time"].dims == ("lead_day", "forecast_reference_time")
        for v in ("sst", "sst_raw", "sst_correction", "sst_uncertainty", "quality_flag", "ocean_mask"):
            assert v in ds, v
        assert ds["sst"].attrs["units"] == "degree_Celsius" and ds["sst_correction"].attrs["units"] == "K"
        np.testing.assert_allclose(ds["sst_correction"].values, ds["sst"].values - ds["sst_raw"].values, atol=1e-5)
        assert "calibrated validation residual" in ds["sst_uncertainty"].attrs["uncertainty_method"]
        np.testing.assert_allclose(ds["sst_uncertainty"].values[:, 0, 2, 2], np.linspace(0.2, 0.5, 7), rtol=1e-6)
        assert np.isnan(ds["sst_uncertainty"].values[:, 0, 0, 0]).all()
        qf = ds["quality_flag"].values[:, 0]
        assert (qf[:, 0, 0] & QF_LAND).all() and not (qf[:, 2, 2] & QF_LAND).any()
        assert qf[3, 4, 4] & QF_LARGE_CORRECTION and not qf[2, 4, 4] & QF_LARGE_CORRECTION
        assert ds["lead_day"].values.tolist() == list(range(1, 8))
        assert ds["forecast_period"].values.tolist() == [24.0 * k for k in range(1, 8)]
        np.testing.assert_array_equal(ds["forecast_reference_time"].values, [np.datetime64("2021-04-20T12:00:00")])
        assert ds.attrs["sstbc_active_provider"] == "CPUExecutionProvider"
        assert json.loads(ds.attrs["sstbc_model_sha256"]) == {"model.onnx": "ab" * 32}
        assert json.loads(ds.attrs["sstbc_code_version"]) == {"sstbc": "0.1.0"}
        assert "http://x/y sha256:" + "c" * 64 in ds.attrs["sstbc_inputs"]
        assert json.loads(ds.attrs["sstbc_provenance"])["config_fingerprint"] == "f" * 16


def test_product_passes_cf_1_11_and_acdd_1_3_without_high_priority_failures(tmp_path: Path) -> None:
    cc = pytest.importorskip("compliance_checker.runner")
    path = write(tmp_path)
    cc.CheckSuite.load_all_available_checkers()
    report = tmp_path / "report.json"
    cc.ComplianceChecker.run_checker(str(path), [CF, "acdd:1.3"], verbose=0, criteria="strict",
                                     output_filename=str(report), output_format="json")
    result = json.loads(report.read_text())
    assert set(result) == {CF, "acdd:1.3"}
    failed = {(name, prio, m["name"], "; ".join(m.get("msgs", []))) for name, res in result.items()
              for prio in ("high_priorities", "medium_priorities")
              for m in res[prio] if m["value"][0] < m["value"][1]}
    # The only accepted item: ACDD asks every data variable for a standard_name, and CF has none for a
    # forecast *correction* (inventing one fails CF). GHRSST omits it for sses_bias likewise.
    allowed = {("acdd:1.3", "high_priorities", 'variable "sst_correction" missing the following attributes:',
                "standard_name")}
    assert failed - allowed == set()
    assert result[CF]["scored_points"] == result[CF]["possible_points"] > 100
