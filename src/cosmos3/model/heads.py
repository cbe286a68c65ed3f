"""Input and output heads of the generation pathway: patchify, timestep embedding, action and sound projections.

Shapes:
    C latent channels (48)   T latent frames   H, W latent height / width   p patch size (2)
    h = ceil(H / p), w = ceil(W / p)           P = p * p * C values per vision token (192)
    vision latent [C, T, H, W]  <->  tokens [T * h * w, P], per-token layout (p_row, p_col, C), C fastest
    sound latent [Cs, Ts]       <->  tokens [Ts, Cs]
    actions [n, A] (A = padded action width, 64)
"""

from __future__ import annotations

import math

import torch
from torch import nn

TIMESTEP_CHANNELS = 256  # width of the sinusoidal timestep features
MAX_PERIOD = 10_000


# ------------------------------------------------------------------------------------------------ patchify


def patch_grid(height: int, width: int, patch: int) -> tuple[int, int]:
    """Token rows and columns of a latent frame; odd sizes are zero-padded up to a whole patch."""
    return math.ceil(height / patch), math.ceil(width / patch)


def patchify(latent: torch.Tensor, patch: int) -> torch.Tensor:
    """[C, T, H, W] -> [T * h * w, p * p * C] (zero padding on the bottom/right edges)."""
    C, T, H, W = latent.shape
    h, w = patch_grid(H, W, patch)
    if (h * patch, w * patch) != (H, W):
        latent = nn.functional.pad(latent, (0, w * patch - W, 0, h * patch - H))
    x = latent.reshape(C, T, h, patch, w, patch)
    return x.permute(1, 2, 4, 3, 5, 0).reshape(T * h * w, patch * patch * C)  # (T, h, w, p_row, p_col, C)


def unpatchify(tokens: torch.Tensor, frames: int, height: int, width: int, patch: int) -> torch.Tensor:
    """[T * h * w, p * p * C] -> [C, T, H, W], cropping the padding patchify added."""
    h, w = patch_grid(height, width, patch)
    C = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(frames, h, w, patch, patch, C)
    x = x.permute(5, 0, 1, 3, 2, 4).reshape(C, frames, h * patch, w * patch)  # (C, T, h, p_row, w, p_col)
    return x[:, :, :height, :width]


# ------------------------------------------------------------------------------------------------ timestep


def timestep_features(t: torch.Tensor, channels: int = TIMESTEP_CHANNELS) -> torch.Tensor:
    """[n] -> [n, channels] float32 sinusoid, cosine half first, periods from 1 to MAX_PERIOD."""
    half = channels // 2
    rates = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * rates[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoid -> Linear -> SiLU -> Linear. Kept in float32 whatever the model dtype (tiny, and precision-bound)."""

    def __init__(self, hidden_size: int, scale: float):
        super().__init__()
        self.scale = scale
        self.linear_1 = nn.Linear(TIMESTEP_CHANNELS, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: sampler timesteps (0..1000), any shape -> [t.numel(), D] float32."""
        x = timestep_features(t.reshape(-1).float() * self.scale).to(self.linear_1.weight.dtype)
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


# ------------------------------------------------------------------------------------------------ actions


class _Table(nn.Module):
    """A bare [rows, cols] weight table; a module only so checkpoint names read `<name>.weight`."""

    def __init__(self, rows: int, cols: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, cols))
        nn.init.normal_(self.weight)


class DomainAwareLinear(nn.Module):
    """One affine map per embodiment domain. Weights live in a table of [domains, in * out] (the release's storage),
    so a robot arm and a car share the trunk but not their action heads."""

    def __init__(self, in_features: int, out_features: int, num_domains: int):
        super().__init__()
        self.in_features, self.out_features, self.num_domains = in_features, out_features, num_domains
        self.fc = _Table(num_domains, in_features * out_features)
        self.bias = _Table(num_domains, out_features)

    def forward(self, x: torch.Tensor, domain_id: torch.Tensor | int) -> torch.Tensor:
        """x [n, in] with one domain per row ([n] ids) or a single domain for all rows -> [n, out]."""
        # Checked where the ids are (the host for an int: no device sync per denoising step), then moved.
        ids = torch.as_tensor(domain_id, dtype=torch.long).reshape(-1)
        if ids.numel() != 1 and ids.numel() != x.shape[0]:
            raise ValueError(f"domain ids: expected 1 or {x.shape[0]} (one per action token), got {ids.numel()}")
        if bool(((ids < 0) | (ids >= self.num_domains)).any()):
            raise ValueError(f"domain id out of range [0, {self.num_domains}): {ids.tolist()}")
        if ids.numel() == 1:  # one embodiment for every token: a plain matmul
            weight = self.fc.weight[ids[0]].view(self.in_features, self.out_features)
            return x @ weight + self.bias.weight[ids[0]]
        ids = ids.to(x.device)
        weight = self.fc.weight[ids].view(-1, self.in_features, self.out_features)
        return torch.bmm(x.unsqueeze(1), weight).squeeze(1) + self.bias.weight[ids]
