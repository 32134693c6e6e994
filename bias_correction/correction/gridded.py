"""Run a verified gridded correction package: ONNX Runtime (default) or TorchScript, with checked providers.

* ORT silently falls back to the CPU when CUDA/TensorRT libraries fail to load, so the active
  provider is read back from the session and reported; a requested GPU provider (``cuda``,
  ``tensorrt``) that is not active raises :class:`ProviderUnavailableError`.
* TF32 is disabled on CUDA (ORT ``use_tf32=0``; torch cuDNN/matmul TF32 off) for parity with the
  fp32 reference.
* All leads of a run go through the model in one batch. On CUDA the inputs and outputs are bound on
  the device with IO binding (one host->device copy per input, no per-run allocation by ``run()``).
* Domains larger than the package's training tile: attention models (whose output depends on the
  domain) run as overlapping tiles of the training size blended without seams (see ``tiling``);
  purely convolutional models with dynamic H/W run on the whole domain at once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bias_correction.correction import tiling
from bias_correction.correction.manifest import Manifest
from bias_correction.correction.manifest import load_manifest
from bias_correction.correction.package import resolve_package
from bias_correction.correction.session import (
    CUDA,
    DEFAULT_ORT,
    GPU_PROVIDERS,
    PROVIDER_CHOICES,
    TORCH_CPU,
    TORCH_CUDA,
    TRT,
    OrtOptions,
    Providers,
    create_session,
)
from bias_correction.errors import ConfigError, ModelContractError, ProviderUnavailableError
from bias_correction.grid.grids import RegularGrid


class PackageCorrector:
    """A verified package plus an inference backend (the shared checks of every :class:`~bias_correction.
    correction.base.Corrector`). Build with :func:`bias_correction.correction.base.load_corrector`; read-only."""

    __slots__ = ("manifest", "package_dir", "active_provider", "runtime", "_backend")
    runtime_name = "base"

    def __init__(self, manifest: Manifest, backend: Any, active_provider: str) -> None:
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "package_dir", manifest.package_dir)
        object.__setattr__(self, "active_provider", active_provider)
        object.__setattr__(self, "runtime", self.runtime_name)
        object.__setattr__(self, "_backend", backend)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only ({name})")

    @property
    def on_gpu(self) -> bool:
        return self.active_provider in GPU_PROVIDERS

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

    def _validate_aux(self, sst: np.ndarray, aux: np.ndarray | None) -> None:
        names = self.manifest.aux_inputs
        if not names:
            if aux is not None:
                raise ModelContractError(f"model {self.manifest.model_id} takes no auxiliary inputs, got aux")
            return
        b, t, h, w = sst.shape
        want = [b, t, len(names), h, w]
        if aux is None:
            raise ModelContractError(f"model {self.manifest.model_id} {self.manifest.version} needs auxiliary "
                                     f"inputs {list(names)} as aux {want}")
        if list(aux.shape) != want or not np.issubdtype(aux.dtype, np.floating):
            raise ModelContractError(f"aux ({list(names)}) must be floating point with shape {want}, got "
                                     f"{list(aux.shape)} {aux.dtype}")
        ocean = np.isfinite(sst).all(axis=1)
        for i, name in enumerate(names):
            missing = ~np.isfinite(aux[:, :, i]).all(axis=1) & ocean
            if missing.any():
                raise ModelContractError(f"auxiliary input {name} is NaN at {int(missing.sum())} ocean cells "
                                         "where HYCOM SST is defined")

    def _validate(self, sst: np.ndarray, lead: np.ndarray, allow_larger: bool) -> None:
        m = self.manifest
        (h, w), (th, tw) = m.shape, m.tile_shape
        if sst.ndim != 4 or sst.shape[1] != m.seq_len or (not allow_larger and sst.shape[2:] != (h, w)) \
                or sst.shape[2] < th or sst.shape[3] < tw:
            want = f"[B, {m.seq_len}, {h}, {w}]" + (f" or larger than {th}x{tw}" if allow_larger else "")
            raise ModelContractError(f"sst must have shape {want} (degC), got {list(sst.shape)}")
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

    def correct(self, sst: np.ndarray, lead_days: np.ndarray, aux: np.ndarray | None = None, *,
                valid_days: np.ndarray | None = None, allow_larger: bool = False, tiles: Literal["auto", "always", "never"] = "auto",
                margin: int | None = None, ramp: int | None = None, max_batch: int = 64) -> np.ndarray:
        """[B, T, H, W] degC (NaN on land) + [B] lead days -> [B, H, W] corrected degC (NaN on land).

        ``aux`` [B, T, A, H, W] carries the package's auxiliary inputs (``manifest.aux_inputs``).
        ``valid_days`` [B] (datetime64) is the valid day of each sample: the gridded networks do not use
        it (the tabular correctors of ``correction.tabular`` do, for the day of year).

        All B samples (e.g. the 7 leads of a run) run as one batch. With ``allow_larger`` a domain
        larger than the training tile is accepted: tiled when the model is domain-dependent
        (attention) or its graph has fixed H/W (``tiles="auto"``), else run whole.
        """
        sst = np.asarray(sst)
        lead = np.asarray(lead_days)
        self._validate(sst, lead, allow_larger)
        self._validate_aux(sst, None if aux is None else np.asarray(aux))
        x = np.ascontiguousarray(sst, dtype=np.float32)
        ld = np.ascontiguousarray(lead, dtype=np.float32)
        ax = None if aux is None else np.ascontiguousarray(aux, dtype=np.float32)
        m = self.manifest
        tile = m.tile_shape  # the exported graph's shape: the grid, or the training tile
        larger = x.shape[2:] != tile
        use_tiles = tiles == "always" or (larger and tiles == "auto" and (m.domain_dependent or not m.dynamic_hw))
        if larger and not use_tiles and not m.dynamic_hw:
            raise ModelContractError(f"model {m.model_id} {m.version} has a fixed {tile} graph; "
                                     f"a {x.shape[2:]} domain must be tiled")
        if use_tiles:
            auto_margin, auto_ramp = tiling.auto_blend(tile, m.halo_cells)  # cuts as clean as the domain halo
            margin = auto_margin if margin is None else margin
            ramp = auto_ramp if ramp is None else ramp
            return tiling.run_tiled(self._run, x, ld, tile, aux=ax, margin=margin, ramp=ramp,
                                    max_batch=max_batch)
        return self._run(x, ld, ax)

    def _run(self, x: np.ndarray, lead: np.ndarray, aux: np.ndarray | None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class OnnxCorrector(PackageCorrector):
    """ONNX Runtime backend; IO binding on CUDA/TensorRT."""

    __slots__ = ("_out_name",)
    runtime_name = "onnx"

    def __init__(self, manifest: Manifest, session: Any, active_provider: str) -> None:
        super().__init__(manifest, session, active_provider)
        names = [i.name for i in session.get_inputs()]
        want = ["sst", "lead_days"] + (["aux"] if manifest.aux_inputs else [])
        if sorted(names) != sorted(want) or len(session.get_outputs()) != 1:
            raise ModelContractError(f"{manifest.model_path}: graph inputs {names} are not {want}")
        object.__setattr__(self, "_out_name", session.get_outputs()[0].name)

    @property
    def _session(self) -> Any:
        return self._backend

    @classmethod
    def load(cls, model_store: Path, model_id: str, version: str = "latest",
             providers: Providers = "auto", ort_options: OrtOptions = DEFAULT_ORT) -> OnnxCorrector:
        """Resolve, verify (sha256) and open a package (ONNX Runtime settings: ``ort_options``)."""
        manifest = load_manifest(resolve_package(Path(model_store), model_id, version))
        sess, active = create_session(manifest.model_path, providers, manifest, ort_options)
        return cls(manifest, sess, active)

    @staticmethod
    def _feed(x: np.ndarray, lead: np.ndarray, aux: np.ndarray | None) -> dict[str, np.ndarray]:
        return {"sst": x, "lead_days": lead, **({"aux": aux} if aux is not None else {})}

    def _run(self, x: np.ndarray, lead: np.ndarray, aux: np.ndarray | None) -> np.ndarray:
        if self.active_provider in (CUDA, TRT):
            return self._run_iobinding(self._feed(x, lead, aux))
        return self._backend.run([self._out_name], self._feed(x, lead, aux))[0]

    def _run_iobinding(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs copied to the device once as OrtValues, output allocated on the device, then copied back."""
        import onnxruntime as ort

        binding = self._backend.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output(self._out_name, "cuda", 0)
        self._backend.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TorchScriptCorrector(PackageCorrector):
    """TorchScript backend (``torch.jit.load``) for sites without ONNX Runtime."""

    __slots__ = ("_device",)
    runtime_name = "torchscript"

    def __init__(self, manifest: Manifest, module: Any, active_provider: str) -> None:
        super().__init__(manifest, module, active_provider)
        object.__setattr__(self, "_device", "cuda" if active_provider == TORCH_CUDA else "cpu")

    @classmethod
    def load(cls, model_store: Path, model_id: str, version: str = "latest",
             providers: Providers = "auto") -> TorchScriptCorrector:
        import torch

        if providers not in PROVIDER_CHOICES:
            raise ConfigError(f"providers must be one of {', '.join(PROVIDER_CHOICES)}, got {providers!r}")
        manifest = load_manifest(resolve_package(Path(model_store), model_id, version))
        path = manifest.torchscript_path
        if path is None:
            raise ModelContractError(f"model package {manifest.package_dir} has no TorchScript artifact "
                                     f"(schema {manifest.schema_version}); re-export it or use runtime='onnx'")
        if providers == "tensorrt":
            raise ProviderUnavailableError("providers='tensorrt' needs runtime='onnx'")
        gpu = torch.cuda.is_available()
        if providers == "cuda" and not gpu:
            raise ProviderUnavailableError("providers='cuda' requested with runtime='torchscript' but torch sees "
                                           "no CUDA device")
        device = "cuda" if gpu and providers in ("auto", "cuda") else "cpu"
        if device == "cuda":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device).eval()
        return cls(manifest, module, TORCH_CUDA if device == "cuda" else TORCH_CPU)

    def _run(self, x: np.ndarray, lead: np.ndarray, aux: np.ndarray | None) -> np.ndarray:
        import torch

        args = [torch.from_numpy(v).to(self._device) for v in (x, lead, aux) if v is not None]
        with torch.no_grad():
            out = self._backend(*args)
        return out.cpu().numpy()
