"""Post-publish catalogue steps: the STAC Item of the run and the region's "latest" pointer.

Run after ``io.publish.publish_product`` has made the index the publication point, so every key
written here names a complete, listed product. ``products/{region}/latest.json`` points at the
newest run per model and overall; it only moves forward (a backfill of older runs leaves it), and
it is rewritten atomically under the store's lock.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bias_correction.storage import Store

LATEST_SCHEMA = 1


def latest_key(region: str) -> str:
    return f"products/{region}/latest.json"


def href(base_url: str, store: Store, key: str) -> str:
    """Absolute link of ``key``: under the operator's public base URL when set, else the store URL."""
    return f"{base_url.rstrip('/')}/{key}" if base_url else store.url(key)


def read_latest(store: Store, region: str) -> dict[str, Any] | None:
    key = latest_key(region)
    if not store.is_local:
        store.fs.invalidate_cache()
    if not store.exists(key):
        return None
    return dict(json.loads(store.read_bytes(key)))


def update_latest(store: Store, *, region: str, run: dt.datetime, model_id: str, entry: dict[str, Any],
                  index_key: str, alias_key: str, base_url: str = "") -> dict[str, Any]:
    """Point ``latest.json`` at this product when its run is not older than the current pointer's."""
    run_s = f"{run:%Y-%m-%dT%H:%M:%SZ}"
    gate = str(entry.get("publication_gate") or "passed")
    item = {"run": run_s, "model_id": model_id, "model_version": entry.get("model_version"),
            "product_version": entry["product_version"], "key": entry["key"], "href": href(base_url, store, entry["key"]),
            "sha256": entry["sha256"], "bytes": entry["bytes"], "index_key": index_key, "alias_key": alias_key,
            "publication_gate": gate, "fallback": gate.startswith("failed"), "stac_item": entry.get("stac_item")}
    key = latest_key(region)
    with store.exclusive(key):
        cur = read_latest(store, region) or {"schema_version": LATEST_SCHEMA, "region": region, "by_model": {}}
        prev = cur["by_model"].get(model_id)
        if prev is None or prev["run"] <= run_s:
            cur["by_model"][model_id] = item
        newest = max(cur["by_model"].values(), key=lambda v: (v["run"], v["model_id"]))
        cur.update(latest=newest, base_url=base_url, updated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        store.write_bytes(key, (json.dumps(cur, indent=1, sort_keys=True) + "\n").encode())
    return cur


def is_complete(store: Store, region: str, run: dt.datetime, model_id: str, entry: dict[str, Any], *,
                quicklooks: bool) -> bool:
    """True when the post-publish steps of this version are all done (its STAC item names it, the
    quicklooks exist and the latest pointer is not older than this run)."""
    from bias_correction.io import quicklook, stac
    from bias_correction.io.publish import product_id

    ikey = stac.item_key(region, run, product_id(region, run, model_id))
    if not store.exists(ikey):
        return False
    item = json.loads(store.read_bytes(ikey))
    if item.get("properties", {}).get("sstbc:product_version") != entry["product_version"]:
        return False
    if quicklooks and not store.exists(quicklook.quicklook_key(entry["key"], 1)):
        return False
    ptr = read_latest(store, region)
    cur = (ptr or {}).get("by_model", {}).get(model_id)
    return cur is not None and cur["run"] >= f"{run:%Y-%m-%dT%H:%M:%SZ}"


def _attrs(store: Store, key: str) -> dict[str, Any]:
    from bias_correction.io.netcdf import read_dataset

    with store.local_path(key) as path:
        return dict(read_dataset(path, engine="netcdf4").attrs)


def after_publish(store: Store, *, region: str, run: dt.datetime, model_id: str, entry: dict[str, Any],
                  index_key: str, alias_key: str, base_url: str = "", attrs: dict[str, Any] | None = None,
                  extra_assets: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every step that follows publication, in order, each idempotent (re-running repairs an interrupted
    one): the STAC Item (and its Collection), then the latest pointer.

    ``attrs``: the product's global attributes (read from the published file when not given);
    ``extra_assets``: name -> {key, title, media_type, roles} of further published files (Zarr, PNGs).
    """
    from bias_correction.io import stac
    from bias_correction.io.publish import product_id

    attrs = attrs if attrs is not None else _attrs(store, entry["key"])
    pid = product_id(region, run, model_id)
    item = stac.build_item(store, region=region, run=run, product_id=pid, entry=entry, attrs=attrs,
                           base_url=base_url, extra_assets=extra_assets)
    with store.exclusive(stac.collection_key(region)):
        ikey = stac.write_item(store, item, region=region, run=run, base_url=base_url)
    latest = update_latest(store, region=region, run=run, model_id=model_id, entry={**entry, "stac_item": ikey},
                           index_key=index_key, alias_key=alias_key, base_url=base_url)
    return {"latest": latest, "stac_item": ikey}
