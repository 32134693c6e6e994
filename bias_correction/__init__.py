"""sstbc: operational bias correction of HYCOM SST forecasts against NOAA OISST v2.1.

The package holds all logic (sources, grid, correction runtime, products, training,
verification); orchestration lives in the top-level ``flows`` package and this package
never imports Prefect.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
