"""Loopback stand-in of the upstream services (NCEI OISST HTTPS tree and THREDDS OPeNDAP, HYCOM THREDDS
NCSS and OPeNDAP FMRC runs of GOFS 3.1 and ESPC-D-V02, HYCOM whole forecast files with Range support), with faults.

Why: downloaders, retry logic and the whole pipeline must be exercised against real HTTP, with the
publication lifecycle (preliminary -> final OISST, HYCOM runs appearing the next day) and with the
failures the real services show (5xx, HTML error pages with status 200, truncated bodies, resets,
stalls, slow links), all deterministic and offline. Files are generated on demand from a
:class:`~bias_correction.testing.twin.Twin` in the exact upstream formats.

Global datasets are never materialised: the OPeNDAP FMRC runs (``/thredds/dodsC/...``, see
:mod:`bias_correction.testing.dap`) and the ~3 GB whole forecast files (``/datasets/...``, NetCDF-3
64-bit offset, served only by HTTP Range requests) generate just the requested bytes from the twin.

Sea-surface elevation ``surf_el`` (metres, packed short, scale 0.001, offset 0) is served as upstream has
it: in the GOFS 3.1 FMRC run next to ``water_temp`` (NCSS ``var=surf_el``, OPeNDAP), in the ESPC-D-V02
``FMRC_ESPC-D-V02_ssh`` collection (NCSS and OPeNDAP, HOURLY steps t0..t192), and as whole ``_ssh.nc``
forecast files, one per tau (GOFS ``t{HHH}``, 3-hourly; ESPC ``t{HHHH}``, hourly). Faults apply to these
paths like to any other. Limitation: one NCSS request serves one variable (mixing water_temp and surf_el
gets a 400 here, while TDS would return both).

Run it by hand: ``python -m bias_correction.testing.server --workdir DIR --today YYYY-MM-DD [--port N]``.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import html
import math
import os
import random
import re
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from bias_correction.testing import dap
from bias_correction.testing.formats import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_DEPTHS,
    OISST_LAT,
    OISST_LON,
    glby_lat,
    glby_forecast_layout,
    glby_lon,
    glby_ssh_layout,
    hycom_hours,
    oisst_filename,
    pack_hycom,
    pack_surf_el,
    write_hycom_ncss,
    write_hycom_ssh_ncss,
    write_oisst,
)
from bias_correction.testing.twin import Twin

OISST_PATH = "/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr"
NCSS_PATH = "/thredds/ncss"
HYCOM_RUN_PATH = "/thredds/ncss/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z"
OISST_FIRST_DAY = date(1981, 9, 1)
OISST_FINAL_AFTER_DAYS = 14
GOFS31_FIRST_RUN = date(2018, 12, 4)
GOFS31_LAST_RUN = date(2024, 9, 4)
HYCOM_TAUS = np.arange(0.0, 181.0, 3.0)
NCSS_MAX_VALUES = 60_000_000
NETCDF_TYPE = "application/x-netcdf"

#: ``ignore_range``: answer a Range request with 200 and the whole body (as servers without Range support do).
FAULT_KINDS = ("status", "html200", "truncate", "truncate_length", "stall", "reset", "slow", "ignore_range")
DAP_PATH = "/thredds/dodsC"
FILES_PATH = "/datasets"
OISST_DAP_PATH = "/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR"


@dataclass(frozen=True)
class StandInProduct:
    """A HYCOM forecast collection as the stand-in serves it (runs first..last, its taus).

    GOFS 3.1 has one FMRC run dataset for all variables (water_temp and surf_el) but separate whole
    files per tau (``ts3z``, ``ssh``); ESPC-D-V02 has one FMRC and one file per tau per variable
    (``t3z``; ``ssh``, hourly).
    """

    key: str
    first_run: date
    last_run: date | None
    taus: np.ndarray
    calendar: str
    run_name: str  # FMRC run dataset name, formatted with run=date
    file_name: str  # whole forecast file name, formatted with run=date, tau=int
    salinity: bool
    #: Data variables of the FMRC run dataset (NCSS and OPeNDAP).
    variables: tuple[str, ...] = ("water_temp",)
    #: The data variable of the whole forecast files: "water_temp" (ts3z/t3z layout) or "surf_el" (ssh layout).
    file_variable: str = "water_temp"

    def serves(self, run_day: date, today: date) -> bool:
        return self.first_run <= run_day and (self.last_run is None or run_day <= self.last_run) and run_day < today


#: The GOFS 3.1 FMRC run holds every variable (``var=surf_el`` works on it as ``var=water_temp`` does).
GOFS31_STANDIN = StandInProduct("gofs31", GOFS31_FIRST_RUN, GOFS31_LAST_RUN, np.arange(0.0, 181.0, 3.0), "gregorian",
                                "GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
                                "hycom_glby_930_{run:%Y%m%d}12_t{tau:03d}_ts3z.nc", True,
                                variables=("water_temp", "surf_el"))
#: GOFS 3.1 ``ssh`` forecast files: surf_el, 3-hourly t000..t180 (data_formats.md 2.1/2.4).
GOFS31_SSH_STANDIN = StandInProduct("gofs31-ssh", GOFS31_FIRST_RUN, GOFS31_LAST_RUN, np.arange(0.0, 181.0, 3.0),
                                    "gregorian", "GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
                                    "hycom_glby_930_{run:%Y%m%d}12_t{tau:03d}_ssh.nc", False,
                                    variables=("surf_el",), file_variable="surf_el")
#: ESPC-D-V02 is on THREDDS from 2024-08-10 12Z; its forecasts go to t0192 (data_formats.md 3.1).
ESPC_STANDIN = StandInProduct("espc-d-v02", date(2024, 8, 10), None, np.arange(0.0, 193.0, 3.0), "standard",
                              "FMRC_ESPC-D-V02_t3z_RUN_{run:%Y-%m-%d}T12:00:00Z",
                              "US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_{run:%Y%m%d}12_t{tau:04d}_t3z.nc", False)
#: ESPC-D-V02 ``ssh`` collection: surf_el is HOURLY (t0000..t0192 every hour; data_formats.md 3.1/3.2).
ESPC_SSH_STANDIN = StandInProduct("espc-d-v02-ssh", date(2024, 8, 10), None, np.arange(0.0, 193.0, 1.0), "standard",
                                  "FMRC_ESPC-D-V02_ssh_RUN_{run:%Y-%m-%d}T12:00:00Z",
                                  "US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_{run:%Y%m%d}12_t{tau:04d}_ssh.nc",
                                  False, variables=("surf_el",), file_variable="surf_el")

_RE_OISST_ROOT = re.compile(rf"^{re.escape(OISST_PATH)}/?$")
_RE_OISST_MONTH = re.compile(rf"^{re.escape(OISST_PATH)}/(\d{{6}})/?$")
_RE_OISST_FILE = re.compile(rf"^{re.escape(OISST_PATH)}/(\d{{6}})/oisst-avhrr-v02r01\.(\d{{8}})(_preliminary)?\.nc$")
_RE_NCSS_RUN = re.compile(r"^/thredds/ncss/(?:grid/)?GLBy0\.08/expt_93\.0/FMRC/runs/"
                          r"GLBy0\.08_930_FMRC_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z$")
_RE_NCSS_ESPC_RUN = re.compile(r"^/thredds/ncss/(?:grid/)?FMRC_ESPC-D-V02_(t3z|ssh)/runs/"
                               r"FMRC_ESPC-D-V02_\1_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z$")
_RE_DAP_GOFS_RUN = re.compile(r"^/thredds/dodsC/GLBy0\.08/expt_93\.0/FMRC/runs/"
                              r"GLBy0\.08_930_FMRC_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z\.(dds|das|dods|ascii)$")
_RE_DAP_ESPC_RUN = re.compile(r"^/thredds/dodsC/FMRC_ESPC-D-V02_(t3z|ssh)/runs/"
                              r"FMRC_ESPC-D-V02_\1_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z\.(dds|das|dods|ascii)$")
_RE_DAP_OISST = re.compile(rf"^{re.escape(OISST_DAP_PATH)}/(\d{{6}})/oisst-avhrr-v02r01\.(\d{{8}})(_preliminary)?"
                           r"\.nc\.(dds|das|dods|ascii)$")
_RE_FILE_GOFS = re.compile(r"^/datasets/GLBy0\.08/expt_93\.0/data/forecasts/hycom_glby_930_(\d{8})12_t(\d{3})_(ts3z|ssh)\.nc$")
_RE_FILE_ESPC = re.compile(r"^/datasets/ESPC-D-V02/data/forecasts/US058GCOM-OPSnce\.espc-d-031-hycom_fcst_glby008_"
                           r"(\d{8})12_t(\d{4})_(t3z|ssh)\.nc$")
#: Whole-file products by (tree, file suffix).
_FILE_PRODUCTS = {("gofs", "ts3z"): GOFS31_STANDIN, ("gofs", "ssh"): GOFS31_SSH_STANDIN,
                  ("espc", "t3z"): ESPC_STANDIN, ("espc", "ssh"): ESPC_SSH_STANDIN}
_RE_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; status 0 means the connection was dropped without a response."""

    method: str
    path: str
    query: str
    status: int
    bytes_sent: int
    fault: str | None = None


