"""The one typed configuration of sstbc: a TOML file overlaid by ``SSTBC_*`` environment variables.

Unknown keys are rejected both in the file and in the environment, so a typo never silently
falls back to a default. Nested keys use ``__`` in the environment, e.g.
``SSTBC_UPSTREAM__OISST_HTTPS=http://127.0.0.1:8080/...`` or ``SSTBC_REGION__LAT_MIN=10``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bias_correction import region_settings, zoo
from bias_correction.errors import ConfigError
from bias_correction.guard_config import Guard  # the [guard] section (its own module: size)
from bias_correction.inputs import AUX_INPUTS, NO_RESIDUAL, RESIDUAL_BASES, anchor_input

ENV_PREFIX = "SSTBC_"
#: Environment variables with the prefix that are not configuration keys.
NON_CONFIG_ENV = {"SSTBC_CONFIG", "SSTBC_CRASH_AT", "SSTBC_PROGRESS"}
#: ``grid_halo_cells`` when none is configured (see ``Settings.grid_halo_cells``).
DEFAULT_HALO_CELLS = 8


#: Set while validating plain data (see :func:`_validate_without_env`); per thread and task.
_PLAIN_DATA: ContextVar[bool] = ContextVar("sstbc_plain_settings_data", default=False)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Section):
    """Geographic box of the product, in degrees (longitudes east, either -180..180 or 0..360)."""

    name: str = "scs"
    lat_min: float = 12.0
    lat_max: float = 16.0
    lon_min: float = 110.0
    lon_max: float = 114.0
    #: Model package of this region (its grid needs its own model); None = the top-level ``model_id``.
    model_id: str | None = None
    #: Version or alias of this region's model; None = the top-level ``model_version``.
    model_version: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Region:
        if not (-90 <= self.lat_min < self.lat_max <= 90):
            raise ValueError(f"region latitudes must satisfy -90 <= lat_min < lat_max <= 90, got {self.lat_min}, {self.lat_max}")
        if not (-180 <= self.lon_min < self.lon_max <= 360) or self.lon_max - self.lon_min > 360:
            raise ValueError(f"region longitudes must satisfy -180 <= lon_min < lon_max <= 360, got {self.lon_min}, {self.lon_max}")
        if not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"region name must be alphanumeric (with - or _), got {self.name!r}")
        if len(self.name) > 64:  # it is part of every product path and file name
            raise ValueError(f"region name must be at most 64 characters, got {len(self.name)}")
        if self.model_id is not None and not self.model_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"region {self.name!r}: model_id must be alphanumeric with - or _, got {self.model_id!r}")
        return self


class Upstream(_Section):
    """Base URL of every upstream service and which access modes to use.

    A mirror with the same path layout replaces the host (this is how tests and the demo point
    at loopback stand-ins).
    """

    oisst_https: str = "https://www.ncei.noaa.gov/data/sea-surface-temperature-optimum-interpolation/v2.1/access/avhrr"
    #: Anonymous AWS open-data bucket (us-east-1) holding the same files.
    oisst_s3: str = "s3://noaa-cdr-sea-surface-temp-optimum-interpolation-pds/data/v2.1/avhrr"
    #: S3 endpoint override (an S3-compatible mirror); None = AWS.
    oisst_s3_endpoint: str | None = None
    oisst_opendap: str = "https://www.ncei.noaa.gov/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR"
    #: OISST access modes in order: the first is primary, the others are fallbacks.
    oisst_access: tuple[Literal["https", "s3", "opendap"], ...] = ("https",)
    hycom_ncss: str = "https://ncss.hycom.org/thredds/ncss"
    hycom_opendap: str = "https://tds.hycom.org/thredds/dodsC"
    #: Root of the HYCOM file tree (``.../datasets``) for whole-file access.
    hycom_files: str = "https://data.hycom.org/datasets"
    hycom_access: Literal["ncss", "opendap", "files"] = "ncss"

    @field_validator("oisst_https", "oisst_opendap", "hycom_ncss", "hycom_opendap", "hycom_files", "oisst_s3_endpoint")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"upstream base URL must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @field_validator("oisst_s3")
    @classmethod
    def _s3(cls, v: str) -> str:
        if not v.startswith("s3://"):
            raise ValueError(f"oisst_s3 must be an s3:// URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("oisst_access")
    @classmethod
    def _modes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"oisst_access must list distinct modes, primary first, got {list(v)}")
        return v


class Http(_Section):
    """Network behaviour: explicit timeouts everywhere, bounded exponential backoff."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(2.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)


