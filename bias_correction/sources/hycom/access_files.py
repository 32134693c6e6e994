"""HYCOM access ``files``: whole forecast files from the data server (``data.hycom.org/datasets``), by Range reads.

A GOFS 3.1 ``ts3z`` forecast file is NetCDF-3 64-bit offset, uncompressed, global (one time, 40
depths, 4251 x 4500), about 3 GB; one file per 3-hourly tau. Only a few hundred kB of each are
needed, so nothing is downloaded whole:

1. ``Range: bytes=0-65535``: the header; :func:`parse_nc3_header` gives every variable's shape,
   type, attributes and byte offset (never hard-coded: header lengths differ between files);
2. once per run, the ``lat``/``lon`` axes, to find the rows j0..j1 and the column ranges of the
   region plus margin (either longitude convention, across 0 or 180);
3. ``time``/``tau`` of the record (checked against the file name's run and tau);
4. rows j0..j1 of the depth-0 slab of ``water_temp`` (or of the 2-D ``surf_el`` of an ``ssh`` file): one
   contiguous block (rows x 4500 x 2 bytes).

Every Range answer is verified: status 206, ``Content-Range`` equal to the bytes asked for and the
file size the header implies (a file cut short on the server is caught here), and exactly that
many bytes. A 200 (server ignoring Range: the whole 3 GB would follow), an HTML page, a body cut
short, 5xx, resets and timeouts are transient (retried per request with backoff); 404 means the
file is not published yet. The rows of all taus are assembled into one file in the NCSS layout
(lead hours 12 .. 24*lead_days+9, the ones the daily means use), validated and cached with a ledger.

ESPC-D-V02 files: their format is unconfirmed (data_formats.md 3.2: probably NetCDF-4 classic,
possibly deflated). They are read the same way when they are NetCDF-3 [INFERRED, and what the
stand-in serves]; NetCDF-4/HDF5 files cannot be range-read and raise a ConfigError that points
to the ``ncss``/``opendap`` access modes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.errors import (
    ConfigError,
    CorruptInputError,
    InputValidationError,
    TruncatedDownloadError,
)
from bias_correction.sources.cache import Fetched, acquire
from bias_correction.sources.http import RangeReader
from bias_correction.sources.hycom.layout import validate_hycom_file, write_run_file
from bias_correction.sources.hycom.products import (
    HYCOM_EPOCH,
    STEP_HOURS,
    RunSource,
    describe_run,
    hycom_variable,
    product_for,
)
from bias_correction.sources.lonlat import lat_rows, lon_runs, wrap_region
from bias_correction.sources.validate import HDF5_MAGIC
from bias_correction.sources.wire.netcdf3 import HeaderIncomplete, Nc3Header, Nc3Variable, parse_nc3_header

LOG = logging.getLogger(__name__)
HEADER_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 22


class FilesAccess:
    """Range-reads the region out of every 3-hourly forecast file and assembles the cached layout."""

    name = "files"

    def check(self, source: RunSource) -> None:
        if not source.files_base:
            raise ConfigError("HYCOM access 'files' needs upstream.hycom_files (the .../datasets base)")

    def key_suffix(self, source: RunSource) -> str:
        return f"_{self.name}"

    def fetch(self, source: RunSource, run: dt.datetime, variable: str) -> Fetched:
        return fetch_hycom_run_files(source, run, variable)


def read_header(reader: RangeReader, url: str, label: str) -> tuple[Nc3Header, int]:
    """The parsed header of a remote NetCDF-3 file and the file's size (checked against the header)."""
    size = HEADER_BYTES
    while True:
        data, total = reader.read(url, 0, size - 1, label)
        if data.startswith(HDF5_MAGIC):
            raise ConfigError(f"{label}: the file is NetCDF-4/HDF5; its (possibly compressed) chunks cannot be read "
                              "by byte ranges. Use upstream.hycom_access = 'ncss' or 'opendap' for this product")
        try:
            header = parse_nc3_header(data)
        except HeaderIncomplete:
            if len(data) < size or size >= MAX_HEADER_BYTES:
                raise TruncatedDownloadError(f"{label}: file ends inside its NetCDF-3 header ({total} bytes)") from None
            size *= 4
            continue
        except CorruptInputError as exc:
            raise CorruptInputError(f"{label}: {exc}") from None
        if total < header.expected_size:
            raise TruncatedDownloadError(f"{label}: truncated on the server: {total} bytes, its NetCDF-3 header "
                                         f"implies {header.expected_size}")
        return header, total


def _values(reader: RangeReader, url: str, var: Nc3Variable, first: int, count: int, label: str) -> np.ndarray:
    """Elements first..first+count-1 (flat, C order) of a variable (record 0 for record variables)."""
    start = var.begin + first * var.itemsize
    data, _ = reader.read(url, start, start + count * var.itemsize - 1, label)
    return np.frombuffer(data, dtype=var.dtype)


