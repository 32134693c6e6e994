"""`sstbc doctor`: one line per check of what a run needs. Credentials are reported as present or
absent, never printed."""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from bias_correction.config import Settings
from bias_correction.errors import SstbcError
from bias_correction.sources.http import probe

_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PREFECT_API_KEY",
               "PREFECT_API_AUTH_STRING")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _providers(settings: Settings) -> Check:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if settings.providers == "cpu":
        return Check("onnxruntime providers", True, f"cpu requested; available: {', '.join(available)}")
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper

        from bias_correction.correction.session import create_session

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"sstbc-doctor-{uuid.uuid4().hex[:8]}.onnx"
        onnx.save(model, path)
        try:
            sess, active = create_session(path, settings.providers)
            sess.run(None, {"x": np.zeros(1, np.float32)})
        finally:
            path.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - report any failure as a failed check
        return Check("onnxruntime providers", False, f"{settings.providers} requested: {exc}")
    return Check("onnxruntime providers", True, f"{settings.providers} requested -> {active} active")


def _storage(settings: Settings) -> Check:
    from bias_correction.storage import Store

    local = "://" not in settings.storage_root
    created = local and not Path(settings.storage_root).exists()
    try:
        store = Store(settings.storage_root)
        key = f".sstbc-doctor-probe-{uuid.uuid4().hex[:12]}"  # top level: no folder is left behind
        try:
            store.write_bytes(key, b"ok")
            ok = store.read_bytes(key) == b"ok"
        finally:
            store.remove(key)
            if created:  # a root doctor made for the probe goes too (empty by now)
                with contextlib.suppress(OSError):
                    Path(settings.storage_root).rmdir()
    except Exception as exc:  # noqa: BLE001
        return Check("storage writable", False, f"{settings.storage_root}: {type(exc).__name__}: {exc}")
    return Check("storage writable", ok, f"{settings.storage_root}: write/read/delete of a probe object")


def _credentials(settings: Settings) -> Check:
    present = [k for k in _SECRET_ENV if os.environ.get(k)]
    aws_files = [p for p in (Path.home() / ".aws" / "credentials", Path.home() / ".aws" / "config") if p.exists()]
    needs_s3 = settings.storage_root.startswith("s3://")
    have_s3 = bool({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(present) or aws_files or os.environ.get("AWS_PROFILE"))
    detail = (f"present: {', '.join(present) or 'none'}; AWS config files: {len(aws_files)}"
              + ("; S3 storage root needs credentials" if needs_s3 else ""))
    return Check("credentials", (not needs_s3) or have_s3, detail)


def _model(settings: Settings) -> Check:
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import resolve_package

    try:
        manifest = load_manifest(resolve_package(Path(settings.model_store), settings.model_id, settings.model_version))
    except Exception as exc:  # noqa: BLE001
        return Check("model package", False, str(exc))
    from bias_correction.grid.halo import model_grids

    # the model grid (the region plus grid_halo_cells); a package from before the halo serves the bare region
    grid, region_grid, _ = model_grids(settings)
    if manifest.grid_id == region_grid.grid_id:
        grid = region_grid
    if manifest.grid_id != grid.grid_id:  # the model was trained for another region or grid step
        return Check("model package", False, f"{manifest.model_id} {manifest.version} serves grid {manifest.grid_id}, "
                                             f"the configured region {settings.region.name!r} needs {grid.grid_id}")
    return Check("model package", True, f"{manifest.model_id} {manifest.version}: manifest hash and artifacts verified "
                                        f"(sha256), serves grid {grid.grid_id}")


def _upstream(settings: Settings) -> list[Check]:
    out = []
    u = settings.upstream
    for name, url in (("upstream OISST (HTTPS)", u.oisst_https + "/"), ("upstream HYCOM (NCSS)", u.hycom_ncss + "/")):
        try:
            status = probe(url, settings.http)
            out.append(Check(name, 200 <= status < 300, f"{url} answered HTTP {status}"
                             + ("" if 200 <= status < 300 else " (expected 2xx)")))
        except SstbcError as exc:
            out.append(Check(name, False, str(exc)))
    return out


def _prefect(settings: Settings) -> Check:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return Check("prefect api", True, "PREFECT_API_URL unset: flows run on an ephemeral local server")
    try:
        status = probe(url.rstrip("/") + "/health", settings.http, method="GET")
    except SstbcError as exc:
        return Check("prefect api", False, str(exc))
    return Check("prefect api", status == 200, f"{url} health: HTTP {status}")


def run_checks(settings: Settings, *, network: bool = True) -> list[Check]:
    checks = [_providers(settings), _storage(settings), _credentials(settings), _model(settings), _prefect(settings)]
    if network:
        checks += _upstream(settings)
    return checks
