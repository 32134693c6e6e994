"""Daily correction over the loopback stand-ins with a packaged model: products with uncertainty and
provenance, index + versions, idempotent re-runs, `sstbc replay` and `sstbc inspect` (local and S3 roots)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction import pipeline
from bias_correction.correction import aliases
from bias_correction.io import publish
from bias_correction.io.product import product_key
from bias_correction.training.export import export_package
from tests.conftest import settings_for
from tests.correction.helpers import make_checkpoint

pytestmark = pytest.mark.slow
DAY = dt.date(2021, 3, 10)
RUN = dt.datetime(2021, 3, 10, 12)


def _world(upstream, root: Path, **over):
    settings = settings_for(upstream, root, **over)
    ctx = pipeline.make_context(settings)
    mask = pipeline.ensure_mask(ctx, DAY, DAY)
    ck = make_checkpoint(root / "ck.pt", ctx.grid, mask.sha256, arch="convgru-sa", seq_len=4, kv_pool=4)
    export_package(ck, Path(settings.model_store), settings.model_id, version="20210401T000000Z")
    return settings, ctx


@pytest.fixture(scope="module")
def world(upstream, tmp_path_factory):
    return _world(upstream, tmp_path_factory.mktemp("replay"))


def _toml(settings, path: Path) -> Path:
    s = settings
    path.write_text(f'storage_root = "{s.storage_root}"\nmodel_store = "{s.model_store}"\ngrid_halo_cells = {s.grid_halo_cells}\n'
                    f'[upstream]\noisst_https = "{s.upstream.oisst_https}"\nhycom_ncss = "{s.upstream.hycom_ncss}"\n')
    return path


def test_run_publishes_uncertainty_provenance_and_index_then_rerun_is_a_no_op(world) -> None:
    settings, ctx = world
    res = pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
    key = product_key("scs", RUN, "convgru-sa")
    assert res.product.written and res.product.key == key and res.provider == "CPUExecutionProvider"
    path = Path(ctx.store.url(key))
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
        unc = ds["sst_uncertainty"]
        assert "calibrated validation residual" in unc.attrs["uncertainty_method"]
        np.testing.assert_allclose(np.nanmax(unc.values, axis=(1, 2, 3)), [0.2 + 0.02 * k for k in range(1, 8)], rtol=1e-6)
        assert float(np.nanmax(np.abs(ds["sst_correction"].values))) > 0
        prov = json.loads(ds.attrs["sstbc_provenance"])
        assert ds.attrs["sstbc_active_provider"] == "CPUExecutionProvider"
    assert [i["run"] for i in prov["inputs"]] == ["2021-03-07T12Z", "2021-03-08T12Z", "2021-03-09T12Z", "2021-03-10T12Z"]
    assert all(len(i["sha256"]) == 64 and i["url"].startswith("http://127.0.0.1") and i["archive_key"]
               for i in prov["inputs"])
    assert set(prov["model_sha256"]) == {"model.onnx", "model.ts"} and prov["runtime"] == "onnx"
    assert prov["training_data_versions"]["oisst_preliminary_share"] == 0.25
    assert prov["config_fingerprint"] == settings.fingerprint() and prov["code_version"]["sstbc"]
    entry = publish.current_entry(ctx.store, "scs", RUN, "convgru-sa")
    assert entry["key"] == res.product.version_key and entry["sha256"] == res.product.sha256
    side = json.loads(Path(ctx.store.url(res.product.version_key + ".provenance.json")).read_text())
    assert side["sha256"] == entry["sha256"] and side["inputs"] == prov["inputs"]
    mtime = path.stat().st_mtime_ns
    again = pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
    assert not again.product.written and path.stat().st_mtime_ns == mtime


def test_replay_regenerates_the_product_within_tolerance(world, tmp_path, capsys) -> None:
    from flows.cli import main

    settings, ctx = world
    pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
    key = product_key("scs", RUN, "convgru-sa")
    out = pipeline.replay_product(ctx, key)
    assert out["ok"] and out["max_abs_diff_degC"] <= 1e-5 and out["inputs_verified"] == 4  # the 4 HYCOM runs (this package takes no auxiliary input)
    cfg = _toml(settings, tmp_path / "c.toml")
    assert main(["replay", ctx.store.url(key), "--config", str(cfg), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["ok"] and payload["max_abs_diff_degC"] <= 0.01
    # A product whose sst was changed after publication is caught.
    with xr.open_dataset(ctx.store.url(key)) as ds:
        bad = ds.load()
    bad["sst"].values[2, 0, 25, 25] += 0.05
    bad_path = tmp_path / "bad.nc"
    bad.to_netcdf(bad_path)
    assert main(["replay", str(bad_path), "--config", str(cfg), "--json"]) == 2
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["error"] == "ProductError" and "differs by 0.05" in payload["message"]
    # inspect prints the provenance of a product
    assert main(["inspect", ctx.store.url(key)]) == 0
    text = capsys.readouterr().out
    assert "model: convgru-sa 20210401T000000Z" in text and "active provider CPUExecutionProvider" in text
    assert "2021-03-10T12Z: http://127.0.0.1" in text and "sha256" in text


def test_republishing_with_a_new_model_keeps_the_previous_version(world) -> None:
    settings, ctx = world
    first = pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
    mask = pipeline.require_mask(ctx)
    ck = make_checkpoint(Path(settings.model_store).parent / "ck2.pt", ctx.grid, mask.sha256, arch="convgru-sa",
                         seq_len=4, kv_pool=4, seed=7)
    export_package(ck, Path(settings.model_store), settings.model_id, version="20210501T000000Z")
    # a later export is a candidate: the daily run keeps the current one until it is promoted
    assert pipeline.load_corrector(settings).manifest.version == "20210401T000000Z"
    aliases.set_current(Path(settings.model_store), settings.model_id, "20210501T000000Z", why="test: new model")
    second = pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
    assert second.product.written and second.model_version == "20210501T000000Z"
    assert second.product.version_key != first.product.version_key
    idx = json.loads(Path(ctx.store.url(publish.index_key("scs", RUN))).read_text())
    versions = idx["products"]["sstbc_scs_20210310T12Z_convgru-sa"]["versions"]
    assert [v["model_version"] for v in versions] == ["20210401T000000Z", "20210501T000000Z"]
    assert Path(ctx.store.url(first.product.version_key)).is_file()  # still addressable
    old = publish.read_published(ctx.store, "scs", RUN, "convgru-sa", version=versions[0]["product_version"])
    assert json.loads(old.attrs["sstbc_provenance"])["model_version"] == "20210401T000000Z"
    # replay of the old version uses the old model package, recorded in its provenance
    assert pipeline.replay_product(ctx, first.product.version_key)["ok"]


def test_daily_correction_publishes_to_s3(upstream, tmp_path) -> None:
    from tests.integration.test_publish_s3 import BUCKET, s3_options

    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                     aws_secret_access_key="x").create_bucket(Bucket=BUCKET)
        settings, ctx = _world(upstream, tmp_path, storage_root=f"s3://{BUCKET}/e2e",
                               storage_options=s3_options(endpoint))
        res = pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings))
        assert res.product.written and res.product.url.startswith(f"s3://{BUCKET}/e2e/products/")
        ds = publish.read_published(ctx.store, "scs", RUN, "convgru-sa")
        assert ds["sst"].shape == (7, 1, 50, 50)
        assert not pipeline.correct_run(ctx, DAY, pipeline.load_corrector(settings)).product.written
        assert pipeline.replay_product(ctx, res.product.key)["ok"]
    finally:
        server.stop()
