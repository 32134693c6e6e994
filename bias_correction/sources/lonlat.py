"""Index ranges and longitudes of a region inside a remote grid, for the access modes that subset.

Why here: OPeNDAP and Range reads of HYCOM and OISST all cut the same kind of box out of a global
axis (either longitude convention, across 0 or 180); one neutral module keeps product packages
from importing each other for it.
"""

from __future__ import annotations

import numpy as np

from bias_correction.errors import InputValidationError
from bias_correction.grid.lonlat import wrap_lon


def wrap_region(lon: np.ndarray, west: float) -> np.ndarray:
    """Longitudes re-expressed in the 360-degree window starting at ``west`` (the region's convention)."""
    return wrap_lon(lon, west - 1e-4)


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