class Regrid(_Section):
    """Regridding method per source onto the product grid (weights cached by grid and method hash)."""

    oisst: Literal["bilinear", "conservative"] = "bilinear"
    hycom: Literal["bilinear", "conservative"] = "bilinear"


class Inference(_Section):
    """How the gridded correction runs: ONNX Runtime session settings (explicit, not ORT's defaults) and
    when a run streams by tiles (bounded memory: ``correction.streaming``) instead of holding the domain."""

    #: ORT intra-op threads (0 = ORT's choice: one per physical core).
    intra_op_threads: int = Field(0, ge=0)
    #: ORT inter-op threads (1: the graphs are sequential; more only adds idle threads).
    inter_op_threads: int = Field(1, ge=0)
    #: ORT's CPU memory arena. On: fastest (buffers reused between calls); its size follows the largest call.
    cpu_mem_arena: bool = True
    #: How the arena grows: "kSameAsRequested" keeps it at what the graph needs (tiles: a few MiB);
    #: "kNextPowerOfTwo" (ORT's default) rounds every extension up to a power of two.
    arena_extend_strategy: Literal["kSameAsRequested", "kNextPowerOfTwo"] = "kSameAsRequested"
    #: ORT memory pattern planning (pre-plans buffers for a fixed input shape; tiles have one shape).
    mem_pattern: bool = True
    #: Domains of more than this many cells (lat x lon) are corrected by streaming row bands of tiles from the
    #: archive and written incrementally (peak memory set by the tile and the domain width, not its area).
    stream_above_cells: int = Field(250_000, ge=1)
    #: Tiles per model call when streaming (batched over leads and tile columns). The runtime's working
    #: memory grows with it (ConvGRU, 128x128 tiles: ~15 MiB a tile), not with the domain.
    stream_batch: int = Field(16, ge=1)


class Promotion(_Section):
    """Champion and challenger (``pipeline.promotion``): when a retrained version replaces ``current``,
    and when a new upstream regime makes retraining due (``bias_correction.regime``)."""

    #: Newest archived run days held out of the challenger's training (and early stopping) and scored for
    #: both versions; the training period ends ``lead_days`` before them (targets disjoint).
    holdout_days: int = Field(30, ge=3, le=366)
    #: Fewer scoreable run days than this in the window: no decision, the challenger stays a candidate.
    min_window_days: int = Field(10, ge=2)
    #: "interval": promote when the upper bound of the paired bootstrap interval of RMSE(challenger) -
    #: RMSE(current) is below -margin_degC; "point": when the difference itself is.
    rule: Literal["interval", "point"] = "interval"
    margin_degC: float = Field(0.0, ge=0.0)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    n_boot: int = Field(1000, ge=100)
    #: Moving-block length (days); None = T - 1 + max lead + lag (the span of one sample), capped to a third
    #: of the window.
    block_days: int | None = Field(None, ge=1)
    #: Live days of a new upstream regime needed before retraining on it is due.
    regime_min_days: int = Field(60, ge=1)


