"""The product grid: cell centres of the global regular grid at ``step`` degrees, cut to a region.

The global 0.08 degree grid has 4500 x 2250 cells with centres at ``-90 + step*(j + 1/2)`` and
``step*(i + 1/2)``. A region takes the cells whose centres lie inside its box, so the default
South China Sea box (12-16N, 110-114E) is 50 x 50 cells, as in the ConvGRU-SA paper.
Longitudes keep the convention of the configured box (-180..180 or 0..360).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from bias_correction.config import Region
from bias_correction.errors import ConfigError

_EPS = 1e-9


@dataclass(frozen=True)
class RegularGrid:
    """A rectilinear grid of cell centres, ascending in latitude and longitude."""

    lat0: float
    lon0: float
    step: float
    nlat: int
    nlon: int

    @property
    def lat(self) -> np.ndarray:
        return np.round(self.lat0 + self.step * np.arange(self.nlat), 10)

    @property
    def lon(self) -> np.ndarray:
        return np.round(self.lon0 + self.step * np.arange(self.nlon), 10)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    @property
    def grid_id(self) -> str:
        """Short stable identifier, used in archive paths, model manifests and products."""
        desc = f"{self.lat0:.6f},{self.lon0:.6f},{self.step:.6f},{self.nlat},{self.nlon}"
        digest = hashlib.sha256(desc.encode()).hexdigest()[:8]
        step = f"{self.step:g}".replace(".", "p")
        return f"g{step}-{self.nlat}x{self.nlon}-{digest}"

    def bounds(self) -> tuple[float, float, float, float]:
        """(lat_min, lat_max, lon_min, lon_max) of the cell edges."""
        h = self.step / 2
        return (self.lat0 - h, float(self.lat[-1]) + h, self.lon0 - h, float(self.lon[-1]) + h)

    def to_dict(self) -> dict[str, float | int | str]:
        return {"lat0": self.lat0, "lon0": self.lon0, "step": self.step, "nlat": self.nlat,
                "nlon": self.nlon, "grid_id": self.grid_id}


def target_grid(region: Region, step: float) -> RegularGrid:
    """Cells of the global ``step`` grid whose centres lie inside ``region``."""
    ncells = 360.0 / step
    if abs(ncells - round(ncells)) > 1e-6:
        raise ConfigError(f"grid_step {step} does not divide 360 degrees into whole cells")
    j0 = math.ceil((region.lat_min + 90) / step - 0.5 - _EPS)
    j1 = math.floor((region.lat_max + 90) / step - 0.5 + _EPS)
    i0 = math.ceil(region.lon_min / step - 0.5 - _EPS)
    i1 = math.floor(region.lon_max / step - 0.5 + _EPS)
    if j1 < j0 or i1 < i0:
        raise ConfigError(f"region {region.name!r} is smaller than one {step} degree cell")
    return RegularGrid(
        lat0=round(-90 + step * (j0 + 0.5), 10),
        lon0=round(step * (i0 + 0.5), 10),
        step=step,
        nlat=j1 - j0 + 1,
        nlon=i1 - i0 + 1,
    )
