"""Shared fixtures: the twin, loopback stand-ins of NCEI/HYCOM, settings pointing at them, Prefect."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Prefect reads its settings at import; keep tests quiet, offline and isolated.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
for _k in [k for k in os.environ if k.startswith("SSTBC_")]:
    os.environ.pop(_k)

from bias_correction.config import Settings, settings_from_dict  # noqa: E402
from bias_correction.testing.standin import StandInServer  # noqa: E402
from bias_correction.testing.twin import Twin  # noqa: E402

#: The stand-ins' clock: every day of early 2021 is published as final.
TODAY = dt.date(2021, 5, 15)


@pytest.fixture(scope="session")
def twin() -> Twin:
    return Twin()


@pytest.fixture(scope="session")
def upstream(twin: Twin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInServer]:
    with StandInServer(twin, tmp_path_factory.mktemp("upstream"), TODAY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "upstream" in request.fixturenames:
        server = request.getfixturevalue("upstream")
        server.faults.clear()
        server.today = TODAY


def settings_for(server: StandInServer, root: Path, **over: Any) -> Settings:
    """Settings pointing at the stand-ins, with short timeouts and no real backoff.

    No halo (``grid_halo_cells`` 0) unless a test asks for one: these tests are about fetching, archiving,
    flows and failures on the region's own grid, and the default halo (8 cells) makes every grid 1.7x larger
    (the 60-day backfill alone: 182 -> 283 s). The default halo runs end to end in
    ``tests/integration/test_default_halo.py`` and ``tests/correction/test_halo_pipeline.py``."""
    data: dict[str, Any] = {
        "grid_halo_cells": 0,
        "storage_root": str(root / "data"),
        "model_store": str(root / "models"),
        "upstream": {"oisst_https": server.oisst_https_base, "hycom_ncss": server.hycom_ncss_base},
        "orchestration": {"task_retries": 1, "task_retry_delay_s": 0.1},
        "http": {"connect_timeout_s": 5, "read_timeout_s": 20, "retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.05},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return settings_from_dict(data)


@pytest.fixture
def settings(upstream: StandInServer, tmp_path: Path) -> Settings:
    return settings_for(upstream, tmp_path)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real (temporary) Prefect API server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


TRAIN_START, TRAIN_END = dt.date(2021, 2, 1), dt.date(2021, 2, 24)


@pytest.fixture(scope="session")
def trained(prefect_harness, upstream, tmp_path_factory):
    """(settings, training-flow output, root) of a store trained by the real training flow
    (small model, short period), shared by every test that needs a model package."""
    from flows.daily import training

    root = tmp_path_factory.mktemp("trained")
    settings = settings_for(upstream, root, training={
        "start": TRAIN_START.isoformat(), "end": TRAIN_END.isoformat(), "epochs": 3, "features": 4, "hidden": 8,
        "patience": 2})
    out = training(settings.model_dump(mode="json"), TRAIN_START, TRAIN_END)
    return settings, out, root


def toml_config(settings: Settings, path: Path, *, extra: str = "") -> Path:
    """A config file equivalent to ``settings`` for the storage, models, upstream and retries."""
    s = settings
    path.write_text(
        f'storage_root = "{s.storage_root}"\nmodel_store = "{s.model_store}"\ngrid_halo_cells = {s.grid_halo_cells}\n'
        f'[upstream]\noisst_https = "{s.upstream.oisst_https}"\nhycom_ncss = "{s.upstream.hycom_ncss}"\n'
        f'[orchestration]\ntask_retries = 1\ntask_retry_delay_s = 0.1\n'
        f'[http]\nconnect_timeout_s = 5\nread_timeout_s = 20\nretries = 1\nbackoff_s = 0.01\nbackoff_max_s = 0.01\n'
        + extra
    )
    return path
