"""Corrected-SST products: one CF-1.11 / ACDD-1.3 NetCDF per forecast run, in the spirit of GHRSST L4.

Naming (documented in README)::

    products/{region}/{YYYY}/{MM}/sstbc_{region}_{YYYYMMDD}T{HH}Z_{model_id}.nc       (current)
    products/{region}/{YYYY}/{MM}/{DD}/sstbc_..._{model_id}_v{product_version}.nc      (immutable versions)

Every gridded variable is (lead_day, forecast_reference_time=1, lat, lon), so the files of many runs
stack (``xr.open_mfdataset(..., combine="by_coords")``, kerchunk) into one cube; :func:`as_single_run`
gives one run's (lead_day, lat, lon) view. Each file holds, per valid day (lead days 1..N of the run): ``sst`` (corrected, °C), ``sst_raw``
(HYCOM daily mean, °C), ``sst_correction`` (sst - sst_raw, K), ``sst_uncertainty`` (K, one standard
deviation-like figure per pixel; its ``uncertainty_method`` attribute says where it comes from),
``quality_flag`` (bit flags) and the ``ocean_mask``; land is ``_FillValue``. Coordinates: 2-D ``time``
(valid-day centre), ``forecast_period`` (with bounds: the valid UTC day) and ``lead_day``,
``forecast_reference_time`` (the run axis); ``crs`` is the WGS 84 grid mapping. Provenance is in the global attributes (``sstbc_*``) and in a sidecar
JSON (see ``io.provenance``). The file is written under a temporary name, reopened and validated,
and only then published (``io.publish``), so no partial or invalid product is ever visible.
``sstbc_input_digest`` identifies inputs + model + code, so a re-run with the same digest rewrites
nothing.
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
CONVENTIONS = "CF-1.11, ACDD-1.3"
#: quality_flag bits.
QF_LAND, QF_LARGE_CORRECTION, QF_UNCERTAINTY_FALLBACK = 1, 2, 4
#: Skill-guard bits (``pipeline.guard``), set on every ocean cell of a lead: the lead carries persistence /
#: raw HYCOM instead of the model; the model is kept though not shown at least as good as the better
#: reference; the model is unverified on the upstream regime of this run.
QF_GUARD_PERSISTENCE, QF_GUARD_RAW, QF_GUARD_UNCERTAIN, QF_GUARD_UNVERIFIED_REGIME = 8, 16, 32, 64
FLAG_MASKS = (QF_LAND, QF_LARGE_CORRECTION, QF_UNCERTAINTY_FALLBACK, QF_GUARD_PERSISTENCE, QF_GUARD_RAW,
              QF_GUARD_UNCERTAIN, QF_GUARD_UNVERIFIED_REGIME)
FLAG_MEANINGS = ("land large_correction uncertainty_not_calibrated guard_carries_persistence guard_carries_raw_hycom "
                 "guard_uncertain guard_unverified_regime")
#: Packages without per-lead thresholds (``flags`` in the manifest): |sst_correction| above this many
#: sst_uncertainty flags the cell (large_correction). Calibrated packages flag beyond the 99th percentile of
#: the model's |correction| on its training samples, per lead (``correction.uncertainty``).
LARGE_CORRECTION_SIGMAS = 3.0
DATA_VARS = ("sst", "sst_raw", "sst_correction", "sst_uncertainty", "sst_model")
_SST_ENC = {"dtype": "float32", "_FillValue": FILL, "zlib": True, "complevel": 4, "shuffle": True}
#: Dimensions of every gridded variable: one run per file, so files stack along the run axis. The lead
#: dimension comes first because CF (2.4) wants non-spatio-temporal dimensions left of T, Z, Y, X.
DIMS = ("lead_day", "forecast_reference_time", "lat", "lon")
LEAD_DIM, RUN_DIM = DIMS[0], DIMS[1]
#: CF-1.11: the time coordinates count no leap seconds (UTC days of 86400 s, as OISST and HYCOM).
LEAP = "leap_seconds: none"
#: CF-1.11 units_metadata: absolute temperatures vs temperature differences.
ON_SCALE, DIFFERENCE = "temperature: on_scale", "temperature: difference"
#: Global attributes an operator sets in ``[product]`` (these are the unconfigured defaults).
DEFAULT_METADATA = {
    "institution": "unconfigured sstbc operator", "creator_name": "sstbc", "creator_type": "group",
    "creator_institution": "unconfigured sstbc operator", "creator_url": "https://github.com/sstbc/sstbc",
    "creator_email": "sstbc@users.noreply.github.com", "publisher_name": "sstbc", "publisher_type": "group",
    "publisher_institution": "unconfigured sstbc operator", "publisher_url": "https://github.com/sstbc/sstbc",
    "publisher_email": "sstbc@users.noreply.github.com", "naming_authority": "com.github.sstbc",
    "license": ("Experimental forecast, not for navigation; no warranty. Derived from public-domain NOAA OISST v2.1 "
                "and HYCOM data; no further restrictions."),
    "references": ("Gao et al., ConvGRU and self-attention SST bias revision; "
                   "Huang et al. 2021 doi:10.1175/JCLI-D-20-0166.1"),
}


def product_key(region: str, run: dt.datetime, model_id: str) -> str:
    return f"products/{region}/{run:%Y}/{run:%m}/sstbc_{region}_{run:%Y%m%dT%H}Z_{model_id}.nc"


@dataclass(frozen=True)
class ProductInfo:
    key: str
    url: str
    written: bool
    input_digest: str
    version_key: str | None = None  # the immutable versioned copy listed in the per-day index
    sha256: str | None = None


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
    sst_uncertainty: np.ndarray | None = None,
    uncertainty_method: str = "calibrated validation residual statistics",
    uncertainty_fallback: bool = False,
    metadata: dict[str, str] | None = None,
    synthetic: bool = False,
    sst_model: np.ndarray | None = None,
    uncertainty_attrs: dict[str, str] | None = None,
    large_correction_degC: np.ndarray | None = None,
    guard: list[dict[str, Any]] | None = None,
) -> xr.Dataset:
    """Assemble the product dataset with CF and ACDD metadata (no I/O).

    Layout: every gridded variable is (forecast_reference_time=1, lead_day, lat, lon) and the valid
    ``time`` is a 2-D auxiliary coordinate, so ``xr.open_mfdataset(files, combine="by_coords")`` and
    virtual references (kerchunk) over many runs stack into one (run, lead, lat, lon) cube with the
    right valid times. ``metadata``: operator-set global attributes (``[product]``), over
    :data:`DEFAULT_METADATA`; ``synthetic`` marks products made from the twin.

    ``sst_uncertainty``: [lead] (one value per lead day, broadcast over ocean) or [lead, lat, lon], K.
    When None the per-lead RMS correction is used as a crude stand-in and flagged
    (``uncertainty_fallback``). ``uncertainty_attrs``: what the uncertainty is (method, calibration period,
    nominal coverage, 95 % factor), added to its attributes.

    ``sst_model`` [lead, lat, lon]: the model's own corrected field, written as ``sst_model`` (what live
    verification scores the model by) when the skill guard (``guard``: per lead ``carried`` and its
    ``flag`` bits) made ``sst`` carry a reference at some lead. ``large_correction_degC`` [lead]: the
    per-lead |correction| thresholds (K) of the large_correction flag; None = the sigma rule.
    """
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
    correction = (corrected - raw).astype(np.float32)
    if sst_uncertainty is None:
        per = np.sqrt(np.nanmean(correction.astype(np.float64) ** 2, axis=(1, 2)))
        sst_uncertainty, uncertainty_fallback = per, True
        uncertainty_method = "fallback: RMS of the applied correction per lead (no calibrated statistics)"
    unc = sst_uncertainty if hasattr(sst_uncertainty, "dask") else np.asarray(sst_uncertainty, np.float64)
    if unc.ndim == 1:
        unc = np.broadcast_to(unc[:, None, None], corrected.shape)
        if hasattr(corrected, "dask"):  # streamed (dask, a lead map per chunk): stay lazy, no domain-sized array
            import dask.array as dsa

            unc = dsa.broadcast_to(dsa.from_array(np.asarray(sst_uncertainty, np.float64), chunks=1)[:, None, None],
                                   corrected.shape, chunks=corrected.chunks)
    uncertainty = np.where(land, np.nan, unc).astype(np.float32)
    qf = np.where(land, QF_LAND, 0).astype(np.int8)[None].repeat(nlead, axis=0)
    if large_correction_degC is not None:
        thr = np.asarray(large_correction_degC, np.float64)[:, None, None]
        flag_rule = ("large_correction: |sst_correction| beyond the 99th percentile of the model's |correction| on "
                     "its training samples, per lead (K): "
                     + ", ".join(f"{k + 1}: {t:.3f}" for k, t in enumerate(thr[:, 0, 0])))
    else:
        thr = LARGE_CORRECTION_SIGMAS * uncertainty
        flag_rule = f"large_correction: |sst_correction| > {LARGE_CORRECTION_SIGMAS:g} sst_uncertainty"
    large = np.isfinite(correction) & (np.abs(correction) > thr)
    qf = qf | np.where(large, QF_LARGE_CORRECTION, 0).astype(np.int8)
    if guard:  # elementwise per lead (no item assignment: on dask arrays that would merge the lead chunks)
        gflag = np.array([int(g.get("flag") or 0) for g in guard], np.int8)[:, None, None]
        if hasattr(qf, "dask"):
            import dask.array as dsa

            gflag = dsa.from_array(gflag, chunks=(1, 1, 1))
        qf = qf | np.where(land, 0, gflag).astype(np.int8)
    if uncertainty_fallback:
        qf = qf | np.where(land, 0, QF_UNCERTAINTY_FALLBACK).astype(np.int8)[None]
    lead_day = np.round(lead_hours / 24.0).astype(np.int32)  # 12Z run, valid-day centre 12Z of day k
    meta = {**DEFAULT_METADATA, **(metadata or {})}
    corrected, raw, correction, uncertainty, qf = (a[:, None] for a in (corrected, raw, correction, uncertainty, qf))
    grid_mapping = {"grid_mapping": "crs"}
    ds = xr.Dataset(
        {
            "sst": (DIMS, corrected, {
                "standard_name": "sea_surface_temperature",
                "long_name": "bias-corrected daily mean sea surface temperature forecast",
                "units": "degree_Celsius", "units_metadata": ON_SCALE, "cell_methods": "time: mean", **grid_mapping,
                "coverage_content_type": "modelResult", "valid_min": np.float32(SST_RANGE_C[0]),
                "valid_max": np.float32(SST_RANGE_C[1]),
            }),
            "sst_raw": (DIMS, raw, {
                "standard_name": "sea_surface_temperature",
                "long_name": "uncorrected HYCOM daily mean sea surface temperature forecast (water_temp at 0 m)",
                "units": "degree_Celsius", "units_metadata": ON_SCALE, "cell_methods": "time: mean", **grid_mapping,
                "coverage_content_type": "modelResult",
            }),
            "sst_correction": (DIMS, correction, {
                "long_name": "correction applied to the HYCOM forecast (sst - sst_raw)",
                "units": "K", "units_metadata": DIFFERENCE, "cell_methods": "time: mean", **grid_mapping,
                "coverage_content_type": "modelResult",
                "comment": ("a temperature difference: 1 K = 1 degree_Celsius difference. No CF standard name "
                            "exists for a forecast correction, so none is given (as GHRSST does for sses_bias)"),
            }),
            "sst_uncertainty": (DIMS, uncertainty, {
                "standard_name": "sea_surface_temperature standard_error",
                "long_name": "uncertainty of the corrected sea surface temperature (RMS error estimate)",
                "units": "K", "units_metadata": DIFFERENCE, "cell_methods": "time: mean", **grid_mapping,
                "coverage_content_type": "qualityInformation",
                "uncertainty_method": uncertainty_method,
                "comment": ("the 68 % half-width of the error of sst against OISST (a one-sigma figure); the 95 % "
                            "half-width is uncertainty_interval_95_factor times it (1.96 if not given); see the "
                            "model card"),
                **(uncertainty_attrs or {}),
            }),
            "quality_flag": (DIMS, qf, {
                "long_name": "quality flags of the corrected sea surface temperature",
                "flag_masks": np.array(FLAG_MASKS, np.int8),
                "flag_meanings": FLAG_MEANINGS, **grid_mapping,
                "coverage_content_type": "qualityInformation",
                "comment": flag_rule + ". guard_*: set on every ocean cell of a lead by the skill guard "
                           "(see the global attribute sstbc_guard)",
            }),
            "ocean_mask": (("lat", "lon"), mask.values.astype(np.int8), {
                "long_name": "ocean mask (ocean in both OISST and HYCOM)", "flag_values": np.array([0, 1], np.int8),
                "flag_meanings": "land_or_missing ocean", "coverage_content_type": "qualityInformation",
                "grid_mapping": "crs",
                "mask_sha256": mask.sha256,
            }),
            # the valid day of each lead as a forecast-period interval (bounds on the 2-D time are not CF-checkable)
            "forecast_period_bnds": ((LEAD_DIM, "nv"), np.stack([lead_hours - 12.0, lead_hours + 12.0], axis=1)),
            "crs": ((), np.int32(0), _crs_attrs()),
        },
        coords={
            "time": ((LEAD_DIM, RUN_DIM), centres[:, None], {"standard_name": "time", "units_metadata": LEAP,
                                                           "long_name": "valid time (centre of the UTC day; the "
                                                           "day is forecast_reference_time + forecast_period_bnds)"}),
            "lat": ("lat", grid.lat.astype(np.float64), {"standard_name": "latitude", "long_name": "latitude",
                                                         "units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", grid.lon.astype(np.float64), {"standard_name": "longitude", "long_name": "longitude",
                                                         "units": "degrees_east", "axis": "X"}),
            "forecast_period": (LEAD_DIM, lead_hours, {"standard_name": "forecast_period", "long_name": "lead time of the valid-day centre",
                                                       "units": "hours", "bounds": "forecast_period_bnds"}),
            "lead_day": (LEAD_DIM, lead_day, {"long_name": "forecast lead day k (valid day = run day + k)",
                                              "units": "1"}),
            "depth": ((), 0.0, {"standard_name": "depth", "long_name": "depth of the SST (HYCOM level 0 m)",
                                 "units": "m", "positive": "down", "axis": "Z"}),
            "forecast_reference_time": (RUN_DIM, np.array([run64]), {"standard_name": "forecast_reference_time",
                                                                    "long_name": "HYCOM run (analysis) time",
                                                                    "units_metadata": LEAP}),
        },
        attrs={
            "Conventions": CONVENTIONS,
            "title": (("SYNTHETIC (twin) " if synthetic else "")
                      + f"Bias-corrected HYCOM SST forecast, run {run:%Y-%m-%d %HZ}, region {region_name}"),
            "summary": ("HYCOM sea-surface-temperature forecast (daily means of water_temp at 0 m) corrected "
                        "towards NOAA OISST v2.1 by a learned model; one field per lead day."),
            "keywords": "Earth Science > Oceans > Ocean Temperature > Sea Surface Temperature",
            "keywords_vocabulary": "GCMD Science Keywords",
            "id": f"sstbc_{region_name}_{run:%Y%m%dT%H}Z_{provenance.get('model_id', 'unknown')}",
            "source": ("synthetic twin of HYCOM and NOAA OISST v2.1 (loopback stand-ins, not real data)" if synthetic
                       else "HYCOM forecast + NOAA OISST v2.1 trained correction model"),
            "processing_level": "L4 forecast, bias-corrected",
            "product_version": str(provenance.get("model_version", "")),
            "history": f"{now} created by sstbc {bias_correction.__version__}",
            "date_created": now,
            **meta,
            "project": "sstbc SST forecast bias correction",
            "contributor_name": "HYCOM consortium; NOAA NCEI", "contributor_role": "input data providers",
            "acknowledgement": "HYCOM GOFS 3.1 / ESPC forecasts (HYCOM consortium, US Navy); NOAA OISST v2.1 (NOAA NCEI).",
            "comment": ("Land cells are _FillValue. sst_raw is the uncorrected HYCOM daily mean for comparison; "
                        f"sst_uncertainty: {uncertainty_method}."),
            "date_modified": now, "date_issued": now, "date_metadata_modified": now,
            "standard_name_vocabulary": "CF Standard Name Table v93",
            "cdm_data_type": "Grid",
            # the union of the time_bnds cells (valid days are whole UTC days)
            "time_coverage_start": str(bounds[0, 0]) + "Z",
            "time_coverage_end": str(bounds[-1, 1]) + "Z",
            "time_coverage_duration": f"P{nlead}D", "time_coverage_resolution": "P1D",
            "sstbc_synthetic": "true" if synthetic else "false",
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
            **provenance_attrs(provenance),
        },
    )
    if sst_model is not None:
        model = np.where(land, np.nan, sst_model).astype(np.float32)[:, None]
        ds["sst_model"] = (DIMS, model, {
            "standard_name": "sea_surface_temperature", "units": "degree_Celsius", "units_metadata": ON_SCALE,
            "long_name": "the correction model's own forecast (equal to sst on the leads where the guard kept the model)",
            "cell_methods": "time: mean", **grid_mapping, "coverage_content_type": "modelResult"})
    if guard:
        ds.attrs.update(guard_attrs(guard))
    return ds


def guard_attrs(guard: list[dict[str, Any]]) -> dict[str, str]:
    """Global attributes of the skill guard: what each lead carries, and the full per-lead decision (JSON)."""
    return {"sstbc_guard_carried": ",".join(str(g["carried"]) for g in guard),
            "sstbc_guard": json.dumps(guard, sort_keys=True, default=str)}


def provenance_attrs(prov: dict[str, Any]) -> dict[str, str]:
    """Flat, human-readable provenance global attributes (the full record is ``sstbc_provenance``)."""
    shas = prov.get("model_sha256") or {}
    out = {
        "sstbc_model_id": str(prov.get("model_id", "")), "sstbc_model_version": str(prov.get("model_version", "")),
        "sstbc_model_sha256": json.dumps(shas, sort_keys=True) if shas else "",
        "sstbc_code_version": _json_or_str(prov.get("code_version", "")),
        "sstbc_config_hash": str(prov.get("config_fingerprint", "")),
        "sstbc_active_provider": str(prov.get("onnxruntime_provider", prov.get("active_provider", ""))),
        "sstbc_runtime": str(prov.get("runtime", "")),
        "sstbc_inputs": "; ".join(f"{i.get('url')} sha256:{i.get('sha256')} version:{i.get('version')}"
                                  for i in prov.get("inputs", [])),
    }
    return {k: v for k, v in out.items() if v}


def _json_or_str(v: Any) -> str:
    """Dicts and lists as JSON (machine-readable attributes), anything else as its string."""
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def _crs_attrs() -> dict[str, Any]:
    """CF grid mapping of the WGS 84 latitude/longitude grid (with WKT, so GDAL reports EPSG:4326)."""
    from pyproj import CRS

    cf = CRS.from_epsg(4326).to_cf()
    return {**cf, "spatial_ref": cf["crs_wkt"], "long_name": "coordinate reference system (WGS 84)"}


def as_single_run(ds: xr.Dataset) -> xr.Dataset:
    """One run's product as (lead_day, lat, lon) with 1-D ``time`` and scalar ``forecast_reference_time``.

    Files written before the stacking layout are already so and pass unchanged.
    """
    if RUN_DIM in ds.dims:
        if ds.sizes[RUN_DIM] != 1:
            raise ProductError(f"expected one run, the dataset holds {ds.sizes[RUN_DIM]} forecast_reference_times")
        ds = ds.isel({RUN_DIM: 0})
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    ny, nx = ds.sizes["lat"], ds.sizes["lon"]
    chunks = (1, 1, ny, nx) if RUN_DIM in ds.dims else (1, ny, nx)  # one map per chunk
    enc: dict[str, dict[str, Any]] = {v: {**_SST_ENC, "chunksizes": chunks} for v in DATA_VARS if v in ds}
    enc["ocean_mask"] = {"dtype": "int8", "_FillValue": None}
    if "quality_flag" in ds:
        enc["quality_flag"] = {"dtype": "int8", "_FillValue": None, "zlib": True, "complevel": 4}
    if "lead_day" in ds.coords:
        enc["lead_day"] = {"dtype": "int32", "_FillValue": None}
    if "crs" in ds:
        enc["crs"] = {"dtype": "int32", "_FillValue": None}
    for c in ("lat", "lon", "forecast_period", "forecast_period_bnds", "depth"):
        enc[c] = {"_FillValue": None, "dtype": "float64"}
    for c in ("time", "time_bnds", "forecast_reference_time"):
        if c not in ds.variables:
            continue
        enc[c] = {"_FillValue": None, "dtype": "float64", "units": "hours since 1970-01-01 00:00:00", "calendar": "standard"}
    return enc


def validate_product(path: Path, mask: OceanMask) -> None:
    """Reopen a written product and check shape, NaN pattern == mask and physical range."""
    try:
        ds = read_dataset(path, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise ProductError(f"product {path.name} does not reopen: {exc}") from None
    for var in (v for v in DATA_VARS if v in ds):
        data = ds[var].values
        finite = np.isfinite(data)
        if not (finite == mask.values[None]).all():
            bad = int((finite != mask.values[None]).sum())
            raise ProductError(f"product {path.name}: {var} has {bad} cells whose NaN pattern differs from the ocean mask")
        lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
        if var == "sst_uncertainty" and (lo < 0 or hi > 10):
            raise ProductError(f"product {path.name}: sst_uncertainty range {lo:.3f}..{hi:.3f} K outside 0..10 K")
        if var in ("sst", "sst_raw", "sst_model") and (lo < SST_RANGE_C[0] or hi > SST_RANGE_C[1]):
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
