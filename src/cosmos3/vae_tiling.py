"""Tiled video VAE encode and decode: large frames in overlapping spatial tiles, blended linearly where they meet.

The decoder's activations scale with the frame's area (the Wan 2.2 decoder's top stage holds hundreds of channels at
half the output resolution, for every frame of a chunk); cutting the frame into tiles bounds them by the tile's area.
Decoding streams as the untiled path does (vae.py): time chunks outside, tiles inside, each tile carrying its own
causal feature cache from one chunk to the next, so a long video never exists as floats, only as uint8 frames.

Tiling is not exact: convolutions near a tile's edge see zero padding instead of the neighbour's pixels, and the
middle block's attention spans one tile, not the whole frame. Overlapping tiles whose weights ramp linearly across
the shared band hide the edges; docs/MEMORY.md has the measured error at and away from the seams.

diffusers' AutoencoderKLWan.enable_tiling does the spatial part (its tiled_decode blends the same way), but it decodes
each tile over all frames and holds every decoded tile as floats until the end: a whole video in float32, 1.25x with
the overlaps (2.1 GB before the overlaps at 720p / 189 frames), where this streams.

Shapes: pixels [1, 3, T, H, W]; latents [1, C, T', H/16, W/16]; a tile is `tile` pixels square (a multiple of 16)
and neighbours share `overlap` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tiling:
    tile: int = 384  # pixels per tile side, a multiple of the spatial factor (16); 720p: 3 x 5 tiles
    overlap: int = 96  # pixels two neighbouring tiles share (at least); the blend ramps across them

    def check(self, spatial: int) -> "Tiling":
        if self.tile % spatial or self.overlap % spatial or not 0 < self.overlap < self.tile:
            raise ValueError(f"vae tiling: tile {self.tile} and overlap {self.overlap} must be multiples of "
                             f"{spatial} with 0 < overlap < tile")
        return self


def spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) tiles covering [0, size), consecutive ones sharing at least `overlap`; the last one ends at
    `size` (a full tile, so no thin sliver at the edge). One span when the size fits a tile."""
    if size <= tile:
        return [(0, size)]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return [(s, s + tile) for s in starts]


def ramp_weights(size: int, parts: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per span, its weight at each position of the span: 1 inside, rising linearly across the band shared with the
    previous span and falling across the band shared with the next; the weights sum to 1 at every position."""
    raw = []
    for i, (a, b) in enumerate(parts):
        x = torch.arange(a, b, dtype=torch.float64) + 0.5
        w = torch.ones(b - a, dtype=torch.float64)
        if i > 0:
            lo, hi = a, parts[i - 1][1]  # the band shared with the previous span
            w = torch.minimum(w, ((x - lo) / (hi - lo)).clamp(0, 1))
        if i + 1 < len(parts):
            lo, hi = parts[i + 1][0], b
            w = torch.minimum(w, ((hi - x) / (hi - lo)).clamp(0, 1))
        raw.append(w)
    total = torch.zeros(size, dtype=torch.float64)
    for (a, b), w in zip(parts, raw):
        total[a:b] += w
    return [(w / total[a:b]).float() for (a, b), w in zip(parts, raw)]


def tiles(height: int, width: int, tile: int, overlap: int, scale: int = 1):
    """[((r0, r1), (c0, c1), weight [(r1 - r0) * scale, (c1 - c0) * scale])] over a height x width latent grid; the
    weights ramp at `scale` times the grid's resolution (1: latents; the spatial factor: the decoded pixels)."""
    rows, cols = spans(height, tile, overlap), spans(width, tile, overlap)
    wr = ramp_weights(height * scale, [(a * scale, b * scale) for a, b in rows])
    wc = ramp_weights(width * scale, [(a * scale, b * scale) for a, b in cols])
    return [(r, c, wr[i][:, None] * wc[j][None, :]) for i, r in enumerate(rows) for j, c in enumerate(cols)]


@torch.inference_mode()
def tiled_encode(vae, pixels: torch.Tensor, tiling: Tiling, spatial: int) -> torch.Tensor:
    """[1, 3, T, H, W] -> the distribution's mode [1, C, T', H/s, W/s], tile by tile over all frames (an encoded tile
    is small; its causal cache lives only while the tile runs), blended in latent space."""
    _, _, _, H, W = pixels.shape
    out = None
    for (r0, r1), (c0, c1), weight in tiles(H // spatial, W // spatial, tiling.tile // spatial,
                                            tiling.overlap // spatial):
        enc = vae._encode(pixels[..., r0 * spatial:r1 * spatial, c0 * spatial:c1 * spatial])  # [1, 2C, T', h, w]
        mode = enc[:, :enc.shape[1] // 2]  # the mean half: a diagonal Gaussian's mode
        if out is None:
            out = torch.zeros((*mode.shape[:3], H // spatial, W // spatial), dtype=mode.dtype, device=mode.device)
        out[..., r0:r1, c0:c1] += mode * weight.to(mode)
    return out


def decode_chunk_tiled(vae, z: torch.Tensor, first: bool, caches: list[list], tiling: Tiling,
                       spatial: int) -> torch.Tensor:
    """One time chunk of post-quant latents [1, C, t, h, w] -> blended pixels [1, 3, t', h*s, w*s] (unclamped);
    `caches` holds one causal feature cache per tile (filled on the first chunk, carried to the next)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    _, _, _, h, w = z.shape
    out = None
    grid = tiles(h, w, tiling.tile // spatial, tiling.overlap // spatial, scale=spatial)
    for k, ((r0, r1), (c0, c1), weight) in enumerate(grid):
        if len(caches) <= k:
            caches.append([None] * vae._cached_conv_counts["decoder"])
        pixels = vae.decoder(z[..., r0:r1, c0:c1], feat_cache=caches[k], feat_idx=[0], first_chunk=first)
        if vae.config.patch_size is not None:
            pixels = unpatchify(pixels, patch_size=vae.config.patch_size)
        if out is None:
            out = torch.zeros((*pixels.shape[:3], h * spatial, w * spatial), dtype=pixels.dtype, device=pixels.device)
        out[..., r0 * spatial:r1 * spatial, c0 * spatial:c1 * spatial] += pixels * weight.to(pixels)
    return out
