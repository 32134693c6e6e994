"""The consumer API: list/open the current products of a period as one cube, and the latest pointer,
on a local root and on S3 (moto's server); ``sstbc products`` prints the same."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from bias_correction import catalog
from bias_correction.errors import ProductError
from bias_correction.io import catalog_write, publish
from bias_correction.storage import Store
from tests.io.test_product_cf import _mask
from tests.integration.test_publish_s3 import s3_endpoint  # noqa: F401  (moto server fixture)
from tests.io.test_product_stack import RUNS, one_run


def publish_runs(store: Store, runs: list[dt.datetime], version: str = "v1", gate: str = "passed",
                 base_url: str = "") -> None:
    for run in runs:
        pub = publish.publish_product(store, region="scs", run=run, model_id="convgru-sa", ds=one_run(run), mask=_mask(),
                                      product_version=f"{version}.{run:%d}",
                                      record={"model_id": "convgru-sa", "model_version": version, "inputs": [],
                                              "input_digest": f"{version}{run:%d}", "publication_gate": gate})
        entry = publish.current_entry(store, "scs", run, "convgru-sa")
        catalog_write.after_publish(store, region="scs", run=run, model_id="convgru-sa", entry=entry,
                                    index_key=pub.index_key, alias_key=pub.key, base_url=base_url)


def check_catalogue(store: Store) -> None:
    refs = catalog.list_products(store, "scs", start="2021-04-21", end="2021-04-23")
    assert [r.run for r in refs] == ["2021-04-21T12:00:00Z", "2021-04-22T12:00:00Z", "2021-04-23T12:00:00Z"]
    assert all(r.product_version.startswith("v2.") for r in refs[1:]) and refs[0].product_version == "v1.21"
    assert [r.fallback for r in refs] == [False, True, True]
    cube = catalog.open_products(store, "scs", start="2021-04-21", end="2021-04-23")
    assert cube["sst"].dims == ("forecast_reference_time", "lead_day", "lat", "lon")
    assert cube["sst"].shape == (3, 7, 6, 8)
    for j, run in enumerate(RUNS[1:]):
        np.testing.assert_array_equal(cube["time"].values[j], [np.datetime64(run + dt.timedelta(days=k), "ns")
                                                               for k in range(1, 8)])
        np.testing.assert_allclose(cube["sst"].values[j], one_run(run)["sst"].values[:, 0], equal_nan=True)
    assert len(catalog.list_products(store, "scs")) == len(RUNS)  # no period: every index
    newest = catalog.latest(store, "scs")
    assert newest["run"] == "2021-04-23T12:00:00Z" and newest["fallback"] is True
    latest_ds = catalog.open_latest(store, "scs")
    np.testing.assert_array_equal(latest_ds["forecast_reference_time"].values, [np.datetime64(RUNS[-1], "ns")])


def world(store: Store) -> None:
    publish_runs(store, RUNS, "v1")
    publish_runs(store, RUNS[2:], "v2", gate="failed, fallback raw HYCOM: envelope")  # re-published: current = v2
    publish_runs(store, RUNS[:1], "v3")  # a backfill of an older run does not move the latest pointer back


def test_catalogue_on_a_local_root(tmp_path) -> None:
    store = Store(tmp_path)
    world(store)
    check_catalogue(store)
    with pytest.raises(ProductError, match="no published scs product"):
        catalog.open_products(store, "scs", start="2022-01-01", end="2022-01-02")
    # a tampered file is refused, naming it
    ref = catalog.list_products(store, "scs", start="2021-04-22", end="2021-04-22")[0]
    (tmp_path / ref.key).write_bytes(b"x" + (tmp_path / ref.key).read_bytes()[1:])
    with pytest.raises(ProductError, match="does not match the sha256"):
        catalog.open_products(store, "scs", start="2021-04-22", end="2021-04-22")


def test_catalogue_on_s3(s3_endpoint: str) -> None:
    from tests.integration.test_publish_s3 import BUCKET, s3_options

    store = Store(f"s3://{BUCKET}/catalog", s3_options(s3_endpoint))
    publish_runs(store, RUNS[1:3])
    publish_runs(store, RUNS[3:], "v2", gate="failed, fallback raw HYCOM: envelope")
    reader = Store(f"s3://{BUCKET}/catalog", s3_options(s3_endpoint))  # a fresh reader
    refs = catalog.list_products(reader, "scs")
    assert [(r.run[:10], r.fallback) for r in refs] == [("2021-04-21", False), ("2021-04-22", False), ("2021-04-23", True)]
    assert all(r.href.startswith(f"s3://{BUCKET}/catalog/products/scs/2021/04/") for r in refs)
    cube = catalog.open_products(reader, "scs", start="2021-04-21", end="2021-04-23")
    assert cube["sst"].shape == (3, 7, 6, 8)
    np.testing.assert_array_equal(cube["time"].values[:, 0], [np.datetime64(r + dt.timedelta(days=1), "ns") for r in RUNS[1:]])
    np.testing.assert_allclose(cube["sst"].values[2], one_run(RUNS[3])["sst"].values[:, 0], equal_nan=True)
    assert catalog.latest(reader, "scs")["run"] == "2021-04-23T12:00:00Z"


def test_base_url_makes_links_absolute_and_cli_lists_products(tmp_path, capsys) -> None:
    from flows.cli import main

    publish_runs(Store(tmp_path), RUNS[:3], base_url="https://data.example.org/sstbc")
    ptr = json.loads((tmp_path / "products/scs/latest.json").read_text())
    assert ptr["latest"]["href"] == "https://data.example.org/sstbc/" + ptr["latest"]["key"]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'storage_root = "{tmp_path}"\n')
    assert main(["products", "--config", str(cfg), "--start", "2021-04-20", "--end", "2021-04-21", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["run"][:10] for p in out["products"]] == ["2021-04-20", "2021-04-21"]
    assert out["latest"]["run"] == "2021-04-22T12:00:00Z"
    assert main(["products", "--config", str(cfg), "--latest"]) == 0
    assert "2021-04-22T12:00:00Z" in capsys.readouterr().out


def test_sstbc_plot_a_file_and_a_run_day(tmp_path, capsys) -> None:
    from flows.cli import main
    from bias_correction.io.product import _encoding

    ds = one_run(RUNS[0])
    path = tmp_path / "p.nc"
    ds.to_netcdf(path, encoding=_encoding(ds))
    assert main(["plot", str(path), "--out", str(tmp_path / "q"), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f.rsplit("_", 1)[1] for f in files] == [f"lead{k}.png" for k in range(1, 8)]
    assert all((tmp_path / "q" / f.rsplit("/", 1)[1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    root = tmp_path / "root"
    publish_runs(Store(root), RUNS[1:2])
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'storage_root = "{root}"\n')
    assert main(["plot", "--date", "2021-04-21", "--config", str(cfg), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert len(files) == 7 and all("/products/scs/2021/04/21/quicklooks/" in f for f in files)
    assert main(["plot", "--date", "2021-05-01", "--config", str(cfg)]) == 2
    assert "no published scs product" in capsys.readouterr().err
