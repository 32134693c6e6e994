"""The weights cache: keyed by a sha256 of the grids and method, reused across days and
processes, and never trusted when the file is corrupt or belongs to other grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bias_correction.grid.weights as weights_mod
from bias_correction.config import Region
from bias_correction.grid.grids import target_grid
from bias_correction.grid.regrid import Regridder
from bias_correction.grid.weights import (
    clear_memory_cache,
    get_weights,
    load_weights,
    weights_key,
)

LAT = np.round(np.arange(11.125, 17, 0.25), 6)
LON = np.round(np.arange(109.125, 115, 0.25), 6)
GRID = target_grid(Region(), 0.08)


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    clear_memory_cache()
    yield
    clear_memory_cache()


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = weights_mod.build_weights

    def counting(*args, **kwargs):
        calls.append(args[3] if len(args) > 3 else kwargs.get("method", "bilinear"))
        return real(*args, **kwargs)

    monkeypatch.setattr(weights_mod, "build_weights", counting)
    return calls


def _files(d: Path) -> list[Path]:
    return sorted(d.glob("regrid-*.npz"))


def test_weights_are_written_once_and_reused_by_a_new_process(tmp_path, monkeypatch) -> None:
    calls = _count_builds(monkeypatch)
    w1 = get_weights(LAT, LON, GRID, "bilinear", tmp_path)
    assert calls == ["bilinear"] and len(_files(tmp_path)) == 1
    assert get_weights(LAT, LON, GRID, "bilinear", tmp_path) is w1  # same process: memory
    clear_memory_cache()  # a new process: only the disk cache is left
    w2 = get_weights(LAT, LON, GRID, "bilinear", tmp_path)
    assert calls == ["bilinear"]
    assert w2.key == w1.key == weights_key(LAT, LON, GRID, "bilinear")
    field = np.random.default_rng(0).normal(20, 2, (LAT.size, LON.size))
    np.testing.assert_array_equal(w2.apply(field), w1.apply(field))
    assert not list(tmp_path.glob("*.tmp"))


def test_key_depends_on_source_grid_target_grid_and_method(tmp_path) -> None:
    other_grid = target_grid(Region(lat_max=17), 0.08)
    keys = {
        weights_key(LAT, LON, GRID, "bilinear"),
        weights_key(LAT, LON, GRID, "conservative"),
        weights_key(LAT + 0.01, LON, GRID, "bilinear"),
        weights_key(LAT, LON - 360, GRID, "bilinear"),
        weights_key(LAT, LON, other_grid, "bilinear"),
    }
    assert len(keys) == 5
    for method in ("bilinear", "conservative"):
        get_weights(LAT, LON, GRID, method, tmp_path)
    get_weights(LAT, LON, other_grid, "bilinear", tmp_path)
    assert len(_files(tmp_path)) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "empty"])
def test_a_corrupt_cache_file_is_rebuilt_not_trusted(tmp_path, monkeypatch, damage: str) -> None:
    good = get_weights(LAT, LON, GRID, "conservative", tmp_path)
    (path,) = _files(tmp_path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"<html>504 Gateway Time-out</html>")
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # change one weight inside the (uncompressed) archive: only the checksum can tell
        z = dict(np.load(path))
        z["lon_data"] = z["lon_data"].copy()
        z["lon_data"][0] += 0.25
        np.savez(path, **z)
    clear_memory_cache()
    assert load_weights(path, good.key, "conservative", good.src_shape, good.dst_shape) is None
    calls = _count_builds(monkeypatch)
    w = get_weights(LAT, LON, GRID, "conservative", tmp_path)
    assert calls == ["conservative"]  # rebuilt
    assert (w.lat != good.lat).nnz == 0 and (w.lon != good.lon).nnz == 0
    # and the rebuilt file is good again
    assert load_weights(path, good.key, "conservative", good.src_shape, good.dst_shape) is not None


def test_a_cache_file_for_other_grids_is_not_used(tmp_path) -> None:
    w = get_weights(LAT, LON, GRID, "bilinear", tmp_path)
    (path,) = _files(tmp_path)
    assert load_weights(path, "0" * 64, "bilinear", w.src_shape, w.dst_shape) is None
    assert load_weights(path, w.key, "conservative", w.src_shape, w.dst_shape) is None
    assert load_weights(path, w.key, "bilinear", (w.src_shape[0] + 1, w.src_shape[1]), w.dst_shape) is None


def test_regridder_uses_the_cache_dir(tmp_path, monkeypatch) -> None:
    da = xr.DataArray(np.full((LAT.size, LON.size), 25.0), dims=("lat", "lon"), coords={"lat": LAT, "lon": LON})
    Regridder(GRID, cache_dir=tmp_path)(da)
    clear_memory_cache()
    calls = _count_builds(monkeypatch)
    out = Regridder(GRID, cache_dir=tmp_path)(da)  # next day, next process
    assert calls == [] and np.allclose(out.values, 25.0)
