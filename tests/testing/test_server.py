"""The loopback stand-in: publication lifecycle, NCSS semantics, fault injection, request log."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import requests

from bias_correction.testing.formats import glby_lat, glby_lon
from bias_correction.testing.standin import FaultPlan, StandInServer
from bias_correction.testing.twin import Twin

TODAY = date(2021, 3, 1)
BOX = "var=water_temp&north=16&south=12&west=110&east=114&horizStride=1"
SMALL = "var=water_temp&north=12.2&south=12&west=110&east=110.3&horizStride=1"


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, twin: Twin) -> Iterator[StandInServer]:
    with StandInServer(twin, tmp_path_factory.mktemp("standin"), TODAY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(server: StandInServer) -> Iterator[None]:
    server.faults.clear()
    server.today = TODAY
    yield
    server.faults.clear()
    server.today = TODAY


def _open(content: bytes) -> netCDF4.Dataset:
    return netCDF4.Dataset("inmemory.nc", memory=content)


def _ncss(server: StandInServer, run: date, query: str, **kw: object) -> requests.Response:
    return requests.get(server.hycom_run_url(run) + "?" + query, timeout=30, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ OISST
def _last(server: StandInServer):
    server.settle()
    return server.requests[-1]


def test_urls(server: StandInServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.oisst_https_base == server.base_url + \
        "/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr"
    assert server.hycom_ncss_base == server.base_url + "/thredds/ncss"
    assert server.oisst_url(date(2021, 2, 3), True).endswith("/202102/oisst-avhrr-v02r01.20210203_preliminary.nc")


def test_oisst_lifecycle_and_clock(server: StandInServer) -> None:
    day = TODAY - timedelta(days=1)
    assert requests.get(server.oisst_url(TODAY, True), timeout=10).status_code == 404  # not yet
    assert requests.get(server.oisst_url(day), timeout=10).status_code == 404  # final not yet
    prelim = requests.get(server.oisst_url(day, True), timeout=30)
    assert prelim.status_code == 200
    assert prelim.headers["Content-Type"] == "application/x-netcdf"
    assert int(prelim.headers["Content-Length"]) == len(prelim.content) > 1_000_000
    assert prelim.headers["ETag"] and prelim.headers["Last-Modified"]
    assert prelim.content[:4] == b"\x89HDF"
    # move the clock: 13 days old -> still preliminary; 14 days -> only the final exists
    server.today = day + timedelta(days=13)
    assert requests.head(server.oisst_url(day, True), timeout=10).status_code == 200
    assert requests.head(server.oisst_url(day), timeout=10).status_code == 404
    server.today = day + timedelta(days=14)
    assert requests.get(server.oisst_url(day, True), timeout=10).status_code == 404
    final = requests.get(server.oisst_url(day), timeout=30)
    assert final.status_code == 200
    with _open(prelim.content) as p, _open(final.content) as f:
        assert p.title.endswith("Interim") and f.title.endswith("Final")
        assert p.id.endswith("_preliminary.nc") and f.id == "oisst-avhrr-v02r01.20210228.nc"
        diff = np.abs(p["sst"][0, 0] - f["sst"][0, 0])
        assert 0.005 < float(diff.mean()) < 0.3  # versions differ slightly


def test_oisst_conditional_get_and_head(server: StandInServer) -> None:
    url = server.oisst_url(date(2021, 2, 1))  # 28 days old: final
    first = requests.get(url, timeout=30)
    assert first.status_code == 200
    again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(first.content)
    assert requests.get(url.replace("/202102/", "/202101/"), timeout=10).status_code == 404  # wrong month dir


def test_oisst_month_index(server: StandInServer) -> None:
    page = requests.get(server.oisst_https_base + "/202102/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    text = page.text
    assert "Index of" in text
    # TODAY = 2021-03-01: Feb 1..15 are final, Feb 16..28 preliminary
    assert 'href="oisst-avhrr-v02r01.20210215.nc"' in text
    assert "20210215_preliminary" not in text
    assert 'href="oisst-avhrr-v02r01.20210216_preliminary.nc"' in text
    assert 'href="oisst-avhrr-v02r01.20210216.nc"' not in text
    assert text.count('href="oisst-avhrr') == 28
    march = requests.get(server.oisst_https_base + "/202103/", timeout=10)
    assert march.status_code == 200 and "oisst-avhrr" not in march.text
    assert requests.get(server.oisst_https_base + "/202105/", timeout=10).status_code == 404
    root = requests.get(server.oisst_https_base + "/", timeout=10)
    assert 'href="202102/"' in root.text


def test_unknown_path_is_404_html(server: StandInServer) -> None:
    resp = requests.get(server.base_url + "/nothing/here", timeout=10)
    assert resp.status_code == 404 and "text/html" in resp.headers["Content-Type"] and "<html>" in resp.text


# ------------------------------------------------------------------------------------------ NCSS
def test_ncss_box_subset(server: StandInServer, twin: Twin) -> None:
    run = date(2021, 2, 20)
    q = f"{BOX}&time_start=2021-02-21T00%3A00%3A00Z&time_end=2021-02-21T21%3A00%3A00Z&timeStride=1" \
        "&vertCoord=0&addLatLon=true&accept=netcdf4"
    resp = _ncss(server, run, q)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/x-netcdf"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert resp.content[:4] == b"\x89HDF"
    with _open(resp.content) as ds:
        assert ds["water_temp"].shape == (8, 1, 101, 51)
        lat, lon = ds["lat"][:], ds["lon"][:]
        assert lat[0] == pytest.approx(12.0) and lat[-1] == pytest.approx(16.0)
        assert lon[0] == pytest.approx(110.0) and lon[-1] == pytest.approx(114.0, abs=1e-4)
        np.testing.assert_array_equal(ds["tau"][:], 12.0 + 3 * np.arange(8))
        assert ds["tau"].time_origin == "2021-02-20 12:00:00"
        assert list(ds["depth"][:]) == [0.0]
        expected = twin.hycom(datetime(2021, 2, 20, 12), 12.0 + 3 * np.arange(8), glby_lat(np.arange(2300, 2401)),
                              glby_lon(np.arange(1375, 1426)))
        np.testing.assert_allclose(ds["water_temp"][:], expected, atol=0.00051)


def test_ncss_netcdf3_negative_lon_and_all_levels(server: StandInServer) -> None:
    q = "var=water_temp&north=35.0&south=34.9&west=-75.2&east=-75.0&time=2021-02-22T00:00:00Z&accept=netcdf"
    resp = _ncss(server, date(2021, 2, 20), q)
    assert resp.status_code == 200, resp.text
    assert resp.content[:4] == b"CDF\x02"
    with _open(resp.content) as ds:
        assert ds.data_model == "NETCDF3_64BIT_OFFSET"
        assert ds["water_temp"].shape == (1, 40, 3, 3)
        assert ds["lon"][0] == pytest.approx(-75.2, abs=1e-4) and (ds["lon"][:] < 0).all()
        assert ds["tau"][0] == 36.0


def test_ncss_errors(server: StandInServer) -> None:
    run = date(2021, 2, 20)
    t_ok = "&time_start=2021-02-21T00:00:00Z&time_end=2021-02-21T03:00:00Z"
    resp = _ncss(server, run, SMALL + "&time_start=2021-03-05T00:00:00Z&time_end=2021-03-06T00:00:00Z")
    assert resp.status_code == 400
    assert "does not intersect actual time range" in resp.text and "Requested time range" in resp.text
    assert _ncss(server, run, "var=salinity_x&north=12.2&south=12&west=110&east=110.3" + t_ok).status_code == 400
    assert _ncss(server, run, "var=water_temp&north=12.2&south=12&west=110" + t_ok).status_code == 400
    assert _ncss(server, run, "var=water_temp&north=abc&south=12&west=110&east=111" + t_ok).status_code == 400
    assert _ncss(server, run, SMALL + t_ok + "&accept=csv").status_code == 400
    assert _ncss(server, TODAY, SMALL + t_ok).status_code == 404  # run of today not yet published
    assert _ncss(server, date(2018, 12, 3), SMALL).status_code == 404  # before GOFS 3.1
    assert _ncss(server, date(2024, 9, 5), SMALL).status_code == 404  # after GOFS 3.1
    server.today = date(2021, 2, 21)
    assert _ncss(server, run, SMALL + t_ok).status_code == 200  # run D is available from day D+1
    # colons may come unencoded or encoded, in the path too
    url = server.base_url + "/thredds/ncss/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_2021-02-20T12%3A00%3A00Z"
    assert requests.get(url + "?" + SMALL + t_ok, timeout=10).status_code == 200


# ------------------------------------------------------------------------------------------ faults
def test_fault_status_and_times(server: StandInServer) -> None:
    url = server.oisst_url(date(2021, 2, 1))
    server.faults.add(r"20210201", "status", times=2, code=503)
    assert requests.get(url, timeout=10).status_code == 503
    assert requests.get(url, timeout=10).status_code == 503
    assert requests.get(url, timeout=30).status_code == 200
    server.faults.add(r"20210201", "status", code=500, body="boom")
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 500 and resp.text == "boom"


def test_fault_every_time_until_clear(server: StandInServer) -> None:
    url = server.oisst_url(date(2021, 2, 1))
    server.faults.add(r"oisst", "status", times=None, code=404)
    assert [requests.head(url, timeout=10).status_code for _ in range(3)] == [404, 404, 404]
    server.faults.clear()
    assert requests.head(url, timeout=10).status_code == 200


def test_fault_html200(server: StandInServer) -> None:
    server.faults.add(r"oisst", "html200")
    resp = requests.get(server.oisst_url(date(2021, 2, 1)), timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert resp.content.lstrip().startswith(b"<!DOCTYPE html>")


def test_fault_truncate_without_length(server: StandInServer) -> None:
    url = server.oisst_url(date(2021, 2, 1))
    full = requests.get(url, timeout=30).content
    server.faults.add(r"oisst", "truncate")
    resp = requests.get(url, timeout=30)  # no error: the body just ends early
    assert resp.status_code == 200 and "Content-Length" not in resp.headers
    assert len(resp.content) == len(full) // 2 and full.startswith(resp.content)


def test_fault_truncate_with_length(server: StandInServer) -> None:
    server.faults.add(r"oisst", "truncate_length")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.oisst_url(date(2021, 2, 1)), timeout=30)
    rec = _last(server)
    assert rec.fault == "truncate_length" and 0 < rec.bytes_sent < 1_000_000


def test_fault_reset(server: StandInServer) -> None:
    server.faults.add(r"oisst", "reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.oisst_url(date(2021, 2, 1)), timeout=10)
    assert _last(server).status == 0
    assert requests.head(server.oisst_url(date(2021, 2, 1)), timeout=10).status_code == 200


def test_fault_stall(server: StandInServer) -> None:
    url = server.oisst_https_base + "/202102/"
    server.faults.add(r"/202102/$", "stall", seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.3)
    server.faults.add(r"/202102/$", "stall", seconds=0.3)
    t0 = time.perf_counter()
    assert requests.get(url, timeout=5).status_code == 200
    assert time.perf_counter() - t0 >= 0.3


def test_fault_slow(server: StandInServer) -> None:
    url = server.oisst_https_base + "/202102/"
    size = len(requests.get(url, timeout=10).content)
    server.faults.add(r"/202102/$", "slow", bytes_per_s=size * 2)
    t0 = time.perf_counter()
    resp = requests.get(url, timeout=10)
    assert len(resp.content) == size
    assert time.perf_counter() - t0 >= 0.4


def test_fault_plan_validation_and_random_mode() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.add(".*", "explode")
    with pytest.raises(ValueError):
        plan.add(".*", "status")  # needs code
    with pytest.raises(ValueError):
        plan.random(1.5, seed=1)

    def pattern(seed: int) -> list[str | None]:
        p = FaultPlan()
        p.random(0.3, seed=seed, kinds=["status", "truncate", "reset"])
        return [(f[0] if (f := p.take(f"/x/{i}")) else None) for i in range(200)]

    a, b, c = pattern(5), pattern(5), pattern(6)
    assert a == b and a != c
    hits = sum(k is not None for k in a)
    assert 30 < hits < 90
    assert {k for k in a if k} == {"status", "truncate", "reset"}


def test_random_faults_over_http(server: StandInServer) -> None:
    url = server.oisst_https_base + "/202102/"
    server.faults.random(0.5, seed=11, kinds=["status"], codes=[503])
    codes = [requests.get(url, timeout=10).status_code for _ in range(20)]
    server.faults.random(0.5, seed=11, kinds=["status"], codes=[503])
    again = [requests.get(url, timeout=10).status_code for _ in range(20)]
    assert codes == again
    assert set(codes) == {200, 503}


def test_request_log_and_count(server: StandInServer) -> None:
    before = server.count(r"/202102/$")
    n = len(server.requests)
    for _ in range(3):
        requests.get(server.oisst_https_base + "/202102/?C=M;O=A", timeout=10)
    assert server.count(r"/202102/$") == before + 3
    rec = _last(server)
    assert (rec.method, rec.status, rec.query) == ("GET", 200, "C=M;O=A") and rec.bytes_sent > 0
    assert len(server.requests) == n + 3


def test_cli_runs_and_prints_urls(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bias_correction.testing.standin", "--workdir", str(tmp_path),
                             "--today", "2021-03-01"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        base = lines[0].split()[1]
        assert base.startswith("http://127.0.0.1:")
        assert lines[1].split()[1] == base + "/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr"
        assert requests.get(base + "/nope", timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
