"""Nano-shaped memory: the real Nano width (hidden 4096, 32 / 8 heads of 128, MLP 12288) with 1 and 2 layers, on CPU,
at float32, bf16 and int8 weights: measured bytes per layer, extrapolated to Nano's 36 layers, next to what
`cosmos3 info --plan` (plan.py) predicts for the same shape.

What is measured: bytes in use by the C allocator (glibc mallinfo2: arena + mmapped), read after every aten op of
the forward (plan.measured_peak), so the peak is exact to one op and does not depend on timing; the weights as the
growth from building the model. One denoising step = the CFG pair's und keys/values for every layer (random, at the
prompt length) and one gen forward of both rows (`run_gen`). Activations run in the weights' dtype, except int8 on
CPU, where the linears take and give float32 (fbgemm) and the rest of the model stays float32: the plan's int8 rung
is the GPU's (bf16 around int8 linears), so its CPU figure is computed with 4-byte activations and 4-byte "rest".

The vocabulary is cut to 1,000 (the embeddings and lm_head are not per layer; the plan counts them exactly, as
tests/test_quant_plan.py checks); the extrapolation adds the real vocabulary's bytes from the plan.

    OMP_NUM_THREADS=2 python benchmarks/bench_memory.py [--tokens 1024] [--text 256] [--precisions float32,bf16,int8]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch

from cosmos3.config import PRESETS
from cosmos3.model import Cosmos3Omni, UndCache
from cosmos3.plan import activation_peak, measured_peak, transformer_components
from cosmos3.quant import quantize_int8


def build(cfg, precision: str) -> Cosmos3Omni:
    if precision == "bf16":  # parameters made in bf16: no float32 copy on the way
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            return Cosmos3Omni(cfg).eval()
        finally:
            torch.set_default_dtype(default)
    model = Cosmos3Omni(cfg).eval()
    if precision == "int8":
        quantize_int8(model)
    return model


def resident() -> int:
    """Bytes the C allocator holds now (glibc mallinfo2: arena + mmapped)."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def measure(cfg, precision: str, tokens: int, text: int) -> dict:
    gc.collect()
    base = resident()
    model = build(cfg, precision)
    gc.collect()
    weights = resident() - base
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    B, kv = 2, cfg.num_key_value_heads

    def step(n: int):
        x = torch.randn(B, n, cfg.hidden_size, dtype=dtype)
        positions = torch.zeros(B, 3, n)
        cache = UndCache([torch.randn(B, kv, text, cfg.head_dim, dtype=dtype) for _ in range(cfg.num_hidden_layers)],
                         [torch.randn(B, kv, text, cfg.head_dim, dtype=dtype) for _ in range(cfg.num_hidden_layers)])
        return model.run_gen(x, positions, cache)

    with torch.inference_mode():
        step(64)  # warm-up: one-time buffers (BLAS, dispatch) are not the step's
        start = time.perf_counter()
        _, activations = measured_peak(lambda: step(tokens))  # the step's input drawn inside: counted, as planned
        seconds = time.perf_counter() - start
    return dict(weights=weights, activations=activations, seconds=seconds)


def predicted(cfg, precision: str, tokens: int, text: int) -> dict:
    if precision == "int8":
        weights = _cpu_int8_bytes(cfg)
    else:
        weights = sum(c[precision] for c in transformer_components(cfg).values())
    nbytes = 2 if precision == "bf16" else 4
    return dict(weights=weights, activations=activation_peak(cfg, tokens, text, 2, nbytes))


