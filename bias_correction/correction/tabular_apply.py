"""Apply fitted tabular models: per-pixel tree features and the statistical baselines' fitted form.

What the runtime (``correction.tabular``) needs to run a tabular package, with no training code:

* :func:`features_from_arrays` / :func:`predict_fields`: the per-pixel feature rows of models.md 10.1
  (HYCOM lags, tendency, 3x3/5x5 ocean neighbourhood statistics, lat, lon, sin/cos of the valid day of
  year, lead, then per auxiliary input its lag-0 value and, for an anchor input, the difference to
  HYCOM lag 0) and the reconstruction corrected = HYCOM lag 0 + predicted residual. Training
  (``training.trees``) uses the same functions, so features cannot drift between fit and inference.
* :class:`MeanBias`, :class:`LinearRegression`, :class:`QuantileMapping`: a fitted baseline as plain
  arrays (``to_arrays``/``from_arrays``) and its ``predict_arrays``; ``training.baselines`` subclasses
  them with ``fit``. :func:`load_npz` reads a package's ``params.npz`` (``allow_pickle=False``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from bias_correction import zoo
from bias_correction.inputs import aux_input
from bias_correction.errors import ConfigError, ModelContractError


def _neigh(field: np.ndarray, ocean: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over size x size ocean cells of [N, H, W] fields (land excluded)."""
    w = ocean.astype(np.float64)
    f = np.where(ocean, np.nan_to_num(field), 0.0)
    ax = (0, size, size)
    cnt = np.maximum(uniform_filter(np.broadcast_to(w, f.shape), ax, mode="constant"), 1e-9)
    m = uniform_filter(f, ax, mode="constant") / cnt
    m2 = uniform_filter(f * f, ax, mode="constant") / cnt
    return m, np.sqrt(np.maximum(m2 - m * m, 0.0))


def aux_feature_names(aux_names: Sequence[str] = ()) -> list[str]:
    """Feature columns derived from the auxiliary inputs, in column order."""
    out: list[str] = []
    for name in aux_names:
        out.append(f"{name}_lag0")
        if aux_input(name).anchor:  # an SST analysis: its difference from HYCOM is the strongest feature
            out.append(f"{name}_minus_hycom_lag0")
    return out


def feature_names(seq_len: int, aux_names: Sequence[str] = ()) -> list[str]:
    return ([f"hycom_lag{j}" for j in range(seq_len)] + ["tendency", "mean3", "std3", "mean5", "std5",
                                                        "lat", "lon", "sin_doy", "cos_doy", "lead_days"]
            + aux_feature_names(aux_names))


