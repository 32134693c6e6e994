"""HYCOM product tables: the forecast systems (GOFS 3.1, ESPC-D-V02), where their runs live per
access mode, and the lexicon of native variables sstbc fetches (``water_temp``, ``surf_el``).

Why one module: every access mode and the reader/validator look products and variables up here, so a
new product or variable is a table entry, not code in several places.

The product is chosen from the run date (:func:`product_for`): GOFS 3.1 for runs 2018-12-04 ..
2024-09-04, ESPC-D-V02 after (GOFS wins the short overlap). Sea-surface elevation ``surf_el``:

* GOFS 3.1: the same FMRC run dataset (it holds every variable: ``var=surf_el`` works on it as on the
  best-time-series FMRC [VERIFIED-SRC: LiveOcean requests ``?var=surf_el`` from
  ``GLBy0.08/expt_93.0/FMRC/...``]); the ``expt_93.0/ssh`` aggregation is a best *analysis* time series
  without forecast runs, so it is not used. Whole files ``hycom_glby_930_{YYYYMMDD}12_t{HHH}_ssh.nc``.
* ESPC-D-V02: the per-variable ``FMRC_ESPC-D-V02_ssh`` run (NCSS path [INFERRED] as for ``t3z``) and files
  ``..._t{HHHH}_ssh.nc``. ESPC ``ssh`` is hourly; only the 3-hourly steps are requested.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from bias_correction.config import Http
from bias_correction.errors import ConfigError, DateUnavailableError
from bias_correction.storage import Store

HYCOM_EPOCH = dt.datetime(2000, 1, 1)
SST_VALID_RANGE_C = (-3.0, 40.0)
#: Plausible HYCOM sea-surface elevation (m): the global dynamic topography spans about -2..+1.5 m.
SURF_EL_VALID_RANGE_M = (-3.0, 3.0)
STEP_HOURS = 3


@dataclass(frozen=True)
class HycomVariable:
    """A HYCOM field sstbc fetches: upstream name, units, plausible range, whether it has a depth axis."""

    name: str
    units: str
    #: units spellings accepted in files (a missing ``units`` attribute is accepted as ``units``)
    unit_aliases: tuple[str, ...]
    #: units as written in error messages
    symbol: str
    valid_range: tuple[float, float]
    has_depth: bool
    #: what error messages call the checked field
    label: str


WATER_TEMP = HycomVariable("water_temp", "degC", ("degC", "Celsius", "degree_Celsius"), "°C", SST_VALID_RANGE_C,
                           True, "water_temp at 0 m")
SURF_EL = HycomVariable("surf_el", "m", ("m", "meters", "meter", "metres", "metre"), "m", SURF_EL_VALID_RANGE_M,
                        False, "surf_el")
VARIABLES = {v.name: v for v in (WATER_TEMP, SURF_EL)}


def hycom_variable(name: str) -> HycomVariable:
    """The :class:`HycomVariable` called ``name``; ConfigError for anything else."""
    try:
        return VARIABLES[name]
    except KeyError:
        raise ConfigError(f"HYCOM variable {name!r} is not one of {sorted(VARIABLES)}") from None


def describe_run(run: dt.datetime, variable: str = "water_temp") -> str:
    """How errors name a run: "HYCOM run 2021-02-10 12Z" (plus the variable unless water_temp)."""
    text = f"HYCOM run {run:%Y-%m-%d %HZ}"
    return text if variable == "water_temp" else f"{text} {variable}"


@dataclass(frozen=True)
class HycomProduct:
    """One HYCOM forecast system: where its runs live (per access mode) and how long they are.

    Paths are relative to the mode's base URL and formatted with ``run`` (datetime) and, for
    files, ``tau`` (int hours).
    """

    name: str
    #: Short name used in raw cache keys ("GLBy0.08/expt_93.0", "ESPC-D-V02").
    cache_dir: str
    first_run: dt.date
    last_run: dt.date | None
    max_tau: int
    ncss_run_path: str
    opendap_run_path: str
    #: Whole forecast file (the ``water_temp`` one) under the file-tree base (``.../datasets``).
    file_path: str
    #: ``surf_el``: NCSS and OPeNDAP run datasets, whole ``ssh`` file, and its native time step (hours).
    ssh_ncss_run_path: str = ""
    ssh_opendap_run_path: str = ""
    ssh_file_path: str = ""
    ssh_step_hours: int = STEP_HOURS

    def _path(self, kind: str, variable: str) -> str:
        hycom_variable(variable)
        if variable == "water_temp":
            return {"ncss": self.ncss_run_path, "opendap": self.opendap_run_path, "file": self.file_path}[kind]
        path = {"ncss": self.ssh_ncss_run_path, "opendap": self.ssh_opendap_run_path, "file": self.ssh_file_path}[kind]
        if not path:
            raise ConfigError(f"{self.name}: no {kind} location for HYCOM variable {variable!r}")
        return path

    def step_hours(self, variable: str = "water_temp") -> int:
        """Native time step (h) of ``variable`` in this product's runs (ESPC-D-V02 surf_el is hourly)."""
        hycom_variable(variable)
        return STEP_HOURS if variable == "water_temp" else self.ssh_step_hours

    def run_url(self, ncss_base: str, run: dt.datetime, query: dict[str, str], variable: str = "water_temp") -> str:
        return f"{ncss_base}/{self._path('ncss', variable).format(run=run)}?{urlencode(query, safe=':')}"

    def opendap_url(self, opendap_base: str, run: dt.datetime, variable: str = "water_temp") -> str:
        return f"{opendap_base}/{self._path('opendap', variable).format(run=run)}"

    def file_url(self, files_base: str, run: dt.datetime, tau: int, variable: str = "water_temp") -> str:
        return f"{files_base}/{self._path('file', variable).format(run=run, tau=tau)}"

    def covers(self, day: dt.date) -> bool:
        return self.first_run <= day and (self.last_run is None or day <= self.last_run)


