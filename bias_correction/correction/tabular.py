"""Run a verified *tabular* model package: tree ensembles and statistical baselines (models.md 10).

A tabular package has the store layout and guarantees of the gridded ones (``model_store/model_id/
version/``, ``manifest.json`` schema 2 with ``"kind": "tabular"``, sha256 and size of every artifact
checked before anything else is trusted, ``MODEL_CARD.md``), written by
``training.tabular_export``. Its model artifact (``manifest["model_file"]``) is one of:

* ``model.onnx``: a tree ensemble (Random Forest via skl2onnx, LightGBM via onnxmltools) on float32
  feature rows [rows, F] -> residual degC, run by ONNX Runtime on the CPU execution provider (the
  ``ai.onnx.ml`` TreeEnsemble operators have no GPU kernel);
* ``lightgbm_booster.txt``: LightGBM's own text model (``"runtime": "native"``), when the ONNX
  conversion failed its parity check, loaded with ``lightgbm.Booster(model_file=...)``;
* ``params.npz``: a statistical baseline's fitted parameters (``allow_pickle=False``).

:class:`TabularCorrector` offers the :class:`~bias_correction.correction.base.Corrector` interface:
the per-pixel features (``correction.tabular_apply.features_from_arrays``: HYCOM lags, neighbourhood statistics,
lat/lon of the package's grid, day of year of ``valid_days``, lead, auxiliary inputs) are built here,
so the daily pipeline calls every model the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bias_correction import zoo
from bias_correction.correction.gridded import PackageCorrector
from bias_correction.correction.manifest import (
    BOOSTER_FILE,
    GRIDDED,
    MANIFEST_FILE,
    ONNX_FILE,
    PARAMS_FILE,
    SCHEMA2_FIELDS,
    SCHEMA_VERSION,
    TABULAR_FIELDS,
    Manifest,
    grid_from_manifest,
    kind_of,
    manifest_from_raw,
    read_manifest_json,
    verify_artifacts,
)
from bias_correction.correction.manifest import TABULAR as KIND
from bias_correction.correction.session import PROVIDER_CHOICES, create_session
from bias_correction.correction.tabular_apply import feature_names, load_npz, predict_fields
from bias_correction.errors import (
    ConfigError,
    ModelContractError,
    ProviderUnavailableError,
)

NATIVE = "native"
TREE_MODELS = zoo.ids(zoo.TABULAR)
BASELINE_MODELS = zoo.ids(zoo.BASELINE)
TABULAR_MODELS = TREE_MODELS + BASELINE_MODELS


def model_file_for(spec: zoo.ModelSpec, runtime: str) -> str | None:
    """The artifact a tabular model ships for ``runtime`` (None: that runtime is not one of its own)."""
    if not spec.is_tabular or runtime not in spec.runtimes:
        return None
    if runtime == "onnx":
        return ONNX_FILE
    return BOOSTER_FILE if spec.family == zoo.TABULAR else PARAMS_FILE


#: Where each model's artifact may come from, by runtime.
MODEL_FILES = {(s.id, rt): str(model_file_for(s, rt)) for s in zoo.specs(zoo.TABULAR, zoo.BASELINE)
               for rt in s.runtimes}

#: (x [B,T,H,W], lead [B], valid [B] | None, aux [B,T,A,H,W] | None) -> corrected [B,H,W] degC.
Predict = Callable[..., np.ndarray]


def package_kind(package_dir: Path) -> str:
    """"tabular" or "gridded" as the package's manifest declares (no ``kind`` = gridded); a routing hint."""
    return kind_of(package_dir)


def load_tabular_manifest(path: Path) -> Manifest:
    """Read a tabular package's ``manifest.json`` (``path`` = folder or file) after verifying every artifact."""
    mpath, pkg, raw = read_manifest_json(path)
    if raw.get("kind") != KIND:
        raise ModelContractError(f"{mpath}: package kind {raw.get('kind', GRIDDED)!r} is not {KIND!r}")
    verify_artifacts(pkg, mpath, raw.get("artifacts"))
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ModelContractError(f"{mpath}: tabular packages need schema_version 2, got {raw.get('schema_version')!r}")
    missing = [k for k in (*SCHEMA2_FIELDS, *TABULAR_FIELDS) if k not in raw]
    if missing:
        raise ModelContractError(f"{mpath}: tabular manifest lacks {', '.join(missing)}")
    arch, runtime, model_file = raw["architecture"], raw["runtime"], raw["model_file"]
    if arch not in TABULAR_MODELS:
        raise ModelContractError(f"{mpath}: architecture {arch!r} is not a tabular model ({', '.join(TABULAR_MODELS)})")
    want = MODEL_FILES.get((arch, runtime))
    if want is None or model_file != want or model_file not in raw["artifacts"]:
        raise ModelContractError(f"{mpath}: a {arch} package with runtime {runtime!r} must list its model as "
                                 f"{want or 'one of ' + str(sorted(set(MODEL_FILES.values())))} among the artifacts, "
                                 f"got model_file {model_file!r}")
    grid_from_manifest(raw["grid"], str(mpath))
    return manifest_from_raw(pkg, mpath, raw)


