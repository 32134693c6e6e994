"""``sstbc``: the command line. Parses and validates arguments, then calls a flow or the library.

With ``--json`` exactly one JSON object goes to stdout; logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from bias_correction.errors import ConfigError, SstbcError

MIN_DATE = dt.date(1981, 9, 1)
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
#: Subcommands that run Prefect flows: their Prefect output goes to a log file unless -v.
FLOW_COMMANDS = frozenset({"run", "fetch", "backfill", "verify", "demo", "serve"})


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so that ``--json`` still gets its one JSON object."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _UsageError(self, message)


def parse_date(text: str) -> dt.date:
    """Strict YYYY-MM-DD from the OISST era up to today (UTC): upstream has nothing later, so a date
    years ahead is refused at once instead of being retried as "not yet published"."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date of the form YYYY-MM-DD") from None
    today = dt.datetime.now(dt.timezone.utc).date()
    if len(text) != 10 or not (MIN_DATE <= day <= today):
        raise argparse.ArgumentTypeError(f"{text!r} must be a YYYY-MM-DD date between {MIN_DATE} and today "
                                         f"({today} UTC): upstream publishes nothing later")
    return day


def _prefect_defaults() -> None:
    # Must run before prefect is imported: its settings are read at import time.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _settings(args: argparse.Namespace) -> Any:
    from flows.cli_regions import settings_for  # the selected region's settings (--region)

    return settings_for(args)


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
                 f"{out['oisst_days']} OISST days ({out['oisst_written']} new); mask {out['mask']['sha256'][:12]}"
                 + "".join(f"\n  FAILED {f['kind']} {f['date']}: {f['error']}: {f['message']}" for f in out["failed"]))
        _emit(args, {"command": "fetch", **out}, human)
        return EXIT_PARTIAL if out["failed"] else 0
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

    out = hindcast_config.output_dir(args)
    res = hindcast.run_hindcast(hindcast_config.config_from_args(args), out, progress=False)
    _emit(args, {"command": "hindcast", "out": str(out),
                 "rmse": {k: r["overall"]["rmse"] for k, r in res["rows"].items()},
                 "total_seconds": res["total_seconds"]}, (out / "results.md").read_text())
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
        return EXIT_PARTIAL if any(s.state == "failed" for s in states) else 0
    from flows.operations import run_backfill

    out = run_backfill(settings, args.start, args.end, models)
    _emit(args, {"command": "backfill", **out},
          f"backfill {args.start}..{args.end}: {out['done']} of {out['dates']} date(s) done, {out['written']} product(s) written"
          + "".join(f"\n  FAILED {f['date']} {f['model_id']}: {f['message']}" for f in out["failed"]))
    return EXIT_PARTIAL if out["failed"] else 0


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from flows.operations import verification

    out = verification(settings.model_dump(mode="json"), args.start, args.end)
    failed = out.get("failed", [])
    human = (f"scored {len(out['scored'])} run(s), {len(out['pending'])} pending OISST, {len(failed)} failed, "
             f"table rows {out['rows']}" + "".join(f"\nplot: {p}" for p in out.get("plots", []))
             + "".join(f"\n  FAILED {f['date']}: {f['error']}: {f['message']}" for f in failed))
    _emit(args, {"command": "verify", **out}, human)
    return EXIT_PARTIAL if failed else 0


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

    out = demo(str(Path(args.workdir).resolve()), twin_seed=args.twin_seed)
    from bias_correction.demo import format_summary

    _emit(args, {"command": "demo", **out}, format_summary(out))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """A model package folder (card + key manifest fields) or a product .nc / sidecar .json (provenance)."""
    from bias_correction.errors import ProductError

    path = Path(args.path)
    if path.is_dir() or path.name == "manifest.json":
        from bias_correction.correction.manifest import CARD_FILE, load_manifest

        man = load_manifest(path)  # verifies every artifact's sha256 first
        card_path = man.package_dir / CARD_FILE
        card = card_path.read_text() if card_path.is_file() else f"(no {CARD_FILE})"
        raw = man.raw
        par = raw.get("parity") or {}
        keys = [f"package: {man.package_dir} (schema {raw.get('schema_version')}, manifest hash and all artifact sha256 verified)",
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

        if path.suffix == ".json":  # a sidecar must be one JSON object (an array or a number is not one)
            try:
                top = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProductError(f"{path}: not a provenance sidecar, expected a JSON object: {exc}") from None
            if not isinstance(top, dict):
                raise ProductError(f"{path}: not a provenance sidecar, expected a JSON object, found a JSON "
                                   f"{type(top).__name__}")

        prov = read_provenance(path)
        _emit(args, {"command": "inspect", "kind": "product", "path": str(path), "provenance": prov},
              format_provenance(prov))
        return 0
    raise ProductError(f"{path}: neither a model package folder nor a product file")


def cmd_products(args: argparse.Namespace) -> int:
    """List the current products of a period (per-day indexes) and the latest pointer."""
    from bias_correction import catalog

    s = _settings(args)
    root, region = s.storage_root, args.region or s.region.name
    opts = s.storage_options
    try:
        newest = catalog.latest(root, region, model_id=args.model, storage_options=opts)
    except SstbcError:
        newest = None
    if args.latest:
        if newest is None:
            raise SstbcError(f"no product of region {region} is published under {root} (no latest.json)")
        _emit(args, {"command": "products", "latest": newest},
              f"{newest['run']} {newest['model_id']} {newest['product_version']} {newest['href']}"
              + (" (FALLBACK: raw HYCOM)" if newest["fallback"] else ""))
        return 0
    refs = catalog.list_products(root, region, start=args.start, end=args.end, model_id=args.model,
                                 storage_options=opts, base_url=s.product.base_url)
    lines = [f"{r.run} {r.model_id} {r.product_version} {r.href}" + (" (FALLBACK: raw HYCOM)" if r.fallback else "")
             for r in refs] or [f"no {region} product in {args.start or '...'}..{args.end or '...'}"]
    _emit(args, {"command": "products", "region": region, "products": [r.to_dict() for r in refs], "latest": newest},
          "\n".join(lines))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Quicklook PNGs (per lead: corrected SST, correction, uncertainty) of a product file or of a run day."""
    from bias_correction.io import quicklook

    if (args.product is None) == (args.date is None):
        raise ConfigError("sstbc plot: give either a PRODUCT file or --date YYYY-MM-DD")
    if args.product is not None:
        paths = [str(p) for p in quicklook.plot_file(args.product, args.out)]
    else:
        from bias_correction import catalog
        from bias_correction.errors import ProductError
        from bias_correction.io.product import as_single_run
        from bias_correction.storage import Store

        s = _settings(args)
        store = Store(s.storage_root, s.storage_options)
        refs = catalog.list_products(store, s.region.name, start=args.date, end=args.date, model_id=s.model_id)
        if not refs:
            raise ProductError(f"no published {s.region.name} product of model {s.model_id} for the run of {args.date}")
        ds = as_single_run(catalog.open_products(store, s.region.name, start=args.date, end=args.date,
                                                 model_id=s.model_id).transpose("lead_day", ...))
        if args.out:
            paths = [str(p) for p in quicklook.write_pngs(ds, Path(args.out), Path(refs[0].key).stem)]
        else:
            paths = [store.url(a["key"]) for a in quicklook.write_quicklooks(store, refs[0].key, ds).values()]
    _emit(args, {"command": "plot", "files": paths}, "\n".join(paths))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from bias_correction import pipeline
    from bias_correction.errors import ProductError

    out = pipeline.replay_product(pipeline.make_context(settings), args.product)
    human = (f"replayed {out['product']} with {out['model_id']} {out['model_version']} on {out['provider']} "
             f"({out['inputs_verified']} inputs sha256-verified)\n"
             f"  max |regenerated - published| over ocean: {out['max_abs_diff_degC']:.2e} degC "
             f"(tolerance {out['tolerance_degC']} degC): {'OK' if out['ok'] else 'MISMATCH'}")
    if not out["ok"]:  # one JSON object either way: the report, with the error named in it
        msg = (f"replay of {out['product']} differs by {out['max_abs_diff_degC']:.3g} degC "
               f"> {out['tolerance_degC']} degC")
        _emit(args, {"command": "replay", **out, "error": ProductError.__name__, "message": msg}, human)
        sys.stderr.write(f"sstbc: {ProductError.__name__}: {msg}\n")
        return EXIT_ERROR
    _emit(args, {"command": "replay", **out}, human)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sstbc", description="Bias correction of HYCOM SST forecasts against NOAA OISST v2.1")
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
    p.add_argument("--twin-seed", type=int, default=None,
                   help="another realisation of the twin (default 2021): the same dates, independent weather and errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("inspect", help="print a model package's card or a product's provenance")
    p.add_argument("path", help="model package folder (models/<id>/<version>) or product .nc / sidecar .json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("products", help="list the current products of a period (per-day indexes) or the latest")
    p.add_argument("--start", type=parse_date)
    p.add_argument("--end", type=parse_date)
    p.add_argument("--region", help="region name (default: the configured region)")
    p.add_argument("--model", help="only products of this model id")
    p.add_argument("--latest", action="store_true", help="only the newest product (products/{region}/latest.json)")
    common(p)
    p.set_defaults(func=cmd_products)

    p = sub.add_parser("plot", help="quicklook PNGs (corrected SST, correction, uncertainty per lead) of a product")
    p.add_argument("product", nargs="?", help="product .nc file (or use --date)")
    p.add_argument("--date", type=parse_date, help="the run day whose current product to plot")
    p.add_argument("--out", help="output folder (default: quicklooks/ beside the product)")
    common(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("replay", help="regenerate a product from its recorded inputs and model; report the difference")
    p.add_argument("product", help="product .nc path, or its key in the storage root")
    common(p)
    p.set_defaults(func=cmd_replay)

    from flows.cli_models import add_parser as _models_parser  # sstbc models list|show|promote|rollback

    _models_parser(sub, common)
    from flows.cli_regions import add_region_options  # --region NAME|all; run/verify/backfill fan out

    add_region_options(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _subcommand(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    names = {n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}
    return next((a for a in argv if a in names), None)


def _log_file(args: argparse.Namespace) -> Path:
    """This invocation's log file: under the (local) storage root when the settings load, else in TMPDIR."""
    from flows.logs import log_path

    root: str | None = getattr(args, "workdir", None)
    if root is None and hasattr(args, "config"):
        try:
            root = _settings(args).storage_root
        except Exception:  # noqa: BLE001 - the command itself reports a bad config
            root = None
    return log_path(root)


def _fail(command: str | None, want_json: bool, error: str, message: str, line: str, code: int) -> int:
    """The one error line on stderr and, under --json, the one JSON object on stdout."""
    if want_json:
        sys.stdout.write(json.dumps({"command": command, "error": error, "message": message, "exit_code": code}) + "\n")
    sys.stderr.write(line + "\n")
    return code


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; every failure becomes one line (and one JSON object) with its exit code."""
    want_json = bool(getattr(args, "json", False))
    log = None if args.verbose or args.command not in FLOW_COMMANDS else _log_file(args)

    def see_log() -> str:
        return f" (Prefect log: {log})" if log is not None and log.is_file() and log.stat().st_size else ""

    with contextlib.ExitStack() as stack:
        if log is not None:
            from flows.logs import prefect_to_file

            stack.enter_context(prefect_to_file(log))
        try:
            return int(args.func(args))
        except SstbcError as exc:
            kind = "configuration error" if isinstance(exc, ConfigError) else type(exc).__name__
            msg = _one_line(exc)
            return _fail(args.command, want_json, type(exc).__name__, msg, f"sstbc: {kind}: {msg}{see_log()}", EXIT_ERROR)
        except OSError as exc:  # a path given by the user: a directory, unreadable, not writable, disk full
            msg = _one_line(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else exc)
            return _fail(args.command, want_json, type(exc).__name__, msg, f"sstbc: {type(exc).__name__}: {msg}{see_log()}",
                         EXIT_ERROR)
        except KeyboardInterrupt:
            return _fail(args.command, want_json, "KeyboardInterrupt", "interrupted", "sstbc: interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the log file
            if args.verbose:
                traceback.print_exc(file=sys.stderr)
                where = "above"
            else:
                path = log or _log_file(args)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc())
                where = f"in {path}"
            msg = _one_line(f"{type(exc).__name__}: {exc}")
            return _fail(args.command, want_json, type(exc).__name__, msg,
                         f"sstbc: internal error in `{args.command}`: {msg} (traceback {where})", EXIT_INTERNAL)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 ok; 1 finished, but some dates/checks failed (listed); 2 bad input, config, data or
    usage; 3 internal error (traceback in the log file); 130 interrupted. Under ``--json`` exactly one
    JSON object is printed on stdout in every case."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "command", None) in ("fetch", "train", "backfill", "verify") and getattr(args, "start", None) \
                and getattr(args, "end", None):
            if args.end < args.start:
                parser.error(f"--end {args.end} is before --start {args.start}")
    except _UsageError as exc:
        if "--json" in argv:
            sys.stdout.write(json.dumps({"command": _subcommand(parser, argv), "error": "UsageError",
                                         "message": exc.message, "exit_code": EXIT_ERROR}) + "\n")
        sys.stderr.write(exc.parser.format_usage() + f"{exc.parser.prog}: error: {exc.message}\n")
        raise SystemExit(EXIT_ERROR) from None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _prefect_defaults()
    return _dispatch(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
