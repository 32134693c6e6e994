"""What a stand-in route hands back: the request it sees, its response, its errors.

Why: the server core, the fault injection and every service module share these few types; keeping them
apart from :mod:`.server` lets the service modules import them without importing the core that composes them.
"""

from __future__ import annotations

import email.utils
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

NETCDF_TYPE = "application/x-netcdf"


@dataclass(frozen=True)
class Request:
    """The parts of a GET/HEAD a route may look at (``path`` unquoted, ``query`` raw)."""

    path: str
    query: str
    head: bool
    if_none_match: str | None = None
    range_header: str | None = None


# ------------------------------------------------------------------------------------------ responses
@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=iso-8859-1"
    headers: dict[str, str] = field(default_factory=dict)
    #: A body made lazily, piece by piece (a virtual multi-GB file); ``body`` is then empty.
    stream: Iterable[bytes] | None = None


class HttpError(Exception):
    def __init__(self, status: int, message: str, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.plain = plain


def html_error(status: int, title: str, message: str) -> Response:
    body = (f'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>{status} {html.escape(title)}'
            f"</title>\n</head><body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(message)}</p>\n</body></html>\n")
    return Response(status, body.encode("latin-1", "replace"))


def http_date(when: datetime) -> str:
    return email.utils.format_datetime(when.replace(tzinfo=timezone.utc), usegmt=True)
