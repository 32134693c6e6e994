"""The HYCOM data server's whole forecast files (``/datasets/...``), virtual and served by HTTP Range.

Why: the file downloader reads ~3 GB NetCDF-3 64-bit offset files by byte ranges; the stand-in
generates just the requested bytes from the twin (header from :func:`~bias_correction.testing.formats.nc3.nc3_layout`,
data packed as NAVO int16), with Last-Modified, ETag, 206/416 as the real server answers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from bias_correction.testing.formats.hycom import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_DEPTHS,
    glby_forecast_layout,
    glby_lat,
    glby_lon,
    glby_ssh_layout,
    hycom_hours,
    pack_hycom,
    pack_surf_el,
)
from bias_correction.testing.standin.products import (
    ESPC_SSH_STANDIN,
    ESPC_STANDIN,
    GOFS31_SSH_STANDIN,
    GOFS31_STANDIN,
    StandInProduct,
)
from bias_correction.testing.standin.responses import NETCDF_TYPE, HttpError, Request, Response, http_date
from bias_correction.testing.standin.server import ServerCore, route

FILES_PATH = "/datasets"

_RE_FILE_GOFS = re.compile(r"^/datasets/GLBy0\.08/expt_93\.0/data/forecasts/hycom_glby_930_(\d{8})12_t(\d{3})_(ts3z|ssh)\.nc$")
_RE_FILE_ESPC = re.compile(r"^/datasets/ESPC-D-V02/data/forecasts/US058GCOM-OPSnce\.espc-d-031-hycom_fcst_glby008_"
                           r"(\d{8})12_t(\d{4})_(t3z|ssh)\.nc$")
#: Whole-file products by (tree, file suffix).
_FILE_PRODUCTS = {("gofs", "ts3z"): GOFS31_STANDIN, ("gofs", "ssh"): GOFS31_SSH_STANDIN,
                  ("espc", "t3z"): ESPC_STANDIN, ("espc", "ssh"): ESPC_SSH_STANDIN}
_RE_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class HycomFilesService(ServerCore):
    """``/datasets/GLBy0.08/...`` (GOFS 3.1 ts3z, ssh) and ``/datasets/ESPC-D-V02/...`` (t3z, ssh)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bands: dict[tuple[Any, ...], np.ndarray] = {}

    @property
    def hycom_files_base(self) -> str:
        return self.base_url + FILES_PATH

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
                       range_header: str | None) -> Response:
        try:
            run_day = datetime.strptime(ymd, "%Y%m%d").date()
        except ValueError:
            raise HttpError(404, "Not Found") from None
        if not product.serves(run_day, self.today) or float(tau) not in product.taus.tolist():
            raise HttpError(404, "Not Found")
        run = datetime(run_day.year, run_day.month, run_day.day, 12)
        size = self.forecast_layout(product, run).size
        published = run + timedelta(hours=20)
        headers = {"Accept-Ranges": "bytes", "Last-Modified": http_date(published),
                   "ETag": f'"{hashlib.sha1(f"{product.key}{ymd}{tau}".encode()).hexdigest()[:16]}-{size:x}"'}
        if head:
            return Response(200, b"", NETCDF_TYPE, {**headers, "Content-Length": str(size)})
        m = _RE_RANGE.match(range_header.strip()) if range_header else None
        if range_header and not m:
            raise HttpError(416, f"Unsupported Range {range_header!r} (one bytes=a-b range only)")
        if m is None:
            def whole() -> Iterable[bytes]:
                for pos in range(0, size, 1 << 16):
                    yield self.forecast_bytes(product, run, tau, pos, min(size, pos + (1 << 16)), cache=False)
            return Response(200, b"", NETCDF_TYPE, {**headers, "Content-Length": str(size)}, stream=whole())
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        if first >= size or last < first:
            return Response(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{size}"})
        if last - first + 1 > 256 << 20:
            raise HttpError(416, "Range larger than 256 MiB refused by the stand-in")
        body = self.forecast_bytes(product, run, tau, first, last + 1)
        return Response(206, body, NETCDF_TYPE, {**headers, "Content-Range": f"bytes {first}-{last}/{size}"})

    # ---- routes
    @route(_RE_FILE_GOFS)
    def _route_file_gofs(self, m: re.Match[str], req: Request) -> Response:
        return self._forecast_file(_FILE_PRODUCTS[("gofs", m.group(3))], m.group(1), int(m.group(2)), req.head,
                                   req.range_header)

    @route(_RE_FILE_ESPC)
    def _route_file_espc(self, m: re.Match[str], req: Request) -> Response:
        return self._forecast_file(_FILE_PRODUCTS[("espc", m.group(3))], m.group(1), int(m.group(2)), req.head,
                                   req.range_header)
