"""The one authoritative ocean mask of a region grid.

A cell is ocean when both regridded sources (OISST and HYCOM) have a value there: OISST at
0.25 degrees loses coastal cells that HYCOM resolves, so the intersection is taken (models.md
2.4). The mask is computed once, stored under ``grid/<grid_id>/ocean_mask.nc`` with its sha256,
and every model package and product records that hash, so a run can refuse a model trained on
another mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bias_correction.errors import InputValidationError
from bias_correction.grid.grids import RegularGrid
from bias_correction.io.netcdf import read_dataset, write_dataset
from bias_correction.storage import Store


@dataclass(frozen=True)
class OceanMask:
    values: np.ndarray  # bool (nlat, nlon), True = ocean
    sha256: str
    grid_id: str

    @property
    def ocean_cells(self) -> int:
        return int(self.values.sum())

    def to_dataarray(self, grid: RegularGrid) -> xr.DataArray:
        return xr.DataArray(self.values, dims=("lat", "lon"), coords={"lat": grid.lat, "lon": grid.lon})


def mask_sha256(values: np.ndarray) -> str:
    """Hash of the mask's shape and cells, independent of file encoding."""
    v = np.ascontiguousarray(values, dtype=np.uint8)
    h = hashlib.sha256(f"{v.shape}".encode())
    h.update(v.tobytes())
    return h.hexdigest()


def mask_key(grid: RegularGrid) -> str:
    return f"grid/{grid.grid_id}/ocean_mask.nc"


def derive_mask(oisst: np.ndarray, hycom: np.ndarray) -> np.ndarray:
    """Ocean where both regridded fields are finite (any leading dims of ``hycom`` must all be finite)."""
    h = np.isfinite(hycom)
    while h.ndim > 2:
        h = h.all(axis=0)
    return np.isfinite(oisst) & h


def load_mask(store: Store, grid: RegularGrid) -> OceanMask | None:
    key = mask_key(grid)
    if not store.exists(key):
        return None
    with store.local_path(key) as path:
        ds = read_dataset(path, engine="netcdf4")
    values = ds["ocean_mask"].values.astype(bool)
    stored = str(ds.attrs.get("mask_sha256", ""))
    actual = mask_sha256(values)
    if stored != actual:
        raise InputValidationError(f"ocean mask {key}: stored sha256 {stored[:12]} does not match its cells ({actual[:12]})")
    return OceanMask(values, actual, grid.grid_id)


def save_mask(store: Store, grid: RegularGrid, values: np.ndarray, sources: str) -> OceanMask:
    if values.shape != grid.shape:
        raise InputValidationError(f"ocean mask shape {values.shape} does not match grid {grid.shape}")
    if not values.any():
        raise InputValidationError(f"ocean mask for grid {grid.grid_id} has no ocean cell")
    mask = OceanMask(values.astype(bool), mask_sha256(values), grid.grid_id)
    ds = xr.Dataset(
        {"ocean_mask": (("lat", "lon"), mask.values.astype("i1"), {
            "long_name": "ocean mask (1 = ocean in both OISST and HYCOM)", "flag_values": np.array([0, 1], "i1"),
            "flag_meanings": "land_or_missing ocean"})},
        coords={"lat": ("lat", grid.lat, {"units": "degrees_north"}), "lon": ("lon", grid.lon, {"units": "degrees_east"})},
        attrs={"mask_sha256": mask.sha256, "grid_id": grid.grid_id, "sources": sources},
    )
    with store.staged(mask_key(grid)) as tmp:
        write_dataset(ds, tmp, engine="netcdf4")
    return mask


def apply_mask(field: np.ndarray, mask: OceanMask, what: str) -> np.ndarray:
    """NaN outside the mask; a NaN inside it is a hole in the input and an error."""
    holes = mask.values & ~np.isfinite(field)
    while holes.ndim > 2:
        holes = holes.any(axis=0)
    if holes.any():
        j, i = np.argwhere(holes)[0]
        raise InputValidationError(f"{what}: {int(holes.sum())} ocean cell(s) have no value (first at row {j}, col {i})")
    return np.where(mask.values, field, np.nan).astype(np.float32)
