"""Anonymous reads from S3 buckets (the NOAA open-data OISST bucket) through s3fs.

Objects are downloaded whole into the raw cache with the same checks and ledger as HTTPS
downloads (:func:`bias_correction.sources.cache.acquire`). A missing object is
:class:`NotYetPublishedError`; throttling, 5xx and connection trouble are transient.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bias_correction.config import Http
from bias_correction.errors import (
    NotYetPublishedError,
    TransientFetchError,
    UpstreamRejectedError,
)
from bias_correction.sources.cache import Fetched, Validator, acquire
from bias_correction.storage import Store


@functools.lru_cache(maxsize=8)
def _filesystem(endpoint: str | None, connect_timeout: float, read_timeout: float) -> Any:
    import s3fs

    client_kwargs: dict[str, Any] = {"region_name": "us-east-1"}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    # One attempt per call: retries and backoff are ours (cache.acquire), with explicit timeouts.
    config = {"connect_timeout": connect_timeout, "read_timeout": read_timeout, "retries": {"max_attempts": 1}}
    return s3fs.S3FileSystem(anon=True, client_kwargs=client_kwargs, config_kwargs=config,
                             skip_instance_cache=True, use_listings_cache=False)


def filesystem(http: Http, endpoint: str | None) -> Any:
    return _filesystem(endpoint, http.connect_timeout_s, http.read_timeout_s)


def _classify(exc: BaseException, label: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotYetPublishedError(f"{label}: no such object")
    if isinstance(exc, PermissionError):
        return UpstreamRejectedError(f"{label}: access denied ({exc})")
    return TransientFetchError(f"{label}: S3 failure: {type(exc).__name__}: {exc}")


def fetch_object(
    url: str, store: Store, key: str, *, http: Http, endpoint: str | None, what: str, version: str,
    validate: Validator | None = None,
) -> Fetched:
    """Cached file at ``key`` or a validated download of the object ``url`` (``s3://bucket/key``)."""
    fs = filesystem(http, endpoint)

    def download(tmp: Path, label: str) -> Mapping[str, str | None]:
        try:
            info = fs.info(url)
            fs.get_file(url, str(tmp))
        except Exception as exc:  # noqa: BLE001 - s3fs/botocore raise many types; classified below
            raise _classify(exc, label) from None
        size = tmp.stat().st_size
        if info.get("size") is not None and size != int(info["size"]):
            raise TransientFetchError(f"{label}: got {size} of {info['size']} bytes")
        return {"etag": str(info.get("ETag") or info.get("etag") or "") or None,
                "last_modified": str(info.get("LastModified") or "") or None}

    return acquire(url, store, key, http=http, what=what, version=version, download=download, validate=validate)


def object_size(url: str, http: Http, endpoint: str | None) -> int | None:
    """Size of the object, or None when it does not exist."""
    try:
        return int(filesystem(http, endpoint).info(url)["size"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - botocore errors vary
        raise _classify(exc, f"S3 {url}") from None
