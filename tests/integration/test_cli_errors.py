"""Every failure class of the CLI: one clear stderr line, the right exit code, and under --json exactly
one JSON object on stdout (usage errors, sstbc errors, OS errors, bugs, flow failures)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from flows import cli
from flows.cli import main
from tests.conftest import toml_config


def _one_json(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def _rc(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # usage errors keep argparse's SystemExit(2)
        return int(exc.code)


@pytest.mark.parametrize("argv,match", [
    (["run", "--date", "2021-13-01", "--json"], "not a date"),
    (["run", "--json"], "--date"),
    (["fetch", "--start", "2021-03-02", "--end", "2021-03-01", "--json"], "before --start"),
    (["run", "--date", (dt.date.today() + dt.timedelta(days=3 * 365)).isoformat(), "--json"], "today"),
])
def test_usage_errors_print_one_json_object(capsys, argv, match) -> None:
    assert _rc(argv) == 2
    captured = capsys.readouterr()
    payload = _one_json(captured.out)
    assert payload["error"] == "UsageError" and match in payload["message"] and payload["command"] in ("run", "fetch")
    assert "usage:" in captured.err


def _bad_configs(tmp_path: Path) -> list[tuple[str, str]]:
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "latin1.toml").write_bytes('storage_root = "caf\xe9"\n'.encode("latin-1"))
    (tmp_path / "long.toml").write_text(f'[region]\nname = "{"a" * 300}"\n')
    return [("dir.toml", "is a directory"), ("latin1.toml", "not UTF-8"), ("long.toml", "at most 64 characters")]


def test_bad_config_files_are_one_line_config_errors(tmp_path, capsys) -> None:
    for name, match in _bad_configs(tmp_path):
        assert main(["preliminary", "--config", str(tmp_path / name), "--json"]) == 2
        captured = capsys.readouterr()
        payload = _one_json(captured.out)
        assert payload["error"] == "ConfigError" and match in payload["message"] and name in payload["message"]
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


def test_unwritable_storage_root_and_bad_inspect_input(tmp_path, capsys, monkeypatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('storage_root = "/proc/sstbc-not-writable"\n')
    assert main(["fetch", "--date", "2021-03-01", "--config", str(cfg), "--json"]) == 2
    captured = capsys.readouterr()
    payload = _one_json(captured.out)
    assert "/proc/sstbc-not-writable" in payload["message"] and len(captured.err.strip().splitlines()) == 1
    (tmp_path / "array.json").write_text("[1, 2, 3]")
    assert main(["inspect", str(tmp_path / "array.json"), "--json"]) == 2
    payload = _one_json(capsys.readouterr().out)
    assert payload["error"] == "ProductError" and "expected a JSON object" in payload["message"]


def test_pre_gofs_date_is_named_as_such_not_a_configuration_error(settings, tmp_path, capsys) -> None:
    cfg = toml_config(settings, tmp_path / "c.toml")
    assert main(["fetch", "--date", "2018-11-30", "--config", str(cfg), "--json"]) == 2
    captured = capsys.readouterr()
    payload = _one_json(captured.out)
    assert payload["error"] == "DateUnavailableError" and "2018-11-30" in payload["message"]
    assert "configuration error" not in captured.err


def test_a_bug_is_one_line_and_its_traceback_goes_to_a_log_file(tmp_path, capsys, monkeypatch) -> None:
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "cmd_inspect", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["inspect", str(tmp_path), "--json"]) == 3
    captured = capsys.readouterr()
    payload = _one_json(captured.out)
    assert payload["error"] == "KeyError" and payload["exit_code"] == 3
    [line] = captured.err.strip().splitlines()
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert log.is_file() and "Traceback" in log.read_text() and "KeyError: 'boom'" in log.read_text()


def test_a_failing_flow_prints_one_line_and_logs_prefect_output_to_a_file(prefect_harness, settings, tmp_path,
                                                                          capfd) -> None:
    cfg = toml_config(settings, tmp_path / "c.toml")  # no model package in the model store
    assert main(["run", "--date", "2021-03-01", "--config", str(cfg), "--json"]) == 2
    captured = capfd.readouterr()
    payload = _one_json(captured.out)
    assert payload["command"] == "run" and payload["error"]
    [line] = captured.err.strip().splitlines()
    assert line.startswith("sstbc: ") and "Prefect log: " in line
    log = Path(line.rsplit("Prefect log: ", 1)[1].rstrip(")"))
    assert log.parent == Path(settings.storage_root) / "logs" and "Traceback" in log.read_text()


def test_doctor_fails_non_2xx_upstream_and_leaves_nothing_behind(settings, upstream, tmp_path, capsys) -> None:
    cfg = toml_config(settings, tmp_path / "c.toml")
    text = cfg.read_text().replace(settings.upstream.oisst_https, settings.upstream.oisst_https + "/no-such-tree")
    cfg.write_text(text)
    assert main(["doctor", "--config", str(cfg), "--json"]) == 1
    checks = {c["name"]: c for c in _one_json(capsys.readouterr().out)["checks"]}
    assert not checks["upstream OISST (HTTPS)"]["ok"] and "HTTP 404" in checks["upstream OISST (HTTPS)"]["detail"]
    assert checks["storage writable"]["ok"]
    root = Path(settings.storage_root)
    assert not root.exists() or list(root.iterdir()) == []  # no probe, no .sstbc-doctor/ folder


def test_fetch_period_goes_on_past_a_bad_date_and_retries_maintenance_pages(prefect_harness, settings, upstream,
                                                                            tmp_path, capsys) -> None:
    cfg = toml_config(settings, tmp_path / "c.toml")
    upstream.faults.add(r"oisst-avhrr-v02r01\.20210305", "html200", times=None)  # stays HTML: fails, alone
    upstream.faults.add(r"FMRC_RUN_2021-03-01", "html200", times=1)  # a passing maintenance page: retried
    rc = main(["fetch", "--start", "2021-03-01", "--end", "2021-03-01", "--config", str(cfg), "--json"])
    out = _one_json(capsys.readouterr().out)
    assert rc == 1
    assert [(f["kind"], f["date"], f["error"]) for f in out["failed"]] == [("oisst", "2021-03-05", "CorruptInputError")]
    assert "still HTML" in out["failed"][0]["message"]
    from bias_correction import pipeline

    runs, days = pipeline.archive_dates(dt.date(2021, 3, 1), dt.date(2021, 3, 1), settings.training.seq_len,
                                        settings.lead_days, pipeline.training_inputs(settings)[1])
    assert out["hycom_runs"] == len(runs) and out["oisst_days"] == len(days) - 1  # every other date archived
