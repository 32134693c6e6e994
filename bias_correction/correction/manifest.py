"""The model package manifest (``manifest.json``, schema 2), typed once for writers and readers.

Both exporters (``training.export``: gridded ONNX/TorchScript packages; ``training.tabular_export``:
trees and baselines) build a :class:`Manifest` and write it with :func:`write_package_files`; the
runtime reads it with :func:`load_manifest` (here) or ``correction.tabular.load_tabular_manifest``.
The JSON on disk is what it always was: fields a package does not have are not written
(``exclude_unset``), unknown fields are kept (``extra="allow"``), so older packages still load.

Integrity first: the manifest's own hash (``manifest_sha256``, see :func:`manifest_digest`) and then
the sha256 and size of every listed artifact are checked before any other field is trusted, so a
corrupted, half-copied or hand-edited package fails loudly and by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator

from bias_correction import zoo
from bias_correction.errors import ModelContractError
from bias_correction.grid.grids import RegularGrid
from bias_correction.hashing import sha256_file

MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
#: Gridded artifacts.
MODEL_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts"
#: Tabular artifacts: a tree ensemble as ONNX, LightGBM's own text model, a baseline's parameters.
ONNX_FILE = MODEL_FILE
BOOSTER_FILE = "lightgbm_booster.txt"
PARAMS_FILE = "params.npz"
#: Package kinds (``kind``; absent = gridded).
GRIDDED = "gridded"
TABULAR = "tabular"
#: Schema 1: ONNX only. Schema 2 adds the TorchScript artifact, input variables, tile, data versions,
#: per-lead residual statistics (uncertainty) and CPU/CUDA/TorchScript parity figures.
SCHEMA_VERSION = 2
CURRENT_SCHEMA = SCHEMA_VERSION
SUPPORTED_SCHEMAS = (1, 2)
#: Fields a schema-2 manifest must have.
SCHEMA2_FIELDS = ("input_variables", "tile", "training", "validation", "parity", "code_version", "artifacts")
#: Fields a tabular manifest must have besides the schema-2 ones.
TABULAR_FIELDS = ("kind", "model_file", "runtime", "architecture", "seq_len", "grid", "mask_sha256", "lead_days",
                  "aux_inputs", "oisst_lag_days", "normalisation")


def utc_version(now: dt.datetime | None = None) -> str:
    """Sortable UTC version string, e.g. ``20210501T120000Z``."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def utc_stamp() -> str:
    """Now, UTC, as written in ``created``/``installed.at``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Open(BaseModel):
    """Typed fields plus whatever else the file holds (kept and written back)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Grid(_Open):
    grid_id: str
    nlat: int
    nlon: int
    lat0: float | None = None
    lon0: float | None = None
    step: float | None = None

    def regular(self, where: str = "manifest") -> RegularGrid:
        """The :class:`RegularGrid` (its grid id must match the parameters)."""
        if self.lat0 is None or self.lon0 is None or self.step is None:
            raise ModelContractError(f"{where}: grid needs lat0, lon0, step, nlat, nlon")
        g = RegularGrid(lat0=self.lat0, lon0=self.lon0, step=self.step, nlat=self.nlat, nlon=self.nlon)
        if g.grid_id != self.grid_id:
            raise ModelContractError(f"{where}: grid parameters give grid id {g.grid_id}, the manifest says "
                                     f"{self.grid_id}")
        return g


class Tile(_Open):
    nlat: int | None = None
    nlon: int | None = None
    domain_dependent: bool | None = None
    dynamic_hw: bool | None = None
    note: str | None = None


class Normalisation(_Open):
    vmin: float
    vmax: float
    units: str = "degC"
    method: str | None = None
    note: str | None = None
    aux: dict[str, dict[str, float]] | None = None


class Artifact(_Open):
    sha256: str
    bytes: int | None = None


