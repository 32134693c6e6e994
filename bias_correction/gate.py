"""The publication gate: checks every product must pass before anything becomes visible.

- inputs complete: every ocean cell of every input field has a value;
- the corrected field's NaN pattern equals the ocean mask, and its values are physically plausible;
- the active ONNX Runtime provider is the one requested (a GPU run that silently fell back to the
  CPU is a failure, not a success);
- the correction stays within the envelope seen in training: a model fed inputs unlike its training
  data can produce large, confident nonsense, and that must not be published as a forecast.

On failure the run either fails with the list of reasons, or (``publication_fallback = "raw"``)
publishes the raw HYCOM forecast flagged as such, so consumers get a product and know its status.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SST_RANGE_C = (-2.5, 40.0)
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
#: What may run a request, per requested provider: the ONNX Runtime provider, the TorchScript device of the same
#: kind ("torch-cpu"/"torch-cuda", ``correction.session``), and for the CPU the tabular models' native runtime.
ACCEPTED_PROVIDERS = {"cpu": {"CPUExecutionProvider", "torch-cpu", "native"},
                      "cuda": {"CUDAExecutionProvider", "torch-cuda"}, "tensorrt": {"TensorrtExecutionProvider"}}
#: Margin on the largest correction seen in training before a correction counts as out of envelope.
ENVELOPE_MARGIN = 1.5


def training_envelope(target: np.ndarray, raw: np.ndarray) -> float | None:
    """Largest |OISST - HYCOM_last| (degC) over the training samples: the corrections a model learned from.

    The maximum, not a high percentile: a model anchored on the latest analysis legitimately applies
    corrections up to the largest HYCOM-OISST differences it has seen. None when nothing is finite.
    """
    delta = np.abs(np.asarray(target, dtype=np.float64) - np.asarray(raw, dtype=np.float64))
    finite = delta[np.isfinite(delta)]
    return float(finite.max()) if finite.size else None


@dataclass(frozen=True)
class GateResult:
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def message(self) -> str:
        return "; ".join(self.failures)


def check_publication(
    *,
    inputs: np.ndarray,
    raw: np.ndarray,
    corrected: np.ndarray,
    mask: np.ndarray,
    providers_requested: str,
    active_provider: str,
    envelope_degC: float | None,
) -> GateResult:
    """All gate checks; ``inputs`` (lead, T, lat, lon), ``raw``/``corrected`` (lead, lat, lon), °C."""
    failures = []
    holes = mask & ~np.isfinite(inputs).all(axis=(0, 1))
    if holes.any():
        failures.append(f"inputs incomplete: {int(holes.sum())} ocean cell(s) without a value in some input run")
    finite = np.isfinite(corrected)
    if not (finite == mask[None]).all():
        failures.append(f"NaN pattern differs from the ocean mask in {int((finite != mask[None]).sum())} cell(s)")
    vals = corrected[finite & mask[None]]
    if vals.size and (vals.min() < SST_RANGE_C[0] or vals.max() > SST_RANGE_C[1]):
        failures.append(f"corrected SST {vals.min():.2f}..{vals.max():.2f} °C outside {SST_RANGE_C}")
    accepted = ACCEPTED_PROVIDERS.get(providers_requested)
    if accepted is not None and active_provider not in accepted:
        failures.append(f"provider {providers_requested!r} requested but {active_provider} is active")
    if envelope_degC is not None:
        delta = np.abs(corrected - raw)[finite & mask[None]]
        limit = ENVELOPE_MARGIN * envelope_degC
        if delta.size and float(delta.max()) > limit:
            failures.append(f"correction up to {float(delta.max()):.2f} °C exceeds the training envelope "
                            f"({envelope_degC:.2f} °C x {ENVELOPE_MARGIN})")
    return GateResult(tuple(failures))
