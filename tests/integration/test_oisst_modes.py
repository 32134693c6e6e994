"""OISST through the S3 open-data bucket (moto's S3 server on loopback), fallbacks and the
preliminary -> final lifecycle of the archive."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from bias_correction import pipeline
from bias_correction.errors import NotYetPublishedError
from bias_correction.sources.oisst import FINAL, PRELIMINARY, oisst_filename
from tests.conftest import settings_for

BUCKET = "noaa-cdr-sea-surface-temp-optimum-interpolation-pds"
DAY = dt.date(2021, 2, 10)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    import json

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    client.create_bucket(Bucket=BUCKET)
    # Like the real open-data bucket: anonymous read and list.
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}))
    yield endpoint
    server.stop()


def _publish(endpoint: str, upstream, day: dt.date, preliminary: bool) -> None:
    import boto3

    path = upstream.oisst_file(day, preliminary)
    key = f"data/v2.1/avhrr/{day:%Y%m}/{oisst_filename(day, PRELIMINARY if preliminary else FINAL)}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="x").put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes(), ACL="public-read")


def _settings(upstream, tmp_path, endpoint, access):
    return settings_for(upstream, tmp_path, upstream={"oisst_s3_endpoint": endpoint, "oisst_access": access})


def test_s3_primary_reads_the_bucket_anonymously(upstream, s3_server, tmp_path) -> None:
    _publish(s3_server, upstream, DAY, preliminary=False)
    ctx = pipeline.make_context(_settings(upstream, tmp_path, s3_server, ["s3"]))
    before = upstream.count("oisst")
    fetched = ctx.oisst.fetch(DAY)
    assert fetched.url == f"s3://{BUCKET}/data/v2.1/avhrr/202102/oisst-avhrr-v02r01.20210210.nc"
    assert fetched.version == FINAL and fetched.downloaded and fetched.etag
    assert upstream.count("oisst") == before  # nothing from the HTTPS tree
    # same bytes as the NCEI tree serves
    assert fetched.sha256 == pipeline.make_context(settings_for(upstream, tmp_path / "h")).oisst.fetch(DAY).sha256
    assert not ctx.oisst.fetch(DAY).downloaded


def test_https_primary_falls_back_to_s3(upstream, s3_server, tmp_path) -> None:
    day = DAY + dt.timedelta(days=1)
    _publish(s3_server, upstream, day, preliminary=False)
    upstream.faults.add("20210211", "status", times=None, code=503)
    ctx = pipeline.make_context(_settings(upstream, tmp_path, s3_server, ["https", "s3"]))
    fetched = ctx.oisst.fetch(day)
    assert fetched.url.startswith("s3://")


def test_missing_everywhere_is_not_yet_published(upstream, s3_server, tmp_path) -> None:
    upstream.today = dt.date(2021, 3, 1)
    ctx = pipeline.make_context(_settings(upstream, tmp_path, s3_server, ["https", "s3"]), today=lambda: upstream.today)
    with pytest.raises(NotYetPublishedError, match=r"2021-03-01.*via https.*via s3"):
        ctx.oisst.fetch(dt.date(2021, 3, 1))


def test_preliminary_is_upgraded_to_final_in_the_archive(upstream, tmp_path) -> None:
    day = dt.date(2021, 2, 20)
    upstream.today = day + dt.timedelta(days=2)
    ctx = pipeline.make_context(settings_for(upstream, tmp_path), today=lambda: upstream.today)
    first = pipeline.archive_oisst_day(ctx, day)
    assert first.source["version"] == PRELIMINARY
    assert pipeline.preliminary_days(ctx) == [day]
    # a week later the final is still not due: nothing is fetched again
    upstream.today = day + dt.timedelta(days=9)
    before = upstream.count("oisst")
    assert not pipeline.archive_oisst_day(ctx, day).written
    assert upstream.count("oisst") == before
    # once the final is published upstream (and the preliminary deleted) a refresh upgrades the day
    upstream.today = day + dt.timedelta(days=16)
    report = pipeline.refresh_preliminary(ctx)
    assert report["upgraded"] == [day.isoformat()] and report["still_preliminary"] == []
    entry = pipeline.archive_oisst_day(ctx, day)
    assert entry.source["version"] == FINAL and not entry.written
    assert pipeline.preliminary_days(ctx) == []


def test_preliminary_stays_when_the_final_is_late(upstream, tmp_path) -> None:
    day = dt.date(2021, 2, 22)
    upstream.today = day + dt.timedelta(days=2)
    ctx = pipeline.make_context(settings_for(upstream, tmp_path), today=lambda: upstream.today)
    pipeline.archive_oisst_day(ctx, day)
    upstream.today = day + dt.timedelta(days=14)  # final expected by our clock, but the server makes it at 14
    upstream.faults.add(r"20210222\.nc", "status", times=None, code=404)  # final late upstream
    report = pipeline.refresh_preliminary(ctx)
    assert report["still_preliminary"] == [day.isoformat()] and report["upgraded"] == []


@pytest.mark.parametrize("kind", ["status", "reset", "html200"])
def test_s3_faults_end_as_clear_errors_and_cache_nothing(upstream, tmp_path, kind) -> None:
    from bias_correction.errors import SstbcError

    # An "S3 endpoint" that fails every request the way a broken gateway does.
    upstream.faults.add(BUCKET, kind, times=None, code=503)
    ctx = pipeline.make_context(_settings(upstream, tmp_path, upstream.base_url, ["s3"]))
    with pytest.raises(SstbcError, match=r"OISST 2021-02-10.*via s3|OISST 2021-02-10 \(final\)"):
        ctx.oisst.fetch(DAY)
    assert ctx.store.list("raw") == []
