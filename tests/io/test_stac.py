"""The STAC catalogue written after publishing validates (pystac's offline core schemas plus a
forecast-extension schema written here) and tells each run's reference time, horizon and gate status."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import pytest
from pystac.validation import JsonSchemaSTACValidator

from bias_correction.io import stac
from bias_correction.storage import Store
from tests.io.test_catalog import publish_runs
from tests.io.test_product_stack import RUNS

#: The forecast extension's fields (stac-extensions/forecast), written for this test so validation
#: needs no network: pystac ships the core Item/Collection schemas, not the extensions'.
FORECAST_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#", "$id": stac.FORECAST_EXT,
    "type": "object", "required": ["stac_extensions"],
    "properties": {"stac_extensions": {"type": "array", "contains": {"const": stac.FORECAST_EXT}}},
    "if": {"properties": {"type": {"const": "Feature"}}},
    "then": {"required": ["properties"], "properties": {"properties": {
        "required": ["forecast:reference_datetime", "forecast:horizon"],
        "properties": {
            "forecast:reference_datetime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
            "forecast:horizon": {"type": "string", "pattern": r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$"},
            "forecast:duration": {"type": "string", "pattern": r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$"},
            "forecast:variable": {"type": "string"}, "forecast:perturbed": {"type": "boolean"}}}}},
}


def validator() -> JsonSchemaSTACValidator:
    v = JsonSchemaSTACValidator()
    v.schema_cache[stac.FORECAST_EXT] = FORECAST_SCHEMA
    return v


def test_stac_items_and_collection_validate_and_carry_forecast_and_gate_fields(tmp_path: Path) -> None:
    store = Store(tmp_path)
    publish_runs(store, RUNS[:2])
    publish_runs(store, RUNS[2:3], "v2", gate="failed, fallback raw HYCOM: correction outside the envelope")
    publish_runs(store, RUNS[:1], "v3")  # re-published: the item is rewritten, not duplicated
    col_path = tmp_path / stac.collection_key("scs")
    col = pystac.Collection.from_file(str(col_path))
    v = validator()
    assert col.validate(validator=v)
    items = sorted(col.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [f"sstbc_scs_{r:%Y%m%d}T12Z_convgru-sa" for r in RUNS[:3]]
    for item, run in zip(items, RUNS, strict=False):
        assert item.validate(validator=v)
        p = item.properties
        assert p["forecast:reference_datetime"] == f"{run:%Y-%m-%dT%H:%M:%SZ}"
        assert p["forecast:horizon"] == "PT180H"  # run 12Z + 7 valid days, to the end of day 7
        first_day = dt.datetime.combine(run.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        assert item.common_metadata.start_datetime == first_day
        assert item.common_metadata.end_datetime == first_day + dt.timedelta(days=7)
        assert set(item.assets) == {"data", "provenance"}
        data = item.assets["data"]
        assert Path(data.href).is_file() and data.media_type == stac.NETCDF_TYPE
        idx = json.loads((tmp_path / f"products/scs/{run:%Y/%m/%d}/index.json").read_text())
        [prod] = idx["products"].values()
        assert data.extra_fields["file:checksum_sha256"] == next(
            x["sha256"] for x in prod["versions"] if x["product_version"] == prod["current"])
        assert Path(item.assets["provenance"].href).is_file()
    assert [i.properties["sstbc:fallback"] for i in items] == [False, False, True]
    assert items[0].properties["sstbc:product_version"] == "v3.20"
    assert col.extent.temporal.intervals[0][0].isoformat() == "2021-04-21T00:00:00+00:00"
    assert col.extent.temporal.intervals[0][1].isoformat() == "2021-04-30T00:00:00+00:00"
    # the latest pointer names the run's STAC item
    ptr = json.loads((tmp_path / "products/scs/latest.json").read_text())
    assert ptr["latest"]["stac_item"] == stac.item_key("scs", RUNS[2], items[2].id)


def test_an_item_missing_the_forecast_reference_time_fails_validation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    publish_runs(store, RUNS[:1])
    path = tmp_path / stac.item_key("scs", RUNS[0], f"sstbc_scs_{RUNS[0]:%Y%m%d}T12Z_convgru-sa")
    d = json.loads(path.read_text())
    del d["properties"]["forecast:reference_datetime"]
    with pytest.raises(pystac.errors.STACValidationError):
        pystac.Item.from_dict(d).validate(validator=validator())


def test_quicklooks_render_every_lead_with_perceptual_maps_and_a_coastline(tmp_path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    from bias_correction.grid.grids import RegularGrid
    from bias_correction.io import quicklook
    from tests.io.test_product_stack import one_run

    store = Store(tmp_path)
    ds = one_run(RUNS[0])
    assets = quicklook.write_quicklooks(store, "products/scs/2021/04/20/sstbc_x_v1.nc", ds)
    assert sorted(assets) == [f"quicklook_lead{k}" for k in range(1, 8)]
    img = mpimg.imread(tmp_path / assets["quicklook_lead3"]["key"])
    assert assets["quicklook_lead3"]["key"] == "products/scs/2021/04/20/quicklooks/sstbc_x_v1_lead3.png"
    assert img.shape[0] > 200 and img.shape[1] > 600 and img[..., :3].std() > 0.1  # a picture, not a blank
    # the coastline comes from the bundled land mask: Hainan's south coast lies in 18-19N 108.5-110E
    lat, lon, land = quicklook.coastline(np.arange(18.0, 19.01, 0.08), np.arange(108.5, 110.01, 0.08))
    assert 0.1 < land.mean() < 0.9 and land.shape == (len(lat), len(lon))
    g = RegularGrid(lat0=18.04, lon0=108.54, step=0.08, nlat=12, nlon=18)
    assert quicklook.coastline(g.lat, g.lon, refine=2)[2].shape == (24, 36)
