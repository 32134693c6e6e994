"""One service for several regions: the shared raw cache, and the fan-out in which one region fails.

``sstbc run --region all`` (the CLI) and the scheduled daily flow (the deployment) correct every region; the
region without a model (``north``) fails, alone: the others' products exist, and the exit code / the flow
run's error names the failed region.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bias_correction import pipeline
from bias_correction.config import settings_from_dict
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from tests.conftest import settings_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_regions_share_the_raw_cache_where_their_requests_overlap(upstream, tmp_path) -> None:
    base = settings_for(upstream, tmp_path).model_dump(mode="json")
    base.pop("region")
    s = settings_from_dict({**base, "regions": [
        {"name": "a"}, {"name": "b"},  # the same box: the same HYCOM subset URL
        {"name": "c", "lat_min": 14.0, "lat_max": 15.0, "lon_min": 111.0, "lon_max": 112.0}]})
    ctx = {n: pipeline.make_context(s.for_region(n)) for n in s.region_names}
    day = dt.date(2021, 3, 20)
    upstream.settle()
    n0 = len(upstream.requests)
    first = pipeline.archive_oisst_day(ctx["a"], day), pipeline.archive_hycom_run(ctx["a"], day)
    upstream.settle()
    n1 = len(upstream.requests)
    assert n1 > n0 and all(e.written for e in first)
    second = pipeline.archive_oisst_day(ctx["b"], day), pipeline.archive_hycom_run(ctx["b"], day)
    upstream.settle()
    assert len(upstream.requests) == n1  # b: same URLs, served from the shared cache
    assert all(e.written for e in second)  # b's own archive (its own store) was still written
    pipeline.archive_oisst_day(ctx["c"], day)
    upstream.settle()
    assert len(upstream.requests) == n1  # c: other box, but the global OISST file is the same URL
    pipeline.archive_hycom_run(ctx["c"], day)
    upstream.settle()
    assert len(upstream.requests) > n1  # c's HYCOM subset is another request
    data = tmp_path / "data"
    raw = sorted(p.relative_to(data).parts[:2] for p in data.rglob("*.nc") if "raw" in p.relative_to(data).parts[:1])
    assert raw and {r[0] for r in raw} == {"raw"}
    for n in ("a", "b", "c"):
        assert list((data / n / "archive").rglob("*.nc")), n  # each region's archive apart
        assert not (data / n / "raw").exists()


def _cli(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_run_all_regions_one_failing_region_stops_no_other(multi_region, tmp_path) -> None:
    cfg = multi_region.toml(tmp_path / "sstbc.toml")
    day = dt.date(2021, 3, 3)
    done = _cli(["run", "--date", day.isoformat(), "--region", "all", "--no-verify", "--config", str(cfg), "--json"])
    assert done.returncode == 1, done.stderr[-3000:]
    out = json.loads(done.stdout)  # exactly one JSON object
    assert set(out["regions"]) == {"west", "east"}
    assert [f["region"] for f in out["failed_regions"]] == ["north"], out["failed_regions"]
    assert "north" in out["failed_regions"][0]["message"] or "models/north" in out["failed_regions"][0]["message"]
    failed_lines = [line for line in done.stderr.splitlines() if line.startswith("sstbc: run: region")]
    assert len(failed_lines) == 1 and "region north:" in failed_lines[0], done.stderr[-2000:]
    s = multi_region.settings()
    for region in ("west", "east"):
        rs = s.for_region(region)
        key = product_key(region, run_time(day), rs.model_id)
        assert out["regions"][region]["product"]["key"] == key
        assert Store(rs.storage_root).exists(key)  # under storage_root/<region>/
        assert out["regions"][region]["model"]["id"] == rs.model_id
    assert not Store(s.for_region("north").storage_root).exists("products")

    one = _cli(["run", "--date", day.isoformat(), "--region", "east", "--no-verify", "--config", str(cfg), "--json"])
    assert one.returncode == 0, one.stderr[-2000:]
    assert json.loads(one.stdout)["product"]["written"] is False  # the single-region output, unchanged


def test_scheduled_daily_fans_out_one_subflow_per_region(multi_region) -> None:
    from bias_correction.regions import RegionsFailed
    from flows.operations import scheduled_daily

    s = multi_region.settings()
    day = dt.date(2021, 3, 4)
    with pytest.raises(RegionsFailed) as info:
        scheduled_daily(s.model_dump(mode="json"), day)
    msg = str(info.value)
    assert "1 of 3 region(s) failed" in msg and "region north:" in msg and "completed: west, east" in msg
    for region in ("west", "east"):
        rs = s.for_region(region)
        assert Store(rs.storage_root).exists(product_key(region, run_time(day), rs.model_id)), region
