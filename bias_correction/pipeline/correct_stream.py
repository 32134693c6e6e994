"""The daily correction of a large domain with bounded memory: stream, gate, assemble and publish lead by lead.

Chosen by ``correct_run`` for grids of more than ``[inference] stream_above_cells`` cells when the package
can be cut into tiles (``correction.streaming``). The steps are those of the in-memory path, each
bounded: inputs are read from the archive one row band at a time and corrected into a scratch NetCDF
(``streaming.stream_correct``); the publication gate runs lead by lead; the product is the same
``product_dataset`` assembly over dask arrays (one lead map per chunk), written chunk by chunk to a
local temporary file, validated lead by lead and only then published (``io.publish.publish_written``:
the same atomic protocol, index last).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bias_correction.correction import streaming
from bias_correction.correction.base import Corrector
from bias_correction.errors import ProductError
from bias_correction.grid.mask import OceanMask
from bias_correction.inputs import HYCOM_SST, aux_specs
from bias_correction.io.archive import ArchiveEntry
from bias_correction.io.netcdf import NETCDF_LOCK, small_chunk_cache
from bias_correction.io.product import DATA_VARS, SST_RANGE_C, _encoding, product_key

LOG = logging.getLogger(__name__)


#: glibc ``mallopt`` parameter: allocations above this size are mmapped and returned to the OS when freed.
_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 1 << 20


def fixed_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold (process-wide) so freed band and lead-map buffers leave the heap.

    Why: glibc raises the threshold after each freed mmapped block (up to 32 MiB), after which the
    streamed path's multi-MiB temporaries come from the heap and stay resident when freed (issue 15
    measured tens of MiB of such growth per step on a 1200x1200 grid). False where glibc is absent."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def should_stream(ctx: Any, corrector: Corrector) -> bool:
    """Stream when the grid exceeds the configured cells and the package can run tile by tile."""
    cells = ctx.grid.nlat * ctx.grid.nlon
    if cells <= ctx.settings.inference.stream_above_cells or not hasattr(corrector.manifest, "tile_shape"):
        return False
    if getattr(corrector.manifest, "kind", "gridded") == "tabular":
        return False
    if getattr(corrector.manifest, "grid_id", None) != ctx.grid.grid_id:  # e.g. a package from before the halo
        return False
    if streaming.stream_tile(corrector.manifest, (ctx.grid.nlat, ctx.grid.nlon)) is None:
        LOG.warning("grid of %d cells is above inference.stream_above_cells but model %s is domain-dependent and "
                    "trained on the whole grid: running it in memory", cells, corrector.manifest.model_id)
        return False
    return True


@contextlib.contextmanager
def open_run_fields(store: Any, entries: dict[str, list[ArchiveEntry]], aux_names: tuple[str, ...],
                    what: str) -> Iterator[streaming.RunFields]:
    """The run's archive files opened lazily (checksums verified by slabs), kept open for the block."""
    with contextlib.ExitStack() as stack:
        def fields(name: str) -> list[xr.DataArray]:
            return [streaming.field_of(stack.enter_context(streaming.open_verified_lazy(store, e.key)))
                    for e in entries[name]]

        hycom = fields(HYCOM_SST.name)
        aux = [(fields(spec.name), spec.per_lead, spec.values) for spec in aux_specs(aux_names)]
        yield streaming.RunFields(hycom, aux, what)


def _lazy(stack: contextlib.ExitStack, path: Path, name: str) -> xr.DataArray:
    """(lead, lat, lon) of a NetCDF file as a dask array, one lead map per chunk; the file is closed under the
    netCDF lock when ``stack`` unwinds (left to the garbage collector, the close would run in whatever thread
    collects it, racing other threads' netCDF calls)."""
    import warnings

    with NETCDF_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # archive files keep all leads in one HDF5 chunk
        ds = xr.open_dataset(path, engine="netcdf4", chunks={"lead": 1, "lat": -1, "lon": -1})

    def close() -> None:
        with NETCDF_LOCK:
            ds.close()

    stack.callback(close)
    return ds[name]


def gate_by_lead(ctx: Any, corrector: Corrector, mask: OceanMask, raw: xr.DataArray, corrected: xr.DataArray) -> Any:
    """``correct.publication_gate``'s checks one lead at a time; the first failing lead's result (else None).

    With ``publication_fallback = "fail"`` a failure raises ProductError (nothing published)."""
    from bias_correction.gate import check_publication

    envelope = corrector.manifest.correction_envelope_degC
    for k in range(raw.shape[0]):
        with NETCDF_LOCK:
            r, c = raw[k].values[None], corrected[k].values[None]
        result = check_publication(inputs=r[:, None], raw=r, corrected=c, mask=mask.values,
                                   providers_requested=ctx.settings.providers,
                                   active_provider=corrector.active_provider, envelope_degC=envelope)
        if result.ok:
            continue
        if ctx.settings.publication_fallback == "raw":
            LOG.warning("publication gate failed at lead %d (%s); publishing raw HYCOM flagged as fallback", k + 1,
                        result.message())
            return result
        raise ProductError(f"publication gate failed for model {corrector.manifest.model_id} "
                           f"{corrector.manifest.version} at lead {k + 1}: {result.message()}; nothing was published")
    return None


