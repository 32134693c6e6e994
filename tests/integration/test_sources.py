"""Source adapters against the loopback stand-ins, including injected faults."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import (
    CorruptInputError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
    UpstreamRejectedError,
)
from bias_correction.sources.hycom import HycomSource, run_time
from bias_correction.sources.oisst import FINAL, PRELIMINARY
from bias_correction.storage import Store

DAY = dt.date(2021, 2, 10)
OISST_FILE = r"oisst-avhrr-v02r01\.20210210"


def test_oisst_final_is_downloaded_once_with_a_ledger(settings, upstream) -> None:
    ctx = pipeline.make_context(settings, today=lambda: upstream.today)
    before = upstream.count(OISST_FILE)
    first = ctx.oisst.fetch(DAY)
    assert first.downloaded and first.version == FINAL
    assert first.url.endswith("/202102/oisst-avhrr-v02r01.20210210.nc")
    ledger = json.loads(ctx.store.read_bytes(first.key + ".json"))
    assert ledger["sha256"] == first.sha256 and ledger["size"] == ctx.store.size(first.key) > 1_000_000
    again = ctx.oisst.fetch(DAY)
    assert not again.downloaded and again.sha256 == first.sha256
    assert upstream.count(OISST_FILE) == before + 1  # the cache answered the second call


def test_recent_day_comes_as_preliminary(settings, upstream) -> None:
    upstream.today = DAY + dt.timedelta(days=3)
    ctx = pipeline.make_context(settings, today=lambda: upstream.today)
    fetched = ctx.oisst.fetch(DAY)
    assert fetched.version == PRELIMINARY and fetched.url.endswith("20210210_preliminary.nc")


def test_unpublished_day_is_a_distinct_retryable_error_without_retries(settings, upstream) -> None:
    upstream.today = DAY  # D is published from D+1
    ctx = pipeline.make_context(settings, today=lambda: upstream.today)
    before = upstream.count(OISST_FILE)
    with pytest.raises(NotYetPublishedError, match=r"OISST 2021-02-10.*oisst-avhrr-v02r01\.20210210"):
        ctx.oisst.fetch(DAY)
    assert upstream.count(OISST_FILE) == before + 2  # final and preliminary names, no retry
    assert ctx.store.list("raw") == []


def test_server_errors_are_retried_then_succeed(settings, upstream) -> None:
    upstream.faults.add(OISST_FILE, "status", times=2, code=503)
    before = upstream.count(OISST_FILE)
    fetched = pipeline.make_context(settings).oisst.fetch(DAY)
    assert fetched.downloaded and upstream.count(OISST_FILE) == before + 3


def test_persistent_server_errors_end_as_transient_error(settings, upstream) -> None:
    upstream.faults.add(OISST_FILE, "status", times=None, code=500)
    with pytest.raises(TransientFetchError, match="HTTP 500"):
        pipeline.make_context(settings).oisst.fetch(DAY)


def test_html_page_with_status_200_that_stays_is_permanent_after_bounded_retries(settings, upstream) -> None:
    upstream.faults.add(OISST_FILE, "html200", times=None)
    before = upstream.count(OISST_FILE)
    ctx = pipeline.make_context(settings)
    with pytest.raises(CorruptInputError, match=r"OISST 2021-02-10.*oisst-avhrr-v02r01\.20210210\.nc.*HTML.*"
                                                r"still HTML after 3 attempt"):
        ctx.oisst.fetch(DAY)
    assert upstream.count(OISST_FILE) == before + settings.http.retries + 1  # retried within the bound, no more
    assert ctx.store.list("raw") == []


def test_a_passing_maintenance_page_with_status_200_is_retried(settings, upstream) -> None:
    upstream.faults.add(OISST_FILE, "html200", times=2)
    before = upstream.count(OISST_FILE)
    fetched = pipeline.make_context(settings).oisst.fetch(DAY)
    assert fetched.downloaded and upstream.count(OISST_FILE) == before + 3


@pytest.mark.parametrize("kind", ["truncate", "truncate_length", "reset"])
def test_cut_bodies_and_resets_are_retried(settings, upstream, kind) -> None:
    upstream.faults.add(OISST_FILE, kind, times=1)
    fetched = pipeline.make_context(settings).oisst.fetch(DAY)
    assert fetched.downloaded


def test_persistently_truncated_body_never_reaches_the_cache(settings, upstream) -> None:
    upstream.faults.add(OISST_FILE, "truncate", times=None)
    ctx = pipeline.make_context(settings)
    with pytest.raises(TruncatedDownloadError, match="20210210"):
        ctx.oisst.fetch(DAY)
    assert ctx.store.list("raw") == []


def test_stalled_server_hits_the_read_timeout(upstream, tmp_path) -> None:
    from tests.conftest import settings_for

    settings = settings_for(upstream, tmp_path, http={"read_timeout_s": 1})
    upstream.faults.add(OISST_FILE, "stall", times=None, seconds=4)
    t0 = time.monotonic()
    with pytest.raises(TransientFetchError, match="Timeout"):
        pipeline.make_context(settings).oisst.fetch(DAY)
    assert time.monotonic() - t0 < 3 * (1 + 1)  # 3 attempts x (1 s timeout + slack), not 3 x 4 s


def test_hycom_run_through_ncss(settings, upstream) -> None:
    ctx = pipeline.make_context(settings)
    run = run_time(DAY)
    fetched = ctx.hycom.fetch(run)
    assert "GLBy0.08_930_FMRC_RUN_2021-02-10T12:00:00Z" in fetched.url and "vertCoord=0" in fetched.url
    daily = ctx.hycom.daily_means(fetched, run)
    assert daily.sizes["lead"] == 7 and daily["lead"].values.tolist() == list(range(1, 8))
    assert str(daily["valid_date"].values[0])[:10] == "2021-02-11"
    assert 20 < float(daily.mean()) < 32
    lon = daily["lon"].values
    assert lon.min() < 110.0 < 114.0 < lon.max()  # region plus margin, 0..360 request kept as east
    assert not ctx.hycom.fetch(run).downloaded


def test_hycom_negative_longitudes_come_back_in_region_convention(upstream, tmp_path) -> None:
    from tests.conftest import settings_for

    s = settings_for(upstream, tmp_path, region={"name": "hatteras", "lat_min": 34.0, "lat_max": 35.0,
                                                  "lon_min": -76.0, "lon_max": -75.0})
    ctx = pipeline.make_context(s)
    run = run_time(DAY)
    sst = ctx.hycom.open_surface(ctx.hycom.fetch(run), run)
    assert -76.3 < float(sst["lon"].min()) < -76.0 and -75.0 < float(sst["lon"].max()) < -74.7


def test_hycom_netcdf3_truncation_is_detected(settings, upstream) -> None:
    ctx = pipeline.make_context(settings)
    source = HycomSource(settings.upstream.hycom_ncss, ctx.store, settings.http, settings.region, accept="netcdf")
    upstream.faults.add("FMRC_RUN_2021-02-11", "truncate", times=None)
    with pytest.raises(TruncatedDownloadError, match=r"HYCOM run 2021-02-11 12Z.*NetCDF-3 header"):
        source.fetch(run_time(DAY + dt.timedelta(days=1)))
    assert ctx.store.list("raw") == []
    upstream.faults.clear()
    fetched = source.fetch(run_time(DAY + dt.timedelta(days=1)))
    with ctx.store.local_path(fetched.key) as p:
        assert p.read_bytes()[:4] == b"CDF\x02"


def test_future_hycom_run_is_not_yet_published(settings, upstream) -> None:
    with pytest.raises(NotYetPublishedError, match="HYCOM run 2021-05-15 12Z"):
        pipeline.make_context(settings).hycom.fetch(run_time(dt.date(2021, 5, 15)))


def test_bad_request_is_permanent(settings, upstream) -> None:
    upstream.faults.add("FMRC_RUN", "status", times=1, code=400, body="Requested time range does not intersect")
    with pytest.raises(UpstreamRejectedError, match="HTTP 400"):
        pipeline.make_context(settings).hycom.fetch(run_time(DAY))


def test_archive_and_mask_on_the_product_grid(settings, upstream) -> None:
    ctx = pipeline.make_context(settings)
    mask = pipeline.ensure_mask(ctx, DAY + dt.timedelta(days=1), DAY)
    assert mask.values.shape == (50, 50) and mask.ocean_cells > 2000
    entry = pipeline.archive_oisst_day(ctx, DAY + dt.timedelta(days=1))
    assert not entry.written  # made while building the mask
    from bias_correction.io import archive

    o = archive.read_field(ctx.store, entry.key).values
    h = archive.read_field(ctx.store, archive.hycom_key(ctx.grid, run_time(DAY))).values
    diff = h[0] - o
    rmse = float(np.sqrt(np.nanmean(diff[mask.values] ** 2)))
    assert 0.2 < rmse < 1.0  # a HYCOM-like error against OISST
    assert Store(settings.storage_root).exists(f"grid/{ctx.grid.grid_id}/ocean_mask.nc")


def test_regrid_method_is_configurable_and_weights_are_cached_on_disk(upstream, tmp_path) -> None:
    from pathlib import Path

    from bias_correction.io import archive
    from tests.conftest import settings_for

    from bias_correction.grid.weights import clear_memory_cache

    fields = {}
    for method in ("bilinear", "conservative"):
        clear_memory_cache()  # earlier tests of this process may hold the weights in memory
        s = settings_for(upstream, tmp_path / method, regrid={"hycom": method})
        ctx = pipeline.make_context(s)
        fields[method] = archive.read_field(ctx.store, pipeline.archive_hycom_run(ctx, DAY).key).values
        assert list(Path(s.storage_root, "grid", "weights").glob("*.npz"))  # reused by later days and processes
    diff = np.abs(fields["bilinear"] - fields["conservative"])
    assert np.isfinite(diff).any() and 0 < float(np.nanmax(diff)) < 0.5
