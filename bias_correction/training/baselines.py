"""Statistical baselines on the :class:`SampleSet` interface (the issue's "statistical baselines").

Every baseline has ``fit(train: SampleSet) -> self`` and ``predict(samples) -> [N, H, W] degC`` (NaN on
land), and corrects the last input frame (HYCOM of run R at lead k, valid day R + k):

* :class:`MeanBias`: per pixel and lead, the mean OISST - HYCOM of the training samples whose valid
  day of year lies within +-``window_days`` of the target's (circular); leads/pixels with fewer than
  ``min_samples`` such samples fall back to the all-season per-lead mean.
* :class:`LinearRegression`: per pixel and lead, OISST = a + b * HYCOM by least squares (b shrunk to 1
  where HYCOM barely varies).
* :class:`QuantileMapping`: per lead, empirical quantile mapping of HYCOM onto OISST pooled over the
  ocean pixels (additive). Uses ``xsdba.EmpiricalQuantileMapping`` when xsdba imports (the default,
  ``engine="xsdba"``); ``engine="numpy"`` is the same mapping by hand (linear interpolation between
  ``nquantiles`` empirical quantiles, constant extrapolation). Either way the fitted state is a pair
  of quantile tables per lead (HYCOM quantiles, OISST - HYCOM at those quantiles), applied by linear
  interpolation with constant extrapolation -- exactly what xsdba's ``adjust(interp="linear",
  extrapolation="constant")`` does -- so inference never needs xsdba.

Every baseline also has ``predict_arrays(x, lead, valid)`` (the runtime's entry: no SampleSet) and
``to_arrays()`` / ``from_arrays()`` (its fitted parameters as plain numeric arrays); :func:`save_npz`
and :func:`load_npz` write and read them as a ``.npz`` (``allow_pickle=False``), the artifact of a
tabular model package (``training.tabular_export``).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bias_correction.errors import ConfigError, ModelContractError

if TYPE_CHECKING:  # the runtime (correction.tabular) loads baselines without importing torch
    from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)


def _doy(days: np.ndarray) -> np.ndarray:
    d = np.asarray(days).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(int) + 1


def _land(x: np.ndarray) -> np.ndarray:
    return ~np.isfinite(x).all(axis=1)  # [N, H, W]


def _need(arrays: dict[str, np.ndarray], name: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ModelContractError(f"{name} parameters lack {', '.join(missing)} (expected {', '.join(keys)})")


class _Base:
    name = "baseline"
    #: True when ``predict_arrays`` needs the valid days (day of year).
    needs_valid_days = False

    def fit(self, train: SampleSet) -> _Base:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_arrays(self, x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """x [N, T, H, W] degC (NaN on land), lead [N] days, valid [N] datetime64 -> [N, H, W] degC."""
        raise NotImplementedError  # pragma: no cover - interface

    def predict(self, samples: SampleSet) -> np.ndarray:
        return self.predict_arrays(samples.x, samples.lead, samples.valid)

    def to_arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        """Fitted parameters as plain numeric/unicode arrays (no objects, so no pickle)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _Base:  # pragma: no cover - interface
        raise NotImplementedError

    def _fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise ConfigError(f"{self.name} baseline is not fitted")

    @staticmethod
    def _finish(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        out[_land(x)] = np.nan
        return out


class MeanBias(_Base):
    name = "mean-bias"
    needs_valid_days = True

    def __init__(self, window_days: int = 15, min_samples: int = 5) -> None:
        self.window_days = int(window_days)
        self.min_samples = int(min_samples)

    def fit(self, train: SampleSet) -> MeanBias:
        if len(train) == 0:
            raise ConfigError("mean-bias baseline needs training samples")
        return self._set((train.y - train.x[:, -1]).astype(np.float64), train.lead, _doy(train.valid))

    def _set(self, delta: np.ndarray, lead: np.ndarray, doy: np.ndarray) -> MeanBias:
        self._delta = delta  # [N, H, W] OISST - HYCOM lag 0 of the training samples
        self._lead = np.asarray(lead).astype(np.int64)
        self._doy = np.asarray(doy).astype(np.int64)
        self._all = {int(k): np.nanmean(self._delta[self._lead == k], axis=0) for k in np.unique(self._lead)}
        return self

    def predict_arrays(self, x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        self._fitted("_delta")
        if valid is None:
            raise ModelContractError("mean-bias baseline needs the valid day of every sample (day of year)")
        x = np.asarray(x)
        out = np.empty((x.shape[0], *x.shape[2:]), np.float64)
        doy = _doy(valid)
        for i in range(x.shape[0]):
            k = int(lead[i])
            if k not in self._all:
                raise ConfigError(f"mean-bias baseline was not fitted for lead {k}")
            dist = np.abs(self._doy - doy[i])
            dist = np.minimum(dist, 366 - dist)
            sel = (self._lead == k) & (dist <= self.window_days)
            corr = np.nanmean(self._delta[sel], axis=0) if sel.sum() >= self.min_samples else self._all[k]
            out[i] = x[i, -1] + np.where(np.isfinite(corr), corr, 0.0)
        return self._finish(x, out)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The training residuals themselves (float32 when that is lossless: they are float32 differences)."""
        self._fitted("_delta")
        d32 = self._delta.astype(np.float32)
        lossless = np.array_equal(d32.astype(np.float64), self._delta, equal_nan=True)
        return {"window_days": np.array(self.window_days), "min_samples": np.array(self.min_samples),
                "delta": d32 if lossless else self._delta, "lead": self._lead, "doy": self._doy}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MeanBias:
        _need(arrays, cls.name, ("window_days", "min_samples", "delta", "lead", "doy"))
        delta = np.asarray(arrays["delta"]).astype(np.float64)
        lead, doy = np.asarray(arrays["lead"]), np.asarray(arrays["doy"])
        if delta.ndim != 3 or lead.shape != (delta.shape[0],) or doy.shape != lead.shape:
            raise ModelContractError(f"mean-bias parameters: delta {list(delta.shape)}, lead {list(lead.shape)} and "
                                     f"doy {list(doy.shape)} must be [N, H, W], [N], [N]")
        return cls(int(arrays["window_days"]), int(arrays["min_samples"]))._set(delta, lead, doy)


class LinearRegression(_Base):
    name = "linear-regression"

    def __init__(self, min_var: float = 1e-4) -> None:
        self.min_var = float(min_var)

    def fit(self, train: SampleSet) -> LinearRegression:
        self._coef: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in np.unique(train.lead):
            sel = train.lead == k
            x = train.x[sel, -1].astype(np.float64)
            y = train.y[sel].astype(np.float64)
            mx, my = np.nanmean(x, axis=0), np.nanmean(y, axis=0)
            vx = np.nanmean((x - mx) ** 2, axis=0)
            cxy = np.nanmean((x - mx) * (y - my), axis=0)
            b = np.where(vx > self.min_var, cxy / np.where(vx > 0, vx, 1.0), 1.0)
            a = my - b * mx
            self._coef[int(k)] = (np.nan_to_num(a), np.nan_to_num(b, nan=1.0))
        return self

    def predict_arrays(self, x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        self._fitted("_coef")
        x = np.asarray(x)
        out = np.empty((x.shape[0], *x.shape[2:]), np.float64)
        for i in range(x.shape[0]):
            k = int(lead[i])
            if k not in self._coef:
                raise ConfigError(f"linear-regression baseline was not fitted for lead {k}")
            a, b = self._coef[k]
            out[i] = a + b * x[i, -1]
        return self._finish(x, out)

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._fitted("_coef")
        leads = sorted(self._coef)
        return {"min_var": np.array(self.min_var), "leads": np.array(leads, dtype=np.int64),
                "a": np.stack([self._coef[k][0] for k in leads]), "b": np.stack([self._coef[k][1] for k in leads])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearRegression:
        _need(arrays, cls.name, ("min_var", "leads", "a", "b"))
        leads, a, b = (np.asarray(arrays[k]) for k in ("leads", "a", "b"))
        if a.ndim != 3 or a.shape != b.shape or leads.shape != (a.shape[0],):
            raise ModelContractError(f"linear-regression parameters: leads {list(leads.shape)}, a {list(a.shape)} and "
                                     f"b {list(b.shape)} must be [K], [K, H, W], [K, H, W]")
        m = cls(float(arrays["min_var"]))
        m._coef = {int(k): (a[i].astype(np.float64), b[i].astype(np.float64)) for i, k in enumerate(leads.tolist())}
        return m


class QuantileMapping(_Base):
    name = "quantile-mapping"

    def __init__(self, nquantiles: int = 50, engine: str = "xsdba") -> None:
        if engine not in ("xsdba", "numpy"):
            raise ConfigError(f"quantile mapping engine must be 'xsdba' or 'numpy', got {engine!r}")
        self.nquantiles = int(nquantiles)
        self.engine = engine

    @staticmethod
    def _pooled(s: SampleSet, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = s.x[sel, -1]
        y = s.y[sel]
        ok = np.isfinite(x) & np.isfinite(y)
        return x[ok].astype(np.float64), y[ok].astype(np.float64)

    def fit(self, train: SampleSet) -> QuantileMapping:
        self._maps: dict[int, Any] = {}
        for k in np.unique(train.lead):
            x, y = self._pooled(train, train.lead == k)
            if x.size == 0:
                raise ConfigError(f"quantile mapping: no finite ocean values for lead {int(k)} in the training samples")
            if self.engine == "xsdba":
                self._maps[int(k)] = self._tables_xsdba(self._fit_xsdba(x, y))
            else:
                q = (np.arange(self.nquantiles) + 0.5) / self.nquantiles
                self._maps[int(k)] = (np.quantile(x, q), np.quantile(y, q) - np.quantile(x, q))
        return self

    @staticmethod
    def _tables_xsdba(trained: Any) -> tuple[np.ndarray, np.ndarray]:
        """(HYCOM quantiles, adjustment factors) of a trained xsdba EmpiricalQuantileMapping (one group)."""
        hq = np.asarray(trained.ds["hist_q"].values, dtype=np.float64).reshape(-1)
        af = np.asarray(trained.ds["af"].values, dtype=np.float64).reshape(-1)
        if hq.shape != af.shape or not np.isfinite(hq).all() or not np.isfinite(af).all():
            raise ConfigError("xsdba quantile mapping produced incomplete quantile tables")
        return hq, af

    def _fit_xsdba(self, x: np.ndarray, y: np.ndarray) -> Any:
        import pandas as pd
        import xarray as xr
        import xsdba

        t = pd.date_range("2000-01-01", periods=x.size, freq="D")  # pooled values; time is only an index
        attrs = {"units": "degC"}
        ref = xr.DataArray(y, dims="time", coords={"time": t}, attrs=attrs)
        hist = xr.DataArray(x, dims="time", coords={"time": t}, attrs=attrs)
        return xsdba.EmpiricalQuantileMapping.train(ref, hist, nquantiles=self.nquantiles, group="time", kind="+")

    def _adjust(self, k: int, values: np.ndarray) -> np.ndarray:
        """Additive mapping: linear interpolation between the quantiles, constant beyond them (xsdba's
        ``adjust(interp="linear", extrapolation="constant")``, to the last bit)."""
        if k not in self._maps:
            raise ConfigError(f"quantile-mapping baseline was not fitted for lead {k}")
        xq, dq = self._maps[k]
        return values + np.interp(values, xq, dq)

    def predict_arrays(self, x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        self._fitted("_maps")
        x = np.asarray(x)
        lead = np.asarray(lead)
        out = np.full((x.shape[0], *x.shape[2:]), np.nan)
        for k in np.unique(lead):
            sel = np.flatnonzero(lead == k)
            v = x[sel, -1].astype(np.float64)
            ok = np.isfinite(v)
            block = np.full(v.shape, np.nan)
            block[ok] = self._adjust(int(k), v[ok])
            out[sel] = block
        return self._finish(x, out)

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._fitted("_maps")
        leads = sorted(self._maps)
        return {"nquantiles": np.array(self.nquantiles), "engine": np.array(self.engine),
                "leads": np.array(leads, dtype=np.int64),
                "hycom_quantiles": np.stack([self._maps[k][0] for k in leads]),
                "delta_at_quantiles": np.stack([self._maps[k][1] for k in leads])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> QuantileMapping:
        _need(arrays, cls.name, ("nquantiles", "engine", "leads", "hycom_quantiles", "delta_at_quantiles"))
        leads, xq, dq = (np.asarray(arrays[k]) for k in ("leads", "hycom_quantiles", "delta_at_quantiles"))
        if xq.ndim != 2 or xq.shape != dq.shape or leads.shape != (xq.shape[0],):
            raise ModelContractError(f"quantile-mapping parameters: leads {list(leads.shape)}, hycom_quantiles "
                                     f"{list(xq.shape)}, delta_at_quantiles {list(dq.shape)} must be [K], [K, Q], [K, Q]")
        if not (np.isfinite(xq).all() and np.isfinite(dq).all()):
            raise ModelContractError("quantile-mapping parameters hold non-finite quantiles")
        m = cls(int(arrays["nquantiles"]), str(arrays["engine"]))
        m._maps = {int(k): (xq[i].astype(np.float64), dq[i].astype(np.float64)) for i, k in enumerate(leads.tolist())}
        return m


BASELINES = {"mean-bias": MeanBias, "linear-regression": LinearRegression, "quantile-mapping": QuantileMapping}


def build_baseline(name: str, **kw: Any) -> _Base:
    try:
        return BASELINES[name](**kw)
    except KeyError:
        raise ConfigError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}") from None


def save_npz(model: _Base, path: Path) -> None:
    """The fitted parameters of ``model`` as a compressed ``.npz`` (lossless; the baseline's name inside)."""
    arrays = model.to_arrays()
    for k, v in arrays.items():
        if np.asarray(v).dtype.kind not in "biufU":
            raise ConfigError(f"{model.name} parameter {k} has dtype {np.asarray(v).dtype}; only numbers/text are stored")
    with open(path, "wb") as fh:
        np.savez_compressed(fh, baseline=np.array(model.name), **arrays)


def load_npz(path: Path, expected: str | None = None) -> _Base:
    """A fitted baseline from :func:`save_npz`'s file (``allow_pickle=False``); clear errors naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelContractError(f"baseline parameters {path} are missing") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelContractError(f"baseline parameters {path} are not a readable pickle-free .npz: {exc}") from None
    if "baseline" not in arrays:
        raise ModelContractError(f"{path} does not name its baseline (no 'baseline' array)")
    name = str(arrays.pop("baseline"))
    if expected is not None and name != expected:
        raise ModelContractError(f"{path} holds a {name!r} baseline, the manifest says {expected!r}")
    if name not in BASELINES:
        raise ModelContractError(f"{path}: unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}")
    try:
        return BASELINES[name].from_arrays(arrays)
    except ModelContractError as exc:
        raise ModelContractError(f"{path}: {exc}") from None