GOFS31 = HycomProduct(
    name="GOFS 3.1 GLBy0.08/expt_93.0",
    cache_dir="GLBy0.08/expt_93.0",
    first_run=dt.date(2018, 12, 4),
    last_run=dt.date(2024, 9, 4),
    max_tau=180,
    ncss_run_path="GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
    opendap_run_path="GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
    file_path="GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_{run:%Y%m%d}12_t{tau:03d}_ts3z.nc",
    # The GOFS 3.1 FMRC run holds every variable, surf_el included (module docstring).
    ssh_ncss_run_path="GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
    ssh_opendap_run_path="GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
    ssh_file_path="GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_{run:%Y%m%d}12_t{tau:03d}_ssh.nc",
    ssh_step_hours=3,
)
#: ESPC-D-V02: daily 12Z runs to t0192; 4-digit taus and ``t3z`` (water_temp only) files.
ESPC_D_V02 = HycomProduct(
    name="ESPC-D-V02",
    cache_dir="ESPC-D-V02",
    first_run=GOFS31.last_run + dt.timedelta(days=1),  # on THREDDS from 2024-08-10; GOFS wins the overlap
    last_run=None,
    max_tau=192,
    # [INFERRED] data_formats.md 3.2 lists the ESPC NCSS aggregation ESPC-D-V02/t3z/{YYYY} (a best time
    # series, not one forecast run) and the FMRC run only on OPeNDAP; NCSS is assumed to serve the same
    # FMRC run path as OPeNDAP does (as it does for GOFS 3.1). Check against the live service.
    ncss_run_path="FMRC_ESPC-D-V02_t3z/runs/FMRC_ESPC-D-V02_t3z_RUN_{run:%Y-%m-%d}T12:00:00Z",
    opendap_run_path="FMRC_ESPC-D-V02_t3z/runs/FMRC_ESPC-D-V02_t3z_RUN_{run:%Y-%m-%d}T12:00:00Z",
    file_path=("ESPC-D-V02/data/forecasts/US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_"
               "{run:%Y%m%d}12_t{tau:04d}_t3z.nc"),
    # Per-variable collection ``ssh`` (data_formats.md 3.2); NCSS run path [INFERRED] as for t3z. Hourly.
    ssh_ncss_run_path="FMRC_ESPC-D-V02_ssh/runs/FMRC_ESPC-D-V02_ssh_RUN_{run:%Y-%m-%d}T12:00:00Z",
    ssh_opendap_run_path="FMRC_ESPC-D-V02_ssh/runs/FMRC_ESPC-D-V02_ssh_RUN_{run:%Y-%m-%d}T12:00:00Z",
    ssh_file_path=("ESPC-D-V02/data/forecasts/US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_"
                   "{run:%Y%m%d}12_t{tau:04d}_ssh.nc"),
    ssh_step_hours=1,
)
PRODUCTS = (GOFS31, ESPC_D_V02)


def product_for(run: dt.datetime) -> HycomProduct:
    """The forecast system of a run, by date: GOFS 3.1 up to 2024-09-04, ESPC-D-V02 after."""
    for product in PRODUCTS:
        if product.covers(run.date()):
            return product
    raise DateUnavailableError(
        f"HYCOM run {run:%Y-%m-%d}: no supported forecast system covers it "
        f"(GOFS 3.1 runs {GOFS31.first_run}..{GOFS31.last_run}, ESPC-D-V02 runs from {ESPC_D_V02.first_run})"
    )


def run_time(day: dt.date) -> dt.datetime:
    """The 12Z run of ``day``."""
    return dt.datetime(day.year, day.month, day.day, 12)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class RunSource(Protocol):
    """What an access strategy may ask of the HYCOM source it fetches for."""

    store: Store
    http: Http
    accept: str
    opendap_base: str | None
    files_base: str | None

    def bbox(self) -> tuple[float, float, float, float]: ...

    def max_tau(self) -> int: ...

    def check_lead(self, product: HycomProduct) -> None: ...

    def url(self, run: dt.datetime, variable: str = "water_temp") -> str: ...

    def raw_key(self, run: dt.datetime, variable: str = "water_temp") -> str: ...
