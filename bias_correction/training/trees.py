"""LightGBM and Random Forest on per-pixel features (models.md section 10), residual target.

One row = one ocean pixel x one sample (run R, lead k). Features (float32, models.md 10.1 plus the
lead, since one model serves all leads): HYCOM at lags 0..T-1, tendency lag0 - lag1, mean and std of
lag 0 over 3x3 and 5x5 neighbourhoods (ocean cells only), lat, lon, sin/cos of the valid day of year,
lead days, then per auxiliary input (``SampleSet.aux_names``) its lag-0 value, and for
``oisst_latest`` also the difference latest OISST - HYCOM lag 0 (:func:`aux_feature_names`).
Target OISST - HYCOM lag 0. ``export_onnx`` converts with onnxmltools (LightGBM) or
skl2onnx (RF) and checks parity against the native prediction (atol 1e-4 degC, models.md 13.5);
when a converter fails the model stays native and the manifest says ``"runtime": "native"``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bias_correction import zoo
from bias_correction.correction.tabular_apply import (  # noqa: F401  (re-exported: the runtime shares them)
    aux_feature_names,
    feature_names,
    features_from_arrays,
    predict_fields,
)
from bias_correction.errors import ConfigError, ModelContractError

if TYPE_CHECKING:  # the runtime (correction.tabular) computes features without importing torch
    from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)
PARITY_ATOL_DEGC = 1e-4


def features(samples: SampleSet, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows [M, F] float32, index [M] of flat positions in [N, H, W]) of a sample set (its aux included)."""
    return features_from_arrays(samples.x, samples.lead, samples.valid, samples.aux, samples.aux_names, lat, lon)


