"""The storage root: a local directory or an ``s3://bucket/prefix``, behind one small interface.

Everything sstbc keeps (raw downloads, the regridded archive, the ocean mask, products) lives under
one root and is addressed by relative keys. Keys are validated so nothing can be written outside
the root. Files become visible only complete: they are staged under a temporary name and then
renamed (local) or copied into place (S3), so readers never see a partial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from bias_correction.errors import ConfigError

_BAD_KEY_CHARS = {"\x00", "\\", ":"}


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative POSIX path inside the root, else raise ConfigError."""
    if not key or not isinstance(key, str):
        raise ConfigError(f"storage key must be a non-empty string, got {key!r}")
    if any(c in key for c in _BAD_KEY_CHARS) or key.startswith("/"):
        raise ConfigError(f"storage key {key!r} must be a relative path without ':', '\\\\' or NUL")
    parts = key.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise ConfigError(f"storage key {key!r} must not contain empty, '.' or '..' components")
    return key


class Store:
    """A storage root. ``root`` is a local path or an fsspec URL such as ``s3://bucket/prefix``."""

    def __init__(self, root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        root = str(root)
        self.is_local = "://" not in root or root.startswith("file://")
        if self.is_local:
            self.root = str(Path(root.removeprefix("file://")).expanduser().resolve())
            self.fs = fsspec.filesystem("file")
        else:
            protocol = root.split("://", 1)[0]
            if protocol not in ("s3", "memory"):
                raise ConfigError(f"storage_root {root!r}: only local paths and s3:// URLs are supported")
            self.root = root.rstrip("/")
            self.fs = fsspec.filesystem(protocol, **(storage_options or {}))

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def url(self, key: str) -> str:
        """Full path (local) or URL (remote) of ``key``."""
        key = check_key(key)
        return os.path.join(self.root, *key.split("/")) if self.is_local else f"{self.root}/{key}"

    @contextlib.contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """Serialise read-modify-write of ``key`` across processes: an exclusive ``flock`` on
        ``locks/<key>.lock`` on a local root (outside the published tree, so consumers never see it).
        A remote root has no lock: keep one writer per key there."""
        if not self.is_local:
            yield
            return
        import fcntl

        lock = Path(self.url("locks/" + check_key(key) + ".lock"))
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.url(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self.url(key)))

    def read_bytes(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(self.url(key)))

    def list(self, prefix: str) -> list[str]:
        """Keys of the files under ``prefix`` (recursive), sorted; temporary names excluded."""
        base = self.url(prefix)
        if not self.fs.exists(base):
            return []
        out = []
        for path in self.fs.find(base):
            rel = os.path.relpath(path, self.root) if self.is_local else path[len(self.root.split("://", 1)[1]) + 1:]
            rel = rel.replace(os.sep, "/")
            if not _is_temporary(rel):
                out.append(rel)
        return sorted(out)

    def remove_stale_temporaries(self, prefix: str, older_than_s: float = 3600.0) -> list[str]:
        """Remove staged leftovers (``*.tmp``/``*.part``, e.g. of a killed process) under ``prefix`` last
        modified more than ``older_than_s`` ago; returns their keys. The age keeps a concurrent writer's
        file in flight safe: no staged write takes an hour."""
        base = self.url(prefix)
        if not self.fs.exists(base):
            return []
        if not self.is_local:
            self.fs.invalidate_cache()
        cutoff = time.time() - older_than_s
        removed = []
        for path, info in self.fs.find(base, detail=True).items():
            rel = (os.path.relpath(path, self.root) if self.is_local
                   else path[len(self.root.split("://", 1)[1]) + 1:]).replace(os.sep, "/")
            if not _is_temporary(rel):
                continue
            stamp = info.get("mtime") if self.is_local else info.get("LastModified")
            stamp = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp or 0)
            if stamp < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
                removed.append(rel)
        return sorted(removed)

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.url(key))

    @contextlib.contextmanager
    def staged(self, key: str) -> Iterator[Path]:
        """Yield a local path to write ``key`` to; it becomes visible at ``key`` only if the block succeeds.

        Local roots stage next to the destination (same filesystem, so the rename is atomic);
        remote roots stage in a local temporary directory and upload on success.
        """
        key = check_key(key)
        if self.is_local:
            dest = Path(self.url(key))
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                yield tmp
                _fsync(tmp)
                crash_point("before_rename", key)
                os.replace(tmp, dest)
                _fsync_dir(dest.parent)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        else:
            tmpdir = Path(tempfile.mkdtemp(prefix="sstbc-stage-"))
            tmp = tmpdir / PurePosixPath(key).name
            try:
                yield tmp
                crash_point("before_rename", key)
                self._upload(tmp, key)
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomically write ``data`` to ``key``."""
        with self.staged(key) as tmp:
            tmp.write_bytes(data)

    def _upload(self, local: Path, key: str) -> None:
        # A single PUT never publishes a partial object, but s3fs may use multipart for large
        # files; upload to a temporary key and copy into place so the final key appears whole.
        final = self.url(key)
        tmp_key = f"{final}.{uuid.uuid4().hex[:12]}.tmp"
        self.fs.put_file(str(local), tmp_key)
        try:
            self.fs.copy(tmp_key, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(tmp_key)
        self.fs.invalidate_cache()

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Yield a local filesystem path holding the content of ``key`` (a download for remote roots)."""
        if self.is_local:
            yield Path(self.url(key))
            return
        tmpdir = Path(tempfile.mkdtemp(prefix="sstbc-get-"))
        try:
            local = tmpdir / PurePosixPath(key).name
            self.fs.get_file(self.url(key), str(local))
            yield local
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def crash_point(name: str, key: str = "") -> None:
    """Fault-injection hook for crash tests: ``SSTBC_CRASH_AT=name[:key-substring]`` kills the process
    with SIGKILL here (no cleanup runs, as in a power cut or OOM kill). A no-op otherwise."""
    spec = os.environ.get("SSTBC_CRASH_AT")
    if not spec:
        return
    point, _, match = spec.partition(":")
    if point == name and match in key:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _is_temporary(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith((".tmp", ".part"))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
