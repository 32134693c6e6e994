"""``sstbc``: the command line. Parses and validates arguments, then calls a flow or the library.

With ``--json`` exactly one JSON object goes to stdout; logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bias_correction.errors import ConfigError, SstbcError

MIN_DATE, MAX_DATE = dt.date(1981, 9, 1), dt.date(2100, 1, 1)


def parse_date(text: str) -> dt.date:
    """Strict YYYY-MM-DD within the OISST era; anything else is a clear argparse error."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date of the form YYYY-MM-DD") from None
    if len(text) != 10 or not (MIN_DATE <= day < MAX_DATE):
        raise argparse.ArgumentTypeError(f"{text!r} must be a YYYY-MM-DD date between {MIN_DATE} and {MAX_DATE}")
    return day


def _prefect_defaults() -> None:
    # Must run before prefect is imported: its settings are read at import time.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _settings(args: argparse.Namespace) -> Any:
    from bias_correction.config import load_settings

    return load_settings(args.config)


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    else:
        sys.stdout.write(human.rstrip() + "\n")


def _fmt_metrics(m: dict[str, Any] | None) -> str:
    if not m:
        return "  verification: OISST for the valid days is not available yet"
    lines = [f"  RMSE vs OISST: raw HYCOM {m['raw']['rmse']:.3f} °C -> corrected {m['corrected']['rmse']:.3f} °C "
             f"({m['improvement_percent']:+.1f} %)"]
    for row in m.get("per_lead", []):
        lines.append(f"    lead {row['lead_day']} ({row['valid_date']}): {row['rmse_raw']:.3f} -> {row['rmse_corrected']:.3f} °C")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from flows.daily import daily_correction

    out = daily_correction(settings.model_dump(mode="json"), args.date, verify=not args.no_verify)
    p = out["product"]
    human = (f"product: {p['url']} ({'written' if p['written'] else 'up to date, nothing rewritten'})\n"
             f"model: {out['model']['id']} {out['model']['version']} on {out['provider']}\n" + _fmt_metrics(out.get("metrics")))
    _emit(args, {"command": "run", "date": args.date.isoformat(), **out}, human)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline

    ctx = pipeline.make_context(settings)
    if args.date is not None:
        run_days, oisst_days = [args.date], [args.date]
    else:
        if args.end is None:
            raise ConfigError("--start needs --end")
        run_days, oisst_days = pipeline.archive_dates(args.start, args.end, settings.training.seq_len, settings.lead_days,
                                                      pipeline.training_inputs(settings)[1])
    if args.dry_run:
        plan = pipeline.plan_fetch(ctx, run_days, oisst_days)
        todo = [p for p in plan if p["state"] not in ("archived", "cached")]
        total = sum(p["bytes"] or 0 for p in todo)
        lines = [f"{p['kind']:5s} {p['date']}  {p['state']:17s} {'' if p['bytes'] is None else format(p['bytes'], ',') + ' B'}"
                 for p in plan]
        lines.append(f"{len(todo)} of {len(plan)} item(s) to download, {total:,} bytes (unknown sizes not counted)")
        _emit(args, {"command": "fetch", "dry_run": True, "items": plan, "bytes": total}, "\n".join(lines))
        return 0
    if args.date is None and not args.wait:
        from flows.daily import fill_archive

        out = fill_archive(settings.model_dump(mode="json"), args.start, args.end)
        human = (f"archive: {out['hycom_runs']} HYCOM runs ({out['hycom_written']} new), "
                 f"{out['oisst_days']} OISST days ({out['oisst_written']} new); mask {out['mask']['sha256'][:12]}")
        _emit(args, {"command": "fetch", **out}, human)
        return 0
    wait_s = args.wait_hours * 3600 if args.wait else 0.0
    done = []
    for kind, days, step in (("hycom", run_days, pipeline.archive_hycom_run), ("oisst", oisst_days, pipeline.archive_oisst_day)):
        for day in days:
            entry = pipeline.wait_until_published(
                lambda s=step, d=day: s(ctx, d), f"{kind} {day}", wait_s=wait_s, poll_s=args.poll_minutes * 60)
            done.append({"kind": kind, "date": day.isoformat(), "key": entry.key, "written": entry.written,
                         "version": entry.source.get("version")})
    human = "\n".join(f"{d['kind']:5s} {d['date']}  {'archived' if d['written'] else 'already archived'}  {d['key']}"
                       for d in done)
    _emit(args, {"command": "fetch", "items": done}, human)
    return 0


