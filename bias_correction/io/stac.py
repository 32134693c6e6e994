"""STAC catalogue of the products: one Item per run (forecast extension), one Collection per region.

Written as the last step of publishing (``io.catalog_write.after_publish``), so every asset an Item
links is already published and listed in its per-day index. Layout under the storage root::

    stac/{region}/collection.json                       the region's Collection (links every item)
    stac/{region}/items/{YYYY}/{MM}/{product_id}.json    one Item per run and model

Items carry ``forecast:reference_datetime`` and ``forecast:horizon`` (STAC forecast extension), the
valid period as ``start_datetime``/``end_datetime``, and the publication gate's verdict
(``sstbc:publication_gate``, ``sstbc:fallback``). Assets: the NetCDF (data), its provenance sidecar
(metadata) and, when present, the region's Zarr store and the run's quicklook PNGs (overview).
Re-running for a run rewrites its Item in place (idempotent); each JSON is written atomically.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pystac

from bias_correction.storage import Store

FORECAST_EXT = "https://stac-extensions.github.io/forecast/v0.2.0/schema.json"
NETCDF_TYPE = "application/x-netcdf"
ZARR_TYPE = "application/vnd+zarr"


def collection_key(region: str) -> str:
    return f"stac/{region}/collection.json"


def item_key(region: str, run: dt.datetime, product_id: str) -> str:
    return f"stac/{region}/items/{run:%Y}/{run:%m}/{product_id}.json"


def _link(store: Store, base_url: str, key: str) -> str:
    return f"{base_url.rstrip('/')}/{key}" if base_url else store.url(key)


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def build_item(store: Store, *, region: str, run: dt.datetime, product_id: str, entry: dict[str, Any],
               attrs: dict[str, Any], base_url: str = "", extra_assets: dict[str, dict[str, Any]] | None = None
               ) -> pystac.Item:
    """The Item of one published product, from its index entry and global attributes."""
    lat0, lat1 = float(attrs["geospatial_lat_min"]), float(attrs["geospatial_lat_max"])
    lon0, lon1 = float(attrs["geospatial_lon_min"]), float(attrs["geospatial_lon_max"])
    bbox = [lon0, lat0, lon1, lat1]
    geometry = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}
    start, end = _parse(attrs["time_coverage_start"]), _parse(attrs["time_coverage_end"])
    run_utc = run.replace(tzinfo=dt.timezone.utc)
    gate = str(entry.get("publication_gate") or "passed")
    horizon_h = int(round((end - run_utc).total_seconds() / 3600))
    props = {
        "forecast:reference_datetime": f"{run:%Y-%m-%dT%H:%M:%SZ}",
        "forecast:horizon": f"PT{horizon_h}H", "forecast:duration": str(attrs.get("time_coverage_resolution", "P1D")),
        "forecast:variable": "sea_surface_temperature",
        "title": str(attrs.get("title", product_id)), "license": "other",
        "sstbc:model_id": entry.get("model_id"), "sstbc:model_version": entry.get("model_version"),
        "sstbc:product_version": entry["product_version"], "sstbc:publication_gate": gate,
        "sstbc:fallback": gate.startswith("failed"), "sstbc:synthetic": attrs.get("sstbc_synthetic") == "true",
        "sstbc:lead_days": int(attrs.get("forecast_lead_days", 0)),
        "providers": [{"name": str(attrs.get("institution", "sstbc")), "roles": ["producer", "processor"]},
                      {"name": str(attrs.get("publisher_name", "sstbc")), "roles": ["host"]}],
    }
    item = pystac.Item(id=product_id, geometry=geometry, bbox=bbox, datetime=None, start_datetime=start,
                       end_datetime=end, properties=props, stac_extensions=[FORECAST_EXT])
    item.add_asset("data", pystac.Asset(_link(store, base_url, entry["key"]), title="CF-1.11 NetCDF product",
                                        media_type=NETCDF_TYPE, roles=["data"],
                                        extra_fields={"file:checksum_sha256": entry["sha256"], "file:size": entry["bytes"]}))
    if entry.get("sidecar"):
        item.add_asset("provenance", pystac.Asset(_link(store, base_url, entry["sidecar"]), title="provenance record",
                                                  media_type=pystac.MediaType.JSON, roles=["metadata"]))
    for name, asset in (extra_assets or {}).items():
        item.add_asset(name, pystac.Asset(_link(store, base_url, asset["key"]), title=asset.get("title"),
                                          media_type=asset.get("media_type"), roles=asset.get("roles", ["overview"])))
    item.set_self_href(_link(store, base_url, item_key(region, run, product_id)))
    return item


def _collection(store: Store, region: str, base_url: str) -> dict[str, Any]:
    key = collection_key(region)
    if not store.is_local:
        store.fs.invalidate_cache()
    if store.exists(key):
        return dict(json.loads(store.read_bytes(key)))
    extent = pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[None, None]]))
    col = pystac.Collection(id=f"sstbc-{region}", description=f"Bias-corrected HYCOM SST forecasts, region {region}",
                            extent=extent, license="other", stac_extensions=[FORECAST_EXT],
                            extra_fields={"forecast:variable": "sea_surface_temperature"})
    col.set_self_href(_link(store, base_url, key))
    d = col.to_dict(include_self_link=True, transform_hrefs=False)
    d["links"] = [ln for ln in d["links"] if ln["rel"] in ("self",)]
    return d


def write_item(store: Store, item: pystac.Item, *, region: str, run: dt.datetime, base_url: str = "") -> str:
    """Write the Item, then add it to the Collection (link, extents). Returns the Item's key."""
    ikey = item_key(region, run, item.id)
    col = _collection(store, region, base_url)
    rel = f"./items/{run:%Y}/{run:%m}/{item.id}.json"
    item_d = item.to_dict(include_self_link=True, transform_hrefs=False)
    item_d["links"] = [ln for ln in item_d["links"] if ln["rel"] == "self"] + [
        {"rel": "collection", "href": "../../../collection.json", "type": "application/json"},
        {"rel": "parent", "href": "../../../collection.json", "type": "application/json"},
        {"rel": "root", "href": "../../../collection.json", "type": "application/json"}]
    item_d["collection"] = col["id"]
    store.write_bytes(ikey, (json.dumps(item_d, indent=1) + "\n").encode())
    links = [ln for ln in col["links"] if not (ln["rel"] == "item" and ln["href"] == rel)]
    links.append({"rel": "item", "href": rel, "type": "application/geo+json", "title": item.id})
    links = [ln for ln in links if ln["rel"] != "root"] + [{"rel": "root", "href": "./collection.json",
                                                           "type": "application/json"}]
    col["links"] = sorted(links, key=lambda ln: (ln["rel"] != "self", ln["rel"], ln["href"]))
    spans = col["extent"]["temporal"]["interval"][0]
    s0, e0 = item_d["properties"]["start_datetime"], item_d["properties"]["end_datetime"]
    col["extent"]["temporal"]["interval"] = [[min(x for x in (spans[0], s0) if x), max(x for x in (spans[1], e0) if x)]]
    bbox = item.bbox or [-180.0, -90.0, 180.0, 90.0]
    old = col["extent"]["spatial"]["bbox"][0]
    first = len([ln for ln in links if ln["rel"] == "item"]) == 1
    col["extent"]["spatial"]["bbox"] = [list(bbox) if first else
                                        [min(old[0], bbox[0]), min(old[1], bbox[1]), max(old[2], bbox[2]), max(old[3], bbox[3])]]
    store.write_bytes(collection_key(region), (json.dumps(col, indent=1) + "\n").encode())
    return ikey
