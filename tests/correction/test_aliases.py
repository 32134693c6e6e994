"""Model aliases: bootstrap on first export, later exports stay candidates, the daily resolution reads
``current`` (not the newest), promotion and rollback with their log lines, and ``sstbc models``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bias_correction.correction import aliases
from bias_correction.correction.base import load_corrector
from bias_correction.correction.package import list_versions, resolve_package
from bias_correction.errors import ConfigError, ModelContractError
from bias_correction.training.baselines import build_baseline
from bias_correction.training.dataset import build_samples, split_chronological
from bias_correction.training.tabular_export import export_tabular_package
from tests.training import synthetic_cubes

MODEL = "mb"
V1, V2, V3 = "20210101T000000Z", "20210201T000000Z", "20210301T000000Z"


@pytest.fixture(scope="module")
def fitted():
    hy, oi, mask, grid = synthetic_cubes(nruns=14, seed=3)
    train, val = split_chronological(build_samples(hy, oi, mask, seq_len=1), 0.25, gap_days=1)
    return build_baseline("mean-bias").fit(train), train, val, grid


def _export(fitted, store: Path, version: str) -> Path:
    model, train, val, grid = fitted
    return export_tabular_package(model, train, val, grid=grid, mask_hash="a" * 64, model_store=store,
                                  model_id=MODEL, version=version)


@pytest.fixture
def store(fitted, tmp_path) -> Path:
    for v in (V1, V2, V3):
        _export(fitted, tmp_path, v)
    return tmp_path


def test_first_export_is_current_later_exports_are_candidates(store) -> None:
    found = aliases.read_aliases(store, MODEL)
    assert found is not None and found.current == V1 and found.previous is None
    assert list_versions(store, MODEL) == [V1, V2, V3]  # alias files are not versions
    log = aliases.log_entries(store, MODEL)
    assert [(e["action"], e["from"], e["to"]) for e in log] == [("bootstrap", None, V1)]
    assert log[0]["by"] and "bootstrap" in log[0]["why"]
    statuses = {v: aliases.status_of(store, MODEL, v, found)["status"] for v in list_versions(store, MODEL)}
    assert statuses == {V1: "current", V2: "candidate", V3: "candidate"}


def test_daily_resolution_reads_current_not_the_newest(store) -> None:
    assert resolve_package(store, MODEL, "current").name == V1
    assert load_corrector(store, MODEL, "current").manifest.version == V1
    assert resolve_package(store, MODEL, "latest").name == V3  # still accepted, explicitly
    assert resolve_package(store, MODEL, V2).name == V2
    from bias_correction.config import Settings

    assert Settings().model_version == "current"


def test_store_without_alias_file_falls_back_to_newest_with_one_warning(store, caplog) -> None:
    (store / MODEL / aliases.ALIAS_FILE).unlink()
    aliases._WARNED.clear()
    with caplog.at_level("WARNING"):
        assert resolve_package(store, MODEL, "current").name == V3
        assert resolve_package(store, MODEL, "current").name == V3
    assert sum("has no aliases.json" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ModelContractError, match="no 'previous' version"):
        resolve_package(store, MODEL, "previous")


def test_promote_and_rollback_keep_previous_and_log_who_and_why(store) -> None:
    new = aliases.set_current(store, MODEL, V3, why="better on March", actor="alice@ops", action="manual-promote")
    assert (new.current, new.previous) == (V3, V1)
    assert resolve_package(store, MODEL, "current").name == V3
    assert resolve_package(store, MODEL, "previous").name == V1
    back = aliases.rollback(store, MODEL, why="March product looked wrong", actor="bob@ops")
    assert (back.current, back.previous) == (V1, V3)
    entries = aliases.log_entries(store, MODEL)
    assert [(e["action"], e["from"], e["to"], e["by"]) for e in entries[1:]] == [
        ("manual-promote", V1, V3, "alice@ops"), ("rollback", V3, V1, "bob@ops")]
    assert entries[-1]["why"] == "March product looked wrong" and entries[-1]["at"] > entries[-2]["at"]
    # the alias file is whole JSON (written by rename), the log is append-only JSON lines
    assert json.loads((store / MODEL / aliases.ALIAS_FILE).read_text())["current"] == V1
    assert len((store / MODEL / aliases.LOG_FILE).read_text().splitlines()) == 3


def test_bad_alias_changes_are_refused_by_name(store) -> None:
    with pytest.raises(ModelContractError, match="no complete version 'v9'"):
        aliases.set_current(store, MODEL, "v9", why="typo")
    with pytest.raises(ConfigError, match="needs a reason"):
        aliases.set_current(store, MODEL, V2, why="  ")
    with pytest.raises(ModelContractError, match="no previous version"):
        aliases.rollback(store, MODEL, why="nothing to go back to")
    (store / MODEL / V2 / "manifest.json").write_text((store / MODEL / V2 / "manifest.json").read_text()
                                                       .replace('"mean-bias"', '"mean-bias "', 1))
    with pytest.raises(ModelContractError, match="does not match"):  # a corrupted package is never made current
        aliases.set_current(store, MODEL, V2, why="corrupt")
    assert aliases.read_aliases(store, MODEL).current == V1


def _toml(store: Path, path: Path) -> Path:
    path.write_text(f'model_store = "{store}"\nstorage_root = "{store.parent / "data"}"\nmodel_id = "{MODEL}"\n')
    return path


def _sstbc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


def test_sstbc_models_list_show_promote_rollback(store, tmp_path, capsys) -> None:
    from flows.cli import main

    cfg = str(_toml(store, tmp_path / "c.toml"))
    aliases.write_json_atomic(store / MODEL / V2 / aliases.PROMOTION_FILE,
                              {"decision": "refused", "current": V1, "reason": "not better: interval [-0.01, +0.02]"})
    # a real process: the human listing
    out = _sstbc("models", "list", "--config", cfg)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"  * {V1}  current" in lines
    assert f"    {V2}  candidate  not better: interval [-0.01, +0.02]" in lines
    assert f"    {V3}  candidate  not scored against the current version" in lines

    assert main(["models", "promote", V3, "--why", "operator choice", "--by", "carol", "--config", cfg]) == 0
    assert f"{MODEL}: current = {V3} (previous {V1})" in capsys.readouterr().out
    assert main(["models", "list", "--config", cfg, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {v["version"]: v["status"] for v in listing["models"][0]["versions"]}
    assert rows == {V1: "previous", V2: "candidate", V3: "current"}

    out = _sstbc("models", "show", V2, "--config", cfg)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{MODEL} {V2}: candidate (not better") and "mean-bias" in out.stdout
    assert "promotion: refused against " + V1 in out.stdout and "regimes gofs3.1" in out.stdout
    assert main(["models", "show", "--config", cfg, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "current" and shown["manifest"]["version"] == V3
    assert [e["by"] for e in shown["log"]] == ["carol"]

    assert main(["models", "rollback", "--why", "back to the tested one", "--config", cfg]) == 0
    assert aliases.read_aliases(store, MODEL).current == V1

    # user errors: one line, exit 2
    bad = _sstbc("models", "promote", "v9", "--why", "x", "--config", cfg)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no complete version 'v9'" in bad.stderr
    with pytest.raises(SystemExit) as exit_:
        main(["models", "rollback", "--config", cfg])
    assert exit_.value.code == 2 and "--why" in capsys.readouterr().err