def _cpu_int8_bytes(cfg) -> int:
    """The int8 rung as it sits on CPU: the plan's bytes for the quantized linears, float32 for everything else."""
    from cosmos3.quant import _targets

    with torch.device("meta"):
        model = Cosmos3Omni(cfg)
    quantized = {id(linear.weight) for _, _, linear in _targets(model)}
    total = 0
    for p in model.parameters():
        total += p.numel() + 4 * p.shape[0] if id(p) in quantized else 4 * p.numel()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=1024, help="gen tokens per CFG row")
    ap.add_argument("--text", type=int, default=256, help="prompt tokens")
    ap.add_argument("--precisions", default="float32,bf16,int8")
    ap.add_argument("--depth", type=int, default=None, help="layers to extrapolate to (default: Nano's 36)")
    args = ap.parse_args()
    torch.manual_seed(0)
    nano = PRESETS["nano"]
    depth = args.depth or nano.num_hidden_layers
    small_vocab = 1000
    rows, results = [], {}
    for precision in args.precisions.split(","):
        m, p = {}, {}
        for layers in (1, 2):
            cfg = nano.replace(num_hidden_layers=layers, vocab_size=small_vocab)
            m[layers] = measure(cfg, precision, args.tokens, args.text)
            p[layers] = predicted(cfg, precision, args.tokens, args.text)
        per_layer = {k: m[2][k] - m[1][k] for k in ("weights", "activations")}
        per_layer_plan = {k: p[2][k] - p[1][k] for k in ("weights", "activations")}
        full = nano.replace(num_hidden_layers=depth)
        vocab_extra = predicted(full, precision, args.tokens, args.text)["weights"] - predicted(
            full.replace(vocab_size=small_vocab), precision, args.tokens, args.text)["weights"]
        # Extrapolated from 2 layers: each further layer adds its measured weights and its und keys/values (the
        # only activation that grows with depth: 2 x CFG rows x kv width x prompt tokens). Not from the 1 -> 2
        # difference of the activations: with one layer, the step's input is that layer's input (one B x N x D
        # less than any deeper model), and one-time allocator buffers make the difference noisy.
        nbytes = 2 if precision == "bf16" else 4
        und_layer = 2 * 2 * nano.num_key_value_heads * nano.head_dim * args.text * nbytes
        extrapolated = {
            "weights": m[2]["weights"] + (depth - 2) * per_layer["weights"] + vocab_extra,
            "activations": m[2]["activations"] + (depth - 2) * und_layer}
        plan_full = predicted(full, precision, args.tokens, args.text)
        results[precision] = dict(
            measured={str(k): v for k, v in m.items()}, per_layer=per_layer, per_layer_plan=per_layer_plan,
            extrapolated=extrapolated, plan=plan_full,
            error={k: plan_full[k] / extrapolated[k] - 1 for k in ("weights", "activations")},
            error_2_layers={k: p[2][k] / m[2][k] - 1 for k in ("weights", "activations")})
        rows.append((precision, per_layer, per_layer_plan, m[2], p[2], extrapolated, plan_full))

    mib = 2**20
    print(f"Nano width (hidden {nano.hidden_size}, MLP {nano.intermediate_size}), CFG pair, {args.tokens} gen tokens, "
          f"{args.text} prompt tokens; MiB (GiB for {depth} layers)")
    print(f"{'precision':<10}{'layer weights':>15}{'plan':>9}{'2-layer act':>13}{'plan':>9}"
          f"{f'{depth}L weights GiB':>18}{'plan':>8}{f'{depth}L act GiB':>14}{'plan':>8}{'step total':>12}{'plan':>8}")
    for precision, pl, pp, m1, p1, ext, full in rows:  # m1, p1: the 2-layer model
        total, ptotal = ext["weights"] + ext["activations"], full["weights"] + full["activations"]
        print(f"{precision:<10}{pl['weights'] / mib:>15.1f}{pp['weights'] / mib:>9.1f}{m1['activations'] / mib:>13.1f}"
              f"{p1['activations'] / mib:>9.1f}{ext['weights'] / 2**30:>18.2f}{full['weights'] / 2**30:>8.2f}"
              f"{ext['activations'] / 2**30:>14.3f}{full['activations'] / 2**30:>8.3f}{total / 2**30:>12.2f}"
              f"{ptotal / 2**30:>8.2f}")
    print("(activations, 2 layers minus 1 layer, measured / plan: " + ", ".join(
        f"{pr} {pl['activations'] / mib:.1f} / {pp['activations'] / mib:.1f} MiB" for pr, pl, pp, *_ in rows)
          + "; the 1-layer model's input is its step's input, and one-time allocator buffers differ)")
    print(json.dumps({"bench": "memory", "tokens": args.tokens, "text": args.text, "depth": depth,
                      "results": results}))


if __name__ == "__main__":
    main()