class ResidualStat(_Open):
    rmse: float
    bias: float | None = None
    n: int | None = None
    source: str | None = None


class TrainingInfo(_Open):
    period_start: str | None = None
    period_end: str | None = None
    validation_period: Any = None
    samples: dict[str, int] | None = None
    rows: int | None = None
    data: dict[str, Any] | None = None
    data_versions: dict[str, Any] | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    correction_envelope_degC: float | None = None
    hyperparameters: dict[str, Any] | None = None
    n_parameters: int | None = None


class Validation(_Open):
    rmse_raw: float | None = None
    rmse_corrected: float | None = None
    mae_raw: float | None = None
    mae_corrected: float | None = None
    bias_corrected: float | None = None
    improvement_pct: float | None = None
    n_samples: int | None = None
    n_cells: int | None = None
    residual_per_lead: dict[str, ResidualStat] | None = None
    period: list[str] | None = None


class Uncertainty(_Open):
    """How ``sst_uncertainty`` is made. Schema-2 packages before calibration carry only ``method`` and
    ``per_lead_rmse_degC`` (validation residuals); calibrated ones add the rest (``correction.uncertainty``)."""

    method: str
    per_lead_rmse_degC: dict[str, float]
    #: 68 % half-width scale per lead, K (the per-lead value of ``sst_uncertainty``).
    per_lead_sigma_degC: dict[str, float] | None = None
    #: 95 % half-width / 68 % half-width per lead (1.96 for a Gaussian).
    per_lead_factor_95: dict[str, float] | None = None
    nominal_coverages: list[float] | None = None
    #: Package artifact holding the per-pixel 68 % half-widths [lead, lat, lon] (K).
    per_pixel_file: str | None = None
    shrinkage_samples: float | None = None
    #: Per lead 68/95 % quantiles of |error| of persistence and raw HYCOM (what a guarded lead carries).
    references: dict[str, dict[str, dict[str, float]]] | None = None
    #: Coverage of the intervals on the calibration period itself (cross-fitted).
    calibration_coverage: dict[str, dict[str, float]] | None = None


class Calibration(_Open):
    """The calibration block: after validation, separated from it (and training) by ``gap_days``."""

    period: list[str]
    samples: int
    gap_days: int
    #: Per (run day, lead) squared-error sums and cell counts of the model, raw HYCOM and persistence:
    #: the skill guard's evidence until enough live verification exists.
    daily: dict[str, Any] | None = None


class Flags(_Open):
    """Thresholds of ``quality_flag`` large_correction: a percentile of |correction| on the training samples."""

    large_correction_percentile: float
    large_correction_degC: dict[str, float]
    source: str | None = None


