"""The only module that talks HTTP: downloads with explicit timeouts, bounded backoff and validation.

A download is streamed to a staged temporary file, checked (status, content type, length,
NetCDF completeness, then the caller's content validator) and only then renamed into the raw
cache, with a ledger sidecar (``<key>.json``: URL, size, sha256, ETag/Last-Modified, version,
time fetched). A valid cached file is never downloaded again.

Failure classes: 404 -> :class:`NotYetPublishedError`; 5xx/429, timeouts, resets and bodies cut
short -> :class:`TransientFetchError` (retried here with backoff); 400/401/403 ->
:class:`UpstreamRejectedError`; HTML pages or wrong content -> :class:`CorruptInputError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from bias_correction.config import Http
from bias_correction.errors import (
    CorruptInputError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
    UpstreamRejectedError,
)
from bias_correction.sources.validate import check_complete
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)
USER_AGENT = "sstbc/0.1 (+https://github.com/sstbc)"


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
    downloaded: bool = False  # True when this call downloaded it, False when served from cache

    def ledger_json(self) -> str:
        d = asdict(self)
        d.pop("downloaded")
        return json.dumps(d, indent=1, sort_keys=True)


def ledger_key(key: str) -> str:
    return key + ".json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached(store: Store, key: str) -> Fetched | None:
    """The ledger entry of ``key`` if the cached file is present and matches it, else None."""
    lkey = ledger_key(key)
    if not (store.exists(key) and store.exists(lkey)):
        return None
    try:
        entry = json.loads(store.read_bytes(lkey))
        fetched = Fetched(**entry)
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


def _classify_status(resp: requests.Response, what: str) -> None:
    code = resp.status_code
    if code == 200:
        return
    if code == 404 or code == 410:
        raise NotYetPublishedError(f"{what}: not published (HTTP {code})")
    if code in (400, 401, 403):
        body = resp.text[:300].strip().replace("\n", " ")
        raise UpstreamRejectedError(f"{what}: request refused (HTTP {code}): {body}")
    if code == 429 or code >= 500:
        raise TransientFetchError(f"{what}: server error HTTP {code}")
    raise UpstreamRejectedError(f"{what}: unexpected HTTP {code}")


def _download_once(session: requests.Session, url: str, dest: Path, http: Http, what: str) -> requests.Response:
    try:
        with session.get(url, stream=True, timeout=(http.connect_timeout_s, http.read_timeout_s)) as resp:
            _classify_status(resp, what)
            ctype = resp.headers.get("Content-Type", "")
            if "html" in ctype.lower():
                raise CorruptInputError(f"{what}: answered 200 with an HTML page ({ctype}), not NetCDF")
            expected = resp.headers.get("Content-Length")
            n = 0
            with open(dest, "wb") as f:
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    f.write(chunk)
                    n += len(chunk)
            if expected is not None and n != int(expected):
                raise TruncatedDownloadError(f"{what}: body cut short, {n} of {expected} bytes")
            return resp
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFetchError(f"{what}: network failure: {type(exc).__name__}: {exc}") from None
    except requests.exceptions.ChunkedEncodingError as exc:
        raise TruncatedDownloadError(f"{what}: body cut short: {exc}") from None


def backoff_delays(http: Http, rng: random.Random | None = None) -> list[float]:
    """Exponential backoff with jitter, each delay capped at ``backoff_max_s``."""
    rng = rng or random.Random()
    return [min(http.backoff_max_s, http.backoff_s * 2**i) * (1 + 0.25 * rng.random()) for i in range(http.retries)]


def fetch(
    url: str,
    store: Store,
    key: str,
    *,
    http: Http,
    what: str,
    version: str,
    validate: Callable[[Path, str], None] | None = None,
    session: requests.Session | None = None,
) -> Fetched:
    """Return the cached file at ``key`` or download ``url`` into it, validated, with retries.

    ``what`` names the data for error messages (e.g. ``"OISST 2021-03-01"``); ``validate(path,
    label)`` checks the content (variables, dims, dates, values) and raises a CorruptInputError
    subclass whose message starts with ``label`` (names the data, the file and the URL).
    """
    hit = cached(store, key)
    if hit is not None:
        return hit
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", USER_AGENT)
    delays = backoff_delays(http)
    label = f"{what}: file {key.rsplit('/', 1)[-1]} from {url}"
    for attempt in range(http.retries + 1):
        try:
            with store.staged(key) as tmp:
                resp = _download_once(session, url, tmp, http, label)
                check_complete(tmp, label)
                if validate is not None:
                    validate(tmp, label)
                fetched = Fetched(
                    key=key,
                    url=url,
                    size=tmp.stat().st_size,
                    sha256=sha256_file(tmp),
                    version=version,
                    fetched_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                    downloaded=True,
                )
            store.write_bytes(ledger_key(key), fetched.ledger_json().encode())
            LOG.info("downloaded %s (%d bytes) -> %s", url, fetched.size, key)
            return fetched
        except TransientFetchError as exc:
            if attempt >= http.retries:
                raise
            LOG.warning("%s (attempt %d/%d); retrying in %.1f s", exc, attempt + 1, http.retries + 1, delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
