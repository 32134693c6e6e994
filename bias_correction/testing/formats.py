"""Writers of files in the exact upstream layouts (NCEI OISST v2.1, HYCOM GLBy0.08 NCSS subsets).

Why: readers must be tested against what the services really send, traps included (packed int16,
fill values, float32-rounded coordinates, the xarray-breaking ``tau`` units of HYCOM). The layouts
copy ``docs/data_formats.md`` sections 1.4 and 2.4 and the real sample files attribute by attribute,
in the same order, with the same storage (chunking, compression, data model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import functools
import struct
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar

import netCDF4
import numpy as np

from bias_correction.io.netcdf import NETCDF_LOCK

_F = TypeVar("_F", bound=Callable[..., Any])


def _netcdf_locked(func: _F) -> _F:
    """Serialise with sstbc's netCDF lock: the C libraries are not thread-safe, and the stand-in
    server writes files in handler threads while clients read in others."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with NETCDF_LOCK:
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

# ---------------------------------------------------------------------------------------- OISST
OISST_PREFIX = "oisst-avhrr-v02r01"
OISST_EPOCH = date(1978, 1, 1)
OISST_NLAT = 720
OISST_NLON = 1440
OISST_LAT = (-89.875 + 0.25 * np.arange(OISST_NLAT)).astype(np.float32)
OISST_LON = (0.125 + 0.25 * np.arange(OISST_NLON)).astype(np.float32)
OISST_FILL = np.int16(-999)
OISST_SCALE = np.float32(0.01)
OISST_TITLE = ("NOAA/NCEI 1/4 Degree Daily Optimum Interpolation Sea Surface Temperature (OISST) Analysis, "
               "Version 2.1 - {kind}")

_OISST_VARS: dict[str, tuple[str, str, int, int]] = {
    # name: (long_name, units, valid_min, valid_max) -- valid range is stored packed
    "sst": ("Daily sea surface temperature", "Celsius", -300, 4500),
    "anom": ("Daily sea surface temperature anomalies", "Celsius", -1200, 1200),
    "err": ("Estimated error standard deviation of analysed_sst", "Celsius", 0, 1000),
    "ice": ("Sea ice concentration", "%", 0, 100),
}

_OISST_REFERENCES = (
    "Reynolds, et al.(2007) Daily High-Resolution-Blended Analyses for Sea Surface Temperature (available at "
    "https://doi.org/10.1175/2007JCLI1824.1). Banzon, et al.(2016) A long-term record of blended satellite and "
    "in situ sea-surface temperature for climate monitoring, modeling and environmental studies (available at "
    "https://doi.org/10.5194/essd-8-165-2016). Huang et al. (2020) Improvements of the Daily Optimum "
    "Interpolation Sea Surface Temperature (DOISST) Version v02r01, submitted.Climatology is based on 1971-2000 "
    "OI.v2 SST. Satellite data: Pathfinder AVHRR SST, Navy AVHRR SST, and NOAA ACSPO SST. Ice data: NCEP Ice and "
    "GSFC Ice."
)
_OISST_SUMMARY = (
    "NOAAs 1/4-degree Daily Optimum Interpolation Sea Surface Temperature (OISST) (sometimes referred to as "
    "Reynolds SST, which however also refers to earlier products at different resolution), currently available "
    "as version v02r01, is created by interpolating and extrapolating SST observations from different sources, "
    "resulting in a smoothed complete field. The sources of data are satellite (AVHRR) and in situ platforms "
    "(i.e., ships and buoys), and the specific datasets employed may change over time. At the marginal ice zone, "
    "sea ice concentrations are used to generate proxy SSTs.  A preliminary version of this file is produced in "
    "near-real time (1-day latency), and then replaced with a final version after 2 weeks. Note that this is the "
    "AVHRR-ONLY DOISST, available from Oct 1981, but there is a companion DOISST product that includes microwave "
    "satellite data, available from June 2002"
)
_OISST_HISTORY = ("Final file created using preliminary as first guess, and 3 days of AVHRR data. "
                  "Preliminary uses only 1 day of AVHRR data.")

# ---------------------------------------------------------------------------------------- HYCOM
HYCOM_EPOCH = datetime(2000, 1, 1)
HYCOM_FILL = np.int16(-30000)
HYCOM_SCALE = np.float32(0.001)
HYCOM_OFFSET = np.float32(20.0)
HYCOM_DEPTHS = np.array([0, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100, 125, 150,
                         200, 250, 300, 350, 400, 500, 600, 700, 800, 900, 1000, 1250, 1500, 2000, 2500, 3000,
                         4000, 5000], dtype=np.float64)
GLBY_NLAT = 4251
GLBY_NLON = 4500
HycomFormat = Literal["netcdf4", "netcdf3"]

