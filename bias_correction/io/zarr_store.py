"""One consolidated Zarr (v3) store per region and model, appended per run, transactional (icechunk).

``zarr/{region}/{model_id}.icechunk`` under the storage root holds every published run along
``forecast_reference_time``: the same variables and layout as the NetCDF products,
(lead_day, forecast_reference_time, lat, lon), chunked as all leads x :data:`RUN_CHUNK` runs x a
spatial tile of at most :data:`TILE` cells, so a map is one chunk and a point's whole series a few.

It is written after the NetCDF is published, as one icechunk commit per run: until the commit, readers
(and a crash, even SIGKILL between writing chunks and committing) see the previous snapshot whole.
Re-publishing a run rewrites its slice; an older run (a backfill) is merged in order. The store can be
rebuilt from the NetCDF products (``rebuild``), which are the reference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import xarray as xr

from bias_correction.errors import ProductError
from bias_correction.storage import Store, crash_point

RUN_CHUNK = 32
TILE = 256
#: Per-run global attributes that do not describe the whole store (kept in each commit's metadata).
PER_RUN_ATTRS = ("title", "id", "history", "date_created", "date_modified", "date_issued", "date_metadata_modified",
                 "time_coverage_start", "time_coverage_end", "sstbc_input_digest", "sstbc_provenance", "sstbc_inputs",
                 "sstbc_fallback", "sstbc_gate_failures", "product_version", "sstbc_model_sha256", "sstbc_code_version",
                 "sstbc_config_hash", "sstbc_active_provider", "summary", "comment")
TIME_ENC = {"units": "hours since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}


def store_key(region: str, model_id: str) -> str:
    return f"zarr/{region}/{model_id}.icechunk"


def _storage(store: Store, key: str) -> Any:
    import icechunk

    # Its local storage warns on every open that concurrent commits are unsafe: ours are serialised by
    # ``Store.exclusive``, so only errors are logged.
    icechunk.set_logs_filter("icechunk=error")
    if store.is_local:
        return icechunk.local_filesystem_storage(store.url(key))
    url = store.url(key)
    if not url.startswith("s3://"):
        raise ProductError(f"Zarr store {url}: only local and s3:// roots are supported")
    bucket, _, prefix = url[5:].partition("/")
    fs = store.fs
    endpoint = (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url")
    region = (getattr(fs, "client_kwargs", None) or {}).get("region_name")
    return icechunk.s3_storage(bucket=bucket, prefix=prefix, endpoint_url=endpoint, region=region,
                               allow_http=bool(endpoint and endpoint.startswith("http://")),
                               access_key_id=getattr(fs, "key", None), secret_access_key=getattr(fs, "secret", None),
                               anonymous=bool(getattr(fs, "anon", False)) or None, force_path_style=bool(endpoint))


def _repo(store: Store, key: str, create: bool) -> Any:
    import icechunk

    storage = _storage(store, key)
    if create:
        return icechunk.Repository.open_or_create(storage)
    if not icechunk.Repository.exists(storage):
        raise ProductError(f"no Zarr store at {store.url(key)}; rebuild it from the NetCDF products first")
    return icechunk.Repository.open(storage)


def _prepare(ds: xr.Dataset, region: str) -> xr.Dataset:
    """The product of one run as it goes into the store (per-run attributes left out)."""
    out = ds.drop_vars([v for v in ("forecast_period_bnds",) if v in ds.variables])
    out.attrs = {k: v for k, v in ds.attrs.items() if k not in PER_RUN_ATTRS}
    out.attrs["title"] = f"Bias-corrected HYCOM SST forecasts, region {region}, every published run"
    for v in out.variables.values():
        v.encoding = {}
    if "forecast_period" in out.coords:
        out["forecast_period"].attrs.pop("bounds", None)
    return out


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    ny, nx = ds.sizes["lat"], ds.sizes["lon"]
    chunks = (ds.sizes["lead_day"], RUN_CHUNK, min(ny, TILE), min(nx, TILE))
    enc: dict[str, dict[str, Any]] = {v: {"chunks": chunks} for v in ds.data_vars
                                      if ds[v].dims == ("lead_day", "forecast_reference_time", "lat", "lon")}
    for v in ("sst", "sst_raw", "sst_correction", "sst_uncertainty"):
        if v in enc:
            enc[v].update(dtype="float32", _FillValue=np.float32(np.nan))
    enc["time"] = {**TIME_ENC, "chunks": (ds.sizes["lead_day"], RUN_CHUNK)}
    enc["forecast_reference_time"] = {**TIME_ENC, "chunks": (RUN_CHUNK,)}
    return enc


def _per_run(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars([n for n, v in ds.variables.items() if "forecast_reference_time" not in v.dims])


def _write(ds: xr.Dataset, session: Any, **kwargs: Any) -> None:
    """Write into the session's uncommitted snapshot (in-memory data; nothing is visible before commit)."""
    ds.to_zarr(session.store, consolidated=False, zarr_format=3, **kwargs)


