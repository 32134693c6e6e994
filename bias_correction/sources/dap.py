"""OPeNDAP (DAP2) client: dataset metadata through netCDF-C, values as checked ``.dods`` requests.

The netCDF-C DAP2 client (through ``netCDF4.Dataset(url)``) reads the dataset's DDS/DAS: variables,
dimensions, packing attributes. Values are then fetched as ``.dods`` responses with explicit
constraints by :func:`dods_get` (:func:`bias_correction.sources.http.dap_body` + the decoder in
:mod:`bias_correction.sources.wire.dap2`), one request per column range of the region, so a global
field is never requested. The HYCOM and OISST access modes build on this; it knows no product.

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
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from bias_correction.config import Http
from bias_correction.errors import InputValidationError, NotYetPublishedError, TransientFetchError
from bias_correction.io.netcdf import NETCDF_LOCK
from bias_correction.sources.cache import Fetched, acquire
from bias_correction.sources.http import Session, dap_body
from bias_correction.sources.wire.dap2 import decode_dods, projected, slab

NC_ENOTFOUND = -90


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


def packing_subset(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a packed variable that travel into the assembled file."""
    keep = ("long_name", "standard_name", "units", "_FillValue", "missing_value", "scale_factor", "add_offset",
            "valid_min", "valid_max", "comment")
    return {k: attrs[k] for k in keep if k in attrs}


def dods_get(session: Session, url: str, constraint: str, http: Http, label: str) -> list[np.ndarray]:
    """The arrays of ``url.dods?constraint`` (one per projected array; Grid maps are dropped)."""
    return projected(decode_dods(dap_body(session, url, constraint, http, label), label), constraint, label)


def read_columns(session: Session, url: str, http: Http, label: str, name: str, lead: tuple[slice, ...],
                 rows: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """``name[lead..][j0:j1][run]`` for each column run (one request each), joined along the last axis."""
    j = slice(int(rows[0]), int(rows[-1]) + 1)
    parts = []
    for r in runs:
        ce = f"{name}.{name}" + "".join(slab(s) for s in (*lead, j, slice(int(r[0]), int(r[-1]) + 1)))
        parts.append(dods_get(session, url, ce, http, label)[0])
    return np.concatenate(parts, axis=-1)


def metadata(url: str, http: Http, label: str, names: tuple[str, ...],
             required: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """Dimensions and attributes of ``names`` from the DDS/DAS, through netCDF-C.

    ``required``: attributes per variable without which values cannot be decoded; netCDF-C opens a
    dataset whose DAS request failed (5xx, HTML) with NO attributes at all, so their absence means a
    failed DAS (transient), not a different product.
    """
    with open_dap(url, http, label) as ds:
        out = {}
        for name in names:
            var = _var(ds, name, label)
            out[name] = (tuple(var.dimensions), {k: var.getncattr(k) for k in var.ncattrs()})
    for name, (_dims, attrs) in out.items():
        missing = [a for a in required.get(name, ()) if a not in attrs]
        if missing:
            raise TransientFetchError(f"{label}: OPeNDAP attributes {missing} of {name} are missing "
                                      "(the DAS request failed: DAP server error or HTML page)")
    return out


def acquire_assembled(url: str, source_store: Any, key: str, http: Http, what: str, version: str,
                      build: Callable[[Path, str], None], validate: Callable[[Path, str], None]) -> Fetched:
    """:func:`cache.acquire` of a file that ``build`` assembles locally from DAP requests."""
    def download(tmp: Path, label: str) -> Mapping[str, str | None]:
        build(tmp, label)
        return {"etag": None, "last_modified": None}

    return acquire(url, source_store, key, http=http, what=what, version=version, download=download,
                   validate=validate)


def hours_since_2000(values: np.ndarray, units: str, label: str) -> np.ndarray:
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
