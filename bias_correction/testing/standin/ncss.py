"""THREDDS NetCDF Subset Service (NCSS) of the HYCOM FMRC runs (GOFS 3.1 and ESPC-D-V02 t3z / ssh).

Why: the NCSS downloader asks for a bounding box, a time range, a depth and a format; the stand-in answers
with the exact subset TDS would send (NetCDF-3 or NetCDF-4), the same 400/403 errors, a size limit.
Limitation: one NCSS request serves one variable (mixing water_temp and surf_el gets a 400 here).
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from bias_correction.testing.formats.hycom import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_DEPTHS,
    glby_lat,
    glby_lon,
    write_hycom_ncss,
    write_hycom_ssh_ncss,
)
from bias_correction.testing.standin.products import ESPC_SSH_STANDIN, ESPC_STANDIN, GOFS31_STANDIN, StandInProduct
from bias_correction.testing.standin.responses import NETCDF_TYPE, HttpError, Request, Response
from bias_correction.testing.standin.server import ServerCore, route

NCSS_PATH = "/thredds/ncss"
HYCOM_RUN_PATH = "/thredds/ncss/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z"
NCSS_MAX_VALUES = 60_000_000

_RE_NCSS_RUN = re.compile(r"^/thredds/ncss/(?:grid/)?GLBy0\.08/expt_93\.0/FMRC/runs/"
                          r"GLBy0\.08_930_FMRC_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z$")
_RE_NCSS_ESPC_RUN = re.compile(r"^/thredds/ncss/(?:grid/)?FMRC_ESPC-D-V02_(t3z|ssh)/runs/"
                               r"FMRC_ESPC-D-V02_\1_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z$")


def _parse_iso(text: str) -> datetime:
    """ISO 8601 time of an NCSS request (``Z`` or offset or naive = UTC) as naive UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _iso(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M:%SZ}"


class NcssService(ServerCore):
    """``/thredds/ncss/...``: subsets of the FMRC run datasets."""

    @property
    def hycom_ncss_base(self) -> str:
        return self.base_url + NCSS_PATH

    def hycom_run_url(self, run: date | datetime) -> str:
        return self.base_url + HYCOM_RUN_PATH.format(run=run)

    # ---- HYCOM NCSS
    def _ncss(self, run_text: str, query: str, head: bool, product: StandInProduct = GOFS31_STANDIN) -> Response:
        try:
            run_day = date.fromisoformat(run_text)
        except ValueError:
            raise HttpError(404, "Not Found") from None
        run_name = product.run_name.format(run=run_day)
        if not product.serves(run_day, self.today):
            raise HttpError(404, f"Dataset {run_name} not found")
        run = datetime(run_day.year, run_day.month, run_day.day, 12)
        q = parse_qs(query, keep_blank_values=True)

        def one(name: str) -> str | None:
            vals = q.get(name)
            return vals[-1] if vals else None

        variables = [v for vals in q.get("var", []) for v in vals.split(",") if v]
        if not variables:
            raise HttpError(400, "No variables requested (var=...)", plain=True)
        unknown = [v for v in variables if v not in product.variables]
        if unknown:
            raise HttpError(400, f"Variable(s) {unknown} not in dataset", plain=True)
        if len(set(variables)) > 1:  # a stand-in limitation: real NCSS mixes 2-D and 3-D variables in one file
            raise HttpError(400, f"stand-in NCSS serves one variable per request, not {sorted(set(variables))}",
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
                raise HttpError(400, f"Missing or invalid bounding box parameter {name}={text!r}", plain=True)
            bbox[name] = val
        if bbox["south"] > bbox["north"] or bbox["south"] < -90 or bbox["north"] > 90:
            raise HttpError(400, f"Invalid latitude range south={bbox['south']} north={bbox['north']}", plain=True)
        try:
            hstride = int(one("horizStride") or 1)
            tstride = int(one("timeStride") or 1)
        except ValueError:
            raise HttpError(400, "horizStride/timeStride must be integers", plain=True) from None
        if hstride < 1 or tstride < 1:
            raise HttpError(400, "horizStride/timeStride must be >= 1", plain=True)
        accept = (one("accept") or "netcdf4").lower()
        if accept in ("netcdf4", "netcdf-4"):
            fmt = "netcdf4"
        elif accept in ("netcdf", "netcdf3", "netcdf-3"):
            fmt = "netcdf3"
        else:
            raise HttpError(400, f"Unsupported accept={accept}; use netcdf or netcdf4", plain=True)

        # time
        times = [run + timedelta(hours=float(t)) for t in product.taus]
        t_first, t_last = times[0], times[-1]
        try:
            ts, te, tsingle = one("time_start"), one("time_end"), one("time")
            if tsingle:
                want = _parse_iso(tsingle)
                if not t_first <= want <= t_last:
                    raise HttpError(400, f"Requested time {_iso(want)} does not intersect actual time range "
                                          f"{_iso(t_first)} - {_iso(t_last)}", plain=True)
                keep = [int(np.argmin([abs((t - want).total_seconds()) for t in times]))]
            else:
                start = _parse_iso(ts) if ts else t_first
                end = _parse_iso(te) if te else t_last
                if start > end:
                    raise HttpError(400, f"time_start {_iso(start)} is after time_end {_iso(end)}", plain=True)
                keep = [k for k, t in enumerate(times) if start <= t <= end]
                if not keep:
                    raise HttpError(400, f"Requested time range {_iso(start)} - {_iso(end)} does not intersect "
                                          f"actual time range {_iso(t_first)} - {_iso(t_last)}", plain=True)
        except ValueError as exc:
            raise HttpError(400, f"Invalid time parameter: {exc}", plain=True) from None
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
                raise HttpError(400, f"Invalid vertCoord={vc!r}", plain=True) from None
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
            raise HttpError(400, "Requested bounding box does not contain any grid point", plain=True)
        n_values = len(taus) * (len(depth) if variable == "water_temp" else 1) * rows.size * cols.size
        if n_values > NCSS_MAX_VALUES:
            raise HttpError(403, f"Request too large: {n_values} values (limit {NCSS_MAX_VALUES})", plain=True)
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
            return Response(200, b"", NETCDF_TYPE, headers)
        return Response(200, path.read_bytes(), NETCDF_TYPE, headers)

    # ---- routes
    @route(_RE_NCSS_RUN)
    def _route_ncss_gofs(self, m: re.Match[str], req: Request) -> Response:
        return self._ncss(m.group(1), req.query, req.head)

    @route(_RE_NCSS_ESPC_RUN)
    def _route_ncss_espc(self, m: re.Match[str], req: Request) -> Response:
        return self._ncss(m.group(2), req.query, req.head, ESPC_SSH_STANDIN if m.group(1) == "ssh" else ESPC_STANDIN)
