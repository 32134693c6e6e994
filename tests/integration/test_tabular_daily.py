"""Tabular models (trees, statistical baselines) through training and the daily flow by one config value.

``training.model = "random-forest"`` / ``"mean-bias"`` through the real Prefect flows (training, then the
daily correction with verification against the twin's OISST); LightGBM, linear regression and quantile
mapping at the pipeline level on the same archive; ``sstbc train`` + ``sstbc export`` for one of them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction import pipeline
from bias_correction.io.product import product_key
from bias_correction.storage import Store
from bias_correction.training import tabular_export
from tests.conftest import settings_for, toml_config

pytestmark = pytest.mark.slow

#: Runs a subset of the session's ``trained`` period (the stand-in's generated files are shared); the
#: product is the next day's run, as in operations (train up to yesterday, correct today).
TRAIN_START, TRAIN_END = dt.date(2021, 2, 10), dt.date(2021, 2, 24)
RUN_DAY = dt.date(2021, 2, 25)
#: Small forests/boosters: the test is about the plumbing, not the skill.
SMALL = {"random-forest": {"max_rows": 40_000, "n_estimators": 12, "max_depth": 10, "n_jobs": 1},
         "lightgbm": {"max_rows": 40_000, "n_estimators": 40, "num_leaves": 15, "n_jobs": 1}}


@pytest.fixture(scope="module", autouse=True)
def small_trees():
    mp = pytest.MonkeyPatch()
    for name, p in SMALL.items():
        mp.setitem(tabular_export.TABULAR_PARAMS, name, p)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tabular-daily")


@pytest.fixture(scope="module")
def filled(prefect_harness, upstream, root) -> None:
    """The archive of the training period (with the latest-OISST days the trees need), filled once."""
    from flows.daily import fill_archive

    fill_archive(_settings(upstream, root, "random-forest").model_dump(mode="json"), TRAIN_START, TRAIN_END)


def _settings(upstream, root: Path, model: str):
    # One storage root (the archive is shared), one model store; only training.model differs.
    return settings_for(upstream, root, training={"model": model, "start": TRAIN_START.isoformat(),
                                                  "end": TRAIN_END.isoformat()})


def _check_product(settings, out: dict, model: str) -> None:
    manifest = json.loads((Path(settings.model_store) / model / out["model"]["version"] / "manifest.json").read_text())
    # ONNX trees run on ONNX Runtime's CPU EP; npz baselines and a LightGBM whose ONNX conversion failed
    # its parity check (float32 thresholds) run natively.
    provider = "CPUExecutionProvider" if manifest["runtime"] == "onnx" else "native"
    assert manifest["runtime"] == ("onnx" if model == "random-forest" else "native" if model != "lightgbm"
                                   else manifest["runtime"])
    key = product_key("scs", dt.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 12), model)
    assert out["product"]["key"] == key and out["product"]["written"]
    m = out["metrics"]
    assert m["raw"]["n"] == m["corrected"]["n"] > 7 * 2000
    assert m["corrected"]["rmse"] < m["raw"]["rmse"], m  # better than raw HYCOM against the twin's OISST
    with xr.open_dataset(Store(settings.storage_root).url(key)) as ds:
        prov = json.loads(ds.attrs["sstbc_provenance"])
        assert ds["sst"].shape == (7, 1, 50, 50)
        assert float(np.abs(ds["sst"] - ds["sst_raw"]).max()) > 0
        assert "sst_uncertainty" in ds and "fallback" not in prov["uncertainty_method"]
    assert prov["model_id"] == model and prov["model_version"] == out["model"]["version"]
    assert prov["onnxruntime_provider"] == out["provider"] == provider
    assert prov["model_sha256"] == {k: v["sha256"] for k, v in manifest["artifacts"].items()}
    assert prov["publication_gate"] == "passed"


@pytest.mark.parametrize("model", ["random-forest", "mean-bias"])
def test_daily_flow_runs_a_tabular_model_chosen_by_one_config_value(prefect_harness, upstream, root, model) -> None:
    from flows.daily import daily_correction, training

    settings = _settings(upstream, root, model)
    assert settings.model_id == model
    payload = settings.model_dump(mode="json")
    out = training(payload, TRAIN_START, TRAIN_END)
    package = Path(out["export"]["package"])
    assert package.parent == Path(settings.model_store) / model
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["kind"] == "tabular" and manifest["architecture"] == model
    assert manifest["aux_inputs"] == (["oisst_latest"] if model == "random-forest" else [])
    assert manifest["training"]["data_versions"]["oisst_final_days"] > 0
    assert out["training"]["val"]["rmse_model"] < out["training"]["val"]["rmse_raw"]

    res = daily_correction(payload, RUN_DAY)
    assert res["model"] == {"id": model, "version": package.name}
    _check_product(settings, res, model)
    if model == "random-forest":  # regenerated from the recorded inputs (latest OISST included) and package
        replay = pipeline.replay_product(pipeline.make_context(settings), res["product"]["key"])
        assert replay["ok"] and replay["max_abs_diff_degC"] == 0.0, replay


@pytest.mark.parametrize("model", ["lightgbm", "linear-regression", "quantile-mapping"])
def test_pipeline_trains_exports_and_corrects_other_tabular_models(filled, upstream, root, model) -> None:
    settings = _settings(upstream, root, model)
    ctx = pipeline.make_context(settings)
    out = pipeline.train_and_export(ctx, TRAIN_START, TRAIN_END)
    assert out["export"]["kind"] == "tabular" and out["export"]["architecture"] == model
    corrector = pipeline.load_corrector(settings)
    result = pipeline.correct_run(ctx, RUN_DAY, corrector)
    metrics = pipeline.verify_product(ctx, result.product.key, store_scores=False)
    _check_product(settings, {"product": {"key": result.product.key, "written": result.product.written},
                              "metrics": metrics, "provider": result.provider,
                              "model": {"version": result.model_version}}, model)


def test_cli_train_then_export_a_tabular_model(filled, upstream, root, tmp_path, capsys) -> None:
    from flows.cli import main

    settings = _settings(upstream, root, "linear-regression")
    cfg = toml_config(settings, tmp_path / "c.toml", extra=f'[training]\nmodel = "linear-regression"\n'
                                                           f'start = {TRAIN_START.isoformat()}\nend = {TRAIN_END.isoformat()}\n')
    assert main(["train", "--config", str(cfg), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ckpt = Path(trained["checkpoint"])
    assert ckpt.is_dir() and trained["kind"] == "tabular" and trained["val"]["rmse_model"] < trained["val"]["rmse_raw"]
    assert main(["export", "--checkpoint", str(ckpt), "--config", str(cfg)]) == 0
    human = capsys.readouterr().out
    assert "parity max |package - fitted model| over ocean: 0.00e+00" in human
    versions = sorted(p.name for p in (Path(settings.model_store) / "linear-regression").iterdir())
    assert versions and all(not v.startswith(".") for v in versions)
    assert main(["train", "--model", "kriging", "--config", str(cfg), "--json"]) != 0
