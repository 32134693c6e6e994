"""Product self-checks of verification (``verification.product_checks``) on constructed fields."""

from __future__ import annotations

import numpy as np
import pytest

from bias_correction.io.product import FLAG_MASKS, FLAG_MEANINGS, QF_GUARD_PERSISTENCE, QF_LAND, QF_LARGE_CORRECTION
from bias_correction.verification.product_checks import edge_interior_rmse, flag_shares


def test_edge_band_error_shows_in_the_ratio_and_a_uniform_error_does_not() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(28.0, 1.0, (3, 20, 20))
    mask = np.ones((20, 20), bool)
    mask[8:10, 8:10] = False  # land inside: excluded from both
    uniform = truth + rng.normal(0.0, 0.2, truth.shape)
    r = edge_interior_rmse(uniform, truth, mask)
    assert r["ratio"] == pytest.approx(1.0, abs=0.1) and r["rmse_interior"] == pytest.approx(0.2, rel=0.1)
    banded = uniform.copy()
    banded[:, :4] += 0.4  # a northern edge band of +0.4 degC
    b = edge_interior_rmse(banded, truth, mask)
    assert b["ratio"] > 1.3 and b["rmse_interior"] == pytest.approx(r["rmse_interior"])
    assert b["cells_edge"] + b["cells_interior"] == 3 * (400 - 4)


def test_flag_shares_count_ocean_cells_per_bit() -> None:
    mask = np.zeros((2, 10, 10), bool)
    mask[:, :, 5:] = True  # half the cells are ocean
    qf = np.where(mask, 0, QF_LAND).astype(np.int8)
    qf[0, 0, 5:] |= QF_LARGE_CORRECTION  # 5 of 100 ocean cells
    qf[1][mask[1]] |= QF_GUARD_PERSISTENCE  # lead 2 carries persistence
    s = flag_shares(qf, mask[0], FLAG_MASKS, FLAG_MEANINGS)
    assert s["land"] == pytest.approx(0.5)
    assert s["large_correction"] == pytest.approx(0.05)
    assert s["guard_carries_persistence"] == pytest.approx(0.5)
    assert s["guard_carries_raw_hycom"] == 0.0
    with pytest.raises(ValueError, match="flag_meanings"):
        flag_shares(qf, mask[0], FLAG_MASKS, "land only")
