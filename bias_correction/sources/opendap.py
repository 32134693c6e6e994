"""OPeNDAP (DAP2) access: HYCOM FMRC forecast runs and NCEI THREDDS OISST files, regional subsets only.

The netCDF-C DAP2 client (through ``netCDF4.Dataset(url)``) reads the dataset's DDS/DAS: variables,
dimensions, packing attributes. Values are then fetched as ``.dods`` responses with explicit
constraints by :func:`dods_get` (requests + a small XDR decoder): first the coordinate axes, then,
with index ranges computed for the region plus a margin (both longitude conventions; a box across
the seam of the source's convention needs two column ranges), only
``water_temp[t0:1:t1][0:1:0][j0:1:j1][i0:1:i1]`` (the surface level), or for sea-surface elevation
``surf_el[t0:s:t1][j0:1:j1][i0:1:i1]`` (2-D; ``s`` = 3 on the hourly ESPC-D-V02 ``ssh`` run, so only the
3-hourly steps travel); a global field is never requested. Values do not go through netCDF-C because
it returns garbage without an error when a DATADDS body is cut short (it only prints "DAP DATADDS
packet is apparently too short"); here every response's length is checked against its DDS exactly.
The raw packed int16 values are written, with the source's packing attributes, to a local NetCDF file
in the layout the readers already understand, which is then validated and cached with a ledger exactly
like a download (:func:`cache.acquire`).

Failures: ``NetCDF: file not found`` (HTTP 404 on the DDS) -> :class:`NotYetPublishedError`; DAP
server errors (5xx), I/O failures (resets, timeouts), malformed DDS/DATADDS (an HTML page with
status 200, a body cut short) -> :class:`TransientFetchError`, retried with backoff (the whole
subset is fetched again). Timeouts: netCDF-C's ``HTTP.TIMEOUT`` and
``HTTP.CONNECTTIMEOUT`` are set from :class:`Http` before each open.

netCDF-C is not thread-safe, so every DAP open/read runs under :data:`NETCDF_LOCK` (the stand-in
DAP server answers without netCDF-C, so it never waits on that lock).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import requests

from bias_correction.config import Http, Region
from bias_correction.errors import (
    InputValidationError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
    UpstreamRejectedError,
)
from bias_correction.grid.lonlat import wrap_lon
from bias_correction.io.netcdf import NETCDF_LOCK
from bias_correction.sources.cache import Fetched, acquire
from bias_correction.sources.hycom import (
    HYCOM_EPOCH,
    STEP_HOURS,
    describe_run,
    hycom_variable,
    lat_rows,
    lon_runs,
    product_for,
    validate_hycom_file,
    write_run_file,
)
from bias_correction.sources.validate import check_physical_values, open_for_validation

if TYPE_CHECKING:
    from bias_correction.sources.hycom import HycomSource
    from bias_correction.sources.oisst import OisstSource

LOG = logging.getLogger(__name__)

NC_ENOTFOUND = -90
#: Degrees added around the region for OISST subsets (the reader cuts region + 0.5 degrees).
OISST_MARGIN = 1.0
OISST_SST_VALID_RANGE_C = (-3.0, 45.0)


# ------------------------------------------------------------------------------------------ DAP plumbing
def _set_timeouts(http: Http) -> None:
    """netCDF-C (curl) timeouts, in whole seconds; global, so set under the lock before each open."""
    if getattr(netCDF4, "__has_nc_rc_set__", False):
        netCDF4.rc_set("HTTP.TIMEOUT", str(max(1, math.ceil(http.read_timeout_s))))
        netCDF4.rc_set("HTTP.CONNECTTIMEOUT", str(max(1, math.ceil(http.connect_timeout_s))))


def _classify(exc: BaseException, label: str, stage: str) -> Exception:
    errno = getattr(exc, "errno", None)
    msg = str(exc).split(": 'http", 1)[0]
    if errno == NC_ENOTFOUND:
        return NotYetPublishedError(f"{label}: not published (OPeNDAP dataset not found, HTTP 404)")
    return TransientFetchError(f"{label}: OPeNDAP {stage} failed ({type(exc).__name__}: {msg}); "
                               "DAP server error, network failure, HTML error page or truncated response")


@contextmanager
def open_dap(url: str, http: Http, label: str) -> Iterator[netCDF4.Dataset]:
    """The remote dataset, opened under NETCDF_LOCK; failures mapped to sstbc errors."""
    with NETCDF_LOCK:
        _set_timeouts(http)
        try:
            ds = netCDF4.Dataset(url)
        except (OSError, RuntimeError) as exc:
            raise _classify(exc, label, "open (DDS/DAS)") from None
        try:
            ds.set_auto_maskandscale(False)
            yield ds
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise _classify(exc, label, "read (DATADDS)") from None
        finally:
            try:
                ds.close()
            except (OSError, RuntimeError):
                pass


def _var(ds: netCDF4.Dataset, name: str, label: str) -> netCDF4.Variable:
    if name not in ds.variables:
        raise InputValidationError(f"{label}: no variable {name!r} (has {sorted(ds.variables)})")
    return ds.variables[name]


def _packing_subset(attrs: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("long_name", "standard_name", "units", "_FillValue", "missing_value", "scale_factor", "add_offset",
            "valid_min", "valid_max", "comment")
    return {k: attrs[k] for k in keep if k in attrs}


_XDR = {"Byte": (">u1", 1), "Int16": (">i4", 4), "UInt16": (">u4", 4), "Int32": (">i4", 4), "UInt32": (">u4", 4),
        "Float32": (">f4", 4), "Float64": (">f8", 8)}
_RE_DECL = re.compile(r"\b(Byte|Int16|UInt16|Int32|UInt32|Float32|Float64)\s+([^\s\[;]+)((?:\s*\[[^\]]*\])*)\s*;")
_RE_DIM = re.compile(r"\[\s*(?:[^=\]]*=\s*)?(\d+)\s*\]")


def decode_dods(body: bytes, label: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) of every array in a DAP2 ``.dods`` body, in order; the length must match exactly."""
    head, sep, data = body.partition(b"\nData:\n")
    if not sep or not head.lstrip().startswith(b"Dataset"):
        text = head[:200].decode("latin-1", "replace").strip().replace("\n", " ")
        raise TransientFetchError(f"{label}: not a DAP2 data response (an error or HTML page?): {text!r}")
    out, pos = [], 0
    for typ, name, dims in _RE_DECL.findall(head.decode("latin-1")):
        shape = tuple(int(n) for n in _RE_DIM.findall(dims))
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        dtype, size = _XDR[typ]
        if shape:
            if pos + 8 > len(data):
                raise TruncatedDownloadError(f"{label}: DAP2 response cut short in {name}")
            n1, n2 = np.frombuffer(data[pos:pos + 8], dtype=">u4")
            if n1 != n or n2 != n:
                raise TransientFetchError(f"{label}: DAP2 response for {name} announces {n1}/{n2} values, DDS says {n}")
            pos += 8
        nbytes = n * size + ((-n) % 4 if typ == "Byte" else 0)
        if pos + nbytes > len(data):
            raise TruncatedDownloadError(f"{label}: DAP2 response cut short in {name}: "
                                         f"{len(data) - pos} of {nbytes} bytes")
        values = np.frombuffer(data[pos:pos + n * size], dtype=dtype)
        pos += nbytes
        out.append((name, values.reshape(shape) if shape else values))
    if pos != len(data):
        raise TransientFetchError(f"{label}: DAP2 response has {len(data) - pos} bytes more than its DDS describes")
    return out


