"""The regridded archive: one small NetCDF per OISST day and per HYCOM run, on the product grid.

Training pairs, the daily correction and verification all read from here, so each raw file is
opened and regridded once. Each archive file records the raw file it came from (URL, sha256,
preliminary/final), which is what lets derived data be traced back and refreshed.

HYCOM runs are archived per variable (:data:`HYCOM_VARIABLES`, one per declared HYCOM input): ``sst``
(daily-mean ``water_temp`` at 0 m, °C) under ``archive/{grid}/hycom/``, any other variable ``v`` (e.g.
sea-surface elevation, m) under the sibling folder ``archive/{grid}/hycom_{v}/``. The field inside
has the archive variable's name.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bias_correction.errors import ConfigError, InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.inputs import HYCOM_FIELDS
from bias_correction.io.netcdf import read_dataset, write_dataset
from bias_correction.sources.http import Fetched
from bias_correction.storage import Store

ENCODING = {"zlib": True, "complevel": 1, "shuffle": True, "dtype": "float32"}


@dataclass(frozen=True)
class ArchiveEntry:
    key: str
    source: dict[str, object]  # ledger of the raw file (url, sha256, version, ...)
    written: bool  # True when this call wrote the file


def oisst_key(grid: RegularGrid, day: dt.date) -> str:
    return f"archive/{grid.grid_id}/oisst/{day:%Y}/oisst_{day:%Y%m%d}.nc"


@dataclass(frozen=True)
class HycomArchiveVariable:
    """An archived HYCOM field: its name in the archive, the HYCOM variable it comes from, units, long_name."""

    name: str
    source_variable: str
    units: str
    long_name: str


#: Archived HYCOM fields by archive name, one per declared HYCOM input (``bias_correction.inputs``).
HYCOM_VARIABLES: dict[str, HycomArchiveVariable] = {
    name: HycomArchiveVariable(name, spec.native, spec.units, f"{spec.description}, regridded")
    for name, spec in HYCOM_FIELDS.items()
}


def hycom_archive_variable(variable: str) -> HycomArchiveVariable:
    """The archived HYCOM field called ``variable`` (:data:`HYCOM_VARIABLES`); ConfigError for anything else."""
    try:
        return HYCOM_VARIABLES[variable]
    except KeyError:
        raise ConfigError(f"HYCOM archive variable {variable!r} is not one of {sorted(HYCOM_VARIABLES)}") from None


def hycom_key(grid: RegularGrid, run: dt.datetime, variable: str = "sst") -> str:
    """Archive key of a run's daily-mean field: ``sst`` as always, other variables in a sibling folder."""
    hycom_archive_variable(variable)
    if variable == "sst":
        return f"archive/{grid.grid_id}/hycom/{run:%Y}/hycom_{run:%Y%m%dT%H}Z.nc"
    return f"archive/{grid.grid_id}/hycom_{variable}/{run:%Y}/hycom_{variable}_{run:%Y%m%dT%H}Z.nc"


def _source_attrs(fetched: Fetched) -> dict[str, str]:
    return {"source_url": fetched.url, "source_sha256": fetched.sha256, "source_version": fetched.version,
            "source_ledger": fetched.ledger_json()}


def write_oisst(store: Store, grid: RegularGrid, day: dt.date, sst: np.ndarray, fetched: Fetched) -> ArchiveEntry:
    key = oisst_key(grid, day)
    ds = xr.Dataset(
        {"sst": (("lat", "lon"), sst.astype(np.float32), {"units": "degC", "long_name": "OISST v2.1 daily mean SST, regridded"})},
        coords={"lat": grid.lat, "lon": grid.lon},
        attrs={"date": day.isoformat(), "grid_id": grid.grid_id, **_source_attrs(fetched)},
    )
    _write(store, key, ds)
    return ArchiveEntry(key, json.loads(fetched.ledger_json()), True)