class Orchestration(_Section):
    """How flows retry retryable failures (network trouble, data not yet published)."""

    task_retries: int = Field(2, ge=0, le=20)
    task_retry_delay_s: float = Field(30.0, ge=0)
    #: dask.distributed scheduler for backfills (``tcp://host:8786``); None starts a LocalCluster.
    dask_scheduler: str | None = None
    #: Worker processes of the local cluster: the bound on concurrent backfill dates.
    backfill_workers: int = Field(2, ge=1, le=64)
    #: Lost workers a backfill task may outlive (dask ``allowed-failures``: resubmitted elsewhere each time).
    #: Set on the local cluster; an external scheduler has its own setting (deploy/ sets it), checked at start.
    dask_allowed_failures: int = Field(3, ge=0, le=20)
    #: dask ``retries=`` of a backfill task whose worker-side wrapper raises (not a task error: those are
    #: Prefect states, retried by ``task_retries``).
    dask_task_retries: int = Field(1, ge=0, le=20)
    #: Cron (UTC) of the daily correction: after the HYCOM 12Z run is usually published.
    daily_cron: str = "30 9 * * *"
    verification_cron: str = "0 18 * * *"
    retraining_cron: str = "0 3 1 * *"
    #: Run days a scheduled retraining trains on: a year, the lever study's recommendation (a 120-day side
    #: lost to persistence on the development windows; 365 days cut the RMSE by 0.055 degC there).
    retraining_days: int = Field(365, ge=30)
    #: How long the scheduled daily run waits for late inputs (HYCOM run, OISST day) before the
    #: fallback order of ``pipeline.late`` (a late HYCOM run fails the run: nothing to publish).
    wait_hours: float = Field(12.0, ge=0)
    poll_minutes: float = Field(15.0, gt=0)
    #: HYCOM-only model package (no auxiliary inputs) used when an auxiliary input is late; None =
    #: straight to raw HYCOM, flagged.
    fallback_model_id: str | None = None
    #: Champion/challenger promotion of retrained versions and regime-triggered retraining.
    promotion: Promotion = Promotion()


