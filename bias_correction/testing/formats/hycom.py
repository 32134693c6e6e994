"""Writers and layouts of HYCOM GLBy0.08 files in the exact upstream formats (docs/data_formats.md 2.4, 3.x).

Why: readers must be tested against what THREDDS NCSS and the HYCOM data server really send: NAVO packing
(int16, scale 0.001), fill values, float32-rounded coordinates, the xarray-breaking ``tau`` units.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np

from bias_correction.testing.formats.common import _create_packed, _f32_round_lon, _netcdf_locked, _pack
from bias_correction.testing.formats.nc3 import Nc3Layout, nc3_layout

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
