"""A real `prefect server start` on loopback, `sstbc serve` registering the deployments, and a
flow run triggered through the REST API that completes and publishes a product."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from tests.conftest import toml_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process exited early with {p.returncode}")
        try:
            value = predicate()
            if value:
                return value
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_deployments_and_trigger_a_run(trained, upstream, tmp_path) -> None:
    import datetime as dt

    settings, _, _ = trained
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    logs = [open(tmp_path / "server.log", "w"), open(tmp_path / "serve.log", "w")]
    # the prefect CLI of this interpreter's environment (CI does not put the venv on PATH)
    prefect_cli = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect_cli, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    served = None
    try:
        _wait(lambda: requests.get(f"{api}/health", timeout=5).status_code == 200, 180, "prefect server health", [server])
        cfg = toml_config(settings, tmp_path / "c.toml")
        served = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--config", str(cfg)], cwd=ROOT, env=env,
                                  stdout=logs[1], stderr=subprocess.STDOUT)
        dep = _wait(lambda: (r := requests.get(f"{api}/deployments/name/sstbc-scheduled-daily/daily-correction",
                                               timeout=5)).status_code == 200 and r.json(), 180, "deployment", [served])
        assert dep["schedules"] and dep["schedules"][0]["schedule"]["cron"] == settings.orchestration.daily_cron
        wanted = {"daily-correction", "daily-verification", "retraining", "backfill"}
        _wait(lambda: wanted <= {d["name"] for d in requests.post(f"{api}/deployments/filter", json={}, timeout=10).json()},
              120, "all four deployments", [served])
        run = requests.post(f"{api}/deployments/{dep['id']}/create_flow_run",
                            json={"parameters": {"day": "2021-03-12"}}, timeout=10).json()
        assert "id" in run, run  # the API's answer (e.g. a parameter validation error)
        state = _wait(lambda: (s := requests.get(f"{api}/flow_runs/{run['id']}", timeout=5).json()["state"])["type"]
                      in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and s, 300, "flow run", [served])
        assert state["type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        key = product_key("scs", run_time(dt.date(2021, 3, 12)), settings.model_id)
        assert Store(settings.storage_root).exists(key)
    finally:
        for p in (served, server):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in logs:
            f.close()
