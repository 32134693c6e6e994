"""The NCEI HTTPS file tree of OISST v2.1 (Apache indexes, daily files) with its publication lifecycle.

Why: the OISST downloader lists month directories and fetches daily files that appear as ``_preliminary``
the next day and are replaced by the final file two weeks later; ETag / If-None-Match as Apache does it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.testing.formats.oisst import OISST_LAT, OISST_LON, oisst_filename, write_oisst
from bias_correction.testing.standin.responses import NETCDF_TYPE, HttpError, Request, Response, http_date
from bias_correction.testing.standin.server import ServerCore, route

OISST_PATH = "/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr"
OISST_FIRST_DAY = date(1981, 9, 1)
OISST_FINAL_AFTER_DAYS = 14

_RE_OISST_ROOT = re.compile(rf"^{re.escape(OISST_PATH)}/?$")
_RE_OISST_MONTH = re.compile(rf"^{re.escape(OISST_PATH)}/(\d{{6}})/?$")
_RE_OISST_FILE = re.compile(rf"^{re.escape(OISST_PATH)}/(\d{{6}})/oisst-avhrr-v02r01\.(\d{{8}})(_preliminary)?\.nc$")


def oisst_is_published(today: date, day: date, preliminary: bool) -> bool:
    """Whether this name exists on ``today``: preliminary from day+1 until day+13, final from day+14 on."""
    if day < OISST_FIRST_DAY:
        return False
    age = (today - day).days
    if age < 1:
        return False
    return age < OISST_FINAL_AFTER_DAYS if preliminary else age >= OISST_FINAL_AFTER_DAYS


def apache_index(title_path: str, rows: Iterable[str]) -> str:
    """An Apache ``mod_autoindex`` listing page (as www.ncei.noaa.gov serves it) of ``rows``."""
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


class NceiService(ServerCore):
    """``/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr/...``: root, months, files."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._etags: dict[tuple[str, int, int], str] = {}

    @property
    def oisst_https_base(self) -> str:
        return self.base_url + OISST_PATH

    def oisst_url(self, day: date, preliminary: bool = False) -> str:
        return f"{self.oisst_https_base}/{day:%Y%m}/{oisst_filename(day, preliminary)}"

    # ---- OISST lifecycle
    def oisst_published(self, day: date, preliminary: bool) -> bool:
        """Whether this name exists now: preliminary from day+1 until day+13, final from day+14 on."""
        return oisst_is_published(self.today, day, preliminary)

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
                          if_none_match: str | None) -> Response:
        try:
            day = datetime.strptime(ymd, "%Y%m%d").date()
        except ValueError:
            raise HttpError(404, "Not Found") from None
        if f"{day:%Y%m}" != month or not self.oisst_published(day, prelim):
            raise HttpError(404, "Not Found")
        path = self.oisst_file(day, prelim)
        published = datetime(day.year, day.month, day.day, 9, 12) + timedelta(days=1 if prelim else 15)
        etag = self._etag(path)
        headers = {"ETag": etag, "Last-Modified": http_date(published), "Accept-Ranges": "none"}
        if if_none_match is not None and if_none_match.strip() == etag:
            return Response(304, b"", NETCDF_TYPE, headers)
        body = b"" if head else path.read_bytes()
        if head:
            headers["Content-Length"] = str(path.stat().st_size)
        return Response(200, body, NETCDF_TYPE, headers)

    def _oisst_index(self, month: str) -> Response:
        try:
            first = datetime.strptime(month + "01", "%Y%m%d").date()
        except ValueError:
            raise HttpError(404, "Not Found") from None
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
            raise HttpError(404, "Not Found")
        return Response(200, apache_index(f"{OISST_PATH}/{month}/", rows).encode())

    def _oisst_root(self) -> Response:
        rows = []
        month = OISST_FIRST_DAY
        while month <= self.today:
            name = f"{month:%Y%m}/"
            rows.append(f'<tr><td><a href="{name}">{name}</a></td><td align="right">'
                        f'{month:%Y-%m-%d} 00:00  </td><td align="right">  - </td><td>&nbsp;</td></tr>')
            month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        return Response(200, apache_index(f"{OISST_PATH}/", rows).encode())

    # ---- routes
    @route(_RE_OISST_FILE)
    def _route_oisst_file(self, m: re.Match[str], req: Request) -> Response:
        return self._serve_oisst_file(m.group(1), m.group(2), bool(m.group(3)), req.head, req.if_none_match)

    @route(_RE_OISST_MONTH)
    def _route_oisst_month(self, m: re.Match[str], req: Request) -> Response:
        return self._oisst_index(m.group(1))

    @route(_RE_OISST_ROOT)
    def _route_oisst_root(self, m: re.Match[str], req: Request) -> Response:
        return self._oisst_root()
