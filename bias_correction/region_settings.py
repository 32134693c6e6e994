"""The configuration's list of regions: ``[region]`` / ``[[regions]]`` normalised, checked, and one region's settings.

Why a module of its own: ``config.py`` holds the typed sections and stays under the module size limit; this
holds the rules of the region list. It imports nothing of ``config`` (``config`` calls it), so no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bias_correction import zoo
from bias_correction.errors import ConfigError

#: Names a region cannot take when several are configured: its store ``storage_root/<name>`` sits beside these.
RESERVED_REGION_NAMES = frozenset({"raw", "locks", "logs"})


def _plain(v: Any) -> Any:
    return v.model_dump() if isinstance(v, BaseModel) else dict(v) if isinstance(v, dict) else v


def normalise(data: Any, default_region: Callable[[], Any]) -> Any:
    """Raw settings data with both ``region`` and ``regions``: ``[region]`` alone is the one-element list,
    ``[[regions]]`` alone selects its first; with one region, ``[region]`` (an override, ``SSTBC_REGION__*``)
    is laid over it and wins. Several regions and a ``[region]`` that is not one of them are left to :func:`check`."""
    if not isinstance(data, dict):
        return data
    regions, region = data.get("regions"), data.get("region")
    if not regions:
        return {**data, "regions": [default_region() if region is None else region]}
    if region is None and isinstance(regions, list):
        return {**data, "region": regions[0]}
    if isinstance(regions, list) and len(regions) == 1:
        base, over = _plain(regions[0]), _plain(region)
        one = {**base, **over} if isinstance(base, dict) and isinstance(over, dict) else region
        return {**data, "region": one, "regions": [one]}
    return data


def check(regions: list[Any], region: Any) -> None:
    """Unique names, ``region`` one of ``regions``, no reserved name among several (raises ValueError)."""
    names = [r.name for r in regions]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"[[regions]] names must be unique: {', '.join(map(repr, dup))} configured more than once")
    if region not in regions:
        raise ValueError(f"[region] {region.name!r} is not one of [[regions]] ({', '.join(names)}): "
                         "configure either one [region] table or [[regions]] tables, not both")
    reserved = sorted(RESERVED_REGION_NAMES & set(names)) if len(names) > 1 else []
    if reserved:  # each region's store is storage_root/<name>, beside the shared raw/ cache
        raise ValueError(f"region name(s) {', '.join(map(repr, reserved))} are reserved with several regions "
                         f"(storage_root/<name> would clash with {', '.join(sorted(RESERVED_REGION_NAMES))})")


def child(root: str, name: str) -> str:
    """``root/name`` for a local path or an ``s3://`` URL."""
    return f"{root.rstrip('/')}/{name}" if "://" in root else str(Path(root) / name)


def update_for(settings: Any, name: str | None) -> dict[str, Any]:
    """The field updates that turn ``settings`` into one region's (see ``Settings.for_region``)."""
    names = [r.name for r in settings.regions]
    if name is None:
        if len(names) > 1:
            raise ConfigError(f"{len(names)} regions are configured ({', '.join(names)}): name one with --region")
        name = names[0]
    if name not in names:
        raise ConfigError(f"unknown region {name!r}: the configuration has {', '.join(names)}")
    region = settings.regions[names.index(name)]
    update: dict[str, Any] = {"region": region, "regions": [region]}
    if region.model_id is not None:
        update["model_id"] = region.model_id
        if settings.model_id == settings.training.model and region.model_id in zoo.ids():
            # model_id follows training.model: the region's model is also what trains for it
            update["training"] = settings.training.model_copy(update={"model": region.model_id})
    if region.model_version is not None:
        update["model_version"] = region.model_version
    if len(names) > 1:
        update.update(storage_root=child(settings.storage_root, name), model_store=child(settings.model_store, name),
                      raw_cache_root=settings.raw_cache_root or settings.storage_root)
    return update
