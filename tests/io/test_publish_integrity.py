"""Issue 13: no leftovers after a killed publisher, repaired aliases keep the full provenance."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bias_correction.io import publish
from bias_correction.io.provenance import sidecar_key
from bias_correction.storage import Store
from tests.io.test_publish import RUN, _publish


def test_stale_staged_files_are_removed_at_the_next_publish_fresh_ones_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    v1 = _publish(store, "m1.aaaa")
    day = Path(store.url(v1.version_key)).parent
    month = Path(store.url(v1.key)).parent
    stale = [day / f"{Path(v1.version_key).name}.0123456789ab.tmp", month / f".{Path(v1.key).name}.ba9876543210.tmp"]
    fresh = day / f"{Path(v1.version_key).name}.ffffffffffff.tmp"  # a concurrent writer's file in flight
    for p in (*stale, fresh):
        p.write_bytes(b"half-written")
    hour_ago = time.time() - 2 * 3600
    for p in stale:
        os.utime(p, (hour_ago, hour_ago))
    _publish(store, "m2.bbbb", shift=0.1)
    assert [p.exists() for p in stale] == [False, False]
    assert fresh.exists()
    tmp_left = sorted(p.name for p in tmp_path.rglob("*.tmp"))
    assert tmp_left == [fresh.name]


def test_repaired_alias_keeps_the_full_provenance_of_its_version(tmp_path: Path) -> None:
    store = Store(tmp_path)
    pub = _publish(store, "m1.aaaa")
    full = json.loads(store.read_bytes(sidecar_key(pub.version_key)))
    store.remove(pub.key)  # a crash between the index and the alias
    store.remove(sidecar_key(pub.key))
    entry = publish.current_entry(store, "scs", RUN, "convgru-sa")
    assert entry is not None and not publish.alias_matches(store, pub.key, entry)
    publish.refresh_alias(store, entry["key"], pub.key, {"input_digest": entry["input_digest"], "repaired": True})
    side = json.loads(store.read_bytes(sidecar_key(pub.key)))
    assert publish.alias_matches(store, pub.key, entry)
    assert side["repaired"] is True and side["alias_of"] == pub.version_key
    for field in ("model_id", "model_version", "inputs", "sha256", "bytes", "product_version", "published"):
        assert side[field] == full[field], field
