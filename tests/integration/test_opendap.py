"""OISST v2.1 through NCEI THREDDS OPeNDAP (regional subset) against the loopback DAP2 stand-in."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import NotYetPublishedError, TransientFetchError
from bias_correction.sources.oisst import FINAL, PRELIMINARY
from bias_correction.sources.oisst.access_dap import validate_oisst_subset
from bias_correction.storage import Store
from tests.conftest import settings_for

DAY = dt.date(2021, 2, 10)
DAP_FILE = r"/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR/202102/oisst-avhrr-v02r01\.20210210"


def _ctx(upstream, tmp_path, region=None, **http):
    over: dict = {"upstream": {"oisst_access": ["opendap"], "oisst_opendap": upstream.oisst_opendap_base}}
    if region:
        over["region"] = region
    if http:
        over["http"] = http
    return pipeline.make_context(settings_for(upstream, tmp_path, **over), today=lambda: upstream.today)


@pytest.mark.parametrize("region", [None, {"name": "dateline", "lat_min": -20.0, "lat_max": -16.0,
                                           "lon_min": 178.0, "lon_max": 182.0},
                                    {"name": "guinea", "lat_min": 0.0, "lat_max": 4.0, "lon_min": -3.0,
                                     "lon_max": 3.0}], ids=["0-360", "antimeridian", "across0-pm180"])
def test_oisst_opendap_subset_matches_the_https_file(upstream, tmp_path, region) -> None:
    ctx = _ctx(upstream, tmp_path / "dap", region)
    fetched = ctx.oisst.fetch(DAY)
    assert fetched.downloaded and fetched.version == FINAL and fetched.key.startswith("raw/oisst-opendap/")
    assert ctx.store.size(fetched.key) < 200_000  # a regional subset, not the global file
    r = ctx.settings.region
    sub = ctx.oisst.open_region(fetched, r)
    https = pipeline.make_context(settings_for(upstream, tmp_path / "https", **({"region": region} if region else {})))
    ref = https.oisst.open_region(https.oisst.fetch(DAY), r)
    assert sub.shape == ref.shape and np.all(np.diff(sub["lon"].values) > 0)
    assert r.lon_min - 0.5 < float(sub["lon"].min()) < r.lon_min < r.lon_max < float(sub["lon"].max()) < r.lon_max + 0.5
    np.testing.assert_allclose(sub.values, ref.values, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(sub["lon"].values, ref["lon"].values, atol=1e-4)
    before = upstream.count(DAP_FILE)
    assert not ctx.oisst.fetch(DAY).downloaded
    assert upstream.count(DAP_FILE) == before  # cached: zero requests


def test_recent_day_comes_as_preliminary_over_opendap(upstream, tmp_path) -> None:
    upstream.today = DAY + dt.timedelta(days=3)
    fetched = _ctx(upstream, tmp_path).oisst.fetch(DAY)
    assert fetched.version == PRELIMINARY and "20210210_preliminary.nc" in fetched.url


def test_unpublished_day_is_not_retried(upstream, tmp_path) -> None:
    upstream.today = DAY
    ctx = _ctx(upstream, tmp_path)
    before = upstream.count(DAP_FILE)
    with pytest.raises(NotYetPublishedError, match="OISST 2021-02-10"):
        ctx.oisst.fetch(DAY)
    assert upstream.count(DAP_FILE) == before + 2  # one .dds per name, no retries
    assert ctx.store.list("raw") == []


@pytest.mark.parametrize("kind,params", [("status", {"code": 503}), ("reset", {}), ("html200", {}), ("truncate", {})])
def test_one_shot_faults_are_retried(upstream, tmp_path, kind, params) -> None:
    upstream.faults.add(DAP_FILE + r".*\.dods\?sst", kind, times=1, **params)
    fetched = _ctx(upstream, tmp_path).oisst.fetch(DAY)
    assert fetched.downloaded and upstream.faults.pending() == 0


@pytest.mark.parametrize("kind,params,where", [("status", {"code": 500}, r"\.das"), ("html200", {}, r"\.dds"),
                                               ("truncate", {}, r"\.dods\?sst")])
def test_persistent_faults_name_the_file_and_cache_nothing(upstream, tmp_path, kind, params, where) -> None:
    upstream.faults.add(DAP_FILE + ".*" + where, kind, times=None, **params)
    ctx = _ctx(upstream, tmp_path)
    with pytest.raises(TransientFetchError, match=r"OISST 2021-02-10 \(final, OPeNDAP\).*oisst-avhrr-v02r01\.20210210\.nc"):
        ctx.oisst.fetch(DAY)
    assert Store(ctx.store.root).list("raw") == []


def test_subset_validator_rejects_a_wrong_day(upstream, tmp_path) -> None:
    ctx = _ctx(upstream, tmp_path)
    fetched = ctx.oisst.fetch(DAY)
    with ctx.store.local_path(fetched.key) as p:
        validate_oisst_subset(p, DAY)
        with pytest.raises(Exception, match="expected 2021-02-11"):
            validate_oisst_subset(p, DAY + dt.timedelta(days=1))
