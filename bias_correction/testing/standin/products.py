"""The HYCOM forecast collections the stand-in serves (GOFS 3.1 and ESPC-D-V02, temperature and ssh)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

GOFS31_FIRST_RUN = date(2018, 12, 4)
GOFS31_LAST_RUN = date(2024, 9, 4)
HYCOM_TAUS = np.arange(0.0, 181.0, 3.0)


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
