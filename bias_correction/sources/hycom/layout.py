"""The cached HYCOM run file (the NCSS layout every access mode leaves): write, validate, read, average.

Every mode leaves the same thing in the raw cache: a validated file in the NCSS layout (dims
time, depth, lat, lon; ``water_temp`` int16 packed; ``time`` in hours since 2000-01-01; ``tau``;
``surf_el`` without depth), so reading and daily means are the same for all of them.

Files are packed int16 (scale 0.001, offset 20, fill -30000) in °C. ``tau`` carries the units
"hours since analysis", which xarray cannot decode, so times are decoded by hand from
``time`` ("hours since 2000-01-01 00:00:00"). Longitudes come back 0..360 or -180..180 depending
on the request; they are re-expressed in the region's convention.

The SST proxy is ``water_temp`` at 0 m, a 3-hourly instantaneous value. OISST is a daily mean,
so lead day ``k`` of run R is the mean of the eight 3-hourly values of UTC day ``R + k``
(tau = 24k-12 .. 24k+9): that removes the diurnal mismatch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from bias_correction.errors import InputValidationError
from bias_correction.grid.lonlat import box_indices, wrap_lon
from bias_correction.io.netcdf import NETCDF_LOCK, read_dataset
from bias_correction.sources.hycom.products import HYCOM_EPOCH, STEP_HOURS, describe_run, hycom_variable
from bias_correction.sources.validate import check_physical_values


#: Rows per write of a file given as a function of rows (large synthetic files, benchmarks/scale.py); the
#: files are chunked one time step per chunk row of this height.
BAND_ROWS = 128


@contextlib.contextmanager
def _lazy_run_file(path: Path, what: str) -> Iterator[xr.Dataset]:
    """The run file opened lazily (values read one step at a time) and held under the netCDF lock until closed."""
    with NETCDF_LOCK:
        try:
            ds = xr.open_dataset(path, engine="netcdf4", decode_times=False, mask_and_scale=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputValidationError(f"{what} does not open as NetCDF: {exc}") from None
        try:
            yield ds
        finally:
            ds.close()


def _surface(ds: xr.Dataset, variable: str) -> xr.DataArray:
    wt = ds[variable]
    return wt.isel(depth=0, drop=True) if "depth" in wt.dims else wt


def _valid_times(ds: xr.Dataset) -> np.ndarray:
    """Valid times decoded by hand from ``time`` (hours since 2000-01-01): ``tau``'s units defeat xarray."""
    hours = ds["time"].values.astype("float64")
    return np.datetime64(HYCOM_EPOCH, "s") + (hours * 3600).round().astype("timedelta64[s]")


def _bands(n: int, rows: int) -> Iterator[slice]:
    for a in range(0, n, max(1, rows)):
        yield slice(a, min(n, a + max(1, rows)))


