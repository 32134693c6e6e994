"""Operations acceptance: backfills on a dask LocalCluster under injected faults, re-runs that do
nothing, SIGKILL in the middle of a write, concurrent runs, verification, doctor."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bias_correction import backfill as backfill_lib
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from tests.conftest import settings_for, toml_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_settings(trained, upstream, tmp_path):
    """A fresh storage root that shares the trained model store (and its grid/mask, copied)."""
    settings, _, root = trained
    import shutil

    s = settings_for(upstream, tmp_path, model_store=settings.model_store)
    src = Path(settings.storage_root) / "grid"
    shutil.copytree(src, Path(s.storage_root) / "grid")
    return s


def _product_files(store: Store) -> list[str]:
    return [k for k in store.list("products") if k.endswith(".nc")]


def test_backfill_60_days_on_local_cluster_with_5_percent_faults(store_settings, upstream) -> None:
    from flows.operations import run_backfill

    s = store_settings
    s = s.model_copy(update={"orchestration": s.orchestration.model_copy(update={"task_retries": 3})})
    start, end = dt.date(2021, 3, 1), dt.date(2021, 4, 29)
    upstream.today = dt.date(2021, 7, 1)  # every needed OISST day is final
    plan = backfill_lib.plan(s, start, end, [s.model_id])
    assert len(plan) == 60 and {p.state for p in plan} == {"missing"}
    assert all(p.bytes_to_download and p.bytes_to_download > 0 for p in plan)

    upstream.faults.random(rate=0.05, seed=11, kinds=("status", "reset", "truncate", "truncate_length"))
    upstream.settle()
    first = len(upstream.requests)
    out = run_backfill(s, start, end)
    upstream.settle()
    injected = [r for r in upstream.requests[first:] if r.fault]
    assert out["done"] == 60 and out["failed"] == []  # ("written" is per last attempt: retries may find it made)
    assert len(injected) >= 5  # the faults really happened and were survived

    store = Store(s.storage_root)
    aliases = {product_key("scs", run_time(d), s.model_id) for d in backfill_lib.dates(start, end)}
    assert aliases <= set(_product_files(store))
    for day in backfill_lib.dates(start, end):
        ds = read_dataset(store.url(product_key("scs", run_time(day), s.model_id)), engine="netcdf4")
        assert ds["sst"].shape == (7, 1, 50, 50) and np.isfinite(ds["sst"].values).any()
    assert not [p for p in Path(s.storage_root).rglob("*") if p.name.endswith((".tmp", ".part"))]
    ledger = backfill_lib.ledger(s, s.model_id, start, end)
    assert len(ledger) == 60 and all(e["state"] == "done" and e["verified"] for e in ledger)
    assert {p.state for p in backfill_lib.plan(s, start, end, [s.model_id])} == {"done"}

    # the same backfill again: no request upstream, no file written
    upstream.faults.clear()
    mtimes = {p: p.stat().st_mtime_ns for p in Path(s.storage_root).rglob("*") if p.is_file()}
    upstream.settle()
    before = len(upstream.requests)
    again = run_backfill(s, start, end)
    upstream.settle()
    assert again["done"] == 60 and again["written"] == 0
    assert len(upstream.requests) == before
    assert {p: p.stat().st_mtime_ns for p in Path(s.storage_root).rglob("*") if p.is_file()} == mtimes


def _cli(args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("point", ["sidecar", "index.json", "convgru-sa.nc"])
def test_sigkill_while_publishing_leaves_no_partial_product(store_settings, upstream, tmp_path, point) -> None:
    """SIGKILL at the sidecar, the index or the alias write: readers see the previous state only."""
    from bias_correction.io import publish

    day = {"sidecar": dt.date(2021, 3, 15), "index.json": dt.date(2021, 3, 16), "convgru-sa.nc": dt.date(2021, 3, 17)}[point]
    cfg = toml_config(store_settings, tmp_path / "c.toml")
    run = run_time(day)
    key = product_key("scs", run, store_settings.model_id)
    store = Store(store_settings.storage_root)
    # the versioned file is copied into place first (not a staged write); the sidecar is the first
    # staged write in the day's folder, then the index, then the alias
    match = {"sidecar": f"products/scs/{day:%Y/%m/%d}/", "index.json": "index.json", "convgru-sa.nc": key}[point]
    crashed = _cli(["run", "--date", day.isoformat(), "--no-verify", "--config", str(cfg)],
                   {"SSTBC_CRASH_AT": f"before_rename:{match}"})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert not store.exists(key)  # the alias never points at something half-made
    index = publish.read_index(store, publish.index_key("scs", run))
    listed = [v["key"] for p in (index or {}).get("products", {}).values() for v in p["versions"]]
    if point != "convgru-sa.nc":
        assert listed == []  # not published: the index (publication point) is untouched
    for name in store.list("products"):  # whatever is visible is whole
        if name.endswith(".nc"):
            read_dataset(store.url(name), engine="netcdf4")
        else:
            json.loads(store.read_bytes(name))
    done = _cli(["run", "--date", day.isoformat(), "--no-verify", "--config", str(cfg), "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert store.exists(key)
    read_dataset(store.url(key), engine="netcdf4")
    assert publish.read_published(store, "scs", run, store_settings.model_id)["sst"].shape == (7, 1, 50, 50)


def test_two_runs_of_the_same_date_at_once_leave_one_valid_product(store_settings, upstream, tmp_path) -> None:
    cfg = toml_config(store_settings, tmp_path / "c.toml")
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--date", "2021-03-16", "--no-verify",
                               "--config", str(cfg), "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    store = Store(store_settings.storage_root)
    products = [k for k in _product_files(store) if "20210316" in k]
    assert len(products) >= 1
    key = product_key("scs", run_time(dt.date(2021, 3, 16)), store_settings.model_id)
    ds = read_dataset(store.url(key), engine="netcdf4")
    assert ds["sst"].shape == (7, 1, 50, 50)
    assert not [p for p in Path(store_settings.storage_root).rglob("*") if p.name.endswith(".tmp")]


def test_verification_flow_scores_tables_and_plots(trained, upstream, tmp_path) -> None:
    from flows.daily import daily_correction
    from flows.operations import verification

    settings, _, _ = trained
    payload = settings.model_dump(mode="json")
    for day in (dt.date(2021, 3, 20), dt.date(2021, 3, 21)):
        daily_correction(payload, day, verify=False)
    out = verification(payload, dt.date(2021, 3, 20), dt.date(2021, 3, 22), str(tmp_path / "plots"))
    assert out["scored"] == ["2021-03-20", "2021-03-21"] and out["no_product"] == ["2021-03-22"]
    assert out["rows"] == 14
    assert len(out["plots"]) == 2 and all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in out["plots"])
    again = verification(payload, dt.date(2021, 3, 20), dt.date(2021, 3, 22), str(tmp_path / "plots"))
    assert again["scored"] == []  # final OISST scores are not recomputed
    from bias_correction.verification.verify import ScoreTable

    rows = [r for r in ScoreTable(Store(settings.storage_root)).rows() if r.run.startswith("2021-03-2")]
    assert all(r.rmse_persistence is not None and r.rmse_corrected_lo <= r.rmse_corrected <= r.rmse_corrected_hi
               for r in rows)


def test_doctor_reports_every_check_without_secrets(trained, tmp_path, monkeypatch, capsys) -> None:
    from flows.cli import main

    settings, _, _ = trained
    cfg = toml_config(settings, tmp_path / "c.toml")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-value-123")
    rc = main(["doctor", "--config", str(cfg), "--json"])
    text = capsys.readouterr().out
    assert "sentinel-secret-value-123" not in text
    out = json.loads(text.strip().splitlines()[-1])
    names = {c["name"]: c for c in out["checks"]}
    assert {"onnxruntime providers", "storage writable", "credentials", "model package",
            "upstream OISST (HTTPS)", "upstream HYCOM (NCSS)"} <= set(names)
    assert names["model package"]["ok"] and names["storage writable"]["ok"]
    assert "AWS_SECRET_ACCESS_KEY" in names["credentials"]["detail"]
    assert rc == (0 if out["ok"] else 1)
    bad = toml_config(settings, tmp_path / "bad.toml", extra='\n').read_text().replace(
        f'storage_root = "{settings.storage_root}"', 'storage_root = "/proc/sstbc-not-writable"')
    (tmp_path / "bad.toml").write_text(bad)
    assert main(["doctor", "--config", str(tmp_path / "bad.toml"), "--offline", "--json"]) == 1
    assert not json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"]


def test_verification_rescores_when_oisst_turns_final(store_settings, upstream, tmp_path) -> None:
    from bias_correction import pipeline
    from bias_correction.verification.verify import ScoreTable
    from flows.daily import daily_correction
    from flows.operations import verification

    s = store_settings
    payload = s.model_dump(mode="json")
    run_day = dt.date(2021, 4, 1)
    daily_correction(payload, run_day, verify=False)
    upstream.today = dt.date(2021, 4, 10)  # valid days 04-02..04-08 exist as preliminary only
    first = verification(payload, run_day, run_day, str(tmp_path / "plots"))
    assert first["scored"] == [run_day.isoformat()]
    table = ScoreTable(Store(s.storage_root))
    assert {r.oisst_version for r in table.rows()} == {"preliminary"}
    assert pipeline.preliminary_days(pipeline.make_context(s))
    upstream.today = dt.date(2021, 5, 15)  # the finals are out, the preliminaries deleted
    second = verification(payload, run_day, run_day, str(tmp_path / "plots"))
    assert second["scored"] == [run_day.isoformat()]
    assert {r.oisst_version for r in table.rows()} == {"final"} and len(table.rows()) == 7
    assert verification(payload, run_day, run_day, str(tmp_path / "plots"))["scored"] == []


def test_cli_paths_stay_inside_the_storage_root(tmp_path) -> None:
    from hypothesis import given, settings as hsettings, strategies as st

    from bias_correction.errors import ConfigError
    from bias_correction.storage import check_key

    store = Store(tmp_path / "root")

    @hsettings(max_examples=300, deadline=None)
    @given(st.text(min_size=1, max_size=40))
    def prop(key: str) -> None:
        try:
            k = check_key(key)
        except ConfigError:
            return
        resolved = Path(store.url(k)).resolve()
        assert str(resolved).startswith(str(Path(store.root).resolve()) + os.sep)

    prop()
    from bias_correction.config import load_settings

    for bad in ({"model_id": "../../etc"}, {"region": {"name": "a/../b"}}, {"model_id": "x y"}):
        with pytest.raises(ConfigError):
            load_settings(**bad)


def test_doctor_fails_a_model_that_cannot_serve_the_configured_region(trained, tmp_path) -> None:
    """The package was trained on the default box's grid: a config for another box must not pass doctor."""
    from bias_correction.config import settings_from_dict
    from bias_correction.doctor import run_checks

    settings, _, _ = trained
    ok = {c.name: c for c in run_checks(settings, network=False)}["model package"]
    assert ok.ok and "serves grid" in ok.detail
    other = settings_from_dict({**settings.model_dump(mode="json"),
                                "region": {"name": "luzon", "lat_min": 16.0, "lat_max": 20.0,
                                           "lon_min": 118.0, "lon_max": 122.0}})
    bad = {c.name: c for c in run_checks(other, network=False)}["model package"]
    assert not bad.ok and "luzon" in bad.detail and "serves grid" in bad.detail


def test_a_date_retried_after_its_attempt_was_killed_between_verifying_and_its_ledger(store_settings, upstream) -> None:
    """The product is up to date and scored on final analyses, but no ledger says so (the worker died after
    verifying): the retry publishes nothing and records the date done and verified."""
    s, day = store_settings, dt.date(2021, 3, 10)
    upstream.today = dt.date(2021, 7, 1)  # every needed OISST day is final
    data = s.model_dump(mode="json")
    first = backfill_lib.run_date(data, day, s.model_id, day)
    assert first["written"] and first["verified"] and first["oisst_versions"] == ["final"]
    store = Store(s.storage_root)
    store.remove(backfill_lib.ledger_key(s, s.model_id, day))  # killed before the ledger was written
    again = backfill_lib.run_date(data, day, s.model_id, day)
    assert not again["written"] and again["state"] == "done" and again["verified"]
    assert json.loads(store.read_bytes(backfill_lib.ledger_key(s, s.model_id, day)))["verified"]
