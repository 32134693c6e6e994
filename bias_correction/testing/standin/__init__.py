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

Layout: :mod:`.server` (HTTP core, request log, route registry), :mod:`.faults` (fault injection),
:mod:`.responses` (request/response types), :mod:`.products` (HYCOM collections), one module per upstream
service (:mod:`.ncei`, :mod:`.ncss`, :mod:`.opendap`, :mod:`.hycom_files`) and :mod:`.app`, which mounts
them all on :class:`StandInServer`.
"""

from __future__ import annotations

from bias_correction.testing.standin.app import StandInServer, main
from bias_correction.testing.standin.faults import FAULT_KINDS, FaultPlan
from bias_correction.testing.standin.hycom_files import FILES_PATH
from bias_correction.testing.standin.ncei import OISST_FINAL_AFTER_DAYS, OISST_FIRST_DAY, OISST_PATH
from bias_correction.testing.standin.ncss import HYCOM_RUN_PATH, NCSS_MAX_VALUES, NCSS_PATH
from bias_correction.testing.standin.opendap import DAP_PATH, OISST_DAP_PATH
from bias_correction.testing.standin.products import (
    ESPC_SSH_STANDIN,
    ESPC_STANDIN,
    GOFS31_FIRST_RUN,
    GOFS31_LAST_RUN,
    GOFS31_SSH_STANDIN,
    GOFS31_STANDIN,
    HYCOM_TAUS,
    StandInProduct,
)
from bias_correction.testing.standin.responses import NETCDF_TYPE
from bias_correction.testing.standin.server import RequestRecord, Route, ServerCore, route

__all__ = [
    "DAP_PATH",
    "ESPC_SSH_STANDIN",
    "ESPC_STANDIN",
    "FAULT_KINDS",
    "FILES_PATH",
    "GOFS31_FIRST_RUN",
    "GOFS31_LAST_RUN",
    "GOFS31_SSH_STANDIN",
    "GOFS31_STANDIN",
    "HYCOM_RUN_PATH",
    "HYCOM_TAUS",
    "NCSS_MAX_VALUES",
    "NCSS_PATH",
    "NETCDF_TYPE",
    "OISST_DAP_PATH",
    "OISST_FINAL_AFTER_DAYS",
    "OISST_FIRST_DAY",
    "OISST_PATH",
    "FaultPlan",
    "RequestRecord",
    "Route",
    "ServerCore",
    "StandInProduct",
    "StandInServer",
    "main",
    "route",
]
