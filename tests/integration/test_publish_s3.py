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
    import threading

    from moto.moto_server.threaded_moto_server import MotoRequestHandler, make_server
    from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app

    class AtomicMotoServer(ThreadedMotoServer):
        """moto's server with one request at a time. Real S3 evaluates a conditional PUT (If-Match /
        If-None-Match) atomically; moto checks and stores in two steps, so two threaded requests can
        both pass the check. Serialising requests gives moto S3's semantics for the concurrency tests."""

        def _server_entry(self) -> None:
            app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

            def serialised(environ, start_response):
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(self._ip_address, self._port, serialised, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
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


# --- issue 13: conditional writes of the per-day index -------------------------------------------------

def _publish_as(endpoint: str, root: str, model_id: str, versions: list[str], barrier) -> None:
    """One publisher process: publish ``versions`` of ``model_id`` for RUN on the S3 root."""
    from tests.io.test_publish import _mask

    store = Store(root, s3_options(endpoint))
    barrier.wait(timeout=60)
    for v in versions:
        publish.publish_product(store, region="scs", run=RUN, model_id=model_id, ds=product(), mask=_mask(),
                                product_version=v, record={"model_id": model_id, "model_version": v,
                                                           "input_digest": f"d-{model_id}-{v}", "inputs": []})


@pytest.mark.slow
def test_three_concurrent_publishers_of_one_day_keep_every_entry(store: Store, s3_endpoint: str) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    models = [f"model-{i}" for i in range(3)]
    versions = ["v1.a"]
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_publish_as, args=(s3_endpoint, store.root, m, versions, barrier)) for m in models]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    idx = json.loads(store.read_bytes(publish.index_key("scs", RUN)))
    assert sorted(idx["products"]) == [f"sstbc_scs_20210420T12Z_{m}" for m in models]
    for m in models:
        prod = idx["products"][f"sstbc_scs_20210420T12Z_{m}"]
        assert [v["product_version"] for v in prod["versions"]] == versions and prod["current"] == "v1.a"
    assert not [k for k in all_objects(store) if k.endswith(".tmp")]


def test_index_write_that_loses_a_race_is_retried_and_keeps_the_rival_entry(store: Store, monkeypatch) -> None:
    from bias_correction.sources import s3

    _publish(store, "m1.aaaa")
    ikey = publish.index_key("scs", RUN)
    real_read, real_put = s3.read_with_etag, s3.put_if
    puts: list[bool] = []

    def read_then_rival_writes(fs, url):
        got = real_read(fs, url)
        if not puts:  # a rival publisher rewrites the index between our read and our write
            idx = json.loads(got[0])
            idx["products"]["sstbc_scs_20210420T12Z_rival"] = {"alias_key": "x", "current": "r", "versions": []}
            store.write_bytes(ikey, json.dumps(idx).encode())
        return got

    def put(fs, url, data, etag):
        puts.append(real_put(fs, url, data, etag))
        return puts[-1]

    monkeypatch.setattr(s3, "read_with_etag", read_then_rival_writes)
    monkeypatch.setattr(s3, "put_if", put)
    _publish(store, "m2.bbbb", shift=0.1)
    assert puts == [False, True]  # 412 on the stale ETag, then success on the re-read index
    idx = json.loads(store.read_bytes(ikey))
    assert "sstbc_scs_20210420T12Z_rival" in idx["products"]
    prod = idx["products"]["sstbc_scs_20210420T12Z_convgru-sa"]
    assert [v["product_version"] for v in prod["versions"]] == ["m1.aaaa", "m2.bbbb"]


def test_conditional_put_refuses_a_stale_etag_and_a_create_over_an_existing_object(store: Store) -> None:
    from bias_correction.sources import s3

    url = store.url("products/x/index.json")
    assert s3.put_if(store.fs, url, b"{}", None) is True
    assert s3.put_if(store.fs, url, b"{}", None) is False  # If-None-Match: * on an existing object
    data, etag = s3.read_with_etag(store.fs, url)
    assert data == b"{}"
    assert s3.put_if(store.fs, url, b'{"a": 1}', etag) is True
    assert s3.put_if(store.fs, url, b'{"b": 2}', etag) is False  # If-Match on the old ETag
    assert s3.read_with_etag(store.fs, url)[0] == b'{"a": 1}'
