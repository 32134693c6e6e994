"""The model zoo, declared once: every model id the package knows and what each one is.

One frozen :class:`ModelSpec` per ``training.model`` value. Config validation, training, export,
the benchmark, the CLI choices and the runtime all read this registry instead of naming a model:
adding a model is one entry here plus its code (a network class, a tree engine or a baseline).

Nothing heavy is imported here (no torch, no pydantic): how to build a model is a dotted reference
``"package.module:attribute"`` resolved on demand by :func:`resolve`, so this module sits at the
bottom of the import graph.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from bias_correction.inputs import HYCOM_TENDENCY, OISST_LATEST, SURF_EL

Family = Literal["gridded", "tabular", "baseline"]
GRIDDED: Family = "gridded"
TABULAR: Family = "tabular"
BASELINE: Family = "baseline"
#: The manifest ``kind`` of each family's packages.
PACKAGE_KIND = {GRIDDED: "gridded", TABULAR: "tabular", BASELINE: "tabular"}


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class ModelSpec:
    """What one model id is.

    * ``family``: ``gridded`` (a torch network exported to ONNX/TorchScript), ``tabular`` (a per-pixel
      tree ensemble) or ``baseline`` (a statistical baseline); the last two ship as tabular packages.
    * ``default_inputs``: auxiliary inputs (``bias_correction.inputs`` names) when ``training.aux_inputs``
      is not set.
    * ``residual_base``: the framing default: ``None`` = the first anchor among the inputs, else HYCOM.
    * ``domain_dependent``: True when the output at a cell depends on the whole domain (attention,
      pooled statistics): larger domains run as tiles of the training size.
    * ``build``: dotted reference of the trainable class (network, baseline); ``apply``: of the fitted
      form the runtime loads (baselines: ``correction.tabular_apply``).
    * ``runtimes``: tabular packages' artifact runtimes, in the order export tries them.
    * ``train_params``: default training parameters; ``bench_params``: estimator argument ->
      ``BenchConfig`` attribute; ``bench_overrides``: architecture overrides of the benchmark.
    """

    id: str
    family: Family
    label: str
    default_inputs: tuple[str, ...] = ()
    residual_base: str | None = None
    domain_dependent: bool = True
    build: str | None = None
    apply: str | None = None
    kv_pooled: bool = False
    boosted: bool = False
    runtimes: tuple[str, ...] = ()
    framing: str = ""
    train_params: Mapping[str, Any] = field(default_factory=_frozen)
    bench_params: Mapping[str, str] = field(default_factory=_frozen)
    bench_overrides: Mapping[str, Any] = field(default_factory=_frozen)

    @property
    def package_kind(self) -> str:
        return PACKAGE_KIND[self.family]

    @property
    def is_tabular(self) -> bool:
        """True for models packaged as tabular packages (trees and baselines)."""
        return self.family != GRIDDED


_NET = "bias_correction.training.architectures:"
_FIT = "bias_correction.training.baselines:"
_APPLY = "bias_correction.correction.tabular_apply:"
_OISST = (OISST_LATEST.name,)
#: The default model's inputs since the lever study of issue 11 (benchmarks/results/levers, development windows):
#: the latest analysis plus HYCOM's own change since lead day 1, with a year of training (``Training``)
_OISST_TENDENCY = (OISST_LATEST.name, HYCOM_TENDENCY.name)
_TREE_FRAMING = "residual: corrected = HYCOM lag 0 + predicted (OISST - HYCOM lag 0), per ocean pixel"

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("convgru-sa", GRIDDED, "ConvGRU-SA", _OISST_TENDENCY, build=_NET + "ConvGRUSA", kv_pooled=True),
    ModelSpec("convgru", GRIDDED, "ConvGRU", _OISST, domain_dependent=False, build=_NET + "ConvGRU"),
    ModelSpec("convlstm", GRIDDED, "ConvLSTM", _OISST, domain_dependent=False, build=_NET + "ConvLSTM"),
    ModelSpec("cbam-convlstm-at", GRIDDED, "3DCNN-CBAM-ConvLSTM-AT", _OISST, build=_NET + "CBAMConvLSTMAT"),
    ModelSpec("faconvlstm", GRIDDED, "FAConvLSTM", _OISST, build=_NET + "FAConvLSTM"),
    ModelSpec("ca-convlstm", GRIDDED, "CA-ConvLSTM*", (SURF_EL.name,), build=_NET + "CAConvLSTM", kv_pooled=True,
              bench_overrides=_frozen({"layers": 1})),
    ModelSpec("lightgbm", TABULAR, "LightGBM", _OISST, domain_dependent=False, boosted=True,
              runtimes=("onnx", "native"), framing=_TREE_FRAMING,
              train_params=_frozen({"max_rows": 200_000, "n_estimators": 300}),
              bench_params=_frozen({"n_estimators": "lgbm_estimators"})),
    ModelSpec("random-forest", TABULAR, "Random Forest", _OISST, domain_dependent=False, runtimes=("onnx",),
              framing=_TREE_FRAMING, train_params=_frozen({"max_rows": 200_000, "n_estimators": 60, "max_depth": 14}),
              bench_params=_frozen({"n_estimators": "rf_estimators", "max_depth": "rf_max_depth"})),
    ModelSpec("mean-bias", BASELINE, "mean bias (lead, doy window)", domain_dependent=False,
              build=_FIT + "MeanBias", apply=_APPLY + "MeanBias", runtimes=("native",),
              framing="corrected = HYCOM lag 0 + mean (OISST - HYCOM lag 0) of the training samples of the same "
                      "pixel and lead whose valid day of year is within +-window_days (all-season mean below "
                      "min_samples)"),
    ModelSpec("linear-regression", BASELINE, "linear regression (pixel, lead)", domain_dependent=False,
              build=_FIT + "LinearRegression", apply=_APPLY + "LinearRegression", runtimes=("native",),
              framing="corrected = a + b * HYCOM lag 0, per pixel and lead (least squares)"),
    ModelSpec("quantile-mapping", BASELINE, "quantile mapping (lead, xsdba)", domain_dependent=False,
              build=_FIT + "QuantileMapping", apply=_APPLY + "QuantileMapping", runtimes=("native",),
              framing="corrected = HYCOM lag 0 + additive empirical quantile mapping onto OISST, per lead "
                      "(linear between quantiles, constant beyond)",
              train_params=_frozen({"engine": "xsdba"})),
)
REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({s.id: s for s in MODELS})
#: ``training.model`` when none is configured (and so the default ``model_id``).
DEFAULT_MODEL = MODELS[0].id


def ids(*families: Family) -> tuple[str, ...]:
    """Model ids in registry order, of the given families (all when none given)."""
    return tuple(s.id for s in MODELS if not families or s.family in families)


def specs(*families: Family) -> tuple[ModelSpec, ...]:
    return tuple(s for s in MODELS if not families or s.family in families)


def get(model_id: str) -> ModelSpec:
    """The spec of ``model_id``; an unknown id raises KeyError naming the known ones."""
    try:
        return REGISTRY[model_id]
    except KeyError:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(ids())}") from None


def find(model_id: str) -> ModelSpec | None:
    return REGISTRY.get(model_id)


def is_tabular(model_id: str) -> bool:
    """True for models packaged as tabular packages (trees, baselines); False for unknown ids."""
    spec = REGISTRY.get(model_id)
    return spec is not None and spec.is_tabular


def default_inputs(model_id: str) -> tuple[str, ...]:
    """Default auxiliary inputs of ``model_id`` (the latest OISST analysis for unknown ids)."""
    spec = REGISTRY.get(model_id)
    return spec.default_inputs if spec is not None else _OISST


def domain_dependent(model_id: str) -> bool:
    """True unless the registry says the model is purely local (unknown ids: True, the safe side)."""
    spec = REGISTRY.get(model_id)
    return True if spec is None else spec.domain_dependent


def label(name: str) -> str:
    spec = REGISTRY.get(name)
    return spec.label if spec is not None else name


def resolve(ref: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imported on demand)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
