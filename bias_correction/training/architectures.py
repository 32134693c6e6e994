"""Gridded correction networks: ConvGRU-SA (models.md 3.8) and its ablation ConvGRU (section 4).

Everything here is written for export: a fixed Python-int time loop (ONNX unrolls it), states built
with ``x.new_zeros`` from symbolic shapes, no ``.item()`` or numpy inside ``forward``, and code that
``torch.jit.script`` accepts (no ``**kwargs`` in forward, no indexed ModuleLists).

:class:`CorrectionModule` is the exported artefact: it takes raw HYCOM SST in degC with NaN on land
and returns corrected SST in degC with NaN on land, so ONNX parity is checked in physical units.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bias_correction.errors import ConfigError

#: Input channels per time step fed to the core by :class:`CorrectionModule`:
#: normalised SST (0 on land), ocean mask, lead_days / 7.
WRAPPER_CHANNELS = 3
#: Lead days are scaled by this before they become an input channel.
LEAD_SCALE_DAYS = 7.0


class SpatialSelfAttention(nn.Module):
    """Y(u) = u + gamma * A v over the H*W positions of one frame (models.md 3.8, SAGAN-style).

    gamma starts at 0, so a fresh ConvGRU-SA *is* a ConvGRU. ``kv_pool`` > 1 average-pools keys and
    values by that stride (models.md 11.2 "alternatives"): the attention map shrinks from N x N to
    N x N/kv_pool^2 while every query position is kept. Pooling happens before the 1x1 k/v convs,
    which is exactly equivalent (a 1x1 conv commutes with average pooling) and cheaper.
    """

    def __init__(self, channels: int, kv_pool: int = 1) -> None:
        super().__init__()
        d = max(1, channels // 8)
        self.d = d
        self.kv_pool = int(kv_pool)
        self.scale = 1.0 / math.sqrt(d)
        self.q = nn.Conv2d(channels, d, 1)
        self.k = nn.Conv2d(channels, d, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, u: Tensor) -> Tensor:
        b, c, h, w = u.shape
        q = self.q(u).flatten(2)  # [B, d, N]
        src = u
        if self.kv_pool > 1:
            src = F.avg_pool2d(u, self.kv_pool, self.kv_pool, ceil_mode=True)
        k = self.k(src).flatten(2)  # [B, d, M]
        v = self.v(src).flatten(2)  # [B, c, M]
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.scale, dim=-1)  # [B, N, M]
        out = torch.matmul(v, attn.transpose(1, 2))  # [B, c, N]
        return u + self.gamma * out.reshape(b, c, h, w)


class ConvGRUSA(nn.Module):
    """3D-CNN + BN front end, one ConvGRU(-SA) cell over T steps, zero-initialised 1x1 residual head.

    Input x [B, T, C, H, W] (channel 0 = normalised SST), mask [B, 1, H, W] (1 = ocean).
    Output [B, 1, H, W]: x_last[:, 0] + head(H_T), times the mask (normalised units).
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 16,
        hidden: int = 32,
        seq_len: int = 4,
        attention: bool = True,
        activation: str = "tanh",
        carry: str = "attended",
        kv_pool: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ("tanh", "leaky_relu_0.2"):
            raise ConfigError(f"activation must be 'tanh' or 'leaky_relu_0.2', got {activation!r}")
        if carry not in ("attended", "raw"):
            raise ConfigError(f"carry must be 'attended' or 'raw', got {carry!r}")
        if kv_pool < 1:
            raise ConfigError(f"kv_pool must be >= 1, got {kv_pool}")
        self.seq_len = int(seq_len)
        self.hidden = int(hidden)
        self.use_tanh = activation == "tanh"
        self.carry_attended = carry == "attended"
        self.front = nn.Sequential(
            nn.Conv3d(in_channels, features, 3, padding=1),
            nn.BatchNorm3d(features),
            nn.ReLU(),
        )
        self.att_x: nn.Module = SpatialSelfAttention(features, kv_pool) if attention else nn.Identity()
        self.att_h: nn.Module = SpatialSelfAttention(hidden, kv_pool) if attention else nn.Identity()
        self.conv_x = nn.Conv2d(features, 3 * hidden, 3, padding=1)  # [z, r, n], with bias
        self.conv_h_zr = nn.Conv2d(hidden, 2 * hidden, 3, padding=1, bias=False)
        self.conv_h_n = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.head = nn.Conv2d(hidden, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, _, _, h, w = x.shape
        feat = self.front(x.permute(0, 2, 1, 3, 4))  # [B, F, T, H, W]
        state = x.new_zeros(b, self.hidden, h, w)
        for t in range(self.seq_len):
            xh = self.att_x(feat[:, :, t])
            hh = self.att_h(state)
            gx = self.conv_x(xh)
            xz, xr, xn = torch.chunk(gx, 3, dim=1)
            hz, hr = torch.chunk(self.conv_h_zr(hh), 2, dim=1)
            z = torch.sigmoid(xz + hz)
            r = torch.sigmoid(xr + hr)
            pre = xn + r * self.conv_h_n(hh)
            if self.use_tanh:
                cand = torch.tanh(pre)
            else:
                cand = F.leaky_relu(pre, 0.2)
            prev = hh if self.carry_attended else state
            state = ((1.0 - z) * cand + z * prev) * mask
        x_last = x[:, self.seq_len - 1, 0:1]
        return (x_last + self.head(state)) * mask


class ConvGRU(ConvGRUSA):
    """ConvGRU-SA without the attention modules (models.md section 4)."""

    def __init__(
        self,
        in_channels: int,
        features: int = 16,
        hidden: int = 32,
        seq_len: int = 4,
        activation: str = "tanh",
        carry: str = "attended",
    ) -> None:
        super().__init__(in_channels, features, hidden, seq_len, attention=False,
                         activation=activation, carry=carry)


ARCHITECTURES: dict[str, Callable[..., ConvGRUSA]] = {
    "convgru-sa": ConvGRUSA,
    "convgru": ConvGRU,
}


def build_model(name: str, **kw: Any) -> nn.Module:
    """Instantiate a registered core network; unknown names fail with the list of known ones."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return cls(**kw)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class CorrectionModule(nn.Module):
    """The exported wrapper: raw HYCOM degC (NaN on land) + lead days -> corrected degC (NaN on land).

    The ocean mask is derived inside (finite over all T steps) so a NaN never reaches a convolution
    and the caller cannot pass a mask that disagrees with the data. vmin/vmax (degC) are buffers so
    they travel with the state_dict and become constants in the ONNX graph.
    """

    def __init__(self, core: nn.Module, vmin: float, vmax: float) -> None:
        super().__init__()
        if not vmax > vmin:
            raise ConfigError(f"normalisation needs vmax > vmin, got vmin={vmin}, vmax={vmax} degC")
        self.core = core
        self.lead_scale = float(LEAD_SCALE_DAYS)
        self.register_buffer("vmin", torch.tensor(float(vmin), dtype=torch.float32))
        self.register_buffer("vmax", torch.tensor(float(vmax), dtype=torch.float32))

    def forward(self, sst: Tensor, lead_days: Tensor) -> Tensor:
        finite = torch.isfinite(sst)  # [B, T, H, W]
        ocean = finite.all(dim=1, keepdim=True)  # [B, 1, H, W]
        maskf = ocean.to(sst.dtype)
        rng = self.vmax - self.vmin
        norm = torch.where(finite, (sst - self.vmin) / rng, torch.zeros_like(sst))
        norm = norm * maskf  # every step zero where any step is land: one static mask per sample
        t = sst.shape[1]
        mask_ch = maskf.unsqueeze(1).expand(-1, t, -1, -1, -1)  # [B, T, 1, H, W]
        lead = (lead_days.to(sst.dtype) / self.lead_scale).reshape(-1, 1, 1, 1, 1)
        lead_ch = lead * torch.ones_like(mask_ch)
        x = torch.cat([norm.unsqueeze(2), mask_ch, lead_ch], dim=2)  # [B, T, 3, H, W]
        y = self.core(x, maskf)[:, 0]  # [B, H, W], normalised
        out = y * rng + self.vmin
        return torch.where(ocean[:, 0], out, torch.full_like(out, float("nan")))
