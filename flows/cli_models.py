"""``sstbc models list | show | promote | rollback``: the model store's versions, aliases and their log.

Registered from ``flows/cli.py``; the logic is in ``bias_correction.correction.aliases`` (and
``pipeline.promotion`` for the scored promotion of retraining). A bad version, a missing reason or
nothing to roll back to is one line and exit 2, like every other user error of ``sstbc``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``models`` and its subcommands to the ``sstbc`` subparsers."""
    p = sub.add_parser("models", help="model versions and aliases: list, show, promote, rollback")
    msub = p.add_subparsers(dest="models_command", required=True)

    def model_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--model", help="model id (default: the configured model_id)")
        common(q)

    q = msub.add_parser("list", help="versions per model id with their alias (current/previous/candidate)")
    model_opt(q)
    q.set_defaults(func=cmd_list)

    q = msub.add_parser("show", help="a version's manifest summary, status and promotion record")
    q.add_argument("version", nargs="?", default="current", help="version, or an alias (default: current)")
    model_opt(q)
    q.set_defaults(func=cmd_show)

    q = msub.add_parser("promote", help="make VERSION current (the old current becomes previous); logged")
    q.add_argument("version", help="the version to make current")
    q.add_argument("--why", required=True, help="the reason, recorded in the alias log")
    q.add_argument("--by", help="who decides (default: user@host)")
    model_opt(q)
    q.set_defaults(func=cmd_promote)

    q = msub.add_parser("rollback", help="current <- previous (the rolled-back version becomes previous); logged")
    q.add_argument("--why", required=True, help="the reason, recorded in the alias log")
    q.add_argument("--by", help="who decides (default: user@host)")
    model_opt(q)
    q.set_defaults(func=cmd_rollback)


def _store_and_ids(args: argparse.Namespace, *, all_ids: bool) -> tuple[Path, list[str]]:
    from flows.cli import _settings

    settings = _settings(args)
    store = Path(settings.model_store)
    if args.model:
        return store, [args.model]
    if all_ids and store.is_dir():
        from bias_correction.correction.package import list_versions

        ids = sorted(p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and list_versions(store, p.name))
        return store, ids or [settings.model_id]
    return store, [settings.model_id]


def _rows(store: Path, model_id: str) -> dict[str, Any]:
    from bias_correction.correction import aliases
    from bias_correction.correction.package import list_versions

    found = aliases.read_aliases(store, model_id)
    versions = [{"version": v, **aliases.status_of(store, model_id, v, found)} for v in list_versions(store, model_id)]
    return {"model_id": model_id, "aliases": found.to_json() if found else None, "versions": versions}


def cmd_list(args: argparse.Namespace) -> int:
    from flows.cli import _emit

    store, ids = _store_and_ids(args, all_ids=True)
    models = [_rows(store, m) for m in ids]
    lines = [f"model store {store}"]
    for m in models:
        lines.append(f"{m['model_id']}" + ("" if m["aliases"] else "  (no aliases yet: the newest version is used)"))
        if not m["versions"]:
            lines.append("  no versions")
        for v in reversed(m["versions"]):  # newest first
            mark = "*" if v["status"] == "current" else " "
            reason = f"  {v['reason']}" if v["reason"] else ""
            lines.append(f"  {mark} {v['version']}  {v['status']}{reason}")
    _emit(args, {"command": "models list", "model_store": str(store), "models": models}, "\n".join(lines))
    return 0


def _summary(manifest: Any) -> dict[str, Any]:
    from bias_correction import regime

    raw = manifest.raw
    tr, val = raw.get("training") or {}, raw.get("validation") or {}
    return {"model_id": manifest.model_id, "version": manifest.version, "kind": manifest.kind,
            "architecture": manifest.architecture, "runtime": manifest.runtime, "created": raw.get("created"),
            "seq_len": manifest.seq_len, "aux_inputs": list(manifest.aux_inputs), "grid_id": manifest.grid_id,
            "training_period": [tr.get("period_start"), tr.get("period_end")],
            "regimes": sorted(regime.training_regimes(manifest)),
            "validation": {k: val.get(k) for k in ("rmse_raw", "rmse_corrected", "improvement_pct") if k in val},
            "uncertainty": (raw.get("uncertainty") or {}).get("method")}


def cmd_show(args: argparse.Namespace) -> int:
    from bias_correction.correction import aliases
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import resolve_package
    from flows.cli import _emit

    store, (model_id,) = _store_and_ids(args, all_ids=False)
    package = resolve_package(store, model_id, args.version)
    manifest = load_manifest(package)
    found = aliases.read_aliases(store, model_id)
    status = aliases.status_of(store, model_id, package.name, found)
    record = aliases.read_promotion(store, model_id, package.name)
    log = [e for e in aliases.log_entries(store, model_id)
           if package.name in (e.get("to"), e.get("from"), e.get("candidate"))]
    summary = _summary(manifest)
    lines = [f"{model_id} {package.name}: {status['status']}" + (f" ({status['reason']})" if status["reason"] else ""),
             f"  {summary['kind']} {summary['architecture']} (runtime {summary['runtime'] or 'onnx'}), "
             f"T={summary['seq_len']}, inputs: sst{''.join(', ' + a for a in summary['aux_inputs'])}",
             f"  grid {summary['grid_id']}; created {summary['created']}",
             f"  training period {summary['training_period'][0]} .. {summary['training_period'][1]}; "
             f"regimes {', '.join(summary['regimes']) or 'unknown'}",
             f"  validation: {json.dumps(summary['validation'])}; uncertainty: {summary['uncertainty']}"]
    if record is not None:
        lines.append(f"  promotion: {record.get('decision')} against {record.get('current')} "
                     f"(by {record.get('by')} at {record.get('at')})")
        window = record.get("window") or {}
        if window:
            lines.append(f"    window runs {window.get('start')} .. {window.get('end')}, "
                         f"{window.get('n_samples', '?')} samples, regimes {', '.join(window.get('regimes') or [])}")
        lines.append(f"    {record.get('reason')}")
    else:
        lines.append("  promotion: never scored")
    for e in log:
        lines.append(f"  log {e.get('at')} {e.get('action')}: {e.get('from')} -> {e.get('to')} by {e.get('by')}: "
                     f"{e.get('why')}")
    _emit(args, {"command": "models show", "model_id": model_id, **status, "manifest": summary, "promotion": record,
                 "log": log}, "\n".join(lines))
    return 0


def _changed(args: argparse.Namespace, command: str, model_id: str, new: Any) -> int:
    from flows.cli import _emit

    _emit(args, {"command": command, "model_id": model_id, "aliases": new.to_json()},
          f"{model_id}: current = {new.current} (previous {new.previous or 'none'})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from bias_correction.correction import aliases

    store, (model_id,) = _store_and_ids(args, all_ids=False)
    new = aliases.set_current(store, model_id, args.version, why=args.why, actor=args.by, action="manual-promote")
    return _changed(args, "models promote", model_id, new)


def cmd_rollback(args: argparse.Namespace) -> int:
    from bias_correction.correction import aliases

    store, (model_id,) = _store_and_ids(args, all_ids=False)
    new = aliases.rollback(store, model_id, why=args.why, actor=args.by)
    return _changed(args, "models rollback", model_id, new)