_HYCOM_GLOBAL_ATTRS: tuple[tuple[str, str], ...] = (
    ("classification_level", "UNCLASSIFIED"),
    ("distribution_statement", "Approved for public release. Distribution unlimited."),
    ("downgrade_date", "not applicable"),
    ("classification_authority", "not applicable"),
    ("institution", "Fleet Numerical Meteorology and Oceanography Center"),
    ("source", "HYCOM archive file"),
    ("history", "archv2ncdf3z"),
    ("field_type", "instantaneous"),
    ("Conventions", "CF-1.6 NAVO_netcdf_v1.1"),
)
#: Global attributes of the 2-D ``ssh`` files: as the 3-D ones, history "archv2ncdf2d" [INFERRED, data_formats.md 2.4].
_HYCOM_SSH_GLOBAL_ATTRS: tuple[tuple[str, str], ...] = tuple(
    (k, "archv2ncdf2d" if k == "history" else v) for k, v in _HYCOM_GLOBAL_ATTRS)


def oisst_filename(day: date, preliminary: bool = False) -> str:
    """The NCEI file name of ``day`` (``_preliminary`` suffix for the near-real-time version)."""
    return f"{OISST_PREFIX}.{day:%Y%m%d}{'_preliminary' if preliminary else ''}.nc"


def oisst_time_value(day: date) -> float:
    """``time`` of an OISST file: whole days since 1978-01-01 (the epoch is at 12:00)."""
    return float((day - OISST_EPOCH).days)


def glby_lat(j: np.ndarray | int) -> np.ndarray:
    """Native GLBy0.08 latitude of row j, with the float32 rounding the real files carry."""
    return np.float64(np.float32(-80.0 + 0.04 * np.asarray(j, dtype=np.float64)))


def glby_lon(i: np.ndarray | int) -> np.ndarray:
    """Native GLBy0.08 longitude (0..360) of column i, float32-rounded."""
    return np.float64(np.float32(0.08 * np.asarray(i, dtype=np.float64)))


