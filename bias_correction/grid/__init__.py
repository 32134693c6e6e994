"""Target grid, mask-aware regridding and the authoritative ocean mask."""
