"""OISST access ``s3``: the same global files from the NOAA open-data bucket, anonymous (a fallback)."""

from __future__ import annotations

import datetime as dt
import functools

from bias_correction.sources.cache import Fetched
from bias_correction.sources.oisst.product import DaySource, _validate
from bias_correction.sources.s3 import fetch_object, object_size


class S3Access:
    """Downloads the day's object whole; it lands under the same key as the HTTPS file."""

    name = "s3"
    cache_mode = "https"

    def base(self, source: DaySource) -> str:
        return source.s3_base

    def fetch(self, source: DaySource, day: dt.date, version: str) -> Fetched:
        return fetch_object(source.location(day, version, "s3"), source.store, source.raw_key(day, version),
                            http=source.http, endpoint=source.s3_endpoint, what=f"OISST {day} ({version})",
                            version=version, validate=functools.partial(_validate, day=day))

    def size(self, source: DaySource, day: dt.date, version: str) -> int | None:
        return object_size(source.location(day, version, "s3"), source.http, source.s3_endpoint)