def _valid_days(valid: np.ndarray, n: int) -> np.ndarray:
    try:
        d = np.asarray(valid).astype("datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise ModelContractError(f"valid_days must be dates (datetime64), got {np.asarray(valid).dtype}: {exc}") from None
    if d.shape != (n,):
        raise ModelContractError(f"valid_days must have shape [{n}] (one valid day per sample), got {list(d.shape)}")
    if np.isnat(d).any():
        raise ModelContractError("valid_days holds NaT; every sample needs its valid day")
    return d


def features_from_arrays(x: np.ndarray, lead: np.ndarray, valid: np.ndarray, aux: np.ndarray | None,
                         aux_names: Sequence[str], lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows [M, F] float32, index [M] of flat positions in [N, H, W]) over the cells where every HYCOM lag
    and the lag-0 value of every auxiliary input are finite.

    x [N, T, H, W] degC (lag 0 = last step), lead [N] days, valid [N] valid days (datetime64),
    aux [N, T, A, H, W] in the order of ``aux_names`` (None when A = 0), lat [H], lon [W] degrees.
    """
    x = np.asarray(x).astype(np.float64)
    if x.ndim != 4:
        raise ModelContractError(f"HYCOM SST must be [N, T, H, W], got shape {list(x.shape)}")
    n, t, h, w = x.shape
    names = tuple(aux_names)
    if names and (aux is None or aux.shape[:3] != (n, t, len(names)) or aux.shape[3:] != (h, w)):
        raise ModelContractError(f"auxiliary inputs {list(names)} must be [N, T, A, H, W] = "
                                 f"{[n, t, len(names), h, w]}, got {None if aux is None else list(aux.shape)}")
    if len(lat) != h or len(lon) != w:
        raise ModelContractError(f"grid has {len(lat)}x{len(lon)} cells, the fields are {h}x{w}")
    ok = np.isfinite(x).all(axis=1)  # [N, H, W]
    aux0 = [np.asarray(aux[:, -1, i], dtype=np.float64) for i in range(len(names))] if names else []  # type: ignore[index]
    for a in aux0:
        ok &= np.isfinite(a)
    lag0 = x[:, -1]
    m3, s3 = _neigh(lag0, ok, 3)
    m5, s5 = _neigh(lag0, ok, 5)
    d = _valid_days(valid, n)
    doy = (d - d.astype("datetime64[Y]")).astype(int)
    ang = 2 * np.pi * doy / 365.25
    la, lo = np.meshgrid(np.asarray(lat, float), np.asarray(lon, float), indexing="ij")
    cols = [x[:, t - 1 - j] for j in range(t)]  # lag 0 = last frame
    tend = x[:, -1] - x[:, -2] if t > 1 else np.zeros_like(lag0)
    cols += [tend, m3, s3, m5, s5, np.broadcast_to(la, (n, h, w)), np.broadcast_to(lo, (n, h, w)),
             np.broadcast_to(np.sin(ang)[:, None, None], (n, h, w)),
             np.broadcast_to(np.cos(ang)[:, None, None], (n, h, w)),
             np.broadcast_to(np.asarray(lead).astype(float)[:, None, None], (n, h, w))]
    for name, a in zip(names, aux0):
        cols.append(a)
        if aux_input(name).anchor:
            cols.append(a - lag0)
    idx = np.flatnonzero(ok.ravel())
    rows = np.stack([c.reshape(-1)[idx] for c in cols], axis=1).astype(np.float32)
    return rows, idx


def predict_fields(predict_rows: Callable[[np.ndarray], np.ndarray], x: np.ndarray, lead: np.ndarray,
                   valid: np.ndarray, aux: np.ndarray | None, aux_names: Sequence[str], lat: np.ndarray,
                   lon: np.ndarray) -> np.ndarray:
    """Corrected degC [N, H, W] = HYCOM lag 0 + predicted residual, NaN where a feature is missing (land).

    The one reconstruction used by :class:`TreeModel` and the packaged runtime (``correction.tabular``).
    """
    rows, idx = features_from_arrays(x, lead, valid, aux, aux_names, lat, lon)
    n, _, h, w = np.shape(x)
    out = np.full(n * h * w, np.nan, np.float32)
    if len(idx):
        res = np.asarray(predict_rows(rows), dtype=np.float32).reshape(-1)
        out[idx] = np.asarray(x, dtype=np.float32)[:, -1].reshape(-1)[idx] + res
    return out.reshape(n, h, w)


def _doy(days: np.ndarray) -> np.ndarray:
    d = np.asarray(days).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(int) + 1


def _land(x: np.ndarray) -> np.ndarray:
    return ~np.isfinite(x).all(axis=1)  # [N, H, W]


def _need(arrays: dict[str, np.ndarray], name: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ModelContractError(f"{name} parameters lack {', '.join(missing)} (expected {', '.join(keys)})")


class FittedBaseline:
    #: The model id (set from the registry: bias_correction.zoo).
    name = "baseline"
    #: True when ``predict_arrays`` needs the valid days (day of year).
    needs_valid_days = False

    def predict_arrays(self, x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """x [N, T, H, W] degC (NaN on land), lead [N] days, valid [N] datetime64 -> [N, H, W] degC."""
        raise NotImplementedError  # pragma: no cover - interface

    def predict(self, samples: Any) -> np.ndarray:
        """Corrected fields of a ``training.dataset.SampleSet`` (anything with x, lead, valid)."""
        return self.predict_arrays(samples.x, samples.lead, samples.valid)

    def to_arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        """Fitted parameters as plain numeric/unicode arrays (no objects, so no pickle)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FittedBaseline:  # pragma: no cover - interface
        raise NotImplementedError

    def _fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise ConfigError(f"{self.name} baseline is not fitted")

    @staticmethod
    def _finish(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        out[_land(x)] = np.nan
        return out


class MeanBias(FittedBaseline):
    needs_valid_days = True

    def __init__(self, window_days: int = 15, min_samples: int = 5) -> None:
        self.window_days = int(window_days)
        self.min_samples = int(min_samples)

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


class LinearRegression(FittedBaseline):

    def __init__(self, min_var: float = 1e-4) -> None:
        self.min_var = float(min_var)

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


class QuantileMapping(FittedBaseline):

    def __init__(self, nquantiles: int = 50, engine: str = "xsdba") -> None:
        if engine not in ("xsdba", "numpy"):
            raise ConfigError(f"quantile mapping engine must be 'xsdba' or 'numpy', got {engine!r}")
        self.nquantiles = int(nquantiles)
        self.engine = engine

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


def _appliers() -> dict[str, type[FittedBaseline]]:
    """Model id -> fitted-baseline class, from the registry (which also names each class)."""
    out: dict[str, type[FittedBaseline]] = {}
    for spec in zoo.specs(zoo.BASELINE):
        cls = zoo.resolve(str(spec.apply))
        cls.name = spec.id
        out[spec.id] = cls
    return out


APPLIERS = _appliers()


def load_npz(path: Path, expected: str | None = None,
             classes: dict[str, type[FittedBaseline]] | None = None) -> FittedBaseline:
    """A fitted baseline from ``training.baselines.save_npz``'s file (``allow_pickle=False``); clear errors
    naming the file. ``classes``: model id -> class to rebuild (default :data:`APPLIERS`)."""
    path = Path(path)
    known = APPLIERS if classes is None else classes
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
    if name not in known:
        raise ModelContractError(f"{path}: unknown baseline {name!r}; known: {', '.join(sorted(known))}")
    try:
        return known[name].from_arrays(arrays)
    except ModelContractError as exc:
        raise ModelContractError(f"{path}: {exc}") from None
