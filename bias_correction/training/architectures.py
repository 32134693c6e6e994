"""Gridded correction networks: ConvGRU-SA (models.md 3.8), ConvGRU (4), ConvLSTM (5), CA-ConvLSTM (6.3),
FAConvLSTM (7.3) and 3DCNN-CBAM-ConvLSTM-AT (8.2), one registry (:data:`ARCHITECTURES`), one interface.

Everything here is written for export: a fixed Python-int time loop (ONNX unrolls it), states built
with ``x.new_zeros`` from symbolic shapes, no ``.item()`` or numpy inside ``forward``, and code that
``torch.jit.script`` accepts (no ``**kwargs`` in forward, no indexed ModuleLists).

:class:`CorrectionModule` is the exported artefact: it takes raw HYCOM SST in degC with NaN on land
and returns corrected SST in degC with NaN on land, so ONNX parity is checked in physical units.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bias_correction import zoo
from bias_correction.errors import ConfigError

#: Input channels per time step fed to the core by :class:`CorrectionModule`:
#: normalised SST (0 on land), ocean mask, lead_days / 7; then one channel per auxiliary input.
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


def _front(in_channels: int, features: int) -> nn.Sequential:
    """Conv3d 3x3x3 + BatchNorm3d + ReLU over [B, C, T, H, W] (models.md 3.8 front end)."""
    return nn.Sequential(nn.Conv3d(in_channels, features, 3, padding=1), nn.BatchNorm3d(features), nn.ReLU())


def _zero_head(hidden: int) -> nn.Conv2d:
    head = nn.Conv2d(hidden, 1, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class ConvLSTMCell(nn.Module):
    """[i, f, o, g] = Conv_k([x, H]) (4h channels, bias, no peepholes); forget bias +1 (models.md 5)."""

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        with torch.no_grad():
            self.conv.bias[hidden:2 * hidden].fill_(1.0)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        i, f, o, g = torch.chunk(self.conv(torch.cat([x, h], dim=1)), 4, dim=1)
        c = (torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)) * mask
        h = torch.sigmoid(o) * torch.tanh(c) * mask
        return h, c


class ConvLSTM(nn.Module):
    """Front end + one ConvLSTM layer over T steps + zero-initialised residual head (models.md 5)."""

    def __init__(self, in_channels: int, features: int = 16, hidden: int = 32, seq_len: int = 4,
                 kernel: int = 3) -> None:
        super().__init__()
        self.seq_len = int(seq_len)
        self.hidden = int(hidden)
        self.front = _front(in_channels, features)
        self.cell = ConvLSTMCell(features, hidden, kernel)
        self.head = _zero_head(hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, _, _, h, w = x.shape
        feat = self.front(x.permute(0, 2, 1, 3, 4))
        hs = x.new_zeros(b, self.hidden, h, w)
        cs = x.new_zeros(b, self.hidden, h, w)
        for t in range(self.seq_len):
            hs, cs = self.cell(feat[:, :, t], hs, cs, mask)
        x_last = x[:, self.seq_len - 1, 0:1]
        return (x_last + self.head(hs)) * mask


class CBAM(nn.Module):
    """Channel attention (shared MLP on avg- and max-pooled features) then 7x7 spatial attention."""

    def __init__(self, channels: int, ratio: int = 4, min_hidden: int = 4, spatial_kernel: int = 7) -> None:
        super().__init__()
        mid = max(min_hidden, channels // ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.ReLU(), nn.Conv2d(mid, channels, 1))
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, u: Tensor) -> Tensor:
        avg = u.mean(dim=(2, 3), keepdim=True)
        mx = u.amax(dim=(2, 3), keepdim=True)
        u = u * torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        s = torch.cat([u.mean(dim=1, keepdim=True), u.amax(dim=1, keepdim=True)], dim=1)
        return u * torch.sigmoid(self.spatial(s))


class CBAMConvLSTMAT(nn.Module):
    """3DCNN-CBAM-ConvLSTM-AT as proposed in models.md 8.2.

    3D-CNN + BN front end, CBAM on every time slice (shared weights), ConvLSTM keeping every H_t,
    per-pixel temporal attention (e_t = 1x1 conv of H_t, softmax over T, context = sum alpha_t H_t),
    zero-initialised residual head on the context. CBAM's pooled statistics make the output depend
    on the domain, so it runs on the training tile.
    """

    def __init__(self, in_channels: int, features: int = 16, hidden: int = 32, seq_len: int = 4,
                 cbam_ratio: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.seq_len = int(seq_len)
        self.hidden = int(hidden)
        self.front = _front(in_channels, features)
        self.cbam = CBAM(features, cbam_ratio)
        self.cell = ConvLSTMCell(features, hidden, kernel)
        self.score = nn.Conv2d(hidden, 1, 1)
        self.head = _zero_head(hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, _, _, h, w = x.shape
        feat = self.front(x.permute(0, 2, 1, 3, 4))
        hs = x.new_zeros(b, self.hidden, h, w)
        cs = x.new_zeros(b, self.hidden, h, w)
        states: list[Tensor] = []
        scores: list[Tensor] = []
        for t in range(self.seq_len):
            u = self.cbam(feat[:, :, t] * mask)
            hs, cs = self.cell(u, hs, cs, mask)
            states.append(hs)
            scores.append(self.score(hs))
        alpha = torch.softmax(torch.stack(scores, dim=1), dim=1)  # [B, T, 1, H, W]
        context = (alpha * torch.stack(states, dim=1)).sum(dim=1) * mask
        x_last = x[:, self.seq_len - 1, 0:1]
        return (x_last + self.head(context)) * mask


class _LinearMHA(nn.Module):
    """Multi-head self-attention over the middle axis of [N, L, C] (in_proj C->3C, out_proj C->C)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if heads < 1:
            raise ConfigError(f"attention heads must be >= 1, got {heads}")
        # the largest head count <= heads that divides the width (4 heads need hidden % 4 == 0)
        heads = max(d for d in range(1, int(heads) + 1) if channels % d == 0)
        self.heads = int(heads)
        self.dh = channels // heads
        self.scale = 1.0 / math.sqrt(self.dh)
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, u: Tensor) -> Tensor:
        n, length, c = u.shape
        qkv = self.in_proj(u).reshape(n, length, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [N, heads, L, dh]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(n, length, c)
        return self.out_proj(out)


class AxialAttention(nn.Module):
    """H <- H + MHA_row(GN(H)); H <- H + MHA_col(GN(H)) (models.md 7.3); O(N (H + W)) memory."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm_row = nn.GroupNorm(1, channels)
        self.norm_col = nn.GroupNorm(1, channels)
        self.row = _LinearMHA(channels, heads)
        self.col = _LinearMHA(channels, heads)

    def forward(self, u: Tensor) -> Tensor:
        b, c, h, w = u.shape
        r = self.norm_row(u).permute(0, 2, 3, 1).reshape(b * h, w, c)
        u = u + self.row(r).reshape(b, h, w, c).permute(0, 3, 1, 2)
        col = self.norm_col(u).permute(0, 3, 2, 1).reshape(b * w, h, c)
        return u + self.col(col).reshape(b, w, h, c).permute(0, 3, 2, 1)


class FAConvLSTM(nn.Module):
    """FAConvLSTM per models.md 7.3 (every number ours; the reference code was not available).

    Per step: 1x1 bottleneck projections of x_t and H_{t-1} (GroupNorm(1) + dropout), shared
    multi-scale dilated depthwise mixing (k,d) in {(3,1),(5,2),(7,3)} summed, squeeze-and-excitation
    (r=4) + GroupNorm, fused 1x1 gates with per-channel peepholes on i and f (forget bias +1), then
    axial row/column attention when t % K == 0 and at the last step. The subspace head is off (it adds
    nothing to the corrected field). ``laplacian_penalty`` gives the optional smoothness term of the
    last forward in training (L_lap on H_t, models.md 7.1 item 7).
    """

    def __init__(self, in_channels: int, features: int = 16, hidden: int = 32, seq_len: int = 4,
                 bottleneck: int = 0, axial_every: int = 2, heads: int = 4, se_ratio: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.seq_len = int(seq_len)
        self.hidden = int(hidden)
        cb = int(bottleneck) if bottleneck > 0 else max(8, hidden // 4)
        self.axial_every = int(axial_every)
        if self.axial_every < 1:
            raise ConfigError(f"axial_every must be >= 1, got {axial_every}")
        self.front = _front(in_channels, features)
        self.proj_x = nn.Conv2d(features, cb, 1)
        self.proj_h = nn.Conv2d(hidden, cb, 1)
        self.norm_x = nn.GroupNorm(1, cb)
        self.norm_h = nn.GroupNorm(1, cb)
        self.drop = nn.Dropout(dropout)
        c2 = 2 * cb
        self.dw3 = nn.Conv2d(c2, c2, 3, padding=1, dilation=1, groups=c2)
        self.dw5 = nn.Conv2d(c2, c2, 5, padding=4, dilation=2, groups=c2)
        self.dw7 = nn.Conv2d(c2, c2, 7, padding=9, dilation=3, groups=c2)
        mid = max(1, c2 // se_ratio)
        self.se = nn.Sequential(nn.Conv2d(c2, mid, 1), nn.ReLU(), nn.Conv2d(mid, c2, 1))
        self.norm_d = nn.GroupNorm(1, c2)
        self.gates = nn.Conv2d(c2, 4 * hidden, 1)
        with torch.no_grad():
            self.gates.bias[hidden:2 * hidden].fill_(1.0)
        self.peep_i = nn.Parameter(torch.zeros(hidden, 1, 1))
        self.peep_f = nn.Parameter(torch.zeros(hidden, 1, 1))
        self.axial = AxialAttention(hidden, heads)
        #: No-op tap on the last hidden state H_T (no parameters, nothing in the exported graph): training
        #: hooks it for the optional Laplacian term (``laplacian_penalty``, Training.laplacian_weight).
        self.hidden_tap = nn.Identity()
        self.head = _zero_head(hidden)

    def _step(self, xt: Tensor, h: Tensor, c: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        z = self.drop(self.norm_x(self.proj_x(xt)))
        r = self.drop(self.norm_h(self.proj_h(h)))
        u = torch.cat([z, r], dim=1)
        d = self.dw3(u) + self.dw5(u) + self.dw7(u)
        d = d * torch.sigmoid(self.se(d.mean(dim=(2, 3), keepdim=True)))
        d = self.norm_d(d)
        i, f, o, g = torch.chunk(self.gates(d), 4, dim=1)
        i = i + self.peep_i * c
        f = f + self.peep_f * c
        c = (torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)) * mask
        h = torch.sigmoid(o) * torch.tanh(c) * mask
        return h, c

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, _, _, hh, ww = x.shape
        feat = self.front(x.permute(0, 2, 1, 3, 4))
        h = x.new_zeros(b, self.hidden, hh, ww)
        c = x.new_zeros(b, self.hidden, hh, ww)
        for t in range(self.seq_len):
            h, c = self._step(feat[:, :, t], h, c, mask)
            if (t + 1) % self.axial_every == 0 or t == self.seq_len - 1:
                h = self.axial(h) * mask
        h = self.hidden_tap(h)
        x_last = x[:, self.seq_len - 1, 0:1]
        return (x_last + self.head(h)) * mask


def laplacian_penalty(h: Tensor) -> Tensor:
    """Optional FAConvLSTM smoothness term: mean squared difference of neighbouring cells of H."""
    dy = h[:, :, 1:, :] - h[:, :, :-1, :]
    dx = h[:, :, :, 1:] - h[:, :, :, :-1]
    return (dy * dy).mean() + (dx * dx).mean()


class _Attention2d(nn.Module):
    """softmax(q k^T / sqrt(c)) v + query over H*W positions; q from ``a``, k/v from ``b`` (models.md 6.2).

    q, k, v are separate 1x1 convs c -> c; no gamma (the repo's residual). ``kv_pool`` > 1 pools the
    key/value source first (memory / kv_pool^2; models.md 11.2).
    """

    def __init__(self, channels: int, kv_pool: int = 1) -> None:
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.kv_pool = int(kv_pool)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        n, c, h, w = a.shape
        src = b
        if self.kv_pool > 1:
            src = F.avg_pool2d(b, self.kv_pool, self.kv_pool, ceil_mode=True)
        q = self.q(a).flatten(2)
        k = self.k(src).flatten(2)
        v = self.v(src).flatten(2)
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.scale, dim=-1)  # [B, N, M]
        return a + torch.matmul(v, attn.transpose(1, 2)).reshape(n, c, h, w)


class CALayer(nn.Module):
    """One CA-ConvLSTM layer: two ConvLSTM cells + shared self-attention and cross-attention on h, c."""

    def __init__(self, in1: int, in2: int, hidden: int, kv_pool: int = 1) -> None:
        super().__init__()
        self.cell1 = ConvLSTMCell(in1, hidden)
        self.cell2 = ConvLSTMCell(in2, hidden)
        self.sa_h = _Attention2d(hidden, kv_pool)
        self.sa_c = _Attention2d(hidden, kv_pool)
        self.ca_h = _Attention2d(hidden, kv_pool)
        self.ca_c = _Attention2d(hidden, kv_pool)

    def forward(self, x1: Tensor, x2: Tensor, h1: Tensor, c1: Tensor, h2: Tensor, c2: Tensor,
                mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h1, c1 = self.cell1(x1, h1, c1, mask)
        h2, c2 = self.cell2(x2, h2, c2, mask)
        h1 = self.sa_h(h1, h1)
        c1 = self.sa_c(c1, c1)
        h2 = self.sa_h(h2, h2)
        c2 = self.sa_c(c2, c2)
        h1n = self.ca_h(h1, h2) * mask
        c1n = self.ca_c(c1, c2) * mask
        h2n = self.ca_h(h2, h1) * mask
        c2n = self.ca_c(c2, c1) * mask
        return h1n, c1n, h2n, c2n


class CAConvLSTM(nn.Module):
    """CA-ConvLSTM adapted to bias correction (models.md 6.2-6.3): many-to-one, residual, masked.

    Stream 1 = HYCOM SST, mask, lead. Stream 2 = the auxiliary inputs (channels 3.. of ``x``: HYCOM
    ``surf_el`` anomaly by default, or the latest OISST analysis) with mask and lead. Without auxiliary
    inputs, stream 2 falls back to the day-to-day HYCOM SST tendency (x_t - x_{t-1} of the normalised
    field, times ``tendency_scale``; 0 at t = 0; models.md 6.3). No front end (as in the repo); attention and
    decoder weights shared by the streams; decoder Conv3x3 -> ReLU -> Conv3x3 (zero-initialised last
    conv, so an untrained model is raw HYCOM). Attention is over all H*W positions: tile-only.
    """

    def __init__(self, in_channels: int, features: int = 16, hidden: int = 32, seq_len: int = 4,
                 layers: int = 2, kv_pool: int = 1, tendency_scale: float = 10.0) -> None:
        super().__init__()
        del features  # no 3-D front end in CA-ConvLSTM; accepted for the common interface
        if layers < 1:
            raise ConfigError(f"layers must be >= 1, got {layers}")
        self.seq_len = int(seq_len)
        self.hidden = int(hidden)
        self.n_layers = int(layers)
        self.tendency_scale = float(tendency_scale)
        # Channels beyond the wrapper's (SST, mask, lead) are auxiliary inputs: they become stream 2.
        self.n_aux = max(0, int(in_channels) - WRAPPER_CHANNELS)
        in1 = WRAPPER_CHANNELS if self.n_aux > 0 else int(in_channels)
        in2 = in_channels - 1 if self.n_aux > 0 else int(in_channels)
        self.layers = nn.ModuleList(
            [CALayer(in1 if i == 0 else hidden, in2 if i == 0 else hidden, hidden, kv_pool) for i in range(layers)])
        self.dec = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(hidden, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, _, _, hh, ww = x.shape
        if self.n_aux > 0:
            x2 = x[:, :, 1:]  # mask, lead, aux...
        else:
            sst = x[:, :, 0:1]  # [B, T, 1, H, W]
            prev = torch.cat([sst[:, :1], sst[:, :-1]], dim=1)
            tend = (sst - prev) * self.tendency_scale
            x2 = torch.cat([tend, x[:, :, 1:]], dim=2)
        x1 = x[:, :, :3] if self.n_aux > 0 else x  # 3 = WRAPPER_CHANNELS (a literal for TorchScript)
        hs1: list[Tensor] = []
        cs1: list[Tensor] = []
        hs2: list[Tensor] = []
        cs2: list[Tensor] = []
        for _ in range(self.n_layers):
            z = x.new_zeros(b, self.hidden, hh, ww)
            hs1.append(z)
            cs1.append(z)
            hs2.append(z)
            cs2.append(z)
        top = x.new_zeros(b, self.hidden, hh, ww)
        for t in range(self.seq_len):
            in1 = x1[:, t]
            in2 = x2[:, t]
            n1: list[Tensor] = []
            m1: list[Tensor] = []
            n2: list[Tensor] = []
            m2: list[Tensor] = []
            for i, layer in enumerate(self.layers):
                h1, c1, h2, c2 = layer(in1, in2, hs1[i], cs1[i], hs2[i], cs2[i], mask)
                n1.append(h1)
                m1.append(c1)
                n2.append(h2)
                m2.append(c2)
                in1 = h1
                in2 = h2
            hs1, cs1, hs2, cs2 = n1, m1, n2, m2
            top = in1
        x_last = x[:, self.seq_len - 1, 0:1]
        return (x_last + self.head(self.dec(top))) * mask


#: Model id -> core network class, from the registry (``bias_correction.zoo``: each gridded spec's
#: ``build`` names a class of this module).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    s.id: globals()[str(s.build).partition(":")[2]] for s in zoo.specs(zoo.GRIDDED)}
#: Architectures whose output at a cell does not depend on the domain size (pure convolutions): they
#: run on any H/W without tiling. Every other one runs on its training tile (attention, pooled stats).
DOMAIN_INDEPENDENT = frozenset(s.id for s in zoo.specs(zoo.GRIDDED) if not s.domain_dependent)
#: Architectures with full H*W attention maps: keys/values are pooled automatically on large tiles.
KV_POOLED = frozenset(s.id for s in zoo.specs(zoo.GRIDDED) if s.kv_pooled)


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


#: ``CorrectionModule.base_aux`` of the direct framing (``training.residual_base = "none"``).
DIRECT = -2


class CorrectionModule(nn.Module):
    """The exported wrapper: raw HYCOM degC (NaN on land) + lead days -> corrected degC (NaN on land).

    The ocean mask is derived inside (finite over all T steps) so a NaN never reaches a convolution
    and the caller cannot pass a mask that disagrees with the data. vmin/vmax (degC) are buffers so
    they travel with the state_dict and become constants in the ONNX graph.
    """

    def __init__(self, core: nn.Module, vmin: float, vmax: float,
                 aux_norm: list[tuple[float, float]] | None = None, base_aux: int = -1) -> None:
        super().__init__()
        if not vmax > vmin:
            raise ConfigError(f"normalisation needs vmax > vmin, got vmin={vmin}, vmax={vmax} degC")
        aux_norm = list(aux_norm or [])
        if any(not s > 0 for _, s in aux_norm):
            raise ConfigError(f"auxiliary input scales must be > 0, got {aux_norm}")
        self.core = core
        self.lead_scale = float(LEAD_SCALE_DAYS)
        self.n_aux = len(aux_norm)
        if not DIRECT <= int(base_aux) < self.n_aux:
            raise ConfigError(f"residual base must be {DIRECT} (direct), -1 (HYCOM) or an auxiliary channel < "
                              f"{self.n_aux}, got {base_aux}")
        #: Residual base: -1 = HYCOM SST of the last step (models.md 2.3); i >= 0 = auxiliary channel i of the
        #: last step (degC, e.g. the latest OISST), so the zero-initialised head starts from that field;
        #: DIRECT (-2) = none: the head alone is the normalised corrected field (the paper's framing, models.md 2.3).
        self.base_aux = int(base_aux)
        self.register_buffer("vmin", torch.tensor(float(vmin), dtype=torch.float32))
        self.register_buffer("vmax", torch.tensor(float(vmax), dtype=torch.float32))
        # (offset, scale) per auxiliary channel: normalised = (value - offset) / scale, 0 on land.
        self.register_buffer("aux_offset", torch.tensor([o for o, _ in aux_norm], dtype=torch.float32))
        self.register_buffer("aux_scale", torch.tensor([s for _, s in aux_norm] or [], dtype=torch.float32))

    def forward(self, sst: Tensor, lead_days: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        """sst [B, T, H, W] degC, lead_days [B], aux [B, T, A, H, W] (units per input) when A > 0."""
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
        if self.n_aux > 0:
            if aux is None:
                raise RuntimeError("this model needs its auxiliary inputs (aux [B, T, A, H, W])")
            an = (aux - self.aux_offset.reshape(1, 1, -1, 1, 1)) / self.aux_scale.reshape(1, 1, -1, 1, 1)
            an = torch.where(torch.isfinite(an), an, torch.zeros_like(an)) * mask_ch
            x = torch.cat([x, an], dim=2)  # [B, T, 3 + A, H, W]
        y = self.core(x, maskf)[:, 0]  # [B, H, W], normalised; every core returns x_last + head
        if self.base_aux == -2:  # DIRECT: no residual base, the network regresses the field itself
            y = y - norm[:, t - 1]
        elif self.base_aux >= 0 and aux is not None:
            # Swap the residual base: core(x) - x_last + base, both normalised with the SST pair.
            base = aux[:, t - 1, self.base_aux]
            base_n = torch.where(torch.isfinite(base), (base - self.vmin) / rng, torch.zeros_like(base))
            y = y - norm[:, t - 1] + base_n * maskf[:, 0]
        out = y * rng + self.vmin
        return torch.where(ocean[:, 0], out, torch.full_like(out, float("nan")))
