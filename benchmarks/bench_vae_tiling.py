"""Tiled VAE (vae_tiling.py) against whole frames: the error it adds (decode: uint8 levels, at the seams and away from
them; encode: relative error of the latents) and the decode's peak memory (the allocator's, read after every op:
plan.measured_peak), with diffusers' own AutoencoderKLWan.enable_tiling beside it. pico's trained VAE (Wan 2.2
layout, patch 2) on smooth random frames; CPU.

    OMP_NUM_THREADS=2 python benchmarks/bench_vae_tiling.py [--size 768x768] [--frames 5] [--tiles 384:96,256:64]
"""

from __future__ import annotations

import argparse
import json

import torch

from cosmos3.checkpoint import resolve_checkpoint
from cosmos3.plan import measured_peak
from cosmos3.vae import VideoVAE, to_uint8
from cosmos3.vae_tiling import Tiling, spans


def seam_mask(height: int, width: int, tiling: Tiling) -> torch.Tensor:
    """[H, W] True inside the bands two tiles share."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for size, axis in ((height, 0), (width, 1)):
        parts = spans(size // 16, tiling.tile // 16, tiling.overlap // 16)
        for (_, b0), (a1, _) in zip(parts, parts[1:]):
            if axis == 0:
                mask[a1 * 16:b0 * 16] = True
            else:
                mask[:, a1 * 16:b0 * 16] = True
    return mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="768x768", help="HxW pixels")
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--tiles", default="384:96,256:64", help="TILE:OVERLAP pixel pairs")
    args = ap.parse_args()
    H, W = map(int, args.size.split("x"))
    torch.manual_seed(0)
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(resolve_checkpoint("pico") / "vae")
    whole = VideoVAE(vae, torch.device("cpu"), torch.float32)
    pixels = torch.nn.functional.interpolate(torch.rand(1, 3, args.frames, H // 64, W // 64) * 2 - 1,
                                             size=(args.frames, H, W), mode="trilinear")
    latents = whole.encode(pixels)
    reference, whole_peak = measured_peak(lambda: whole.decode(latents))
    rows, out = [], {"size": [H, W], "frames": args.frames, "whole_peak_mib": whole_peak / 2**20, "tilings": {}}
    for spec in args.tiles.split(","):
        tiling = Tiling(*map(int, spec.split(":")))
        tiled = VideoVAE(vae, torch.device("cpu"), torch.float32, tiling)
        frames, peak = measured_peak(lambda: tiled.decode(latents))
        diff = (frames.int() - reference.int()).abs().float()  # [T, H, W, 3]
        seams = seam_mask(H, W, tiling)[None, :, :, None].expand_as(diff)
        enc = tiled.encode(pixels)
        r = dict(decode_max=int(diff.max()), decode_mean=float(diff.mean()), seam_mean=float(diff[seams].mean()),
                 elsewhere_mean=float(diff[~seams].mean()), seam_max=int(diff[seams].max()),
                 encode_rel=float((enc - latents).norm() / latents.norm()), peak_mib=peak / 2**20)
        out["tilings"][spec] = r
        rows.append((f"ours {spec}", r))
    # diffusers' tiling (it decodes each tile over all frames and keeps every tile as floats)
    t = Tiling(*map(int, args.tiles.split(",")[0].split(":")))
    vae.enable_tiling(t.tile, t.tile, t.tile - t.overlap, t.tile - t.overlap)
    raw = latents[None] / whole.inv_std[None] + whole.mean[None]
    with torch.no_grad():
        decoded, peak = measured_peak(lambda: to_uint8(vae.decode(raw).sample.clamp(-1, 1)[0]))
    vae.disable_tiling()
    diff = (decoded.int() - reference.int()).abs().float()
    out["diffusers"] = dict(decode_max=int(diff.max()), decode_mean=float(diff.mean()), peak_mib=peak / 2**20)
    print(f"pico VAE, {args.frames} frames of {H}x{W}; decode peak whole frames {whole_peak / 2**20:.1f} MiB")
    print(f"{'tiling':<16}{'max':>6}{'mean':>8}{'seam mean':>11}{'seam max':>10}{'else mean':>11}{'enc rel':>9}"
          f"{'peak MiB':>10}{'ratio':>7}")
    for name, r in rows:
        print(f"{name:<16}{r['decode_max']:>6}{r['decode_mean']:>8.3f}{r['seam_mean']:>11.3f}{r['seam_max']:>10}"
              f"{r['elsewhere_mean']:>11.3f}{r['encode_rel']:>9.4f}{r['peak_mib']:>10.1f}"
              f"{r['peak_mib'] * 2**20 / whole_peak:>7.2f}")
    d = out["diffusers"]
    print(f"{'diffusers ' + args.tiles.split(',')[0]:<16}{d['decode_max']:>6}{d['decode_mean']:>8.3f}{'':>11}{'':>10}"
          f"{'':>11}{'':>9}{d['peak_mib']:>10.1f}{d['peak_mib'] * 2**20 / whole_peak:>7.2f}")
    print(json.dumps({"bench": "vae_tiling", **out}))


if __name__ == "__main__":
    main()