@dataclass
class _Fault:
    regex: re.Pattern[str]
    kind: str
    remaining: int | None
    params: dict[str, Any]


@dataclass
class _RandomFaults:
    rate: float
    rng: random.Random
    kinds: tuple[str, ...]
    regex: re.Pattern[str]
    params: dict[str, Any]


class FaultPlan:
    """Faults to inject, matched with ``re.search`` against the request target (path + '?' + query)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._random: _RandomFaults | None = None

    def add(self, path_regex: str, kind: str, times: int | None = 1, **params: Any) -> None:
        """Inject ``kind`` into the next ``times`` matching requests (None: all of them).

        Params: status -> code (int), body (str|bytes, optional); stall -> seconds; slow -> bytes_per_s.
        """
        _check_kind(kind, params)
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(re.compile(path_regex), kind, times, dict(params)))

    def random(self, rate: float, seed: int, kinds: Sequence[str] = ("status", "truncate", "reset"),
               path_regex: str = ".*", **params: Any) -> None:
        """Apply a random fault kind to a fraction ``rate`` of matching requests, reproducible given seed and order.

        Params: codes (status codes to draw from, default 500/502/503), seconds (stall, default 0.5),
        bytes_per_s (slow, default 2e6), body.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._random = _RandomFaults(rate, random.Random(seed), tuple(kinds), re.compile(path_regex), dict(params))

    def clear(self) -> None:
        """Remove every fault, random mode included."""
        with self._lock:
            self._faults.clear()
            self._random = None

    def pending(self) -> int:
        """Number of explicit faults still armed."""
        with self._lock:
            return len(self._faults)

    def take(self, target: str) -> tuple[str, dict[str, Any]] | None:
        """The fault to apply to this request, if any (explicit faults first, then the random mode)."""
        with self._lock:
            for fault in self._faults:
                if fault.regex.search(target):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault.kind, dict(fault.params)
            rnd = self._random
            if rnd is not None and rnd.kinds and rnd.regex.search(target):
                hit = rnd.rng.random() < rnd.rate
                kind = rnd.rng.choice(rnd.kinds)
                code = rnd.rng.choice(tuple(rnd.params.get("codes", (500, 502, 503))))
                if hit:
                    params: dict[str, Any] = {"code": code, "seconds": rnd.params.get("seconds", 0.5),
                                              "bytes_per_s": rnd.params.get("bytes_per_s", 2_000_000)}
                    if "body" in rnd.params:
                        params["body"] = rnd.params["body"]
                    return kind, params
        return None


