"""Training from the archive and export into the model store (gridded networks and tabular models)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.config import Settings
from bias_correction.errors import InputValidationError
from bias_correction.inputs import aux_specs
from bias_correction.io import archive
from bias_correction.pipeline.context import Context, require_mask
from bias_correction.pipeline.fill import archive_dates, training_inputs
from bias_correction.sources.hycom import run_time
from bias_correction.sources.oisst import PRELIMINARY


def training_samples(ctx: Context, start: dt.date, end: dt.date, *, lazy: bool = False) -> tuple[Any, dict[str, Any]]:
    """Samples of runs ``start``..``end`` from the archive, plus preliminary/final day counts.

    Targets are the best archived OISST (the final once due); analysis inputs declared ``as_issued``
    take the kept preliminary where one was archived (``versions["as_issued_inputs"]`` counts them).
    ``lazy``: the same samples as an index of archive files (``training.lazy_tiles``), nothing loaded.
    """
    from bias_correction.training.dataset import build_samples

    cfg = ctx.settings.training
    seq_len = cfg.seq_len
    aux, lag = training_inputs(ctx.settings)
    run_days, oisst_days = archive_dates(start, end, seq_len, ctx.settings.lead_days, lag)
    mask = require_mask(ctx)
    runs = [run_time(d) for d in run_days]
    if lazy:
        from bias_correction.training.lazy_tiles import index_archive

        return index_archive(ctx.store, ctx.grid, mask.values, runs, oisst_days, seq_len, aux_inputs=aux,
                             oisst_lag_days=cfg.oisst_lag_days)
    hycom = archive.load_hycom_runs(ctx.store, ctx.grid, runs)
    run_fields = {s.name: archive.load_hycom_runs(ctx.store, ctx.grid, runs, variable=s.variable)
                  for s in aux_specs(aux) if s.per_lead and s.archived}
    if run_fields:  # keep the runs every same-run field has
        common = hycom["run"].values
        for field in run_fields.values():
            common = np.intersect1d(common, field["run"].values)
        hycom = hycom.sel(run=common)
        run_fields = {n: f.sel(run=common) for n, f in run_fields.items()}
    oisst, versions = archive.load_oisst_days(ctx.store, ctx.grid, oisst_days)
    versions["preliminary_days"] = [str(t)[:10] for t, v in zip(oisst["time"].values, oisst.attrs["versions"], strict=True)
                                    if v == PRELIMINARY]
    issued = None  # analysis inputs as issued (the kept preliminary where archived); targets stay the final
    if any(s.as_issued and not s.per_lead for s in aux_specs(aux)):
        issued, versions["as_issued_inputs"] = archive.load_as_issued_oisst_days(ctx.store, ctx.grid, oisst_days)
    samples = build_samples(hycom, oisst, mask.to_dataarray(ctx.grid), seq_len, aux_inputs=aux,
                            oisst_lag_days=cfg.oisst_lag_days, issued_oisst=issued, **run_fields)
    return samples, versions


def training_data_info(versions: dict[str, Any], start: dt.date, end: dt.date, n_train: int, n_val: int) -> dict[str, Any]:
    """The manifest's ``training.data`` record: OISST versions of the targets, preliminary days, runs, samples,
    and (when an analysis input is as-issued) how many input days were the kept preliminary vs final-only."""
    data_info: dict[str, Any] = {"oisst_days": {k: versions[k] for k in ("final", "preliminary")},
                                 "preliminary_days": versions["preliminary_days"], "runs": [start.isoformat(), end.isoformat()],
                                 "samples": {"train": n_train, "val": n_val}}
    if "as_issued_inputs" in versions:
        counts = versions["as_issued_inputs"]
        data_info["as_issued_inputs"] = {**counts, "note": (
            "analysis inputs are the preliminary OISST as issued" if not counts["final_only"] else
            f"{counts['final_only']} analysis-input days had only the final archived (NCEI keeps ~14 preliminary "
            "days): on those the model saw finals, smoother than what operations feed it")}
    return data_info


def train_from_archive(ctx: Context, start: dt.date, end: dt.date, *, progress: bool = True) -> dict[str, Any]:
    """Train the configured model on runs ``start``..``end`` (chronological train/validation split).

    Gridded networks write a checkpoint file; the tabular models (trees, statistical baselines,
    ``training.tabular_export``) fit on the same samples and split and stage a verified package folder
    as their checkpoint, which :func:`export_checkpoint` installs into the model store.
    ``training.lazy_tiles``: networks read their tiles from the archive per batch (``training.lazy_batches``);
    no calibration block then (a ConfigError unless ``calibration_fraction`` is 0) and no flag thresholds.
    """
    cfg = ctx.settings.training
    if cfg.lazy_tiles:
        from bias_correction.training.lazy_batches import check_lazy_config

        check_lazy_config(cfg, calibrating=True)
    samples, versions = training_samples(ctx, start, end, lazy=cfg.lazy_tiles)
    try:
        return _train_samples(ctx, start, end, samples, versions, progress)
    finally:
        if cfg.lazy_tiles:
            samples.close()


def _train_samples(ctx: Context, start: dt.date, end: dt.date, samples: Any, versions: dict[str, Any],
                   progress: bool) -> dict[str, Any]:
    from bias_correction.training import calibrate
    from bias_correction.training.dataset import split_chronological
    from bias_correction.training.tabular_export import train_tabular
    from bias_correction.training.train import train_model
    from bias_correction.zoo import is_tabular

    cfg = ctx.settings.training
    mask = require_mask(ctx)
    if not is_tabular(cfg.model) and not ctx.halo.is_zero:
        # networks train on the model grid (region + halo) with the loss on the region only: the halo's
        # outer cells see the zero padding and are never published (grid.halo); per-pixel models use all cells
        samples = samples.targets_inside(*ctx.halo.slices(samples.shape))
    # the calibration block (after validation, behind the hindcast's gap): neither fitted nor early-stopped on
    gap = calibrate.calibration_gap(cfg.seq_len, max(ctx.settings.lead_days, int(samples.lead.max(initial=1))),
                                    cfg.oisst_lag_days)
    fit, cal = calibrate.split_calibration(samples, cfg.calibration_fraction, gap)
    train, val = split_chronological(fit, cfg.val_fraction, gap_days=cfg.seq_len)
    out_dir = ctx.store.url(f"training/{ctx.settings.model_id}/{start:%Y%m%d}-{end:%Y%m%d}") if ctx.store.is_local else None
    if out_dir is None:
        raise InputValidationError("training needs a local storage_root (checkpoints are written locally)")
    calibrate.clear_sidecar(Path(out_dir))
    data_info = training_data_info(versions, start, end, len(train), len(val))
    if cal is not None:
        data_info["samples"]["calibration"] = len(cal)
    if is_tabular(cfg.model):
        out = train_tabular(cfg, train, val, grid=ctx.grid, mask_hash=mask.sha256, model_id=ctx.settings.model_id,
                            out_dir=Path(out_dir), data_info=data_info)
        _calibrate_tabular(Path(out["checkpoint"]), cal, train, gap)
        return {**out, "calibration": None if cal is None else cal.period()}
    result = train_model(
        train, val, cfg, grid=ctx.grid, mask_hash=mask.sha256, progress=progress,
        data_info=data_info,
        out_dir=Path(out_dir),
    )
    if not cfg.lazy_tiles:  # lazy tiles: no sidecar (the package keeps validation residuals, no flag thresholds)
        calibrate.write_sidecar(result.checkpoint, calibrate.compute(_gridded_predictor(result.checkpoint), cal, train, gap))
    return {
        "checkpoint": str(result.checkpoint), "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds, "n_parameters": result.n_parameters,
        "samples": {"train": len(train), "val": len(val), "calibration": 0 if cal is None else len(cal)},
        "calibration": None if cal is None else cal.period(),
        "val": {"rmse_raw": result.val_rmse_raw, "rmse_model": result.val_rmse_corrected},
    }


def _gridded_predictor(checkpoint: Path) -> Any:
    """samples -> [N, H, W] degC of a gridded checkpoint, run as inference runs it (blended tiles if tile-trained)."""
    import torch

    from bias_correction.training.train import EVAL_BATCH, load_checkpoint, predict

    model, meta = load_checkpoint(checkpoint)
    tile = (int(meta["tile"]["nlat"]), int(meta["tile"]["nlon"])) if meta.get("tile") else None

    def run(s: Any) -> np.ndarray:
        out = []
        for i in range(0, len(s), EVAL_BATCH):
            aux = torch.from_numpy(np.ascontiguousarray(s.aux[i:i + EVAL_BATCH])) if s.aux is not None else \
                torch.zeros((min(EVAL_BATCH, len(s) - i), s.seq_len, 0, *s.shape))
            out.append(predict(model, torch.from_numpy(np.ascontiguousarray(s.x[i:i + EVAL_BATCH])),
                               torch.from_numpy(s.lead[i:i + EVAL_BATCH].astype(np.float32)), aux, tile).numpy())
        return np.concatenate(out) if out else np.zeros((0, *s.shape), np.float32)

    return run


def _calibrate_tabular(staged: Path, cal: Any, train: Any, gap: int) -> None:
    """Calibrate a staged tabular package (not yet installed) through the corrector the daily run uses."""
    from bias_correction.correction.tabular import TabularCorrector
    from bias_correction.training import calibrate

    corrector = TabularCorrector.load(staged, "cpu", "onnx")
    names = tuple(corrector.manifest.aux_inputs)

    def run(s: Any) -> np.ndarray:
        si = s.with_aux(names)
        return corrector.correct(si.x, si.lead, si.aux, valid_days=si.valid)

    u, c, f, arrays = calibrate.compute(run, cal, train, gap)
    from bias_correction.correction import uncertainty as unc

    unc.attach_calibration(staged, u if u is not None else corrector.manifest.raw["uncertainty"], c, f, arrays)


def export_checkpoint(settings: Settings, checkpoint: Path) -> dict[str, Any]:
    """Export a checkpoint to a model package in the model store (parity checked).

    A gridded checkpoint file becomes an ONNX/TorchScript package; a tabular checkpoint (the package
    folder ``sstbc train`` staged) is verified and installed as ``model_store/model_id/<new version>``.
    """
    from bias_correction.correction.manifest import load_manifest

    if Path(checkpoint).is_dir():
        from bias_correction.training.tabular_export import install_package

        package = install_package(Path(checkpoint), Path(settings.model_store), settings.model_id)
        manifest = load_manifest(package)
        return {"package": str(package), "version": manifest.version, "kind": manifest.kind,
                "architecture": manifest.architecture, "runtime": manifest.runtime, "parity": manifest.parity}
    from bias_correction.training.export import export_package

    package = export_package(checkpoint, Path(settings.model_store), settings.model_id)
    manifest = load_manifest(package)
    return {"package": str(package), "version": manifest.version, "parity": manifest.parity}


def train_and_export(ctx: Context, start: dt.date, end: dt.date, *, progress: bool = True) -> dict[str, Any]:
    """Train the configured model (gridded or tabular) and export it into the model store."""
    trained = train_from_archive(ctx, start, end, progress=progress)
    exported = export_checkpoint(ctx.settings, Path(trained["checkpoint"]))
    return {"training": trained, "export": exported}
