"""HYCOM forecast runs: GOFS 3.1 (GLBy0.08/expt_93.0) and ESPC-D-V02, three access modes.

Layout: :mod:`.products` (forecast systems and the variable lexicon), :mod:`.source`
(:class:`HycomSource` and the access registry), :mod:`.layout` (the cached run file), one module per
access mode (:mod:`.access_ncss`, :mod:`.access_dap`, :mod:`.access_files`). The public names are
re-exported here, so ``from bias_correction.sources.hycom import HycomSource, run_time`` keeps working.
"""

from bias_correction.sources.hycom.layout import (
    daily_means,
    daily_means_of_file,
    read_surface_field,
    read_surface_temperature,
    validate_hycom_file,
    write_run_file,
)
from bias_correction.sources.hycom.products import (
    ESPC_D_V02,
    GOFS31,
    HYCOM_EPOCH,
    PRODUCTS,
    SST_VALID_RANGE_C,
    STEP_HOURS,
    SURF_EL,
    SURF_EL_VALID_RANGE_M,
    VARIABLES,
    WATER_TEMP,
    HycomProduct,
    HycomVariable,
    describe_run,
    hycom_variable,
    product_for,
    run_time,
)
from bias_correction.sources.hycom.source import ACCESS, ACCESS_MODES, HycomSource
from bias_correction.sources.lonlat import lat_rows, lon_runs

__all__ = [
    "ACCESS", "ACCESS_MODES", "ESPC_D_V02", "GOFS31", "HYCOM_EPOCH", "PRODUCTS", "SST_VALID_RANGE_C", "STEP_HOURS",
    "SURF_EL", "SURF_EL_VALID_RANGE_M", "VARIABLES", "WATER_TEMP", "HycomProduct", "HycomSource", "HycomVariable",
    "daily_means", "daily_means_of_file", "describe_run", "hycom_variable", "lat_rows", "lon_runs", "product_for", "read_surface_field",
    "read_surface_temperature", "run_time", "validate_hycom_file", "write_run_file",
]
