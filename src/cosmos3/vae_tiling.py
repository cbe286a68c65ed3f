"""Tiled video VAE encode and decode: large frames in overlapping spatial tiles, blended linearly where they meet.

The decoder's activations scale with the frame's area (the Wan 2.2 decoder's top stage holds hundreds of channels at
half the output resolution, for every frame of a chunk); cutting the frame into tiles bounds them by the tile's area.
Decoding goes tile by tile, each over all frames with its own causal feature cache (the decoder's caches hold two
frames per convolution and, summed over its convolutions, are as large as its activations: decoding all tiles side by
side, chunk by chunk, kept every tile's cache and saved almost nothing). Tile rows run top to bottom and a row's
pixels are finished to uint8 once no later row reaches them, so the floats held are one row band of the video.

Tiling is not exact: convolutions near a tile's edge see zero padding instead of the neighbour's pixels, and the
middle block's attention spans one tile, not the whole frame. Overlapping tiles whose weights ramp linearly across
the shared band hide the edges; docs/MEMORY.md has the measured error at and away from the seams.

diffusers' AutoencoderKLWan.enable_tiling does the spatial part (its tiled_decode blends the same way), but it decodes
each tile over all frames and holds every decoded tile as floats until the end: a whole video in float32, 1.25x with
the overlaps (2.1 GB before the overlaps at 720p / 189 frames), where this holds one row band.

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


def _decode_tile(vae, z: torch.Tensor, chunk: int) -> torch.Tensor:
    """Post-quant latents of one tile [1, C, T', h, w] -> pixels [1, 3, T, h * s, w * s] (unclamped), over all frames
    with a causal cache of its own (first latent frame alone, then `chunk` at a time, as the whole-frame decode)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    cache = [None] * vae._cached_conv_counts["decoder"]
    starts = [0] + list(range(1, z.shape[2], chunk))
    parts = [vae.decoder(z[:, :, i:end], feat_cache=cache, feat_idx=[0], first_chunk=(i == 0))
             for i, end in zip(starts, starts[1:] + [z.shape[2]])]
    pixels = torch.cat(parts, dim=2)
    del parts, cache
    return unpatchify(pixels, patch_size=vae.config.patch_size) if vae.config.patch_size is not None else pixels


@torch.inference_mode()
def tiled_decode(vae, z: torch.Tensor, tiling: Tiling, spatial: int, chunk: int, to_uint8) -> torch.Tensor:
    """Post-quant latents [1, C, T', h, w] -> uint8 frames [T, H, W, 3]. Tile rows top to bottom; each tile decodes
    over all frames with its own causal cache (only one tile's cache and activations live at a time), its pixels
    weighted into the row's float band; a band's rows are finished (to uint8) as soon as no later row reaches them,
    and the part the next row shares is carried over. Floats held: one row band of the video, not the video."""
    _, _, _, h, w = z.shape
    tile, overlap = tiling.tile // spatial, tiling.overlap // spatial
    rows, cols = spans(h, tile, overlap), spans(w, tile, overlap)
    row_weights = ramp_weights(h * spatial, [(a * spatial, b * spatial) for a, b in rows])
    col_weights = ramp_weights(w * spatial, [(a * spatial, b * spatial) for a, b in cols])
    frames = carried = None
    for i, (r0, r1) in enumerate(rows):
        band = None  # [1, 3, T, (r1 - r0) * s, w * s]
        for j, (c0, c1) in enumerate(cols):
            pixels = _decode_tile(vae, z[..., r0:r1, c0:c1], chunk)
            if band is None:
                band = pixels.new_zeros((*pixels.shape[:4], w * spatial))
            weight = (row_weights[i][:, None] * col_weights[j][None, :]).to(pixels)
            band[..., c0 * spatial:c1 * spatial] += pixels * weight
            del pixels
        if carried is not None:
            band[..., :carried.shape[-2], :] += carried
        done = (rows[i + 1][0] - r0) * spatial if i + 1 < len(rows) else band.shape[-2]
        finished = to_uint8(band[0, :, :, :done].clamp(-1.0, 1.0))  # [T, done, W, 3]
        if frames is None:
            frames = torch.empty((finished.shape[0], h * spatial, w * spatial, 3), dtype=torch.uint8)
        frames[:, r0 * spatial:r0 * spatial + done] = finished.cpu()
        carried = band[..., done:, :].clone() if i + 1 < len(rows) else None
        del band
    return frames
