"""The model grid: the region's product grid plus a halo of cells on every side.

Why: a convolution pads its input with zeros, so a network's output within its receptive field of a
domain edge sees "nothing" beyond it (on the demo: RMSE 0.28-0.31 degC in the outer rows against 0.17
inside). The archive, the ocean mask and the model therefore work on the region plus ``halo`` cells of
real data on each side (``Settings.grid_halo_cells``, at least the package's ``halo_cells``), and the
product is cropped back to the region, whose cells are exactly those of the region grid
(``target_grid(region)``): the halo grid is the region grid with rows/columns added, never re-derived.

The halo is clipped where the global grid ends (the poles; all longitudes taken): those sides keep
what exists, so :class:`Halo` holds one width per side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bias_correction.grid.grids import RegularGrid, target_grid
from bias_correction.grid.mask import OceanMask, mask_sha256

if TYPE_CHECKING:
    from bias_correction.config import Settings


@dataclass(frozen=True)
class Halo:
    """Cells a grid adds around an inner grid, per side (south = first rows, west = first columns)."""

    south: int = 0
    north: int = 0
    west: int = 0
    east: int = 0

    @property
    def cells(self) -> int:
        """The halo every side has (the model's protection at the worst side)."""
        return min(self.south, self.north, self.west, self.east)

    @property
    def is_zero(self) -> bool:
        return not (self.south or self.north or self.west or self.east)

    def slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """(rows, columns) of the inner grid inside an outer array of ``shape`` (lat, lon)."""
        ny, nx = shape
        return slice(self.south, ny - self.north), slice(self.west, nx - self.east)

    def crop(self, a: np.ndarray) -> np.ndarray:
        """The inner grid of ``a`` [..., lat, lon] (a view; no copy)."""
        if self.is_zero:
            return a
        rows, cols = self.slices(a.shape[-2:])
        return a[..., rows, cols]

    def inner(self, grid: RegularGrid) -> RegularGrid:
        """The grid this halo surrounds."""
        return RegularGrid(lat0=round(grid.lat0 + self.south * grid.step, 10),
                           lon0=round(grid.lon0 + self.west * grid.step, 10), step=grid.step,
                           nlat=grid.nlat - self.south - self.north, nlon=grid.nlon - self.west - self.east)

    def crop_mask(self, mask: OceanMask, inner: RegularGrid) -> OceanMask:
        """The ocean mask of the inner grid: the outer mask's cells there (re-hashed for that grid)."""
        if self.is_zero:
            return mask
        values = np.ascontiguousarray(self.crop(mask.values))
        return OceanMask(values, mask_sha256(values), inner.grid_id)

    def to_dict(self) -> dict[str, int]:
        return {"south": self.south, "north": self.north, "west": self.west, "east": self.east}


def with_halo(grid: RegularGrid, cells: int) -> tuple[RegularGrid, Halo]:
    """``grid`` plus ``cells`` cells on every side (clipped at the poles and when all longitudes are taken)."""
    if cells <= 0:
        return grid, Halo()
    step = grid.step
    nlat_global = int(round(180.0 / step))
    nlon_global = int(round(360.0 / step))
    j0 = int(round((grid.lat0 + 90.0) / step - 0.5))  # global row of the first region row
    j1 = j0 + grid.nlat - 1
    south, north = min(cells, max(0, j0)), min(cells, max(0, nlat_global - 1 - j1))
    spare = nlon_global - grid.nlon  # columns not yet in the grid (a halo must not wrap onto itself)
    west = east = min(cells, max(0, math.floor(spare / 2)))
    outer = RegularGrid(lat0=round(grid.lat0 - south * step, 10), lon0=round(grid.lon0 - west * step, 10), step=step,
                        nlat=grid.nlat + south + north, nlon=grid.nlon + west + east)
    return outer, Halo(south, north, west, east)


def model_grids(settings: Settings) -> tuple[RegularGrid, RegularGrid, Halo]:
    """(model grid, product grid, halo between them) of the settings' region: the one place they are derived."""
    region_grid = target_grid(settings.region, settings.grid_step)
    grid, halo = with_halo(region_grid, settings.grid_halo_cells)
    return grid, region_grid, halo
