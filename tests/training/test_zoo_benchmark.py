"""The benchmark harness on a short twin period (statistical rows only: gridded training is covered
in test_zoo_architectures; a full run is `sstbc benchmark`)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bias_correction.training.benchmark import REFERENCE, BenchConfig, run_benchmark, scores


def test_scores_match_the_paper_definitions() -> None:
    y = np.array([[[20.0, 25.0], [np.nan, 30.0]]] * 2)
    p = y + np.array([[[0.5, -0.5], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    sc = scores(p, y, np.array([1, 2]), {"overall": 1.0, "1": 1.0, "2": 1.0})
    o = sc["overall"]
    assert o["n"] == 6 and o["mse"] == pytest.approx((0.25 + 0.25 + 1.0) / 6)
    assert o["rmse"] == pytest.approx(math.sqrt(o["mse"])) and o["mae"] == pytest.approx(2.0 / 6)
    assert o["mape"] == pytest.approx(100 * (0.5 / 20 + 0.5 / 25 + 1 / 30) / 6)
    assert o["improvement_pct"] == pytest.approx(100 * (1 - o["rmse"]))
    assert sc["per_lead"]["2"]["rmse"] == 0.0


def test_benchmark_writes_table_json_and_png(tmp_path: Path) -> None:
    cfg = BenchConfig(start=dt.date(2021, 1, 1), end=dt.date(2021, 2, 5), val_fraction=0.2,
                      models=["mean-bias", "linear-regression"])
    res = run_benchmark(cfg, tmp_path, progress=False)
    assert set(res["rows"]) == {*REFERENCE, "mean-bias", "linear-regression"}
    d = res["data"]
    assert d["periods"]["train"][1] < d["periods"]["val"][0] < d["periods"]["test"][0]
    gap = (np.datetime64(d["periods"]["test"][0]) - np.datetime64(d["periods"]["val"][1])).astype(int)
    assert gap > cfg.seq_len
    raw = res["rows"]["raw-hycom"]["scores"]
    assert raw["overall"]["improvement_pct"] == 0.0 and set(raw["per_lead"]) == {str(k) for k in range(1, 8)}
    assert res["rows"]["linear-regression"]["scores"]["overall"]["rmse"] < raw["overall"]["rmse"]
    md = (tmp_path / "results.md").read_text()
    assert "| raw HYCOM |" in md and "oracle floor" in md and "d7" in md
    assert json.loads((tmp_path / "results.json").read_text())["rows"].keys() == res["rows"].keys()
    assert (tmp_path / "benchmark.png").stat().st_size > 10_000
    again = run_benchmark(cfg, tmp_path, resume=True, progress=False)  # per-model rows reused
    assert again["rows"]["mean-bias"]["scores"] == res["rows"]["mean-bias"]["scores"]


def test_cli_has_benchmark_and_train_model() -> None:
    from flows.cli import build_parser

    p = build_parser()
    a = p.parse_args(["benchmark", "--epochs", "2", "--models", "convlstm,mean-bias", "--out", "x"])
    assert a.func.__name__ == "cmd_benchmark" and a.epochs == 2
    assert p.parse_args(["train", "--model", "faconvlstm"]).model == "faconvlstm"
