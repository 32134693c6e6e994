"""The raw-file cache and its ledger, and the one acquisition loop every access mode shares.

A raw file is acquired into a staged temporary name, checked (NetCDF completeness, then the
caller's content validator) and only then renamed into place, with a ledger sidecar
(``<key>.json``: source URL, size, sha256, ETag/Last-Modified, preliminary/final/forecast version
and time fetched). A valid cached file is never acquired again. Transient failures (network,
5xx, bodies cut short) are retried here with bounded, jittered exponential backoff; everything
else propagates at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bias_correction.config import Http
from bias_correction.errors import CorruptInputError, MaintenancePageError, TransientFetchError
from bias_correction.hashing import sha256_file
from bias_correction.sources.validate import check_complete
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)

#: ``download(tmp_path, label) -> {"etag": ..., "last_modified": ...}`` writes the body to tmp_path.
Downloader = Callable[[Path, str], Mapping[str, str | None]]
#: ``validate(path, label)`` raises a CorruptInputError subclass whose message starts with label.
Validator = Callable[[Path, str], None]


@dataclass(frozen=True)
class Fetched:
    """A raw file in the cache and where it came from (the ledger entry)."""

    key: str
    url: str
    size: int
    sha256: str
    version: str
    fetched_at: str
    etag: str | None = None
    last_modified: str | None = None
    downloaded: bool = False  # True when this call acquired it, False when served from cache

    def ledger_json(self) -> str:
        d = asdict(self)
        d.pop("downloaded")
        return json.dumps(d, indent=1, sort_keys=True)


def ledger_key(key: str) -> str:
    return key + ".json"


def cached(store: Store, key: str) -> Fetched | None:
    """The ledger entry of ``key`` if the cached file is present and matches it, else None."""
    lkey = ledger_key(key)
    if not (store.exists(key) and store.exists(lkey)):
        return None
    try:
        fetched = Fetched(**json.loads(store.read_bytes(lkey)))
    except (ValueError, TypeError):
        LOG.warning("ledger %s is unreadable; the file will be fetched again", lkey)
        return None
    if store.size(key) != fetched.size:
        LOG.warning("cached %s has %d bytes, ledger says %d; fetching again", key, store.size(key), fetched.size)
        return None
    with store.local_path(key) as local:
        if sha256_file(local) != fetched.sha256:
            LOG.warning("cached %s does not match its ledger sha256; fetching again", key)
            return None
    return fetched


def backoff_delays(http: Http, rng: random.Random | None = None) -> list[float]:
    """Exponential backoff with jitter, each delay capped at ``backoff_max_s``."""
    rng = rng or random.Random()
    return [min(http.backoff_max_s, http.backoff_s * 2**i) * (1 + 0.25 * rng.random()) for i in range(http.retries)]


def still_html(exc: TransientFetchError, attempts: int) -> Exception:
    """The error to raise once retries are spent: a page that stayed HTML is permanent for that file."""
    if isinstance(exc, MaintenancePageError):
        return CorruptInputError(f"{exc}; still HTML after {attempts} attempt(s)")
    return exc


def acquire(
    url: str,
    store: Store,
    key: str,
    *,
    http: Http,
    what: str,
    version: str,
    download: Downloader,
    validate: Validator | None = None,
) -> Fetched:
    """Cached file at ``key``, or ``download`` it (retrying transient failures), validated, with a ledger."""
    hit = cached(store, key)
    if hit is not None:
        return hit
    # Processes that want the same file at once (regions whose requests overlap, backfill workers) download
    # it once: the first holds the key's lock, the others then find it cached.
    with store.exclusive(key):
        return _acquire_locked(url, store, key, http=http, what=what, version=version, download=download,
                               validate=validate)


def _acquire_locked(url: str, store: Store, key: str, *, http: Http, what: str, version: str, download: Downloader,
                    validate: Validator | None) -> Fetched:
    hit = cached(store, key)
    if hit is not None:
        return hit
    delays = backoff_delays(http)
    label = f"{what}: file {key.rsplit('/', 1)[-1]} from {url}"
    for attempt in range(http.retries + 1):
        try:
            with store.staged(key) as tmp:
                meta = download(tmp, label)
                check_complete(tmp, label)
                if validate is not None:
                    validate(tmp, label)
                fetched = Fetched(
                    key=key, url=url, size=tmp.stat().st_size, sha256=sha256_file(tmp), version=version,
                    fetched_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    etag=meta.get("etag"), last_modified=meta.get("last_modified"), downloaded=True,
                )
            store.write_bytes(ledger_key(key), fetched.ledger_json().encode())
            LOG.info("acquired %s (%d bytes) -> %s", url, fetched.size, key)
            return fetched
        except TransientFetchError as exc:
            if attempt >= http.retries:
                raise still_html(exc, attempt + 1) from None
            LOG.warning("%s (attempt %d/%d); retrying in %.1f s", exc, attempt + 1, http.retries + 1, delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
