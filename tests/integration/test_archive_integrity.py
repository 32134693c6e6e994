"""Issue 13: archive files carry the sha256 of their content; an edited or truncated one is repaired
from its raw file (never used), and the input digest covers content, not the upstream URL."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from bias_correction import pipeline
from bias_correction.errors import ArchiveIntegrityError
from bias_correction.io import archive
from bias_correction.pipeline.correct import content_parts, input_digest
from bias_correction.pipeline.fill import archive_hycom_run, archive_oisst_day
from bias_correction.sources.hycom import run_time

DAY = dt.date(2021, 3, 10)


def test_edited_and_truncated_archive_files_are_repaired_from_the_raw_file(settings, caplog) -> None:
    ctx = pipeline.make_context(settings)
    first = archive_hycom_run(ctx, DAY)
    key = first.key
    path = Path(ctx.store.url(key))
    good = archive.read_field(ctx.store, key).values.copy()
    assert archive.existing(ctx.store, key) is not None  # an intact file is reused

    with netCDF4.Dataset(path, "a") as nc:  # the operator's edit: +0.5 degC on sst
        nc["sst"][:] = nc["sst"][:] + 0.5
    with pytest.raises(ArchiveIntegrityError, match=f"archive file {key}: content sha256"):
        archive.read_field(ctx.store, key)
    with caplog.at_level(logging.WARNING, logger="bias_correction.io.archive"):
        repaired = archive_hycom_run(ctx, DAY)
    assert repaired.written and repaired.source["sha256"] == first.source["sha256"]
    np.testing.assert_array_equal(archive.read_field(ctx.store, key).values, good)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and key in warnings[0] and "re-deriving" in warnings[0]

    os.truncate(path, 27811 if path.stat().st_size > 27811 else path.stat().st_size // 2)
    with pytest.raises(ArchiveIntegrityError, match=f"archive file {key} does not open"):
        archive.read_field(ctx.store, key)
    again = archive_hycom_run(ctx, DAY)
    assert again.written
    np.testing.assert_array_equal(archive.read_field(ctx.store, key).values, good)
    assert not archive_hycom_run(ctx, DAY).written  # repaired once, then reused


def test_edited_oisst_day_is_re_derived(settings) -> None:
    ctx = pipeline.make_context(settings)
    key = archive_oisst_day(ctx, DAY).key
    good = archive.read_field(ctx.store, key).values.copy()
    with netCDF4.Dataset(ctx.store.url(key), "a") as nc:
        nc["sst"][0, 0] = 99.0
    assert archive.existing(ctx.store, key) is None
    assert archive_oisst_day(ctx, DAY).written
    np.testing.assert_array_equal(archive.read_field(ctx.store, key).values, good)


def test_input_digest_covers_content_not_the_mirror_url() -> None:
    rec = {"input": "hycom_sst", "run": f"{run_time(DAY):%Y-%m-%dT%HZ}", "sha256": "a" * 64, "version": "forecast",
           "url": "https://tds.hycom.org/thredds/ncss/x", "archive_key": "archive/g/hycom/x.nc"}
    mirror = {**rec, "url": "http://mirror.example/thredds/ncss/x"}
    changed = {**rec, "sha256": "b" * 64}
    assert input_digest({"inputs": content_parts([rec])}) == input_digest({"inputs": content_parts([mirror])})
    assert input_digest({"inputs": content_parts([rec])}) != input_digest({"inputs": content_parts([changed])})
    assert content_parts([mirror]) == [{k: rec[k] for k in ("input", "run", "sha256", "version")}]
