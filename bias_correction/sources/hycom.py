"""HYCOM forecast runs (GOFS 3.1 GLBy0.08/expt_93.0) through the THREDDS NetCDF Subset Service.

One request per 12Z run: variable ``water_temp`` at the surface level (``vertCoord=0``), the
region plus a margin, every 3-hourly lead of the run (tau 0..180 h)::

    {ncss}/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{YYYY-MM-DD}T12:00:00Z
        ?var=water_temp&north=..&south=..&west=..&east=..&horizStride=1
        &time_start=..&time_end=..&timeStride=1&vertCoord=0&addLatLon=true&accept=netcdf4

Files are packed int16 (scale 0.001, offset 20, fill -30000) in °C. ``tau`` carries the units
"hours since analysis", which xarray cannot decode, so times are decoded by hand from
``time`` ("hours since 2000-01-01 00:00:00"). Longitudes come back 0..360 or -180..180 depending
on the request; they are re-expressed in the region's convention.

The SST proxy is ``water_temp`` at 0 m, a 3-hourly instantaneous value. OISST is a daily mean,
so lead day ``k`` of run R is the mean of the eight 3-hourly values of UTC day ``R + k``
(tau = 24k-12 .. 24k+9): that removes the diurnal mismatch.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import xarray as xr

from bias_correction.config import Http, Region
from bias_correction.errors import ConfigError, InputValidationError
from bias_correction.grid.lonlat import subset_box, wrap_lon
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.http import Fetched, cached, fetch
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)

HYCOM_EPOCH = dt.datetime(2000, 1, 1)
SST_VALID_RANGE_C = (-3.0, 40.0)
STEP_HOURS = 3


@dataclass(frozen=True)
class HycomProduct:
    """One HYCOM forecast system: where its runs live and how long they are."""

    name: str
    first_run: dt.date
    last_run: dt.date
    max_tau: int
    ncss_run_path: str  # relative to the NCSS base, formatted with run=datetime

    def run_url(self, ncss_base: str, run: dt.datetime, query: dict[str, str]) -> str:
        return f"{ncss_base}/{self.ncss_run_path.format(run=run)}?{urlencode(query, safe=':')}"


GOFS31 = HycomProduct(
    name="GOFS 3.1 GLBy0.08/expt_93.0",
    first_run=dt.date(2018, 12, 4),
    last_run=dt.date(2024, 9, 4),
    max_tau=180,
    ncss_run_path="GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{run:%Y-%m-%d}T12:00:00Z",
)
PRODUCTS = (GOFS31,)


def product_for(run: dt.datetime) -> HycomProduct:
    for product in PRODUCTS:
        if product.first_run <= run.date() <= product.last_run:
            return product
    raise ConfigError(
        f"HYCOM run {run:%Y-%m-%d}: no supported forecast system covers it "
        f"(GOFS 3.1 runs {GOFS31.first_run}..{GOFS31.last_run}; ESPC-D-V02 is not wired yet)"
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

    def url(self, run: dt.datetime) -> str:
        product = product_for(run)
        if self.max_tau() > product.max_tau:
            raise ConfigError(f"lead_days={self.lead_days} needs tau {self.max_tau()} h, {product.name} stops at {product.max_tau} h")
        query = {
            "var": "water_temp",
            **self._bbox(),
            "horizStride": "1",
            "time_start": _iso(run),
            "time_end": _iso(run + dt.timedelta(hours=product.max_tau)),
            "timeStride": "1",
            "vertCoord": "0",
            "addLatLon": "true",
            "accept": self.accept,
        }
        return product.run_url(self.ncss_base, run, query)

    def raw_key(self, run: dt.datetime) -> str:
        b = self._bbox()
        box = f"{b['south']}_{b['north']}_{b['west']}_{b['east']}".replace("-", "m")
        suffix = "" if self.accept == "netcdf4" else f"_{self.accept}"
        return f"raw/hycom/GLBy0.08/expt_93.0/{run:%Y%m%d%H}/water_temp_0m_{box}{suffix}.nc"

    def cached(self, run: dt.datetime) -> Fetched | None:
        return cached(self.store, self.raw_key(run))

    def fetch(self, run: dt.datetime) -> Fetched:
        return fetch(
            self.url(run), self.store, self.raw_key(run), http=self.http,
            what=f"HYCOM run {run:%Y-%m-%d %HZ}", version="forecast",
            validate=lambda p, label: validate_hycom_file(p, run, self.max_tau(), label),
        )

    def open_surface(self, fetched: Fetched, run: dt.datetime) -> xr.DataArray:
        """3-hourly surface temperature (time, lat, lon) in °C, region + margin, region lon convention."""
        with self.store.local_path(fetched.key) as path:
            da = read_surface_temperature(path, run)
        r = self.region
        return subset_box(da, r.lat_min, r.lat_max, r.lon_min, r.lon_max, self.margin + 0.01)

    def daily_means(self, fetched: Fetched, run: dt.datetime) -> xr.DataArray:
        """Daily-mean surface temperature for lead days 1..lead_days: dims (lead, lat, lon), °C."""
        return daily_means(self.open_surface(fetched, run), run, self.lead_days)


def read_surface_temperature(path: Path, run: dt.datetime) -> xr.DataArray:
    """water_temp at depth 0 as (time, lat, lon) float32 °C with decoded valid times."""
    # decode_times=False: ``tau`` has units "hours since analysis", which no decoder understands.
    ds = read_dataset(path, decode_times=False, mask_and_scale=True)
    wt = ds["water_temp"]
    surface = wt.isel(depth=0, drop=True) if "depth" in wt.dims else wt
    hours = ds["time"].values.astype("float64")
    out = surface.astype("float32")
    times = np.datetime64(HYCOM_EPOCH, "s") + (hours * 3600).round().astype("timedelta64[s]")
    out = out.assign_coords(time=times, lon=wrap_lon(out["lon"].values, -180.0))
    out.attrs = {"units": "degC", "source_file": path.name, "run": run.isoformat()}
    return out


def validate_hycom_file(path: Path, run: dt.datetime, max_tau: int, what: str | None = None) -> None:
    """Check variables, dims, run/valid times and values of a HYCOM subset; raise InputValidationError."""
    what = what or f"HYCOM run {run:%Y-%m-%d %HZ} file {path.name}"
    try:
        ds = read_dataset(path, decode_times=False, mask_and_scale=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputValidationError(f"{what} does not open as NetCDF: {exc}") from None
    if "water_temp" not in ds.variables:
        raise InputValidationError(f"{what}: no variable water_temp (has {sorted(ds.data_vars)})")
    wt = ds["water_temp"]
    if wt.dims != ("time", "depth", "lat", "lon"):
        raise InputValidationError(f"{what}: water_temp dims {wt.dims}, expected (time, depth, lat, lon)")
    if float(ds["depth"].values[0]) != 0.0:
        raise InputValidationError(f"{what}: first depth is {float(ds['depth'].values[0])} m, expected 0 m")
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
    need = np.arange(0, max_tau + 1, STEP_HOURS)
    missing = sorted(set(need.tolist()) - set(np.round(taus).astype(int).tolist()))
    if missing:
        raise InputValidationError(f"{what}: lead hours {missing[:5]}{'...' if len(missing) > 5 else ''} missing (need 0..{max_tau} every {STEP_HOURS} h)")
    if wt.attrs.get("units", "degC") not in ("degC", "Celsius", "degree_Celsius"):
        raise InputValidationError(f"{what}: water_temp units {wt.attrs.get('units')!r}, expected degC")
    values = wt.isel(depth=0).values
    finite = np.isfinite(values)
    if not finite.any():
        raise InputValidationError(f"{what}: water_temp at 0 m has no valid value (all land or fill)")
    vals = values[finite]
    lo, hi = float(vals.min()), float(vals.max())
    if lo < SST_VALID_RANGE_C[0] or hi > SST_VALID_RANGE_C[1]:
        raise InputValidationError(f"{what}: water_temp range {lo:.2f}..{hi:.2f} °C outside {SST_VALID_RANGE_C}")
    if float(np.abs(vals).max()) == 0.0:
        raise InputValidationError(f"{what}: water_temp is zero everywhere")


def daily_means(sst: xr.DataArray, run: dt.datetime, lead_days: int) -> xr.DataArray:
    """Mean of the 8 three-hourly values of each valid UTC day run+1 .. run+lead_days."""
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
    out.attrs = {"units": "degC", "cell_methods": "time: mean (3-hourly instantaneous, UTC day)"}
    return out.astype("float32")
