"""The daily HTML report and the index page, rendered by headless Chromium: every image loads, no
console error, a screenshot is kept."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bias_correction import report
from bias_correction.io import quicklook
from bias_correction.storage import Store
from bias_correction.verification.verify import lead_scores
from tests.io.test_catalog import publish_runs
from tests.io.test_product_cf import _mask
from tests.io.test_product_stack import RUNS, one_run

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "tests" / "artifacts"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return exe


def browse(exe: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=5000", *extra, url], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("site")
    store = Store(root)
    publish_runs(store, RUNS[:3])
    rows = []
    for run in RUNS[:3]:
        ds = one_run(run)
        vkey = f"products/scs/{run:%Y/%m/%d}/sstbc_scs_{run:%Y%m%d}T12Z_convgru-sa_vv1.{run:%d}.nc"
        assert store.exists(vkey)
        quicklook.write_quicklooks(store, vkey, ds)
        truth = ds["sst_raw"].values[:, 0] - 0.25 + np.random.default_rng(run.day).normal(0, 0.1, ds["sst"].shape[2:])
        rows += lead_scores(run=run, model_id="convgru-sa", model_version="v1", product_key=vkey,
                            corrected=ds["sst"].values[:, 0], raw=ds["sst_raw"].values[:, 0], truth=truth,
                            truth_versions=["final"] * 7, valid_dates=[run.date() + dt.timedelta(days=k) for k in range(1, 8)],
                            persistence=None, mask=_mask().values)
    for run in RUNS[:3]:
        key = report.write_day_report(store, "scs", run.date(), score_rows=rows)
    return root, key


def test_report_page_lists_model_inputs_coverage_and_skill(site: tuple[Path, str]) -> None:
    root, key = site
    page = (root / key).read_text()
    assert key == "reports/scs/2021-04-22/index.html"
    assert "convgru-sa" in page and "Skill by lead, runs 2021-03-24 to 2021-04-22" in page
    assert len(re.findall(r'<img src="([^"]+)"', page)) == 8  # skill + one map per lead
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (root / key).parent.joinpath(src).resolve().is_file(), src
    assert "45/45 (100.0 %)" in page  # 48 cells, 3 land
    index = (root / report.index_page_key("scs")).read_text()
    assert index.index("2021-04-22") < index.index("2021-04-21") < index.index("2021-04-20")


def test_report_renders_in_headless_chromium_with_images_and_no_console_errors(site: tuple[Path, str]) -> None:
    exe = chromium()
    root, key = site
    url = (root / key).as_uri()
    dom = browse(exe, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images="8/8"' in dom.stdout, (re.findall(r'data-images="[^"]*"', dom.stdout), dom.stderr[-2000:])
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == [], console
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    shot = SCREENSHOT_DIR / "report_scs_2021-04-22.png"
    out = browse(exe, url, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert out.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # a broken image is caught the same way (the check is not vacuous)
    (root / "reports/scs/2021-04-22/skill_by_lead.png").unlink()
    dom = browse(exe, url, "--dump-dom")
    assert 'data-images="7/8"' in dom.stdout and 'class="missing"' in dom.stdout
