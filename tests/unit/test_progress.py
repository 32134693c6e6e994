"""Progress bars go to stderr (never stdout, which --json keeps for one object), on a terminal only."""

from __future__ import annotations

from bias_correction.progress import progress


def test_progress_bar_on_stderr_only_when_forced_or_on_a_tty(capsys, monkeypatch) -> None:
    monkeypatch.delenv("SSTBC_PROGRESS", raising=False)
    assert list(progress(range(3), desc="verify")) == [0, 1, 2]
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # not a TTY under pytest: no bar
    monkeypatch.setenv("SSTBC_PROGRESS", "1")
    assert list(progress(range(5), desc="backfill")) == list(range(5))
    out = capsys.readouterr()
    assert out.out == "" and "backfill:" in out.err and "/5 [" in out.err  # tqdm bar, cleared at the end
