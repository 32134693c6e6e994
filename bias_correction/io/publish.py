"""Publishing products to the storage root (local disk or S3) so consumers never see a partial state.

Protocol for one product (each step is a function here, so tests can make any of them fail):

1. ``write_local``: write the NetCDF to a local temporary file;
2. ``validate_local``: reopen and validate it (NaN pattern == mask, ranges), compute sha256 and size;
3. ``upload_temp``: upload it to a temporary key next to its final, *versioned* key;
4. ``copy_to_final``: copy (S3) / rename (local) the temporary key to the versioned key, which is
   immutable: ``products/{region}/{YYYY}/{MM}/{DD}/sstbc_..._{model_id}_v{product_version}.nc``;
   ``verify_remote`` checks its size (and sha256) after the copy;
5. ``write_sidecar``: the provenance JSON next to the versioned file;
6. ``update_index``: **last**, the per-day index ``products/{region}/{YYYY}/{MM}/{DD}/index.json``
   (a JSON catalogue of every product of that run day: each version's key, sha256, size, model
   id/version, input versions, creation time, and which version is current) is rewritten atomically.

The index is the publication point: consumers read it and open only the keys it lists, which are
immutable and complete. A crash before step 6 leaves the index -- and so the published state --
exactly as it was (at worst an unlisted versioned file remains, overwritten by the next attempt).
After step 6 the convenience alias ``products/{region}/{YYYY}/{MM}/sstbc_..._{model_id}.nc`` (what
``sstbc run`` reports, and older consumers read) is refreshed from the versioned file with a staged
copy; a crash there leaves the previous alias whole and the next run repairs it.

Re-publishing a day (new model version, re-trained model, new inputs) adds a version: earlier
versions stay addressable by their keys and stay listed in the index.
Concurrent publishers of the same day lose nothing: on a local root they are serialised on the index
with a file lock; on S3 the index is written with a conditional PUT (``If-None-Match: *`` to create it,
``If-Match: <ETag read>`` to update it) and re-read and retried on conflict, a bounded number of times.

Staged leftovers of a killed publisher (``*.tmp`` keys) under the product's month are removed at the
start of the next publication (:meth:`Store.remove_stale_temporaries`); a repaired alias gets the full
provenance record of the version it points at (read from that version's sidecar).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from bias_correction.errors import IndexConflictError, ProductError
from bias_correction.grid.mask import OceanMask
from bias_correction.io.product import _encoding, product_key, validate_product
from bias_correction.io.provenance import sidecar_key
from bias_correction.io.netcdf import read_dataset, write_dataset
from bias_correction.storage import Store

INDEX_SCHEMA = 1
INDEX_NAME = "index.json"


def product_id(region: str, run: dt.datetime, model_id: str) -> str:
    return f"sstbc_{region}_{run:%Y%m%dT%H}Z_{model_id}"


def day_prefix(region: str, run: dt.datetime) -> str:
    return f"products/{region}/{run:%Y}/{run:%m}/{run:%d}"


def index_key(region: str, run: dt.datetime) -> str:
    return f"{day_prefix(region, run)}/{INDEX_NAME}"


def versioned_key(region: str, run: dt.datetime, model_id: str, product_version: str) -> str:
    if not product_version.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ProductError(f"product version {product_version!r} must be alphanumeric (with - _ .)")
    return f"{day_prefix(region, run)}/{product_id(region, run, model_id)}_v{product_version}.nc"


@dataclass(frozen=True)
class Published:
    """Where a product is published: alias key, immutable versioned key, checksum, index."""

    key: str
    version_key: str
    product_version: str
    sha256: str
    bytes: int
    index_key: str


# --- steps ------------------------------------------------------------------------------------------

def write_local(ds: xr.Dataset, path: Path) -> None:
    write_dataset(ds, path, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds))


def validate_local(path: Path, mask: OceanMask) -> tuple[str, int]:
    """Validate the local file; return its (sha256, size)."""
    validate_product(path, mask)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def upload_temp(store: Store, local: Path, key: str) -> str:
    """Upload ``local`` to a temporary key beside ``key``; returns the temporary key."""
    tmp_key = f"{key}.{uuid.uuid4().hex[:12]}.tmp"
    if store.is_local:
        dest = Path(store.url(tmp_key))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
        with open(dest, "rb") as f:
            os.fsync(f.fileno())
    else:
        store.fs.put_file(str(local), store.url(tmp_key))
    return tmp_key


def copy_to_final(store: Store, tmp_key: str, key: str) -> None:
    """Move the temporary key to ``key`` (local: atomic rename; S3: server-side copy, then delete)."""
    if store.is_local:
        os.replace(store.url(tmp_key), store.url(key))
        with contextlib.suppress(OSError):
            fd = os.open(Path(store.url(key)).parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    else:
        store.fs.copy(store.url(tmp_key), store.url(key))
        store.fs.invalidate_cache()


def remove_temp(store: Store, tmp_key: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        store.remove(tmp_key)


def verify_remote(store: Store, key: str, sha256: str, size: int) -> None:
    """The published object has the size and sha256 of the validated local file."""
    if not store.is_local:
        store.fs.invalidate_cache()
    got = store.size(key)
    if got != size:
        raise ProductError(f"published {key} has {got} bytes, the validated file {size}")
    digest = _sha256_of(store, key)
    if digest != sha256:
        raise ProductError(f"published {key} sha256 {digest} != validated {sha256}")


def _sha256_of(store: Store, key: str) -> str:
    """sha256 of a stored object, read in 1 MiB blocks (a global product does not fit in memory twice)."""
    h = hashlib.sha256()
    with store.fs.open(store.url(key), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sidecar(store: Store, key: str, record: dict[str, Any]) -> None:
    store.write_bytes(sidecar_key(key), (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n").encode())


def read_index(store: Store, ikey: str) -> dict[str, Any] | None:
    if not store.is_local:
        store.fs.invalidate_cache()
    if not store.exists(ikey):
        return None
    return _parse_index(store, ikey, store.read_bytes(ikey))


def _parse_index(store: Store, ikey: str, data: bytes) -> dict[str, Any]:
    try:
        idx = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProductError(f"product index {store.url(ikey)} is not valid JSON: {exc}") from None
    if idx.get("schema_version") != INDEX_SCHEMA:
        raise ProductError(f"product index {store.url(ikey)} has schema {idx.get('schema_version')!r}, "
                           f"expected {INDEX_SCHEMA}")
    return dict(idx)


def update_index(store: Store, ikey: str, pid: str, alias: str, entry: dict[str, Any],
                 region: str, run: dt.datetime) -> dict[str, Any]:
    """Add ``entry`` as the current version of product ``pid`` and rewrite the index atomically.

    Concurrent publishers of the same day (other models, other processes) lose no entry: serialised on
    a local root (``Store.exclusive``), conditional writes on S3 (:func:`_update_index_conditional`).
    """
    def add(idx: dict[str, Any] | None) -> dict[str, Any]:
        idx = idx or {"schema_version": INDEX_SCHEMA, "region": region, "run": f"{run:%Y-%m-%dT%H:%M:%SZ}",
                      "products": {}}
        prod = idx["products"].setdefault(pid, {"alias_key": alias, "current": None, "versions": []})
        prod["versions"] = [v for v in prod["versions"] if v["product_version"] != entry["product_version"]] + [entry]
        prod["current"] = entry["product_version"]
        prod["alias_key"] = alias
        idx["updated"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return idx

    if not store.is_local and store.root.startswith("s3://"):
        return _update_index_conditional(store, ikey, add)
    with store.exclusive(ikey):
        idx = add(read_index(store, ikey))
        store.write_bytes(ikey, _index_bytes(idx))
    return idx


def _index_bytes(idx: dict[str, Any]) -> bytes:
    return (json.dumps(idx, indent=1, sort_keys=True) + "\n").encode()


#: Conditional index writes per publication before giving up (IndexConflictError, retryable).
INDEX_ATTEMPTS = 10


def _update_index_conditional(store: Store, ikey: str, add: Any, attempts: int = INDEX_ATTEMPTS,
                              sleep: Any = time.sleep) -> dict[str, Any]:
    """Read-modify-write of the index on S3 with optimistic concurrency: read (bytes + ETag), add the entry,
    PUT only if the object is unchanged; on conflict re-read and retry with jittered, capped backoff.

    A single PUT is atomic on S3, so the index is never seen half-written; the condition makes a
    concurrent writer's entry survive instead of being overwritten (last writer no longer wins).
    """
    from bias_correction.sources import s3

    url = store.url(ikey)
    for attempt in range(attempts):
        got = s3.read_with_etag(store.fs, url)
        idx = add(_parse_index(store, ikey, got[0]) if got is not None else None)
        if s3.put_if(store.fs, url, _index_bytes(idx), got[1] if got is not None else None):
            store.fs.invalidate_cache()
            return idx
        sleep(min(1.0, 0.02 * 2 ** attempt) * random.uniform(0.5, 1.0))
    raise IndexConflictError(f"product index {url}: {attempts} conditional writes lost to concurrent publishers")


def refresh_alias(store: Store, version_key: str, alias: str, record: dict[str, Any]) -> None:
    """Point the convenience alias at the current version (staged copy: the old alias stays whole until done).

    The alias sidecar is the version's full provenance (its sidecar) updated with ``record``, so a
    repair after a crash (``record`` = a few fields) keeps everything the version records.
    """
    with store.staged(alias) as tmp:
        if store.is_local:
            shutil.copyfile(store.url(version_key), tmp)
        else:
            store.fs.get_file(store.url(version_key), str(tmp))
    base: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, OSError, ValueError):
        base = dict(json.loads(store.read_bytes(sidecar_key(version_key))))
    write_sidecar(store, alias, {**base, **record, "alias_of": version_key})


# --- whole protocol ---------------------------------------------------------------------------------

def current_entry(store: Store, region: str, run: dt.datetime, model_id: str) -> dict[str, Any] | None:
    """The index entry of the current version of a product, or None when the day has no such product."""
    idx = read_index(store, index_key(region, run))
    prod = (idx or {}).get("products", {}).get(product_id(region, run, model_id))
    if not prod or not prod.get("current"):
        return None
    return next((v for v in prod["versions"] if v["product_version"] == prod["current"]), None)


def alias_matches(store: Store, alias: str, entry: dict[str, Any]) -> bool:
    """True when the alias holds the bytes of ``entry`` (size and sha256)."""
    if not store.exists(alias) or store.size(alias) != int(entry["bytes"]):
        return False
    return _sha256_of(store, alias) == entry["sha256"]


def publish_product(store: Store, *, region: str, run: dt.datetime, model_id: str, ds: xr.Dataset,
                    mask: OceanMask, product_version: str, record: dict[str, Any]) -> Published:
    """Write, validate, upload (temp key), copy to the versioned key, sidecar, index (last), alias."""
    return publish_written(store, region=region, run=run, model_id=model_id, write=lambda local: write_local(ds, local),
                           validate=lambda local: validate_local(local, mask), product_version=product_version,
                           record=record)


def publish_written(store: Store, *, region: str, run: dt.datetime, model_id: str, write: Any, validate: Any,
                    product_version: str, record: dict[str, Any]) -> Published:
    """:func:`publish_product` with the local file written by ``write(path)`` and checked by ``validate(path)
    -> (sha256, bytes)`` (the streaming path writes and validates lead by lead: ``pipeline.correct_stream``)."""
    pid = product_id(region, run, model_id)
    alias = product_key(region, run, model_id)
    vkey = versioned_key(region, run, model_id, product_version)
    ikey = index_key(region, run)
    store.remove_stale_temporaries(f"products/{region}/{run:%Y}/{run:%m}")  # leftovers of a killed publisher
    tmpdir = Path(tempfile.mkdtemp(prefix="sstbc-publish-"))
    try:
        local = tmpdir / Path(vkey).name
        write(local)
        sha, size = validate(local)
        tmp_key = upload_temp(store, local, vkey)
        try:
            copy_to_final(store, tmp_key, vkey)
        finally:
            remove_temp(store, tmp_key)
        verify_remote(store, vkey, sha, size)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    full = {**record, "product_id": pid, "product_version": product_version, "product_key": vkey,
            "sha256": sha, "bytes": size, "published": created}
    write_sidecar(store, vkey, full)
    entry = {"product_version": product_version, "key": vkey, "sha256": sha, "bytes": size,
             "sidecar": sidecar_key(vkey), "model_id": record.get("model_id"),
             "model_version": record.get("model_version"), "model_sha256": record.get("model_sha256"),
             "input_digest": record.get("input_digest"),
             **({"issue_digest": record["issue_digest"]} if record.get("issue_digest") else {}),
             "inputs": [{"run": i.get("run"), "sha256": i.get("sha256"), "version": i.get("version")}
                        for i in record.get("inputs", [])],
             "training_data_versions": record.get("training_data_versions"),
             "provider": record.get("onnxruntime_provider"), "created": created,
             "publication_gate": record.get("publication_gate", "passed"), "fallback": record.get("fallback"),
             **({"guard": record["guard_carried"]} if record.get("guard_carried") else {})}
    update_index(store, ikey, pid, alias, entry, region, run)
    refresh_alias(store, vkey, alias, full)
    return Published(alias, vkey, product_version, sha, size, ikey)


def read_published(store: Store, region: str, run: dt.datetime, model_id: str,
                   version: str | None = None) -> xr.Dataset:
    """What a consumer does: read the index, open the listed (current or given) version, check its sha256."""
    idx = read_index(store, index_key(region, run))
    prod = (idx or {}).get("products", {}).get(product_id(region, run, model_id))
    if not prod:
        raise ProductError(f"no published product {product_id(region, run, model_id)} in {index_key(region, run)}")
    want = version or prod["current"]
    entry = next((v for v in prod["versions"] if v["product_version"] == want), None)
    if entry is None:
        raise ProductError(f"product {product_id(region, run, model_id)} has no version {want!r}")
    data = store.read_bytes(entry["key"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ProductError(f"{entry['key']} does not match the sha256 in the index")
    with store.local_path(entry["key"]) as path:
        return read_dataset(path, engine="netcdf4")
