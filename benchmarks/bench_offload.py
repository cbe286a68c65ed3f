"""Offload (offload.py): weight bytes on the device at peak, transfers, and the time cost, per mode.

Measured on this CPU (the "device" is the host: the copies are made, one group at a time) for one prompt's und pass
and a few CFG gen passes of a random network; then Nano's figures in bf16, computed from its parameter counts on the
meta device (no weights), for what a GPU would hold. GPU transfer speed is not measured here.

    OMP_NUM_THREADS=1 python benchmarks/bench_offload.py [--hidden 1024 --layers 8 --gen-passes 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from cosmos3.config import Cosmos3Config, get_preset
from cosmos3.model import Cosmos3Omni
from cosmos3.model.rope import text_positions
from cosmos3.offload import GEN_PARTS, Away, offload_model

MiB = 2**20


def run(model: Cosmos3Omni, ids, tokens, positions, passes: int) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    with torch.inference_mode():
        cache = model.encode_und(ids, text_positions(ids.shape[0]))
        for _ in range(passes):
            out = model.run_gen(tokens, positions, cache)
    return time.perf_counter() - started, out


def half_bytes(model: Cosmos3Omni, bytes_per: int) -> tuple[list[int], list[int], int]:
    """(und half per layer, gen half per layer, everything outside the layers) in bytes at `bytes_per` a weight."""
    und, gen = [], []
    for layer in model.layers:
        sizes = {True: 0, False: 0}
        for name, p in layer.named_parameters():
            sizes[bool(GEN_PARTS & set(name.split(".")))] += p.numel() * bytes_per
        und.append(sizes[False])
        gen.append(sizes[True])
    rest = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("layers.")) * bytes_per
    return und, gen, rest


def planned(cfg: Cosmos3Config, bytes_per: int) -> dict:
    """Device weight bytes per mode, from parameter counts (meta device)."""
    with torch.device("meta"):
        model = Cosmos3Omni(cfg)
    und, gen, rest = half_bytes(model, bytes_per)
    embed = model.embed_tokens.weight.numel() * bytes_per
    und_outside = (model.norm.weight.numel() + model.lm_head.weight.numel()) * bytes_per  # final norm, lm_head
    towers = {"und": sum(und) + und_outside, "gen": sum(gen) + rest - embed - und_outside}  # gen: + gen heads
    return {"none": sum(und) + sum(gen) + rest,
            "layers": rest + max(max(a + b for a, b in zip(h, h[1:] + h[:1])) for h in (und, gen)),
            "components": embed + max(towers.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--gen-tokens", type=int, default=1024)
    p.add_argument("--gen-passes", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    D = args.hidden
    cfg = Cosmos3Config(hidden_size=D, intermediate_size=3 * D, num_hidden_layers=args.layers,
                        num_attention_heads=D // 64, num_key_value_heads=max(1, D // 256), head_dim=64,
                        vocab_size=32000, sound_gen=False, action_gen=False)
    base = Cosmos3Omni(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.prompt,), generator=g)
    tokens = torch.randn(2, args.gen_tokens, D, generator=g)  # two CFG branches
    positions = torch.zeros(2, 3, args.gen_tokens)
    rows, outputs = [], {}
    for mode in ("none", "layers", "components"):
        model = copy.deepcopy(base)
        off = offload_model(model, "cpu", mode)
        total = sum(p.numel() * p.element_size() for p in base.parameters())
        resident = sum(p.numel() * p.element_size() for p in model.parameters() if not isinstance(p, Away))
        run(model, ids[:8], tokens[:, :8], positions[:, :, :8], 1)  # warm-up
        if off is not None:
            off.stats.peak_bytes = off.stats.resident_bytes
        seconds, outputs[mode] = run(model, ids, tokens, positions, args.gen_passes)
        peak = resident + (off.stats.peak_bytes if off else 0)
        rows.append(dict(mode=mode, seconds=round(seconds, 3), device_weight_mib=round(peak / MiB, 1),
                         of_total=round(peak / total, 3), transfers=off.stats.transfers if off else 0,
                         moved_mib=round(off.stats.bytes_moved / MiB, 1) if off else 0.0))
    same = all(torch.equal(outputs[m], outputs["none"]) for m in outputs)
    print(f"CPU, float32, hidden {D}, {args.layers} layers, prompt {args.prompt}, 2 x {args.gen_tokens} gen tokens, "
          f"{args.gen_passes} gen passes (warm-up transfers included in the counts)")
    print(f"{'mode':<12}{'seconds':>9}{'time/none':>11}{'device MiB':>12}{'of total':>10}{'transfers':>11}")
    for r in rows:
        print(f"{r['mode']:<12}{r['seconds']:>9.2f}{r['seconds'] / rows[0]['seconds']:>11.2f}"
              f"{r['device_weight_mib']:>12.1f}{r['of_total']:>10.3f}{r['transfers']:>11}")
    print(f"outputs bit-identical to no offload: {same}")
    nano = planned(get_preset("nano"), 2)
    print("Nano, bf16 weights on the device (computed from parameter counts): " +
          ", ".join(f"{m} {b / 2**30:.2f} GiB" for m, b in nano.items()))
    print(json.dumps({"bench": "offload", "rows": rows, "identical": same,
                      "nano_bf16_gib": {m: round(b / 2**30, 2) for m, b in nano.items()}}))


if __name__ == "__main__":
    main()
