"""LightGBM and Random Forest on per-pixel features (models.md section 10), residual target.

One row = one ocean pixel x one sample (run R, lead k). Features (float32, models.md 10.1 plus the
lead, since one model serves all leads): HYCOM at lags 0..T-1, tendency lag0 - lag1, mean and std of
lag 0 over 3x3 and 5x5 neighbourhoods (ocean cells only), lat, lon, sin/cos of the valid day of year,
lead days. Target OISST - HYCOM lag 0. ``export_onnx`` converts with onnxmltools (LightGBM) or
skl2onnx (RF) and checks parity against the native prediction (atol 1e-4 degC, models.md 13.5);
when a converter fails the model stays native and the manifest says ``"runtime": "native"``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)
PARITY_ATOL_DEGC = 1e-4


def _neigh(field: np.ndarray, ocean: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over size x size ocean cells of [N, H, W] fields (land excluded)."""
    w = ocean.astype(np.float64)
    f = np.where(ocean, np.nan_to_num(field), 0.0)
    ax = (0, size, size)
    cnt = np.maximum(uniform_filter(np.broadcast_to(w, f.shape), ax, mode="constant"), 1e-9)
    m = uniform_filter(f, ax, mode="constant") / cnt
    m2 = uniform_filter(f * f, ax, mode="constant") / cnt
    return m, np.sqrt(np.maximum(m2 - m * m, 0.0))


def feature_names(seq_len: int) -> list[str]:
    return ([f"hycom_lag{j}" for j in range(seq_len)] + ["tendency", "mean3", "std3", "mean5", "std5",
                                                        "lat", "lon", "sin_doy", "cos_doy", "lead_days"])


def features(samples: SampleSet, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows [M, F] float32, index [M] of flat positions in [N, H, W]) over cells finite in every lag."""
    x = samples.x.astype(np.float64)
    n, t, h, w = x.shape
    ok = np.isfinite(x).all(axis=1)  # [N, H, W]
    lag0 = x[:, -1]
    ocean = ok
    m3, s3 = _neigh(lag0, ocean, 3)
    m5, s5 = _neigh(lag0, ocean, 5)
    d = samples.valid.astype("datetime64[D]")
    doy = (d - d.astype("datetime64[Y]")).astype(int)
    ang = 2 * np.pi * doy / 365.25
    la, lo = np.meshgrid(np.asarray(lat, float), np.asarray(lon, float), indexing="ij")
    cols = [x[:, t - 1 - j] for j in range(t)]  # lag 0 = last frame
    tend = x[:, -1] - x[:, -2] if t > 1 else np.zeros_like(lag0)
    cols += [tend, m3, s3, m5, s5, np.broadcast_to(la, (n, h, w)), np.broadcast_to(lo, (n, h, w)),
             np.broadcast_to(np.sin(ang)[:, None, None], (n, h, w)),
             np.broadcast_to(np.cos(ang)[:, None, None], (n, h, w)),
             np.broadcast_to(samples.lead.astype(float)[:, None, None], (n, h, w))]
    idx = np.flatnonzero(ok.ravel())
    rows = np.stack([c.reshape(-1)[idx] for c in cols], axis=1).astype(np.float32)
    return rows, idx


class TreeModel:
    """A fitted tree regressor of the residual; ``predict`` returns corrected degC [N, H, W] (NaN on land)."""

    def __init__(self, kind: str, max_rows: int = 400_000, seed: int = 0, **params: Any) -> None:
        if kind not in ("lightgbm", "random-forest"):
            raise ConfigError(f"tree model must be 'lightgbm' or 'random-forest', got {kind!r}")
        self.kind = kind
        self.name = kind
        self.max_rows = int(max_rows)
        self.seed = int(seed)
        self.params = params
        self.onnx_session: Any = None

    def _estimator(self) -> Any:
        if self.kind == "lightgbm":
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

    def fit(self, train: SampleSet, val: SampleSet | None = None, *, lat: np.ndarray, lon: np.ndarray) -> TreeModel:
        self.lat, self.lon = np.asarray(lat), np.asarray(lon)
        self.seq_len = train.seq_len
        xf, yf = self._rows(train, True)
        self.estimator = self._estimator()
        if self.kind == "lightgbm" and val is not None and len(val):
            import lightgbm as lgb

            xv, yv = self._rows(val, True)
            self.estimator.fit(xf, yf, eval_set=[(xv, yv)], callbacks=[lgb.early_stopping(100, verbose=False)])
        else:
            self.estimator.fit(xf, yf)
        self.n_rows = len(yf)
        return self

    def n_parameters(self) -> int:
        """Tree nodes (the tree analogue of a parameter count)."""
        if self.kind == "lightgbm":
            d = self.estimator.booster_.dump_model()
            return int(sum(2 * t["num_leaves"] - 1 for t in d["tree_info"]))
        return int(sum(e.tree_.node_count for e in self.estimator.estimators_))

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.onnx_session is not None:
            return self.onnx_session.run(None, {"features": rows})[0].reshape(-1)
        return np.asarray(self.estimator.predict(rows), dtype=np.float32)

    def predict(self, samples: SampleSet) -> np.ndarray:
        rows, idx = features(samples, self.lat, self.lon)
        out = np.full(samples.y.size, np.nan, np.float32)
        out[idx] = samples.x[:, -1].reshape(-1)[idx] + self.predict_rows(rows)
        return out.reshape(samples.y.shape)

    def export_onnx(self, path: Path, probe: SampleSet) -> dict[str, Any]:
        """Write ``path`` (ONNX, float32 [None, F] -> residual) and return the manifest block.

        On any converter error or a parity failure the file is removed and the block says
        ``"runtime": "native"`` with the reason; the caller keeps using the native model.
        """
        path = Path(path)
        nf = len(feature_names(self.seq_len))
        info: dict[str, Any] = {"kind": self.kind, "features": feature_names(self.seq_len)}
        try:
            if self.kind == "lightgbm":
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


def write_manifest(path: Path, info: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(info, indent=2) + "\n")
