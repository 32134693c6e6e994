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


def _api_json(method: str, url: str, *, within: float = 90.0, **kw):
    """One API call, retried (bounded) while the server answers 5xx: a fresh Prefect server can pass its
    health check and still answer 503 'Service Unavailable' while its services start (seen in CI)."""
    deadline = time.monotonic() + within
    while True:
        try:
            r = requests.request(method, url, timeout=10, **kw)
            if r.status_code < 500:
                return r.json()
            why = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as exc:
            why = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing for {within:.0f} s: {why}")
        time.sleep(1)


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
        _wait(lambda: wanted <= {d["name"] for d in _api_json("POST", f"{api}/deployments/filter", json={})},
              120, "all four deployments", [served])
        run = _api_json("POST", f"{api}/deployments/{dep['id']}/create_flow_run",
                        json={"parameters": {"day": "2021-03-12"}})
        assert "id" in run, run  # the API's answer (e.g. a parameter validation error)
        state = _wait(lambda: (s := _api_json("GET", f"{api}/flow_runs/{run['id']}")["state"])["type"]
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