class Manifest(_Open):
    """A package manifest. Load verified with :func:`load_manifest`; build with the constructor."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), frozen=True)

    schema_version: int
    kind: Literal["gridded", "tabular"] = GRIDDED
    model_id: str
    version: str
    architecture: str
    arch_kwargs: dict[str, Any] | None = None
    runtime: str | None = None
    model_file: str | None = None
    seq_len: int
    framing: str | None = None
    features: list[str] | None = None
    #: Graph/call signature (name, units, shape per input): descriptive, free-form.
    inputs: list[dict[str, Any]] | None = None
    aux_inputs: tuple[str, ...] = ()
    oisst_lag_days: int = 1
    outputs: list[dict[str, Any]] | None = None
    input_variables: list[dict[str, Any]] | None = None
    lead_days: tuple[int, ...]
    grid: Grid
    tile: Tile | None = None
    #: Receptive-field half-width (cells): how far the network's zero padding reaches into its output
    #: (``training.receptive_field``, measured at export). The run needs at least this much real data beyond
    #: every product cell (``grid_halo_cells``). Absent (packages before the halo, tabular ones) = 0.
    halo_cells: int = 0
    #: How ``halo_cells`` was measured (method, support, tolerance): free-form.
    receptive_field: dict[str, Any] | None = None
    mask_sha256: str
    normalisation: Normalisation
    training: TrainingInfo | None = None
    #: Upstream HYCOM regimes of the training period (``bias_correction.regime``), written at export.
    regimes: list[str] | None = None
    validation: Validation | None = None
    uncertainty: Uncertainty | None = None
    calibration: Calibration | None = None
    flags: Flags | None = None
    #: Converter details of a tabular artifact (rejected runtimes, ...): free-form.
    export: dict[str, Any] | None = None
    #: Parity figures: their layout differs per kind (CPU/CUDA/TorchScript blocks or one gate): free-form.
    parity: dict[str, Any] = {}
    code_version: dict[str, Any] | None = None
    torch_version: str | None = None
    onnx_opset: int | None = None
    artifacts: dict[str, Artifact]
    created: str | None = None
    export_seconds: float | None = None
    installed: dict[str, Any] | None = None
    #: sha256 of every other field (:func:`manifest_digest`); written by :meth:`write`, checked on load.
    manifest_sha256: str | None = None

    _package_dir: Path = PrivateAttr(default=Path("."))

    @field_validator("aux_inputs", mode="before")
    @classmethod
    def _no_aux(cls, v: Any) -> Any:
        return () if v is None else v

    @field_validator("oisst_lag_days", mode="before")
    @classmethod
    def _lag(cls, v: Any) -> Any:
        return 1 if not v else v

    # ------------------------------------------------------------------ derived views
    @property
    def package_dir(self) -> Path:
        return self._package_dir

    @property
    def raw(self) -> dict[str, Any]:
        """The manifest as JSON data (what ``manifest.json`` holds)."""
        return self.to_json_data()

    @property
    def is_tabular(self) -> bool:
        return self.kind == TABULAR

    @property
    def vmin(self) -> float:
        return self.normalisation.vmin

    @property
    def vmax(self) -> float:
        return self.normalisation.vmax

    @property
    def grid_id(self) -> str:
        return self.grid.grid_id

    @property
    def shape(self) -> tuple[int, int]:
        return (self.grid.nlat, self.grid.nlon)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(nlat, nlon) of the exported graph: the training tile (the grid unless trained on tiles)."""
        if self.tile is not None and self.tile.nlat is not None and self.tile.nlon is not None:
            return (self.tile.nlat, self.tile.nlon)
        return self.shape

    @property
    def model_path(self) -> Path:
        return self._package_dir / (self.model_file or MODEL_FILE)

    @property
    def torchscript_path(self) -> Path | None:
        """The TorchScript artifact, if the package has one (schema 2)."""
        return self._package_dir / TORCHSCRIPT_FILE if TORCHSCRIPT_FILE in self.artifacts else None

    @property
    def artifact_sha256(self) -> dict[str, str]:
        return {name: a.sha256 for name, a in self.artifacts.items()}

    @property
    def domain_dependent(self) -> bool:
        """True when outputs depend on the whole domain (attention): larger domains must be tiled."""
        if self.tile is not None and self.tile.domain_dependent is not None:
            return self.tile.domain_dependent
        return zoo.domain_dependent(self.architecture)

    @property
    def dynamic_hw(self) -> bool:
        """True when the exported graph accepts any H and W (else exactly the tile)."""
        if self.tile is not None and self.tile.dynamic_hw is not None:
            return self.tile.dynamic_hw
        return bool(self.parity.get("dynamic_hw", False))

    @property
    def residual_rmse_per_lead(self) -> dict[int, float]:
        """Calibrated validation RMS residual (corrected - OISST) per lead day, degC (may be empty)."""
        per = (self.validation.residual_per_lead if self.validation is not None else None) or {}
        return {int(k): float(v.rmse) for k, v in per.items()}

    @property
    def correction_envelope_degC(self) -> float | None:
        return self.training.correction_envelope_degC if self.training is not None else None

    @property
    def data_versions(self) -> dict[str, Any] | None:
        return self.training.data_versions if self.training is not None else None

    # ------------------------------------------------------------------ writing
    def to_json_data(self) -> dict[str, Any]:
        """The JSON object (fields this package does not have are left out, NaN stays NaN)."""
        return json.loads(json.dumps(self.model_dump(exclude_unset=True)))

    def write(self, folder: Path, card: str | None = None) -> Path:
        """``folder/manifest.json`` (and ``MODEL_CARD.md`` when ``card`` is given); returns the manifest path."""
        folder = Path(folder)
        write_manifest_json(folder, self.model_dump(exclude_unset=True))
        if card is not None:
            (folder / CARD_FILE).write_text(card)
        return folder / MANIFEST_FILE

    def at(self, package_dir: Path) -> Manifest:
        """This manifest bound to ``package_dir`` (where its artifacts are)."""
        self._package_dir = Path(package_dir)
        return self


