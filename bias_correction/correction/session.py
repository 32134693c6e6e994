"""ONNX Runtime sessions with checked execution providers (shared by gridded and tabular packages).

ORT silently falls back to the CPU when CUDA/TensorRT libraries fail to load, so the active provider
is read back from the session and reported; a requested GPU provider (``cuda``, ``tensorrt``) that is
not active raises :class:`ProviderUnavailableError`. TF32 is disabled on CUDA (ORT ``use_tf32=0``)
for parity with the fp32 reference.

Session settings are explicit (:class:`OrtOptions`, configured in ``[inference]``): ORT's defaults
(arena growing by powers of two, memory pattern, one intra-op thread per core) made a 1000x1000
whole-domain run hold 17.5 GiB; the arena now grows only by what is requested and the daily path
streams tiles (``correction.streaming``), so the arena stays at the size of one batch of tiles.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bias_correction.correction.manifest import Manifest
from bias_correction.errors import ConfigError, ProviderUnavailableError

LOG = logging.getLogger(__name__)

Providers = Literal["auto", "cpu", "cuda", "tensorrt"]
Runtime = Literal["onnx", "torchscript"]
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
TORCH_CPU = "torch-cpu"
TORCH_CUDA = "torch-cuda"
GPU_PROVIDERS = (CUDA, TRT, TORCH_CUDA)
_CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}


def _trt_options(manifest: Manifest | None) -> dict[str, str]:
    cache = Path(os.environ.get("SSTBC_TRT_CACHE", Path(tempfile.gettempdir()) / "sstbc-trt-cache"))
    opts = {"trt_fp16_enable": "False", "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache)}
    if manifest is not None:
        t, (h, w) = manifest.seq_len, manifest.tile_shape
        a = len(manifest.aux_inputs)

        def shapes(b: int) -> str:
            return f"sst:{b}x{t}x{h}x{w},lead_days:{b}" + (f",aux:{b}x{t}x{a}x{h}x{w}" if a else "")
        opts.update({"trt_profile_min_shapes": shapes(1), "trt_profile_opt_shapes": shapes(7),
                     "trt_profile_max_shapes": shapes(64)})
    return opts


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session settings, all explicit (``[inference]`` in the config; see the module doc)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    cpu_mem_arena: bool = True
    arena_extend_strategy: Literal["kSameAsRequested", "kNextPowerOfTwo"] = "kSameAsRequested"
    mem_pattern: bool = True

    @classmethod
    def from_settings(cls, inference: Any) -> OrtOptions:
        """From a config ``[inference]`` section (any object with these attribute names)."""
        return cls(**{k: getattr(inference, k) for k in cls.__dataclass_fields__})

    def session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = int(self.intra_op_threads)
        so.inter_op_num_threads = int(self.inter_op_threads)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_cpu_mem_arena = bool(self.cpu_mem_arena)
        so.enable_mem_pattern = bool(self.mem_pattern)
        return so

    def cpu_provider(self) -> tuple[str, dict[str, str]]:
        """The CPU provider with its arena extension strategy (ORT takes it as a provider option)."""
        return (CPU, {"arena_extend_strategy": self.arena_extend_strategy})


DEFAULT_ORT = OrtOptions()


def _session(path: str, provider_list: list[Any], options: OrtOptions = DEFAULT_ORT) -> Any:
    import onnxruntime as ort

    chain = [options.cpu_provider() if p == CPU else p for p in provider_list]
    return ort.InferenceSession(path, sess_options=options.session_options(), providers=chain)


def create_session(onnx_path: Path, providers: Providers = "auto",
                   manifest: Manifest | None = None, options: OrtOptions = DEFAULT_ORT) -> tuple[Any, str]:
    """(session, active provider name). "auto": CUDA only if available *and* active, else CPU."""
    import onnxruntime as ort

    if providers not in PROVIDER_CHOICES:
        raise ConfigError(f"providers must be one of {', '.join(PROVIDER_CHOICES)}, got {providers!r}")
    path = str(onnx_path)
    if providers == "cpu":
        return _session(path, [CPU], options), CPU
    if providers in ("cuda", "tensorrt"):
        want = CUDA if providers == "cuda" else TRT
        chain: list[Any] = [(CUDA, _CUDA_OPTIONS), CPU]
        if providers == "tensorrt":
            chain.insert(0, (TRT, _trt_options(manifest)))
        ort.set_default_logger_severity(4)
        try:
            sess = _session(path, chain, options)
        except Exception as exc:  # provider libraries that fail hard at session creation
            raise ProviderUnavailableError(f"{want} requested for {onnx_path} but the session could not "
                                           f"start: {exc}") from None
        finally:
            ort.set_default_logger_severity(2)
        if want not in sess.get_providers():
            raise ProviderUnavailableError(
                f"{want} requested for {onnx_path} but not active (session providers: "
                f"{sess.get_providers()}); check the CUDA/cuDNN/TensorRT libraries, or use providers='auto'/'cpu'")
        return sess, want
    if CUDA in ort.get_available_providers():
        # A failed CUDA load is expected on CPU hosts; keep ORT's default logger quiet while trying.
        ort.set_default_logger_severity(4)
        try:
            sess = _session(path, [(CUDA, _CUDA_OPTIONS), CPU], options)
        except Exception:
            sess = None
        finally:
            ort.set_default_logger_severity(2)
        if sess is not None and CUDA in sess.get_providers():
            return sess, CUDA
    return _session(path, [CPU], options), CPU


def cuda_active() -> bool:
    """True when ORT can actually run on CUDA here (not merely list the provider)."""
    try:
        import onnxruntime as ort

        if CUDA not in ort.get_available_providers():
            return False
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False
