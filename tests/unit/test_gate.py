from __future__ import annotations

import numpy as np

from bias_correction.gate import check_publication


def _case():
    mask = np.ones((6, 8), bool)
    mask[0, :2] = False
    raw = np.where(mask, 27.0, np.nan)[None].repeat(7, 0)
    inputs = raw[:, None].repeat(4, 1)
    corrected = raw - 0.3
    return inputs, raw, corrected, mask


def test_a_good_product_passes() -> None:
    inputs, raw, corrected, mask = _case()
    r = check_publication(inputs=inputs, raw=raw, corrected=corrected, mask=mask, providers_requested="auto",
                          active_provider="CPUExecutionProvider", envelope_degC=0.5)
    assert r.ok and r.message() == ""


def test_each_failure_is_named() -> None:
    inputs, raw, corrected, mask = _case()
    inputs[2, 1, 3, 3] = np.nan
    corrected[1, 2, 2] = np.nan
    corrected[4, 5, 5] = 60.0
    r = check_publication(inputs=inputs, raw=raw, corrected=corrected, mask=mask, providers_requested="cuda",
                          active_provider="CPUExecutionProvider", envelope_degC=0.5)
    text = r.message()
    assert not r.ok and len(r.failures) == 5
    for needle in ("inputs incomplete", "NaN pattern", "outside", "'cuda' requested but CPUExecutionProvider",
                   "training envelope"):
        assert needle in text


def test_envelope_has_a_margin() -> None:
    inputs, raw, corrected, mask = _case()
    corrected = raw - 0.7  # 0.7 <= 1.5 x 0.5
    assert check_publication(inputs=inputs, raw=raw, corrected=corrected, mask=mask, providers_requested="auto",
                              active_provider="CPUExecutionProvider", envelope_degC=0.5).ok
    corrected = raw - 0.8
    assert not check_publication(inputs=inputs, raw=raw, corrected=corrected, mask=mask, providers_requested="auto",
                                 active_provider="CPUExecutionProvider", envelope_degC=0.5).ok


def test_a_requested_device_is_met_by_any_runtime_on_it() -> None:
    """providers="cpu" is met by ONNX Runtime's CPU provider, TorchScript on the CPU and the native tabular
    runtime; "cuda" only by a CUDA one (a silent CPU fallback is refused)."""
    inputs, raw, corrected, mask = _case()

    def ok(requested: str, active: str) -> bool:
        return check_publication(inputs=inputs, raw=raw, corrected=corrected, mask=mask, providers_requested=requested,
                                 active_provider=active, envelope_degC=0.5).ok

    assert all(ok("cpu", a) for a in ("CPUExecutionProvider", "torch-cpu", "native"))
    assert all(ok("cuda", a) for a in ("CUDAExecutionProvider", "torch-cuda"))
    assert not any(ok("cuda", a) for a in ("CPUExecutionProvider", "torch-cpu", "native"))
    assert not ok("cpu", "torch-cuda") and not ok("tensorrt", "CUDAExecutionProvider")
    assert ok("auto", "torch-cpu") and ok("auto", "CUDAExecutionProvider")
