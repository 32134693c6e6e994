"""Corrected-SST products: one CF-1.8 / ACDD-1.3 NetCDF per forecast run.

Naming (documented in README)::

    products/{region}/{YYYY}/{MM}/sstbc_{region}_{YYYYMMDD}T{HH}Z_{model_id}.nc

Each file holds, per valid day (lead days 1..N of the run): ``sst`` (corrected, °C), ``sst_raw``
(HYCOM daily mean, °C) and the ``ocean_mask``; land is ``_FillValue``. The file is written under
a temporary name, reopened and validated, and only then renamed into place, so no partial or
invalid product is ever visible. ``sstbc_input_digest`` identifies inputs + model + code, so a
re-run with the same digest rewrites nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import bias_correction
from bias_correction.errors import ProductError
from bias_correction.grid.grids import RegularGrid
from bias_correction.grid.mask import OceanMask
from bias_correction.io.netcdf import read_dataset, write_dataset
from bias_correction.storage import Store

FILL = np.float32(-999.0)
SST_RANGE_C = (-2.5, 40.0)
_SST_ENC = {"dtype": "float32", "_FillValue": FILL, "zlib": True, "complevel": 4, "shuffle": True}


def product_key(region: str, run: dt.datetime, model_id: str) -> str:
    return f"products/{region}/{run:%Y}/{run:%m}/sstbc_{region}_{run:%Y%m%dT%H}Z_{model_id}.nc"


@dataclass(frozen=True)
class ProductInfo:
    key: str
    url: str
    written: bool
    input_digest: str


def build_product(
    *,
    run: dt.datetime,
    grid: RegularGrid,
    mask: OceanMask,
    region_name: str,
    sst_corrected: np.ndarray,
    sst_raw: np.ndarray,
    valid_dates: np.ndarray,
    provenance: dict[str, Any],
    input_digest: str,
) -> xr.Dataset:
    """Assemble the product dataset with CF and ACDD metadata (no I/O)."""
    nlead = sst_corrected.shape[0]
    centres = np.array(valid_dates, dtype="datetime64[D]").astype("datetime64[s]") + np.timedelta64(12, "h")
    bounds = np.stack([centres - np.timedelta64(12, "h"), centres + np.timedelta64(12, "h")], axis=1)
    run64 = np.datetime64(run, "s")
    lead_hours = ((centres - run64) / np.timedelta64(1, "h")).astype("float64")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lat_min, lat_max = float(grid.lat[0]), float(grid.lat[-1])
    lon_min, lon_max = float(grid.lon[0]), float(grid.lon[-1])
    land = ~mask.values
    corrected = np.where(land, np.nan, sst_corrected).astype(np.float32)
    raw = np.where(land, np.nan, sst_raw).astype(np.float32)
    ds = xr.Dataset(
        {
            "sst": (("time", "lat", "lon"), corrected, {
                "standard_name": "sea_surface_temperature",
                "long_name": "bias-corrected daily mean sea surface temperature forecast",
                "units": "degree_Celsius", "cell_methods": "time: mean",
                "coverage_content_type": "modelResult", "valid_min": np.float32(SST_RANGE_C[0]),
                "valid_max": np.float32(SST_RANGE_C[1]),
            }),
            "sst_raw": (("time", "lat", "lon"), raw, {
                "standard_name": "sea_surface_temperature",
                "long_name": "uncorrected HYCOM daily mean sea surface temperature forecast (water_temp at 0 m)",
                "units": "degree_Celsius", "cell_methods": "time: mean",
                "coverage_content_type": "modelResult",
            }),
            "ocean_mask": (("lat", "lon"), mask.values.astype(np.int8), {
                "long_name": "ocean mask (ocean in both OISST and HYCOM)", "flag_values": np.array([0, 1], np.int8),
                "flag_meanings": "land_or_missing ocean", "coverage_content_type": "qualityInformation",
                "mask_sha256": mask.sha256,
            }),
            "time_bnds": (("time", "nv"), bounds),
        },
        coords={
            "time": ("time", centres, {"standard_name": "time", "long_name": "valid time (centre of the UTC day)",
                                      "axis": "T", "bounds": "time_bnds"}),
            "lat": ("lat", grid.lat.astype(np.float64), {"standard_name": "latitude", "long_name": "latitude",
                                                         "units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", grid.lon.astype(np.float64), {"standard_name": "longitude", "long_name": "longitude",
                                                         "units": "degrees_east", "axis": "X"}),
            "forecast_period": ("time", lead_hours, {"standard_name": "forecast_period", "long_name": "lead time of the valid-day centre",
                                                     "units": "hours"}),
            "depth": ((), 0.0, {"standard_name": "depth", "long_name": "depth of the SST (HYCOM level 0 m)",
                                 "units": "m", "positive": "down", "axis": "Z"}),
            "forecast_reference_time": ((), run64, {"standard_name": "forecast_reference_time",
                                                   "long_name": "HYCOM run (analysis) time"}),
        },
        attrs={
            "Conventions": "CF-1.8, ACDD-1.3",
            "title": f"Bias-corrected HYCOM SST forecast, run {run:%Y-%m-%d %HZ}, region {region_name}",
            "summary": ("HYCOM sea-surface-temperature forecast (daily means of water_temp at 0 m) corrected "
                        "towards NOAA OISST v2.1 by a learned model; one field per lead day."),
            "keywords": "Earth Science > Oceans > Ocean Temperature > Sea Surface Temperature",
            "keywords_vocabulary": "GCMD Science Keywords",
            "id": f"sstbc_{region_name}_{run:%Y%m%dT%H}Z_{provenance.get('model_id', 'unknown')}",
            "naming_authority": "sstbc",
            "institution": "sstbc",
            "source": "HYCOM forecast + NOAA OISST v2.1 trained correction model",
            "processing_level": "L4 forecast, bias-corrected",
            "product_version": str(provenance.get("model_version", "")),
            "history": f"{now} created by sstbc {bias_correction.__version__}",
            "date_created": now,
            "creator_name": "sstbc", "creator_type": "institution", "creator_institution": "sstbc",
            "creator_url": "https://github.com/sstbc/sstbc", "creator_email": "sstbc@users.noreply.github.com",
            "publisher_name": "sstbc", "publisher_url": "https://github.com/sstbc/sstbc",
            "publisher_email": "sstbc@users.noreply.github.com", "project": "sstbc SST forecast bias correction",
            "contributor_name": "HYCOM consortium; NOAA NCEI", "contributor_role": "input data providers",
            "acknowledgement": "HYCOM GOFS 3.1 / ESPC forecasts (HYCOM consortium, US Navy); NOAA OISST v2.1 (NOAA NCEI).",
            "comment": "Land cells are _FillValue. sst_raw is the uncorrected HYCOM daily mean for comparison.",
            "date_modified": now, "date_issued": now, "date_metadata_modified": now,
            "license": "Derived from public-domain NOAA OISST and HYCOM data; no restrictions.",
            "references": "Gao et al., ConvGRU and self-attention SST bias revision; Huang et al. 2021 doi:10.1175/JCLI-D-20-0166.1",
            "standard_name_vocabulary": "CF Standard Name Table v93",
            "cdm_data_type": "Grid",
            "time_coverage_start": str(centres[0]) + "Z",
            "time_coverage_end": str(centres[-1]) + "Z",
            "time_coverage_duration": f"P{nlead - 1}D", "time_coverage_resolution": "P1D",
            "geospatial_bounds": (f"POLYGON(({lon_min} {lat_min}, {lon_max} {lat_min}, {lon_max} {lat_max}, "
                                  f"{lon_min} {lat_max}, {lon_min} {lat_min}))"),
            "geospatial_bounds_crs": "EPSG:4326", "geospatial_bounds_vertical_crs": "EPSG:5831",
            "geospatial_vertical_min": 0.0, "geospatial_vertical_max": 0.0,
            "geospatial_vertical_units": "m", "geospatial_vertical_positive": "down",
            "geospatial_lat_min": lat_min, "geospatial_lat_max": lat_max,
            "geospatial_lon_min": lon_min, "geospatial_lon_max": lon_max,
            "geospatial_lat_units": "degrees_north", "geospatial_lon_units": "degrees_east",
            "geospatial_lat_resolution": grid.step, "geospatial_lon_resolution": grid.step,
            "forecast_lead_days": nlead,
            "sstbc_grid_id": grid.grid_id,
            "sstbc_input_digest": input_digest,
            "sstbc_provenance": json.dumps(provenance, sort_keys=True),
        },
    )
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    ny, nx = ds.sizes["lat"], ds.sizes["lon"]
    enc: dict[str, dict[str, Any]] = {v: {**_SST_ENC, "chunksizes": (1, ny, nx)} for v in ("sst", "sst_raw")}
    enc["ocean_mask"] = {"dtype": "int8", "_FillValue": None}
    for c in ("lat", "lon", "forecast_period", "depth"):
        enc[c] = {"_FillValue": None, "dtype": "float64"}
    for c in ("time", "time_bnds", "forecast_reference_time"):
        enc[c] = {"_FillValue": None, "dtype": "float64", "units": "hours since 1970-01-01 00:00:00", "calendar": "standard"}
    return enc


def validate_product(path: Path, mask: OceanMask) -> None:
    """Reopen a written product and check shape, NaN pattern == mask and physical range."""
    try:
        ds = read_dataset(path, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise ProductError(f"product {path.name} does not reopen: {exc}") from None
    for var in ("sst", "sst_raw"):
        data = ds[var].values
        finite = np.isfinite(data)
        if not (finite == mask.values[None]).all():
            bad = int((finite != mask.values[None]).sum())
            raise ProductError(f"product {path.name}: {var} has {bad} cells whose NaN pattern differs from the ocean mask")
        lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
        if lo < SST_RANGE_C[0] or hi > SST_RANGE_C[1]:
            raise ProductError(f"product {path.name}: {var} range {lo:.2f}..{hi:.2f} °C outside {SST_RANGE_C}")


def existing_digest(store: Store, key: str) -> str | None:
    if not store.exists(key):
        return None
    try:
        with store.local_path(key) as path:
            return str(read_dataset(path, engine="netcdf4").attrs.get("sstbc_input_digest"))
    except (OSError, ValueError):
        return None


def write_product(store: Store, key: str, ds: xr.Dataset, mask: OceanMask) -> None:
    """Write, validate, then atomically publish ``ds`` at ``key``."""
    with store.staged(key) as tmp:
        write_dataset(ds, tmp, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds))
        validate_product(tmp, mask)
