"""HYCOM access ``ncss`` (default): one THREDDS NetCDF Subset Service request per 12Z run.

``water_temp`` at the surface level (``vertCoord=0``) or 2-D ``surf_el``, the region plus a margin,
every 3-hourly lead of the run (the request itself is :meth:`HycomSource.url`)::

    {ncss}/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_{YYYY-MM-DD}T12:00:00Z
        ?var=water_temp&north=..&south=..&west=..&east=..&horizStride=1
        &time_start=..&time_end=..&timeStride=1&vertCoord=0&addLatLon=true&accept=netcdf4
"""

from __future__ import annotations

import datetime as dt

from bias_correction.sources.cache import Fetched
from bias_correction.sources.http import fetch
from bias_correction.sources.hycom.layout import validate_hycom_file
from bias_correction.sources.hycom.products import RunSource, describe_run


class NcssAccess:
    """The subset service answers with a file already in the cached layout: download and validate it."""

    name = "ncss"

    def check(self, source: RunSource) -> None:
        """Nothing beyond the NCSS base, which every source has."""

    def key_suffix(self, source: RunSource) -> str:
        return "" if source.accept == "netcdf4" else f"_{source.accept}"

    def fetch(self, source: RunSource, run: dt.datetime, variable: str) -> Fetched:
        return fetch(
            source.url(run, variable), source.store, source.raw_key(run, variable), http=source.http,
            what=describe_run(run, variable), version="forecast",
            validate=lambda p, label: validate_hycom_file(p, run, source.max_tau(), label, variable=variable),
        )
