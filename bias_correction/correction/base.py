"""The one corrector interface of the daily pipeline, and the one loader that opens any package.

:class:`Corrector` is what pipeline code may rely on, whatever the model: a verified ``manifest``,
the ``active_provider`` and ``runtime`` that run it, ``check_contract`` (grid, ocean mask, T) and
``correct`` (all samples of a run in one call). :func:`load_corrector` resolves and verifies a package
and dispatches on its manifest's ``kind``: gridded packages open on ONNX Runtime or TorchScript
(``correction.gridded``), tabular ones (trees, statistical baselines) on the CPU
(``correction.tabular``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bias_correction.correction.gridded import OnnxCorrector, TorchScriptCorrector
from bias_correction.correction.manifest import TABULAR, Manifest, kind_of
from bias_correction.correction.package import resolve_package
from bias_correction.correction.session import DEFAULT_ORT, OrtOptions, Providers, Runtime
from bias_correction.correction.tabular import TabularCorrector
from bias_correction.errors import ConfigError
from bias_correction.grid.grids import RegularGrid


@runtime_checkable
class Corrector(Protocol):
    """A verified package plus its inference backend (read-only)."""

    manifest: Manifest
    active_provider: str
    runtime: str

    def check_contract(self, grid: RegularGrid, mask_hash: str, seq_len: int | None = None) -> None:
        """Refuse a run whose grid, ocean mask or T differ from what the model was trained on."""

    def correct(self, sst: np.ndarray, lead_days: np.ndarray, aux: np.ndarray | None = None, *,
                valid_days: np.ndarray | None = None, **kw: Any) -> np.ndarray:
        """[B, T, H, W] degC + [B] lead days (+ aux [B, T, A, H, W], valid_days [B]) -> [B, H, W] degC."""


def load_corrector(model_store: Path | str, model_id: str, version: str = "latest",
                   providers: Providers = "auto", runtime: Runtime = "onnx",
                   ort_options: OrtOptions | None = None) -> Corrector:
    """Resolve, verify every artifact's sha256 and open the package with the requested runtime.

    A package whose manifest says ``"kind": "tabular"`` (tree ensembles, statistical baselines) opens as a
    :class:`~bias_correction.correction.tabular.TabularCorrector` (CPU only; runtime "onnx" or "native").
    """
    package = resolve_package(Path(model_store), model_id, version)
    if kind_of(package) == TABULAR:
        return TabularCorrector.load(package, providers, runtime)
    if runtime == "onnx":
        return OnnxCorrector.load(Path(model_store), model_id, package.name, providers,
                                  ort_options or DEFAULT_ORT)
    if runtime == "torchscript":
        return TorchScriptCorrector.load(Path(model_store), model_id, package.name, providers)
    raise ConfigError(f"runtime must be 'onnx' or 'torchscript', got {runtime!r}")


__all__ = ["Corrector", "kind_of", "load_corrector"]
