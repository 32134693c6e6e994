"""Reading the products: list and open the current products of a region and period as one dataset.

Consumers never list buckets or guess names: the per-day indexes
(``products/{region}/{YYYY}/{MM}/{DD}/index.json``) say which products exist and which version is
current, and ``products/{region}/latest.json`` points at the newest run. Works on a local root and on
``s3://`` (fsspec options passed through). Opened files are checked against the index's sha256.

    >>> from bias_correction import catalog
    >>> cube = catalog.open_products("s3://bucket/sstbc", "scs", start="2021-04-01", end="2021-04-30")
    >>> cube["sst"].sel(lat=14, lon=112, method="nearest")   # (forecast_reference_time, lead_day)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from bias_correction.errors import ProductError
from bias_correction.io.catalog_write import href, read_latest
from bias_correction.io.netcdf import read_dataset
from bias_correction.io.publish import INDEX_NAME, index_key, read_index
from bias_correction.storage import Store


@dataclass(frozen=True)
class ProductRef:
    """One current product as the per-day index lists it."""

    region: str
    run: str
    product_id: str
    model_id: str
    model_version: str
    product_version: str
    key: str
    href: str
    sha256: str
    bytes: int
    publication_gate: str
    #: True for a gate fallback (raw HYCOM) or a late-input fallback (``pipeline.late``)
    fallback: bool
    #: the model that made this version (differs from ``model_id`` for a late-input fallback)
    made_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _store(root: str | Store, storage_options: dict[str, Any] | None) -> Store:
    return root if isinstance(root, Store) else Store(root, storage_options)


def _day(d: str | dt.date | None) -> dt.date | None:
    return dt.date.fromisoformat(d) if isinstance(d, str) else d


def _index_keys(store: Store, region: str, start: dt.date | None, end: dt.date | None) -> list[str]:
    if start is not None and end is not None:
        if end < start:
            raise ProductError(f"catalogue period {start}..{end} is empty (end before start)")
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        return [index_key(region, dt.datetime.combine(d, dt.time(12))) for d in days]
    keys = [k for k in store.list(f"products/{region}") if k.endswith("/" + INDEX_NAME)]
    out = []
    for k in keys:  # products/{region}/YYYY/MM/DD/index.json
        y, m, d = k.split("/")[-4:-1]
        day = dt.date(int(y), int(m), int(d))
        if (start is None or day >= start) and (end is None or day <= end):
            out.append(k)
    return out


def product_line(region: str, pid: str) -> str:
    """The model id a product is published under (its product id and key), which is what consumers
    select by: a late-input fallback product keeps the line's id while its entry names the model
    that actually made it (``sstbc_{region}_{YYYYMMDDTHH}Z_{model_id}``)."""
    return pid[len(f"sstbc_{region}_") + len("YYYYMMDDTHHZ_"):]


def list_products(root: str | Store, region: str, *, start: str | dt.date | None = None,
                  end: str | dt.date | None = None, model_id: str | None = None,
                  storage_options: dict[str, Any] | None = None, base_url: str = "") -> list[ProductRef]:
    """The current version of every product of ``region`` with a run day in ``start..end`` (inclusive)."""
    store = _store(root, storage_options)
    refs = []
    for ikey in _index_keys(store, region, _day(start), _day(end)):
        idx = read_index(store, ikey)
        if idx is None:
            continue
        for pid, prod in sorted(idx.get("products", {}).items()):
            entry = next((v for v in prod["versions"] if v["product_version"] == prod.get("current")), None)
            line = product_line(region, pid)
            if entry is None or (model_id is not None and line != model_id):
                continue
            gate = str(entry.get("publication_gate") or "passed")
            refs.append(ProductRef(region, str(idx["run"]), pid, line,
                                   str(entry.get("model_version")), entry["product_version"], entry["key"],
                                   href(base_url, store, entry["key"]), entry["sha256"], int(entry["bytes"]),
                                   gate, gate.startswith("failed") or bool(entry.get("fallback")),
                                   str(entry.get("model_id"))))
    return sorted(refs, key=lambda r: (r.run, r.model_id))


def latest(root: str | Store, region: str, *, model_id: str | None = None,
           storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The newest product of the region (of ``model_id`` when given), from ``latest.json``."""
    store = _store(root, storage_options)
    ptr = read_latest(store, region)
    if ptr is None:
        raise ProductError(f"no products/{region}/latest.json under {store.root}: nothing published for {region}")
    if model_id is None:
        return dict(ptr["latest"])
    if model_id not in ptr["by_model"]:
        raise ProductError(f"products/{region}/latest.json lists no product of model {model_id!r} "
                           f"(models: {sorted(ptr['by_model'])})")
    return dict(ptr["by_model"][model_id])


def _open_verified(store: Store, key: str, sha256: str) -> xr.Dataset:
    data = store.read_bytes(key)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ProductError(f"{store.url(key)} does not match the sha256 in its index ({sha256[:12]}…)")
    with tempfile.TemporaryDirectory(prefix="sstbc-catalog-") as tmp:
        path = Path(tmp) / Path(key).name
        path.write_bytes(data)
        return read_dataset(path, engine="netcdf4")


def open_latest(root: str | Store, region: str, *, model_id: str | None = None,
                storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The newest product as a dataset (sha256-checked)."""
    store = _store(root, storage_options)
    item = latest(store, region, model_id=model_id)
    return _open_verified(store, item["key"], item["sha256"])


def open_products(root: str | Store, region: str, *, start: str | dt.date | None = None,
                  end: str | dt.date | None = None, model_id: str | None = None,
                  storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The current products of a period as one (forecast_reference_time, lead_day, lat, lon) dataset.

    ``time`` is the 2-D valid time. All products must be of one model (pass ``model_id`` when a day
    holds several); each file is checked against its index's sha256 before use.
    """
    store = _store(root, storage_options)
    refs = list_products(store, region, start=start, end=end, model_id=model_id)
    if not refs:
        raise ProductError(f"no published {region} product with a run day in {start or '…'}..{end or '…'}"
                           + (f" for model {model_id}" if model_id else "") + f" under {store.root}")
    models = sorted({r.model_id for r in refs})
    if len(models) > 1:
        raise ProductError(f"{region} {start}..{end} holds products of several models {models}; pass model_id")
    parts = [_open_verified(store, r.key, r.sha256) for r in refs]
    cube = xr.combine_by_coords(parts, data_vars="minimal", coords="minimal", compat="override",
                                combine_attrs="drop_conflicts", join="exact")
    cube = cube.transpose("forecast_reference_time", "lead_day", ...)
    cube.attrs["sstbc_catalog_products"] = " ".join(r.key for r in refs)
    return cube
