"""Fault injection of the stand-in: the plan of faults to apply and how each one goes on the wire.

Why: downloaders and retry logic must meet the failures the real services show: 404 and 5xx (``status``),
HTML error pages with status 200 (``html200``), bodies cut short with and without Content-Length
(``truncate``, ``truncate_length``), connection resets (``reset``), stalls (``stall``), slow links
(``slow``) and servers that ignore Range (``ignore_range``), deterministically (seeded random mode).
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from bias_correction.testing.standin.responses import Response, html_error

#: ``ignore_range``: answer a Range request with 200 and the whole body (as servers without Range support do).
FAULT_KINDS = ("status", "html200", "truncate", "truncate_length", "stall", "reset", "slow", "ignore_range")


@dataclass
class _Fault:
    regex: re.Pattern[str]
    kind: str
    remaining: int | None
    params: dict[str, Any]


@dataclass
class _RandomFaults:
    rate: float
    rng: random.Random
    kinds: tuple[str, ...]
    regex: re.Pattern[str]
    params: dict[str, Any]


class FaultPlan:
    """Faults to inject, matched with ``re.search`` against the request target (path + '?' + query)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._random: _RandomFaults | None = None

    def add(self, path_regex: str, kind: str, times: int | None = 1, **params: Any) -> None:
        """Inject ``kind`` into the next ``times`` matching requests (None: all of them).

        Params: status -> code (int), body (str|bytes, optional); stall -> seconds; slow -> bytes_per_s.
        """
        _check_kind(kind, params)
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(re.compile(path_regex), kind, times, dict(params)))

    def random(self, rate: float, seed: int, kinds: Sequence[str] = ("status", "truncate", "reset"),
               path_regex: str = ".*", **params: Any) -> None:
        """Apply a random fault kind to a fraction ``rate`` of matching requests, reproducible given seed and order.

        Params: codes (status codes to draw from, default 500/502/503), seconds (stall, default 0.5),
        bytes_per_s (slow, default 2e6), body.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._random = _RandomFaults(rate, random.Random(seed), tuple(kinds), re.compile(path_regex), dict(params))

    def clear(self) -> None:
        """Remove every fault, random mode included."""
        with self._lock:
            self._faults.clear()
            self._random = None

    def pending(self) -> int:
        """Number of explicit faults still armed."""
        with self._lock:
            return len(self._faults)

    def take(self, target: str) -> tuple[str, dict[str, Any]] | None:
        """The fault to apply to this request, if any (explicit faults first, then the random mode)."""
        with self._lock:
            for fault in self._faults:
                if fault.regex.search(target):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault.kind, dict(fault.params)
            rnd = self._random
            if rnd is not None and rnd.kinds and rnd.regex.search(target):
                hit = rnd.rng.random() < rnd.rate
                kind = rnd.rng.choice(rnd.kinds)
                code = rnd.rng.choice(tuple(rnd.params.get("codes", (500, 502, 503))))
                if hit:
                    params: dict[str, Any] = {"code": code, "seconds": rnd.params.get("seconds", 0.5),
                                              "bytes_per_s": rnd.params.get("bytes_per_s", 2_000_000)}
                    if "body" in rnd.params:
                        params["body"] = rnd.params["body"]
                    return kind, params
        return None


def _check_kind(kind: str, params: dict[str, Any]) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
    if kind == "status" and not isinstance(params.get("code"), int):
        raise ValueError("fault 'status' needs an int param code=...")
    if kind == "stall" and "seconds" not in params:
        raise ValueError("fault 'stall' needs param seconds=...")
    if kind == "slow" and not params.get("bytes_per_s"):
        raise ValueError("fault 'slow' needs param bytes_per_s=...")


_HTML200_BODY = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n<body>\n"
                 b"<h1>The service is temporarily unavailable</h1>\n<p>The server is under maintenance. "
                 b"Please try again later.</p>\n</body></html>\n")


class FaultInjectingHandler(BaseHTTPRequestHandler):
    """Sends a response with the fault of the plan (if any) applied; subclasses route the request."""

    def _dispatch(self, kind: str | None, params: dict[str, Any], head: bool,
                  respond: Callable[[str | None], Response]) -> tuple[int, int]:
        """Apply fault ``kind`` (None: none); ``respond(range_header)`` makes the normal response."""
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()
            self.connection.close()
            return 0, 0
        if kind == "status":
            code = int(params["code"])
            body = params.get("body")
            if body is None:
                resp = html_error(code, self.responses.get(code, ("Error",))[0], f"Injected error {code}.")
            else:
                resp = Response(code, body.encode() if isinstance(body, str) else bytes(body))
            return self._send(resp, head)
        if kind == "html200":
            body = params.get("body", _HTML200_BODY)
            return self._send(Response(200, body.encode() if isinstance(body, str) else body,
                                       "text/html; charset=UTF-8"), head)
        if kind == "stall":
            time.sleep(float(params["seconds"]))
        range_header = None if kind == "ignore_range" else self.headers.get("Range")
        resp = respond(range_header)
        if kind == "truncate":
            return self._send(resp, head, cut=True, http10=True)
        if kind == "truncate_length":
            return self._send(resp, head, cut=True)
        if kind == "slow":
            return self._send(resp, head, bytes_per_s=float(params["bytes_per_s"]))
        return self._send(resp, head)

    def _send(self, resp: Response, head: bool, *, cut: bool = False, http10: bool = False,
              bytes_per_s: float | None = None) -> tuple[int, int]:
        body = resp.body
        if http10:
            self.protocol_version = "HTTP/1.0"
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            if key != "Content-Length":
                self.send_header(key, value)
        if http10:
            self.send_header("Connection", "close")
        elif "Content-Length" in resp.headers:
            self.send_header("Content-Length", resp.headers["Content-Length"])
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:
            self.close_connection = True
        if head or resp.status == 304:
            return resp.status, 0
        if resp.stream is not None:
            sent = 0
            for piece in resp.stream:
                self.wfile.write(piece)
                sent += len(piece)
            return resp.status, sent
        if cut:
            body = body[: len(body) // 2]
        if bytes_per_s is None:
            self.wfile.write(body)
            sent = len(body)
        else:
            chunk = max(1, int(bytes_per_s / 20))
            sent = 0
            for start in range(0, len(body), chunk):
                piece = body[start:start + chunk]
                self.wfile.write(piece)
                sent += len(piece)
                time.sleep(len(piece) / bytes_per_s)
        if cut:
            self.wfile.flush()
        return resp.status, sent
