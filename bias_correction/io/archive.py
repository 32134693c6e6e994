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
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from bias_correction.errors import ArchiveIntegrityError, ConfigError, InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.inputs import HYCOM_FIELDS
from bias_correction.io.netcdf import NETCDF_LOCK, read_dataset, write_dataset
from bias_correction.sources.http import Fetched
from bias_correction.storage import Store

ENCODING = {"zlib": True, "complevel": 1, "shuffle": True, "dtype": "float32"}
#: HDF5 chunks of a gridded archive variable: one lead, at most this many rows, the full width. The
#: streamed correction reads row bands; with one chunk per file it decompressed the whole file for every
#: band and the chunk caches held O(domain) bytes (issue 15). Content digests do not depend on chunking.
CHUNK_ROWS = 64
#: Global attribute holding the sha256 of the file's content (:func:`content_sha256`).
CONTENT_ATTR = "content_sha256"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveEntry:
    key: str
    source: dict[str, object]  # ledger of the raw file (url, sha256, version, ...)
    written: bool  # True when this call wrote the file


def oisst_key(grid: RegularGrid, day: dt.date) -> str:
    """The day's best OISST version (the final once archived): verification targets, training targets."""
    return f"archive/{grid.grid_id}/oisst/{day:%Y}/oisst_{day:%Y%m%d}.nc"


def oisst_preliminary_key(grid: RegularGrid, day: dt.date) -> str:
    """The day's preliminary OISST as it was issued: written once when first fetched, never overwritten
    (NCEI deletes the preliminary file when the final lands, so this is the only copy)."""
    return f"archive/{grid.grid_id}/oisst_preliminary/{day:%Y}/oisst_{day:%Y%m%d}.nc"


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
    if fetched.version == "preliminary" and not store.exists(oisst_preliminary_key(grid, day)):
        _write(store, oisst_preliminary_key(grid, day), ds)  # the as-issued copy, kept after the final
    return ArchiveEntry(key, json.loads(fetched.ledger_json()), True)


def keep_preliminary(store: Store, grid: RegularGrid, day: dt.date) -> None:
    """Copy a preliminary day still at :func:`oisst_key` to :func:`oisst_preliminary_key` (if absent there)
    before the final replaces it: archives written before as-issued copies existed keep theirs too."""
    key, keep = oisst_key(grid, day), oisst_preliminary_key(grid, day)
    if store.exists(keep) or not store.exists(key):
        return
    ds = _open_verified(store, key)
    if ds.attrs.get("source_version") == "preliminary":
        _write(store, keep, ds)


def as_issued_oisst(store: Store, grid: RegularGrid, day: dt.date) -> ArchiveEntry | None:
    """The OISST of ``day`` as operations had it at run time: the archived preliminary when one was kept,
    else the day's main entry (final-only days: old periods, NCEI keeps only ~14 preliminary days)."""
    return existing(store, oisst_preliminary_key(grid, day)) or existing(store, oisst_key(grid, day))


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


def content_sha256(ds: xr.Dataset) -> str:
    """sha256 of an archive file's content as read back: every variable and coordinate (name, dtype,
    shape, values; NaN canonical). Content, not file bytes: HDF5 layout and compression may differ for
    equal data, and what must not change silently is what the pipeline reads."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        v = np.ascontiguousarray(ds[name].values)
        if v.dtype.kind == "f":
            v = np.where(np.isnan(v), np.array(np.nan, v.dtype), v)
        h.update(f"{name}|{v.dtype.str}|{v.shape}|".encode())
        h.update(v.tobytes())
    return h.hexdigest()


def _chunking(da: xr.DataArray) -> dict[str, Any]:
    """Row-band chunks (:data:`CHUNK_ROWS`) for (..., lat, lon) variables; netCDF's default otherwise."""
    if da.ndim < 2 or da.dims[-2:] != ("lat", "lon"):
        return {}
    *lead, ny, nx = da.shape
    return {"chunksizes": (*(1 for _ in lead), min(ny, CHUNK_ROWS), nx)}