class Training(_Section):
    """Training defaults (models.md section 3.8 / 12), shared by every gridded model."""

    model: str = zoo.DEFAULT_MODEL
    seq_len: int = Field(4, ge=1, le=16, description="T: number of daily HYCOM fields per sample")
    features: int = Field(8, ge=1)
    hidden: int = Field(16, ge=1)
    #: <= 8 epochs, patience 3: the recommended recipe of the lever study (issue 11; benchmarks/README.md)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    #: decoupled weight decay (AdamW) of the networks; 0 = plain Adam, as before
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(3, ge=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    #: Share of the samples (the latest, by valid day) held out after validation, behind a gap of
    #: T - 1 + max lead + lag days, to calibrate ``sst_uncertainty`` and give the skill guard its first
    #: evidence (``training.calibrate``). 0 = none (the uncertainty is then the validation residuals, said so).
    calibration_fraction: float = Field(0.15, ge=0, lt=0.5)
    seed: int = 0
    start: dt.date = dt.date(2021, 1, 1)
    end: dt.date = dt.date(2021, 3, 31)
    #: Auxiliary inputs per time step besides HYCOM SST, by name from ``bias_correction.inputs``
    #: (the latest OISST analysis at forecast time, HYCOM sea surface elevation, ...). None = the
    #: model's default (:func:`default_aux_inputs`).
    aux_inputs: list[str] | None = None
    #: Age of the latest OISST analysis at forecast time: day of run - this (1 = preliminary latency).
    oisst_lag_days: int = Field(1, ge=1, le=7)
    #: What the zero-initialised head corrects: "hycom" (epoch 0 = raw HYCOM), an anchor input
    #: (``inputs.RESIDUAL_BASES``: epoch 0 = persistence of the latest analysis; the network learns the
    #: change) or "none" (the ConvGRU-SA paper's direct framing: the network regresses the field itself).
    #: None = the first anchor among the auxiliary inputs, else "hycom".
    residual_base: str | None = None
    #: Random square training tiles (models.md 11.2): each training sample is cropped to
    #: tile_size x tile_size cells (the same crop for its T steps, aux and target; seeded) and validation
    #: runs blended overlapping tiles of that size over the whole domain, like inference. None = train on
    #: the whole domain. Applies to the domain-dependent (attention) models; see tile_all_models.
    tile_size: int | None = Field(None, ge=8, le=4096)
    #: Also train the purely convolutional models (ConvGRU, ConvLSTM: DOMAIN_INDEPENDENT) on tiles when
    #: tile_size is set; by default they keep the whole domain.
    tile_all_models: bool = False
    #: Read each training tile from the archive files per batch (no in-memory sample array; needs tile_size).
    lazy_tiles: bool = False
    #: FAConvLSTM Laplacian smoothness weight (models.md 7.3, lambda_s): loss += weight * mean squared
    #: neighbour difference of the last hidden state. 0 = off; only FAConvLSTM supports it.
    laplacian_weight: float = Field(0.0, ge=0.0)
    #: Continue an interrupted run from ``<out_dir>/train_state.pt`` when its fingerprint (configuration
    #: minus epochs/resume, data) matches; an execution option, not part of that fingerprint.
    resume: bool = True

    @model_validator(mode="after")
    def _check(self) -> Training:
        if self.end < self.start:
            raise ValueError(f"training end {self.end} is before start {self.start}")
        if self.aux_inputs is not None and len(set(self.aux_inputs)) != len(self.aux_inputs):
            raise ValueError(f"aux_inputs lists an input twice: {self.aux_inputs}")
        if self.residual_base not in (None, "hycom", NO_RESIDUAL) and self.residual_base not in self.resolved_aux_inputs:
            raise ValueError(f"residual_base = {self.residual_base!r} needs {self.residual_base!r} among aux_inputs")
        return self

    @field_validator("aux_inputs")
    @classmethod
    def _known_inputs(cls, v: list[str] | None) -> list[str] | None:
        unknown = [n for n in v or () if n not in AUX_INPUTS]
        if unknown:
            raise ValueError(f"unknown auxiliary input(s) {unknown}; known: {list(AUX_INPUTS)}")
        return v

    @field_validator("residual_base")
    @classmethod
    def _known_base(cls, v: str | None) -> str | None:
        if v is not None and v not in RESIDUAL_BASES:
            raise ValueError(f"residual_base must be one of {list(RESIDUAL_BASES)}, got {v!r}")
        return v

    @property
    def resolved_residual_base(self) -> str:
        if self.residual_base is not None:
            return self.residual_base
        return anchor_input(self.resolved_aux_inputs) or "hycom"

    @property
    def resolved_aux_inputs(self) -> tuple[str, ...]:
        return tuple(self.aux_inputs) if self.aux_inputs is not None else default_aux_inputs(self.model)


class ProductMetadata(_Section):
    """Who stands behind the products: ACDD/CF global attributes set by the operator, not by the code.

    The defaults are honest for an unconfigured site: an experimental product, not for navigation.
    ``origin = "auto"`` marks products made from loopback stand-ins (the twin) as synthetic.
    """

    institution: str = "unconfigured sstbc operator"
    creator_name: str = "sstbc"
    creator_type: Literal["person", "group", "institution", "position"] = "group"
    creator_email: str = "sstbc@users.noreply.github.com"
    creator_url: str = "https://github.com/sstbc/sstbc"
    publisher_name: str = "sstbc"
    publisher_type: Literal["person", "group", "institution", "position"] = "group"
    publisher_email: str = "sstbc@users.noreply.github.com"
    publisher_url: str = "https://github.com/sstbc/sstbc"
    license: str = ("Experimental forecast, not for navigation; no warranty. Derived from public-domain NOAA "
                    "OISST v2.1 and HYCOM data; no further restrictions.")
    naming_authority: str = "com.github.sstbc"
    references: str = ("Gao et al., ConvGRU and self-attention SST bias revision; "
                       "Huang et al. 2021 doi:10.1175/JCLI-D-20-0166.1")
    #: DOI of the product series (ACDD ``doi``-like ``id`` link); empty when none is registered.
    doi: str = ""
    #: Landing page or metadata record of the product series (ACDD ``metadata_link``).
    metadata_link: str = ""
    #: Public URL of the storage root (catalogue and STAC links become absolute); empty = relative keys.
    base_url: str = ""
    #: ``auto``: synthetic when every upstream base URL is a loopback address (the twin stand-ins).
    origin: Literal["auto", "real", "synthetic"] = "auto"
    #: Write quicklook PNGs (one per lead) next to each product and list them in its STAC item.
    quicklooks: bool = True
    #: Append each product to the region's transactional Zarr store (``zarr/{region}/{model_id}.icechunk``).
    zarr: bool = True
    #: Write the day's HTML report (``reports/{region}/{day}/index.html``) and the index page across days.
    report: bool = True

    def global_attrs(self, *, synthetic: bool) -> dict[str, str]:
        """The product's operator-set global attributes (empty optional ones left out)."""
        out = {k: str(v) for k, v in self.model_dump().items() if k not in ("doi", "base_url", "origin", "quicklooks", "zarr", "report") and v}
        out["creator_institution"] = self.institution
        out["publisher_institution"] = self.institution
        if self.doi:
            out["doi"] = self.doi
        if synthetic:
            out["license"] = "SYNTHETIC data from the sstbc twin (not real ocean observations or forecasts). " + out["license"]
        return out

    def is_synthetic(self, upstream: Upstream) -> bool:
        if self.origin != "auto":
            return self.origin == "synthetic"
        from urllib.parse import urlsplit

        hosts = {urlsplit(u).hostname for u in (upstream.oisst_https, upstream.hycom_ncss, upstream.hycom_opendap,
                                                upstream.hycom_files)}
        return all(h in ("127.0.0.1", "localhost", "::1") for h in hosts)


#: Models without learned inputs beyond HYCOM SST (statistical baselines), from ``bias_correction.zoo``.
SST_ONLY_MODELS = frozenset(s.id for s in zoo.MODELS if not s.default_inputs)


def default_aux_inputs(model: str) -> tuple[str, ...]:
    """Default auxiliary inputs of a model, as its ``bias_correction.zoo`` entry declares (CA-ConvLSTM's
    stream 2 is HYCOM surf_el, models.md 6.3; the other learned models see the latest OISST analysis; the
    statistical baselines none; an unknown model the latest OISST analysis)."""
    return zoo.default_inputs(model)


class Settings(BaseSettings):
    """Everything a run needs. Load with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    region: Region = Region()
    #: Every region the service covers (``[[regions]]`` tables, unique names). A lone ``[region]`` table is the
    #: one-element list; ``region`` is the first region, or the one :meth:`for_region` selected.
    regions: list[Region] = Field(default_factory=list)
    #: Where the raw-file cache (``raw/...``) lives; None = ``storage_root``. :meth:`for_region` points it at
    #: the shared root, so regions whose requests overlap (the same URL) share one cached file.
    raw_cache_root: str | None = None
    grid_step: float = Field(0.08, gt=0, le=5)
    #: Cells of real data archived and fed to the model around the region on every side (``grid.halo``), so
    #: the network's zero padding never reaches a published cell; products are cropped to the region. Must be
    #: at least the package's ``halo_cells`` (its receptive field, measured at export). 0 = no halo.
    #: Default 8 (0.64 deg): a ConvGRU/ConvLSTM over T = 4 days reaches T + 1 = 5 cells; ConvGRU-SA's attention
    #: reaches the whole domain, weakly (the demo model: 0.024 degC at 8 cells; ``context.EDGE_WARN_DEGC``).
    grid_halo_cells: int = Field(DEFAULT_HALO_CELLS, ge=0, le=256)
    #: Local directory or ``s3://bucket/prefix``: raw cache, archive, masks and products live here.
    storage_root: str = "sstbc-data"
    #: Model store: one folder per model id and version (manifest, card, artifacts).
    model_store: str = "models"
    #: Model package id; defaults to ``training.model``, so one value selects what trains and what runs.
    model_id: str = zoo.DEFAULT_MODEL
    #: Version the daily run uses: an alias ("current": promoted, ``correction.aliases``; "previous"), "latest"
    #: (the newest exported: unscored, not for operations) or an explicit version.
    model_version: str = "current"
    #: Execution providers: ``auto`` takes CUDA when it is active, else CPU; ``cuda``/``tensorrt`` fail if not active.
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    #: Inference runtime: ONNX Runtime, or TorchScript (torch.jit) for sites without ONNX Runtime.
    runtime: Literal["onnx", "torchscript"] = "onnx"
    #: Extra fsspec options of an s3:// storage_root (endpoint_url, key, secret, ...); not part of the fingerprint.
    storage_options: dict[str, Any] = Field(default_factory=dict)
    #: When the publication gate fails: "fail" (publish nothing) or "raw" (publish raw HYCOM, flagged).
    publication_fallback: Literal["fail", "raw"] = "fail"
    #: Forecast lead days corrected per run (valid days run+1 .. run+lead_days).
    lead_days: int = Field(7, ge=1, le=7)
    upstream: Upstream = Upstream()
    http: Http = Http()
    regrid: Regrid = Regrid()
    #: ONNX Runtime session settings and the streaming threshold of the gridded correction.
    inference: Inference = Inference()
    orchestration: Orchestration = Orchestration()
    training: Training = Training()
    #: Per-lead skill guard against persistence and raw HYCOM (``pipeline.guard``).
    guard: Guard = Guard()
    #: Operator-set product metadata (institution, creator, publisher, license, ...).
    product: ProductMetadata = ProductMetadata()

    @model_validator(mode="before")
    @classmethod
    def _default_model_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("model_id") is None:
            tr = data.get("training") or {}
            model = tr.get("model") if isinstance(tr, dict) else getattr(tr, "model", None)
            data = {**data, "model_id": model or zoo.DEFAULT_MODEL}
        return data

    @model_validator(mode="before")
    @classmethod
    def _region_list(cls, data: Any) -> Any:
        return region_settings.normalise(data, Region)

    @model_validator(mode="after")
    def _check_regions(self) -> Settings:
        region_settings.check(self.regions, self.region)
        return self

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    def for_region(self, name: str | None = None) -> Settings:
        """The settings of one region: ``region`` is it, ``regions`` only it, its own model id/version.

        With several regions configured each region's archive, products, catalogue, ledgers and scores live
        under ``storage_root/<name>/`` and its models under ``model_store/<name>/`` (own versions and aliases),
        while the raw-file cache stays shared at ``storage_root/raw/``. A single-region config keeps every path
        as it was, so existing stores are read unchanged. ``None``: the only region (ConfigError if several).
        """
        return self.model_copy(update=region_settings.update_for(self, name))

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, v: str) -> str:
        if not v.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"model_id must be alphanumeric with - or _, got {v!r}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file (passed as init kwargs); no dotenv or secret dirs. Plain data
        # that already folds the environment in (settings passed between tasks) takes init kwargs only.
        if _PLAIN_DATA.get():
            return (init_settings,)
        return (env_settings, init_settings)

    def fingerprint(self) -> str:
        """Stable hash of the configuration, recorded in products."""
        data = self.model_dump(mode="json", exclude={"storage_options", "regions", "raw_cache_root"})
        # The other regions and where the shared raw cache lives do not change this region's products;
        # unset per-region model overrides leave the fingerprints of single-region configs as they were.
        data["region"] = {k: v for k, v in data["region"].items() if v is not None}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _known_env_keys(model: type[BaseModel], prefix: str) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}{name.upper()}"
        keys.add(key)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _known_env_keys(ann, key + "__")
    return keys


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from an optional TOML file, ``SSTBC_*`` variables and explicit overrides.

    Precedence: overrides > environment > file > defaults. ``SSTBC_CONFIG`` names the file
    when ``path`` is None.
    """
    path = path or os.environ.get("SSTBC_CONFIG")
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {p} is a directory, expected a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"config file {p} cannot be read ({exc.strerror or exc}), expected a readable TOML file") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}), expected a UTF-8 TOML file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    known = _known_env_keys(Settings, ENV_PREFIX) | NON_CONFIG_ENV
    unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(f"unknown configuration variable(s) in the environment: {', '.join(unknown)}")
    try:
        base = Settings(**data)  # file + environment
        if not overrides:
            return base
        return _validate_without_env(_deep_merge(base.model_dump(), overrides))
    except ValidationError as exc:
        src = f"config file {path}" if path else "configuration"
        raise ConfigError(f"invalid {src}: {exc}") from None


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Rebuild settings passed between processes/tasks as plain data, exactly as given.

    Empty data (a deployment declared without settings) means: defaults + ``SSTBC_CONFIG`` file +
    ``SSTBC_*`` environment of the process that runs the flow.
    """
    if not data:
        return load_settings()
    try:
        return _validate_without_env(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def _validate_without_env(data: dict[str, Any]) -> Settings:
    """Validate ``data`` as-is: the environment is already folded into it, so overrides win.

    A context variable (local to this thread/task, unlike ``os.environ``) tells
    :meth:`Settings.settings_customise_sources` to take the given data only: the process environment
    is neither read nor touched, so concurrent ``load_settings()`` calls in other threads see it whole.
    """
    token = _PLAIN_DATA.set(True)
    try:
        return Settings(**data)
    finally:
        _PLAIN_DATA.reset(token)
