"""Writers of files in the exact upstream layouts (NCEI OISST v2.1, HYCOM GLBy0.08 NCSS subsets).

Why: readers must be tested against what the services really send, traps included (packed int16,
fill values, float32-rounded coordinates, the xarray-breaking ``tau`` units of HYCOM). The layouts
copy ``docs/data_formats.md`` sections 1.4 and 2.4 and the real sample files attribute by attribute,
in the same order, with the same storage (chunking, compression, data model).

One module per product: :mod:`.oisst`, :mod:`.hycom`; :mod:`.nc3` encodes NetCDF-3 headers by hand and
:mod:`.common` holds the shared packing helpers and the netCDF lock every writer runs under. This package
re-exports the public names, so ``from bias_correction.testing.formats import ...`` keeps working.
"""

from __future__ import annotations

from bias_correction.testing.formats.hycom import (
    GLBY_NLAT,
    GLBY_NLON,
    HYCOM_DEPTHS,
    HYCOM_EPOCH,
    HYCOM_FILL,
    HYCOM_GLOBAL_ATTRS,
    HYCOM_OFFSET,
    HYCOM_SCALE,
    HYCOM_SSH_GLOBAL_ATTRS,
    SURF_EL_ATTRS,
    WATER_TEMP_ATTRS,
    WATER_TEMP_BOTTOM_ATTRS,
    HycomFormat,
    glby_forecast_layout,
    glby_lat,
    glby_lon,
    glby_ssh_layout,
    hycom_coord_attrs,
    hycom_hours,
    navo_packed_attrs,
    pack_hycom,
    pack_surf_el,
    write_hycom_ncss,
    write_hycom_ssh_ncss,
)
from bias_correction.testing.formats.nc3 import Nc3Layout, Nc3Var, nc3_layout
from bias_correction.testing.formats.oisst import (
    OISST_COORD_ATTRS,
    OISST_EPOCH,
    OISST_FILL,
    OISST_LAT,
    OISST_LON,
    OISST_NLAT,
    OISST_NLON,
    OISST_PREFIX,
    OISST_SCALE,
    OISST_TITLE,
    OISST_VAR_ATTRS,
    oisst_filename,
    oisst_time_value,
    pack_oisst,
    write_oisst,
)

__all__ = [
    "GLBY_NLAT",
    "GLBY_NLON",
    "HYCOM_DEPTHS",
    "HYCOM_EPOCH",
    "HYCOM_FILL",
    "HYCOM_GLOBAL_ATTRS",
    "HYCOM_OFFSET",
    "HYCOM_SCALE",
    "HYCOM_SSH_GLOBAL_ATTRS",
    "OISST_COORD_ATTRS",
    "OISST_EPOCH",
    "OISST_FILL",
    "OISST_LAT",
    "OISST_LON",
    "OISST_NLAT",
    "OISST_NLON",
    "OISST_PREFIX",
    "OISST_SCALE",
    "OISST_TITLE",
    "OISST_VAR_ATTRS",
    "SURF_EL_ATTRS",
    "WATER_TEMP_ATTRS",
    "WATER_TEMP_BOTTOM_ATTRS",
    "HycomFormat",
    "Nc3Layout",
    "Nc3Var",
    "glby_forecast_layout",
    "glby_lat",
    "glby_lon",
    "glby_ssh_layout",
    "hycom_coord_attrs",
    "hycom_hours",
    "nc3_layout",
    "navo_packed_attrs",
    "oisst_filename",
    "oisst_time_value",
    "pack_hycom",
    "pack_oisst",
    "pack_surf_el",
    "write_hycom_ncss",
    "write_hycom_ssh_ncss",
    "write_oisst",
]