def dods_get(session: requests.Session, url: str, constraint: str, http: Http, label: str) -> list[np.ndarray]:
    """The arrays of ``url.dods?constraint`` (one per projected array; Grid maps are dropped)."""
    full = f"{url}.dods?{constraint}"
    try:
        with session.get(full, timeout=(http.connect_timeout_s, http.read_timeout_s)) as resp:
            code = resp.status_code
            if code in (404, 410):
                raise NotYetPublishedError(f"{label}: not published (HTTP {code} for the DAP data request)")
            if code == 429 or code >= 500:
                raise TransientFetchError(f"{label}: DAP server error HTTP {code}")
            if code != 200:
                raise UpstreamRejectedError(f"{label}: DAP request {constraint!r} refused (HTTP {code}): "
                                            f"{resp.text[:200].strip()}")
            if "html" in resp.headers.get("Content-Type", "").lower():
                raise TransientFetchError(f"{label}: DAP data request answered with an HTML page (status 200)")
            body = resp.content
            expected = resp.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                raise TruncatedDownloadError(f"{label}: DAP response cut short, {len(body)} of {expected} bytes")
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFetchError(f"{label}: network failure: {type(exc).__name__}: {exc}") from None
    except requests.exceptions.ChunkedEncodingError as exc:
        raise TruncatedDownloadError(f"{label}: DAP response cut short: {exc}") from None
    arrays = decode_dods(body, label)
    names = [p.split("[", 1)[0].split(".")[-1] for p in constraint.split(",")]
    picked = []
    for want in names:  # the projected array itself; maps of a Grid follow it in the response
        for k, (name, values) in enumerate(arrays):
            if name == want:
                picked.append(values)
                arrays = arrays[k + 1:]
                break
        else:
            raise TransientFetchError(f"{label}: DAP response lacks {want}")
    return picked


