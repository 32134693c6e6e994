"""A multi-region service, built once per session: regions with their own grid, mask, archive and model.

``west`` and ``east`` (two boxes, two grids) each run a mean-bias baseline trained for it by the real training
flow on its own archive (a baseline: cheap to train; these tests are about regions, not skill); ``north`` has
no model at all, so every run of it fails (the region whose failure must not stop the others).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bias_correction.config import Settings, settings_from_dict
from tests.conftest import settings_for

WEST = {"name": "west", "lat_min": 12.0, "lat_max": 14.0, "lon_min": 110.0, "lon_max": 112.0, "model_id": "mean-bias"}
EAST = {"name": "east", "lat_min": 12.0, "lat_max": 14.0, "lon_min": 114.0, "lon_max": 116.0, "model_id": "mean-bias"}
NORTH = {"name": "north", "lat_min": 18.0, "lat_max": 20.0, "lon_min": 110.0, "lon_max": 112.0}
#: Training period of the baselines (inside the session's other training periods: the stand-in's files are shared).
TRAIN = (dt.date(2021, 2, 10), dt.date(2021, 2, 24))


@dataclass(frozen=True)
class MultiRegion:
    root: Path
    data: dict[str, Any]  # the multi-region settings as plain data (storage and model store at the top)

    def settings(self, *names: str, **over: Any) -> Settings:
        """The configuration with the named regions (all three by default)."""
        chosen = [r for r in self.data["regions"] if not names or r["name"] in names]
        return settings_from_dict({**self.data, "regions": chosen, **over})

    def toml(self, path: Path, *names: str, extra: str = "") -> Path:
        s = self.settings(*names)
        lines = [f'storage_root = "{s.storage_root}"', f'model_store = "{s.model_store}"',
                 f"grid_halo_cells = {s.grid_halo_cells}",
                 "[upstream]", f'oisst_https = "{s.upstream.oisst_https}"', f'hycom_ncss = "{s.upstream.hycom_ncss}"',
                 "[orchestration]", "task_retries = 1", "task_retry_delay_s = 0.1", "wait_hours = 0",
                 "[http]", "connect_timeout_s = 5", "read_timeout_s = 20", "retries = 1", "backoff_s = 0.01",
                 "backoff_max_s = 0.01", "[product]", "quicklooks = false", "report = false"]
        for r in s.regions:
            lines += ["[[regions]]", *(f"{k} = {v!r}".replace("'", '"') for k, v in r.model_dump().items()
                                       if v is not None)]
        path.write_text("\n".join(lines) + "\n" + extra)
        return path


@pytest.fixture(scope="session")
def multi_region(prefect_harness, upstream, tmp_path_factory) -> MultiRegion:
    from flows.daily import training

    root = tmp_path_factory.mktemp("multi-region")
    one = settings_for(upstream, root, product={"quicklooks": False, "report": False},
                       orchestration={"wait_hours": 0},
                       training={"start": TRAIN[0].isoformat(), "end": TRAIN[1].isoformat()})
    data = {**one.model_dump(mode="json"), "regions": [WEST, EAST, NORTH]}
    data.pop("region")
    multi = MultiRegion(root, data)
    s = multi.settings()
    for name in ("west", "east"):
        rs = s.for_region(name)
        assert rs.training.model == "mean-bias" and rs.model_store == str(root / "models" / name)
        training(rs.model_dump(mode="json"), *TRAIN)
    return multi
