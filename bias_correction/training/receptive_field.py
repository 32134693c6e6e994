"""How far a trained network's domain edge reaches into its output: ``halo_cells`` of the package manifest.

Measured, not computed from kernel sizes, by a perturbation probe at export: the network runs on a
smooth all-ocean field of (2R+1)^2 cells, then on windows of it cut to d cells around the centre, so the
centre cell is d cells from the window's edge; Delta(d) is the largest change (degC, over leads and
fields) of the centre's output against the full field. ``halo_cells`` is the smallest d from which on
Delta stays within :data:`PROBE_TOL_DEGC`.

Why a probe: it measures the thing a halo must cover -- what the zero padding at an edge does to a
cell d cells away, in degC, with the trained weights -- for every architecture of the zoo by one code
path (recurrent convolutions over T steps, dilated depthwise mixing, CBAM's 7x7 gate, attention). A
kernel-size formula needs upkeep per architecture and gives the theoretical reach (e.g. 9T+1 cells for
FAConvLSTM's dilations) where the trained network's effect has long fallen below any RMSE that matters.
For purely convolutional networks Delta is exactly 0 beyond the theoretical reach, so the probe never
exceeds it. Attention and pooled statistics make every output depend a little on the whole domain:
when Delta has not settled by R the probe says so (``converged``: false) and reports R.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bias_correction.training.architectures import CorrectionModule

#: Largest change (degC) of a cell's output that the halo may leave: half the export parity tolerance.
PROBE_TOL_DEGC = 0.005
#: Probe radius R (cells): the field is (2R+1)^2 (cost ~ R^3 cells of model calls: 16 keeps export in seconds).
PROBE_RADIUS = 16
#: Leads probed (the lead is an input channel: first, middle, last).
PROBE_LEADS = (1, 4, 7)
METHOD = ("perturbation probe: centre output on (2d+1)^2 windows of a smooth all-ocean (2R+1)^2 field vs the "
          "full field; halo_cells = smallest d with max |change| <= tolerance from d on")


def _smooth(g: torch.Generator, n: int, shape: tuple[int, ...], passes: int = 6) -> torch.Tensor:
    """Random fields [n, *shape] in [0, 1], smoothed by repeated 3x3 averaging (SST-like, no grid-scale noise)."""
    x = torch.rand(n, 1, *shape, generator=g, dtype=torch.float64)
    for _ in range(passes):
        x = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp(min=1e-9))[:, 0]


def probe_inputs(model: CorrectionModule, seq_len: int, radius: int, leads: list[int], seed: int = 7
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(sst [B,T,N,N] degC, lead [B], aux [B,T,A,N,N] or None): one sample per lead, all ocean, inside the
    training range (vmin..vmax); auxiliary fields near their normalisation offsets (the latest analysis
    close to the HYCOM field)."""
    n = 2 * radius + 1
    g = torch.Generator().manual_seed(seed)
    b = len(leads)
    vmin, vmax = float(model.vmin), float(model.vmax)
    span = vmax - vmin
    base = vmin + span * (0.3 + 0.4 * _smooth(g, b, (n, n)))
    steps = [base + 0.02 * span * (_smooth(g, b, (n, n)) - 0.5) for _ in range(seq_len)]
    sst = torch.stack(steps, dim=1).float()
    lead = torch.tensor(leads, dtype=torch.float32)
    aux = None
    if model.n_aux:
        off = model.aux_offset.reshape(1, 1, -1, 1, 1).double()
        scale = model.aux_scale.reshape(1, 1, -1, 1, 1).double()
        fields = torch.stack([torch.stack([_smooth(g, b, (n, n)) for _ in range(model.n_aux)], dim=1)
                              for _ in range(seq_len)], dim=1)  # [B, T, A, N, N]
        aux = (off + scale * (0.3 + 0.4 * fields)).float()
    return sst, lead, aux


@torch.no_grad()
def edge_effect(model: CorrectionModule, seq_len: int, *, radius: int = PROBE_RADIUS,
                leads: list[int] | None = None) -> np.ndarray:
    """Delta(d), d = 0..radius: max |centre output on the (2d+1)^2 window - on the full field| (degC)."""
    model = model.eval()
    sst, lead, aux = probe_inputs(model, seq_len, radius, leads or list(PROBE_LEADS))
    full = model(sst, lead, aux)[:, radius, radius]
    out = np.zeros(radius + 1)
    for d in range(radius + 1):
        w = slice(radius - d, radius + d + 1)
        sub = model(sst[:, :, w, w], lead, None if aux is None else aux[:, :, :, w, w])[:, d, d]
        out[d] = float((sub - full).abs().max())
    return out


def measure_halo(model: CorrectionModule, seq_len: int, *, radius: int = PROBE_RADIUS,
                 tol_degC: float = PROBE_TOL_DEGC, leads: list[int] | None = None) -> dict[str, Any]:
    """The manifest's ``halo_cells`` and how it was measured (``receptive_field``)."""
    delta = edge_effect(model, seq_len, radius=radius, leads=leads)
    above = np.flatnonzero(delta > tol_degC)
    halo = int(above.max()) + 1 if above.size else 0
    converged = halo < radius
    return {"halo_cells": min(halo, radius), "method": METHOD, "tolerance_degC": tol_degC, "probe_radius": radius,
            "converged": bool(converged),
            "edge_effect_degC": [float(f"{v:.3g}") for v in delta[: min(radius, halo + 3) + 1]]}
