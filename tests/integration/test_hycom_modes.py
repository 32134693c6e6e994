"""HYCOM access modes (NCSS, OPeNDAP FMRC run, whole files by Range) x products x longitude conventions,
against the loopback stand-ins, with injected faults."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import (
    DateUnavailableError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
)
from bias_correction.sources.hycom import (
    ESPC_D_V02,
    GOFS31,
    HycomSource,
    product_for,
    run_time,
)
from bias_correction.storage import Store
from tests.conftest import settings_for

RUN = run_time(dt.date(2021, 2, 10))
ESPC_RUN = run_time(dt.date(2024, 10, 1))
ESPC_TODAY = dt.date(2024, 10, 20)
SCS = {"name": "scs", "lat_min": 12.0, "lat_max": 16.0, "lon_min": 110.0, "lon_max": 114.0}
# same rows as SCS (the whole-file stand-in then generates one band of rows per run)
ATLANTIC = {"name": "atl", "lat_min": 12.0, "lat_max": 16.0, "lon_min": -40.0, "lon_max": -36.0}
DATELINE = {"name": "dateline", "lat_min": 12.0, "lat_max": 16.0, "lon_min": 178.0, "lon_max": 182.0}
GUINEA = {"name": "guinea", "lat_min": 0.0, "lat_max": 4.0, "lon_min": -3.0, "lon_max": 3.0}  # crosses 0
FMRC_DAP = r"/thredds/dodsC/GLBy0\.08/expt_93\.0/FMRC/runs/GLBy0\.08_930_FMRC_RUN_2021-02-10"
GOFS_FILES = r"/datasets/GLBy0\.08/expt_93\.0/data/forecasts/hycom_glby_930_2021021012_t"


def _source(upstream, tmp_path, mode: str, region: dict | None = None, **http) -> HycomSource:
    over: dict = {"upstream": {"hycom_access": mode, "hycom_opendap": upstream.hycom_opendap_base,
                               "hycom_files": upstream.hycom_files_base}}
    if region:
        over["region"] = region
    if http:
        over["http"] = http
    return pipeline.make_context(settings_for(upstream, tmp_path, **over)).hycom


def _daily(upstream, tmp_path, mode, run, region=None):
    src = _source(upstream, tmp_path / mode, mode, region)
    fetched = src.fetch(run)
    return src, fetched, src.daily_means(fetched, run)


_NCSS: dict = {}


def _ncss_reference(upstream, tmp_path, run, region):
    key = (run, repr(region))
    if key not in _NCSS:
        _NCSS[key] = _daily(upstream, tmp_path / "ref", "ncss", run, region)[2]
    return _NCSS[key]


def _check(daily, reference, region) -> None:
    assert daily.sizes["lead"] == 7 and daily.dims == ("lead", "lat", "lon")
    lon = daily["lon"].values
    assert np.all(np.diff(lon) > 0), "lon must be ascending"
    r = region or SCS
    assert r["lon_min"] - 0.3 < lon[0] < r["lon_min"] and r["lon_max"] < lon[-1] < r["lon_max"] + 0.3
    finite = daily.values[np.isfinite(daily.values)]
    assert finite.size > 0.5 * daily.size and 15 < finite.mean() < 32
    assert daily.shape == reference.shape
    np.testing.assert_array_equal(np.isnan(daily.values), np.isnan(reference.values))
    np.testing.assert_allclose(daily.values, reference.values, atol=1e-3, equal_nan=True)  # packing is 0.001 °C
    np.testing.assert_allclose(daily["lon"].values, reference["lon"].values, atol=1e-4)


def test_product_table_picks_by_run_date() -> None:
    assert product_for(run_time(dt.date(2021, 2, 10))) is GOFS31
    assert product_for(run_time(dt.date(2024, 9, 4))) is GOFS31  # GOFS wins the overlap
    assert product_for(run_time(dt.date(2024, 9, 5))) is ESPC_D_V02
    with pytest.raises(DateUnavailableError, match="2018-11-30"):  # a date upstream lacks, not a config error
        product_for(run_time(dt.date(2018, 11, 30)))
    assert ESPC_D_V02.file_url("B", ESPC_RUN, 12).endswith("glby008_2024100112_t0012_t3z.nc")
    assert GOFS31.file_url("B", RUN, 12).endswith("/data/forecasts/hycom_glby_930_2021021012_t012_ts3z.nc")


@pytest.mark.parametrize("region", [None, ATLANTIC, DATELINE, GUINEA], ids=["0-360", "pm180", "antimeridian", "across0"])
def test_opendap_matches_ncss_in_every_lon_convention(upstream, tmp_path, region) -> None:
    reference = _ncss_reference(upstream, tmp_path, RUN, region)
    upstream.settle()
    first = len(upstream.requests)
    src, fetched, daily = _daily(upstream, tmp_path, "opendap", RUN, region)
    assert fetched.downloaded and fetched.key.endswith("_opendap.nc") and "GLBy0.08_930_FMRC_RUN_2021-02-10" in fetched.url
    _check(daily, reference, region)
    upstream.settle()
    dods = [r for r in upstream.requests[first:] if r.path.endswith(".dods") and "water_temp" in r.query]
    assert len(dods) == (2 if region is GUINEA else 1)  # two column ranges across the 0/360 seam
    assert all("%5b0:1:0%5d" in r.query.lower() for r in dods)  # surface level only
    assert all(r.bytes_sent < 3_000_000 for r in dods)  # never the global field
    before = len(upstream.requests)
    assert not src.fetch(RUN).downloaded
    upstream.settle()
    assert len(upstream.requests) == before  # cached: no request at all


@pytest.mark.parametrize("region", [None, ATLANTIC, DATELINE], ids=["0-360", "pm180", "antimeridian"])
def test_whole_files_match_ncss(upstream, tmp_path, region) -> None:
    reference = _ncss_reference(upstream, tmp_path, RUN, region)
    before = upstream.count(GOFS_FILES)
    src, fetched, daily = _daily(upstream, tmp_path, "files", RUN, region)
    assert fetched.key.endswith("_files.nc") and fetched.url.endswith("hycom_glby_930_2021021012_t{tau}_ts3z.nc")
    _check(daily, reference, region)
    n = upstream.count(GOFS_FILES) - before
    assert n == 56 * 3 + 2  # header, time/tau, rows per tau (12..177 h) + lat and lon once
    assert all(r.status == 206 and r.bytes_sent < 2_000_000 for r in upstream.requests[-n:])
    assert not src.fetch(RUN).downloaded
    assert upstream.count(GOFS_FILES) == before + n


@pytest.mark.parametrize("mode", ["ncss", "opendap"])
def test_espc_runs_after_gofs(upstream, tmp_path, mode) -> None:
    upstream.today = ESPC_TODAY
    reference = _ncss_reference(upstream, tmp_path, ESPC_RUN, None)
    _src, fetched, daily = _daily(upstream, tmp_path, mode, ESPC_RUN)
    assert "FMRC_ESPC-D-V02_t3z_RUN_2024-10-01T12:00:00Z" in fetched.url
    assert fetched.key.startswith("raw/hycom/ESPC-D-V02/2024100112/")
    _check(daily, reference, None)


# ------------------------------------------------------------------------------------------ OPeNDAP faults
def test_opendap_unpublished_run_is_not_retried(upstream, tmp_path) -> None:
    src = _source(upstream, tmp_path, "opendap")
    before = upstream.count("FMRC_RUN_2021-05-15")
    with pytest.raises(NotYetPublishedError, match="HYCOM run 2021-05-15 12Z"):
        src.fetch(run_time(dt.date(2021, 5, 15)))
    assert upstream.count("FMRC_RUN_2021-05-15") == before + 1  # one .dds, no retry
    assert Store(src.store.root).list("raw") == []


@pytest.mark.parametrize("kind,params,where", [
    ("status", {"code": 503}, r"\.dods"), ("status", {"code": 500}, r"\.dds"), ("reset", {}, r"\.dods"),
    ("html200", {}, r"\.dds"), ("truncate", {}, r"\.dods\?water_temp"), ("truncate_length", {}, r"\.dods\?water_temp"),
])
def test_opendap_one_shot_faults_are_retried(upstream, tmp_path, kind, params, where) -> None:
    upstream.faults.add(FMRC_DAP + ".*" + where, kind, times=1, **params)
    fetched = _source(upstream, tmp_path, "opendap").fetch(RUN)
    assert fetched.downloaded and upstream.faults.pending() == 0


@pytest.mark.parametrize("kind,params,where", [
    ("status", {"code": 502}, r"\.dods"), ("html200", {}, r"\.dds"), ("truncate", {}, r"\.dods\?water_temp"),
])
def test_opendap_persistent_faults_end_clearly_and_cache_nothing(upstream, tmp_path, kind, params, where) -> None:
    upstream.faults.add(FMRC_DAP + ".*" + where, kind, times=None, **params)
    src = _source(upstream, tmp_path, "opendap")
    with pytest.raises(TransientFetchError, match=r"HYCOM run 2021-02-10 12Z.*GLBy0\.08_930_FMRC_RUN_2021-02-10"):
        src.fetch(RUN)
    assert Store(src.store.root).list("raw") == []


def test_opendap_stall_hits_the_read_timeout(upstream, tmp_path) -> None:
    upstream.faults.add(FMRC_DAP + r".*\.dods", "stall", times=None, seconds=3)
    src = _source(upstream, tmp_path, "opendap", read_timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(TransientFetchError, match="HYCOM run 2021-02-10"):
        src.fetch(RUN)
    assert time.monotonic() - t0 < 3 * 2.9  # 3 attempts cut at ~1 s, not 3 x 3 s
    assert Store(src.store.root).list("raw") == []


# ------------------------------------------------------------------------------------------ whole-file faults
def test_files_unpublished_run_is_not_retried(upstream, tmp_path) -> None:
    src = _source(upstream, tmp_path, "files")
    before = upstream.count("hycom_glby_930_2021051512")  # the session server also served other tests
    with pytest.raises(NotYetPublishedError, match="hycom_glby_930_2021051512_t012_ts3z.nc"):
        src.fetch(run_time(dt.date(2021, 5, 15)))
    assert upstream.count("hycom_glby_930_2021051512") - before == 1


def test_files_one_shot_faults_on_many_files_are_retried(upstream, tmp_path) -> None:
    upstream.faults.add(GOFS_FILES + "012", "status", times=1, code=503)
    upstream.faults.add(GOFS_FILES + "015", "reset", times=1)
    upstream.faults.add(GOFS_FILES + "018", "html200", times=1)
    upstream.faults.add(GOFS_FILES + "021", "ignore_range", times=1)
    upstream.faults.add(GOFS_FILES + "024", "stall", times=1, seconds=2)
    upstream.faults.add(GOFS_FILES + "027", "truncate", times=1)
    upstream.faults.add(GOFS_FILES + "030", "truncate_length", times=1)
    src = _source(upstream, tmp_path, "files", read_timeout_s=1)
    fetched = src.fetch(RUN)
    assert fetched.downloaded and upstream.faults.pending() == 0
    daily = src.daily_means(fetched, RUN)
    _check(daily, _ncss_reference(upstream, tmp_path, RUN, None), None)


@pytest.mark.parametrize("kind,params,error,match", [
    ("truncate", {}, TruncatedDownloadError, "body has"),
    ("ignore_range", {}, TruncatedDownloadError, "ignored the Range request"),
    ("status", {"code": 416}, TruncatedDownloadError, "shorter than its header"),
    ("status", {"code": 500}, TransientFetchError, "HTTP 500"),
])
def test_files_persistent_faults_name_the_file_and_cache_nothing(upstream, tmp_path, kind, params, error, match) -> None:
    upstream.faults.add(GOFS_FILES + "012", kind, times=None, **params)
    src = _source(upstream, tmp_path, "files")
    with pytest.raises(error, match=rf"HYCOM run 2021-02-10 12Z.*hycom_glby_930_2021021012_t012_ts3z\.nc.*{match}"):
        src.fetch(RUN)
    assert Store(src.store.root).list("raw") == []
