"""Where Prefect's own log lines go: a log file under the storage root instead of the terminal.

Why: a failing task makes Prefect print tracebacks (tens to hundreds of stderr lines) before sstbc's
one clear error line. Without ``-v`` those lines go to ``logs/sstbc-<UTC time>-<pid>.log`` (created
only when something is logged); the error line names the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Not an SSTBC_* variable: those are configuration keys, and unknown ones are rejected.
SERVER_LOG_ENV = "_SSTBC_SERVER_LOG"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path(storage_root: str | None) -> Path:
    """The log file of this invocation: under a local storage root, else in the temporary directory."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"sstbc-{stamp}-{os.getpid()}.log"
    fallback = Path(tempfile.gettempdir()) / "sstbc" / "logs" / name
    if storage_root is None or "://" in storage_root:
        return fallback
    path = Path(storage_root) / "logs" / name
    try:  # an unwritable root is the command's error to report; the log still needs a home
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return fallback
    return path


def _is_console(handler: logging.Handler) -> bool:
    """Prefect's console handlers, and any plain stream handler writing to the terminal's stderr."""
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler, _SafeStreamHandler

    if isinstance(handler, (PrefectConsoleHandler, _SafeStreamHandler)):
        return True
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (sys.stderr, sys.__stderr__)


@contextlib.contextmanager
def prefect_to_file(path: Path) -> Iterator[logging.Handler]:
    """Replace Prefect's console handlers by one file handler for the duration; restore them after."""
    import prefect.main  # noqa: F401  (importing it installs Prefect's logging configuration)

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger) and lg.handlers]
    swapped: list[tuple[logging.Logger, list[logging.Handler]]] = []
    for lg in loggers:
        console = [h for h in lg.handlers if _is_console(h)]
        if console:
            swapped.append((lg, console))
            for h in console:
                lg.removeHandler(h)
            lg.addHandler(handler)
    os.environ[SERVER_LOG_ENV] = str(path)  # the ephemeral API server's stderr (flows.server_guard)
    try:
        yield handler
    finally:
        os.environ.pop(SERVER_LOG_ENV, None)
        for lg, console in swapped:
            lg.removeHandler(handler)
            for h in console:
                lg.addHandler(h)
        handler.close()
