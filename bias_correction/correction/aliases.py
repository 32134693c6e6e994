"""Model aliases: which version of a model id the daily run uses (``current``) and what it rolls back to
(``previous``), with an append-only log of every change (who, why, from, to).

Why aliases, not "newest": retraining writes a new version every month; the one the daily run reads must
be the one that was shown better than its predecessor (``pipeline.promotion``) or chosen by an operator
(``sstbc models promote``), never whichever was exported last. Layout, next to the versions:

* ``models/<model_id>/aliases.json``: ``{"current": V, "previous": V|null, "updated": ISO, "by": WHO}``,
  rewritten atomically (temp file + rename) under a lock, so a reader never sees half of it;
* ``models/<model_id>/aliases.log.jsonl``: one JSON object per change (and per refused promotion), only
  ever appended.

A model id without ``aliases.json`` (stores older than aliases) resolves ``current`` to its newest complete
version, with one warning; the first version exported for a model id becomes ``current`` (bootstrap),
later exports are candidates until promoted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bias_correction.correction.manifest import MANIFEST_FILE
from bias_correction.errors import ConfigError, ModelContractError

LOG = logging.getLogger(__name__)

ALIAS_FILE = "aliases.json"
LOG_FILE = "aliases.log.jsonl"
LOCK_FILE = "aliases.lock"
CURRENT, PREVIOUS = "current", "previous"
ALIASES = (CURRENT, PREVIOUS)
#: The version name that resolves to the newest complete version (kept for explicit use).
LATEST = "latest"
#: Record of a challenger's scoring against the current version, written in the challenger's folder.
PROMOTION_FILE = "promotion.json"


@dataclass(frozen=True)
class Aliases:
    """The alias file of one model id."""

    current: str | None
    previous: str | None = None
    updated: str | None = None
    by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {CURRENT: self.current, PREVIOUS: self.previous, "updated": self.updated, "by": self.by}


def default_actor() -> str:
    """Who changes an alias when the caller does not say: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_dir(model_store: Path | str, model_id: str) -> Path:
    return Path(model_store) / model_id


def is_complete(model_store: Path | str, model_id: str, version: str) -> bool:
    """A finished package folder (holds its manifest; hidden temp folders never count)."""
    return not version.startswith(".") and (model_dir(model_store, model_id) / version / MANIFEST_FILE).is_file()


