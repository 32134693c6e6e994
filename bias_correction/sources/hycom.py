"""HYCOM forecast runs: GOFS 3.1 (GLBy0.08/expt_93.0) and ESPC-D-V02, three access modes.

The product is chosen from the run date (:func:`product_for`): GOFS 3.1 for runs 2018-12-04 ..
2024-09-04, ESPC-D-V02 after (GOFS wins the short overlap). The access mode (``Upstream.hycom_access``):

* ``ncss`` (default): one THREDDS NetCDF Subset Service request per 12Z run: ``water_temp`` at the
  surface level (``vertCoord=0``), the region plus a margin, every 3-hourly lead of the run::

    {ncss}/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{YYYY-MM-DD}T12:00:00Z
        ?var=water_temp&north=..&south=..&west=..&east=..&horizStride=1
        &time_start=..&time_end=..&timeStride=1&vertCoord=0&addLatLon=true&accept=netcdf4

* ``opendap``: the FMRC run dataset through DAP2 (:mod:`bias_correction.sources.opendap`), only the
  surface hyperslab of the region.
* ``files``: whole NetCDF-3 forecast files (one per tau) from the data server, read by HTTP Range
  requests (:mod:`bias_correction.sources.hycom_files`).

Every mode leaves the same thing in the raw cache: a validated file in the NCSS layout (dims
time, depth, lat, lon; ``water_temp`` int16 packed; ``time`` in hours since 2000-01-01; ``tau``),
with a ledger, so :meth:`HycomSource.daily_means` is the same for all of them.

Files are packed int16 (scale 0.001, offset 20, fill -30000) in °C. ``tau`` carries the units
"hours since analysis", which xarray cannot decode, so times are decoded by hand from
``time`` ("hours since 2000-01-01 00:00:00"). Longitudes come back 0..360 or -180..180 depending
on the request; they are re-expressed in the region's convention.

The SST proxy is ``water_temp`` at 0 m, a 3-hourly instantaneous value. OISST is a daily mean,
so lead day ``k`` of run R is the mean of the eight 3-hourly values of UTC day ``R + k``
(tau = 24k-12 .. 24k+9): that removes the diurnal mismatch.

Sea-surface elevation ``surf_el`` (metres; ``short surf_el(time, lat, lon)``, scale 0.001, offset 0,
fill -30000; data_formats.md 2.4) comes the same three ways, selected by ``variable="surf_el"``
(:data:`VARIABLES`):

* GOFS 3.1: the same FMRC run dataset (it holds every variable: ``var=surf_el`` works on it as on the
  best-time-series FMRC [VERIFIED-SRC: LiveOcean requests ``?var=surf_el`` from
  ``GLBy0.08/expt_93.0/FMRC/...``]); the ``expt_93.0/ssh`` aggregation is a best *analysis* time series
  without forecast runs, so it is not used. Whole files ``hycom_glby_930_{YYYYMMDD}12_t{HHH}_ssh.nc``.
* ESPC-D-V02: the per-variable ``FMRC_ESPC-D-V02_ssh`` run (NCSS path [INFERRED] as for ``t3z``) and files
  ``..._t{HHHH}_ssh.nc``. ESPC ``ssh`` is hourly; only the 3-hourly steps are requested (NCSS
  ``timeStride=3``, a DAP stride of 3, every third file), so the cached file and the daily means are
  exactly those of the 3-hourly products.

The cached file then has ``surf_el(time, lat, lon)`` (no depth) and its own cache key; daily means are
in metres.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import netCDF4
import numpy as np
import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import ConfigError, InputValidationError
from bias_correction.grid.lonlat import subset_box, wrap_lon
from bias_correction.io.netcdf import NETCDF_LOCK, read_dataset
from bias_correction.sources.http import Fetched, cached, fetch
from bias_correction.sources.validate import check_physical_values, open_for_validation
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)

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
ACCESS_MODES = ("ncss", "opendap", "files")


def product_for(run: dt.datetime) -> HycomProduct:
    """The forecast system of a run, by date: GOFS 3.1 up to 2024-09-04, ESPC-D-V02 after."""
    for product in PRODUCTS:
        if product.covers(run.date()):
            return product
    raise ConfigError(
        f"HYCOM run {run:%Y-%m-%d}: no supported forecast system covers it "
        f"(GOFS 3.1 runs {GOFS31.first_run}..{GOFS31.last_run}, ESPC-D-V02 runs from {ESPC_D_V02.first_run})"
    )


def run_time(day: dt.date) -> dt.datetime:
    """The 12Z run of ``day``."""
    return dt.datetime(day.year, day.month, day.day, 12)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class HycomSource:
    """Fetches, validates and opens one HYCOM forecast run for a region."""

    ncss_base: str
    store: Store
    http: Http
    region: Region
    lead_days: int = 7
    margin: float = 0.25
    #: NCSS output format: "netcdf4" (default) or "netcdf" (NetCDF-3 64-bit offset).
    accept: str = "netcdf4"
    #: "ncss" (default), "opendap" (FMRC run through DAP2) or "files" (whole files, Range requests).
    access: str = "ncss"
    #: THREDDS OPeNDAP base (``.../thredds/dodsC``); required for access "opendap".
    opendap_base: str | None = None
    #: Root of the HYCOM file tree (``.../datasets``); required for access "files".
    files_base: str | None = None

    def __post_init__(self) -> None:
        if self.access not in ACCESS_MODES:
            raise ConfigError(f"HYCOM access mode {self.access!r} is not one of {ACCESS_MODES}")
        if self.access == "opendap" and not self.opendap_base:
            raise ConfigError("HYCOM access 'opendap' needs upstream.hycom_opendap (the .../thredds/dodsC base)")
        if self.access == "files" and not self.files_base:
            raise ConfigError("HYCOM access 'files' needs upstream.hycom_files (the .../datasets base)")

    def bbox(self) -> tuple[float, float, float, float]:
        """(south, north, west, east) of region + margin, as requested (west/east in the region's convention)."""
        b = self._bbox()
        return float(b["south"]), float(b["north"]), float(b["west"]), float(b["east"])

    def _bbox(self) -> dict[str, str]:
        r, m = self.region, self.margin
        return {
            "north": f"{min(90.0, r.lat_max + m):.2f}",
            "south": f"{max(-80.0, r.lat_min - m):.2f}",
            "west": f"{r.lon_min - m:.2f}",
            "east": f"{r.lon_max + m:.2f}",
        }

    def max_tau(self) -> int:
        """Last lead hour needed: the end of the last corrected valid day."""
        return 24 * self.lead_days + 9

    def url(self, run: dt.datetime, variable: str = "water_temp") -> str:
        """The NCSS request of the run's ``variable`` (water_temp: the 0 m level; surf_el: 2-D), every 3 h."""
        spec = hycom_variable(variable)
        product = product_for(run)
        if self.max_tau() > product.max_tau:
            raise ConfigError(f"lead_days={self.lead_days} needs tau {self.max_tau()} h, {product.name} stops at {product.max_tau} h")
        query = {
            "var": variable,
            **self._bbox(),
            "horizStride": "1",
            "time_start": _iso(run),
            "time_end": _iso(run + dt.timedelta(hours=product.max_tau)),
            "timeStride": str(max(1, STEP_HOURS // product.step_hours(variable))),
            "vertCoord": "0",
            "addLatLon": "true",
            "accept": self.accept,
        }
        if not spec.has_depth:
            del query["vertCoord"]
        return product.run_url(self.ncss_base, run, query, variable)

    def check_lead(self, product: HycomProduct) -> None:
        if self.max_tau() > product.max_tau:
            raise ConfigError(f"lead_days={self.lead_days} needs tau {self.max_tau()} h, {product.name} stops at {product.max_tau} h")

    def raw_key(self, run: dt.datetime, variable: str = "water_temp") -> str:
        """Cache key of the run's file; the access mode and the variable are part of it (same layout, different
        provenance; ``water_temp_0m_...`` or ``surf_el_...``)."""
        b = self._bbox()
        box = f"{b['south']}_{b['north']}_{b['west']}_{b['east']}".replace("-", "m")
        if self.access == "ncss":
            suffix = "" if self.accept == "netcdf4" else f"_{self.accept}"
        else:
            suffix = f"_{self.access}"
        try:
            folder = product_for(run).cache_dir
        except ConfigError:
            folder = GOFS31.cache_dir
        stem = "water_temp_0m" if hycom_variable(variable).has_depth else variable
        return f"raw/hycom/{folder}/{run:%Y%m%d%H}/{stem}_{box}{suffix}.nc"

    def cached(self, run: dt.datetime, variable: str = "water_temp") -> Fetched | None:
        return cached(self.store, self.raw_key(run, variable))

    def fetch(self, run: dt.datetime, variable: str = "water_temp") -> Fetched:
        """The run's ``variable`` ("water_temp" or "surf_el") file in the raw cache (fetched through the
        configured access mode if absent)."""
        hycom_variable(variable)
        if self.access == "opendap":
            from bias_correction.sources.opendap import fetch_hycom_run

            return fetch_hycom_run(self, run, variable)
        if self.access == "files":
            from bias_correction.sources.hycom_files import fetch_hycom_run_files

            return fetch_hycom_run_files(self, run, variable)
        return fetch(
            self.url(run, variable), self.store, self.raw_key(run, variable), http=self.http,
            what=describe_run(run, variable), version="forecast",
            validate=lambda p, label: validate_hycom_file(p, run, self.max_tau(), label, variable=variable),
        )

    def open_surface(self, fetched: Fetched, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
        """3-hourly surface field (time, lat, lon): temperature in °C or surf_el in m, region + margin,
        region lon convention."""
        with self.store.local_path(fetched.key) as path:
            da = read_surface_field(path, run, variable)
        r = self.region
        return subset_box(da, r.lat_min, r.lat_max, r.lon_min, r.lon_max, self.margin + 0.01)

    def daily_means(self, fetched: Fetched, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
        """Daily means for lead days 1..lead_days: dims (lead, lat, lon); °C for water_temp (surface),
        metres for surf_el."""
        spec = hycom_variable(variable)
        return daily_means(self.open_surface(fetched, run, variable), run, self.lead_days, units=spec.units)


def read_surface_field(path: Path, run: dt.datetime, variable: str = "water_temp") -> xr.DataArray:
    """``variable`` at the surface (water_temp: depth 0, °C; surf_el: m) as (time, lat, lon) float32 with
    decoded valid times."""
    spec = hycom_variable(variable)
    # decode_times=False: ``tau`` has units "hours since analysis", which no decoder understands.
    ds = read_dataset(path, decode_times=False, mask_and_scale=True)
    if variable not in ds.data_vars:
        raise InputValidationError(f"{describe_run(run, variable)} file {path.name}: no variable {variable} "
                                   f"(has {sorted(ds.data_vars)})")
    wt = ds[variable]
    surface = wt.isel(depth=0, drop=True) if "depth" in wt.dims else wt
    hours = ds["time"].values.astype("float64")
    out = surface.astype("float32")
    times = np.datetime64(HYCOM_EPOCH, "s") + (hours * 3600).round().astype("timedelta64[s]")
    out = out.assign_coords(time=times, lon=wrap_lon(out["lon"].values, -180.0))
    out.attrs = {"units": spec.units, "source_file": path.name, "run": run.isoformat()}
    return out


def read_surface_temperature(path: Path, run: dt.datetime) -> xr.DataArray:
    """water_temp at depth 0 as (time, lat, lon) float32 °C with decoded valid times."""
    return read_surface_field(path, run, "water_temp")


def validate_hycom_file(path: Path, run: dt.datetime, max_tau: int, what: str | None = None,
                        first_tau: int = 0, variable: str = "water_temp") -> None:
    """Check variables, dims, run/valid times and values of a HYCOM subset; raise InputValidationError.

    Lead hours ``first_tau .. max_tau`` every 3 h must all be present. ``variable`` "water_temp" is
    checked at 0 m (dims time, depth, lat, lon); "surf_el" has dims (time, lat, lon), units m, values
    within :data:`SURF_EL_VALID_RANGE_M`, and only 3-hourly steps (an hourly product must be strided).
    """
    spec = hycom_variable(variable)
    what = what or f"{describe_run(run, variable)} file {path.name}"
    ds = open_for_validation(path, what, decode_times=False)
    if variable not in ds.variables:
        raise InputValidationError(f"{what}: no variable {variable} (has {sorted(ds.data_vars)})")
    wt = ds[variable]
    if spec.has_depth:
        if wt.dims != ("time", "depth", "lat", "lon"):
            raise InputValidationError(f"{what}: {variable} dims {wt.dims}, expected (time, depth, lat, lon)")
        if float(ds["depth"].values[0]) != 0.0:
            raise InputValidationError(f"{what}: first depth is {float(ds['depth'].values[0])} m, expected 0 m")
    elif wt.dims != ("time", "lat", "lon"):
        raise InputValidationError(f"{what}: {variable} dims {wt.dims}, expected (time, lat, lon)")
    units = ds["time"].attrs.get("units", "")
    if not units.startswith("hours since 2000-01-01"):
        raise InputValidationError(f"{what}: time units {units!r}, expected 'hours since 2000-01-01 00:00:00'")
    if "tau" in ds.variables:
        origin = str(ds["tau"].attrs.get("time_origin", ""))
        if origin and origin[:13] != f"{run:%Y-%m-%d %H}":
            raise InputValidationError(f"{what}: tau time_origin {origin!r}, expected run {run:%Y-%m-%d %H}:00:00")
    hours = ds["time"].values.astype("float64")
    run_h = (run - HYCOM_EPOCH).total_seconds() / 3600
    taus = hours - run_h
    need = np.arange(first_tau, max_tau + 1, STEP_HOURS)
    missing = sorted(set(need.tolist()) - set(np.round(taus).astype(int).tolist()))
    if missing:
        raise InputValidationError(f"{what}: lead hours {missing[:5]}{'...' if len(missing) > 5 else ''} missing (need {first_tau}..{max_tau} every {STEP_HOURS} h)")
    if not spec.has_depth:
        off_grid = sorted(set(np.round(taus[np.abs(np.mod(taus, STEP_HOURS)) > 1e-6], 3).tolist()))
        if off_grid:
            raise InputValidationError(f"{what}: {variable} has lead hours {off_grid[:5]} off the {STEP_HOURS}-hourly "
                                       "steps (an hourly product must be requested with a stride of 3)")
    if wt.attrs.get("units", spec.units) not in spec.unit_aliases:
        raise InputValidationError(f"{what}: {variable} units {wt.attrs.get('units')!r}, expected {spec.units}")
    values = wt.isel(depth=0).values if spec.has_depth else wt.values
    check_physical_values(values, what, spec.label, spec.valid_range, spec.symbol)


def daily_means(sst: xr.DataArray, run: dt.datetime, lead_days: int, units: str = "degC") -> xr.DataArray:
    """Mean of the 8 three-hourly values of each valid UTC day run+1 .. run+lead_days (``units``: of the field)."""
    fields, valid = [], []
    day0 = np.datetime64(run.date(), "D")
    times = sst["time"].values
    for k in range(1, lead_days + 1):
        start = day0 + np.timedelta64(k, "D")
        sel = (times >= start) & (times < start + np.timedelta64(1, "D"))
        n = int(sel.sum())
        if n != 24 // STEP_HOURS:
            raise InputValidationError(
                f"HYCOM run {run:%Y-%m-%d %HZ}: valid day {start} has {n} three-hourly fields, expected {24 // STEP_HOURS}"
            )
        fields.append(sst.isel(time=np.flatnonzero(sel)).mean("time", skipna=False))
        valid.append(start)
    out = xr.concat(fields, dim="lead").assign_coords(
        lead=np.arange(1, lead_days + 1), valid_date=("lead", np.array(valid, dtype="datetime64[ns]"))
    )
    out.attrs = {"units": units, "cell_methods": "time: mean (3-hourly instantaneous, UTC day)"}
    return out.astype("float32")


# ------------------------------------------------------------------------------------------ assembled files
def lon_runs(lon: np.ndarray, west: float, east: float, eps: float = 1e-4) -> list[np.ndarray]:
    """Column index runs (contiguous in the source) covering [west, east] in the region's convention.

    ``lon`` is the source's longitude axis in either convention (0..360 or -180..180); the box may
    cross 0 or 180 in either. Each run is a contiguous ascending index range; the runs come in the
    order of ascending longitude re-expressed from ``west`` (one run, or two when the box crosses
    the seam of the source's convention).
    """
    wrapped = wrap_lon(lon, west - eps)
    sel = np.flatnonzero(wrapped <= east + eps)
    if sel.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sel) != 1) + 1
    runs = np.split(sel, breaks)
    return sorted(runs, key=lambda r: float(wrapped[r[0]]))


def lat_rows(lat: np.ndarray, south: float, north: float, eps: float = 1e-4) -> np.ndarray:
    """Row indices (one contiguous ascending range) with south <= lat <= north."""
    rows = np.flatnonzero((lat >= south - eps) & (lat <= north + eps))
    if rows.size and not np.all(np.diff(rows) == 1):
        raise InputValidationError("latitude axis is not monotonic")
    return rows


def write_run_file(path: Path, run: dt.datetime, hours: np.ndarray, taus: np.ndarray, lat: np.ndarray,
                   lon: np.ndarray, packed: np.ndarray, attrs: dict[str, object], source: str,
                   variable: str = "water_temp") -> None:
    """Write a run subset in the NCSS layout the reader expects (NetCDF-4, deflate).

    ``packed`` is raw int16 ``variable`` (time, lat, lon) (water_temp: at 0 m, stored with a depth axis of
    one level; surf_el: no depth axis) with the packing in ``attrs`` (scale_factor, add_offset,
    _FillValue, missing_value, units, ...: copied from the source).
    """
    has_depth = hycom_variable(variable).has_depth
    packed = np.asarray(packed, dtype=np.int16)
    with NETCDF_LOCK:
        ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        try:
            ds.createDimension("time", None)
            if has_depth:
                ds.createDimension("depth", 1)
            ds.createDimension("lat", len(lat))
            ds.createDimension("lon", len(lon))
            specs = {
                "time": (("time",), {"long_name": "Valid Time", "units": "hours since 2000-01-01 00:00:00",
                                     "time_origin": "2000-01-01 00:00:00", "calendar": "gregorian", "axis": "T"}),
                "tau": (("time",), {"long_name": "Tau", "units": "hours since analysis",
                                    "time_origin": f"{run:%Y-%m-%d %H:%M:%S}"}),
                "depth": (("depth",), {"long_name": "Depth", "standard_name": "depth", "units": "m",
                                       "positive": "down", "axis": "Z"}),
                "lat": (("lat",), {"long_name": "Latitude", "standard_name": "latitude",
                                   "units": "degrees_north", "axis": "Y"}),
                "lon": (("lon",), {"long_name": "Longitude", "standard_name": "longitude",
                                   "units": "degrees_east", "axis": "X"}),
            }
            if not has_depth:
                del specs["depth"]
            values = {"time": hours, "tau": taus, "depth": np.zeros(1), "lat": lat, "lon": lon}
            for name, (dims, vattrs) in specs.items():
                var = ds.createVariable(name, "f8", dims)
                var.setncatts(vattrs)
                var[:] = np.asarray(values[name], dtype=np.float64)
            fill = attrs.get("_FillValue", np.int16(-30000))
            vdims = ("time", "depth", "lat", "lon") if has_depth else ("time", "lat", "lon")
            wt = ds.createVariable(variable, "i2", vdims, zlib=True, complevel=4,
                                   shuffle=True, fill_value=np.int16(fill))  # type: ignore[arg-type]
            wt.set_auto_maskandscale(False)
            for key, value in attrs.items():
                if key != "_FillValue":
                    wt.setncattr(key, value)
            wt[:] = packed[:, None, :, :] if has_depth else packed
            ds.setncattr("source", source)
            ds.setncattr("history", f"assembled by sstbc from {source}")
        finally:
            ds.close()
