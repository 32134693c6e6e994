"""The only module that talks HTTP (requests): downloads with explicit timeouts, checked status,
content type and length; the cache, retries and ledger are in :mod:`bias_correction.sources.cache`.

Failure classes: 404 -> :class:`NotYetPublishedError`; 5xx/429, timeouts, resets and bodies cut
short -> :class:`TransientFetchError` (retried here with backoff); 400/401/403 ->
:class:`UpstreamRejectedError`; HTML pages or wrong content -> :class:`CorruptInputError`.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from bias_correction.sources.cache import (  # noqa: F401  (re-exported: the ledger API lives in cache)
    Fetched,
    Validator,
    acquire,
    backoff_delays,
    cached,
    ledger_key,
    sha256_file,
)
from bias_correction.storage import Store

USER_AGENT = "sstbc/0.1 (+https://github.com/sstbc)"


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


def fetch(
    url: str,
    store: Store,
    key: str,
    *,
    http: Http,
    what: str,
    version: str,
    validate: Validator | None = None,
    session: requests.Session | None = None,
) -> Fetched:
    """Return the cached file at ``key`` or download ``url`` into it, validated, with retries.

    ``what`` names the data for error messages (e.g. ``"OISST 2021-03-01"``); ``validate(path,
    label)`` checks the content (variables, dims, dates, values) and raises a CorruptInputError
    subclass whose message starts with ``label`` (names the data, the file and the URL).
    """
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", USER_AGENT)

    def download(tmp: Path, label: str) -> Mapping[str, str | None]:
        resp = _download_once(session, url, tmp, http, label)
        return {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}

    return acquire(url, store, key, http=http, what=what, version=version, download=download, validate=validate)


def head_size(url: str, http: Http, session: requests.Session | None = None) -> int | None:
    """Content-Length of ``url`` from a HEAD request; None when unpublished or unknown."""
    session = session or requests.Session()
    try:
        resp = session.head(url, timeout=(http.connect_timeout_s, http.read_timeout_s), allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFetchError(f"HEAD {url}: network failure: {type(exc).__name__}") from None
    if resp.status_code != 200:
        return None
    length = resp.headers.get("Content-Length")
    return int(length) if length is not None else None


def probe(url: str, http: Http, method: str = "HEAD") -> int:
    """HTTP status of a HEAD (or GET) of ``url``; TransientFetchError when nothing answers."""
    try:
        resp = requests.request(method, url, timeout=(http.connect_timeout_s, min(http.read_timeout_s, 10.0)),
                                allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFetchError(f"{url} unreachable: {type(exc).__name__}") from None
    return resp.status_code