def read_aliases(model_store: Path | str, model_id: str) -> Aliases | None:
    """The alias file of ``model_id``, None when it has none yet; a corrupt file is named, not guessed at."""
    path = model_dir(model_store, model_id) / ALIAS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelContractError(f"{path} is not a valid alias file ({exc}); restore it from {LOG_FILE}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get(CURRENT), (str, type(None))):
        raise ModelContractError(f"{path} must hold a JSON object with a string {CURRENT!r}")
    return Aliases(raw.get(CURRENT), raw.get(PREVIOUS), raw.get("updated"), raw.get("by"))


def alias_version(model_store: Path | str, model_id: str, alias: str) -> str | None:
    """The version an alias points to (None: no alias file, or the alias is unset)."""
    if alias not in ALIASES:
        raise ConfigError(f"unknown model alias {alias!r}; expected one of {', '.join(ALIASES)}")
    found = read_aliases(model_store, model_id)
    return None if found is None else getattr(found, alias)


@contextlib.contextmanager
def _locked(model_store: Path | str, model_id: str) -> Iterator[None]:
    """Exclusive lock of one model id's aliases (read-modify-write of the file and the log)."""
    folder = model_dir(model_store, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path | str, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path``: a temp sibling, then rename (a reader sees the old file or the new)."""
    _write_json_atomic(Path(path), data)


def _append_log(model_store: Path | str, model_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    fd = os.open(model_dir(model_store, model_id) / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())  # one write of a whole line, O_APPEND: lines never interleave
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def log_entries(model_store: Path | str, model_id: str) -> list[dict[str, Any]]:
    """Every logged alias change of ``model_id``, oldest first (a torn last line is skipped)."""
    path = model_dir(model_store, model_id) / LOG_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _entry(model_id: str, action: str, *, why: str, actor: str | None, from_version: str | None,
           to_version: str | None, **extra: Any) -> dict[str, Any]:
    return {"at": _now(), "model_id": model_id, "action": action, "alias": CURRENT, "from": from_version,
            "to": to_version, "by": actor or default_actor(), "why": why, **extra}


def _require_why(why: str) -> str:
    if not why or not why.strip():
        raise ConfigError("an alias change needs a reason (--why TEXT): it is recorded in the alias log")
    return why.strip()


def _require_version(model_store: Path | str, model_id: str, version: str) -> None:
    if not is_complete(model_store, model_id, version):
        present = sorted(p.name for p in model_dir(model_store, model_id).iterdir()
                         if p.is_dir() and is_complete(model_store, model_id, p.name)) \
            if model_dir(model_store, model_id).is_dir() else []
        raise ModelContractError(f"model {model_id!r} has no complete version {version!r} in {model_store}; "
                                 f"available: {', '.join(present) if present else 'none'}")


def set_current(model_store: Path | str, model_id: str, version: str, *, why: str, actor: str | None = None,
                action: str = "promote", **extra: Any) -> Aliases:
    """Point ``current`` at ``version`` (the old current becomes ``previous``) and log it.

    The package is verified first (manifest hash and every artifact's sha256): an alias never points at
    a package that would not load. Promoting the version that already is current changes nothing but
    is still logged (an operator's confirmation is a decision too).
    """
    from bias_correction.correction.manifest import load_manifest

    why = _require_why(why)
    _require_version(model_store, model_id, version)
    load_manifest(model_dir(model_store, model_id) / version)
    with _locked(model_store, model_id):
        old = read_aliases(model_store, model_id)
        before = old.current if old is not None else None
        if before == version:
            new = old if old is not None else Aliases(version)
        else:
            new = Aliases(version, before, _now(), actor or default_actor())
            _write_json_atomic(model_dir(model_store, model_id) / ALIAS_FILE, new.to_json())
        _append_log(model_store, model_id, _entry(model_id, action, why=why, actor=actor, from_version=before,
                                                  to_version=version, previous=new.previous, **extra))
    return new


def rollback(model_store: Path | str, model_id: str, *, why: str, actor: str | None = None) -> Aliases:
    """``current`` <- ``previous``; the rolled-back version becomes ``previous`` (a second rollback undoes it)."""
    why = _require_why(why)
    found = read_aliases(model_store, model_id)
    if found is None or not found.previous:
        raise ModelContractError(f"model {model_id!r} in {model_store} has no previous version to roll back to "
                                 f"(aliases: {found.to_json() if found else 'none yet'})")
    return set_current(model_store, model_id, found.previous, why=why, actor=actor, action="rollback")


def bootstrap(model_store: Path | str, model_id: str, version: str, actor: str | None = None) -> bool:
    """Make a freshly exported ``version`` current when ``model_id`` has no current yet; True if it did.

    Later exports stay candidates: only a promotion (scored, or an operator's) moves ``current``.
    """
    found = read_aliases(model_store, model_id)
    if found is not None and found.current:
        return False
    set_current(model_store, model_id, version, why="first export of this model id (bootstrap)", actor=actor,
                action="bootstrap")
    return True


def record_refusal(model_store: Path | str, model_id: str, version: str, *, why: str, actor: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    """Log that ``version`` was scored and stays a candidate (``current`` unchanged), with the reason."""
    with _locked(model_store, model_id):
        found = read_aliases(model_store, model_id)
        current = found.current if found is not None else None
        return _append_log(model_store, model_id, _entry(model_id, "refused", why=why, actor=actor,
                                                         from_version=current, to_version=current,
                                                         candidate=version, **extra))


def read_promotion(model_store: Path | str, model_id: str, version: str) -> dict[str, Any] | None:
    """The scoring record of ``version`` (``promotion.json`` in its folder), None when it was never scored."""
    path = model_dir(model_store, model_id) / version / PROMOTION_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelContractError(f"{path} is not a valid promotion record: {exc}") from None


def status_of(model_store: Path | str, model_id: str, version: str, aliases: Aliases | None) -> dict[str, Any]:
    """A version's role: "current", "previous" or "candidate" (with the reason it is not current)."""
    if aliases is not None and version == aliases.current:
        return {"status": CURRENT, "reason": None}
    if aliases is not None and version == aliases.previous:
        return {"status": PREVIOUS, "reason": None}
    record = read_promotion(model_store, model_id, version)
    if aliases is None:
        reason = "no alias file yet: the newest complete version is used"
    elif record is not None:
        reason = record.get("reason")
    else:
        reason = "not scored against the current version"
    return {"status": "candidate", "reason": reason}


_WARNED: set[tuple[str, str]] = set()


def resolve_alias(model_store: Path | str, model_id: str, version: str, versions: list[str]) -> str:
    """The concrete version ``version`` names: an alias ("current", "previous"), "latest", or itself.

    ``versions``: the complete versions of ``model_id``, oldest first. "current" without an alias file
    falls back to the newest version (one warning per model id and process).
    """
    if version == LATEST:
        return versions[-1]
    if version not in ALIASES:
        return version
    found = read_aliases(model_store, model_id)
    target = None if found is None else getattr(found, version)
    if found is None and version == CURRENT:
        key = (str(Path(model_store).resolve()), model_id)
        if key not in _WARNED:
            _WARNED.add(key)
            LOG.warning("model %s in %s has no %s: using its newest version %s as %r (promote one with "
                        "`sstbc models promote`)", model_id, model_store, ALIAS_FILE, versions[-1], CURRENT)
        return versions[-1]
    if not target:
        raise ModelContractError(f"model {model_id!r} in {model_store} has no {version!r} version "
                                 f"(aliases: {found.to_json() if found else 'none yet'})")
    if target not in versions:
        raise ModelContractError(f"model {model_id!r}: alias {version!r} points at version {target!r}, which is not a "
                                 f"complete package in {model_store}; available: {', '.join(versions)}")
    return target
