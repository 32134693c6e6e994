"""As-issued OISST: a day archived from its preliminary file keeps that field after the final lands; the
daily run's analysis input and training inputs use it, targets use the final."""

from __future__ import annotations

import datetime as dt

import numpy as np

from bias_correction import pipeline
from bias_correction.io import archive
from tests.conftest import TODAY, settings_for

DAY = dt.date(2021, 4, 5)


def test_preliminary_kept_and_used_as_issued(upstream, tmp_path) -> None:
    ctx = pipeline.make_context(settings_for(upstream, tmp_path))
    try:
        upstream.today = dt.date(2021, 4, 10)  # DAY exists as preliminary only
        first = pipeline.archive_oisst_day(ctx, DAY)
        assert first.source["version"] == "preliminary"
        _, _, records = pipeline.run_inputs(ctx, DAY + dt.timedelta(days=1), 1, ("oisst_latest",), 1)
        rec = next(r for r in records if r["input"] == "oisst_latest")
        assert rec["day"] == DAY.isoformat() and rec["version"] == "preliminary"
        upstream.today = TODAY  # the final is out and the preliminary deleted upstream
        final = pipeline.archive_oisst_day(ctx, DAY)
        assert final.written and final.source["version"] == "final"
        kept = archive.as_issued_oisst(ctx.store, ctx.grid, DAY)
        assert kept.key == archive.oisst_preliminary_key(ctx.grid, DAY) and kept.source["version"] == "preliminary"
        p, f = (archive.read_field(ctx.store, e.key).values for e in (kept, final))
        assert np.nanmax(np.abs(p - f)) > 0.01  # two different analyses, both kept
        assert pipeline.preliminary_days(ctx) == []  # the kept copy is not a day still waiting for its final
        # the daily run (a re-run too) takes the analysis as issued; the target stays the final
        _, _, records = pipeline.run_inputs(ctx, DAY + dt.timedelta(days=1), 1, ("oisst_latest",), 1)
        rec = next(r for r in records if r["input"] == "oisst_latest")
        assert rec["version"] == "preliminary" and rec["archive_key"] == kept.key and rec["sha256"] == first.source["sha256"]
        # training inputs: the kept preliminary where archived, final-only elsewhere
        other = DAY - dt.timedelta(days=1)
        pipeline.archive_oisst_day(ctx, other)
        cube, counts = archive.load_as_issued_oisst_days(ctx.store, ctx.grid, [other, DAY])
        assert counts == {"preliminary": 1, "final_only": 1}
        assert np.array_equal(cube.values[1], p, equal_nan=True)
        info = pipeline.training.training_data_info(
            {"final": 2, "preliminary": 0, "preliminary_days": [], "as_issued_inputs": counts}, other, DAY, 3, 1)
        assert info["as_issued_inputs"]["preliminary"] == 1 and info["as_issued_inputs"]["final_only"] == 1
        assert "only the final" in info["as_issued_inputs"]["note"]
    finally:
        upstream.today = TODAY