def hycom_hours(when: datetime) -> float:
    """HYCOM ``time`` value: hours since 2000-01-01 00:00:00 (naive = UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return (when - HYCOM_EPOCH).total_seconds() / 3600.0


def _f32_round_lon(lon: np.ndarray) -> np.ndarray:
    """float32-round longitudes in the 0..360 frame, then restore the given convention (as NCSS does)."""
    lon = np.asarray(lon, dtype=np.float64)
    neg = lon < 0
    base = np.where(neg, lon + 360.0, lon)
    return np.float64(np.float32(base)) - np.where(neg, 360.0, 0.0)


def _create_packed(ds: netCDF4.Dataset, name: str, dtype: str, dims: tuple[str, ...], fill: np.generic,
                   head: list[tuple[str, object]], tail: list[tuple[str, object]], **kw: object) -> netCDF4.Variable:
    """Create a variable whose ``_FillValue`` sits *between* other attributes, as in the real files.

    netCDF4-python always writes ``_FillValue`` first; re-adding it by rename keeps both the attribute order
    and the storage fill value of the real files.
    """
    var = ds.createVariable(name, dtype, dims, fill_value=fill, **kw)
    for key, value in head:
        var.setncattr(key, value)
    var.delncattr("_FillValue")
    var.setncattr("_FillValue__tmp", fill)
    var.renameAttribute("_FillValue__tmp", "_FillValue")
    for key, value in tail:
        var.setncattr(key, value)
    var.set_auto_maskandscale(False)
    return var


def _pack(values: np.ndarray, scale: float, offset: float, fill: np.generic) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    raw = np.round((v - offset) / np.float64(scale))
    raw = np.clip(np.nan_to_num(raw, nan=0.0), -32767, 32767).astype(np.int16)
    return np.where(np.isfinite(v), raw, fill).astype(np.int16)


@_netcdf_locked
def write_oisst(path: str | Path, day: date, fields: Mapping[str, np.ndarray], preliminary: bool = False) -> Path:
    """Write one NCEI OISST v2.1 daily file (NetCDF-4, global 720x1440, packed int16) and return its path.

    ``fields`` maps sst/anom/err/ice to (720, 1440) arrays in degC (ice in %), NaN where the file has
    _FillValue; a missing key is written all-fill. Like the real files, ``ice`` is stored as raw = percent
    (valid_max 100) with scale 0.01, so it *decodes* to a fraction 0.15..1.0 despite ``units = "%"``.
    """
    path = Path(path)
    name = oisst_filename(day, preliminary)
    created = datetime(day.year, day.month, day.day, 9, 12) + timedelta(days=1 if preliminary else 15)
    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    try:
        ds.createDimension("time", None)
        ds.createDimension("zlev", 1)
        ds.createDimension("lat", OISST_NLAT)
        ds.createDimension("lon", OISST_NLON)
        t = ds.createVariable("time", "f4", ("time",), zlib=True, complevel=4, shuffle=True, chunksizes=(1,))
        t.setncattr("long_name", "Center time of the day")
        t.setncattr("units", "days since 1978-01-01 12:00:00")
        z = ds.createVariable("zlev", "f4", ("zlev",), contiguous=True)
        for key, value in (("long_name", "Sea surface height"), ("units", "meters"), ("positive", "down"),
                           ("actual_range", "0, 0")):
            z.setncattr(key, value)
        la = ds.createVariable("lat", "f4", ("lat",), contiguous=True)
        la.setncattr("long_name", "Latitude")
        la.setncattr("units", "degrees_north")
        la.setncattr("grids", "Uniform grid from -89.875 to 89.875 by 0.25")
        lo = ds.createVariable("lon", "f4", ("lon",), contiguous=True)
        lo.setncattr("long_name", "Longitude")
        lo.setncattr("units", "degrees_east")
        lo.setncattr("grids", "Uniform grid from 0.125 to 359.875 by 0.25")
        for var_name, (long_name, units, vmin, vmax) in _OISST_VARS.items():
            var = _create_packed(
                ds, var_name, "i2", ("time", "zlev", "lat", "lon"), OISST_FILL,
                head=[("long_name", long_name), ("units", units)],
                tail=[("add_offset", np.float32(0.0)), ("scale_factor", OISST_SCALE),
                      ("valid_min", np.int16(vmin)), ("valid_max", np.int16(vmax))],
                zlib=True, complevel=4, shuffle=True, chunksizes=(1, 1, OISST_NLAT, OISST_NLON))
            data = fields.get(var_name)
            if data is None:
                raw = np.full((OISST_NLAT, OISST_NLON), OISST_FILL, dtype=np.int16)
            else:
                data = np.asarray(data)
                if data.shape[-2:] != (OISST_NLAT, OISST_NLON):
                    raise ValueError(f"OISST field {var_name!r} has shape {data.shape}, expected (720, 1440)")
                values = data.reshape(OISST_NLAT, OISST_NLON)
                if var_name == "ice":  # NCEI quirk: units "%" but stored raw = percent, so it decodes to 0..1
                    values = values / 100.0
                raw = _pack(values, 0.01, 0.0, OISST_FILL)
            var[0, 0, :, :] = raw
        t[0] = np.float32(oisst_time_value(day))
        z[:] = np.zeros(1, dtype=np.float32)
        la[:] = OISST_LAT
        lo[:] = OISST_LON
        attrs: list[tuple[str, object]] = [
            ("Conventions", "CF-1.6, ACDD-1.3"),
            ("title", OISST_TITLE.format(kind="Interim" if preliminary else "Final")),
            ("references", _OISST_REFERENCES),
            ("source", "ICOADS, NCEP_GTS, GSFC_ICE, NCEP_ICE, Pathfinder_AVHRR, Navy_AVHRR, NOAA_ACSP"),
            ("id", name),
            ("naming_authority", "gov.noaa.ncei"),
            ("summary", _OISST_SUMMARY),
            ("cdm_data_type", "Grid"),
            ("history", _OISST_HISTORY),
            ("date_modified", f"{created:%Y-%m-%dT%H:%M:%SZ}"),
            ("date_created", f"{created:%Y-%m-%dT%H:%M:%SZ}"),
            ("product_version", "Version v02r01"),
            ("processing_level", "NOAA Level 4"),
            ("institution", "NOAA/National Centers for Environmental Information"),
            ("creator_url", "https://www.ncei.noaa.gov/"),
            ("creator_email", "oisst-help@noaa.gov"),
            ("keywords", "Earth Science > Oceans > Ocean Temperature > Sea Surface Temperature"),
            ("keywords_vocabulary", "Global Change Master Directory (GCMD) Earth Science Keywords"),
            ("platform", "Ships, buoys, Argo floats, MetOp-A, MetOp-B"),
            ("platform_vocabulary", "Global Change Master Directory (GCMD) Platform Keywords"),
            ("instrument", "Earth Remote Sensing Instruments > Passive Remote Sensing > Spectrometers/Radiometers > "
                           "Imaging Spectrometers/Radiometers > AVHRR > Advanced Very High Resolution Radiometer"),
            ("instrument_vocabulary", "Global Change Master Directory (GCMD) Instrument Keywords"),
            ("standard_name_vocabulary", "CF Standard Name Table (v40, 25 January 2017)"),
            ("geospatial_lat_min", np.float32(-90.0)),
            ("geospatial_lat_max", np.float32(90.0)),
            ("geospatial_lon_min", np.float32(0.0)),
            ("geospatial_lon_max", np.float32(360.0)),
            ("geospatial_lat_units", "degrees_north"),
            ("geospatial_lat_resolution", np.float32(0.25)),
            ("geospatial_lon_units", "degrees_east"),
            ("geospatial_lon_resolution", np.float32(0.25)),
            ("time_coverage_start", f"{day:%Y-%m-%d}T00:00:00Z"),
            ("time_coverage_end", f"{day:%Y-%m-%d}T23:59:59Z"),
            ("metadata_link", "https://doi.org/10.25921/RE9P-PT57"),
            ("ncei_template_version", "NCEI_NetCDF_Grid_Template_v2.0"),
            ("comment", "Data was converted from NetCDF-3 to NetCDF-4 format with metadata updates in November 2017."),
            ("sensor", "Thermometer, AVHRR"),
        ]
        for key, value in attrs:
            ds.setncattr(key, value)
    finally:
        ds.close()
    return path


def _navo_packed(ds: netCDF4.Dataset, name: str, dims: tuple[str, ...], long_name: str, standard_name: str,
                 units: str, navo_code: int, comment: str | None, kw: dict[str, object]) -> netCDF4.Variable:
    tail: list[tuple[str, object]] = [("missing_value", HYCOM_FILL), ("scale_factor", HYCOM_SCALE),
                                      ("add_offset", HYCOM_OFFSET), ("NAVO_code", np.int32(navo_code))]
    if comment is not None:
        tail.append(("comment", comment))
    return _create_packed(ds, name, "i2", dims, HYCOM_FILL,
                          head=[("long_name", long_name), ("standard_name", standard_name), ("units", units)],
                          tail=tail, **kw)


def _bottom_of(values: np.ndarray) -> np.ndarray:
    """Deepest finite level of each (time, depth, lat, lon) column -> (time, lat, lon); NaN if none."""
    finite = np.isfinite(values)
    idx = values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    bottom = np.take_along_axis(values, idx[:, None], axis=1)[:, 0]
    return np.where(finite.any(axis=1), bottom, np.nan)


def _ncss_axes(path: Path | str, run: datetime, tau_hours: Sequence[float] | np.ndarray, lat: np.ndarray,
               lon: np.ndarray, fmt: str) -> tuple[Path, datetime, np.ndarray, np.ndarray, np.ndarray]:
    """(path, naive-UTC run, tau, lat, lon) of an NCSS-like subset: float32-rounded coordinates as served."""
    if fmt not in ("netcdf4", "netcdf3"):
        raise ValueError(f"fmt must be 'netcdf4' or 'netcdf3', not {fmt!r}")
    if run.tzinfo is not None:
        run = run.astimezone(timezone.utc).replace(tzinfo=None)
    tau = np.atleast_1d(np.asarray(tau_hours, dtype=np.float64))
    lat = np.float64(np.float32(np.atleast_1d(np.asarray(lat, dtype=np.float64))))
    return Path(path), run, tau, lat, _f32_round_lon(np.atleast_1d(lon))


@_netcdf_locked
def write_hycom_ncss(path: str | Path, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                     depth: np.ndarray, water_temp_degC: np.ndarray, fmt: HycomFormat = "netcdf4", *,
                     water_temp_bottom_degC: np.ndarray | None = None,
                     salinity_psu: np.ndarray | None = None, calendar: str = "gregorian") -> Path:
    """Write what THREDDS NCSS returns for a GLBy0.08/expt_93.0 run subset (NAVO layout) and return its path.

    ``water_temp_degC`` is (ntau, ndepth, nlat, nlon), NaN = fill. The longitudes keep the given convention
    (the caller decides 0..360 or -180..180) but get the float32 rounding of the real files. ``tau`` keeps
    its ``units = "hours since analysis"``, which makes a plain ``xarray.open_dataset`` fail as on the real
    service. ``fmt`` "netcdf3" gives NetCDF-3 64-bit offset (``CDF\\x02``), "netcdf4" NetCDF-4 (deflate 5 +
    shuffle, as TDS writes it). ``salinity_psu`` (same shape) adds ``salinity`` and ``salinity_bottom``.
    ``calendar`` is "gregorian" for GOFS 3.1 and "standard" for ESPC-D-V02 (data_formats.md 3.3, [ONE-SRC]).
    """
    path, run, tau, lat, lon = _ncss_axes(path, run, tau_hours, lat, lon, fmt)
    depth = np.atleast_1d(np.asarray(depth, dtype=np.float64))
    wt = np.asarray(water_temp_degC, dtype=np.float64)
    shape = (len(tau), len(depth), len(lat), len(lon))
    if wt.shape != shape:
        raise ValueError(f"water_temp has shape {wt.shape}, expected {shape} (tau, depth, lat, lon)")
    wt_bottom = _bottom_of(wt) if water_temp_bottom_degC is None else np.asarray(water_temp_bottom_degC, float)
    kw: dict[str, object] = {}
    if fmt == "netcdf4":
        kw = {"zlib": True, "complevel": 5, "shuffle": True}
    ds = netCDF4.Dataset(path, "w", format="NETCDF4" if fmt == "netcdf4" else "NETCDF3_64BIT_OFFSET")
    try:
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        ds.createDimension("depth", len(depth))
        ds.createDimension("time", None)
        specs: list[tuple[str, tuple[str, ...], list[tuple[str, object]]]] = [
            ("time", ("time",), [("long_name", "Valid Time"), ("units", "hours since 2000-01-01 00:00:00"),
                                 ("time_origin", "2000-01-01 00:00:00"), ("calendar", calendar),
                                 ("axis", "T"), ("NAVO_code", np.int32(13))]),
            ("tau", ("time",), [("long_name", "Tau"), ("units", "hours since analysis"),
                                ("time_origin", f"{run:%Y-%m-%d %H:%M:%S}"), ("NAVO_code", np.int32(56))]),
            ("depth", ("depth",), [("long_name", "Depth"), ("standard_name", "depth"), ("units", "m"),
                                   ("positive", "down"), ("axis", "Z"), ("NAVO_code", np.int32(5))]),
            ("lat", ("lat",), [("long_name", "Latitude"), ("standard_name", "latitude"),
                               ("units", "degrees_north"), ("point_spacing", "even"), ("axis", "Y"),
                               ("NAVO_code", np.int32(1))]),
            ("lon", ("lon",), [("long_name", "Longitude"), ("standard_name", "longitude"),
                               ("units", "degrees_east"), ("modulo", "360 degrees"), ("axis", "X"),
                               ("NAVO_code", np.int32(2))]),
        ]
        coords: dict[str, netCDF4.Variable] = {}
        for name, dims, attrs in specs:
            var = ds.createVariable(name, "f8", dims)
            for key, value in attrs:
                var.setncattr(key, value)
            coords[name] = var
        temp = _navo_packed(ds, "water_temp", ("time", "depth", "lat", "lon"), "Water Temperature",
                            "sea_water_temperature", "degC", 15, "in-situ temperature", kw)
        temp_b = _navo_packed(ds, "water_temp_bottom", ("time", "lat", "lon"), "Water Temperature",
                              "sea_water_temperature_at_bottom", "degC", 15, "in-situ temperature", kw)
        sal = sal_b = None
        if salinity_psu is not None:
            sal = _navo_packed(ds, "salinity", ("time", "depth", "lat", "lon"), "Salinity",
                               "sea_water_salinity", "psu", 16, None, kw)
            sal_b = _navo_packed(ds, "salinity_bottom", ("time", "lat", "lon"), "Salinity",
                                 "sea_water_salinity_at_bottom", "psu", 16, None, kw)
        for key, value in _HYCOM_GLOBAL_ATTRS:
            ds.setncattr(key, value)
        coords["depth"][:] = depth
        coords["lat"][:] = lat
        coords["lon"][:] = lon
        t0 = hycom_hours(run)
        coords["time"][:] = t0 + tau
        coords["tau"][:] = tau
        temp[:] = _pack(wt, 0.001, 20.0, HYCOM_FILL)
        temp_b[:] = _pack(wt_bottom, 0.001, 20.0, HYCOM_FILL)
        if sal is not None and sal_b is not None and salinity_psu is not None:
            s = np.asarray(salinity_psu, dtype=np.float64)
            sal[:] = _pack(s, 0.001, 20.0, HYCOM_FILL)
            sal_b[:] = _pack(_bottom_of(s), 0.001, 20.0, HYCOM_FILL)
    finally:
        ds.close()
    return path


@_netcdf_locked
def write_hycom_ssh_ncss(path: str | Path, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                         surf_el_m: np.ndarray, fmt: HycomFormat = "netcdf4", *, calendar: str = "gregorian") -> Path:
    """Write what THREDDS NCSS returns for ``var=surf_el`` of a HYCOM run (NAVO layout) and return its path.

    ``surf_el_m`` is (ntau, nlat, nlon) metres, NaN = fill; ``short surf_el(time, lat, lon)``, long_name
    "Water Surface Elevation", standard_name sea_surface_elevation, units "m", scale 0.001, offset 0,
    _FillValue = missing_value = -30000 (data_formats.md 2.4). A 2-D variable has no ``depth`` axis in the
    subset. Coordinates, ``tau`` (with its xarray-breaking units), formats and calendar as
    :func:`write_hycom_ncss`.
    """
    path, run, tau, lat, lon = _ncss_axes(path, run, tau_hours, lat, lon, fmt)
    eta = np.asarray(surf_el_m, dtype=np.float64)
    shape = (len(tau), len(lat), len(lon))
    if eta.shape != shape:
        raise ValueError(f"surf_el has shape {eta.shape}, expected {shape} (tau, lat, lon)")
    kw: dict[str, object] = {}
    if fmt == "netcdf4":
        kw = {"zlib": True, "complevel": 5, "shuffle": True}
    ds = netCDF4.Dataset(path, "w", format="NETCDF4" if fmt == "netcdf4" else "NETCDF3_64BIT_OFFSET")
    try:
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        ds.createDimension("time", None)
        coords: dict[str, netCDF4.Variable] = {}
        attrs = hycom_coord_attrs(run, calendar)
        for name, dims in (("time", ("time",)), ("tau", ("time",)), ("lat", ("lat",)), ("lon", ("lon",))):
            var = ds.createVariable(name, "f8", dims)
            for key, value in attrs[name]:
                var.setncattr(key, value)
            coords[name] = var
        head = [(k, v) for k, v in SURF_EL_ATTRS if k in ("long_name", "standard_name", "units")]
        tail = [(k, v) for k, v in SURF_EL_ATTRS if k not in ("long_name", "standard_name", "units", "_FillValue")]
        var = _create_packed(ds, "surf_el", "i2", ("time", "lat", "lon"), HYCOM_FILL, head=head, tail=tail, **kw)
        for key, value in _HYCOM_SSH_GLOBAL_ATTRS:
            ds.setncattr(key, value)
        coords["lat"][:] = lat
        coords["lon"][:] = lon
        coords["time"][:] = hycom_hours(run) + tau
        coords["tau"][:] = tau
        var[:] = pack_surf_el(eta)
    finally:
        ds.close()
    return path


# ---------------------------------------------------------------------------------------- HYCOM attribute tables
def hycom_coord_attrs(run: datetime, calendar: str = "gregorian") -> dict[str, list[tuple[str, object]]]:
    """Attributes (in file order) of time, tau, depth, lat, lon of a NAVO HYCOM file (data_formats.md 2.4)."""
    return {
        "time": [("long_name", "Valid Time"), ("units", "hours since 2000-01-01 00:00:00"),
                 ("time_origin", "2000-01-01 00:00:00"), ("calendar", calendar), ("axis", "T"),
                 ("NAVO_code", np.int32(13))],
        "tau": [("long_name", "Tau"), ("units", "hours since analysis"),
                ("time_origin", f"{run:%Y-%m-%d %H:%M:%S}"), ("NAVO_code", np.int32(56))],
        "depth": [("long_name", "Depth"), ("standard_name", "depth"), ("units", "m"), ("positive", "down"),
                  ("axis", "Z"), ("NAVO_code", np.int32(5))],
        "lat": [("long_name", "Latitude"), ("standard_name", "latitude"), ("units", "degrees_north"),
                ("point_spacing", "even"), ("axis", "Y"), ("NAVO_code", np.int32(1))],
        "lon": [("long_name", "Longitude"), ("standard_name", "longitude"), ("units", "degrees_east"),
                ("modulo", "360 degrees"), ("axis", "X"), ("NAVO_code", np.int32(2))],
    }


def navo_packed_attrs(long_name: str, standard_name: str, units: str, navo_code: int,
                      comment: str | None = None, offset: float = 20.0) -> list[tuple[str, object]]:
    """Attributes (in file order) of a packed NAVO variable such as water_temp."""
    attrs: list[tuple[str, object]] = [
        ("long_name", long_name), ("standard_name", standard_name), ("units", units),
        ("_FillValue", HYCOM_FILL), ("missing_value", HYCOM_FILL), ("scale_factor", HYCOM_SCALE),
        ("add_offset", np.float32(offset)), ("NAVO_code", np.int32(navo_code))]
    if comment is not None:
        attrs.append(("comment", comment))
    return attrs


HYCOM_GLOBAL_ATTRS = _HYCOM_GLOBAL_ATTRS
HYCOM_SSH_GLOBAL_ATTRS = _HYCOM_SSH_GLOBAL_ATTRS
WATER_TEMP_ATTRS = navo_packed_attrs("Water Temperature", "sea_water_temperature", "degC", 15, "in-situ temperature")
WATER_TEMP_BOTTOM_ATTRS = navo_packed_attrs("Water Temperature", "sea_water_temperature_at_bottom", "degC", 15,
                                            "in-situ temperature")


#: ``surf_el`` of the ``ssh`` files (data_formats.md 2.4): metres, scale 0.001, offset 0, NAVO_code 32, no comment.
SURF_EL_ATTRS = navo_packed_attrs("Water Surface Elevation", "sea_surface_elevation", "m", 32, offset=0.0)


def pack_surf_el(values_m: np.ndarray) -> np.ndarray:
    """metres (NaN = fill) -> NAVO int16 (scale 0.001, offset 0, fill -30000)."""
    return _pack(values_m, 0.001, 0.0, HYCOM_FILL)


def pack_hycom(values_degC: np.ndarray) -> np.ndarray:
    """degC (NaN = fill) -> NAVO int16 (scale 0.001, offset 20, fill -30000)."""
    return _pack(values_degC, 0.001, 20.0, HYCOM_FILL)


def pack_oisst(values: np.ndarray, name: str) -> np.ndarray:
    """OISST values as write_oisst packs them (ice: percent stored raw, so /100 first)."""
    v = np.asarray(values, dtype=np.float64)
    if name == "ice":
        v = v / 100.0
    return _pack(v, 0.01, 0.0, OISST_FILL)


OISST_VAR_ATTRS: dict[str, list[tuple[str, object]]] = {
    name: [("long_name", ln), ("units", un), ("_FillValue", OISST_FILL), ("add_offset", np.float32(0.0)),
           ("scale_factor", OISST_SCALE), ("valid_min", np.int16(vmin)), ("valid_max", np.int16(vmax))]
    for name, (ln, un, vmin, vmax) in _OISST_VARS.items()
}
OISST_COORD_ATTRS: dict[str, list[tuple[str, object]]] = {
    "time": [("long_name", "Center time of the day"), ("units", "days since 1978-01-01 12:00:00")],
    "zlev": [("long_name", "Sea surface height"), ("units", "meters"), ("positive", "down"),
             ("actual_range", "0, 0")],
    "lat": [("long_name", "Latitude"), ("units", "degrees_north"),
            ("grids", "Uniform grid from -89.875 to 89.875 by 0.25")],
    "lon": [("long_name", "Longitude"), ("units", "degrees_east"),
            ("grids", "Uniform grid from 0.125 to 359.875 by 0.25")],
}


# ---------------------------------------------------------------------------------------- NetCDF-3 headers
_NC3_TYPE = {"i1": 1, "S1": 2, "i2": 3, "i4": 4, "f4": 5, "f8": 6}


@dataclass(frozen=True)
class Nc3Var:
    """One variable of a NetCDF-3 layout: where its bytes are and what they are."""

    name: str
    dims: tuple[str, ...]
    dtype: str  # big-endian numpy dtype, e.g. ">i2"
    shape: tuple[int, ...]  # record vars: shape of ONE record (without the record dim)
    is_record: bool
    vsize: int
    begin: int


@dataclass(frozen=True)
class Nc3Layout:
    """A NetCDF-3 64-bit offset file described without its data: the header bytes and each variable's place."""

    header: bytes
    variables: dict[str, Nc3Var]
    numrecs: int
    recsize: int
    size: int