def _grid(manifest: Manifest) -> Any:
    return grid_from_manifest(manifest.grid, str(manifest.package_dir))


def _check_request(manifest: Manifest, providers: str, runtime: str) -> None:
    who = f"model {manifest.model_id} {manifest.version} ({manifest.architecture}, tabular)"
    if providers not in PROVIDER_CHOICES:
        raise ConfigError(f"providers must be one of {', '.join(PROVIDER_CHOICES)}, got {providers!r}")
    if providers in ("cuda", "tensorrt"):
        raise ProviderUnavailableError(
            f"providers={providers!r} requested but {who} runs on the CPU only (tree ensembles use ONNX Runtime's "
            "CPU TreeEnsemble operators, baselines numpy); set providers = 'auto' or 'cpu'")
    if runtime == "torchscript":
        raise ConfigError(f"runtime='torchscript' requested but {who} has no TorchScript artifact (its model is "
                          f"{manifest.model_file}); set runtime = 'onnx' (tabular packages run on ONNX Runtime "
                          "or natively)")
    if runtime not in ("onnx", NATIVE):
        raise ConfigError(f"runtime must be 'onnx' or 'torchscript' (or 'native' for tabular packages), got {runtime!r}")


def _tree_backend(manifest: Manifest) -> tuple[Predict, str, str, bool]:
    pkg = manifest.package_dir
    names = feature_names(manifest.seq_len, manifest.aux_inputs)
    if list(manifest.features or []) != names:
        raise ModelContractError(f"{pkg}: manifest features {manifest.features} differ from the feature layout "
                                 f"of this code {names}; re-export the model")
    path = manifest.model_path
    if manifest.runtime == "onnx":
        try:
            sess, active = create_session(path, "cpu")
        except Exception as exc:  # noqa: BLE001 - an unloadable graph is a package problem
            raise ModelContractError(f"{path}: ONNX Runtime cannot load the tree ensemble: {exc}") from None
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) != 1 or len(outs) < 1 or ins[0].shape[-1] != len(names):
            raise ModelContractError(f"{path}: graph inputs {[(i.name, i.shape) for i in ins]} are not one float "
                                     f"[rows, {len(names)}] feature input")
        in_name, out_name = ins[0].name, outs[0].name

        def rows_fn(rows: np.ndarray) -> np.ndarray:
            return sess.run([out_name], {in_name: rows})[0].reshape(-1)

        runtime = "onnx"
    else:
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_file=str(path))
        except Exception as exc:  # noqa: BLE001 - LightGBM raises its own error type
            raise ModelContractError(f"{path}: LightGBM cannot load the booster: {exc}") from None
        if booster.num_feature() != len(names):
            raise ModelContractError(f"{path}: booster has {booster.num_feature()} features, expected {len(names)}")

        def rows_fn(rows: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(rows), dtype=np.float32)

        active = runtime = NATIVE
    grid = _grid(manifest)
    lat, lon, aux_names = grid.lat, grid.lon, manifest.aux_inputs

    def predict(x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None, aux: np.ndarray | None) -> np.ndarray:
        return predict_fields(rows_fn, x, lead, valid, aux, aux_names, lat, lon)

    return predict, active, runtime, True


def _baseline_backend(manifest: Manifest) -> tuple[Predict, str, str, bool]:
    model = load_npz(manifest.model_path, expected=manifest.architecture)

    def predict(x: np.ndarray, lead: np.ndarray, valid: np.ndarray | None, aux: np.ndarray | None) -> np.ndarray:
        return model.predict_arrays(x, lead, valid)

    return predict, NATIVE, NATIVE, bool(model.needs_valid_days)


