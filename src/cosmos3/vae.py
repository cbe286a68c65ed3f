"""Adapters over the release's tokenizers: the Wan 2.2 video VAE and the audio tokenizer (both diffusers classes).

Shapes:
    pixels  [1, 3, T, H, W] in [-1, 1]          frames uint8 [T, H, W, 3]
    latents [C, T', H/16, W/16], T' = 1 + (T - 1) // 4, normalized per channel with the VAE's mean / std
    sound   latents [Cs, Ts] (25 per second)  <->  waveform [2, Ts * 1920] at 48 kHz

Both VAEs are causal in time: latent frame j depends only on pixel frames up to 4j. So conditioning needs only the
frames it keeps (one frame for an image, 5 for two latent frames of video), and decoding streams one latent frame
at a time into a preallocated uint8 video instead of growing a float copy of every frame decoded so far.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .vae_tiling import Tiling, tiled_decode, tiled_encode


def _moved(module, device: torch.device, dtype: torch.dtype):
    """Move only when needed (diffusers warns about any dtype cast, even a no-op one)."""
    p = next(module.parameters())
    if p.device != device or p.dtype != dtype:
        module = module.to(device=device, dtype=dtype)
    return module.eval()


def _load_options() -> dict:
    """diffusers loads with low_cpu_mem_usage through `accelerate` when it is installed; without it (a plain install
    of this package) it falls back to the ordinary load and logs a warning that reads like a broken setup. Ask for
    the ordinary load outright then: the same weights, no warning (pico's VAE: 0.05 s either way)."""
    from diffusers.utils import is_accelerate_available

    return {} if is_accelerate_available() else {"low_cpu_mem_usage": False}


class VideoVAE:
    def __init__(self, vae, device: torch.device, dtype: torch.dtype, tiling: Tiling | bool | None = None):
        self.vae = _moved(vae, device, dtype)
        self.device, self.dtype = device, dtype
        cfg = vae.config
        self.mean = torch.tensor(cfg.latents_mean, dtype=dtype, device=device).view(-1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.latents_std, dtype=dtype, device=device).view(-1, 1, 1, 1)
        self.channels = int(cfg.z_dim)
        self.spatial = int(getattr(cfg, "scale_factor_spatial", 16) or 16)
        self.temporal = int(getattr(cfg, "scale_factor_temporal", 4) or 4)
        # Frames larger than a tile are encoded and decoded in overlapping tiles (vae_tiling.py): lower peak memory,
        # a small error near the seams. None: whole frames. True: the default tiles.
        if tiling is True:
            tiling = Tiling()
        self.tiling: Tiling | None = tiling.check(self.spatial) if tiling else None

    @classmethod
    def from_pretrained(cls, folder: Path, device: torch.device, dtype: torch.dtype,
                        tiling: Tiling | bool | None = None) -> "VideoVAE":
        from diffusers import AutoencoderKLWan

        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: no video VAE here (expected config.json and weights)")
        return cls(AutoencoderKLWan.from_pretrained(folder, **_load_options()), device, dtype, tiling)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.channels, 1 + (frames - 1) // self.temporal, height // self.spatial, width // self.spatial)

    def tiled(self, height: int, width: int) -> bool:
        """Whether a frame of height x width pixels goes through tiles (tiling on, and the frame exceeds a tile)."""
        return self.tiling is not None and max(height, width) > self.tiling.tile

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[1, 3, T, H, W] in [-1, 1] -> normalized latents [C, T', H', W'] (float32; the distribution's mode)."""
        pixels = pixels.to(self.device, self.dtype)
        if self.tiled(*pixels.shape[-2:]):
            raw = tiled_encode(self.vae, pixels, self.tiling, self.spatial)
        else:
            raw = self.vae.encode(pixels).latent_dist.mode()
        return ((raw - self.mean[None]) * self.inv_std[None])[0].float()

    # Latent frames per decoder call after the first (which decodes alone, as the causal decoder's first chunk).
    # The causal feature cache makes any chunking exact; 4 frames per call measured 2.3x faster than one at a time
    # (Conv3d over a 3-frame window per output frame is slow on CPU) with no higher peak on a 17-frame clip, and
    # memory stays bounded for long videos.
    DECODE_CHUNK = 4

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents [C, T', H', W'] -> uint8 frames [T, H, W, 3], a few latent frames at a time."""
        vae = self.vae
        z = latents.to(self.device, self.dtype)[None] / self.inv_std[None] + self.mean[None]
        z = vae.post_quant_conv(z)
        if self.tiled(z.shape[3] * self.spatial, z.shape[4] * self.spatial):
            return tiled_decode(vae, z, self.tiling, self.spatial, self.DECODE_CHUNK, to_uint8)
        frames = None
        cursor = 0
        vae.clear_cache()
        try:
            starts = [0] + list(range(1, z.shape[2], self.DECODE_CHUNK))
            for i, end in zip(starts, starts[1:] + [z.shape[2]]):
                vae._conv_idx = [0]  # the decoder's causal feature cache carries the past between chunks
                chunk = vae.decoder(z[:, :, i:end], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                    first_chunk=(i == 0))
                if vae.config.patch_size is not None:
                    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

                    chunk = unpatchify(chunk, patch_size=vae.config.patch_size)
                chunk = to_uint8(chunk.clamp(-1.0, 1.0)[0])  # [t, H, W, 3]
                if frames is None:
                    total = 1 + (z.shape[2] - 1) * self.temporal
                    # pinned host memory on a GPU: each chunk's copy overlaps the next chunk's decode (no sync)
                    frames = torch.empty((total, *chunk.shape[1:]), dtype=torch.uint8, pin_memory=chunk.is_cuda)
                frames[cursor:cursor + chunk.shape[0]].copy_(chunk, non_blocking=chunk.is_cuda)
                cursor += chunk.shape[0]
            if frames is not None and frames.is_pinned():
                torch.cuda.synchronize(self.device)  # the last copies have landed before the host reads them
        finally:
            vae.clear_cache()
        return frames[:cursor]


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3], rounding to the nearest level."""
    return ((pixels.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0)


class SoundCodec:
    def __init__(self, tokenizer, device: torch.device, dtype: torch.dtype):
        self.tokenizer = _moved(tokenizer, device, dtype)
        self.device, self.dtype = device, dtype
        self.sample_rate = int(tokenizer.config.sampling_rate)
        self.hop = int(tokenizer._hop_size)
        self.latent_fps = self.sample_rate / self.hop

    @classmethod
    def from_pretrained(cls, folder: Path, device: torch.device, dtype: torch.dtype) -> "SoundCodec":
        import warnings

        from diffusers import Cosmos3AVAEAudioTokenizer

        with warnings.catch_warnings():  # its weight-norm layers use a torch API that is deprecated, not broken
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*weight_norm.*")
            return cls(Cosmos3AVAEAudioTokenizer.from_pretrained(folder, **_load_options()), device, dtype)

    def latent_count(self, num_frames: int, fps: float) -> int:
        return math.ceil(int(num_frames / fps * self.sample_rate) / self.hop)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[Cs, Ts] -> float32 waveform [channels, Ts * hop]."""
        return self.tokenizer.decode(latents.to(self.device, self.dtype)[None])[0].float().cpu()

    @torch.inference_mode()
    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """[channels, N] at sample_rate -> latents [Cs, ceil(N / hop)]."""
        out = self.tokenizer.encode(waveform.to(self.device, self.dtype)[None])
        latents = getattr(out, "latent_dist", None)
        latents = latents.mode() if latents is not None else (out[0] if isinstance(out, tuple) else out)
        return latents[0].float().cpu()