def _nc3_pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _nc3_name(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">I", len(raw)) + _nc3_pad(raw)


def _nc3_attrs(attrs: list[tuple[str, object]]) -> bytes:
    if not attrs:
        return struct.pack(">II", 0, 0)
    out = struct.pack(">II", 0x0C, len(attrs))
    for key, value in attrs:
        out += _nc3_name(key)
        if isinstance(value, str):
            raw = value.encode()
            out += struct.pack(">II", 2, len(raw)) + _nc3_pad(raw)
        else:
            arr = np.atleast_1d(np.asarray(value))
            code = _NC3_TYPE[f"{arr.dtype.kind}{arr.dtype.itemsize}"]
            out += struct.pack(">II", code, arr.size) + _nc3_pad(arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    return out


def nc3_layout(dims: list[tuple[str, int | None]], global_attrs: list[tuple[str, object]],
               variables: list[tuple[str, tuple[str, ...], str, list[tuple[str, object]]]],
               numrecs: int = 1) -> Nc3Layout:
    """Encode the header of a NetCDF-3 64-bit offset (``CDF\\x02``) file and place every variable.

    ``dims``: (name, size) with size None for the record (UNLIMITED) dimension; ``variables``:
    (name, dims, numpy dtype, attrs) in file order. Non-record data follow the header in variable
    order, then ``numrecs`` records each holding every record variable (padded to 4 bytes), as the
    netCDF-C library lays them out.
    """
    dim_ids = {name: k for k, (name, _) in enumerate(dims)}
    sizes = {name: size for name, size in dims}
    specs = []
    for name, vdims, dtype, attrs in variables:
        dt_ = np.dtype(dtype).newbyteorder(">")
        is_rec = bool(vdims) and sizes[vdims[0]] is None
        shape = tuple(int(sizes[d]) for d in (vdims[1:] if is_rec else vdims))  # type: ignore[arg-type]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt_.itemsize
        specs.append((name, vdims, dt_, attrs, is_rec, shape, nbytes + (-nbytes % 4)))

    def encode(begins: list[int]) -> bytes:
        out = b"CDF\x02" + struct.pack(">I", numrecs)
        out += struct.pack(">II", 0x0A, len(dims))
        for name, size in dims:
            out += _nc3_name(name) + struct.pack(">I", 0 if size is None else size)
        out += _nc3_attrs(global_attrs)
        out += struct.pack(">II", 0x0B, len(specs))
        for (name, vdims, dt_, attrs, _rec, _shape, vsize), begin in zip(specs, begins):
            out += _nc3_name(name) + struct.pack(">I", len(vdims))
            out += b"".join(struct.pack(">I", dim_ids[d]) for d in vdims)
            out += _nc3_attrs(attrs)
            out += struct.pack(">II", _NC3_TYPE[f"{dt_.kind}{dt_.itemsize}"], min(vsize, 0xFFFFFFFF))
            out += struct.pack(">Q", begin)
        return out

    header_len = len(encode([0] * len(specs)))
    pos, begins = header_len, []
    for spec in specs:
        if not spec[4]:
            begins.append(pos)
            pos += spec[6]
        else:
            begins.append(-1)
    rec_start, recsize = pos, 0
    for k, spec in enumerate(specs):
        if spec[4]:
            begins[k] = rec_start + recsize
            recsize += spec[6]
    header = encode(begins)
    assert len(header) == header_len
    out_vars = {name: Nc3Var(name, vdims, dt_.str, shape, rec, vsize, b)
                for (name, vdims, dt_, _a, rec, shape, vsize), b in zip(specs, begins)}
    return Nc3Layout(header, out_vars, numrecs, recsize, rec_start + numrecs * recsize)


def glby_forecast_layout(run: datetime, calendar: str = "gregorian", salinity: bool = True) -> Nc3Layout:
    """Layout of a full-size GLBy0.08 forecast file (``ts3z``; ``t3z`` without salinity), NetCDF-3 64-bit offset.

    Dimensions, variables and attributes follow data_formats.md 2.4 (GOFS 3.1 ``hycom_glby_930_*_ts3z.nc``).
    ESPC-D-V02 ``t3z`` files are assumed to be the same kind of file without salinity [INFERRED: their format
    is unconfirmed, data_formats.md 3.2/7].
    """
    coords = hycom_coord_attrs(run, calendar)
    variables: list[tuple[str, tuple[str, ...], str, list[tuple[str, object]]]] = [
        ("time", ("time",), "f8", coords["time"]),
        ("tau", ("time",), "f8", coords["tau"]),
        ("depth", ("depth",), "f8", coords["depth"]),
        ("lat", ("lat",), "f8", coords["lat"]),
        ("lon", ("lon",), "f8", coords["lon"]),
        ("water_temp", ("time", "depth", "lat", "lon"), "i2", WATER_TEMP_ATTRS),
        ("water_temp_bottom", ("time", "lat", "lon"), "i2", WATER_TEMP_BOTTOM_ATTRS),
    ]
    if salinity:
        variables += [
            ("salinity", ("time", "depth", "lat", "lon"), "i2",
             navo_packed_attrs("Salinity", "sea_water_salinity", "psu", 16)),
            ("salinity_bottom", ("time", "lat", "lon"), "i2",
             navo_packed_attrs("Salinity", "sea_water_salinity_at_bottom", "psu", 16)),
        ]
    dims: list[tuple[str, int | None]] = [("lat", GLBY_NLAT), ("lon", GLBY_NLON), ("depth", len(HYCOM_DEPTHS)),
                                          ("time", None)]
    return nc3_layout(dims, list(_HYCOM_GLOBAL_ATTRS), variables, numrecs=1)


def glby_ssh_layout(run: datetime, calendar: str = "gregorian") -> Nc3Layout:
    """Layout of a full-size GLBy0.08 ``ssh`` forecast file (one time, ``short surf_el(time, lat, lon)``).

    Variables and attributes follow data_formats.md 2.4 (``hycom_glby_930_*_ssh.nc``: time, tau, lat, lon as
    double, surf_el short, scale 0.001, offset 0); there is no depth axis [INFERRED: 2-D NAVO writer]. NetCDF-3
    64-bit offset like the 3-D files; ESPC-D-V02 ``ssh`` files are assumed to be the same kind [INFERRED].
    """
    coords = hycom_coord_attrs(run, calendar)
    variables: list[tuple[str, tuple[str, ...], str, list[tuple[str, object]]]] = [
        ("time", ("time",), "f8", coords["time"]),
        ("tau", ("time",), "f8", coords["tau"]),
        ("lat", ("lat",), "f8", coords["lat"]),
        ("lon", ("lon",), "f8", coords["lon"]),
        ("surf_el", ("time", "lat", "lon"), "i2", SURF_EL_ATTRS),
    ]
    dims: list[tuple[str, int | None]] = [("lat", GLBY_NLAT), ("lon", GLBY_NLON), ("time", None)]
    return nc3_layout(dims, list(_HYCOM_SSH_GLOBAL_ATTRS), variables, numrecs=1)
