"""The HTTP core of the loopback stand-in: a threading server on 127.0.0.1, the request log and the route registry.

Why: every upstream service the stand-in imitates (:mod:`.ncei`, :mod:`.ncss`, :mod:`.opendap`,
:mod:`.hycom_files`) is a mixin of :class:`ServerCore` that registers its routes with :func:`route`;
the core matches a request path against the registered routes, applies the fault plan
(:mod:`.faults`) and logs the request. There is no central table of paths.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from bias_correction.testing.standin.faults import FaultInjectingHandler, FaultPlan
from bias_correction.testing.standin.responses import HttpError, Request, Response, html_error
from bias_correction.testing.twin import Twin

_F = TypeVar("_F", bound=Callable[..., Any])
_S = TypeVar("_S", bound="ServerCore")


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; status 0 means the connection was dropped without a response."""

    method: str
    path: str
    query: str
    status: int
    bytes_sent: int
    fault: str | None = None


# ------------------------------------------------------------------------------------------ routes
@dataclass(frozen=True)
class Route:
    """A path pattern (``re.match`` on the unquoted path) and the name of the method that answers it.

    The method is called as ``method(match, request)`` and returns a :class:`~.responses.Response`
    (or raises :class:`~.responses.HttpError`).
    """

    pattern: re.Pattern[str]
    handler: str


def route(pattern: str | re.Pattern[str]) -> Callable[[_F], _F]:
    """Register the decorated method of a service mixin as the handler of paths matching ``pattern``."""
    compiled = re.compile(pattern)

    def mark(func: _F) -> _F:
        func._standin_route = compiled  # type: ignore[attr-defined]
        return func

    return mark


def _collect_routes(cls: type) -> tuple[Route, ...]:
    """Routes of ``cls`` and its bases, in method resolution order (a method overridden lower wins)."""
    seen: set[str] = set()
    routes: list[Route] = []
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            pattern = getattr(attr, "_standin_route", None)
            if pattern is not None:
                routes.append(Route(pattern, name))
    return tuple(routes)


# ------------------------------------------------------------------------------------------ server
class ServerCore:
    """ThreadingHTTPServer on loopback answering with the routes its service mixins register.

    The service paths are disjoint, so the order of the routes does not matter; the first match wins.
    """

    routes: ClassVar[tuple[Route, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.routes = _collect_routes(cls)

    def __init__(self, twin: Twin, workdir: Path, today: date, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.twin = twin
        self.workdir = Path(workdir)
        self.today = today
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rec_lock = threading.Condition()
        self._in_flight = 0
        self._file_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ---- lifecycle
    def start(self: _S) -> _S:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        handler = type("_BoundHandler", (_Handler,), {"stand_in": self})
        httpd = ThreadingHTTPServer((self._host, self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="stand-in-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (handler threads still running are daemons)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # ---- request log
    def begin(self) -> None:
        with self._rec_lock:
            self._in_flight += 1

    def record(self, rec: RequestRecord) -> None:
        with self._rec_lock:
            self.requests.append(rec)
            self._in_flight -= 1
            self._rec_lock.notify_all()

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every request received so far is recorded (clients may return before the
        handler thread has logged the request it just answered)."""
        with self._rec_lock:
            self._rec_lock.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def count(self, path_regex: str) -> int:
        """How many recorded requests have a path matching ``path_regex`` (re.search)."""
        rx = re.compile(path_regex)
        self.settle()
        with self._rec_lock:
            return sum(1 for r in self.requests if rx.search(r.path))

    # ---- files generated on demand
    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._file_locks.get(key)
            if lock is None:
                lock = self._file_locks[key] = threading.Lock()
            return lock

    def _materialise(self, path: Path, write: Any) -> Path:
        """Create ``path`` once, thread-safely (temp name then atomic rename)."""
        with self._lock_for(str(path)):
            if path.exists():
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                write(Path(tmp))
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return path

    # ---- routing
    def respond(self, path: str, query: str, head: bool, if_none_match: str | None,
                range_header: str | None = None) -> Response:
        """The normal (fault-free) response to a GET/HEAD (``range_header``: the request's Range, if any)."""
        request = Request(path, query, head, if_none_match, range_header)
        try:
            for rt in self.routes:
                m = rt.pattern.match(path)
                if m:
                    answer: Response = getattr(self, rt.handler)(m, request)
                    return answer
            raise HttpError(404, "Not Found")
        except HttpError as err:
            if err.plain:
                return Response(err.status, (err.message + "\n").encode(), "text/plain; charset=UTF-8")
            msg = f"The requested URL {path} was not found on this server." if err.status == 404 else err.message
            return html_error(err.status, "Not Found" if err.status == 404 else err.message, msg)


class _Handler(FaultInjectingHandler):
    """Applies the fault plan, then the stand-in's normal routing."""

    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    stand_in: ServerCore  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        return

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(head=True)

    def _handle(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = split.query
        target = path + ("?" + unquote(query) if query else "")
        self.stand_in.begin()
        fault = self.stand_in.faults.take(target)
        kind, params = fault if fault is not None else (None, {})
        status, sent = 0, 0

        def respond(range_header: str | None) -> Response:
            return self.stand_in.respond(path, query, head, self.headers.get("If-None-Match"), range_header)

        try:
            status, sent = self._dispatch(kind, params, head, respond)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            self.stand_in.record(RequestRecord(self.command, path, query, status, sent, kind))
