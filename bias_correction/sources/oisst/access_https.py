"""OISST access ``https``: whole global files from the NCEI HTTPS tree (the primary mode)."""

from __future__ import annotations

import datetime as dt
import functools

from bias_correction.sources.cache import Fetched
from bias_correction.sources.http import fetch, head_size
from bias_correction.sources.oisst.product import DaySource, _validate


class HttpsAccess:
    """Downloads the day's file whole into the shared raw cache (``raw/oisst/...``)."""

    name = "https"
    #: the raw-key family its files land in (HTTPS and S3 serve the same file)
    cache_mode = "https"

    def base(self, source: DaySource) -> str:
        return source.base_url

    def fetch(self, source: DaySource, day: dt.date, version: str) -> Fetched:
        return fetch(source.location(day, version), source.store, source.raw_key(day, version), http=source.http,
                     what=f"OISST {day} ({version})", version=version, validate=functools.partial(_validate, day=day))

    def size(self, source: DaySource, day: dt.date, version: str) -> int | None:
        return head_size(source.location(day, version), source.http)
