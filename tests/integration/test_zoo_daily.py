"""Every gridded model runs through the daily flow by changing one config value (``training.model``).

* Each zoo architecture: a package exported through the common path (random, untrained weights with the
  model's default auxiliary inputs) is picked up by ``sstbc run`` purely from ``training.model`` (the
  model id defaults to it), gets its auxiliary inputs from the archive or upstream, and publishes.
* CA-ConvLSTM end to end with its default second stream, HYCOM ``surf_el``: the training flow fetches
  and archives surf_el next to SST, trains, exports, and the daily flow corrects with it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction import pipeline
from bias_correction.config import default_aux_inputs
from bias_correction.io import archive
from bias_correction.io.product import product_key
from bias_correction.sources.hycom import run_time
from bias_correction.storage import Store
from bias_correction.training.export import export_package
from bias_correction.training.train import auto_kv_pool
from tests.conftest import settings_for
from tests.correction.helpers import make_checkpoint

pytestmark = pytest.mark.slow

RUN_DAY = dt.date(2021, 3, 3)
ZOO = ["convgru", "convlstm", "cbam-convlstm-at", "faconvlstm", "ca-convlstm"]
#: (model, auxiliary inputs) run through the daily flow: each zoo model with its defaults, and a derived input
CASES = [(name, default_aux_inputs(name)) for name in ZOO] + [("convgru", ("oisst_latest", "hycom_tendency"))]


def _inputs_by_kind(key: str, store: Store) -> dict[str, list[dict]]:
    with xr.open_dataset(store.url(key)) as ds:
        prov = json.loads(ds.attrs["sstbc_provenance"])
        assert np.isfinite(ds["sst"].values).mean() > 0.7  # an (almost) all-ocean box: values, not holes
    out: dict[str, list[dict]] = {}
    for rec in prov["inputs"]:
        out.setdefault(rec["input"], []).append(rec)
    return out


@pytest.mark.parametrize(("name", "aux"), CASES, ids=["-".join((n, *a)) for n, a in CASES])
def test_one_config_value_selects_the_model_the_daily_flow_runs(trained, tmp_path: Path, name: str,
                                                                aux: tuple[str, ...]) -> None:
    from flows.daily import daily_correction

    settings, _, _ = trained
    ctx = pipeline.make_context(settings)
    mask = pipeline.require_mask(ctx)
    # CA-ConvLSTM's keys/values pooled as training pools them on this 50x50 grid (train.auto_kv_pool: x4);
    # unpooled, its 2500x2500 attention maps made this the suite's slowest test (224 s)
    kw = {"layers": 1, "hidden": 4, "kv_pool": auto_kv_pool(ctx.grid.shape)} if name == "ca-convlstm" else {}
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", ctx.grid, mask.sha256, arch=name, seq_len=settings.training.seq_len,
                           aux_inputs=aux, **kw)
    store = tmp_path / "models"
    export_package(ckpt, store, name)

    chosen = settings.model_dump(mode="json")
    chosen.pop("model_id")  # the one value: training.model (model_id follows it)
    chosen["training"]["model"] = name
    chosen["training"]["aux_inputs"] = list(aux)
    chosen["model_store"] = str(store)
    out = daily_correction(chosen, RUN_DAY, verify=False)

    key = product_key("scs", dt.datetime.combine(RUN_DAY, dt.time(12)), name)
    assert out["product"]["key"] == key and out["model"]["id"] == name and out["product"]["written"]
    kinds = _inputs_by_kind(key, Store(settings.storage_root))
    assert len(kinds["hycom_sst"]) == settings.training.seq_len
    for a in aux:
        assert len(kinds[a]) == settings.training.seq_len, (a, kinds.keys())
    if "surf_el" in aux:  # fetched from the stand-in on demand and archived under its own key
        assert all("hycom_surf_el" in r["archive_key"] for r in kinds["surf_el"])
    if "hycom_tendency" in aux:  # derived: its provenance is the HYCOM SST files themselves, nothing archived
        assert [r["archive_key"] for r in kinds["hycom_tendency"]] == [r["archive_key"] for r in kinds["hycom_sst"]]


def test_ca_convlstm_trains_and_corrects_with_surf_el(prefect_harness, upstream, tmp_path: Path) -> None:
    from flows.daily import daily_correction, training

    start, end = dt.date(2021, 2, 1), dt.date(2021, 2, 16)
    # a 2x2 degree (25x25-cell) corner of the default box: the flow is what is tested, and CA-ConvLSTM's
    # attention over the full 50x50 grid made this the suite's slowest test (384 s)
    settings = settings_for(upstream, tmp_path, region={"lat_max": 14.0, "lon_max": 112.0}, training={
        "model": "ca-convlstm", "start": start.isoformat(), "end": end.isoformat(), "epochs": 1, "features": 4,
        "hidden": 4, "patience": 1})
    assert settings.model_id == "ca-convlstm" and settings.training.resolved_aux_inputs == ("surf_el",)
    out = training(settings.model_dump(mode="json"), start, end)
    t = settings.training.seq_len
    assert out["archive"]["surf_el_runs"] == (end - start).days + t
    manifest = json.loads((Path(out["export"]["package"]) / "manifest.json").read_text())
    assert manifest["aux_inputs"] == ["surf_el"] and manifest["architecture"] == "ca-convlstm"
    assert manifest["normalisation"]["aux"]["surf_el"]["scale"] > 0
    ctx = pipeline.make_context(settings)
    field = archive.read_field(ctx.store, archive.hycom_key(ctx.grid, run_time(start), "surf_el"))
    assert field.attrs.get("units") == "m" and np.nanmax(np.abs(field.values)) < 3

    day = end + dt.timedelta(days=3)
    res = daily_correction(settings.model_dump(mode="json"), day, verify=True)
    kinds = _inputs_by_kind(res["product"]["key"], Store(settings.storage_root))
    assert [r["run"] for r in kinds["surf_el"]] == [f"{day - dt.timedelta(days=t - 1 - i)}T12Z" for i in range(t)]
    replay = pipeline.replay_product(ctx, res["product"]["key"])  # SST and surf_el inputs, sha256-checked
    assert replay["ok"] and replay["inputs_verified"] == 2 * t, replay
    m = res["metrics"]
    assert m["corrected"]["rmse"] <= m["raw"]["rmse"] + 1e-6  # early stopping keeps epoch 0 (= raw) at worst
