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

The fitted form (``predict_arrays(x, lead, valid)``, ``to_arrays()`` / ``from_arrays()``: plain numeric
arrays) lives in :mod:`bias_correction.correction.tabular_apply`, which the runtime loads without any
training code; the classes here add ``fit``. :func:`save_npz` and :func:`load_npz` write and read the
parameters as a ``.npz`` (``allow_pickle=False``), the artifact of a tabular model package
(``training.tabular_export``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bias_correction import zoo
from bias_correction.correction import tabular_apply as fitted
from bias_correction.correction.tabular_apply import _doy
from bias_correction.errors import ConfigError

if TYPE_CHECKING:
    from bias_correction.training.dataset import SampleSet

LOG = logging.getLogger(__name__)


class _Base(fitted.FittedBaseline):
    def fit(self, train: SampleSet) -> _Base:  # pragma: no cover - interface
        raise NotImplementedError


class MeanBias(fitted.MeanBias, _Base):
    def fit(self, train: SampleSet) -> MeanBias:
        if len(train) == 0:
            raise ConfigError("mean-bias baseline needs training samples")
        return self._set((train.y - train.x[:, -1]).astype(np.float64), train.lead, _doy(train.valid))


class LinearRegression(fitted.LinearRegression, _Base):
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


class QuantileMapping(fitted.QuantileMapping, _Base):
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


def _trainable() -> dict[str, type[_Base]]:
    return {spec.id: zoo.resolve(str(spec.build)) for spec in zoo.specs(zoo.BASELINE)}


#: Model id -> trainable baseline class (the registry's ``build`` references).
BASELINES = _trainable()


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
    """A fitted (and refittable) baseline from :func:`save_npz`'s file (``allow_pickle=False``)."""
    return fitted.load_npz(path, expected, BASELINES)  # type: ignore[return-value, arg-type]