def append_run(store: Store, region: str, model_id: str, ds: xr.Dataset, product_key: str = "") -> dict[str, Any]:
    """Add (or replace) one run's product in the region's store in one commit; returns what was done."""
    one = _prepare(ds, region).load()
    if one.sizes.get("forecast_reference_time") != 1:
        raise ProductError(f"Zarr append of {product_key or 'a product'}: expected one run, got "
                           f"{one.sizes.get('forecast_reference_time')}")
    run = one["forecast_reference_time"].values[0]
    key = store_key(region, model_id)
    with store.exclusive(key):  # one committer at a time on a local root (icechunk's local storage needs it)
        return _append(store, key, one, run, product_key)


def _append(store: Store, key: str, one: xr.Dataset, run: Any, product_key: str) -> dict[str, Any]:
    repo = _repo(store, key, create=True)
    session = repo.writable_session("main")
    try:
        have = xr.open_zarr(session.store, consolidated=False, chunks=None)  # numpy: no dask (workers' clients)
    except (FileNotFoundError, KeyError, ValueError):
        have = None
    if have is None or "forecast_reference_time" not in have.dims:
        _write(one, session, mode="w", encoding=_encoding(one))
        action = "created"
    else:
        runs = have["forecast_reference_time"].values
        if run in runs:
            i = int(np.nonzero(runs == run)[0][0])
            _write(_per_run(one), session, region={"forecast_reference_time": slice(i, i + 1)})
            action = "replaced"
        elif run > runs[-1]:
            _write(_per_run(one), session, append_dim="forecast_reference_time")
            action = "appended"
        else:  # an older run (backfill): merge in order, still one commit
            merged = xr.concat([have.load(), one], dim="forecast_reference_time", data_vars="minimal",
                               coords="minimal", compat="override", join="override").sortby("forecast_reference_time")
            for v in merged.variables.values():
                v.encoding = {}
            _write(merged, session, mode="w", encoding=_encoding(merged))
            action = "merged"
    crash_point("zarr_before_commit", key)
    snapshot = session.commit(f"{action} run {str(run)[:19]}Z from {product_key}",
                              metadata={"product_key": product_key, "run": str(run)[:19]})
    return {"key": key, "action": action, "snapshot": snapshot}


def open_store(store: Store, region: str, model_id: str) -> xr.Dataset:
    """The region's store as a lazy dataset (the last committed snapshot)."""
    repo = _repo(store, store_key(region, model_id), create=False)
    return xr.open_zarr(repo.readonly_session("main").store, consolidated=False)


def rebuild(store: Store, region: str, model_id: str, *, start: dt.date | str | None = None,
            end: dt.date | str | None = None) -> dict[str, Any]:
    """Rewrite the store from the current NetCDF products (per-day indexes), in one commit."""
    from bias_correction import catalog

    cube = catalog.open_products(store, region, start=start, end=end, model_id=model_id)
    cube = _prepare(cube.transpose("lead_day", "forecast_reference_time", ...), region).load()
    key = store_key(region, model_id)
    session = _repo(store, key, create=True).writable_session("main")
    _write(cube, session, mode="w", encoding=_encoding(cube))
    crash_point("zarr_before_commit", key)
    snap = session.commit(f"rebuilt from {cube.sizes['forecast_reference_time']} NetCDF products")
    return {"key": key, "runs": int(cube.sizes["forecast_reference_time"]), "snapshot": snap}