def _write(store: Store, key: str, ds: xr.Dataset) -> str:
    """Write ``ds`` at ``key`` (staged) with the sha256 of its content as read back (:data:`CONTENT_ATTR`)."""
    enc = {v: {**ENCODING, **_chunking(ds[v])} for v in ds.data_vars}
    with store.staged(key) as tmp:
        write_dataset(ds, tmp, engine="netcdf4", encoding=enc)
        digest = content_sha256(read_dataset(tmp, engine="netcdf4"))
        with NETCDF_LOCK, netCDF4.Dataset(tmp, "a") as nc:
            nc.setncattr(CONTENT_ATTR, digest)
    return digest


def _open_verified(store: Store, key: str) -> xr.Dataset:
    """The archive file at ``key``, its content checked against :data:`CONTENT_ATTR` (else ArchiveIntegrityError)."""
    try:
        with store.local_path(key) as path:
            ds = read_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # truncated/garbled HDF5, unreadable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArchiveIntegrityError(f"archive file {key} does not open ({type(exc).__name__}: {first})") from None
    verify_content(ds, key, content_sha256)
    return ds


def verify_content(ds: xr.Dataset, key: str, digest_of: Any = content_sha256) -> None:
    """Check ``ds`` (the archive file at ``key``) against its recorded :data:`CONTENT_ATTR`, else
    ArchiveIntegrityError. ``digest_of``: :func:`content_sha256`, or a streamed equivalent for lazy files."""
    recorded = ds.attrs.get(CONTENT_ATTR)
    if not recorded:
        raise ArchiveIntegrityError(f"archive file {key} carries no {CONTENT_ATTR} (written before checksums)")
    digest = digest_of(ds)
    if digest != recorded:
        raise ArchiveIntegrityError(f"archive file {key}: content sha256 {digest[:16]}... does not match its "
                                    f"recorded {CONTENT_ATTR} {str(recorded)[:16]}... (changed or corrupted)")


def existing(store: Store, key: str) -> ArchiveEntry | None:
    """The archive entry at ``key`` if present and intact (no re-processing needed).

    A file that does not open, lacks its content checksum or does not match it is logged (one line)
    and answered as absent: the caller re-derives it from the raw file, whose sha256 the cache ledger
    verifies -- the archive repairs itself wherever a source of truth exists.
    """
    if not store.exists(key):
        return None
    try:
        ds = _open_verified(store, key)
        ledger = json.loads(ds.attrs["source_ledger"])
    except (ArchiveIntegrityError, KeyError, json.JSONDecodeError) as exc:
        LOG.warning("%s; re-deriving it from its raw file", exc)
        return None
    return ArchiveEntry(key, ledger, False)


def read_field(store: Store, key: str) -> xr.DataArray:
    """The field of an archive file (``sst`` of OISST days and HYCOM runs, or another archived HYCOM variable).

    Its content checksum is verified first: a corrupt file is an ArchiveIntegrityError naming it (the
    fill steps, ``existing``, repair it), never data.
    """
    ds = _open_verified(store, key)
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


def load_as_issued_oisst_days(store: Store, grid: RegularGrid, days: list[dt.date]) -> tuple[xr.DataArray, dict[str, int]]:
    """Stack the as-issued OISST of ``days`` (:func:`as_issued_oisst`) into (time, lat, lon) and count the days
    that had their preliminary kept vs those with only a final (the model card states the mix)."""
    fields, times, counts = [], [], {"preliminary": 0, "final_only": 0}
    for day in days:
        entry = as_issued_oisst(store, grid, day)
        if entry is None:
            continue
        fields.append(read_field(store, entry.key))
        times.append(np.datetime64(day, "ns"))
        counts["preliminary" if entry.source.get("version") == "preliminary" else "final_only"] += 1
    if not fields:
        raise FileNotFoundError(f"no archived OISST day among {days[0]}..{days[-1]} for grid {grid.grid_id}")
    return xr.concat(fields, dim="time").assign_coords(time=np.array(times)), counts
