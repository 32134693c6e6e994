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
  ``nquantiles`` empirical quantiles, constant extrapolation).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bias_correction.errors import ConfigError
from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)


def _doy(days: np.ndarray) -> np.ndarray:
    d = np.asarray(days).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(int) + 1


def _land(samples: SampleSet) -> np.ndarray:
    return ~np.isfinite(samples.x).all(axis=1)  # [N, H, W]


class _Base:
    name = "baseline"

    def fit(self, train: SampleSet) -> _Base:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, samples: SampleSet) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def _finish(self, samples: SampleSet, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        out[_land(samples)] = np.nan
        return out


class MeanBias(_Base):
    name = "mean-bias"

    def __init__(self, window_days: int = 15, min_samples: int = 5) -> None:
        self.window_days = int(window_days)
        self.min_samples = int(min_samples)

    def fit(self, train: SampleSet) -> MeanBias:
        if len(train) == 0:
            raise ConfigError("mean-bias baseline needs training samples")
        self._delta = (train.y - train.x[:, -1]).astype(np.float64)  # [N, H, W]
        self._lead = train.lead.copy()
        self._doy = _doy(train.valid)
        self._all = {int(k): np.nanmean(self._delta[self._lead == k], axis=0) for k in np.unique(self._lead)}
        return self

    def predict(self, samples: SampleSet) -> np.ndarray:
        out = np.empty(samples.y.shape, np.float64)
        doy = _doy(samples.valid)
        for i in range(len(samples)):
            k = int(samples.lead[i])
            if k not in self._all:
                raise ConfigError(f"mean-bias baseline was not fitted for lead {k}")
            dist = np.abs(self._doy - doy[i])
            dist = np.minimum(dist, 366 - dist)
            sel = (self._lead == k) & (dist <= self.window_days)
            corr = np.nanmean(self._delta[sel], axis=0) if sel.sum() >= self.min_samples else self._all[k]
            out[i] = samples.x[i, -1] + np.where(np.isfinite(corr), corr, 0.0)
        return self._finish(samples, out)


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

    def predict(self, samples: SampleSet) -> np.ndarray:
        out = np.empty(samples.y.shape, np.float64)
        for i in range(len(samples)):
            a, b = self._coef[int(samples.lead[i])]
            out[i] = a + b * samples.x[i, -1]
        return self._finish(samples, out)


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
            if self.engine == "xsdba":
                self._maps[int(k)] = self._fit_xsdba(x, y)
            else:
                q = (np.arange(self.nquantiles) + 0.5) / self.nquantiles
                self._maps[int(k)] = (np.quantile(x, q), np.quantile(y, q) - np.quantile(x, q))
        return self

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
        m = self._maps[k]
        if self.engine == "numpy":
            xq, dq = m
            return values + np.interp(values, xq, dq)
        import pandas as pd
        import xarray as xr

        t = pd.date_range("2000-01-01", periods=values.size, freq="D")
        sim = xr.DataArray(values, dims="time", coords={"time": t}, attrs={"units": "degC"})
        return np.asarray(m.adjust(sim, interp="linear", extrapolation="constant").values)

    def predict(self, samples: SampleSet) -> np.ndarray:
        out = np.full(samples.y.shape, np.nan)
        for k in np.unique(samples.lead):
            sel = np.flatnonzero(samples.lead == k)
            x = samples.x[sel, -1].astype(np.float64)
            ok = np.isfinite(x)
            block = np.full(x.shape, np.nan)
            block[ok] = self._adjust(int(k), x[ok])
            out[sel] = block
        return self._finish(samples, out)


BASELINES = {"mean-bias": MeanBias, "linear-regression": LinearRegression, "quantile-mapping": QuantileMapping}


def build_baseline(name: str, **kw: Any) -> _Base:
    try:
        return BASELINES[name](**kw)
    except KeyError:
        raise ConfigError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}") from None
