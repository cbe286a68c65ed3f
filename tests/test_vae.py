"""The video VAE wrapper: chunked decoding (first latent frame alone, then DECODE_CHUNK at a time, the causal cache
carrying the past) gives the frames of diffusers' own decode, for lengths around the chunk boundaries."""

import random

import pytest
import torch

from cosmos3.vae import VideoVAE, to_uint8


@pytest.mark.parametrize("latent_frames", [1, 2, VideoVAE.DECODE_CHUNK + 1, VideoVAE.DECODE_CHUNK + 3])
def test_chunked_decode_equals_diffusers_decode(latent_frames):
    from diffusers import AutoencoderKLWan

    rng = random.Random()
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    C = 16
    vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=C, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
                           latents_mean=(0.3 * torch.randn(C, generator=gen)).tolist(),
                           latents_std=(0.5 + torch.rand(C, generator=gen)).tolist()).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p[0].numel()) ** 0.5) if p.ndim > 1
                    else 1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    ours = VideoVAE(vae, torch.device("cpu"), torch.float32)
    latents = torch.randn(C, latent_frames, 2, 3, generator=gen)  # normalized, as the denoiser produces them
    frames = ours.decode(latents)
    assert frames.shape == (1 + 4 * (latent_frames - 1), 32, 48, 3) and frames.dtype == torch.uint8
    raw = latents[None] / ours.inv_std[None] + ours.mean[None]
    with torch.no_grad():
        theirs = to_uint8(vae.decode(raw).sample.clamp(-1, 1)[0])
    diff = (frames.int() - theirs.int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
