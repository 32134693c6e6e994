"""Run an exported correction package with ONNX Runtime, with explicit, verified providers.

ORT silently falls back to the CPU when CUDA libraries fail to load, so the active provider is
read back from the session and reported; ``providers="cuda"`` turns a silent fallback into
:class:`ProviderUnavailableError`. TF32 is disabled on CUDA for parity with the fp32 reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from bias_correction.correction.package import Manifest, load_manifest, resolve_package
from bias_correction.errors import ConfigError, ModelContractError, ProviderUnavailableError
from bias_correction.grid.grids import RegularGrid

Providers = Literal["auto", "cpu", "cuda"]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}


def create_session(onnx_path: Path, providers: Providers = "auto") -> tuple[ort.InferenceSession, str]:
    """(session, active provider name). "auto": CUDA only if available *and* active, else CPU."""
    if providers not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"providers must be 'auto', 'cpu' or 'cuda', got {providers!r}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    path = str(onnx_path)
    if providers == "cpu":
        return ort.InferenceSession(path, sess_options=so, providers=[CPU]), CPU
    if providers == "cuda":
        sess = ort.InferenceSession(path, sess_options=so, providers=[(CUDA, _CUDA_OPTIONS), CPU])
        if CUDA not in sess.get_providers():
            raise ProviderUnavailableError(
                f"CUDAExecutionProvider requested for {onnx_path} but not active (session providers: "
                f"{sess.get_providers()}); check the CUDA/cuDNN libraries, or use providers='auto'/'cpu'")
        return sess, CUDA
    if CUDA in ort.get_available_providers():
        # A failed CUDA load is expected on CPU hosts; keep ORT's default logger quiet while trying.
        ort.set_default_logger_severity(4)
        try:
            sess = ort.InferenceSession(path, sess_options=so, providers=[(CUDA, _CUDA_OPTIONS), CPU])
        finally:
            ort.set_default_logger_severity(2)
        if CUDA in sess.get_providers():
            return sess, CUDA
    return ort.InferenceSession(path, sess_options=so, providers=[CPU]), CPU


class OnnxCorrector:
    """A verified package plus its ORT session. Build with :meth:`load`; read-only afterwards."""

    __slots__ = ("manifest", "package_dir", "active_provider", "_session", "_in_names", "_out_name")

    def __init__(self, manifest: Manifest, session: ort.InferenceSession, active_provider: str) -> None:
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "package_dir", manifest.package_dir)
        object.__setattr__(self, "active_provider", active_provider)
        object.__setattr__(self, "_session", session)
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != ["lead_days", "sst"] or len(session.get_outputs()) != 1:
            raise ModelContractError(f"{manifest.model_path}: graph inputs {names} are not ['sst', 'lead_days']")
        object.__setattr__(self, "_in_names", names)
        object.__setattr__(self, "_out_name", session.get_outputs()[0].name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"OnnxCorrector is read-only ({name})")

    @classmethod
    def load(cls, model_store: Path, model_id: str, version: str = "latest",
             providers: Providers = "auto") -> OnnxCorrector:
        """Resolve, verify (sha256) and open a package."""
        manifest = load_manifest(resolve_package(Path(model_store), model_id, version))
        sess, active = create_session(manifest.model_path, providers)
        return cls(manifest, sess, active)

    def check_contract(self, grid: RegularGrid, mask_hash: str, seq_len: int | None = None) -> None:
        """Refuse a run whose grid, ocean mask or T differ from what the model was trained on."""
        m = self.manifest
        who = f"model {m.model_id} {m.version}"
        if grid.grid_id != m.grid_id:
            raise ModelContractError(f"{who} expects grid {m.grid_id} ({m.shape[0]}x{m.shape[1]}), "
                                     f"the run uses grid {grid.grid_id} ({grid.nlat}x{grid.nlon})")
        if mask_hash != m.mask_sha256:
            raise ModelContractError(f"{who} expects ocean mask sha256 {m.mask_sha256}, the run's mask "
                                     f"is {mask_hash}")
        if seq_len is not None and int(seq_len) != m.seq_len:
            raise ModelContractError(f"{who} expects T={m.seq_len} input runs, the run provides T={seq_len}")

    def correct(self, sst: np.ndarray, lead_days: np.ndarray) -> np.ndarray:
        """[B, T, H, W] degC (NaN on land) + [B] lead days -> [B, H, W] corrected degC (NaN on land)."""
        m = self.manifest
        sst = np.asarray(sst)
        lead = np.asarray(lead_days)
        h, w = m.shape
        if sst.ndim != 4 or sst.shape[1:] != (m.seq_len, h, w):
            raise ModelContractError(f"sst must have shape [B, {m.seq_len}, {h}, {w}] (degC), got {list(sst.shape)}")
        if sst.shape[0] < 1:
            raise ModelContractError("sst batch is empty")
        if not np.issubdtype(sst.dtype, np.floating):
            raise ModelContractError(f"sst must be floating point degC, got dtype {sst.dtype}")
        if lead.shape != (sst.shape[0],):
            raise ModelContractError(f"lead_days must have shape [{sst.shape[0]}], got {list(lead.shape)}")
        if not (np.issubdtype(lead.dtype, np.integer) or np.issubdtype(lead.dtype, np.floating)):
            raise ModelContractError(f"lead_days must be numeric, got dtype {lead.dtype}")
        bad = sorted({int(k) for k in lead.tolist() if not float(k).is_integer() or int(k) not in m.lead_days})
        if bad:
            raise ModelContractError(f"lead_days {bad} outside the model's trained leads {list(m.lead_days)}")
        feeds = {"sst": np.ascontiguousarray(sst, dtype=np.float32),
                 "lead_days": np.ascontiguousarray(lead, dtype=np.float32)}
        return self._session.run([self._out_name], feeds)[0]
