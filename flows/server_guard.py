"""The ephemeral Prefect API server dies with the process that started it.

Why: without ``PREFECT_API_URL`` Prefect 3 starts ``python -m uvicorn ...`` as a child
(``SubprocessASGIServer``) and stops it from an ``atexit`` hook, which never runs on ``kill -9``:
the server (~225 MB, listening) was left running, re-parented to PID 1. :func:`install` makes
Prefect start it through :func:`main` here, which sets a parent-death signal and also watches its
parent pid (the signal follows the *thread* that forked, which may end before the process does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import types
from typing import Any

_PR_SET_PDEATHSIG = 1


class _GuardedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """``Popen`` that starts ``python -m uvicorn ARGS`` as ``python -m flows.server_guard PID ARGS``."""

    def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
        args = list(args)
        if args[1:3] == ["-m", "uvicorn"]:
            # The death signal follows the forking thread: arm it only when that is the main thread.
            arm = "1" if threading.current_thread() is threading.main_thread() else "0"
            args = [args[0], "-m", "flows.server_guard", str(os.getpid()), arm, *args[3:]]
        super().__init__(args, *a, **kw)


def install() -> None:
    """Route Prefect's ephemeral server start through the guard (idempotent; only Prefect's server module)."""
    from prefect.server.api import server as srv

    if getattr(srv.subprocess, "_sstbc_guarded", False):
        return
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)
    shim.Popen = _GuardedPopen  # type: ignore[attr-defined]
    shim._sstbc_guarded = True  # type: ignore[attr-defined]
    srv.subprocess = shim  # type: ignore[attr-defined]


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main(argv: list[str]) -> None:
    parent, arm = int(argv[0]), argv[1] == "1"
    if arm and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    log = os.environ.get("_SSTBC_SERVER_LOG")
    if log:  # the CLI sends Prefect's output to a log file: the server's stderr goes there too
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    from uvicorn.main import main as uvicorn_main

    sys.argv = ["uvicorn", *argv[2:]]
    uvicorn_main()


if __name__ == "__main__":  # pragma: no cover - runs as the server process
    main(sys.argv[1:])