#: The manifest field holding the manifest's own hash.
MANIFEST_HASH_FIELD = "manifest_sha256"


def manifest_digest(raw: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON (sorted keys, no whitespace), its own hash field left out.

    Why embedded and canonical: the hash travels inside ``manifest.json`` (no second file for a copy
    or an install to forget), survives re-indentation, and any changed value -- e.g. ``oisst_lag_days``
    1 -> 3, which shifts every input by two days -- no longer matches. It detects edits and corruption,
    not a deliberate forger (who could recompute it): packages are trusted by where they are installed.
    """
    body = {k: v for k, v in raw.items() if k != MANIFEST_HASH_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest_json(folder: Path, data: dict[str, Any]) -> Path:
    """Write ``folder/manifest.json`` from JSON data, sealed with its ``manifest_sha256``: the one writer
    (exporters through :meth:`Manifest.write`; an operator who edits a manifest on purpose re-seals with it)."""
    raw = json.loads(json.dumps(data))  # the exact JSON types the reader will see
    raw[MANIFEST_HASH_FIELD] = manifest_digest(raw)
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(raw, indent=2) + "\n")
    return path


def verify_manifest_hash(mpath: Path, raw: dict[str, Any]) -> None:
    """The manifest's recorded ``manifest_sha256`` matches its content (else ModelContractError)."""
    recorded = raw.get(MANIFEST_HASH_FIELD)
    if not recorded:
        raise ModelContractError(f"{mpath} has no {MANIFEST_HASH_FIELD}: the manifest is not covered by a hash; "
                                 "re-export the package (or re-seal it with correction.manifest.write_manifest_json)")
    digest = manifest_digest(raw)
    if digest != recorded:
        raise ModelContractError(f"{mpath}: content sha256 {digest} does not match its {MANIFEST_HASH_FIELD} "
                                 f"{recorded}; the manifest was edited or corrupted after export (re-export it)")


def artifact_entry(path: Path) -> dict[str, Any]:
    """The ``artifacts`` entry of one file: sha256 and size."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def read_manifest_json(path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(manifest path, package folder, parsed JSON object) of ``path`` (package folder or the file)."""
    path = Path(path)
    mpath = path / MANIFEST_FILE if path.is_dir() else path
    pkg = mpath.parent
    try:
        raw = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ModelContractError(f"model package {pkg} has no {MANIFEST_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelContractError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelContractError(f"{mpath} must hold a JSON object")
    verify_manifest_hash(mpath, raw)
    return mpath, pkg, raw


def package_kind(raw: dict[str, Any], where: Path | str) -> str:
    """"gridded" or "tabular" as a manifest's JSON declares (no ``kind`` = gridded)."""
    kind = raw.get("kind", GRIDDED)
    if kind not in (GRIDDED, TABULAR):
        raise ModelContractError(f"{where}: unknown package kind {kind!r} (expected {GRIDDED!r} or {TABULAR!r})")
    return str(kind)


def kind_of(package_dir: Path) -> str:
    """"tabular" or "gridded" as the package's manifest declares (no ``kind`` = gridded).

    Only a routing hint: an unreadable manifest answers "gridded" and the gridded loader then reports
    it; a tabular package is verified in full by ``correction.tabular.load_tabular_manifest``.
    """
    try:
        mpath, _, raw = read_manifest_json(Path(package_dir))
    except (ModelContractError, OSError):
        return GRIDDED
    return package_kind(raw, mpath)


def verify_artifacts(pkg: Path, mpath: Path, artifacts: Any, required: str | None = None) -> None:
    """Every listed artifact present, inside the package, with the recorded size and sha256."""
    if not isinstance(artifacts, dict) or not artifacts or (required is not None and required not in artifacts):
        raise ModelContractError(f"{mpath} lists no artifacts (expected at least {required or 'one'})")
    for name, info in artifacts.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelContractError(f"{mpath}: artifact name {name!r} escapes the package folder")
        if not isinstance(info, dict) or "sha256" not in info:
            raise ModelContractError(f"{mpath}: artifact {name} has no sha256")
        fpath = pkg / name
        if not fpath.is_file():
            raise ModelContractError(f"model package {pkg}: artifact {name} is missing")
        size = fpath.stat().st_size
        if "bytes" in info and size != int(info["bytes"]):
            raise ModelContractError(f"model package {pkg}: artifact {name} has {size} bytes, "
                                     f"manifest says {info['bytes']}")
        digest = sha256_file(fpath)
        if digest != info["sha256"]:
            raise ModelContractError(f"model package {pkg}: artifact {name} sha256 {digest} does not match "
                                     f"the manifest ({info['sha256']}); the file is corrupt or was changed")


def manifest_from_raw(pkg: Path, mpath: Path, raw: dict[str, Any]) -> Manifest:
    """The typed view of a verified manifest; a missing or malformed field names the file."""
    try:
        return Manifest.model_validate(raw).at(pkg)
    except ValidationError as exc:
        raise ModelContractError(f"{mpath} is missing or has an invalid field: {exc}") from None


def load_manifest(path: Path) -> Manifest:
    """Read ``manifest.json`` (``path`` = package folder or the file) after verifying every artefact."""
    mpath, pkg, raw = read_manifest_json(path)
    gridded = raw.get("kind", GRIDDED) == GRIDDED  # tabular packages may carry npz or native boosters
    verify_artifacts(pkg, mpath, raw.get("artifacts"), MODEL_FILE if gridded else None)
    if raw.get("schema_version") not in SUPPORTED_SCHEMAS:
        raise ModelContractError(f"{mpath}: schema_version {raw.get('schema_version')!r} is not supported "
                                 f"(expected one of {list(SUPPORTED_SCHEMAS)})")
    if raw["schema_version"] >= 2:
        missing = [k for k in SCHEMA2_FIELDS if k not in raw]
        if missing:
            raise ModelContractError(f"{mpath}: schema 2 manifest lacks {', '.join(missing)}")
    return manifest_from_raw(pkg, mpath, raw)


def grid_from_manifest(grid: Grid | dict[str, Any], where: str = "manifest") -> RegularGrid:
    """The :class:`RegularGrid` of a manifest's grid (its grid_id must match the parameters)."""
    if isinstance(grid, Grid):
        return grid.regular(where)
    try:
        g = RegularGrid(lat0=float(grid["lat0"]), lon0=float(grid["lon0"]), step=float(grid["step"]),
                        nlat=int(grid["nlat"]), nlon=int(grid["nlon"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"{where}: grid needs lat0, lon0, step, nlat, nlon: {exc!r}") from None
    if "grid_id" in grid and g.grid_id != grid["grid_id"]:
        raise ModelContractError(f"{where}: grid parameters give grid id {g.grid_id}, the manifest says "
                                 f"{grid['grid_id']}")
    return g
