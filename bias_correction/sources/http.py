"""The only module that talks HTTP (requests): downloads with explicit timeouts, checked status,
content type and length; the cache, retries and ledger are in :mod:`bias_correction.sources.cache`.

Three kinds of request: whole-file downloads (:func:`fetch`, NCSS and the OISST tree), DAP2 data
requests (:func:`dap_body`, decoded by :mod:`bias_correction.sources.wire.dap2`) and verified byte
ranges (:class:`RangeReader`, for whole HYCOM forecast files).

Failure classes: 404 -> :class:`NotYetPublishedError`; 5xx/429, timeouts, resets and bodies cut
short -> :class:`TransientFetchError` (retried here with backoff); 400/401/403 ->
:class:`UpstreamRejectedError`; an HTML page with status 200 -> :class:`MaintenancePageError` (retried
like a 5xx, then permanent for that file); wrong content -> :class:`CorruptInputError`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from bias_correction.config import Http
from bias_correction.errors import (
    MaintenancePageError,
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
    still_html,
    ledger_key,
    sha256_file,
)
from bias_correction.storage import Store

LOG = logging.getLogger(__name__)
USER_AGENT = "sstbc/0.1 (+https://github.com/sstbc)"
#: The session type, for callers that hold one across requests without importing requests themselves.
Session = requests.Session


def new_session() -> requests.Session:
    """A plain session (connection reuse across the requests of one acquisition)."""
    return requests.Session()


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
                raise MaintenancePageError(f"{what}: answered 200 with an HTML page ({ctype}), not NetCDF")
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


def dap_body(session: requests.Session, url: str, constraint: str, http: Http, label: str) -> bytes:
    """The body of the DAP2 data request ``url.dods?constraint``, status and length checked (not decoded)."""
    full = f"{url}.dods?{constraint}"
    try:
        with session.get(full, timeout=(http.connect_timeout_s, http.read_timeout_s)) as resp:
            code = resp.status_code
            if code in (404, 410):
                raise NotYetPublishedError(f"{label}: not published (HTTP {code} for the DAP data request)")
            if code == 429 or code >= 500:
                raise TransientFetchError(f"{label}: DAP server error HTTP {code}")
            if code != 200:
                raise UpstreamRejectedError(f"{label}: DAP request {constraint!r} refused (HTTP {code}): "
                                            f"{resp.text[:200].strip()}")
            if "html" in resp.headers.get("Content-Type", "").lower():
                raise MaintenancePageError(f"{label}: DAP data request answered with an HTML page (status 200)")
            body = resp.content
            expected = resp.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                raise TruncatedDownloadError(f"{label}: DAP response cut short, {len(body)} of {expected} bytes")
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFetchError(f"{label}: network failure: {type(exc).__name__}: {exc}") from None
    except requests.exceptions.ChunkedEncodingError as exc:
        raise TruncatedDownloadError(f"{label}: DAP response cut short: {exc}") from None
    return body


_RE_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RangeReader:
    """Verified HTTP Range reads with per-request retries (backoff as :func:`backoff_delays`)."""

    def __init__(self, http: Http, session: requests.Session | None = None) -> None:
        self.http = http
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.requests = 0

    def read(self, url: str, start: int, end: int, label: str) -> tuple[bytes, int]:
        """Bytes start..end (inclusive; clipped to the file) and the file's total size."""
        delays = backoff_delays(self.http)
        for attempt in range(self.http.retries + 1):
            try:
                return self._once(url, start, end, label)
            except TransientFetchError as exc:
                if attempt >= self.http.retries:
                    raise still_html(exc, attempt + 1) from None
                LOG.warning("%s (attempt %d/%d); retrying in %.2f s", exc, attempt + 1, self.http.retries + 1,
                            delays[attempt])
                time.sleep(delays[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, url: str, start: int, end: int, label: str) -> tuple[bytes, int]:
        self.requests += 1
        what = f"{label} [bytes {start}-{end}]"
        try:
            with self.session.get(url, headers={"Range": f"bytes={start}-{end}"}, stream=True,
                                  timeout=(self.http.connect_timeout_s, self.http.read_timeout_s)) as resp:
                code = resp.status_code
                ctype = resp.headers.get("Content-Type", "")
                if code in (404, 410):
                    raise NotYetPublishedError(f"{label}: not published (HTTP {code})")
                if code == 429 or code >= 500:
                    raise TransientFetchError(f"{what}: server error HTTP {code}")
                if code in (400, 401, 403):
                    raise UpstreamRejectedError(f"{what}: request refused (HTTP {code})")
                if code == 416:
                    raise TruncatedDownloadError(f"{what}: range not satisfiable (HTTP 416, {resp.headers.get('Content-Range')}): "
                                                 "the file on the server is shorter than its header says")
                if "html" in ctype.lower():
                    raise MaintenancePageError(f"{what}: answered HTTP {code} with an HTML page ({ctype}), not NetCDF bytes")
                if code == 200:
                    raise TruncatedDownloadError(
                        f"{what}: server ignored the Range request (HTTP 200, whole file of "
                        f"{resp.headers.get('Content-Length', '?')} bytes); not downloading it")
                if code != 206:
                    raise UpstreamRejectedError(f"{what}: unexpected HTTP {code}")
                m = _RE_CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
                if not m or m.group(3) == "*":
                    raise TransientFetchError(f"{what}: 206 without a usable Content-Range "
                                              f"({resp.headers.get('Content-Range')!r})")
                first, last, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
                want_last = min(end, total - 1)
                if first != start or last != want_last:
                    raise TransientFetchError(f"{what}: Content-Range {first}-{last}/{total} does not match the request")
                n = last - first + 1
                body = bytearray()
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    body += chunk
                    if len(body) > n:
                        break
                if len(body) != n:
                    raise TruncatedDownloadError(f"{what}: body has {len(body)} bytes, Content-Range says {n}")
                return bytes(body), total
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientFetchError(f"{what}: network failure: {type(exc).__name__}: {exc}") from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise TruncatedDownloadError(f"{what}: body cut short: {exc}") from None
