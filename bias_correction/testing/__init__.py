"""Offline stand-ins of the upstream world: a synthetic ocean, exact-format file writers, a fault-injecting server.

Why: every part of sstbc can be tested end to end, deterministically and without the network.
"""

from __future__ import annotations

from bias_correction.testing.formats import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_DEPTHS,
    OISST_LAT,
    OISST_LON,
    glby_lat,
    glby_lon,
    hycom_hours,
    oisst_filename,
    oisst_time_value,
    write_hycom_ncss,
    write_hycom_ssh_ncss,
    write_oisst,
)
from bias_correction.testing.standin.app import StandInServer
from bias_correction.testing.standin.faults import FAULT_KINDS, FaultPlan
from bias_correction.testing.standin.server import RequestRecord
from bias_correction.testing.twin import Twin, TwinConfig

__all__ = [
    "FAULT_KINDS",
    "GLBY_NLAT",
    "GLBY_NLON",
    "HYCOM_DEPTHS",
    "OISST_LAT",
    "OISST_LON",
    "FaultPlan",
    "RequestRecord",
    "StandInServer",
    "Twin",
    "TwinConfig",
    "glby_lat",
    "glby_lon",
    "hycom_hours",
    "oisst_filename",
    "oisst_time_value",
    "write_hycom_ncss",
    "write_hycom_ssh_ncss",
    "write_oisst",
]