def cmd_preliminary(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline

    ctx = pipeline.make_context(settings)
    out = pipeline.refresh_preliminary(ctx) if args.refresh else pipeline.derived_from_preliminary(ctx)
    lines = [f"archived OISST days still preliminary: {', '.join(out['oisst_preliminary_days']) or 'none'}"]
    if args.refresh:
        lines.insert(0, f"upgraded to final: {', '.join(out['upgraded']) or 'none'}")
    for m in out["models"]:
        lines.append(f"model {m['model_id']} {m['version']} was trained with {len(m['preliminary_days'])} preliminary day(s)")
    _emit(args, {"command": "preliminary", **out}, "\n".join(lines))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline

    if getattr(args, "model", None):  # --model NAME overrides training.model for this run
        from bias_correction import zoo

        known = sorted(zoo.ids())
        if args.model not in known:
            raise ConfigError(f"unknown model {args.model!r}; known: {', '.join(known)}")
        follows = settings.model_id == settings.training.model  # model_id not set apart: it follows the model
        update: dict = {"training": settings.training.model_copy(update={"model": args.model})}
        if follows:
            update["model_id"] = args.model
        settings = settings.model_copy(update=update)
    if getattr(args, "resume", None) is not None:  # --resume / --no-resume overrides training.resume
        settings = settings.model_copy(update={"training": settings.training.model_copy(update={"resume": args.resume})})
    start = args.start or settings.training.start
    end = args.end or settings.training.end
    ctx = pipeline.make_context(settings)
    out = pipeline.train_from_archive(ctx, start, end, progress=not args.json)
    human = f"checkpoint: {out['checkpoint']}\n  validation RMSE: raw {out['val']['rmse_raw']:.3f} -> model {out['val']['rmse_model']:.3f} °C"
    _emit(args, {"command": "train", **out}, human)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from bias_correction.training import benchmark

    res = benchmark.run_benchmark(benchmark.config_from_args(args), Path(args.out), resume=args.resume,
                                  progress=not args.json)
    table = (Path(args.out) / "results.md").read_text()
    _emit(args, {"command": "benchmark", "out": str(args.out),
                 "rmse": {k: r["scores"]["overall"]["rmse"] for k, r in res["rows"].items()},
                 "total_seconds": res["total_seconds"]}, table)
    return 0


def cmd_hindcast(args: argparse.Namespace) -> int:
    from bias_correction.training import hindcast, hindcast_config

    res = hindcast.run_hindcast(hindcast_config.config_from_args(args), Path(args.out), progress=False)
    _emit(args, {"command": "hindcast", "out": str(args.out),
                 "rmse": {k: r["overall"]["rmse"] for k, r in res["rows"].items()},
                 "total_seconds": res["total_seconds"]}, (Path(args.out) / "results.md").read_text())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline

    out = pipeline.export_checkpoint(settings, Path(args.checkpoint))
    what = "package - fitted model" if out.get("kind") == "tabular" else "ONNX - torch"
    human = f"package: {out['package']}\n  parity max |{what}| over ocean: {out['parity']['max_abs_diff_degC']:.2e} °C"
    _emit(args, {"command": "export", **out}, human)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings(args)
    models = [m for m in (args.models or settings.model_id).split(",") if m]
    from bias_correction import backfill as backfill_lib

    if args.dry_run:
        states = backfill_lib.plan(settings, args.start, args.end, models)
        lines = [f"{s.date} {s.model_id:12s} {s.state:8s} {s.reason}"
                 + ("" if not s.bytes_to_download else f" ({s.bytes_to_download:,} B to download)") for s in states]
        todo = [s for s in states if s.state != "done"]
        total = sum(s.bytes_to_download or 0 for s in todo)
        lines.append(f"{len(todo)} of {len(states)} date(s) to process, {total:,} bytes to download")
        _emit(args, {"command": "backfill", "dry_run": True, "dates": backfill_lib.as_dicts(states), "bytes": total},
              "\n".join(lines))
        return 0
    from flows.operations import run_backfill

    out = run_backfill(settings, args.start, args.end, models)
    _emit(args, {"command": "backfill", **out},
          f"backfill {args.start}..{args.end}: {out['done']} of {out['dates']} date(s) done, {out['written']} product(s) written")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from flows.operations import verification

    out = verification(settings.model_dump(mode="json"), args.start, args.end)
    human = (f"scored {len(out['scored'])} run(s), {len(out['pending'])} pending OISST, table rows {out['rows']}"
             + "".join(f"\nplot: {p}" for p in out.get("plots", [])))
    _emit(args, {"command": "verify", **out}, human)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:  # pragma: no cover - runs until stopped
    settings = _settings(args)
    from flows.operations import serve

    serve(settings)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction.doctor import run_checks

    checks = run_checks(settings, network=not args.offline)
    width = max(len(c.name) for c in checks)
    human = "\n".join(f"{'ok  ' if c.ok else 'FAIL'} {c.name:{width}s}  {c.detail}" for c in checks)
    _emit(args, {"command": "doctor", "ok": all(c.ok for c in checks),
                 "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}, human)
    return 0 if all(c.ok for c in checks) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import demo

    out = demo(str(Path(args.workdir).resolve()))
    from bias_correction.demo import format_summary

    _emit(args, {"command": "demo", **out}, format_summary(out))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """A model package folder (card + key manifest fields) or a product .nc / sidecar .json (provenance)."""
    from bias_correction.errors import ProductError

    path = Path(args.path)
    if path.is_dir() or path.name == "manifest.json":
        from bias_correction.correction.package import CARD_FILE, load_manifest

        man = load_manifest(path)  # verifies every artifact's sha256 first
        card_path = man.package_dir / CARD_FILE
        card = card_path.read_text() if card_path.is_file() else f"(no {CARD_FILE})"
        raw = man.raw
        par = raw.get("parity") or {}
        keys = [f"package: {man.package_dir} (schema {raw.get('schema_version')}, all artifact sha256 verified)",
                f"  architecture {man.architecture}, T={man.seq_len}, grid {man.grid_id}, mask {man.mask_sha256[:16]}",
                *[f"  parity {k}: " + (v.get("skipped") or f"max |diff| {v.get('max_abs_diff_degC'):.2e} degC, "
                                                         f"RMSE diff {v.get('rmse_diff_degC'):.2e} degC")
                  for k, v in par.items() if isinstance(v, dict)],
                *[f"  {name}: sha256 {sha}" for name, sha in sorted(man.artifact_sha256.items())]]
        _emit(args, {"command": "inspect", "kind": "model", "path": str(man.package_dir), "manifest": raw},
              card.rstrip() + "\n\n" + "\n".join(keys))
        return 0
    if path.is_file():
        from bias_correction.io.provenance import format_provenance, read_provenance

        prov = read_provenance(path)
        _emit(args, {"command": "inspect", "kind": "product", "path": str(path), "provenance": prov},
              format_provenance(prov))
        return 0
    raise ProductError(f"{path}: neither a model package folder nor a product file")


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline
    from bias_correction.errors import ProductError

    out = pipeline.replay_product(pipeline.make_context(settings), args.product)
    human = (f"replayed {out['product']} with {out['model_id']} {out['model_version']} on {out['provider']} "
             f"({out['inputs_verified']} inputs sha256-verified)\n"
             f"  max |regenerated - published| over ocean: {out['max_abs_diff_degC']:.2e} degC "
             f"(tolerance {out['tolerance_degC']} degC): {'OK' if out['ok'] else 'MISMATCH'}")
    _emit(args, {"command": "replay", **out}, human)
    if not out["ok"]:
        raise ProductError(f"replay of {out['product']} differs by {out['max_abs_diff_degC']:.3g} degC "
                           f"> {out['tolerance_degC']} degC")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sstbc", description="Bias correction of HYCOM SST forecasts against NOAA OISST v2.1")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML config file (default: $SSTBC_CONFIG, else built-in defaults)")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = sub.add_parser("run", help="correct one forecast run and publish its product")
    p.add_argument("--date", type=parse_date, required=True, help="run date YYYY-MM-DD (12Z run)")
    p.add_argument("--no-verify", action="store_true", help="do not score against OISST")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("fetch", help="archive HYCOM runs and OISST days: one date (optionally waiting for it) or a period")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=parse_date, help="the HYCOM run and the OISST day of this date")
    when.add_argument("--start", type=parse_date, help="first training run of a period (with --end)")
    p.add_argument("--end", type=parse_date)
    p.add_argument("--dry-run", action="store_true", help="list what would be downloaded and its size; download nothing")
    p.add_argument("--wait", action="store_true", help="poll until published instead of failing on not-yet-published")
    p.add_argument("--wait-hours", type=float, default=6.0, help="deadline for --wait (default 6 h)")
    p.add_argument("--poll-minutes", type=float, default=10.0, help="polling interval for --wait (default 10 min)")
    common(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("preliminary", help="list what rests on preliminary OISST days; --refresh upgrades them to final")
    p.add_argument("--refresh", action="store_true")
    common(p)
    p.set_defaults(func=cmd_preliminary)

    p = sub.add_parser("train", help="train the configured model from the archive and write a checkpoint")
    p.add_argument("--start", type=parse_date, help="first training run (default: training.start)")
    p.add_argument("--end", type=parse_date, help="last training run (default: training.end)")
    p.add_argument("--model", help="model to train (default: training.model), e.g. convlstm, faconvlstm, "
                                   "lightgbm, random-forest, mean-bias")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="continue an interrupted run of the same configuration and data from its "
                        "train_state.pt (default: training.resume, on)")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("benchmark", help="train and score every model on the same twin dataset (markdown, JSON, PNG)")
    from bias_correction.training.benchmark import add_arguments as _bench_args

    _bench_args(p)
    common(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("hindcast", help="rolling-origin hindcast: fixed seasonal windows, seeds, paired CIs (twin)")
    from bias_correction.training.hindcast_config import add_arguments as _hindcast_args

    _hindcast_args(p)
    common(p)
    p.set_defaults(func=cmd_hindcast)

    p = sub.add_parser("export", help="export a checkpoint to ONNX, check parity and write a model package")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `sstbc train`")
    common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("backfill", help="correct (and verify) every run of a date range; --dry-run lists states")
    p.add_argument("--start", type=parse_date, required=True)
    p.add_argument("--end", type=parse_date, required=True)
    p.add_argument("--models", help="comma-separated model ids (default: model_id of the config)")
    p.add_argument("--dry-run", action="store_true", help="list each date's state and bytes to download; change nothing")
    common(p)
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("verify", help="score the products of a run range against OISST (table, artifacts, plots)")
    p.add_argument("--start", type=parse_date, required=True)
    p.add_argument("--end", type=parse_date, required=True)
    common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("serve", help="serve the scheduled deployments (daily correction, verification, retraining)")
    common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("doctor", help="check providers, storage, credentials and upstream reachability")
    p.add_argument("--offline", action="store_true", help="skip the upstream reachability checks")
    common(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="the whole offline demo on bundled stand-in servers and twin data")
    p.add_argument("--workdir", default="sstbc-demo", help="where the demo keeps its data, models and products")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("inspect", help="print a model package's card or a product's provenance")
    p.add_argument("path", help="model package folder (models/<id>/<version>) or product .nc / sidecar .json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("replay", help="regenerate a product from its recorded inputs and model; report the difference")
    p.add_argument("product", help="product .nc path, or its key in the storage root")
    common(p)
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) in ("fetch", "train", "backfill", "verify") and getattr(args, "start", None) \
            and getattr(args, "end", None):
        if args.end < args.start:
            parser.error(f"--end {args.end} is before --start {args.start}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _prefect_defaults()
    try:
        return int(args.func(args))
    except SstbcError as exc:
        kind = "configuration error" if isinstance(exc, ConfigError) else type(exc).__name__
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"command": args.command, "error": type(exc).__name__, "message": str(exc)}) + "\n")
        sys.stderr.write(f"sstbc: {kind}: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