def write_hycom(store: Store, grid: RegularGrid, run: dt.datetime, daily: xr.DataArray, fetched: Fetched,
                variable: str = "sst") -> ArchiveEntry:
    """Archive a run's regridded daily means (lead, lat, lon) as ``variable`` (units from :data:`HYCOM_VARIABLES`)."""
    spec = hycom_archive_variable(variable)
    units = daily.attrs.get("units")
    if units is not None and units != spec.units:
        raise InputValidationError(f"HYCOM run {run:%Y-%m-%d %HZ}: archiving {variable} needs {spec.units}, "
                                   f"the daily means are in {units!r}")
    key = hycom_key(grid, run, variable)
    ds = xr.Dataset(
        {spec.name: (("lead", "lat", "lon"), daily.values.astype(np.float32),
                     {"units": spec.units, "long_name": spec.long_name})},
        coords={"lead": daily["lead"].values, "valid_date": ("lead", daily["valid_date"].values),
                "lat": grid.lat, "lon": grid.lon},
        attrs={"run": run.isoformat(), "grid_id": grid.grid_id, **_source_attrs(fetched)},
    )
    _write(store, key, ds)
    return ArchiveEntry(key, json.loads(fetched.ledger_json()), True)


def _write(store: Store, key: str, ds: xr.Dataset) -> None:
    enc = {v: dict(ENCODING) for v in ds.data_vars}
    with store.staged(key) as tmp:
        write_dataset(ds, tmp, engine="netcdf4", encoding=enc)


def existing(store: Store, key: str) -> ArchiveEntry | None:
    """The archive entry at ``key`` if present (no re-processing needed)."""
    if not store.exists(key):
        return None
    with store.local_path(key) as path:
        ledger = json.loads(read_dataset(path, engine="netcdf4").attrs["source_ledger"])
    return ArchiveEntry(key, ledger, False)


def read_field(store: Store, key: str) -> xr.DataArray:
    """The field of an archive file (``sst`` of OISST days and HYCOM runs, or another archived HYCOM variable)."""
    with store.local_path(key) as path:
        ds = read_dataset(path, engine="netcdf4")
    names = list(ds.data_vars)
    if "sst" in names:
        name = "sst"
    elif len(names) == 1:
        name = names[0]
    else:
        raise InputValidationError(f"archive file {key}: no single field to read (has {names})")
    da = ds[name]
    da.attrs.update({k: v for k, v in ds.attrs.items() if k.startswith("source_")})
    return da


def load_hycom_runs(store: Store, grid: RegularGrid, runs: list[dt.datetime], variable: str = "sst") -> xr.DataArray:
    """Stack archived runs of ``variable`` into (run, lead, lat, lon); runs missing from the archive are skipped."""
    fields, times = [], []
    for run in runs:
        key = hycom_key(grid, run, variable)
        if store.exists(key):
            fields.append(read_field(store, key).drop_vars("valid_date"))
            times.append(np.datetime64(run, "ns"))
    if not fields:
        what = "HYCOM run" if variable == "sst" else f"HYCOM {variable} run"
        raise FileNotFoundError(f"no archived {what} among {runs[0]:%Y-%m-%d}..{runs[-1]:%Y-%m-%d} for grid {grid.grid_id}")
    return xr.concat(fields, dim="run").assign_coords(run=np.array(times))


def load_oisst_days(store: Store, grid: RegularGrid, days: list[dt.date]) -> tuple[xr.DataArray, dict[str, int]]:
    """Stack archived days into (time, lat, lon) (``attrs["versions"]`` per day) and count preliminary/final."""
    fields, times, versions = [], [], []
    for day in days:
        key = oisst_key(grid, day)
        if store.exists(key):
            da = read_field(store, key)
            versions.append(str(da.attrs.get("source_version", "final")))
            fields.append(da)
            times.append(np.datetime64(day, "ns"))
    if not fields:
        raise FileNotFoundError(f"no archived OISST day among {days[0]}..{days[-1]} for grid {grid.grid_id}")
    out = xr.concat(fields, dim="time").assign_coords(time=np.array(times))
    out.attrs["versions"] = versions  # preliminary/final per day, in time order
    return out, {"final": versions.count("final"), "preliminary": versions.count("preliminary")}
