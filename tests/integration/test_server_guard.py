"""`kill -9` of the CLI (a flow command) takes the ephemeral Prefect API server with it (no orphan left listening)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest


def _listening_server(cli: psutil.Process) -> psutil.Process | None:
    for child in cli.children(recursive=True):
        try:
            if "uvicorn" in " ".join(child.cmdline()) or "flows.server_guard" in " ".join(child.cmdline()):
                if any(c.status == psutil.CONN_LISTEN for c in child.net_connections(kind="tcp")):
                    return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.slow
def test_kill_9_of_the_cli_leaves_no_prefect_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "SSTBC_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), SSTBC_STORAGE_ROOT=str(tmp_path / "data"),
               SSTBC_MODEL_STORE=str(tmp_path / "models"))
    # Upstream at a closed port: the fill flow starts (and so the server), then backs off and retries.
    env.update(SSTBC_UPSTREAM__OISST_HTTPS="http://127.0.0.1:9/oisst", SSTBC_UPSTREAM__HYCOM_NCSS="http://127.0.0.1:9/ncss")
    cli = subprocess.Popen([sys.executable, "-m", "flows.cli", "fetch", "--start", "2021-03-01",
                            "--end", "2021-03-01"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    proc, server = psutil.Process(cli.pid), None
    try:
        deadline = time.monotonic() + 150
        while server is None and time.monotonic() < deadline and cli.poll() is None:
            server = _listening_server(proc)
            time.sleep(0.2)
        assert server is not None, "the ephemeral Prefect server never came up"
        port = next(c.laddr.port for c in server.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(10)
        gone, alive = psutil.wait_procs([server], timeout=5)
        assert server in gone and not alive, f"server {server.pid} outlived its parent"
        assert not any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                       for c in psutil.net_connections(kind="tcp"))
    finally:
        if cli.poll() is None:
            cli.kill()
        if server is not None and server.is_running():
            server.kill()
