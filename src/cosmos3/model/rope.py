"""3D interleaved mRoPE: rotary frequencies over (T, H, W) positions, and the position ids of each modality.

Shapes:
    N   tokens in a stream          Dh  head_dim        S = Dh / 2 frequency slots
    positions  [3, N]  float32 (rows T, H, W; fractional T values are allowed)
    cos, sin   [N, Dh]

Each of the S slots reads one axis. With sections (t, h, w) the slots are interleaved as T H W T H W ...: slot i
reads H when i % 3 == 1 and i < 3h, W when i % 3 == 2 and i < 3w, and T otherwise. The S frequencies are then
duplicated (cat(f, f)) and applied with the rotate-half convention.

Position ids of a generation request (DESIGN 2.3, checked against the diffusers pipeline):
    text     0 .. L-1 on all three axes
    offset   O = L + temporal_modality_margin
    vision   T = O + j * base_fps / fps for latent frame j (only when there are several frames; one frame gets
             floor(O)); H, W = 0.. per patch row / column
    sound    T = O + k * base_fps / sound_latent_fps (floor(O) for a single latent); H = W = 0 (floor(O) if not reset)
    action   T = O + (i + 1) * (base_fps / 4) / fps for step i (floor(O) + 1 for a single step); H = W = 0
"""

from __future__ import annotations

import contextlib

import torch

VAE_TEMPORAL_COMPRESSION = 4  # the Wan 2.2 VAE folds 4 frames into one latent frame


def slot_axes(head_dim: int, axes_dim: list[int] | tuple[int, int, int]) -> torch.Tensor:
    """[S] long: which position axis (0=T, 1=H, 2=W) each frequency slot reads."""
    slots = torch.zeros(head_dim // 2, dtype=torch.long)
    slots[1 : 3 * axes_dim[1] : 3] = 1
    slots[2 : 3 * axes_dim[2] : 3] = 2
    return slots


def inverse_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """[S] float32, the standard rotary ladder theta^(-2i/Dh)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


class MRoPE(torch.nn.Module):
    """Turns [3, N] positions into (cos, sin) tables of [N, Dh]. Always computed in float32."""

    def __init__(self, head_dim: int, theta: float, axes_dim: list[int]):
        super().__init__()
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, theta), persistent=False)
        self.register_buffer("slot_axes", slot_axes(head_dim, axes_dim), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.ndim == 1:  # plain 1D positions: the same id on every axis
            positions = positions.unsqueeze(0).expand(3, -1)
        kind = positions.device.type  # autocast off where it exists (a device without autocast has none to undo)
        with torch.autocast(device_type=kind, enabled=False) if torch.amp.is_autocast_available(kind) else \
                contextlib.nullcontext():
            # bf16 cannot hold consecutive integers past 256, so positions must never be cast down.
            per_slot = positions.float()[self.slot_axes]  # [S, N]
            freqs = per_slot.transpose(0, 1) * self.inv_freq  # [N, S]
            angles = torch.cat((freqs, freqs), dim=-1)  # [N, Dh]
            return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., N, H, Dh] with cos/sin [..., N, Dh] (broadcast over the heads axis)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return x * cos + rotate_half(x) * sin


# ----------------------------------------------------------------------------------------------- position ids


def text_positions(num_tokens: int, start: float = 0.0) -> torch.Tensor:
    """[3, L]: consecutive ids on all three axes."""
    ids = torch.arange(num_tokens, dtype=torch.float32) + start
    return ids.unsqueeze(0).expand(3, -1).clone()


def modality_offset(num_text_tokens: int, margin: int = 15000) -> float:
    """Where generated modalities start on the T axis: after the text, plus a wide margin."""
    return float(num_text_tokens + margin)


def _temporal_ids(count: int, offset: float, rate: float | None, base_rate: float, first: int = 0) -> torch.Tensor:
    """[count] T ids. Tokens at `rate` per second are placed on the base clock (`base_rate` per second) starting at
    `offset`. A single token (or no fps modulation, rate None) sits on the integer grid, as the reference does.
    The arithmetic order (divide, multiply, add, in float32) follows the reference so ids agree bit for bit."""
    index = torch.arange(count, dtype=torch.float32) + first
    if rate is not None and count > 1:
        return index / rate * base_rate + offset
    return index + int(offset)


def vision_positions(frames: int, rows: int, cols: int, offset: float, fps: float | None,
                     base_fps: float = 24.0, reset_spatial: bool = True) -> torch.Tensor:
    """[3, frames * rows * cols], T-major then rows then columns. `fps=None` turns fps modulation off."""
    c = VAE_TEMPORAL_COMPRESSION  # latent frames tick at fps / 4 against base_fps / 4
    t = _temporal_ids(frames, offset, None if fps is None else fps / c, base_fps / c)
    t = t.view(-1, 1, 1).expand(frames, rows, cols)
    h = torch.arange(rows, dtype=torch.float32).view(1, -1, 1).expand(frames, rows, cols)
    w = torch.arange(cols, dtype=torch.float32).view(1, 1, -1).expand(frames, rows, cols)
    if not reset_spatial:
        h, w = h + int(offset), w + int(offset)
    return torch.stack([t.reshape(-1), h.reshape(-1), w.reshape(-1)])


def sound_positions(latents: int, offset: float, sound_fps: float | None, base_fps: float = 24.0,
                    reset_spatial: bool = True) -> torch.Tensor:
    """[3, latents]: one token per sound latent, H = W = 0 (floor(offset) when spatial ids are not reset)."""
    t = _temporal_ids(latents, offset, sound_fps, float(base_fps))
    hw = torch.full_like(t, 0.0 if reset_spatial else float(int(offset)))
    return torch.stack([t, hw, hw.clone()])


def action_positions(steps: int, offset: float, fps: float | None, base_fps: float = 24.0,
                     reset_spatial: bool = True, first: int = 1) -> torch.Tensor:
    """[3, steps]: action i belongs to video frame i + 1 (frame 0 is the observation before any action).
    Actions tick once per video frame (fps) against the latent base clock (base_fps / 4). H = W as for sound.
    `first=0`: a sequence that starts with the robot state at frame 0 (the release's use_state: as many action
    tokens as video frames, action_start_frame_offset 0)."""
    t = _temporal_ids(steps, offset, fps, base_fps / VAE_TEMPORAL_COMPRESSION, first=first)
    hw = torch.full_like(t, 0.0 if reset_spatial else float(int(offset)))
    return torch.stack([t, hw, hw.clone()])