def validate_by_lead(path: Path, mask: OceanMask) -> tuple[str, int]:
    """``io.product.validate_product``'s checks lead by lead, then the file's (sha256, size) in blocks."""
    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4") as ds:
        for var in (v for v in DATA_VARS if v in ds):
            da = ds[var]
            lead_dim = da.dims[0]
            lo, hi = np.inf, -np.inf
            for k in range(da.sizes[lead_dim]):
                data = np.asarray(da.isel({lead_dim: k}).values).reshape(-1, *mask.values.shape)
                finite = np.isfinite(data)
                if not (finite == mask.values[None]).all():
                    bad = int((finite != mask.values[None]).sum())
                    raise ProductError(f"product {path.name}: {var} lead {k + 1} has {bad} cells whose NaN pattern "
                                       "differs from the ocean mask")
                if finite.any():
                    lo, hi = min(lo, float(np.nanmin(data))), max(hi, float(np.nanmax(data)))
            if var == "sst_uncertainty" and (lo < 0 or hi > 10):
                raise ProductError(f"product {path.name}: sst_uncertainty range {lo:.3f}..{hi:.3f} K outside 0..10 K")
            if var in ("sst", "sst_raw") and (lo < SST_RANGE_C[0] or hi > SST_RANGE_C[1]):
                raise ProductError(f"product {path.name}: {var} range {lo:.2f}..{hi:.2f} °C outside {SST_RANGE_C}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def write_lazy(ds: xr.Dataset, path: Path) -> None:
    """Write a dask-backed product chunk by chunk (one thread: the NetCDF libraries are not thread-safe)."""
    import dask

    with NETCDF_LOCK, dask.config.set(scheduler="synchronous"):
        ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds))


def correct_streamed(ctx: Any, run: dt.datetime, corrector: Corrector, mask: OceanMask,
                     entries: dict[str, list[ArchiveEntry]], run_days: list[dt.date], inputs: list[dict[str, Any]],
                     digest: str, fallback: str | None, *, assemble: Any, after_publish: Any,
                     pictures: bool = True, issue_digest: str | None = None,
                     guard_decision: list[dict[str, Any]] | None = None, persistence: np.ndarray | None = None) -> Any:
    """Correct, gate, assemble and publish one run streaming; returns ``io.publish.Published``.

    ``assemble`` / ``after_publish``: ``correct.product_dataset`` and ``correct._after_publish``, passed in
    (not imported: ``correct`` imports this module)."""
    import dask

    from bias_correction.io import publish

    manifest = corrector.manifest
    fixed_mmap_threshold()
    region, model_id = ctx.settings.region.name, ctx.settings.model_id
    span = f"HYCOM runs {run_days[0]}..{run_days[-1]}"
    last = entries[HYCOM_SST.name][-1].key
    with small_chunk_cache(), open_run_fields(ctx.store, entries, tuple(manifest.aux_inputs), span) as fields:
        leads = np.asarray(fields.hycom[-1]["lead"].values)
        valid = np.asarray(fields.hycom[-1]["valid_date"].values)
        nlead, (ny, nx) = len(leads), mask.values.shape
        tile = streaming.stream_tile(manifest, (ny, nx))
        rows = tile[0][0] if tile else ny
        with streaming.scratch_field((nlead, ny, nx), rows) as (scratch, var):
            info = streaming.stream_correct(corrector, fields, mask.values, leads.astype(np.float32), var,
                                            max_batch=ctx.settings.inference.stream_batch)
            with NETCDF_LOCK:
                var.group().close()
            LOG.info("streamed %dx%d in %d bands of %s tiles (%d tiles, %d model calls)", ny, nx, info["bands"],
                     info["tile"], info["tiles"], info["model_calls"])
            with ctx.store.local_path(last) as raw_path, contextlib.ExitStack() as lazies:
                corrected = _lazy(lazies, scratch, "sst")
                raw = _lazy(lazies, raw_path, str(fields.hycom[-1].name))
                ocean = xr.DataArray(mask.values, dims=("lat", "lon"))
                raw = raw.where(ocean).astype(np.float32)
                # the model ran on the region plus its halo (grid.halo): gate, assemble and validate the region
                rows, cols = ctx.halo.slices(mask.values.shape)
                corrected, raw = corrected[:, rows, cols], raw[:, rows, cols]
                mask = ctx.halo.crop_mask(mask, ctx.region_grid)
                gate = gate_by_lead(ctx, corrector, mask, raw, corrected)
                if gate is not None:
                    corrected = raw
                ds, provenance = assemble(ctx, run, corrector, mask, corrected.data, raw.data, valid, gate,
                                          inputs, digest, fallback, issue_digest=issue_digest,
                                          guard_decision=guard_decision, persistence=persistence)
                pub = publish.publish_written(ctx.store, region=region, run=run, model_id=model_id,
                                              write=lambda p: write_lazy(ds, p),
                                              validate=lambda p: validate_by_lead(p, mask),
                                              product_version=f"{manifest.version}.{digest[:12]}", record=provenance)
    LOG.info("published %s (version %s, index %s), streamed", pub.version_key, pub.product_version, pub.index_key)
    key = product_key(region, run, model_id)
    with ctx.store.local_path(pub.version_key) as path, NETCDF_LOCK, dask.config.set(scheduler="synchronous"), \
            xr.open_dataset(path, engine="netcdf4", chunks={}) as published:
        after_publish(ctx, run, pub.index_key, key, published, pictures=pictures)
    return pub
