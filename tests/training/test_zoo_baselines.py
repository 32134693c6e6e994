"""Statistical baselines and tree models on the SampleSet interface (issue: the model zoo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bias_correction.errors import ConfigError
from bias_correction.training.baselines import BASELINES, build_baseline
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.trees import TreeModel, feature_names, features
from tests.training import synthetic_cubes


@pytest.fixture(scope="module")
def data():
    hy, oi, mask, grid = synthetic_cubes(nruns=24, seed=2)
    s = build_samples(hy, oi, mask, seq_len=2)
    train, val = split_chronological(s, 0.25, gap_days=2)
    return train, val, grid


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((pred - y) ** 2)))


@pytest.mark.parametrize(("name", "kw"), [("mean-bias", {}), ("linear-regression", {}),
                                          ("quantile-mapping", {"engine": "numpy"})])
def test_baselines_beat_raw_and_keep_land(data, name: str, kw: dict) -> None:
    train, val, _ = data
    pred = build_baseline(name, **kw).fit(train).predict(val)
    assert pred.shape == val.y.shape and pred.dtype == np.float32
    assert np.array_equal(np.isnan(pred), ~np.isfinite(val.x).all(axis=1))
    assert _rmse(pred, val.y) < 0.6 * _rmse(val.x[:, -1], val.y)


def test_mean_bias_uses_day_of_year_window(data) -> None:
    train, val, _ = data
    wide = build_baseline("mean-bias", window_days=183).fit(train).predict(val)
    narrow = build_baseline("mean-bias", window_days=3, min_samples=1).fit(train).predict(val)
    assert not np.allclose(np.nan_to_num(wide), np.nan_to_num(narrow))


def test_unknown_baseline_and_engine() -> None:
    with pytest.raises(ConfigError):
        build_baseline("kriging")
    with pytest.raises(ConfigError):
        build_baseline("quantile-mapping", engine="r")
    assert set(BASELINES) == {"mean-bias", "linear-regression", "quantile-mapping"}


def test_tree_features_are_float32_and_ocean_only(data) -> None:
    train, _, grid = data
    rows, idx = features(train, grid.lat, grid.lon)
    assert rows.dtype == np.float32 and rows.shape[1] == len(feature_names(2))
    assert len(idx) == int(np.isfinite(train.x).all(axis=1).sum()) and np.isfinite(rows).all()


@pytest.mark.parametrize(("kind", "kw"), [("lightgbm", {"n_estimators": 30, "num_leaves": 15}),
                                          ("random-forest", {"n_estimators": 10, "max_depth": 6})])
def test_trees_fit_beat_raw_and_export_onnx_with_parity(data, kind: str, kw: dict, tmp_path: Path) -> None:
    train, val, grid = data
    m = TreeModel(kind, max_rows=20_000, **kw).fit(train, val, lat=grid.lat, lon=grid.lon)
    native = m.predict(val)
    assert np.array_equal(np.isnan(native), ~np.isfinite(val.x).all(axis=1))
    assert _rmse(native, val.y) < 0.6 * _rmse(val.x[:, -1], val.y)
    assert m.n_parameters() > 0
    info = m.export_onnx(tmp_path / "tree.onnx", val)
    assert info["runtime"] == "onnx", info
    assert info["parity_max_abs_degC"] <= 1e-4
    import onnxruntime as ort

    m.onnx_session = ort.InferenceSession(str(tmp_path / "tree.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(m.predict(val), native, atol=1e-4, equal_nan=True)
