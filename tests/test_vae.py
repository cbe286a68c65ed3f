"""The video VAE wrapper: chunked decoding (first latent frame alone, then DECODE_CHUNK at a time, the causal cache
carrying the past) gives the frames of diffusers' own decode, for lengths around the chunk boundaries."""

import pytest
import torch

from cosmos3.vae import VideoVAE, to_uint8
from oracle import random_wan_vae, relative_error

C = 16  # latent channels: fewer than the released 48 keeps the random VAE quick


def _random_vae(gen: torch.Generator):
    """A tiny random Wan VAE drawn from `gen`, and our wrapper around it (CPU, float32)."""
    vae = random_wan_vae(C, gen)
    return vae, VideoVAE(vae, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("latent_frames", [1, 2, VideoVAE.DECODE_CHUNK + 1, VideoVAE.DECODE_CHUNK + 3])
def test_chunked_decode_equals_diffusers_decode(latent_frames, gen):
    vae, ours = _random_vae(gen)
    latents = torch.randn(C, latent_frames, 2, 3, generator=gen)  # normalized, as the denoiser produces them
    frames = ours.decode(latents)
    assert frames.shape == (1 + 4 * (latent_frames - 1), 32, 48, 3) and frames.dtype == torch.uint8
    raw = latents[None] / ours.inv_std[None] + ours.mean[None]
    with torch.no_grad():
        theirs = to_uint8(vae.decode(raw).sample.clamp(-1, 1)[0])
    diff = (frames.int() - theirs.int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3


def test_tile_spans_cover_and_weights_sum_to_one(rng):
    from cosmos3.vae_tiling import ramp_weights, spans

    for _ in range(20):
        tile = rng.randint(2, 12)
        overlap = rng.randint(1, tile - 1)
        size = rng.randint(1, 60)
        parts = spans(size, tile, overlap)
        assert parts[0][0] == 0 and parts[-1][1] == size
        assert all(b - a == min(tile, size) for a, b in parts)
        assert all(b0 - a1 >= overlap for (_, b0), (a1, _) in zip(parts, parts[1:]))  # neighbours share >= overlap
        total = torch.zeros(size)
        for (a, b), w in zip(parts, ramp_weights(size, parts)):
            total[a:b] += w
        assert torch.allclose(total, torch.ones(size), atol=1e-6)


# The error tiling may add on this tiny random VAE (dim 8; 4-latent tiles sharing 2: many seams, the worst case).
# Measured over 8 draws: decode max 1-5 levels of 255, mean 0.03-0.36 level; encode relative error 0.4-0.9%.
TILED_DECODE_MAX, TILED_DECODE_MEAN, TILED_ENCODE_REL = 8, 0.6, 0.03


@pytest.mark.parametrize("latent_frames", [1, 3])  # one frame; two decode chunks (per-tile causal caches carried)
def test_tiled_matches_whole_frames_within_the_stated_error(latent_frames, gen, rng):
    from cosmos3.vae_tiling import Tiling

    vae, whole = _random_vae(gen)
    tiled = VideoVAE(vae, torch.device("cpu"), torch.float32, Tiling(tile=64, overlap=32))
    h, w = rng.randint(7, 11), rng.randint(7, 11)  # latents: 3 to 5 tiles a side
    assert tiled.tiled(16 * h, 16 * w) and not whole.tiled(16 * h, 16 * w)
    # smooth pixels (a coarse random field, upsampled): what a VAE sees, unlike white noise
    T = 1 + 4 * (latent_frames - 1)
    pixels = torch.nn.functional.interpolate(torch.rand(1, 3, T, 4, 5, generator=gen) * 2 - 1,
                                             size=(T, 16 * h, 16 * w), mode="trilinear")
    latents = whole.encode(pixels)
    encode_error = relative_error(tiled.encode(pixels), latents)
    diff = (tiled.decode(latents).int() - whole.decode(latents).int()).abs().float()
    print(f"{h}x{w} latents, {latent_frames} frames: encode {encode_error:.4f}, decode max {int(diff.max())} "
          f"mean {float(diff.mean()):.3f} levels")
    assert encode_error < TILED_ENCODE_REL
    assert diff.max() <= TILED_DECODE_MAX and diff.mean() < TILED_DECODE_MEAN


def test_bad_tiling_is_refused():
    from cosmos3.vae_tiling import Tiling

    vae = random_wan_vae(16, torch.Generator().manual_seed(0))
    for bad in (Tiling(tile=100, overlap=32), Tiling(tile=64, overlap=64), Tiling(tile=64, overlap=0)):
        with pytest.raises(ValueError, match="tiling"):
            VideoVAE(vae, torch.device("cpu"), torch.float32, bad)


def test_vae_tiling_option(tmp_path_factory):
    from cosmos3.cli import build_parser
    from cosmos3.generator import Generator
    from cosmos3.vae_tiling import Tiling
    from oracle import tiny_generator_checkpoint

    root = tiny_generator_checkpoint(tmp_path_factory)
    assert Generator.from_pretrained(root, device="cpu", vae_tiling=True).vae.tiling == Tiling()
    assert Generator.from_pretrained(root, device="cpu").vae.tiling is None
    assert build_parser().parse_args(["generate", "p", "--vae-tiling"]).vae_tiling
    assert not build_parser().parse_args(["generate", "p"]).vae_tiling