class TabularCorrector(PackageCorrector):
    """A verified tabular package and its CPU backend (ONNX Runtime trees, LightGBM booster or numpy)."""

    __slots__ = ("_needs_valid_days",)
    runtime_name = "tabular"

    def __init__(self, manifest: Manifest, predict: Predict, active_provider: str, runtime: str,
                 needs_valid_days: bool) -> None:
        super().__init__(manifest, predict, active_provider)
        object.__setattr__(self, "runtime", runtime)
        object.__setattr__(self, "_needs_valid_days", needs_valid_days)

    @classmethod
    def load(cls, package_dir: Path | str, providers: str = "auto", runtime: str = "onnx") -> TabularCorrector:
        """Verify (sha256 of every artifact) and open the package in ``package_dir``.

        ``providers``: "auto"/"cpu" (tabular models run on the CPU; "cuda"/"tensorrt" are refused with
        ProviderUnavailableError). ``runtime``: "onnx" (the configured default) or "native" both run the
        package's own artifact; "torchscript" is refused (ConfigError).
        """
        manifest = load_tabular_manifest(Path(package_dir))
        _check_request(manifest, providers, runtime)
        backend = _tree_backend if zoo.get(manifest.architecture).family == zoo.TABULAR else _baseline_backend
        predict, active, rt, needs_valid = backend(manifest)
        return cls(manifest, predict, active, rt, needs_valid)

    @property
    def needs_valid_days(self) -> bool:
        """True when ``correct`` needs ``valid_days`` (day-of-year features or windows)."""
        return bool(self._needs_valid_days)

    def correct(self, sst: np.ndarray, lead_days: np.ndarray, aux: np.ndarray | None = None, *,
                valid_days: np.ndarray | None = None, allow_larger: bool = False,
                tiles: Literal["auto", "always", "never"] = "auto", margin: int | None = None,
                ramp: int | None = None, max_batch: int = 64) -> np.ndarray:
        """[B, T, H, W] degC (NaN on land) + [B] lead days (+ aux [B, T, A, H, W], valid_days [B]) ->
        [B, H, W] corrected degC, NaN on land.

        Per-pixel models on the package's own grid (lat/lon are features): the domain must be exactly
        that grid; ``tiles``/``margin``/``ramp`` do not apply. Samples run in chunks of ``max_batch``.
        """
        m = self.manifest
        sst = np.asarray(sst)
        lead = np.asarray(lead_days)
        if allow_larger and sst.ndim == 4 and tuple(sst.shape[2:]) != m.shape:
            raise ModelContractError(f"model {m.model_id} {m.version} ({m.architecture}) is a per-pixel model of grid "
                                     f"{m.grid_id} ({m.shape[0]}x{m.shape[1]}, lat/lon are features); a "
                                     f"{sst.shape[2]}x{sst.shape[3]} domain cannot be corrected with it")
        self._validate(sst, lead, False)
        self._validate_aux(sst, None if aux is None else np.asarray(aux))
        b = sst.shape[0]
        valid = None
        if valid_days is not None:
            try:
                valid = np.asarray(valid_days).astype("datetime64[D]")
            except (TypeError, ValueError) as exc:
                raise ModelContractError(f"valid_days must be datetime64 dates, got {np.asarray(valid_days).dtype}: "
                                         f"{exc}") from None
            if valid.shape != (b,) or np.isnat(valid).any():
                raise ModelContractError(f"valid_days must be [{b}] dates (one per sample), got {list(valid.shape)}"
                                         + (" with NaT" if valid.shape == (b,) else ""))
        elif self._needs_valid_days:
            raise ModelContractError(f"model {m.model_id} {m.version} ({m.architecture}) needs valid_days [{b}] "
                                     "(the valid day of each sample: day-of-year features)")
        x = np.ascontiguousarray(sst, dtype=np.float32)
        ax = None if aux is None else np.ascontiguousarray(aux, dtype=np.float32)
        step = max(1, int(max_batch))
        parts = [self._backend(x[i:i + step], lead[i:i + step], None if valid is None else valid[i:i + step],
                               None if ax is None else ax[i:i + step]) for i in range(0, b, step)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _run(self, x: np.ndarray, lead: np.ndarray, aux: np.ndarray | None) -> np.ndarray:
        raise ModelContractError("tabular models run through correct() (they need valid_days), not tiles")


def load_tabular(package_dir: Path | str, providers: str = "auto", runtime: str = "onnx") -> TabularCorrector:
    """Shorthand for :meth:`TabularCorrector.load`."""
    return TabularCorrector.load(package_dir, providers, runtime)


__all__ = [
    "BASELINE_MODELS",
    "BOOSTER_FILE",
    "GRIDDED",
    "KIND",
    "MANIFEST_FILE",
    "MODEL_FILES",
    "NATIVE",
    "ONNX_FILE",
    "PARAMS_FILE",
    "TABULAR_MODELS",
    "TREE_MODELS",
    "TabularCorrector",
    "grid_from_manifest",
    "load_tabular",
    "load_tabular_manifest",
    "package_kind",
]
