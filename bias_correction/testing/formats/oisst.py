"""Writer of NCEI OISST v2.1 daily files in the exact upstream layout (docs/data_formats.md 1.4).

Why: readers must be tested against what NCEI really sends: NetCDF-4, packed int16, fill values, the
``ice`` quirk, attributes in the same order as the real sample file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np

from bias_correction.testing.formats.common import _create_packed, _netcdf_locked, _pack

# ---------------------------------------------------------------------------------------- OISST
OISST_PREFIX = "oisst-avhrr-v02r01"
OISST_EPOCH = date(1978, 1, 1)
OISST_NLAT = 720
OISST_NLON = 1440
OISST_LAT = (-89.875 + 0.25 * np.arange(OISST_NLAT)).astype(np.float32)
OISST_LON = (0.125 + 0.25 * np.arange(OISST_NLON)).astype(np.float32)
OISST_FILL = np.int16(-999)
OISST_SCALE = np.float32(0.01)
OISST_TITLE = ("NOAA/NCEI 1/4 Degree Daily Optimum Interpolation Sea Surface Temperature (OISST) Analysis, "
               "Version 2.1 - {kind}")

_OISST_VARS: dict[str, tuple[str, str, int, int]] = {
    # name: (long_name, units, valid_min, valid_max) -- valid range is stored packed
    "sst": ("Daily sea surface temperature", "Celsius", -300, 4500),
    "anom": ("Daily sea surface temperature anomalies", "Celsius", -1200, 1200),
    "err": ("Estimated error standard deviation of analysed_sst", "Celsius", 0, 1000),
    "ice": ("Sea ice concentration", "%", 0, 100),
}

_OISST_REFERENCES = (
    "Reynolds, et al.(2007) Daily High-Resolution-Blended Analyses for Sea Surface Temperature (available at "
    "https://doi.org/10.1175/2007JCLI1824.1). Banzon, et al.(2016) A long-term record of blended satellite and "
    "in situ sea-surface temperature for climate monitoring, modeling and environmental studies (available at "
    "https://doi.org/10.5194/essd-8-165-2016). Huang et al. (2020) Improvements of the Daily Optimum "
    "Interpolation Sea Surface Temperature (DOISST) Version v02r01, submitted.Climatology is based on 1971-2000 "
    "OI.v2 SST. Satellite data: Pathfinder AVHRR SST, Navy AVHRR SST, and NOAA ACSPO SST. Ice data: NCEP Ice and "
    "GSFC Ice."
)
_OISST_SUMMARY = (
    "NOAAs 1/4-degree Daily Optimum Interpolation Sea Surface Temperature (OISST) (sometimes referred to as "
    "Reynolds SST, which however also refers to earlier products at different resolution), currently available "
    "as version v02r01, is created by interpolating and extrapolating SST observations from different sources, "
    "resulting in a smoothed complete field. The sources of data are satellite (AVHRR) and in situ platforms "
    "(i.e., ships and buoys), and the specific datasets employed may change over time. At the marginal ice zone, "
    "sea ice concentrations are used to generate proxy SSTs.  A preliminary version of this file is produced in "
    "near-real time (1-day latency), and then replaced with a final version after 2 weeks. Note that this is the "
    "AVHRR-ONLY DOISST, available from Oct 1981, but there is a companion DOISST product that includes microwave "
    "satellite data, available from June 2002"
)
_OISST_HISTORY = ("Final file created using preliminary as first guess, and 3 days of AVHRR data. "
                  "Preliminary uses only 1 day of AVHRR data.")

def oisst_filename(day: date, preliminary: bool = False) -> str:
    """The NCEI file name of ``day`` (``_preliminary`` suffix for the near-real-time version)."""
    return f"{OISST_PREFIX}.{day:%Y%m%d}{'_preliminary' if preliminary else ''}.nc"


def oisst_time_value(day: date) -> float:
    """``time`` of an OISST file: whole days since 1978-01-01 (the epoch is at 12:00)."""
    return float((day - OISST_EPOCH).days)



@_netcdf_locked
def write_oisst(path: str | Path, day: date, fields: Mapping[str, np.ndarray], preliminary: bool = False) -> Path:
    """Write one NCEI OISST v2.1 daily file (NetCDF-4, global 720x1440, packed int16) and return its path.

    ``fields`` maps sst/anom/err/ice to (720, 1440) arrays in degC (ice in %), NaN where the file has
    _FillValue; a missing key is written all-fill. Like the real files, ``ice`` is stored as raw = percent
    (valid_max 100) with scale 0.01, so it *decodes* to a fraction 0.15..1.0 despite ``units = "%"``.
    """
    path = Path(path)
    name = oisst_filename(day, preliminary)
    created = datetime(day.year, day.month, day.day, 9, 12) + timedelta(days=1 if preliminary else 15)
    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    try:
        ds.createDimension("time", None)
        ds.createDimension("zlev", 1)
        ds.createDimension("lat", OISST_NLAT)
        ds.createDimension("lon", OISST_NLON)
        t = ds.createVariable("time", "f4", ("time",), zlib=True, complevel=4, shuffle=True, chunksizes=(1,))
        t.setncattr("long_name", "Center time of the day")
        t.setncattr("units", "days since 1978-01-01 12:00:00")
        z = ds.createVariable("zlev", "f4", ("zlev",), contiguous=True)
        for key, value in (("long_name", "Sea surface height"), ("units", "meters"), ("positive", "down"),
                           ("actual_range", "0, 0")):
            z.setncattr(key, value)
        la = ds.createVariable("lat", "f4", ("lat",), contiguous=True)
        la.setncattr("long_name", "Latitude")
        la.setncattr("units", "degrees_north")
        la.setncattr("grids", "Uniform grid from -89.875 to 89.875 by 0.25")
        lo = ds.createVariable("lon", "f4", ("lon",), contiguous=True)
        lo.setncattr("long_name", "Longitude")
        lo.setncattr("units", "degrees_east")
        lo.setncattr("grids", "Uniform grid from 0.125 to 359.875 by 0.25")
        for var_name, (long_name, units, vmin, vmax) in _OISST_VARS.items():
            var = _create_packed(
                ds, var_name, "i2", ("time", "zlev", "lat", "lon"), OISST_FILL,
                head=[("long_name", long_name), ("units", units)],
                tail=[("add_offset", np.float32(0.0)), ("scale_factor", OISST_SCALE),
                      ("valid_min", np.int16(vmin)), ("valid_max", np.int16(vmax))],
                zlib=True, complevel=4, shuffle=True, chunksizes=(1, 1, OISST_NLAT, OISST_NLON))
            data = fields.get(var_name)
            if data is None:
                raw = np.full((OISST_NLAT, OISST_NLON), OISST_FILL, dtype=np.int16)
            else:
                data = np.asarray(data)
                if data.shape[-2:] != (OISST_NLAT, OISST_NLON):
                    raise ValueError(f"OISST field {var_name!r} has shape {data.shape}, expected (720, 1440)")
                values = data.reshape(OISST_NLAT, OISST_NLON)
                if var_name == "ice":  # NCEI quirk: units "%" but stored raw = percent, so it decodes to 0..1
                    values = values / 100.0
                raw = _pack(values, 0.01, 0.0, OISST_FILL)
            var[0, 0, :, :] = raw
        t[0] = np.float32(oisst_time_value(day))
        z[:] = np.zeros(1, dtype=np.float32)
        la[:] = OISST_LAT
        lo[:] = OISST_LON
        attrs: list[tuple[str, object]] = [
            ("Conventions", "CF-1.6, ACDD-1.3"),
            ("title", OISST_TITLE.format(kind="Interim" if preliminary else "Final")),
            ("references", _OISST_REFERENCES),
            ("source", "ICOADS, NCEP_GTS, GSFC_ICE, NCEP_ICE, Pathfinder_AVHRR, Navy_AVHRR, NOAA_ACSP"),
            ("id", name),
            ("naming_authority", "gov.noaa.ncei"),
            ("summary", _OISST_SUMMARY),
            ("cdm_data_type", "Grid"),
            ("history", _OISST_HISTORY),
            ("date_modified", f"{created:%Y-%m-%dT%H:%M:%SZ}"),
            ("date_created", f"{created:%Y-%m-%dT%H:%M:%SZ}"),
            ("product_version", "Version v02r01"),
            ("processing_level", "NOAA Level 4"),
            ("institution", "NOAA/National Centers for Environmental Information"),
            ("creator_url", "https://www.ncei.noaa.gov/"),
            ("creator_email", "oisst-help@noaa.gov"),
            ("keywords", "Earth Science > Oceans > Ocean Temperature > Sea Surface Temperature"),
            ("keywords_vocabulary", "Global Change Master Directory (GCMD) Earth Science Keywords"),
            ("platform", "Ships, buoys, Argo floats, MetOp-A, MetOp-B"),
            ("platform_vocabulary", "Global Change Master Directory (GCMD) Platform Keywords"),
            ("instrument", "Earth Remote Sensing Instruments > Passive Remote Sensing > Spectrometers/Radiometers > "
                           "Imaging Spectrometers/Radiometers > AVHRR > Advanced Very High Resolution Radiometer"),
            ("instrument_vocabulary", "Global Change Master Directory (GCMD) Instrument Keywords"),
            ("standard_name_vocabulary", "CF Standard Name Table (v40, 25 January 2017)"),
            ("geospatial_lat_min", np.float32(-90.0)),
            ("geospatial_lat_max", np.float32(90.0)),
            ("geospatial_lon_min", np.float32(0.0)),
            ("geospatial_lon_max", np.float32(360.0)),
            ("geospatial_lat_units", "degrees_north"),
            ("geospatial_lat_resolution", np.float32(0.25)),
            ("geospatial_lon_units", "degrees_east"),
            ("geospatial_lon_resolution", np.float32(0.25)),
            ("time_coverage_start", f"{day:%Y-%m-%d}T00:00:00Z"),
            ("time_coverage_end", f"{day:%Y-%m-%d}T23:59:59Z"),
            ("metadata_link", "https://doi.org/10.25921/RE9P-PT57"),
            ("ncei_template_version", "NCEI_NetCDF_Grid_Template_v2.0"),
            ("comment", "Data was converted from NetCDF-3 to NetCDF-4 format with metadata updates in November 2017."),
            ("sensor", "Thermometer, AVHRR"),
        ]
        for key, value in attrs:
            ds.setncattr(key, value)
    finally:
        ds.close()
    return path



def pack_oisst(values: np.ndarray, name: str) -> np.ndarray:
    """OISST values as write_oisst packs them (ice: percent stored raw, so /100 first)."""
    v = np.asarray(values, dtype=np.float64)
    if name == "ice":
        v = v / 100.0
    return _pack(v, 0.01, 0.0, OISST_FILL)


OISST_VAR_ATTRS: dict[str, list[tuple[str, object]]] = {
    name: [("long_name", ln), ("units", un), ("_FillValue", OISST_FILL), ("add_offset", np.float32(0.0)),
           ("scale_factor", OISST_SCALE), ("valid_min", np.int16(vmin)), ("valid_max", np.int16(vmax))]
    for name, (ln, un, vmin, vmax) in _OISST_VARS.items()
}
OISST_COORD_ATTRS: dict[str, list[tuple[str, object]]] = {
    "time": [("long_name", "Center time of the day"), ("units", "days since 1978-01-01 12:00:00")],
    "zlev": [("long_name", "Sea surface height"), ("units", "meters"), ("positive", "down"),
             ("actual_range", "0, 0")],
    "lat": [("long_name", "Latitude"), ("units", "degrees_north"),
            ("grids", "Uniform grid from -89.875 to 89.875 by 0.25")],
    "lon": [("long_name", "Longitude"), ("units", "degrees_east"),
            ("grids", "Uniform grid from 0.125 to 359.875 by 0.25")],
}
