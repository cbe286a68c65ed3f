"""The video VAE wrapper: chunked decoding (first latent frame alone, then DECODE_CHUNK at a time, the causal cache
carrying the past) gives the frames of diffusers' own decode, for lengths around the chunk boundaries."""

import random

import pytest
import torch

from cosmos3.vae import VideoVAE, to_uint8
from oracle import random_wan_vae


@pytest.mark.parametrize("latent_frames", [1, 2, VideoVAE.DECODE_CHUNK + 1, VideoVAE.DECODE_CHUNK + 3])
def test_chunked_decode_equals_diffusers_decode(latent_frames):
    rng = random.Random()
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    C = 16
    vae = random_wan_vae(C, gen)
    ours = VideoVAE(vae, torch.device("cpu"), torch.float32)
    latents = torch.randn(C, latent_frames, 2, 3, generator=gen)  # normalized, as the denoiser produces them
    frames = ours.decode(latents)
    assert frames.shape == (1 + 4 * (latent_frames - 1), 32, 48, 3) and frames.dtype == torch.uint8
    raw = latents[None] / ours.inv_std[None] + ours.mean[None]
    with torch.no_grad():
        theirs = to_uint8(vae.decode(raw).sample.clamp(-1, 1)[0])
    diff = (frames.int() - theirs.int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