def _check_kind(kind: str, params: dict[str, Any]) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
    if kind == "status" and not isinstance(params.get("code"), int):
        raise ValueError("fault 'status' needs an int param code=...")
    if kind == "stall" and "seconds" not in params:
        raise ValueError("fault 'stall' needs param seconds=...")
    if kind == "slow" and not params.get("bytes_per_s"):
        raise ValueError("fault 'slow' needs param bytes_per_s=...")


# ------------------------------------------------------------------------------------------ responses
@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=iso-8859-1"
    headers: dict[str, str] = field(default_factory=dict)
    #: A body made lazily, piece by piece (a virtual multi-GB file); ``body`` is then empty.
    stream: Iterable[bytes] | None = None


class _HttpError(Exception):
    def __init__(self, status: int, message: str, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.plain = plain


def _html_error(status: int, title: str, message: str) -> _Response:
    body = (f'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>{status} {html.escape(title)}'
            f"</title>\n</head><body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(message)}</p>\n</body></html>\n")
    return _Response(status, body.encode("latin-1", "replace"))


def _http_date(when: datetime) -> str:
    return email.utils.format_datetime(when.replace(tzinfo=timezone.utc), usegmt=True)


def _parse_iso(text: str) -> datetime:
    """ISO 8601 time of an NCSS request (``Z`` or offset or naive = UTC) as naive UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _iso(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M:%SZ}"


# ------------------------------------------------------------------------------------------ server
class StandInServer:
    """ThreadingHTTPServer on loopback serving twin-generated OISST files and HYCOM NCSS subsets."""

    def __init__(self, twin: Twin, workdir: Path, today: date, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.twin = twin
        self.workdir = Path(workdir)
        self.today = today
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rec_lock = threading.Condition()
        self._in_flight = 0
        self._file_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._etags: dict[tuple[str, int, int], str] = {}
        self._bands: dict[tuple[Any, ...], np.ndarray] = {}

    # ---- lifecycle
    def start(self) -> StandInServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        handler = type("_BoundHandler", (_Handler,), {"stand_in": self})
        httpd = ThreadingHTTPServer((self._host, self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="stand-in-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (handler threads still running are daemons)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def oisst_https_base(self) -> str:
        return self.base_url + OISST_PATH

    @property
    def hycom_ncss_base(self) -> str:
        return self.base_url + NCSS_PATH

    # ---- request log
    def begin(self) -> None:
        with self._rec_lock:
            self._in_flight += 1

    def record(self, rec: RequestRecord) -> None:
        with self._rec_lock:
            self.requests.append(rec)
            self._in_flight -= 1
            self._rec_lock.notify_all()

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every request received so far is recorded (clients may return before the
        handler thread has logged the request it just answered)."""
        with self._rec_lock:
            self._rec_lock.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def count(self, path_regex: str) -> int:
        """How many recorded requests have a path matching ``path_regex`` (re.search)."""
        rx = re.compile(path_regex)
        self.settle()
        with self._rec_lock:
            return sum(1 for r in self.requests if rx.search(r.path))

    def oisst_url(self, day: date, preliminary: bool = False) -> str:
        return f"{self.oisst_https_base}/{day:%Y%m}/{oisst_filename(day, preliminary)}"

    def hycom_run_url(self, run: date | datetime) -> str:
        return self.base_url + HYCOM_RUN_PATH.format(run=run)

    @property
    def hycom_opendap_base(self) -> str:
        return self.base_url + DAP_PATH

    @property
    def hycom_files_base(self) -> str:
        return self.base_url + FILES_PATH

    @property
    def oisst_opendap_base(self) -> str:
        return self.base_url + OISST_DAP_PATH

    # ---- OISST lifecycle
    def oisst_published(self, day: date, preliminary: bool) -> bool:
        """Whether this name exists now: preliminary from day+1 until day+13, final from day+14 on."""
        if day < OISST_FIRST_DAY:
            return False
        age = (self.today - day).days
        if age < 1:
            return False
        return age < OISST_FINAL_AFTER_DAYS if preliminary else age >= OISST_FINAL_AFTER_DAYS

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._file_locks.get(key)
            if lock is None:
                lock = self._file_locks[key] = threading.Lock()
            return lock

    def _materialise(self, path: Path, write: Any) -> Path:
        """Create ``path`` once, thread-safely (temp name then atomic rename)."""
        with self._lock_for(str(path)):
            if path.exists():
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                write(Path(tmp))
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return path

    def oisst_file(self, day: date, preliminary: bool) -> Path:
        """The generated OISST file of ``day`` (created on first use)."""
        path = self.workdir / "oisst" / f"{day:%Y%m}" / oisst_filename(day, preliminary)

        def write(tmp: Path) -> None:
            fields = self.twin.oisst(day, OISST_LAT.astype(np.float64), OISST_LON.astype(np.float64),
                                     preliminary=preliminary)
            write_oisst(tmp, day, fields, preliminary=preliminary)

        return self._materialise(path, write)

    def _etag(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        tag = self._etags.get(key)
        if tag is None:
            digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
            tag = f'"{st.st_size:x}-{digest}"'
            self._etags[key] = tag
        return tag

    def _serve_oisst_file(self, month: str, ymd: str, prelim: bool, head: bool,
                          if_none_match: str | None) -> _Response:
        try:
            day = datetime.strptime(ymd, "%Y%m%d").date()
        except ValueError:
            raise _HttpError(404, "Not Found") from None
        if f"{day:%Y%m}" != month or not self.oisst_published(day, prelim):
            raise _HttpError(404, "Not Found")
        path = self.oisst_file(day, prelim)
        published = datetime(day.year, day.month, day.day, 9, 12) + timedelta(days=1 if prelim else 15)
        etag = self._etag(path)
        headers = {"ETag": etag, "Last-Modified": _http_date(published), "Accept-Ranges": "none"}
        if if_none_match is not None and if_none_match.strip() == etag:
            return _Response(304, b"", NETCDF_TYPE, headers)
        body = b"" if head else path.read_bytes()
        if head:
            headers["Content-Length"] = str(path.stat().st_size)
        return _Response(200, body, NETCDF_TYPE, headers)

    def _oisst_index(self, month: str) -> _Response:
        try:
            first = datetime.strptime(month + "01", "%Y%m%d").date()
        except ValueError:
            raise _HttpError(404, "Not Found") from None
        nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        rows = []
        day = first
        while day < nxt:
            for prelim in (False, True):
                if self.oisst_published(day, prelim):
                    name = oisst_filename(day, prelim)
                    stamp = datetime(day.year, day.month, day.day, 9, 12) + timedelta(days=1 if prelim else 15)
                    rows.append(f'<tr><td><a href="{name}">{name}</a></td>'
                                f'<td align="right">{stamp:%Y-%m-%d %H:%M}  </td>'
                                f'<td align="right">1.6M</td><td>&nbsp;</td></tr>')
            day += timedelta(days=1)
        if not rows and (nxt <= OISST_FIRST_DAY or first > self.today):
            raise _HttpError(404, "Not Found")
        return _Response(200, _apache_index(f"{OISST_PATH}/{month}/", rows).encode())

    def _oisst_root(self) -> _Response:
        rows = []
        month = OISST_FIRST_DAY
        while month <= self.today:
            name = f"{month:%Y%m}/"
            rows.append(f'<tr><td><a href="{name}">{name}</a></td><td align="right">'
                        f'{month:%Y-%m-%d} 00:00  </td><td align="right">  - </td><td>&nbsp;</td></tr>')
            month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        return _Response(200, _apache_index(f"{OISST_PATH}/", rows).encode())

    # ---- HYCOM NCSS
    def _ncss(self, run_text: str, query: str, head: bool, product: StandInProduct = GOFS31_STANDIN) -> _Response:
        try:
            run_day = date.fromisoformat(run_text)
        except ValueError:
            raise _HttpError(404, "Not Found") from None
        run_name = product.run_name.format(run=run_day)
        if not product.serves(run_day, self.today):
            raise _HttpError(404, f"Dataset {run_name} not found")
        run = datetime(run_day.year, run_day.month, run_day.day, 12)
        q = parse_qs(query, keep_blank_values=True)

        def one(name: str) -> str | None:
            vals = q.get(name)
            return vals[-1] if vals else None

        variables = [v for vals in q.get("var", []) for v in vals.split(",") if v]
        if not variables:
            raise _HttpError(400, "No variables requested (var=...)", plain=True)
        unknown = [v for v in variables if v not in product.variables]
        if unknown:
            raise _HttpError(400, f"Variable(s) {unknown} not in dataset", plain=True)
        if len(set(variables)) > 1:  # a stand-in limitation: real NCSS mixes 2-D and 3-D variables in one file
            raise _HttpError(400, f"stand-in NCSS serves one variable per request, not {sorted(set(variables))}",
                             plain=True)
        variable = variables[0]
        bbox: dict[str, float] = {}
        for name in ("north", "south", "west", "east"):
            text = one(name)
            try:
                val = float(text) if text is not None else math.nan
            except ValueError:
                val = math.nan
            if not math.isfinite(val):
                raise _HttpError(400, f"Missing or invalid bounding box parameter {name}={text!r}", plain=True)
            bbox[name] = val
        if bbox["south"] > bbox["north"] or bbox["south"] < -90 or bbox["north"] > 90:
            raise _HttpError(400, f"Invalid latitude range south={bbox['south']} north={bbox['north']}", plain=True)
        try:
            hstride = int(one("horizStride") or 1)
            tstride = int(one("timeStride") or 1)
        except ValueError:
            raise _HttpError(400, "horizStride/timeStride must be integers", plain=True) from None
        if hstride < 1 or tstride < 1:
            raise _HttpError(400, "horizStride/timeStride must be >= 1", plain=True)
        accept = (one("accept") or "netcdf4").lower()
        if accept in ("netcdf4", "netcdf-4"):
            fmt = "netcdf4"
        elif accept in ("netcdf", "netcdf3", "netcdf-3"):
            fmt = "netcdf3"
        else:
            raise _HttpError(400, f"Unsupported accept={accept}; use netcdf or netcdf4", plain=True)

        # time
        times = [run + timedelta(hours=float(t)) for t in product.taus]
        t_first, t_last = times[0], times[-1]
        try:
            ts, te, tsingle = one("time_start"), one("time_end"), one("time")
            if tsingle:
                want = _parse_iso(tsingle)
                if not t_first <= want <= t_last:
                    raise _HttpError(400, f"Requested time {_iso(want)} does not intersect actual time range "
                                          f"{_iso(t_first)} - {_iso(t_last)}", plain=True)
                keep = [int(np.argmin([abs((t - want).total_seconds()) for t in times]))]
            else:
                start = _parse_iso(ts) if ts else t_first
                end = _parse_iso(te) if te else t_last
                if start > end:
                    raise _HttpError(400, f"time_start {_iso(start)} is after time_end {_iso(end)}", plain=True)
                keep = [k for k, t in enumerate(times) if start <= t <= end]
                if not keep:
                    raise _HttpError(400, f"Requested time range {_iso(start)} - {_iso(end)} does not intersect "
                                          f"actual time range {_iso(t_first)} - {_iso(t_last)}", plain=True)
        except ValueError as exc:
            raise _HttpError(400, f"Invalid time parameter: {exc}", plain=True) from None
        keep = keep[::tstride]
        taus = product.taus[keep]

        # depth (2-D surf_el has none: vertCoord is ignored, as TDS does for 2-D variables)
        vc = one("vertCoord")
        if variable == "surf_el":
            depth = HYCOM_DEPTHS[:1]
        elif vc is None or vc == "":
            depth = HYCOM_DEPTHS.copy()
        else:
            try:
                level = float(vc)
            except ValueError:
                raise _HttpError(400, f"Invalid vertCoord={vc!r}", plain=True) from None
            depth = HYCOM_DEPTHS[[int(np.argmin(np.abs(HYCOM_DEPTHS - level)))]]

        # horizontal subset of the native grid
        eps = 1e-6
        jj = np.arange(GLBY_NLAT)
        lat_exact = -80.0 + 0.04 * jj
        rows = jj[(lat_exact >= bbox["south"] - eps) & (lat_exact <= bbox["north"] + eps)][::hstride]
        ii = np.arange(GLBY_NLON)
        lon_exact = 0.08 * ii
        neg = bbox["west"] < 0 or bbox["east"] < 0
        conv = np.where(lon_exact >= 180.0, lon_exact - 360.0, lon_exact) if neg else lon_exact
        west, east = bbox["west"], bbox["east"]
        if west <= east:
            sel = ii[(conv >= west - eps) & (conv <= east + eps)]
            cols = sel[np.argsort(conv[sel], kind="stable")]
        else:
            a = ii[conv >= west - eps]
            b = ii[conv <= east + eps]
            cols = np.concatenate([a[np.argsort(conv[a])], b[np.argsort(conv[b])]])
        cols = cols[::hstride]
        if rows.size == 0 or cols.size == 0:
            raise _HttpError(400, "Requested bounding box does not contain any grid point", plain=True)
        n_values = len(taus) * (len(depth) if variable == "water_temp" else 1) * rows.size * cols.size
        if n_values > NCSS_MAX_VALUES:
            raise _HttpError(403, f"Request too large: {n_values} values (limit {NCSS_MAX_VALUES})", plain=True)
        lat = glby_lat(rows)
        lon = glby_lon(cols)
        if neg:
            lon = np.where(lon >= 180.0, lon - 360.0, lon)

        key_parts: tuple[Any, ...] = (run_text, taus.tolist(), depth.tolist(), rows.tolist(), cols.tolist(), neg, fmt,
                                      product.key)
        if variable != "water_temp":
            key_parts += (variable,)
        key = hashlib.sha1(repr(key_parts).encode()).hexdigest()[:20]
        path = self.workdir / "ncss" / f"{run_day:%Y%m%d}" / f"{key}.nc"

        def write(tmp: Path) -> None:
            if variable == "surf_el":
                eta = self.twin.hycom_surf_el(run, taus, lat, lon)
                write_hycom_ssh_ncss(tmp, run, taus, lat, lon, eta, fmt, calendar=product.calendar)  # type: ignore[arg-type]
                return
            temp = self.twin.hycom(run, taus, lat, lon, depth)
            write_hycom_ncss(tmp, run, taus, lat, lon, depth, temp, fmt, calendar=product.calendar)  # type: ignore[arg-type]

        self._materialise(path, write)
        headers = {"Content-Disposition": f'attachment; filename="{run_name}.nc"'}
        if head:
            headers["Content-Length"] = str(path.stat().st_size)
            return _Response(200, b"", NETCDF_TYPE, headers)
        return _Response(200, path.read_bytes(), NETCDF_TYPE, headers)

    # ---- OPeNDAP (DAP2)
    def dap_dataset(self, path: str) -> tuple[dap.DapDataset, str]:
        """The virtual dataset behind a ``/thredds/dodsC/...`` URL path and the requested suffix."""
        m = _RE_DAP_GOFS_RUN.match(path)
        m_espc = _RE_DAP_ESPC_RUN.match(path)
        if m or m_espc:
            if m:
                product, run_text, suffix = GOFS31_STANDIN, m.group(1), m.group(2)
            else:
                assert m_espc is not None
                product = ESPC_SSH_STANDIN if m_espc.group(1) == "ssh" else ESPC_STANDIN
                run_text, suffix = m_espc.group(2), m_espc.group(3)
            try:
                run_day = date.fromisoformat(run_text)
            except ValueError:
                raise dap.DapError(404, "Not Found") from None
            name = product.run_name.format(run=run_day)
            if not product.serves(run_day, self.today):
                raise dap.DapError(404, f"Dataset {name} not found")
            run = datetime(run_day.year, run_day.month, run_day.day, 12)
            return dap.hycom_run_dataset(self.twin, run, product.taus, name, product.calendar,
                                         variables=product.variables), suffix
        m = _RE_DAP_OISST.match(path)
        if m:
            try:
                day = datetime.strptime(m.group(2), "%Y%m%d").date()
            except ValueError:
                raise dap.DapError(404, "Not Found") from None
            prelim = bool(m.group(3))
            if m.group(1) != f"{day:%Y%m}" or not self.oisst_published(day, prelim):
                raise dap.DapError(404, f"{oisst_filename(day, prelim)}: file not found")
            return dap.oisst_dataset(self.twin, day, prelim, oisst_filename(day, prelim)), m.group(4)
        raise dap.DapError(404, f"{path}: no such dataset")

    def _dap(self, path: str, query: str, head: bool) -> _Response:
        hdrs = {"XDODS-Server": "opendap/3.7", "XOPeNDAP-Server": "stand-in-dap2/1.0", "XDAP": "2.0"}
        try:
            ds, suffix = self.dap_dataset(path)
            if suffix == "dds":
                if query:
                    body = dap.dods_response(ds, query).split(b"\nData:\n", 1)[0]
                else:
                    body = dap.dds_text(ds).encode()
                return _Response(200, body, "text/plain; charset=UTF-8", {**hdrs, "Content-Description": "dods-dds"})
            if suffix == "das":
                return _Response(200, dap.das_text(ds).encode(), "text/plain; charset=UTF-8",
                                 {**hdrs, "Content-Description": "dods-das"})
            if suffix == "ascii":
                return _Response(200, dap.ascii_response(ds, query), "text/plain; charset=UTF-8", hdrs)
            body = b"" if head else dap.dods_response(ds, query)
            return _Response(200, body, "application/octet-stream", {**hdrs, "Content-Description": "dods-data"})
        except dap.DapError as err:
            return _Response(err.status, dap.dap_error_body(err.status, err.message), "text/plain; charset=UTF-8",
                             {**hdrs, "Content-Description": "dods-error"})

    # ---- HYCOM whole forecast files (virtual, Range requests)
    def forecast_layout(self, product: StandInProduct, run: datetime) -> Any:
        if product.file_variable == "surf_el":
            return glby_ssh_layout(run, product.calendar)
        return glby_forecast_layout(run, product.calendar, salinity=product.salinity)

    def _ssh_band(self, product: StandInProduct, run: datetime, j0: int, j1: int) -> tuple[np.ndarray, np.ndarray]:
        """(3-hourly taus, packed surf_el of rows j0..j1, all columns, at those taus), cached per run and rows.

        Only the 3-hourly taus are banded (what readers of daily means take, also from hourly products).
        """
        key = (product.key, run, "surf_el", j0, j1)
        taus = product.taus[np.mod(product.taus, 3.0) == 0.0]
        with self._lock_for(repr(key)):
            hit = self._bands.get(key)
            if hit is None:
                lat, lon = glby_lat(np.arange(j0, j1 + 1)), glby_lon(np.arange(GLBY_NLON))
                parts = [pack_surf_el(self.twin.hycom_surf_el(run, taus[k:k + 8], lat, lon))
                         for k in range(0, len(taus), 8)]
                hit = np.concatenate(parts, axis=0)
                with self._locks_lock:
                    if len(self._bands) >= 4:
                        self._bands.pop(next(iter(self._bands)))
                    self._bands[key] = hit
            return taus, hit

    def _band(self, product: StandInProduct, run: datetime, level: int, j0: int, j1: int) -> np.ndarray:
        """Packed water_temp of rows j0..j1 (all columns) at depth ``level`` for every tau of the run, cached."""
        key = (product.key, run, level, j0, j1)
        with self._lock_for(repr(key)):
            hit = self._bands.get(key)
            if hit is None:
                lat, lon = glby_lat(np.arange(j0, j1 + 1)), glby_lon(np.arange(GLBY_NLON))
                parts = [pack_hycom(self.twin.hycom(run, product.taus[k:k + 8], lat, lon,
                                                    HYCOM_DEPTHS[[level]])[:, 0])
                         for k in range(0, len(product.taus), 8)]
                hit = np.concatenate(parts, axis=0)
                with self._locks_lock:
                    if len(self._bands) >= 4:
                        self._bands.pop(next(iter(self._bands)))
                    self._bands[key] = hit
            return hit

    def _record_values(self, product: StandInProduct, run: datetime, tau: int, name: str,
                       e0: int, e1: int, cache: bool = True) -> np.ndarray:
        """Flat elements e0..e1-1 (of one record / one non-record variable) of the virtual file."""
        if name == "time":
            return np.array([hycom_hours(run) + tau], dtype=np.float64)[e0:e1]
        if name == "tau":
            return np.array([float(tau)], dtype=np.float64)[e0:e1]
        if name == "depth":
            return HYCOM_DEPTHS[e0:e1]
        if name == "lat":
            return glby_lat(np.arange(e0, e1))
        if name == "lon":
            return glby_lon(np.arange(e0, e1))
        per_level = GLBY_NLAT * GLBY_NLON
        if name == "surf_el":
            j0, j1 = e0 // GLBY_NLON, (e1 - 1) // GLBY_NLON
            taus3 = product.taus[np.mod(product.taus, 3.0) == 0.0]
            if cache and float(tau) in taus3.tolist():
                _, band = self._ssh_band(product, run, j0, j1)
                rows = band[int(np.flatnonzero(taus3 == tau)[0])].reshape(-1)
            else:
                rows = pack_surf_el(self.twin.hycom_surf_el(run, np.array([float(tau)]), glby_lat(np.arange(j0, j1 + 1)),
                                                            glby_lon(np.arange(GLBY_NLON)))).reshape(-1)
            first = j0 * GLBY_NLON
            return rows[e0 - first:e1 - first]
        if name in ("water_temp", "salinity"):
            out = []
            pos = e0
            while pos < e1:
                level, rem = divmod(pos, per_level)
                stop = min(e1, (level + 1) * per_level)
                j0, j1 = rem // GLBY_NLON, (stop - 1 - level * per_level) // GLBY_NLON
                if name == "water_temp" and cache:
                    t_ix = int(np.flatnonzero(product.taus == tau)[0])
                    rows = self._band(product, run, level, j0, j1)[t_ix].reshape(-1)
                elif name == "water_temp":
                    rows = pack_hycom(self.twin.hycom(run, np.array([float(tau)]), glby_lat(np.arange(j0, j1 + 1)),
                                                      glby_lon(np.arange(GLBY_NLON)), HYCOM_DEPTHS[[level]])).reshape(-1)
                else:  # salinity: a plausible constant 34.5 psu (never read by sstbc)
                    rows = np.full((j1 - j0 + 1) * GLBY_NLON, 14500, dtype=np.int16)
                first = j0 * GLBY_NLON + level * per_level
                out.append(rows[pos - first: stop - first])
                pos = stop
            return np.concatenate(out)
        # *_bottom: a constant cold bottom (never read by sstbc)
        return np.full(e1 - e0, pack_hycom(np.array([2.0]))[0], dtype=np.int16)

    def forecast_bytes(self, product: StandInProduct, run: datetime, tau: int, start: int, stop: int,
                       cache: bool = True) -> bytes:
        """Bytes [start, stop) of a virtual whole forecast file, generated on the fly."""
        layout = self.forecast_layout(product, run)
        out = bytearray(stop - start)
        hdr = layout.header
        if start < len(hdr):
            piece = hdr[start:min(stop, len(hdr))]
            out[:len(piece)] = piece
        for var in layout.variables.values():
            itemsize = np.dtype(var.dtype).itemsize
            nbytes = int(np.prod(var.shape, dtype=np.int64)) * itemsize
            a, b = max(start, var.begin), min(stop, var.begin + nbytes)
            if a >= b:
                continue
            e0, e1 = (a - var.begin) // itemsize, -(-(b - var.begin) // itemsize)
            raw = np.asarray(self._record_values(product, run, tau, var.name, e0, e1, cache)).astype(var.dtype).tobytes()
            off = a - (var.begin + e0 * itemsize)
            out[a - start:b - start] = raw[off:off + (b - a)]
        return bytes(out)

    def _forecast_file(self, product: StandInProduct, ymd: str, tau: int, head: bool,
                       range_header: str | None) -> _Response:
        try:
            run_day = datetime.strptime(ymd, "%Y%m%d").date()
        except ValueError:
            raise _HttpError(404, "Not Found") from None
        if not product.serves(run_day, self.today) or float(tau) not in product.taus.tolist():
            raise _HttpError(404, "Not Found")
        run = datetime(run_day.year, run_day.month, run_day.day, 12)
        size = self.forecast_layout(product, run).size
        published = run + timedelta(hours=20)
        headers = {"Accept-Ranges": "bytes", "Last-Modified": _http_date(published),
                   "ETag": f'"{hashlib.sha1(f"{product.key}{ymd}{tau}".encode()).hexdigest()[:16]}-{size:x}"'}
        if head:
            return _Response(200, b"", NETCDF_TYPE, {**headers, "Content-Length": str(size)})
        m = _RE_RANGE.match(range_header.strip()) if range_header else None
        if range_header and not m:
            raise _HttpError(416, f"Unsupported Range {range_header!r} (one bytes=a-b range only)")
        if m is None:
            def whole() -> Iterable[bytes]:
                for pos in range(0, size, 1 << 16):
                    yield self.forecast_bytes(product, run, tau, pos, min(size, pos + (1 << 16)), cache=False)
            return _Response(200, b"", NETCDF_TYPE, {**headers, "Content-Length": str(size)}, stream=whole())
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        if first >= size or last < first:
            return _Response(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{size}"})
        if last - first + 1 > 256 << 20:
            raise _HttpError(416, "Range larger than 256 MiB refused by the stand-in")
        body = self.forecast_bytes(product, run, tau, first, last + 1)
        return _Response(206, body, NETCDF_TYPE, {**headers, "Content-Range": f"bytes {first}-{last}/{size}"})

    # ---- routing
    def respond(self, path: str, query: str, head: bool, if_none_match: str | None,
                range_header: str | None = None) -> _Response:
        """The normal (fault-free) response to a GET/HEAD (``range_header``: the request's Range, if any)."""
        if path.startswith(DAP_PATH + "/"):
            return self._dap(path, query, head)
        try:
            m = _RE_FILE_GOFS.match(path) or _RE_FILE_ESPC.match(path)
            if m:
                tree = "gofs" if path.startswith("/datasets/GLBy0.08/") else "espc"
                product = _FILE_PRODUCTS[(tree, m.group(3))]
                return self._forecast_file(product, m.group(1), int(m.group(2)), head, range_header)
            m = _RE_NCSS_ESPC_RUN.match(path)
            if m:
                return self._ncss(m.group(2), query, head, ESPC_SSH_STANDIN if m.group(1) == "ssh" else ESPC_STANDIN)
            m = _RE_OISST_FILE.match(path)
            if m:
                return self._serve_oisst_file(m.group(1), m.group(2), bool(m.group(3)), head, if_none_match)
            m = _RE_OISST_MONTH.match(path)
            if m:
                return self._oisst_index(m.group(1))
            if _RE_OISST_ROOT.match(path):
                return self._oisst_root()
            m = _RE_NCSS_RUN.match(path)
            if m:
                return self._ncss(m.group(1), query, head)
            raise _HttpError(404, "Not Found")
        except _HttpError as err:
            if err.plain:
                return _Response(err.status, (err.message + "\n").encode(), "text/plain; charset=UTF-8")
            msg = f"The requested URL {path} was not found on this server." if err.status == 404 else err.message
            return _html_error(err.status, "Not Found" if err.status == 404 else err.message, msg)


def _apache_index(title_path: str, rows: Iterable[str]) -> str:
    parent = title_path.rstrip("/").rsplit("/", 1)[0] + "/"
    body = "\n".join(rows)
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
        f"  <title>Index of {title_path.rstrip('/')}</title>\n </head>\n <body>\n"
        f"<h1>Index of {title_path.rstrip('/')}</h1>\n  <table>\n"
        '   <tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>'
        '<th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>\n'
        '   <tr><th colspan="4"><hr></th></tr>\n'
        f'<tr><td><a href="{parent}">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td>'
        "<td>&nbsp;</td></tr>\n"
        f"{body}\n"
        '   <tr><th colspan="4"><hr></th></tr>\n</table>\n</body></html>\n'
    )


_HTML200_BODY = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n<body>\n"
                 b"<h1>The service is temporarily unavailable</h1>\n<p>The server is under maintenance. "
                 b"Please try again later.</p>\n</body></html>\n")


class _Handler(BaseHTTPRequestHandler):
    """Applies the fault plan, then the stand-in's normal routing."""

    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    stand_in: StandInServer  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        return

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(head=True)

    def _handle(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = split.query
        target = path + ("?" + unquote(query) if query else "")
        self.stand_in.begin()
        fault = self.stand_in.faults.take(target)
        kind, params = fault if fault is not None else (None, {})
        status, sent = 0, 0
        try:
            status, sent = self._dispatch(kind, params, path, query, head)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            self.stand_in.record(RequestRecord(self.command, path, query, status, sent, kind))

    def _dispatch(self, kind: str | None, params: dict[str, Any], path: str, query: str,
                  head: bool) -> tuple[int, int]:
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()
            self.connection.close()
            return 0, 0
        if kind == "status":
            code = int(params["code"])
            body = params.get("body")
            if body is None:
                resp = _html_error(code, self.responses.get(code, ("Error",))[0], f"Injected error {code}.")
            else:
                resp = _Response(code, body.encode() if isinstance(body, str) else bytes(body))
            return self._send(resp, head)
        if kind == "html200":
            body = params.get("body", _HTML200_BODY)
            return self._send(_Response(200, body.encode() if isinstance(body, str) else body,
                                        "text/html; charset=UTF-8"), head)
        if kind == "stall":
            time.sleep(float(params["seconds"]))
        range_header = None if kind == "ignore_range" else self.headers.get("Range")
        resp = self.stand_in.respond(path, query, head, self.headers.get("If-None-Match"), range_header)
        if kind == "truncate":
            return self._send(resp, head, cut=True, http10=True)
        if kind == "truncate_length":
            return self._send(resp, head, cut=True)
        if kind == "slow":
            return self._send(resp, head, bytes_per_s=float(params["bytes_per_s"]))
        return self._send(resp, head)

    def _send(self, resp: _Response, head: bool, *, cut: bool = False, http10: bool = False,
              bytes_per_s: float | None = None) -> tuple[int, int]:
        body = resp.body
        if http10:
            self.protocol_version = "HTTP/1.0"
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            if key != "Content-Length":
                self.send_header(key, value)
        if http10:
            self.send_header("Connection", "close")
        elif "Content-Length" in resp.headers:
            self.send_header("Content-Length", resp.headers["Content-Length"])
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:
            self.close_connection = True
        if head or resp.status == 304:
            return resp.status, 0
        if resp.stream is not None:
            sent = 0
            for piece in resp.stream:
                self.wfile.write(piece)
                sent += len(piece)
            return resp.status, sent
        if cut:
            body = body[: len(body) // 2]
        if bytes_per_s is None:
            self.wfile.write(body)
            sent = len(body)
        else:
            chunk = max(1, int(bytes_per_s / 20))
            sent = 0
            for start in range(0, len(body), chunk):
                piece = body[start:start + chunk]
                self.wfile.write(piece)
                sent += len(piece)
                time.sleep(len(piece) / bytes_per_s)
        if cut:
            self.wfile.flush()
        return resp.status, sent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Loopback stand-in of the NCEI OISST and HYCOM NCSS services")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--today", type=date.fromisoformat, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=None, help="twin seed (default: TwinConfig default)")
    args = parser.parse_args(argv)
    from bias_correction.testing.twin import TwinConfig

    twin = Twin(TwinConfig(seed=args.seed) if args.seed is not None else TwinConfig())
    server = StandInServer(twin, args.workdir, args.today, host=args.host, port=args.port).start()
    print(f"base_url         {server.base_url}", flush=True)
    print(f"oisst_https_base {server.oisst_https_base}", flush=True)
    print(f"hycom_ncss_base  {server.hycom_ncss_base}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
