"""The Prefect flows end to end over the loopback stand-ins: train, correct, re-run, faults, CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bias_correction.io.product import product_key
from bias_correction.storage import Store
from tests.conftest import TRAIN_END, TRAIN_START, toml_config

pytestmark = pytest.mark.slow

RUN_DAY = dt.date(2021, 3, 10)


@pytest.fixture(scope="module")
def e2e(trained):
    return trained


def _toml(settings, path: Path) -> Path:
    return toml_config(settings, path)


def test_training_flow_fills_the_archive_and_packages_a_model(e2e) -> None:
    settings, out, _ = e2e
    assert out["archive"]["hycom_runs"] == (TRAIN_END - TRAIN_START).days + settings.training.seq_len
    package = Path(out["export"]["package"])
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["model_id"] == "convgru-sa" and manifest["seq_len"] == settings.training.seq_len
    assert manifest["parity"]["max_abs_diff_degC"] <= 0.01
    assert (package / "model.onnx").exists() and (package / "MODEL_CARD.md").exists()
    assert Path(out["training"]["checkpoint"]).exists()


def test_daily_flow_end_to_end_then_rerun_is_a_no_op(e2e, upstream) -> None:
    from flows.daily import daily_correction

    settings, _, _ = e2e
    payload = settings.model_dump(mode="json")
    out = daily_correction(payload, RUN_DAY)
    key = product_key("scs", dt.datetime(2021, 3, 10, 12), "convgru-sa")
    assert out["product"]["key"] == key and out["product"]["written"]
    assert out["provider"] == "CPUExecutionProvider"
    m = out["metrics"]
    assert m["raw"]["n"] == m["corrected"]["n"] > 7 * 2000
    assert len(m["per_lead"]) == 7
    store = Store(settings.storage_root)
    with xr.open_dataset(store.url(key)) as ds:
        assert ds["sst"].shape == (7, 1, 50, 50)
        assert float(np.abs(ds["sst"] - ds["sst_raw"]).max()) > 0  # the model did something
        prov = json.loads(ds.attrs["sstbc_provenance"])
        t = settings.training.seq_len
        hycom = [r for r in prov["inputs"] if r["input"] == "hycom_sst"]
        latest = [r for r in prov["inputs"] if r["input"] == "oisst_latest"]
        assert len(hycom) == t and hycom[-1]["run"] == "2021-03-10T12Z"
        # The default model also reads the latest OISST analysis known at each run (run day - 1).
        assert [r["day"] for r in latest] == [str(RUN_DAY - dt.timedelta(days=t - i)) for i in range(t)]
        assert all(r["sha256"] and r["version"] in ("final", "preliminary") for r in latest)
    mtime = Path(store.url(key)).stat().st_mtime_ns
    upstream.settle()
    requests_before = len(upstream.requests)

    again = daily_correction(payload, RUN_DAY)
    assert not again["product"]["written"]
    upstream.settle()
    assert len(upstream.requests) == requests_before  # nothing downloaded
    assert Path(store.url(key)).stat().st_mtime_ns == mtime  # nothing rewritten
    assert again["metrics"]["corrected"]["rmse"] == pytest.approx(m["corrected"]["rmse"])


def test_cli_run_prints_one_json_object(e2e, tmp_path, capsys) -> None:
    from flows.cli import main

    settings, _, _ = e2e
    rc = main(["run", "--date", "2021-03-12", "--config", str(_toml(settings, tmp_path / "c.toml")), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    payload = json.loads(out[0])
    assert payload["product"]["key"].endswith("sstbc_scs_20210312T12Z_convgru-sa.nc")
    assert payload["metrics"]["corrected"]["rmse"] > 0


@pytest.mark.parametrize(
    "fault,day,match",
    [
        ("html200", "2021-03-20", r"HYCOM run 2021-03-20 12Z.*water_temp_0m.*HTML"),
        ("truncate", "2021-03-21", r"HYCOM run 2021-03-21 12Z.*water_temp_0m.*truncated"),
        (None, "2021-05-20", r"HYCOM run 2021-05-20 12Z.*not published"),
    ],
)
def test_bad_downloads_fail_clearly_and_publish_nothing(e2e, upstream, tmp_path, capsys, fault, day, match) -> None:
    from flows.cli import main

    settings, _, _ = e2e
    if fault:
        upstream.faults.add(f"FMRC_RUN_{day}", fault, times=None)
    rc = main(["run", "--date", day, "--config", str(_toml(settings, tmp_path / "c.toml")), "--json"])
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 2
    assert payload["error"] in {"CorruptInputError", "TruncatedDownloadError", "NotYetPublishedError"}
    import re

    assert re.search(match, payload["message"]), payload["message"]
    run = dt.datetime.fromisoformat(day + "T12:00")
    assert not Store(settings.storage_root).exists(product_key("scs", run, "convgru-sa"))


def test_cli_rejects_malformed_dates(capsys) -> None:
    from flows.cli import main

    for bad in ["2021-13-01", "21-03-01", "../../etc", "2021-03-01T00"]:
        with pytest.raises(SystemExit) as exc:
            main(["run", "--date", bad])
        assert exc.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