class TreeModel:
    """A fitted tree regressor of the residual; ``predict`` returns corrected degC [N, H, W] (NaN on land)."""

    def __init__(self, kind: str, max_rows: int = 400_000, seed: int = 0, **params: Any) -> None:
        trees = zoo.ids(zoo.TABULAR)
        if kind not in trees:
            raise ConfigError(f"tree model must be {' or '.join(repr(t) for t in trees)}, got {kind!r}")
        self.kind = kind
        #: Gradient boosting (LightGBM: early stopping, a native booster file) or a bagged forest.
        self.boosted = zoo.get(kind).boosted
        self.name = kind
        self.max_rows = int(max_rows)
        self.seed = int(seed)
        self.params = params
        self.onnx_session: Any = None
        self.aux_names: tuple[str, ...] = ()

    def _estimator(self) -> Any:
        if self.boosted:
            import lightgbm as lgb

            p = {"n_estimators": 2000, "learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 50,
                 "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
                 "random_state": self.seed, "verbose": -1, "n_jobs": 2, **self.params}
            return lgb.LGBMRegressor(**p)
        from sklearn.ensemble import RandomForestRegressor

        p = {"n_estimators": 300, "max_depth": 20, "min_samples_leaf": 5, "max_features": 0.5,
             "n_jobs": -1, "random_state": self.seed, **self.params}
        return RandomForestRegressor(**p)

    def _rows(self, s: SampleSet, subsample: bool) -> tuple[np.ndarray, np.ndarray]:
        feats, idx = features(s, self.lat, self.lon)
        tgt = (s.y.astype(np.float64) - s.x[:, -1]).reshape(-1)[idx]
        keep = np.isfinite(tgt)
        feats, tgt = feats[keep], tgt[keep].astype(np.float32)
        if subsample and len(tgt) > self.max_rows:
            sel = np.random.default_rng(self.seed).choice(len(tgt), self.max_rows, replace=False)
            feats, tgt = feats[sel], tgt[sel]
        return feats, tgt

    def _check_inputs(self, s: SampleSet, what: str) -> None:
        if s.seq_len != self.seq_len:
            raise ModelContractError(f"{self.kind}: {what} samples have T={s.seq_len}, the model was fitted with "
                                     f"T={self.seq_len}")
        if tuple(s.aux_names) != self.aux_names:
            raise ModelContractError(f"{self.kind}: {what} samples carry auxiliary inputs {list(s.aux_names)}, the "
                                     f"model was fitted with {list(self.aux_names)}")

    def fit(self, train: SampleSet, val: SampleSet | None = None, *, lat: np.ndarray, lon: np.ndarray) -> TreeModel:
        """Fit on ``train`` (its auxiliary inputs become features); LightGBM early-stops on ``val``."""
        if len(train) == 0:
            raise ConfigError(f"{self.kind} needs training samples")
        self.lat, self.lon = np.asarray(lat), np.asarray(lon)
        self.seq_len = train.seq_len
        self.aux_names = tuple(train.aux_names)
        if val is not None:
            self._check_inputs(val, "validation")
        xf, yf = self._rows(train, True)
        self.estimator = self._estimator()
        if self.boosted and val is not None and len(val):
            import lightgbm as lgb

            xv, yv = self._rows(val, True)
            self.estimator.fit(xf, yf, eval_set=[(xv, yv)], callbacks=[lgb.early_stopping(100, verbose=False)])
        else:
            self.estimator.fit(xf, yf)
        self.n_rows = len(yf)
        return self

    def n_parameters(self) -> int:
        """Tree nodes (the tree analogue of a parameter count)."""
        if self.boosted:
            d = self.estimator.booster_.dump_model()
            return int(sum(2 * t["num_leaves"] - 1 for t in d["tree_info"]))
        return int(sum(e.tree_.node_count for e in self.estimator.estimators_))

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.onnx_session is not None:
            return self.onnx_session.run(None, {"features": rows})[0].reshape(-1)
        return np.asarray(self.estimator.predict(rows), dtype=np.float32)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.seq_len, self.aux_names)

    def predict(self, samples: SampleSet) -> np.ndarray:
        self._check_inputs(samples, "prediction")
        return predict_fields(self.predict_rows, samples.x, samples.lead, samples.valid, samples.aux,
                              samples.aux_names, self.lat, self.lon)

    def export_onnx(self, path: Path, probe: SampleSet) -> dict[str, Any]:
        """Write ``path`` (ONNX, float32 [None, F] -> residual) and return the manifest block.

        On any converter error or a parity failure the file is removed and the block says
        ``"runtime": "native"`` with the reason; the caller keeps using the native model.
        """
        path = Path(path)
        names = self.feature_names
        nf = len(names)
        info: dict[str, Any] = {"kind": self.kind, "features": names}
        self._check_inputs(probe, "probe")
        try:
            if self.boosted:
                from onnxmltools import convert_lightgbm
                from onnxmltools.convert.common.data_types import FloatTensorType

                onx = convert_lightgbm(self.estimator.booster_, initial_types=[("features", FloatTensorType([None, nf]))],
                                       target_opset=15)  # onnxmltools 1.16 supports up to 15
            else:
                from skl2onnx import to_onnx
                from skl2onnx.common.data_types import FloatTensorType as SkFloat

                onx = to_onnx(self.estimator, initial_types=[("features", SkFloat([None, nf]))], target_opset=17)
            path.write_bytes(onx.SerializeToString())
            import onnxruntime as ort

            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            rows, _ = features(probe, self.lat, self.lon)
            rows = rows[: 20_000]
            got = sess.run(None, {sess.get_inputs()[0].name: rows})[0].reshape(-1)
            ref = np.asarray(self.estimator.predict(rows), dtype=np.float32)
            diff = float(np.max(np.abs(got - ref))) if len(ref) else 0.0
            if not diff <= PARITY_ATOL_DEGC:
                raise ModelContractError(f"tree ONNX parity {diff:.2e} degC > {PARITY_ATOL_DEGC}")
            info.update({"runtime": "onnx", "file": path.name, "parity_max_abs_degC": diff,
                         "n_rows_checked": len(ref), "bytes": path.stat().st_size})
        except Exception as exc:  # noqa: BLE001 - converter missing/failed or parity: stay native, say so
            LOG.warning("%s ONNX export failed, model runs natively: %s", self.kind, exc)
            path.unlink(missing_ok=True)
            info.update({"runtime": "native", "reason": str(exc)[:300]})
        return info

    def save_native(self, path: Path) -> dict[str, Any]:
        """LightGBM only: the booster as LightGBM's text model file (best iteration; no pickle).

        Load it with ``lightgbm.Booster(model_file=path)``; returns the manifest block.
        """
        if not self.boosted:
            raise ModelContractError(f"{self.kind} has no pickle-free native format; it ships as ONNX only")
        path = Path(path)
        self.estimator.booster_.save_model(str(path))
        return {"kind": self.kind, "features": self.feature_names, "runtime": "native", "file": path.name,
                "format": "lightgbm text model", "lightgbm_version": _version(lgb_module())}


def lgb_module() -> str:
    """The LightGBM package's import name."""
    import lightgbm

    return lightgbm.__name__


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except Exception:  # noqa: BLE001 - informative only
        return None


def write_manifest(path: Path, info: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(info, indent=2) + "\n")