def read_surface_field(path: Path, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
    """``variable`` at the surface (water_temp: depth 0, °C; surf_el: m) as (time, lat, lon) float32 with
    decoded valid times."""
    spec = hycom_variable(variable)
    # decode_times=False: ``tau`` has units "hours since analysis", which no decoder understands.
    ds = read_dataset(path, decode_times=False, mask_and_scale=True)
    if variable not in ds.data_vars:
        raise InputValidationError(f"{describe_run(run, variable)} file {path.name}: no variable {variable} "
                                   f"(has {sorted(ds.data_vars)})")
    wt = ds[variable]
    surface = wt.isel(depth=0, drop=True) if "depth" in wt.dims else wt
    out = surface.astype("float32")
    out = out.assign_coords(time=_valid_times(ds), lon=wrap_lon(out["lon"].values, -180.0))
    out.attrs = {"units": spec.units, "source_file": path.name, "run": run.isoformat()}
    return out


def read_surface_temperature(path: Path, run: dt.datetime) -> xr.DataArray:
    """water_temp at depth 0 as (time, lat, lon) float32 °C with decoded valid times."""
    return read_surface_field(path, run, "water_temp")


def validate_hycom_file(path: Path, run: dt.datetime, max_tau: int, what: str | None = None,
                        first_tau: int = 0, variable: str = "water_temp") -> None:
    """Check variables, dims, run/valid times and values of a HYCOM subset; raise InputValidationError.

    Lead hours ``first_tau .. max_tau`` every 3 h must all be present. ``variable`` "water_temp" is
    checked at 0 m (dims time, depth, lat, lon); "surf_el" has dims (time, lat, lon), units m, values
    within :data:`SURF_EL_VALID_RANGE_M`, and only 3-hourly steps (an hourly product must be strided).
    """
    what = what or f"{describe_run(run, variable)} file {path.name}"
    with _lazy_run_file(path, what) as ds:
        _validate_open(ds, run, max_tau, what, first_tau, variable)


def _validate_open(ds: xr.Dataset, run: dt.datetime, max_tau: int, what: str, first_tau: int, variable: str) -> None:
    spec = hycom_variable(variable)
    if variable not in ds.variables:
        raise InputValidationError(f"{what}: no variable {variable} (has {sorted(ds.data_vars)})")
    wt = ds[variable]
    if spec.has_depth:
        if wt.dims != ("time", "depth", "lat", "lon"):
            raise InputValidationError(f"{what}: {variable} dims {wt.dims}, expected (time, depth, lat, lon)")
        if float(ds["depth"].values[0]) != 0.0:
            raise InputValidationError(f"{what}: first depth is {float(ds['depth'].values[0])} m, expected 0 m")
    elif wt.dims != ("time", "lat", "lon"):
        raise InputValidationError(f"{what}: {variable} dims {wt.dims}, expected (time, lat, lon)")
    units = ds["time"].attrs.get("units", "")
    if not units.startswith("hours since 2000-01-01"):
        raise InputValidationError(f"{what}: time units {units!r}, expected 'hours since 2000-01-01 00:00:00'")
    if "tau" in ds.variables:
        origin = str(ds["tau"].attrs.get("time_origin", ""))
        if origin and origin[:13] != f"{run:%Y-%m-%d %H}":
            raise InputValidationError(f"{what}: tau time_origin {origin!r}, expected run {run:%Y-%m-%d %H}:00:00")
    hours = ds["time"].values.astype("float64")
    run_h = (run - HYCOM_EPOCH).total_seconds() / 3600
    taus = hours - run_h
    need = np.arange(first_tau, max_tau + 1, STEP_HOURS)
    missing = sorted(set(need.tolist()) - set(np.round(taus).astype(int).tolist()))
    if missing:
        raise InputValidationError(f"{what}: lead hours {missing[:5]}{'...' if len(missing) > 5 else ''} missing (need {first_tau}..{max_tau} every {STEP_HOURS} h)")
    if not spec.has_depth:
        off_grid = sorted(set(np.round(taus[np.abs(np.mod(taus, STEP_HOURS)) > 1e-6], 3).tolist()))
        if off_grid:
            raise InputValidationError(f"{what}: {variable} has lead hours {off_grid[:5]} off the {STEP_HOURS}-hourly "
                                       "steps (an hourly product must be requested with a stride of 3)")
    if wt.attrs.get("units", spec.units) not in spec.unit_aliases:
        raise InputValidationError(f"{what}: {variable} units {wt.attrs.get('units')!r}, expected {spec.units}")
    # value checks one time step at a time (bounded memory on large domains; a step is what the files chunk
    # together), the same verdict as on the whole field
    surface, lo, hi = _surface(ds, variable), np.inf, -np.inf
    for t in range(surface.sizes["time"]):
        band = surface.isel(time=t).values
        finite = np.isfinite(band)
        if finite.any():
            lo, hi = min(lo, float(band[finite].min())), max(hi, float(band[finite].max()))
    check_physical_values(np.array([lo, hi] if lo <= hi else [np.nan]), what, spec.label, spec.valid_range,
                          spec.symbol)


def daily_means_of_file(path: Path, run: dt.datetime, lead_days: int, variable: str = "water_temp",
                       box: tuple[float, float, float, float, float] | None = None) -> xr.DataArray:
    """:func:`daily_means` of :func:`read_surface_field` (cut to ``box`` = lat_min, lat_max, lon_min, lon_max,
    margin, as ``grid.lonlat.subset_box``), read one three-hourly step at a time: memory holds the
    (lead, lat, lon) result and one step, never the run (issue 15: a global GLBy0.08 run is 60 x 4251 x 4500).
    One step at a time, not bands of rows, because files chunk a step's field together (deflated chunks
    would be inflated once per band)."""
    spec = hycom_variable(variable)
    with _lazy_run_file(path, f"{describe_run(run, variable)} file {path.name}") as ds:
        if variable not in ds.data_vars:
            raise InputValidationError(f"{describe_run(run, variable)} file {path.name}: no variable {variable} "
                                       f"(has {sorted(ds.data_vars)})")
        surface = _surface(ds, variable)
        times = _valid_times(ds)
        lat = ds["lat"].values
        lon = wrap_lon(ds["lon"].values, -180.0)
        if box is None:
            lat_idx, lon_idx = np.arange(len(lat)), np.arange(len(lon))
        else:
            lat_idx, lon_idx, lon = box_indices(lat, lon, *box)
        picks, valid = _lead_steps(times, run, lead_days)
        rows = slice(int(lat_idx[0]), int(lat_idx[-1]) + 1) if len(lat_idx) else slice(0, 0)  # contiguous
        out = np.empty((lead_days, len(lat_idx), len(lon_idx)), np.float32)
        for j, steps in enumerate(picks):
            total = np.zeros(out.shape[1:], np.float64)
            for t in steps:
                total += surface.isel(time=int(t), lat=rows).values.astype(np.float32)[:, lon_idx]
            out[j] = total / len(steps)
    result = xr.DataArray(out, dims=("lead", "lat", "lon"),
                          coords={"lat": lat[lat_idx], "lon": lon, "lead": np.arange(1, lead_days + 1),
                                  "valid_date": ("lead", np.array(valid, dtype="datetime64[ns]"))})
    result.attrs = {"units": spec.units, "cell_methods": "time: mean (3-hourly instantaneous, UTC day)"}
    return result


def _lead_steps(times: np.ndarray, run: dt.datetime, lead_days: int) -> tuple[list[np.ndarray], list[np.datetime64]]:
    """Per lead day the indices of its eight 3-hourly steps (UTC day run + k), and the valid days."""
    picks, valid = [], []
    day0 = np.datetime64(run.date(), "D")
    for k in range(1, lead_days + 1):
        start = day0 + np.timedelta64(k, "D")
        sel = (times >= start) & (times < start + np.timedelta64(1, "D"))
        n = int(sel.sum())
        if n != 24 // STEP_HOURS:
            raise InputValidationError(
                f"HYCOM run {run:%Y-%m-%d %HZ}: valid day {start} has {n} three-hourly fields, expected {24 // STEP_HOURS}"
            )
        picks.append(np.flatnonzero(sel))
        valid.append(start)
    return picks, valid


def daily_means(sst: xr.DataArray, run: dt.datetime, lead_days: int, units: str = "degC") -> xr.DataArray:
    """Mean of the 8 three-hourly values of each valid UTC day run+1 .. run+lead_days (``units``: of the field)."""
    picks, valid = _lead_steps(sst["time"].values, run, lead_days)
    fields = [sst.isel(time=steps).mean("time", skipna=False) for steps in picks]
    out = xr.concat(fields, dim="lead").assign_coords(
        lead=np.arange(1, lead_days + 1), valid_date=("lead", np.array(valid, dtype="datetime64[ns]"))
    )
    out.attrs = {"units": units, "cell_methods": "time: mean (3-hourly instantaneous, UTC day)"}
    return out.astype("float32")


def write_run_file(path: Path, run: dt.datetime, hours: np.ndarray, taus: np.ndarray, lat: np.ndarray,
                   lon: np.ndarray, packed: np.ndarray | Callable[[slice], np.ndarray], attrs: dict[str, object], source: str,
                   variable: str = "water_temp") -> None:
    """Write a run subset in the NCSS layout the reader expects (NetCDF-4, deflate).

    ``packed`` is raw int16 ``variable`` (time, lat, lon), or a function of a row slice giving those rows (water_temp: at 0 m, stored with a depth axis of
    one level; surf_el: no depth axis) with the packing in ``attrs`` (scale_factor, add_offset,
    _FillValue, missing_value, units, ...: copied from the source).
    """
    has_depth = hycom_variable(variable).has_depth
    packed = packed if callable(packed) else np.asarray(packed, dtype=np.int16)
    with NETCDF_LOCK:
        ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        try:
            ds.createDimension("time", None)
            if has_depth:
                ds.createDimension("depth", 1)
            ds.createDimension("lat", len(lat))
            ds.createDimension("lon", len(lon))
            specs = {
                "time": (("time",), {"long_name": "Valid Time", "units": "hours since 2000-01-01 00:00:00",
                                     "time_origin": "2000-01-01 00:00:00", "calendar": "gregorian", "axis": "T"}),
                "tau": (("time",), {"long_name": "Tau", "units": "hours since analysis",
                                    "time_origin": f"{run:%Y-%m-%d %H:%M:%S}"}),
                "depth": (("depth",), {"long_name": "Depth", "standard_name": "depth", "units": "m",
                                       "positive": "down", "axis": "Z"}),
                "lat": (("lat",), {"long_name": "Latitude", "standard_name": "latitude",
                                   "units": "degrees_north", "axis": "Y"}),
                "lon": (("lon",), {"long_name": "Longitude", "standard_name": "longitude",
                                   "units": "degrees_east", "axis": "X"}),
            }
            if not has_depth:
                del specs["depth"]
            values = {"time": hours, "tau": taus, "depth": np.zeros(1), "lat": lat, "lon": lon}
            for name, (dims, vattrs) in specs.items():
                var = ds.createVariable(name, "f8", dims)
                var.setncatts(vattrs)
                var[:] = np.asarray(values[name], dtype=np.float64)
            fill = attrs.get("_FillValue", np.int16(-30000))
            vdims = ("time", "depth", "lat", "lon") if has_depth else ("time", "lat", "lon")
            chunks = (1, 1, min(BAND_ROWS, len(lat)), len(lon)) if has_depth else (1, min(BAND_ROWS, len(lat)), len(lon))
            wt = ds.createVariable(variable, "i2", vdims, zlib=True, complevel=4, chunksizes=chunks,
                                   shuffle=True, fill_value=np.int16(fill))  # type: ignore[arg-type]
            wt.set_auto_maskandscale(False)
            for key, value in attrs.items():
                if key != "_FillValue":
                    wt.setncattr(key, value)
            if callable(packed):  # written band by band (large synthetic files: benchmarks/scale.py)
                for rows in _bands(len(lat), BAND_ROWS):
                    block = np.asarray(packed(rows), dtype=np.int16)
                    if has_depth:
                        wt[:, 0, rows, :] = block
                    else:
                        wt[:, rows, :] = block
            else:
                wt[:] = packed[:, None, :, :] if has_depth else packed
            ds.setncattr("source", source)
            ds.setncattr("history", f"assembled by sstbc from {source}")
        finally:
            ds.close()
