"""A multi-region backfill on a real dask cluster: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (separate processes, not a LocalCluster), one worker SIGKILLed while it runs a task.

The backfill (``sstbc backfill --region all`` with ``orchestration.dask_scheduler`` pointing at the scheduler)
must finish on the surviving worker with every (region, date) product published exactly once: one versioned
file, the alias, one index entry, one catalogue entry and one Zarr run each, nothing lost, nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bias_correction import backfill as backfill_lib
from bias_correction import catalog
from bias_correction.io import publish, zarr_store
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store

pytestmark = [pytest.mark.slow, pytest.mark.dask_cluster]

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
START, END = dt.date(2021, 3, 2), dt.date(2021, 3, 5)
REGIONS = ("west", "east")
#: A loaded 2-core test machine starves the scheduler's event loop for tens of seconds: comms are given time
#: before a connection counts as dead (dask's 30 s defaults dropped the client and lost its futures).
PATIENT = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "120s", "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "300s"}


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(DASK), *args], cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for(what: str, cond, timeout: float, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tail = "\n".join(p.read_text(errors="replace")[-1500:] for p in logs if p.exists())
            raise AssertionError(f"{what}: {'a process exited' if dead else 'timed out'}\n{tail}")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path, prefect_harness):
    """Scheduler + two single-threaded workers without nannies (a killed worker stays dead), each its own process."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           # resubmission on worker loss, explicit (deploy/ sets the same on its schedulers)
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3", **PATIENT}
    sched_file = tmp_path / "scheduler.json"
    logs = [tmp_path / "scheduler.log", tmp_path / "w1.log", tmp_path / "w2.log"]
    procs = [_spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                     str(sched_file)], env, logs[0])]
    try:
        _wait_for("scheduler start", sched_file.exists, 60, procs, logs)
        for i, log in ((1, logs[1]), (2, logs[2])):
            procs.append(_spawn(["worker", "--scheduler-file", str(sched_file), "--name", f"w{i}", "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], env, log))
        address = json.loads(sched_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
            yield {"address": address, "client": client, "workers": {"w1": procs[1], "w2": procs[2]}, "logs": logs}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _ledgers(multi) -> list[Path]:
    return [p for r in REGIONS for p in (multi.root / "data" / r / "backfill").rglob("*.json")]


@pytest.mark.timeout(1200)  # setup included: the two regions' models are trained by the fixture
def test_multi_region_backfill_survives_a_killed_worker(multi_region, cluster, tmp_path) -> None:
    multi = multi_region
    cfg = multi.toml(tmp_path / "sstbc.toml", *REGIONS)
    client = cluster["client"]
    assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 3
    env = {**os.environ, "PREFECT_API_URL": os.environ.get("PREFECT_API_URL", ""),
           "SSTBC_ORCHESTRATION__DASK_SCHEDULER": cluster["address"], **PATIENT}
    from prefect.settings import PREFECT_API_URL

    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    t0 = time.monotonic()
    cli_log = tmp_path / "cli.log"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "-v", "backfill", "--start", START.isoformat(), "--end",
                             END.isoformat(), "--region", "all", "--config", str(cfg), "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=open(cli_log, "wb"), text=True)
    try:
        # once the first (region, date) is done, SIGKILL a worker in the middle of its next task
        _wait_for("first date done", lambda: bool(_ledgers(multi)), 400, [proc], [cli_log, *cluster["logs"]])
        names = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            busy = {addr for addr, keys in client.processing().items() if keys}
            victim = next((n for n, addr in sorted(names.items()) if addr in busy), None)
            time.sleep(0.05)
        assert victim is not None, "no worker was running a task after the first date finished"
        lost = client.processing()[names[victim]]
        killed = cluster["workers"][victim]
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(timeout=10) == -signal.SIGKILL
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, cli_log.read_text(errors="replace")[-3000:]
    result = json.loads(out)
    n = len(REGIONS) * len(backfill_lib.dates(START, END))
    assert result["dates"] == n and result["done"] == n and result["failed"] == [], result
    assert {r: t["done"] for r, t in result["regions"].items()} == {r: n // len(REGIONS) for r in REGIONS}
    assert lost, "the killed worker had a task in hand"
    survivor = next(w for w in cluster["workers"] if w != victim)
    assert [i["name"] for i in client.scheduler_info()["workers"].values()] == [survivor]

    s = multi.settings(*REGIONS)
    for region in REGIONS:
        rs = s.for_region(region)
        store = Store(rs.storage_root)
        refs = catalog.list_products(store, region, start=START, end=END, model_id=rs.model_id)
        runs = [r.run for r in refs]
        assert len(runs) == len(set(runs)) == len(backfill_lib.dates(START, END)), (region, runs)  # once each
        for day in backfill_lib.dates(START, END):
            run = run_time(day)
            index = publish.read_index(store, publish.index_key(region, run))
            versions = index["products"][publish.product_id(region, run, rs.model_id)]["versions"]
            files = [k for k in store.list(publish.day_prefix(region, run)) if k.endswith(".nc")]
            assert store.exists(product_key(region, run, rs.model_id))
            assert len(files) == 1 and len(versions) == 1, (region, day, files, versions)  # one version, once
            assert versions[0]["key"] == files[0]
            entry = json.loads(store.read_bytes(backfill_lib.ledger_key(rs, rs.model_id, day)))
            assert entry["state"] == "done" and entry["verified"]
        ds = zarr_store.open_store(store, region, rs.model_id)
        frt = ds["forecast_reference_time"].values
        assert len(frt) == len(np.unique(frt)) == len(backfill_lib.dates(START, END))
        assert not [p for p in Path(rs.storage_root).rglob("*") if p.name.endswith((".tmp", ".part"))]
    # the regions' products live apart; the raw cache is shared at the top of the storage root
    assert not (multi.root / "data" / "products").exists() and (multi.root / "data" / "raw").is_dir()
    print(f"dask cluster backfill: {n} (region, date)s in {elapsed:.1f} s, worker {victim} killed holding {lost}")
