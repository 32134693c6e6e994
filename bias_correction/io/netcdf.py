"""The one way sstbc opens and writes NetCDF: fully loaded, closed, and under one process-wide lock.

The netCDF-C and HDF5 libraries are not thread-safe, and tasks, the stand-in servers and the
archive writers run in threads of one process. xarray locks only parts of each operation (file
handles can be closed later from another thread), which crashed the process with SIGSEGV/SIGBUS
under concurrency. Every open-load-close and every write is therefore serialised here; the files
are small (regional subsets, one OISST day), so the cost is negligible.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr

NETCDF_LOCK = threading.RLock()


def read_dataset(path: str | Path, **kwargs: Any) -> xr.Dataset:
    """Open ``path``, load every variable into memory and close the file."""
    with NETCDF_LOCK, xr.open_dataset(path, **kwargs) as ds:
        return ds.load()


def write_dataset(ds: xr.Dataset, path: str | Path, **kwargs: Any) -> None:
    """``ds.to_netcdf(path, **kwargs)`` under the lock."""
    with NETCDF_LOCK:
        ds.to_netcdf(path, **kwargs)


#: HDF5 chunk cache per variable for streamed (large-domain) work: netCDF-C grows each variable's cache to
#: 10 chunks up to 64 MiB, so a few open files held hundreds of MiB on a large grid (issue 15).
STREAM_CHUNK_CACHE_BYTES = 4 << 20


@contextlib.contextmanager
def small_chunk_cache(size: int = STREAM_CHUNK_CACHE_BYTES) -> Iterator[None]:
    """Files opened inside get a ``size``-byte chunk cache per variable (process-wide netCDF default; restored)."""
    import netCDF4

    with NETCDF_LOCK:
        before = netCDF4.get_chunk_cache()
        netCDF4.set_chunk_cache(size, 101, 0.75)
    try:
        yield
    finally:
        with NETCDF_LOCK:
            netCDF4.set_chunk_cache(*before)
