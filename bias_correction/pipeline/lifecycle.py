"""The OISST preliminary -> final lifecycle: what still rests on preliminary analyses, and upgrading it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bias_correction.io import archive
from bias_correction.pipeline.context import Context
from bias_correction.pipeline.fill import archive_oisst_day
from bias_correction.sources.oisst import PRELIMINARY


def preliminary_days(ctx: Context) -> list[dt.date]:
    """Archived OISST days that still hold the preliminary analysis."""
    out = []
    main = f"archive/{ctx.grid.grid_id}/oisst/"  # not the as-issued copies under oisst_preliminary/
    for key in (k for k in ctx.store.list(main.rstrip("/")) if k.startswith(main)):
        entry = archive.existing(ctx.store, key)
        if entry is not None and entry.source.get("version") == PRELIMINARY:
            out.append(dt.datetime.strptime(key.rsplit("/", 1)[-1], "oisst_%Y%m%d.nc").date())
    return sorted(out)


def derived_from_preliminary(ctx: Context) -> dict[str, Any]:
    """What rests on preliminary OISST: archived days, and model packages trained with such days."""
    from bias_correction.correction.manifest import load_manifest
    from bias_correction.correction.package import list_versions

    days = preliminary_days(ctx)
    models = []
    store = Path(ctx.settings.model_store)
    for model_dir in sorted(p for p in store.glob("*") if p.is_dir()) if store.exists() else []:
        for version in list_versions(store, model_dir.name):
            training = load_manifest(model_dir / version).training
            used = ((training.data if training else None) or {}).get("preliminary_days", [])
            if used:
                models.append({"model_id": model_dir.name, "version": version, "preliminary_days": used})
    return {"oisst_preliminary_days": [d.isoformat() for d in days], "models": models}


def refresh_preliminary(ctx: Context) -> dict[str, Any]:
    """Upgrade every archived preliminary day whose final file is published; report the rest."""
    upgraded, pending = [], []
    for day in preliminary_days(ctx):
        entry = archive_oisst_day(ctx, day)
        (upgraded if entry.written and entry.source.get("version") == "final" else pending).append(day.isoformat())
    return {"upgraded": upgraded, "still_preliminary": pending, **derived_from_preliminary(ctx)}
