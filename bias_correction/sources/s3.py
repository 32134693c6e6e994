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


# --- conditional writes (the per-day product index on an S3 storage root) ----------------------------

@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, region: str | None, key: str | None, secret: str | None, token: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=region or "us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token)


def client_for(fs: Any) -> Any:
    """A boto3 client with the endpoint and credentials of an s3fs filesystem (None: boto3's default chain).

    boto3, not s3fs: s3fs exposes no conditional PUT, botocore does (``IfMatch`` / ``IfNoneMatch``).
    """
    ck = dict(getattr(fs, "client_kwargs", None) or {})
    return _client(ck.get("endpoint_url") or getattr(fs, "endpoint_url", None), ck.get("region_name"),
                   getattr(fs, "key", None), getattr(fs, "secret", None), getattr(fs, "token", None))


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def read_with_etag(fs: Any, url: str) -> tuple[bytes, str] | None:
    """(bytes, ETag) of the object at ``url`` read in one GET (so the ETag is of exactly these bytes), or None."""
    from botocore.exceptions import ClientError

    bucket, key = _split(url)
    try:
        resp = client_for(fs).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise _classify(exc, f"S3 GET {url}") from None
    return resp["Body"].read(), str(resp["ETag"])


def put_if(fs: Any, url: str, data: bytes, etag: str | None) -> bool:
    """PUT ``data`` at ``url`` only if the object is still what was read: ``If-Match: etag``, or
    ``If-None-Match: *`` (create only) when ``etag`` is None. False when another writer got there
    first (412 Precondition Failed, 409 ConditionalRequestConflict): re-read and retry."""
    from botocore.exceptions import ClientError

    bucket, key = _split(url)
    cond = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        client_for(fs).put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", **cond)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412) or err.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") \
                or (etag is not None and err.get("Code") in ("NoSuchKey", "404")):  # removed since read
            return False
        raise _classify(exc, f"S3 conditional PUT {url}") from None
    return True
