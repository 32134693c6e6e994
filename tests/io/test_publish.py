"""Publishing protocol on a local root: versions stay addressable, the index is written last, and a
crash at any step leaves the previously published state (index + the files it lists + alias) intact."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pytest

from bias_correction.io import publish
from bias_correction.io.product import product_key
from bias_correction.storage import Store
from tests.io.test_product_cf import RUN, _mask, product

STEPS = ["write_local", "validate_local", "upload_temp", "copy_to_final", "verify_remote", "write_sidecar",
         "update_index"]


def _publish(store: Store, version: str, shift: float = 0.0) -> publish.Published:
    ds = product()
    ds["sst"].values[:] += shift
    return publish.publish_product(store, region="scs", run=RUN, model_id="convgru-sa", ds=ds, mask=_mask(),
                                   product_version=version,
                                   record={"model_id": "convgru-sa", "model_version": version.split(".")[0],
                                           "input_digest": f"d-{version}", "inputs": [
                                               {"run": "2021-04-20T12Z", "sha256": "c" * 64, "version": "forecast"}],
                                           "onnxruntime_provider": "CPUExecutionProvider"})


def snapshot(store: Store) -> dict[str, bytes]:
    """Everything published: every file under products/ (temporary names excluded), bytes."""
    return {k: store.read_bytes(k) for k in store.list("products")}


def test_publish_writes_versioned_file_sidecar_index_and_alias(tmp_path) -> None:
    store = Store(tmp_path)
    pub = _publish(store, "m1.aaaa")
    assert pub.version_key == "products/scs/2021/04/20/sstbc_scs_20210420T12Z_convgru-sa_vm1.aaaa.nc"
    assert pub.key == product_key("scs", RUN, "convgru-sa") and pub.index_key == "products/scs/2021/04/20/index.json"
    idx = json.loads(store.read_bytes(pub.index_key))
    prod = idx["products"]["sstbc_scs_20210420T12Z_convgru-sa"]
    assert prod["current"] == "m1.aaaa" and prod["alias_key"] == pub.key
    [entry] = prod["versions"]
    data = store.read_bytes(pub.version_key)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() == pub.sha256 and entry["bytes"] == len(data)
    assert entry["model_version"] == "m1" and entry["inputs"][0]["version"] == "forecast"
    assert store.read_bytes(pub.key) == data  # alias = current version
    side = json.loads(store.read_bytes(pub.version_key + ".provenance.json"))
    assert side["sha256"] == pub.sha256 and side["product_key"] == pub.version_key
    assert not [k for k in store.list("products") if k.endswith(".tmp")]
    assert not list(tmp_path.rglob("*.tmp"))


def test_republishing_keeps_the_previous_version_addressable(tmp_path) -> None:
    store = Store(tmp_path)
    v1 = _publish(store, "m1.aaaa")
    v2 = _publish(store, "m2.bbbb", shift=0.1)  # e.g. a new model version
    prod = json.loads(store.read_bytes(v2.index_key))["products"]["sstbc_scs_20210420T12Z_convgru-sa"]
    assert [v["product_version"] for v in prod["versions"]] == ["m1.aaaa", "m2.bbbb"] and prod["current"] == "m2.bbbb"
    assert store.read_bytes(v2.key) == store.read_bytes(v2.version_key)
    old = publish.read_published(store, "scs", RUN, "convgru-sa", version="m1.aaaa")
    new = publish.read_published(store, "scs", RUN, "convgru-sa")
    np.testing.assert_allclose(new["sst"].values, old["sst"].values + 0.1, atol=1e-4, equal_nan=True)
    assert hashlib.sha256(store.read_bytes(v1.version_key)).hexdigest() == v1.sha256


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_leaves_the_published_state_intact(tmp_path, monkeypatch, step) -> None:
    store = Store(tmp_path)
    _publish(store, "m1.aaaa")
    before = snapshot(store)

    def crash(*a, **k):
        raise RuntimeError(f"crash in {step}")

    monkeypatch.setattr(publish, step, crash)
    with pytest.raises(RuntimeError, match=f"crash in {step}"):
        _publish(store, "m2.bbbb", shift=0.1)
    after = snapshot(store)
    # Index, alias and every listed file are byte-identical; at most an unlisted versioned file appeared.
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) <= {
        "products/scs/2021/04/20/sstbc_scs_20210420T12Z_convgru-sa_vm2.bbbb.nc",
        "products/scs/2021/04/20/sstbc_scs_20210420T12Z_convgru-sa_vm2.bbbb.nc.provenance.json"}
    assert not list(tmp_path.rglob("*.tmp"))
    ds = publish.read_published(store, "scs", RUN, "convgru-sa")  # consumers still get v1, whole
    np.testing.assert_allclose(ds["sst"].values, product()["sst"].values, equal_nan=True)  # v1, not shifted
    monkeypatch.undo()
    _publish(store, "m2.bbbb", shift=0.1)  # the next attempt succeeds
    assert publish.current_entry(store, "scs", RUN, "convgru-sa")["product_version"] == "m2.bbbb"


def test_a_crash_while_refreshing_the_alias_keeps_the_old_alias_whole(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path)
    v1 = _publish(store, "m1.aaaa")
    alias_before = store.read_bytes(v1.key)

    def crash(store_, version_key, alias, record):
        with store_.staged(alias) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash in refresh_alias")

    monkeypatch.setattr(publish, "refresh_alias", crash)
    with pytest.raises(RuntimeError):
        _publish(store, "m2.bbbb", shift=0.1)
    assert store.read_bytes(v1.key) == alias_before  # old alias, whole
    entry = publish.current_entry(store, "scs", RUN, "convgru-sa")
    assert entry["product_version"] == "m2.bbbb"  # published (the index is the publication point)
    assert not publish.alias_matches(store, v1.key, entry)
    monkeypatch.undo()
    publish.refresh_alias(store, entry["key"], v1.key, {})  # what the next run does
    assert publish.alias_matches(store, v1.key, entry)


def test_index_day_and_version_keys_are_validated(tmp_path) -> None:
    from bias_correction.errors import ProductError

    with pytest.raises(ProductError, match="alphanumeric"):
        publish.versioned_key("scs", RUN, "m", "../x")
    assert publish.index_key("scs", dt.datetime(2021, 1, 2, 12)) == "products/scs/2021/01/02/index.json"
    store = Store(tmp_path)
    store.write_bytes(publish.index_key("scs", RUN), b"{broken")
    with pytest.raises(ProductError, match="not valid JSON"):
        publish.current_entry(store, "scs", RUN, "convgru-sa")


def _index_many(root: str, worker: int, n: int) -> None:
    store = Store(root)
    ikey = publish.index_key("scs", RUN)
    for i in range(n):
        pid = f"sstbc_scs_20210420T12Z_model{worker}-{i}"
        publish.update_index(store, ikey, pid, f"products/{pid}.nc",
                             {"product_version": "v1", "key": f"products/{pid}_vv1.nc", "sha256": "0" * 64},
                             "scs", RUN)


def test_concurrent_publishers_of_one_day_keep_every_index_entry(tmp_path) -> None:
    """Publishers of other models (separate processes) update one day's index at once: none is lost."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_index_many, args=(str(tmp_path), w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    idx = publish.read_index(Store(tmp_path), publish.index_key("scs", RUN))
    assert len(idx["products"]) == 45
    assert not [k for k in Store(tmp_path).list("products") if k.endswith(".lock")]  # locks live outside
