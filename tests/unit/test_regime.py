"""Upstream regimes: the GOFS 3.1 -> ESPC-D-V02 switch, regimes from provenance and manifests, and
when retraining on a new regime is due."""

from __future__ import annotations

import datetime as dt

from bias_correction import regime
from bias_correction.inputs import HYCOM_SST, OISST_LATEST
from bias_correction.sources.hycom.products import ESPC_D_V02, GOFS31, product_for, run_time

SWITCH = ESPC_D_V02.first_run


def test_regime_of_day_switches_on_2024_09_05() -> None:
    assert SWITCH == dt.date(2024, 9, 5)
    assert regime.regime_of_day(dt.date(2024, 9, 4)) == regime.GOFS31_REGIME == "gofs3.1"
    assert regime.regime_of_day(dt.date(2024, 9, 5)) == regime.ESPC_D_V02_REGIME == "espc-d-v02"
    assert regime.regime_of_day(dt.date(2026, 1, 1)) == "espc-d-v02"
    assert regime.regime_of_day(dt.date(2010, 1, 1)) == "gofs3.1"  # before GOFS 3.1: the oldest regime
    # the same answer as the product table the sources fetch from
    for day in (dt.date(2021, 3, 10), SWITCH - dt.timedelta(days=1), SWITCH):
        assert regime.REGIME_OF_PRODUCT[product_for(run_time(day)).name] == regime.regime_of_day(day)


def _record(run: str, url: str, name: str = HYCOM_SST.name) -> dict[str, str]:
    return {"input": name, "run": run, "url": url, "sha256": "0" * 64, "version": "v", "archive_key": "k"}


def test_regime_of_inputs_reads_the_product_from_the_source_url() -> None:
    base = "https://tds.hycom.org/thredds/ncss/"
    gofs = _record("2024-09-04T12Z", base + GOFS31.ncss_run_path.format(run=run_time(dt.date(2024, 9, 4))))
    espc = _record("2024-09-05T12Z", base + ESPC_D_V02.ncss_run_path.format(run=run_time(SWITCH)))
    assert regime.regime_of_inputs([gofs]) == "gofs3.1"
    assert regime.regime_of_inputs([gofs, espc]) == "espc-d-v02"  # the newest run decides
    oisst = _record("2024-09-05", "https://www.ncei.noaa.gov/oisst.nc", OISST_LATEST.name)
    assert regime.regime_of_inputs([oisst]) is None  # nothing says which HYCOM system
    assert regime.regime_of_inputs([_record("2021-03-10T12Z", "http://127.0.0.1:5000/x.nc")]) is None
    assert regime.regime_of_inputs([{**_record("2021-03-10T12Z", "x"), "product": ESPC_D_V02.name}]) == "espc-d-v02"


def _manifest(start: str, end: str, **extra) -> dict:
    return {"training": {"period_start": start, "period_end": end, "data": {"runs": [start, end]}}, **extra}


def test_training_regimes_from_the_recorded_field_or_the_dates() -> None:
    assert regime.training_regimes(_manifest("2024-01-01", "2024-08-01")) == {"gofs3.1"}
    assert regime.training_regimes(_manifest("2024-08-01", "2024-10-01")) == {"gofs3.1", "espc-d-v02"}
    assert regime.training_regimes(_manifest("2024-01-01", "2024-01-02", regimes=["espc-d-v02"])) == {"espc-d-v02"}
    assert regime.training_regimes({"training": {}}) == set()
    assert regime.manifest_regimes("2024-08-01", "2024-09-30", None) == {"regimes": ["gofs3.1", "espc-d-v02"]}


def test_retraining_due_on_a_new_regime_with_enough_live_days() -> None:
    old = _manifest("2024-01-01", "2024-08-20")
    days = [SWITCH - dt.timedelta(days=30) + dt.timedelta(days=i) for i in range(30 + 59)]
    live = regime.live_days_by_regime(days)
    assert live == {"gofs3.1": 30, "espc-d-v02": 59}
    assert not regime.retraining_due(old, live, min_days=60)  # 59 days of the new regime: not yet
    live = regime.live_days_by_regime([*days, days[-1] + dt.timedelta(days=1)])
    assert regime.retraining_due(old, live, min_days=60)
    assert not regime.retraining_due(_manifest("2024-09-05", "2024-10-30"), live, min_days=60)  # trained on it
    assert not regime.retraining_due(old, {"gofs3.1": 400}, min_days=60)  # no new regime
    assert regime.first_day("espc-d-v02") == SWITCH and regime.first_day("nope") is None
