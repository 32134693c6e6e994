"""OPeNDAP (DAP2) of THREDDS: the HYCOM FMRC runs and the NCEI OISST files, generated on demand.

Why: the OPeNDAP readers request hyperslabs of global datasets that are never materialised; the values
come from the twin through :mod:`bias_correction.testing.dap`. Every path under ``/thredds/dodsC/`` is
answered here, errors in the DAP2 error format.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from bias_correction.testing import dap
from bias_correction.testing.formats.oisst import oisst_filename
from bias_correction.testing.standin.ncei import oisst_is_published
from bias_correction.testing.standin.products import ESPC_SSH_STANDIN, ESPC_STANDIN, GOFS31_STANDIN
from bias_correction.testing.standin.responses import Request, Response
from bias_correction.testing.standin.server import ServerCore, route

DAP_PATH = "/thredds/dodsC"
OISST_DAP_PATH = "/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR"

_RE_DAP_GOFS_RUN = re.compile(r"^/thredds/dodsC/GLBy0\.08/expt_93\.0/FMRC/runs/"
                              r"GLBy0\.08_930_FMRC_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z\.(dds|das|dods|ascii)$")
_RE_DAP_ESPC_RUN = re.compile(r"^/thredds/dodsC/FMRC_ESPC-D-V02_(t3z|ssh)/runs/"
                              r"FMRC_ESPC-D-V02_\1_RUN_(\d{4}-\d{2}-\d{2})T12:00:00Z\.(dds|das|dods|ascii)$")
_RE_DAP_OISST = re.compile(rf"^{re.escape(OISST_DAP_PATH)}/(\d{{6}})/oisst-avhrr-v02r01\.(\d{{8}})(_preliminary)?"
                           r"\.nc\.(dds|das|dods|ascii)$")


class OpendapService(ServerCore):
    """``/thredds/dodsC/...``: ``.dds``, ``.das``, ``.dods`` and ``.ascii`` of the virtual datasets."""

    @property
    def hycom_opendap_base(self) -> str:
        return self.base_url + DAP_PATH

    @property
    def oisst_opendap_base(self) -> str:
        return self.base_url + OISST_DAP_PATH

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
            if m.group(1) != f"{day:%Y%m}" or not oisst_is_published(self.today, day, prelim):
                raise dap.DapError(404, f"{oisst_filename(day, prelim)}: file not found")
            return dap.oisst_dataset(self.twin, day, prelim, oisst_filename(day, prelim)), m.group(4)
        raise dap.DapError(404, f"{path}: no such dataset")

    def _dap(self, path: str, query: str, head: bool) -> Response:
        hdrs = {"XDODS-Server": "opendap/3.7", "XOPeNDAP-Server": "stand-in-dap2/1.0", "XDAP": "2.0"}
        try:
            ds, suffix = self.dap_dataset(path)
            if suffix == "dds":
                if query:
                    body = dap.dods_response(ds, query).split(b"\nData:\n", 1)[0]
                else:
                    body = dap.dds_text(ds).encode()
                return Response(200, body, "text/plain; charset=UTF-8", {**hdrs, "Content-Description": "dods-dds"})
            if suffix == "das":
                return Response(200, dap.das_text(ds).encode(), "text/plain; charset=UTF-8",
                                {**hdrs, "Content-Description": "dods-das"})
            if suffix == "ascii":
                return Response(200, dap.ascii_response(ds, query), "text/plain; charset=UTF-8", hdrs)
            body = b"" if head else dap.dods_response(ds, query)
            return Response(200, body, "application/octet-stream", {**hdrs, "Content-Description": "dods-data"})
        except dap.DapError as err:
            return Response(err.status, dap.dap_error_body(err.status, err.message), "text/plain; charset=UTF-8",
                            {**hdrs, "Content-Description": "dods-error"})

    # ---- routes
    @route(f"^{re.escape(DAP_PATH)}/")
    def _route_dap(self, m: re.Match[str], req: Request) -> Response:
        return self._dap(req.path, req.query, req.head)