def _check_layout(h: Nc3Header, label: str, variable: str = "water_temp") -> tuple[Nc3Variable, int, int]:
    """The data variable (water_temp with depth, or 2-D surf_el) and the grid size; InputValidationError else."""
    has_depth = hycom_variable(variable).has_depth
    for name in ("time", "tau", "lat", "lon", variable) + (("depth",) if has_depth else ()):
        if name not in h.variables:
            raise InputValidationError(f"{label}: no variable {name!r} (has {sorted(h.variables)})")
    wt = h.variables[variable]
    want = ("time", "depth", "lat", "lon") if has_depth else ("time", "lat", "lon")
    if wt.dims != want or wt.dtype != ">i2" or not wt.is_record:
        raise InputValidationError(f"{label}: {variable} is {wt.dtype}{wt.dims}, expected short ({', '.join(want)})")
    if h.numrecs != 1:
        raise InputValidationError(f"{label}: {h.numrecs} records, expected one time per forecast file")
    units = str(h.variables["time"].attrs.get("units", ""))
    if not units.startswith("hours since 2000-01-01"):
        raise InputValidationError(f"{label}: time units {units!r}, expected 'hours since 2000-01-01 00:00:00'")
    for key in ("scale_factor", "add_offset"):
        if key not in wt.attrs:
            raise InputValidationError(f"{label}: {variable} has no {key} (packing unknown)")
    return wt, h.dims["lat"], h.dims["lon"]


# ------------------------------------------------------------------------------------------ the run
def needed_taus(source: RunSource) -> list[int]:
    """Lead hours whose valid times cover days 1..lead_days (00Z..21Z): 12 .. 24*lead_days + 9."""
    return list(range(24 - 12, source.max_tau() + 1, STEP_HOURS))


def fetch_hycom_run_files(source: RunSource, run: dt.datetime, variable: str = "water_temp") -> Fetched:
    """The run's surface subset of ``variable`` (water_temp at 0 m from ``ts3z``/``t3z`` files, or surf_el from
    ``ssh`` files) read by Range requests from the whole forecast files, cached in the NCSS layout.

    Only the 3-hourly taus are read, also from an hourly product (ESPC-D-V02 ``ssh``).
    """
    hycom_variable(variable)
    product = product_for(run)
    source.check_lead(product)
    assert source.files_base is not None
    taus = needed_taus(source)
    south, north, west, east = source.bbox()
    what = f"{describe_run(run, variable)} ({product.name}, whole files)"
    pattern = product.file_url(source.files_base, run, 999999, variable).replace("999999", "{tau}")  # the ledger's "url"

    def build(tmp: Path, label: str) -> Mapping[str, str | None]:
        reader = RangeReader(source.http)
        run_h = (run - HYCOM_EPOCH).total_seconds() / 3600
        rows = runs = lat = lon = None
        shape: tuple[int, int] | None = None
        attrs: dict[str, Any] = {}
        hours, blocks = [], []
        for tau in taus:
            url = product.file_url(source.files_base, run, tau, variable)
            flabel = f"{what}: file {url.rsplit('/', 1)[-1]} from {url}"
            header, _total = read_header(reader, url, flabel)
            wt, nlat, nlon = _check_layout(header, flabel, variable)
            if rows is None:
                lat = _values(reader, url, header.variables["lat"], 0, nlat, flabel).astype(np.float64)
                lon = _values(reader, url, header.variables["lon"], 0, nlon, flabel).astype(np.float64)
                rows, runs = lat_rows(lat, south, north), lon_runs(lon, west, east)
                if rows.size == 0 or not runs:
                    raise InputValidationError(f"{flabel}: the region {south}..{north}N, {west}..{east}E has no grid point")
                shape = (nlat, nlon)
                attrs = {k: wt.attrs[k] for k in ("long_name", "standard_name", "units", "_FillValue", "missing_value",
                                                  "scale_factor", "add_offset", "comment") if k in wt.attrs}
            elif (nlat, nlon) != shape:
                raise InputValidationError(f"{flabel}: grid {nlat}x{nlon} differs from the run's first file {shape}")
            tv, tauv = header.variables["time"], header.variables["tau"]
            lo, hi = min(tv.begin, tauv.begin), max(tv.begin, tauv.begin) + 8
            raw, _ = reader.read(url, lo, hi - 1, flabel)
            t_val = float(np.frombuffer(raw[tv.begin - lo:tv.begin - lo + 8], dtype=tv.dtype)[0])
            tau_val = float(np.frombuffer(raw[tauv.begin - lo:tauv.begin - lo + 8], dtype=tauv.dtype)[0])
            if abs(tau_val - tau) > 1e-6 or abs(t_val - (run_h + tau)) > 1e-6:
                raise InputValidationError(f"{flabel}: time {t_val} / tau {tau_val}, expected run {run:%Y-%m-%d %HZ} "
                                           f"+ {tau} h = {run_h + tau}")
            assert rows is not None and runs is not None
            j0, nrows = int(rows[0]), int(rows.size)
            block = _values(reader, url, wt, j0 * nlon, nrows * nlon, flabel).reshape(nrows, nlon)
            blocks.append(np.concatenate([block[:, r[0]:r[-1] + 1] for r in runs], axis=1))
            hours.append(t_val)
        assert rows is not None and runs is not None and lat is not None and lon is not None
        cols = np.concatenate(runs)
        out_lon = wrap_region(lon[cols], west)
        LOG.info("%s: %d files, %d Range requests", what, len(taus), reader.requests)
        write_run_file(tmp, run, np.array(hours), np.array(taus, dtype=np.float64), lat[rows], out_lon,
                       np.stack(blocks), attrs, pattern, variable=variable)
        return {"etag": None, "last_modified": None}

    # Retries happen per Range request; one assembly attempt (retries=0) so faults are not retried twice over.
    return acquire(pattern, source.store, source.raw_key(run, variable),
                   http=source.http.model_copy(update={"retries": 0}), what=what, version="forecast", download=build,
                   validate=lambda p, label: validate_hycom_file(p, run, source.max_tau(), label, first_tau=taus[0],
                                                                 variable=variable))
