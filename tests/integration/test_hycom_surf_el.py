"""HYCOM sea-surface elevation ``surf_el`` through every access mode (NCSS, OPeNDAP FMRC run, whole ``ssh``
files by Range), GOFS 3.1 and the hourly ESPC-D-V02 ``ssh`` collection, the archive, and injected faults,
against the loopback stand-ins."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import (
    ConfigError,
    NotYetPublishedError,
    TransientFetchError,
    TruncatedDownloadError,
)
from bias_correction.io import archive
from bias_correction.io.netcdf import read_dataset
from bias_correction.sources.hycom import ESPC_D_V02, GOFS31, run_time
from bias_correction.storage import Store
from tests.conftest import settings_for
from tests.integration.test_hycom_modes import _source

DAY = dt.date(2021, 2, 10)
RUN = run_time(DAY)
ESPC_RUN = run_time(dt.date(2024, 10, 1))
ESPC_TODAY = dt.date(2024, 10, 20)
# Small boxes on the same rows: the whole-file stand-in then generates one band of rows per run and product.
SMALL = {"name": "scs-small", "lat_min": 14.0, "lat_max": 15.0, "lon_min": 112.0, "lon_max": 113.0}
ATL_SMALL = {"name": "atl-small", "lat_min": 14.0, "lat_max": 15.0, "lon_min": -39.0, "lon_max": -38.0}
MODES = ("ncss", "opendap", "files")
GOFS_SSH_FILES = r"/datasets/GLBy0\.08/expt_93\.0/data/forecasts/hycom_glby_930_2021021012_t\d{3}_ssh\.nc"
ESPC_SSH_FILES = r"/datasets/ESPC-D-V02/data/forecasts/.*_2024100112_t\d{4}_ssh\.nc"
FMRC = r"GLBy0\.08_930_FMRC_RUN_2021-02-10"
PACKING_ATOL = 5.01e-4  # surf_el is packed to 0.001 m: each 3-hourly value is within 0.0005 m


def _new_requests(upstream, first: int) -> list:
    upstream.settle()
    return upstream.requests[first:]


def _expected(twin, run, daily) -> np.ndarray:
    lat, lon = daily["lat"].values, daily["lon"].values
    return np.stack([twin.hycom_daily_surf_el(run, k, lat, lon) for k in range(1, daily.sizes["lead"] + 1)])


def _check_daily(twin, run, daily, region) -> None:
    assert daily.dims == ("lead", "lat", "lon") and daily.sizes["lead"] == 7
    assert daily.attrs["units"] == "m" and daily.dtype == np.float32
    lon = daily["lon"].values
    assert np.all(np.diff(lon) > 0) and region["lon_min"] - 0.3 < lon[0] < region["lon_min"] < region["lon_max"] < lon[-1]
    finite = daily.values[np.isfinite(daily.values)]
    assert finite.size > 0.5 * daily.size and -1.0 < finite.min() and finite.max() < 1.5
    expected = _expected(twin, run, daily)
    np.testing.assert_array_equal(np.isnan(daily.values), np.isnan(expected))
    np.testing.assert_allclose(daily.values, expected, rtol=0, atol=PACKING_ATOL, equal_nan=True)


def test_product_table_locates_surf_el() -> None:
    assert GOFS31.file_url("B", RUN, 12, "surf_el") == \
        "B/GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_2021021012_t012_ssh.nc"
    assert ESPC_D_V02.file_url("B", ESPC_RUN, 13, "surf_el").endswith("glby008_2024100112_t0013_ssh.nc")
    assert GOFS31.opendap_url("B", RUN, "surf_el") == GOFS31.opendap_url("B", RUN)  # one FMRC for all variables
    assert ESPC_D_V02.opendap_url("B", ESPC_RUN, "surf_el").endswith(
        "/FMRC_ESPC-D-V02_ssh/runs/FMRC_ESPC-D-V02_ssh_RUN_2024-10-01T12:00:00Z")
    assert (GOFS31.step_hours("surf_el"), ESPC_D_V02.step_hours("surf_el"), ESPC_D_V02.step_hours()) == (3, 1, 3)
    with pytest.raises(ConfigError, match="salinity"):
        GOFS31.file_url("B", RUN, 12, "salinity")


@pytest.mark.parametrize("region", [SMALL, ATL_SMALL], ids=["0-360", "pm180"])
@pytest.mark.parametrize("mode", MODES)
def test_surf_el_matches_the_twin(upstream, twin, tmp_path, mode, region) -> None:
    src = _source(upstream, tmp_path, mode, region)
    upstream.settle()
    first = len(upstream.requests)
    fetched = src.fetch(RUN, variable="surf_el")
    daily = src.daily_means(fetched, RUN, variable="surf_el")
    _check_daily(twin, RUN, daily, region)
    # its own cache file and ledger, next to (never instead of) the SST one
    assert fetched.downloaded and fetched.key == src.raw_key(RUN, "surf_el") != src.raw_key(RUN)
    assert fetched.key.startswith("raw/hycom/GLBy0.08/expt_93.0/2021021012/surf_el_")
    assert json.loads(src.store.read_bytes(fetched.key + ".json"))["sha256"] == fetched.sha256
    assert not src.store.exists(src.raw_key(RUN)) and src.cached(RUN) is None
    reqs = _new_requests(upstream, first)
    if mode == "ncss":
        assert len(reqs) == 1 and re.search(FMRC, reqs[0].path)
        assert "var=surf_el" in reqs[0].query and "vertCoord" not in reqs[0].query
        assert "var=surf_el" in fetched.url
    elif mode == "opendap":
        dods = [r for r in reqs if r.path.endswith(".dods") and "surf_el" in r.query]
        assert len(dods) == 1 and all(re.search(FMRC, r.path) for r in reqs)
        assert dods[0].query.lower().count("%5b") == 3 and dods[0].bytes_sent < 500_000  # (time, lat, lon) slab only
        assert not any("water_temp" in r.query for r in reqs)
    else:
        assert fetched.url.endswith("hycom_glby_930_2021021012_t{tau}_ssh.nc")
        assert len(reqs) == 56 * 3 + 2 and all(re.search(GOFS_SSH_FILES, r.path) for r in reqs)
        assert all(r.status == 206 and r.bytes_sent < 1_000_000 for r in reqs)
    again = src.fetch(RUN, variable="surf_el")
    assert not again.downloaded and again.sha256 == fetched.sha256
    assert len(_new_requests(upstream, first)) == len(reqs)  # cached: no request at all


@pytest.mark.parametrize("mode", MODES)
def test_espc_surf_el_is_read_three_hourly_from_the_hourly_collection(upstream, twin, tmp_path, mode) -> None:
    upstream.today = ESPC_TODAY
    src = _source(upstream, tmp_path, mode, SMALL)
    upstream.settle()
    first = len(upstream.requests)
    fetched = src.fetch(ESPC_RUN, variable="surf_el")
    assert fetched.key.startswith("raw/hycom/ESPC-D-V02/2024100112/surf_el_")
    with src.store.local_path(fetched.key) as path:
        ds = read_dataset(path, decode_times=False)
    taus = ds["tau"].values
    assert np.all(np.mod(taus, 3) == 0) and np.all(np.diff(taus) == 3) and ds["surf_el"].dims == ("time", "lat", "lon")
    _check_daily(twin, ESPC_RUN, src.daily_means(fetched, ESPC_RUN, variable="surf_el"), SMALL)
    reqs = _new_requests(upstream, first)
    assert all("FMRC_ESPC-D-V02_ssh" in r.path or "_ssh.nc" in r.path for r in reqs)
    if mode == "ncss":
        assert "timeStride=3" in reqs[0].query and "FMRC_ESPC-D-V02_ssh_RUN_2024-10-01" in fetched.url
    elif mode == "opendap":
        dods = [r for r in reqs if r.path.endswith(".dods") and "surf_el" in r.query]
        assert len(dods) == 1 and ":3:" in dods[0].query
    else:
        read = sorted({int(re.search(r"_t(\d{4})_ssh", r.path).group(1)) for r in reqs})  # type: ignore[union-attr]
        assert read == list(range(12, 178, 3)) and all(re.search(ESPC_SSH_FILES, r.path) for r in reqs)


def test_archive_surf_el_next_to_sst(upstream, twin, tmp_path) -> None:
    ctx = pipeline.make_context(settings_for(upstream, tmp_path))
    sst = pipeline.archive_hycom_run(ctx, DAY)
    ssh = pipeline.archive_hycom_run(ctx, DAY, "surf_el")
    assert sst.key == f"archive/{ctx.grid.grid_id}/hycom/2021/hycom_20210210T12Z.nc" == archive.hycom_key(ctx.grid, RUN)
    assert ssh.written and ssh.key == archive.hycom_key(ctx.grid, RUN, "surf_el") != sst.key
    assert ssh.key == f"archive/{ctx.grid.grid_id}/hycom_surf_el/2021/hycom_surf_el_20210210T12Z.nc"
    assert "var=surf_el" in ssh.source["url"] and "var=water_temp" in sst.source["url"]
    assert ssh.source["sha256"] != sst.source["sha256"]
    field = archive.read_field(ctx.store, ssh.key)
    assert field.name == "surf_el" and field.attrs["units"] == "m" and field.shape == (7, ctx.grid.nlat, ctx.grid.nlon)
    assert field.attrs["source_sha256"] == ssh.source["sha256"]
    temp = archive.read_field(ctx.store, sst.key)
    assert temp.name == "sst" and temp.attrs["units"] == "degC"
    np.testing.assert_array_equal(np.isnan(field.values), np.isnan(temp.values))  # one HYCOM land mask
    expected = np.stack([twin.hycom_daily_surf_el(RUN, k, ctx.grid.lat, ctx.grid.lon) for k in range(1, 8)])
    both = np.isfinite(field.values) & np.isfinite(expected)
    assert both.mean() > 0.5
    assert float(np.abs(field.values - expected)[both].max()) < 0.01  # bilinear from the native grid, metres
    upstream.settle()
    before = len(upstream.requests)
    again = pipeline.archive_hycom_run(ctx, DAY, "surf_el")
    assert not again.written and again.key == ssh.key
    upstream.settle()
    assert len(upstream.requests) == before  # archived: zero requests
    stacked = archive.load_hycom_runs(ctx.store, ctx.grid, [RUN, run_time(DAY + dt.timedelta(days=1))], "surf_el")
    assert stacked.dims == ("run", "lead", "lat", "lon") and stacked.sizes["run"] == 1
    np.testing.assert_array_equal(stacked.values[0], field.values)
    with pytest.raises(FileNotFoundError, match="surf_el"):
        archive.load_hycom_runs(ctx.store, ctx.grid, [run_time(DAY + dt.timedelta(days=1))], "surf_el")
    with pytest.raises(ConfigError, match="salinity"):
        pipeline.archive_hycom_run(ctx, DAY, "salinity")


# ------------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("mode,match", [
    ("ncss", r"HYCOM run 2021-05-15 12Z surf_el.*FMRC_RUN_2021-05-15.*var=surf_el"),
    ("opendap", r"HYCOM run 2021-05-15 12Z surf_el \(GOFS 3\.1.*OPeNDAP\)"),
    ("files", r"HYCOM run 2021-05-15 12Z surf_el.*hycom_glby_930_2021051512_t012_ssh\.nc"),
], ids=MODES)
def test_unpublished_run_is_not_yet_published_and_not_retried(upstream, tmp_path, mode, match) -> None:
    src = _source(upstream, tmp_path, mode, SMALL)
    upstream.settle()
    first = len(upstream.requests)
    with pytest.raises(NotYetPublishedError, match=match):
        src.fetch(run_time(dt.date(2021, 5, 15)), variable="surf_el")
    assert len(_new_requests(upstream, first)) == 1  # one 404, no retry
    assert Store(src.store.root).list("raw") == []


@pytest.mark.parametrize("mode,where,error,match", [
    ("ncss", FMRC, TruncatedDownloadError, r"HYCOM run 2021-02-10 12Z surf_el.*truncated"),
    ("opendap", FMRC + r".*\.dods\?surf_el", TruncatedDownloadError, r"surf_el \(GOFS 3\.1.*OPeNDAP\).*cut short"),
    ("files", r"_t012_ssh\.nc", TruncatedDownloadError, r"surf_el.*hycom_glby_930_2021021012_t012_ssh\.nc.*body has"),
], ids=MODES)
def test_persistently_truncated_bodies_fail_and_cache_nothing(upstream, tmp_path, mode, where, error, match) -> None:
    upstream.faults.add(where, "truncate", times=None)
    src = _source(upstream, tmp_path, mode, SMALL)
    with pytest.raises(error, match=match):
        src.fetch(RUN, variable="surf_el")
    assert Store(src.store.root).list("raw") == []


@pytest.mark.parametrize("mode,faults", [
    ("ncss", [(FMRC, "truncate", {}), (FMRC, "status", {"code": 503})]),
    ("opendap", [(FMRC + r".*\.dods\?surf_el", "truncate_length", {}), (FMRC + r".*\.das", "html200", {})]),
    ("files", [(r"_t012_ssh", "status", {"code": 503}), (r"_t015_ssh", "reset", {}), (r"_t018_ssh", "html200", {}),
               (r"_t021_ssh", "ignore_range", {}), (r"_t024_ssh", "truncate_length", {})]),
], ids=MODES)
def test_one_shot_faults_on_surf_el_paths_are_retried(upstream, twin, tmp_path, mode, faults) -> None:
    for where, kind, params in faults:
        upstream.faults.add(where, kind, times=1, **params)
    src = _source(upstream, tmp_path, mode, SMALL)
    fetched = src.fetch(RUN, variable="surf_el")
    assert fetched.downloaded and upstream.faults.pending() == 0
    _check_daily(twin, RUN, src.daily_means(fetched, RUN, variable="surf_el"), SMALL)


def test_persistent_server_errors_on_ssh_files_name_the_file(upstream, tmp_path) -> None:
    upstream.faults.add(r"_t012_ssh\.nc", "status", times=None, code=500)
    src = _source(upstream, tmp_path, "files", SMALL)
    with pytest.raises(TransientFetchError, match=r"surf_el.*hycom_glby_930_2021021012_t012_ssh\.nc.*HTTP 500"):
        src.fetch(RUN, variable="surf_el")
    assert Store(src.store.root).list("raw") == []


def test_unknown_variable_is_a_config_error(upstream, tmp_path) -> None:
    src = _source(upstream, tmp_path, "ncss", SMALL)
    with pytest.raises(ConfigError, match="salinity"):
        src.fetch(RUN, variable="salinity")
    with pytest.raises(ConfigError, match="salinity"):
        src.raw_key(RUN, "salinity")
