"""The regridded archive: one small NetCDF per OISST day and per HYCOM run, on the product grid.

Training pairs, the daily correction and verification all read from here, so each raw file is
opened and regridded once. Each archive file records the raw file it came from (URL, sha256,
preliminary/final), which is what lets derived data be traced back and refreshed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bias_correction.grid.grids import RegularGrid
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


def hycom_key(grid: RegularGrid, run: dt.datetime) -> str:
    return f"archive/{grid.grid_id}/hycom/{run:%Y}/hycom_{run:%Y%m%dT%H}Z.nc"


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


def write_hycom(store: Store, grid: RegularGrid, run: dt.datetime, daily: xr.DataArray, fetched: Fetched) -> ArchiveEntry:
    key = hycom_key(grid, run)
    ds = xr.Dataset(
        {"sst": (("lead", "lat", "lon"), daily.values.astype(np.float32),
                 {"units": "degC", "long_name": "HYCOM daily-mean surface temperature forecast, regridded"})},
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
    with store.local_path(key) as path:
        ds = read_dataset(path, engine="netcdf4")
    da = ds["sst"]
    da.attrs.update({k: v for k, v in ds.attrs.items() if k.startswith("source_")})
    return da


def load_hycom_runs(store: Store, grid: RegularGrid, runs: list[dt.datetime]) -> xr.DataArray:
    """Stack archived runs into (run, lead, lat, lon); runs missing from the archive are skipped."""
    fields, times = [], []
    for run in runs:
        key = hycom_key(grid, run)
        if store.exists(key):
            fields.append(read_field(store, key).drop_vars("valid_date"))
            times.append(np.datetime64(run, "ns"))
    if not fields:
        raise FileNotFoundError(f"no archived HYCOM run among {runs[0]:%Y-%m-%d}..{runs[-1]:%Y-%m-%d} for grid {grid.grid_id}")
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
