from __future__ import annotations

import pytest
import torch

from bias_correction.errors import ConfigError
from bias_correction.training.architectures import (
    ARCHITECTURES,
    CorrectionModule,
    build_model,
    count_parameters,
)


def _wrapper(name: str = "convgru-sa", t: int = 3, seed: int = 0, randomise: bool = False, **kw) -> CorrectionModule:
    torch.manual_seed(seed)
    core = build_model(name, in_channels=3, features=4, hidden=8, seq_len=t, **kw)
    m = CorrectionModule(core, 20.0, 32.0).eval()
    if randomise:  # non-zero head and gamma, so every path is exercised
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return m


def _sst(b: int = 2, t: int = 3, h: int = 12, w: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 25.0 + 3.0 * torch.rand(b, t, h, w, generator=g)
    x[:, :, :3, :4] = float("nan")
    return x


@pytest.mark.parametrize(("name", "hidden", "expected"),
                         [("convgru-sa", 32, 43_743), ("convgru", 32, 42_081),
                          ("convgru-sa", 64, 144_519), ("convgru", 64, 138_977)])
def test_parameter_counts_match_models_md(name: str, hidden: int, expected: int) -> None:
    assert count_parameters(build_model(name, in_channels=1, features=16, hidden=hidden)) == expected


def test_unknown_architecture_lists_known_names() -> None:
    with pytest.raises(ConfigError) as ei:
        build_model("transformer", in_channels=3)
    for name in ARCHITECTURES:
        assert name in str(ei.value)


@pytest.mark.parametrize("name", ["convgru-sa", "convgru"])
def test_untrained_model_reproduces_last_frame(name: str) -> None:
    m = _wrapper(name)
    sst = _sst()
    with torch.no_grad():
        out = m(sst, torch.tensor([1.0, 7.0]))
    assert out.shape == (2, 12, 16)
    land = torch.isnan(sst).any(dim=1)
    assert torch.equal(torch.isnan(out), land)
    torch.testing.assert_close(out[~land], sst[:, -1][~land], atol=1e-5, rtol=0)


def test_nan_never_leaks_into_ocean_and_land_values_are_ignored() -> None:
    m = _wrapper(randomise=True)
    sst = _sst()
    sst[1, 0, 8, 8] = float("nan")  # land in one step only: that cell becomes land for sample 1
    lead = torch.tensor([2.0, 5.0])
    with torch.no_grad():
        a = m(sst, lead)
        b = m(torch.where(torch.isnan(sst), torch.full_like(sst, float("inf")), sst), lead)
        c = m(torch.where(torch.isnan(sst), torch.full_like(sst, -float("inf")), sst), lead)
    land = ~torch.isfinite(sst).all(dim=1)
    assert torch.equal(torch.isnan(a), land)
    assert bool(land[1, 8, 8]) and not bool(land[0, 8, 8])
    assert torch.isfinite(a[~land]).all()
    torch.testing.assert_close(a, b, equal_nan=True, atol=0, rtol=0)
    torch.testing.assert_close(a, c, equal_nan=True, atol=0, rtol=0)


def test_lead_changes_output_and_batch_is_independent() -> None:
    m = _wrapper(randomise=True)
    sst = _sst()
    with torch.no_grad():
        both = m(sst, torch.tensor([1.0, 7.0]))
        first = m(sst[:1], torch.tensor([1.0]))
        other = m(sst[:1], torch.tensor([7.0]))
    torch.testing.assert_close(both[:1], first, equal_nan=True, atol=1e-5, rtol=0)
    assert not torch.allclose(first.nan_to_num(), other.nan_to_num())


@pytest.mark.parametrize("kv_pool", [1, 2])
def test_torchscript_matches_eager(kv_pool: int) -> None:
    m = _wrapper(randomise=True, kv_pool=kv_pool)
    scripted = torch.jit.script(m)
    sst, lead = _sst(h=13, w=9), torch.tensor([3.0, 4.0])
    with torch.no_grad():
        torch.testing.assert_close(scripted(sst, lead), m(sst, lead), equal_nan=True, atol=1e-6, rtol=0)


def test_invalid_options_rejected() -> None:
    with pytest.raises(ConfigError):
        build_model("convgru-sa", in_channels=3, activation="relu")
    with pytest.raises(ConfigError):
        build_model("convgru-sa", in_channels=3, carry="sideways")
    with pytest.raises(ConfigError):
        CorrectionModule(build_model("convgru", in_channels=3), 30.0, 30.0)


def test_direct_framing_regresses_the_field_itself_and_scripts() -> None:
    """residual_base "none" (the paper's framing): an untrained model outputs the normalisation's minimum, not the
    last frame; a randomised one differs from its residual twin by exactly the last frame; TorchScript agrees."""
    from bias_correction.training.architectures import DIRECT

    torch.manual_seed(0)
    core = build_model("convgru-sa", in_channels=3, features=4, hidden=8, seq_len=3)
    direct = CorrectionModule(core, 20.0, 32.0, base_aux=DIRECT).eval()
    residual = CorrectionModule(core, 20.0, 32.0).eval()  # the same core weights, HYCOM as residual base
    sst = _sst()
    land = torch.isnan(sst).any(dim=1)
    with torch.no_grad():
        out = direct(sst, torch.tensor([1.0, 7.0]))
        assert torch.equal(torch.isnan(out), land)
        torch.testing.assert_close(out[~land], torch.full_like(out[~land], 20.0))  # zero head: vmin everywhere
        for p in core.parameters():
            p.add_(0.2 * torch.randn_like(p))
        lead = torch.tensor([2.0, 5.0])
        d, r = direct(sst, lead), residual(sst, lead)
        torch.testing.assert_close(r[~land] - d[~land], sst[:, -1][~land] - 20.0, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.jit.script(direct)(sst, lead), d, equal_nan=True, atol=1e-6, rtol=0)
