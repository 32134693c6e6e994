"""``--region NAME|all`` on the ``sstbc`` subcommands: which region's settings a command gets, and the fan-out of
``run``, ``verify`` and ``backfill`` over several regions. Wiring only; the policy is ``bias_correction.regions``.

One region selected (a single-region config, or ``--region NAME``): the command runs exactly as before. Several
(``--region all``, or no ``--region`` with several configured): ``run`` and ``verify`` run once per region in turn,
``backfill`` puts every region's dates on one dask cluster, ``serve`` serves deployments that fan out. One
region's failure stops no other; each failed region is one stderr line, and the exit code is non-zero (1 when
some regions succeeded) when any failed. Under ``--json`` there is still exactly one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from bias_correction import regions as regions_lib
from bias_correction.config import Settings, load_settings
from bias_correction.errors import SstbcError

LOG = logging.getLogger(__name__)

#: Subcommands that accept ``--region all`` (and cover every region by default).
FAN_OUT = ("run", "backfill", "verify", "serve")
#: Subcommands that work on one region (``--region NAME``, needed when several are configured).
ONE_REGION = ("fetch", "preliminary", "train", "export", "doctor", "plot", "replay")

Command = Callable[[argparse.Namespace], int]


def add_region_options(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``--region`` to the subcommands (``products`` has its own) and wrap the fan-out ones."""
    for name, p in sub.choices.items():
        if name in FAN_OUT:
            p.add_argument("--region", metavar="NAME|all",
                           help="one configured region, or 'all' (default: every configured region)")
            cmd = p.get_default("func")
            if name in ("run", "verify"):
                p.set_defaults(func=_per_region(cmd))
            elif name == "backfill":
                p.set_defaults(func=_backfill(cmd))
        elif name in ONE_REGION:
            _one_region_option(p)
        elif name == "models":  # each region has its own model store: `sstbc models promote --region NAME ...`
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for q in action.choices.values():
                        _one_region_option(q)


def _one_region_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", metavar="NAME", help="the configured region to work on (needed when several are "
                                                    "configured)")


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings a command works with: one region's (:meth:`Settings.for_region`), or the whole
    multi-region configuration for a fan-out command covering several."""
    settings = load_settings(args.config)
    name = getattr(args, "region_name", None) or getattr(args, "region", None)
    if getattr(args, "command", None) in FAN_OUT and name in (None, regions_lib.ALL) and len(settings.regions) > 1:
        return settings
    if name == regions_lib.ALL:
        name = None
    return settings.for_region(name)


def _selected(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    settings = load_settings(args.config)
    return settings, regions_lib.select(settings, getattr(args, "region", None))


def _run_captured(cmd: Command, args: argparse.Namespace, name: str) -> tuple[int, str]:
    one = copy.copy(args)
    one.region_name = name
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cmd(one)
    return code, buf.getvalue()


def _code_of(exc: BaseException) -> int:
    from flows.cli import EXIT_ERROR, EXIT_INTERNAL

    return EXIT_ERROR if isinstance(exc, (SstbcError, OSError)) else EXIT_INTERNAL


def _finish(args: argparse.Namespace, outcomes: list[regions_lib.RegionOutcome], codes: dict[str, int],
            payloads: dict[str, Any], human: list[str]) -> int:
    """Print the fan-out's one result (JSON object or text) and one stderr line per failed region."""
    code = regions_lib.exit_code(codes)
    failed = regions_lib.failed(outcomes)
    if args.json:
        sys.stdout.write(json.dumps({"command": args.command, "regions": payloads,
                                     "failed_regions": regions_lib.summary(outcomes)["failed_regions"],
                                     "exit_code": code}, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(human).rstrip() + "\n")
    for o in failed:
        sys.stderr.write(f"sstbc: {args.command}: {o.line()}\n")
    return code


def _per_region(cmd: Command) -> Command:
    """``cmd`` for one region as before, or once per selected region, each isolated from the others."""

    def run(args: argparse.Namespace) -> int:
        settings, names = _selected(args)
        if len(names) == 1:
            args.region_name = names[0]
            return cmd(args)
        outcomes, codes, payloads, human = [], {}, {}, []
        for name in names:
            try:
                code, text = _run_captured(cmd, args, name)
            except Exception as exc:  # noqa: BLE001 - isolation: this region's failure is its outcome
                LOG.info("region %s of `%s` failed", name, args.command, exc_info=True)
                outcomes.append(regions_lib.outcome(name, exc=exc))
                codes[name] = _code_of(exc)
                human.append(f"region {name}: FAILED ({type(exc).__name__})")
                continue
            codes[name] = code
            payloads[name] = json.loads(text) if args.json else None
            outcomes.append(regions_lib.outcome(name, result=payloads[name]))
            human.append(f"region {name}:\n" + "\n".join("  " + line for line in text.rstrip().splitlines()))
        if not args.json:
            payloads = {}
        return _finish(args, outcomes, codes, payloads, human)

    return run


def _backfill(cmd: Command) -> Command:
    """``backfill`` of one region as before; of several: every region's dates on one dask cluster (or, with
    ``--dry-run``, each region's plan), failures listed with their region."""

    def run(args: argparse.Namespace) -> int:
        settings, names = _selected(args)
        if len(names) == 1:
            args.region_name = names[0]
            return cmd(args)
        from flows.cli import EXIT_PARTIAL, _emit

        models = [m for m in (args.models or "").split(",") if m] or None
        if args.dry_run:
            from bias_correction import backfill as backfill_lib

            outcomes = regions_lib.run_each(
                regions_lib.split(settings, args.region),
                lambda rs: backfill_lib.as_dicts(backfill_lib.plan(rs, args.start, args.end, models or [rs.model_id])))
            codes = {o.region: 0 if o.ok and all(d["state"] != "failed" for d in o.result) else
                     EXIT_PARTIAL if o.ok else 2 for o in outcomes}
            human = [f"{o.region} {d['date']} {d['model_id']:12s} {d['state']:8s} {d['reason']}"
                     for o in outcomes if o.ok for d in o.result]
            todo = sum(d["state"] != "done" for o in outcomes if o.ok for d in o.result)
            human.append(f"{todo} (region, date)s to process in {len(names)} regions")
            return _finish(args, outcomes, codes, {o.region: o.result for o in outcomes if o.ok}, human)
        from flows.operations import run_backfill

        out = run_backfill(settings, args.start, args.end, models, names)
        _emit(args, {"command": "backfill", **out},
              f"backfill {args.start}..{args.end} over {len(names)} regions: {out['done']} of {out['dates']} "
              f"(region, date)s done, {out['written']} product(s) written"
              + "".join(f"\n  region {r}: {t['done']} of {t['dates']} done, {t['failed']} failed"
                        for r, t in out["regions"].items())
              + "".join(f"\n  FAILED region {f['region']} {f['date']} {f['model_id']}: {f['message']}"
                        for f in out["failed"]))
        for region, tally in out["regions"].items():  # one line per region with failed dates
            if tally["failed"]:
                first = next(f for f in out["failed"] if f["region"] == region)
                sys.stderr.write(f"sstbc: backfill: region {region}: {tally['failed']} of {tally['dates']} date(s) "
                                 f"failed, first {first['date']} {first['model_id']}: {first['message']}\n")
        return EXIT_PARTIAL if out["failed"] else 0

    return run