def _slab(ix: slice) -> str:
    """``[start:stride:last]`` of a slice whose ``stop - 1`` is its last index (reachable with its step)."""
    return f"[{ix.start}:{ix.step or 1}:{ix.stop - 1}]"


def _read_columns(session: requests.Session, url: str, http: Http, label: str, name: str, lead: tuple[slice, ...],
                  rows: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """``name[lead..][j0:j1][run]`` for each column run (one request each), joined along the last axis."""
    j = slice(int(rows[0]), int(rows[-1]) + 1)
    parts = []
    for r in runs:
        ce = f"{name}.{name}" + "".join(_slab(s) for s in (*lead, j, slice(int(r[0]), int(r[-1]) + 1)))
        parts.append(dods_get(session, url, ce, http, label)[0])
    return np.concatenate(parts, axis=-1)


#: Attributes without which values cannot be decoded; netCDF-C opens a dataset whose DAS request failed
#: (5xx, HTML) with NO attributes at all, so their absence means a failed DAS, not a different product.
REQUIRED_ATTRS = {"water_temp": ("scale_factor", "add_offset", "_FillValue"), "sst": ("scale_factor", "_FillValue"),
                  "surf_el": ("scale_factor", "add_offset", "_FillValue"), "time": ("units",)}


def _metadata(url: str, http: Http, label: str, names: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """Dimensions and attributes of ``names`` from the DDS/DAS, through netCDF-C."""
    with open_dap(url, http, label) as ds:
        out = {}
        for name in names:
            var = _var(ds, name, label)
            out[name] = (tuple(var.dimensions), {k: var.getncattr(k) for k in var.ncattrs()})
    for name, (_dims, attrs) in out.items():
        missing = [a for a in REQUIRED_ATTRS.get(name, ()) if a not in attrs]
        if missing:
            raise TransientFetchError(f"{label}: OPeNDAP attributes {missing} of {name} are missing "
                                      "(the DAS request failed: DAP server error or HTML page)")
    return out


def _acquire_assembled(url: str, source_store: Any, key: str, http: Http, what: str, version: str,
                       build: Callable[[Path, str], None], validate: Callable[[Path, str], None]) -> Fetched:
    def download(tmp: Path, label: str) -> Mapping[str, str | None]:
        build(tmp, label)
        return {"etag": None, "last_modified": None}

    return acquire(url, source_store, key, http=http, what=what, version=version, download=download,
                   validate=validate)


# ------------------------------------------------------------------------------------------ HYCOM
def fetch_hycom_run(source: HycomSource, run: dt.datetime, variable: str = "water_temp") -> Fetched:
    """The run's ``variable`` (water_temp: the surface level; surf_el) from the FMRC run dataset over
    OPeNDAP, every 3 h (an hourly product is strided), cached in the NCSS layout."""
    spec = hycom_variable(variable)
    product = product_for(run)
    source.check_lead(product)
    assert source.opendap_base is not None
    url = product.opendap_url(source.opendap_base, run, variable)
    south, north, west, east = source.bbox()
    max_tau = source.max_tau()
    what = f"{describe_run(run, variable)} ({product.name}, OPeNDAP)"
    want_dims = ("time", "depth", "lat", "lon") if spec.has_depth else ("time", "lat", "lon")
    axes = ("time", "depth", "lat", "lon") if spec.has_depth else ("time", "lat", "lon")

    def build(tmp: Path, label: str) -> None:
        meta = _metadata(url, source.http, label, (variable, *axes))
        dims, wt_attrs = meta[variable]
        if dims != want_dims:
            raise InputValidationError(f"{label}: {variable} dims {dims}, expected ({', '.join(want_dims)})")
        session = requests.Session()
        values = [a.astype(np.float64) for a in dods_get(session, url, ",".join(axes), source.http, label)]
        if spec.has_depth:
            time_v, depth, lat, lon = values
            if depth.size == 0 or depth[0] != 0.0:
                raise InputValidationError(f"{label}: first depth level is not 0 m")
        else:
            time_v, lat, lon = values
        hours = _hours_since_2000(time_v, str(meta["time"][1].get("units", "")), label)
        run_h = (run - HYCOM_EPOCH).total_seconds() / 3600
        taus_all = np.round(hours - run_h, 6)
        # the 3-hourly steps only: an hourly product (ESPC-D-V02 surf_el) is read with a stride
        t_ix = np.flatnonzero((taus_all >= 0) & (taus_all <= max_tau + 1e-6) & (np.mod(taus_all, STEP_HOURS) == 0))
        stride = int(t_ix[1] - t_ix[0]) if t_ix.size > 1 else 1
        if (t_ix.size == 0 or not np.all(np.diff(taus_all[t_ix]) == STEP_HOURS)
                or not np.all(np.diff(t_ix) == stride)):
            raise InputValidationError(f"{label}: time axis has no evenly spaced {STEP_HOURS}-hourly steps for "
                                       f"tau 0..{max_tau} h")
        rows = lat_rows(lat, south, north)
        runs = lon_runs(lon, west, east)
        if rows.size == 0 or not runs:
            raise InputValidationError(f"{label}: the region {south}..{north}N, {west}..{east}E has no grid point")
        t = slice(int(t_ix[0]), int(t_ix[-1]) + 1, stride)
        lead = (t, slice(0, 1)) if spec.has_depth else (t,)
        packed = _read_columns(session, url, source.http, label, variable, lead, rows, runs)
        if spec.has_depth:
            packed = packed[:, 0]
        attrs = _packing_subset(wt_attrs)
        cols = np.concatenate(runs)
        out_lon = wrap_region(lon[cols], west)
        if not np.all(np.diff(out_lon) > 0):
            raise InputValidationError(f"{label}: assembled longitudes are not ascending")
        LOG.info("%s: %d steps x %d x %d from %s", what, packed.shape[0], rows.size, cols.size, url)
        write_run_file(tmp, run, hours[t], taus_all[t], lat[rows], out_lon, packed, attrs, url, variable=variable)

    if spec.has_depth:
        source_url = f"{url}.dods?water_temp.water_temp[t0:tau {max_tau} h][0 m][{south}..{north}N][{west}..{east}E]"
    else:
        source_url = (f"{url}.dods?{variable}.{variable}[t0:tau {max_tau} h every {STEP_HOURS} h]"
                      f"[{south}..{north}N][{west}..{east}E]")
    return _acquire_assembled(
        source_url, source.store, source.raw_key(run, variable), source.http, what, "forecast", build,
        lambda p, label: validate_hycom_file(p, run, max_tau, label, variable=variable))


def wrap_region(lon: np.ndarray, west: float) -> np.ndarray:
    """Longitudes re-expressed in the 360-degree window starting at ``west`` (the region's convention)."""
    return wrap_lon(lon, west - 1e-4)


def _hours_since_2000(values: np.ndarray, units: str, label: str) -> np.ndarray:
    """Valid times as hours since 2000-01-01 from ``<unit> since <origin>`` (HYCOM or FMRC style)."""
    try:
        unit, origin = (p.strip() for p in units.split(" since ", 1))
        t0 = dt.datetime.fromisoformat(origin.replace("Z", "").replace("T", " ").strip()[:19])
    except ValueError:
        raise InputValidationError(f"{label}: time units {units!r} are not '<unit> since <date>'") from None
    scale = {"hours": 1.0, "hour": 1.0, "days": 24.0, "day": 24.0, "minutes": 1 / 60, "seconds": 1 / 3600}.get(unit)
    if scale is None:
        raise InputValidationError(f"{label}: time units {units!r} not understood")
    return values * scale + (t0 - dt.datetime(2000, 1, 1)).total_seconds() / 3600


# ------------------------------------------------------------------------------------------ OISST
def oisst_opendap_url(source: OisstSource, day: dt.date, version: str) -> str:
    return source.location(day, version, "opendap")


def fetch_oisst_day(source: OisstSource, day: dt.date, version: str) -> Fetched:
    """One OISST day (``version`` final or preliminary) from NCEI THREDDS OPeNDAP: the region's ``sst``.

    The subset covers ``source.region`` plus 1 degree (global if the source has no region) and keeps
    the upstream layout (time, zlev, lat, lon; int16 packed, scale 0.01, fill -999), so
    :func:`bias_correction.sources.oisst.read_oisst_sst` reads it like a whole file.
    """
    url = oisst_opendap_url(source, day, version)
    region: Region | None = getattr(source, "region", None)
    what = f"OISST {day} ({version}, OPeNDAP)"

    def build(tmp: Path, label: str) -> None:
        meta = _metadata(url, source.http, label, ("sst", "time", "lat", "lon"))
        dims, sst_attrs = meta["sst"]
        if dims != ("time", "zlev", "lat", "lon"):
            raise InputValidationError(f"{label}: sst dims {dims}, expected (time, zlev, lat, lon)")
        session = requests.Session()
        tval, lat, lon = (a.astype(np.float64) for a in dods_get(session, url, "time,lat,lon", source.http, label))
        t_units = str(meta["time"][1].get("units", ""))
        if region is None:
            rows, runs = np.arange(lat.size), [np.arange(lon.size)]
            west = float(lon[0])
        else:
            west, east = region.lon_min - OISST_MARGIN, region.lon_max + OISST_MARGIN
            rows = lat_rows(lat, region.lat_min - OISST_MARGIN, region.lat_max + OISST_MARGIN)
            runs = lon_runs(lon, west, east)
        if rows.size == 0 or not runs:
            raise InputValidationError(f"{label}: the region has no grid point")
        packed = _read_columns(session, url, source.http, label, "sst", (slice(0, 1), slice(0, 1)), rows, runs)
        attrs = _packing_subset(sst_attrs)
        cols = np.concatenate(runs)
        out_lon = lon[cols] if region is None else wrap_region(lon[cols], west)
        _write_oisst_subset(tmp, tval[:1], t_units, lat[rows], out_lon, packed, attrs, url)

    return _acquire_assembled(
        url + ".dods?sst", source.store, source.raw_key(day, version, "opendap"), source.http, what, version,
        build, lambda p, label: validate_oisst_subset(p, day, label))


def _write_oisst_subset(path: Path, time: np.ndarray, time_units: str, lat: np.ndarray, lon: np.ndarray,
                        packed: np.ndarray, attrs: dict[str, Any], source: str) -> None:
    with NETCDF_LOCK:
        ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        try:
            ds.createDimension("time", None)
            ds.createDimension("zlev", 1)
            ds.createDimension("lat", len(lat))
            ds.createDimension("lon", len(lon))
            coords = {
                "time": (("time",), {"long_name": "Center time of the day", "units": time_units}, time),
                "zlev": (("zlev",), {"long_name": "Sea surface height", "units": "meters", "positive": "down"},
                         np.zeros(1)),
                "lat": (("lat",), {"long_name": "Latitude", "units": "degrees_north"}, lat),
                "lon": (("lon",), {"long_name": "Longitude", "units": "degrees_east"}, lon),
            }
            for name, (dims, vattrs, values) in coords.items():
                var = ds.createVariable(name, "f4", dims)
                var.setncatts(vattrs)
                var[:] = np.asarray(values, dtype=np.float32)
            fill = attrs.get("_FillValue", np.int16(-999))
            sst = ds.createVariable("sst", "i2", ("time", "zlev", "lat", "lon"), zlib=True, complevel=4,
                                    shuffle=True, fill_value=np.int16(fill))  # type: ignore[arg-type]
            sst.set_auto_maskandscale(False)
            for key, value in attrs.items():
                if key != "_FillValue":
                    sst.setncattr(key, value)
            sst[:] = np.asarray(packed, dtype=np.int16).reshape(1, 1, len(lat), len(lon))
            ds.setncattr("source", source)
            ds.setncattr("history", f"regional subset assembled by sstbc from OPeNDAP {source}")
        finally:
            ds.close()


def validate_oisst_subset(path: Path, day: dt.date, what: str | None = None) -> None:
    """Checks of a regional OISST subset: sst dims, date, ascending 0.25° lat, units, values."""
    what = what or f"OISST {day} subset {path.name}"
    ds = open_for_validation(path, what, decode_times=True)
    if "sst" not in ds.variables or ds["sst"].dims != ("time", "zlev", "lat", "lon"):
        raise InputValidationError(f"{what}: no sst(time, zlev, lat, lon)")
    when = ds["time"].values[0].astype("datetime64[s]").astype(dt.datetime)
    if when.date() != day:
        raise InputValidationError(f"{what}: time is {when:%Y-%m-%d}, expected {day}")
    lat = ds["lat"].values
    if lat.size > 1 and not np.allclose(np.diff(lat), 0.25, atol=1e-3):
        raise InputValidationError(f"{what}: lat is not an ascending 0.25° grid")
    units = ds["sst"].attrs.get("units", "")
    if units not in ("Celsius", "degC", "degree_Celsius", "degrees_C"):
        raise InputValidationError(f"{what}: sst units {units!r}, expected Celsius")
    check_physical_values(ds["sst"].values, what, "SST", OISST_SST_VALID_RANGE_C)
