"""HYCOM whole forecast files from the data server (``data.hycom.org/datasets`` or a mirror), by Range requests.

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
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import requests

from bias_correction.config import Http
from bias_correction.errors import (
    ConfigError,
    CorruptInputError,
    InputValidationError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
    UpstreamRejectedError,
)
from bias_correction.sources.cache import Fetched, acquire, backoff_delays
from bias_correction.sources.http import USER_AGENT
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
from bias_correction.sources.validate import HDF5_MAGIC

if TYPE_CHECKING:
    from bias_correction.sources.hycom import HycomSource

LOG = logging.getLogger(__name__)
HEADER_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 22

_NC_TYPES: dict[int, tuple[str, int]] = {1: (">i1", 1), 2: ("S1", 1), 3: (">i2", 2), 4: (">i4", 4), 5: (">f4", 4),
                                         6: (">f8", 8), 7: (">u1", 1), 8: (">u2", 2), 9: (">u4", 4),
                                         10: (">i8", 8), 11: (">u8", 8)}


# ------------------------------------------------------------------------------------------ NetCDF-3 header
class HeaderIncomplete(Exception):
    """The bytes given end inside the header; read more."""


@dataclass(frozen=True)
class Nc3Variable:
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]  # full shape; the record dimension has length numrecs
    dtype: str  # numpy dtype (big-endian)
    attrs: dict[str, Any]
    vsize: int
    begin: int
    is_record: bool

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Nc3Header:
    version: int  # 1 classic, 2 64-bit offset, 5 CDF-5
    numrecs: int
    dims: dict[str, int]  # record dimension: its current length (numrecs)
    record_dim: str | None
    attrs: dict[str, Any]
    variables: dict[str, Nc3Variable]
    header_size: int
    recsize: int

    @property
    def expected_size(self) -> int:
        """Byte length the whole file must have."""
        end = max([v.begin + v.vsize for v in self.variables.values() if not v.is_record] + [self.header_size])
        rec = [v for v in self.variables.values() if v.is_record]
        if rec:
            end = max(end, min(v.begin for v in rec) + self.numrecs * self.recsize)
        return end


class _Cursor:
    def __init__(self, data: bytes, version: int) -> None:
        self.data, self.pos, self.version = data, 4, version

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise HeaderIncomplete(self.pos + n)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def count(self) -> int:
        return self.u64() if self.version == 5 else self.u32()

    def padded(self, n: int) -> bytes:
        raw = self.take(n + (-n % 4))
        return raw[:n]

    def name(self) -> str:
        return self.padded(self.count()).decode("utf-8", "replace")

    def attrs(self) -> dict[str, Any]:
        tag, n = self.u32(), self.count()
        out: dict[str, Any] = {}
        if tag == 0:
            return out
        if tag != 0x0C:
            raise CorruptInputError(f"NetCDF-3 header: bad attribute list tag {tag:#x}")
        for _ in range(n):
            key = self.name()
            nc_type, nelems = self.u32(), self.count()
            if nc_type not in _NC_TYPES:
                raise CorruptInputError(f"NetCDF-3 header: attribute {key!r} has unknown type {nc_type}")
            dtype, size = _NC_TYPES[nc_type]
            raw = self.padded(nelems * size)
            if nc_type == 2:
                out[key] = raw.rstrip(b"\0").decode("utf-8", "replace")
            else:
                arr = np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
                out[key] = arr[0] if arr.size == 1 else arr
        return out


def parse_nc3_header(data: bytes) -> Nc3Header:
    """Parse a NetCDF-3 (classic, 64-bit offset or CDF-5) header from the first bytes of a file.

    Raises :class:`HeaderIncomplete` when ``data`` ends inside the header, CorruptInputError when
    it is not NetCDF-3.
    """
    if len(data) < 8:
        raise HeaderIncomplete(8)
    if data[:3] != b"CDF" or data[3] not in (1, 2, 5):
        raise CorruptInputError(f"not a NetCDF-3 file (first bytes {data[:8]!r})")
    version = data[3]
    c = _Cursor(data, version)
    numrecs = c.count()
    tag, n = c.u32(), c.count()
    dims: list[tuple[str, int]] = []
    if tag not in (0, 0x0A):
        raise CorruptInputError(f"NetCDF-3 header: bad dimension list tag {tag:#x}")
    for _ in range(n if tag else 0):
        dims.append((c.name(), c.count()))
    record_dim = next((name for name, size in dims if size == 0), None)
    gattrs = c.attrs()
    tag, n = c.u32(), c.count()
    if tag not in (0, 0x0B):
        raise CorruptInputError(f"NetCDF-3 header: bad variable list tag {tag:#x}")
    variables: dict[str, Nc3Variable] = {}
    for _ in range(n if tag else 0):
        name = c.name()
        dimids = [c.count() for _ in range(c.count())]
        vattrs = c.attrs()
        nc_type = c.u32()
        vsize = c.count()
        begin = c.u32() if version == 1 else c.u64()
        if nc_type not in _NC_TYPES or any(d >= len(dims) for d in dimids):
            raise CorruptInputError(f"NetCDF-3 header: variable {name!r} has a bad type or dimension id")
        vdims = tuple(dims[d][0] for d in dimids)
        is_record = bool(vdims) and vdims[0] == record_dim
        shape = tuple(numrecs if dn == record_dim else size for dn, size in (dims[d] for d in dimids))
        variables[name] = Nc3Variable(name, vdims, shape, _NC_TYPES[nc_type][0], vattrs, vsize, begin, is_record)
    rec_vars = [v for v in variables.values() if v.is_record]
    if len(rec_vars) == 1:  # a lone record variable is stored unpadded
        v = rec_vars[0]
        recsize = int(np.prod(v.shape[1:], dtype=np.int64)) * v.itemsize
    else:
        recsize = sum(v.vsize for v in rec_vars)
    return Nc3Header(version, numrecs, {name: (numrecs if size == 0 else size) for name, size in dims}, record_dim,
                     gattrs, variables, c.pos, recsize)


# ------------------------------------------------------------------------------------------ Range reads
_RE_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RangeReader:
    """Verified HTTP Range reads with per-request retries (backoff as :func:`backoff_delays`)."""

    def __init__(self, http: Http, session: requests.Session | None = None) -> None:
        self.http = http
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.requests = 0

    def read(self, url: str, start: int, end: int, label: str) -> tuple[bytes, int]:
        """Bytes start..end (inclusive; clipped to the file) and the file's total size."""
        delays = backoff_delays(self.http)
        for attempt in range(self.http.retries + 1):
            try:
                return self._once(url, start, end, label)
            except TransientFetchError as exc:
                if attempt >= self.http.retries:
                    raise
                LOG.warning("%s (attempt %d/%d); retrying in %.2f s", exc, attempt + 1, self.http.retries + 1,
                            delays[attempt])
                time.sleep(delays[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, url: str, start: int, end: int, label: str) -> tuple[bytes, int]:
        self.requests += 1
        what = f"{label} [bytes {start}-{end}]"
        try:
            with self.session.get(url, headers={"Range": f"bytes={start}-{end}"}, stream=True,
                                  timeout=(self.http.connect_timeout_s, self.http.read_timeout_s)) as resp:
                code = resp.status_code
                ctype = resp.headers.get("Content-Type", "")
                if code in (404, 410):
                    raise NotYetPublishedError(f"{label}: not published (HTTP {code})")
                if code == 429 or code >= 500:
                    raise TransientFetchError(f"{what}: server error HTTP {code}")
                if code in (400, 401, 403):
                    raise UpstreamRejectedError(f"{what}: request refused (HTTP {code})")
                if code == 416:
                    raise TruncatedDownloadError(f"{what}: range not satisfiable (HTTP 416, {resp.headers.get('Content-Range')}): "
                                                 "the file on the server is shorter than its header says")
                if "html" in ctype.lower():
                    raise TransientFetchError(f"{what}: answered HTTP {code} with an HTML page ({ctype}), not NetCDF bytes")
                if code == 200:
                    raise TruncatedDownloadError(
                        f"{what}: server ignored the Range request (HTTP 200, whole file of "
                        f"{resp.headers.get('Content-Length', '?')} bytes); not downloading it")
                if code != 206:
                    raise UpstreamRejectedError(f"{what}: unexpected HTTP {code}")
                m = _RE_CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
                if not m or m.group(3) == "*":
                    raise TransientFetchError(f"{what}: 206 without a usable Content-Range "
                                              f"({resp.headers.get('Content-Range')!r})")
                first, last, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
                want_last = min(end, total - 1)
                if first != start or last != want_last:
                    raise TransientFetchError(f"{what}: Content-Range {first}-{last}/{total} does not match the request")
                n = last - first + 1
                body = bytearray()
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    body += chunk
                    if len(body) > n:
                        break
                if len(body) != n:
                    raise TruncatedDownloadError(f"{what}: body has {len(body)} bytes, Content-Range says {n}")
                return bytes(body), total
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientFetchError(f"{what}: network failure: {type(exc).__name__}: {exc}") from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise TruncatedDownloadError(f"{what}: body cut short: {exc}") from None


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
def needed_taus(source: HycomSource) -> list[int]:
    """Lead hours whose valid times cover days 1..lead_days (00Z..21Z): 12 .. 24*lead_days + 9."""
    return list(range(24 - 12, source.max_tau() + 1, STEP_HOURS))


def fetch_hycom_run_files(source: HycomSource, run: dt.datetime, variable: str = "water_temp") -> Fetched:
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
        from bias_correction.sources.opendap import wrap_region

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
