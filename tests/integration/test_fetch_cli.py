"""`sstbc fetch` (dry run, --wait with a deadline) and `sstbc preliminary` against the stand-ins."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from flows.cli import main


def _config(settings, path: Path) -> str:
    s = settings
    path.write_text(
        f'storage_root = "{s.storage_root}"\nmodel_store = "{s.model_store}"\ngrid_halo_cells = {s.grid_halo_cells}\n'
        f'[upstream]\noisst_https = "{s.upstream.oisst_https}"\nhycom_ncss = "{s.upstream.hycom_ncss}"\n'
        '[http]\nread_timeout_s = 20\nretries = 1\nbackoff_s = 0.01\n'
    )
    return str(path)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_dry_run_lists_sizes_and_downloads_nothing(settings, upstream, tmp_path, capsys) -> None:
    cfg = _config(settings, tmp_path / "c.toml")
    upstream.settle()
    before = len(upstream.requests)
    assert main(["fetch", "--start", "2021-02-01", "--end", "2021-02-02", "--dry-run", "--config", cfg, "--json"]) == 0
    out = _json(capsys)
    kinds = {(i["kind"], i["date"]) for i in out["items"]}
    assert ("hycom", "2021-01-29") in kinds and ("oisst", "2021-02-09") in kinds  # T-1 earlier runs, 7 lead days
    assert all(i["state"] == "missing" and i["bytes"] > 0 for i in out["items"])
    assert out["bytes"] == sum(i["bytes"] for i in out["items"])
    upstream.settle()
    assert all(r.method == "HEAD" for r in upstream.requests[before:])
    assert not Path(settings.storage_root, "raw").exists()


def test_wait_polls_until_the_run_is_published(settings, upstream, tmp_path, capsys) -> None:
    cfg = _config(settings, tmp_path / "c.toml")
    day = dt.date(2021, 5, 20)
    upstream.today = day  # neither the 12Z run nor the OISST day is out yet
    timer = threading.Timer(1.5, lambda: setattr(upstream, "today", day + dt.timedelta(days=1)))
    timer.start()
    try:
        rc = main(["fetch", "--date", day.isoformat(), "--wait", "--wait-hours", "0.02", "--poll-minutes", "0.005",
                   "--config", cfg, "--json"])
    finally:
        timer.cancel()
    assert rc == 0
    items = _json(capsys)["items"]
    assert [(i["kind"], i["written"]) for i in items] == [("hycom", True), ("oisst", True)]
    assert items[1]["version"] == "preliminary"


def test_wait_gives_up_at_the_deadline_with_a_clear_message(settings, upstream, tmp_path, capsys) -> None:
    cfg = _config(settings, tmp_path / "c.toml")
    upstream.today = dt.date(2021, 5, 20)
    rc = main(["fetch", "--date", "2021-05-20", "--wait", "--wait-hours", "0.0005", "--poll-minutes", "0.005",
               "--config", cfg, "--json"])
    out = _json(capsys)
    assert rc == 2 and out["error"] == "NotYetPublishedError"
    assert "still not published after waiting" in out["message"] and "2021-05-20" in out["message"]


def test_preliminary_listing_and_refresh(settings, upstream, tmp_path, capsys) -> None:
    cfg = _config(settings, tmp_path / "c.toml")
    day = dt.date(2021, 3, 3)
    upstream.today = day + dt.timedelta(days=2)
    # --date archives the OISST day with the real clock's idea of "recent": use the library with the stand-in clock
    from bias_correction import pipeline

    ctx = pipeline.make_context(settings, today=lambda: upstream.today)
    pipeline.ensure_mask(ctx, day, day)
    assert main(["preliminary", "--config", cfg, "--json"]) == 0
    assert _json(capsys)["oisst_preliminary_days"] == [day.isoformat()]
    upstream.today = dt.date(2021, 5, 15)
    assert main(["preliminary", "--refresh", "--config", cfg, "--json"]) == 0
    out = _json(capsys)
    assert out["upgraded"] == [day.isoformat()] and out["oisst_preliminary_days"] == []
