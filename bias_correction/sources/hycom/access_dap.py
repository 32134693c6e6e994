"""HYCOM access ``opendap``: the FMRC run dataset through DAP2, only the surface hyperslab of the region.

Values travel as ``water_temp[t0:1:t1][0:1:0][j0:1:j1][i0:1:i1]`` (the surface level), or for
sea-surface elevation ``surf_el[t0:s:t1][j0:1:j1][i0:1:i1]`` (2-D; ``s`` = 3 on the hourly ESPC-D-V02
``ssh`` run, so only the 3-hourly steps travel), one request per column range (a box across the seam
of the source's convention needs two). The raw packed int16 values are written, with the source's
packing attributes, into the cached NCSS layout, then validated and cached with a ledger exactly like a
download.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from bias_correction.errors import ConfigError, InputValidationError
from bias_correction.sources.cache import Fetched
from bias_correction.sources.dap import (
    acquire_assembled,
    dods_get,
    hours_since_2000,
    metadata,
    packing_subset,
    read_columns,
)
from bias_correction.sources.http import new_session
from bias_correction.sources.hycom.layout import validate_hycom_file, write_run_file
from bias_correction.sources.hycom.products import (
    HYCOM_EPOCH,
    STEP_HOURS,
    VARIABLES,
    RunSource,
    describe_run,
    hycom_variable,
    product_for,
)
from bias_correction.sources.lonlat import lat_rows, lon_runs, wrap_region

LOG = logging.getLogger(__name__)

#: Attributes without which values cannot be decoded (see :func:`bias_correction.sources.dap.metadata`).
#: Every HYCOM variable of the product table is packed (scale_factor/add_offset, _FillValue).
REQUIRED_ATTRS = {**{name: ("scale_factor", "add_offset", "_FillValue") for name in VARIABLES}, "time": ("units",)}


class DapAccess:
    """Subsets the FMRC run over OPeNDAP into the cached layout."""

    name = "opendap"

    def check(self, source: RunSource) -> None:
        if not source.opendap_base:
            raise ConfigError("HYCOM access 'opendap' needs upstream.hycom_opendap (the .../thredds/dodsC base)")

    def key_suffix(self, source: RunSource) -> str:
        return f"_{self.name}"

    def fetch(self, source: RunSource, run: dt.datetime, variable: str) -> Fetched:
        return fetch_hycom_run(source, run, variable)


def fetch_hycom_run(source: RunSource, run: dt.datetime, variable: str = "water_temp") -> Fetched:
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
        meta = metadata(url, source.http, label, (variable, *axes), REQUIRED_ATTRS)
        dims, wt_attrs = meta[variable]
        if dims != want_dims:
            raise InputValidationError(f"{label}: {variable} dims {dims}, expected ({', '.join(want_dims)})")
        session = new_session()
        values = [a.astype(np.float64) for a in dods_get(session, url, ",".join(axes), source.http, label)]
        if spec.has_depth:
            time_v, depth, lat, lon = values
            if depth.size == 0 or depth[0] != 0.0:
                raise InputValidationError(f"{label}: first depth level is not 0 m")
        else:
            time_v, lat, lon = values
        hours = hours_since_2000(time_v, str(meta["time"][1].get("units", "")), label)
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
        packed = read_columns(session, url, source.http, label, variable, lead, rows, runs)
        if spec.has_depth:
            packed = packed[:, 0]
        attrs = packing_subset(wt_attrs)
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
    return acquire_assembled(
        source_url, source.store, source.raw_key(run, variable), source.http, what, "forecast", build,
        lambda p, label: validate_hycom_file(p, run, max_tau, label, variable=variable))
