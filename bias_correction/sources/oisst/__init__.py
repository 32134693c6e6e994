"""NOAA OISST v2.1 daily analyses: NCEI HTTPS tree, NOAA open-data S3 bucket, NCEI OPeNDAP.

Layout: :mod:`.product` (file names, versions, reading and validating a file), :mod:`.source`
(:class:`OisstSource` and the access registry), one module per access mode (:mod:`.access_https`,
:mod:`.access_s3`, :mod:`.access_dap`). The public names are re-exported here, so
``from bias_correction.sources.oisst import OisstSource, PRELIMINARY`` keeps working.
"""

from bias_correction.sources.oisst.access_dap import fetch_oisst_day, validate_oisst_subset
from bias_correction.sources.oisst.product import (
    FINAL,
    FINAL_LAG_DAYS,
    GLOBAL_SHAPE,
    OISST_EPOCH,
    PRELIMINARY,
    REQUIRED_VARS,
    SST_VALID_RANGE_C,
    oisst_filename,
    read_oisst_sst,
    validate_oisst_file,
)
from bias_correction.sources.oisst.source import ACCESS, OisstSource, _utc_today

__all__ = [
    "ACCESS", "FINAL", "FINAL_LAG_DAYS", "GLOBAL_SHAPE", "OISST_EPOCH", "PRELIMINARY", "REQUIRED_VARS",
    "SST_VALID_RANGE_C", "OisstSource", "_utc_today", "fetch_oisst_day", "oisst_filename", "read_oisst_sst",
    "validate_oisst_file", "validate_oisst_subset",
]
