"""The publishing protocol against a real S3 API (moto's server on loopback, s3fs client)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import numpy as np
import pytest

from bias_correction.io import publish
from bias_correction.storage import Store
from tests.io.test_product_cf import RUN, product
from tests.io.test_publish import STEPS, _publish, snapshot

BUCKET = "sstbc-products"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="x").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def s3_options(endpoint: str) -> dict:
    return {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}, "key": "x", "secret": "x",
            "skip_instance_cache": True}


@pytest.fixture
def store(s3_endpoint: str, request: pytest.FixtureRequest) -> Store:
    return Store(f"s3://{BUCKET}/{request.node.name.replace('[', '-').replace(']', '')}", s3_options(s3_endpoint))


def all_objects(store: Store) -> list[str]:
    """Every object under the root, temporary keys included (Store.list hides them)."""
    store.fs.invalidate_cache()
    base = store.root.split("://", 1)[1]
    return sorted(p[len(base) + 1:] for p in store.fs.find(base))


def test_publish_and_republish_on_s3(store: Store) -> None:
    v1 = _publish(store, "m1.aaaa")
    v2 = _publish(store, "m2.bbbb", shift=0.1)
    idx = json.loads(store.read_bytes(v2.index_key))
    prod = idx["products"]["sstbc_scs_20210420T12Z_convgru-sa"]
    assert [v["product_version"] for v in prod["versions"]] == ["m1.aaaa", "m2.bbbb"]
    for pub in (v1, v2):
        assert hashlib.sha256(store.read_bytes(pub.version_key)).hexdigest() == pub.sha256
    assert store.read_bytes(v2.key) == store.read_bytes(v2.version_key)
    new = publish.read_published(store, "scs", RUN, "convgru-sa")
    old = publish.read_published(store, "scs", RUN, "convgru-sa", version="m1.aaaa")
    np.testing.assert_allclose(new["sst"].values, old["sst"].values + 0.1, atol=1e-4, equal_nan=True)
    assert not [k for k in all_objects(store) if k.endswith(".tmp")]


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_any_step_on_s3_leaves_the_published_state(store: Store, monkeypatch, step) -> None:
    _publish(store, "m1.aaaa")
    before = snapshot(store)

    def crash(*a, **k):
        raise RuntimeError(f"crash in {step}")

    monkeypatch.setattr(publish, step, crash)
    with pytest.raises(RuntimeError):
        _publish(store, "m2.bbbb", shift=0.1)
    after = snapshot(store)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all("vm2.bbbb" in k for k in set(after) - set(before))  # only unlisted new-version objects
    assert not [k for k in all_objects(store) if k.endswith(".tmp")]  # the temporary key was removed
    got = publish.read_published(store, "scs", RUN, "convgru-sa")
    np.testing.assert_allclose(got["sst"].values, product()["sst"].values, equal_nan=True)


def test_store_takes_s3_options_from_settings(s3_endpoint: str, tmp_path) -> None:
    from bias_correction.config import settings_from_dict
    from bias_correction.pipeline import make_context

    s = settings_from_dict({"storage_root": f"s3://{BUCKET}/ctx", "storage_options": s3_options(s3_endpoint)})
    ctx = make_context(s)
    ctx.store.write_bytes("a/b.txt", b"x")
    assert ctx.store.read_bytes("a/b.txt") == b"x"
    assert settings_from_dict({"storage_root": "x"}).fingerprint() == settings_from_dict(
        {"storage_root": "x", "storage_options": {"key": "secret"}}).fingerprint()
