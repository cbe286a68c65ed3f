"""One denoising step with classifier-free guidance: ours against diffusers' Cosmos3OmniTransformer.

Same random weights and inputs, float32, one process. The reference runs its full forward twice per step (positive
and negative prompt), recomputing the text each time. Ours computes each prompt's und keys/values once per request
(timed separately: it is paid once, not per step) and runs both CFG branches as one batched gen forward.

    python benchmarks/bench_transformer.py              # both cases of the issue, prints a table and one JSON line
    python benchmarks/bench_transformer.py --repeat 5 --cases a

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cosmos3.config import Cosmos3Config  # noqa: E402
from cosmos3.model import Cosmos3Omni, GenInputs, UndCache  # noqa: E402
from cosmos3.model.heads import patch_grid  # noqa: E402
from cosmos3.model.rope import modality_offset, text_positions, vision_positions  # noqa: E402
from oracle import build_reference, reference_forward, relative_error  # noqa: E402

CASES = {"a": 1000, "b": 128}  # positive-prompt text tokens; gen tokens are 1280 in both
GUIDANCE = 6.0


def bench_config() -> Cosmos3Config:
    return Cosmos3Config(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                         head_dim=64, intermediate_size=1536, vocab_size=4096, latent_channel=48,
                         patch_latent_dim=192)


def timed_pair(fn_a, fn_b, repeat: int) -> tuple[float, float, float, object, object]:
    """Time two functions alternately (a, b, a, b, ...) so load from other processes hits both alike.
    Returns (median a seconds, median b seconds, median of the per-pair ratios a / b, last outputs)."""
    out_a, out_b = fn_a(), fn_b()  # warm-up
    times_a, times_b = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        out_a = fn_a()
        times_a.append(time.perf_counter() - start)
        start = time.perf_counter()
        out_b = fn_b()
        times_b.append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(times_a, times_b))
    return statistics.median(times_a), statistics.median(times_b), ratio, out_a, out_b


def run_case(name: str, text_tokens: int, neg_ratio: float, repeat: int, ref, ours, cfg, gen) -> dict:
    T, H, W, fps = 5, 32, 32, 24.0  # 5 latent frames of 16x16 patches = 1280 gen tokens
    lengths = [text_tokens, max(1, int(text_tokens * neg_ratio))]
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=gen) for n in lengths]
    noisy = torch.ones(T, dtype=torch.bool)
    noisy[0] = False  # image-to-video: the first latent frame is clean conditioning
    inputs = GenInputs(vision=torch.randn(cfg.latent_channel, T, H, W, generator=gen), vision_noisy=noisy,
                       timestep=torch.tensor(700.0))
    rows, cols = patch_grid(H, W, cfg.latent_patch_size)
    gen_pos = [vision_positions(T, rows, cols, modality_offset(n), fps) for n in lengths]
    cases = [dict(input_ids=p, text_positions=text_positions(len(p)), inputs=inputs, gen_positions=g)
             for p, g in zip(prompts, gen_pos)]

    def reference_step():
        v_pos = reference_forward(ref, cfg, cases[0])[0]
        v_neg = reference_forward(ref, cfg, cases[1])[0]
        return v_neg + GUIDANCE * (v_pos - v_neg)

    with torch.no_grad():
        start = time.perf_counter()
        cache = UndCache.stack([ours.encode_und(c["input_ids"], c["text_positions"]) for c in cases])
        t_encode = time.perf_counter() - start
        positions = torch.stack(gen_pos)

        def our_step():
            tokens = ours.embed_gen(inputs)
            hidden = ours.run_gen(tokens.expand(2, -1, -1), positions, cache)
            v_pos, v_neg = (ours.decode_gen(h, inputs).vision for h in hidden)
            return v_neg + GUIDANCE * (v_pos - v_neg)

        t_ref, t_ours, speedup, v_ref, v_ours = timed_pair(reference_step, our_step, repeat)
    err = relative_error(v_ours, v_ref)
    gen_tokens = T * rows * cols
    return dict(case=name, text_tokens=lengths, gen_tokens=gen_tokens, ref_step_s=t_ref, ours_step_s=t_ours,
                speedup=speedup, ours_und_encode_s=t_encode,
                speedup_35_steps_incl_encode=35 * t_ref / (35 * t_ours + t_encode), rel_err=err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="ab", help="which cases to run: a (1000 text tokens), b (128)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions, alternating ours and theirs")
    parser.add_argument("--neg-ratio", type=float, default=0.75,
                        help="negative-prompt length as a fraction of the positive prompt's")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine extra threads spin-wait and swamp timing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(args.seed)
    cfg = bench_config()
    ref = build_reference(cfg, gen)
    ours = Cosmos3Omni(cfg).eval()
    ours.load_state_dict(ref.state_dict())

    rows = [run_case(c, CASES[c], args.neg_ratio, args.repeat, ref, ours, cfg, gen) for c in args.cases]
    print(f"CFG denoising step, float32, hidden 512, 8 layers, 8/2 heads; {platform.processor() or platform.machine()}"
          f", {args.threads} threads, torch {torch.__version__}")
    print(f"{'case':<5}{'text (pos/neg)':>16}{'gen':>6}{'diffusers s':>13}{'ours s':>9}{'speedup*':>10}"
          f"{'und once s':>12}{'35-step x':>11}{'rel err':>10}")
    for r in rows:
        print(f"{r['case']:<5}{'/'.join(map(str, r['text_tokens'])):>16}{r['gen_tokens']:>6}{r['ref_step_s']:>13.3f}"
              f"{r['ours_step_s']:>9.3f}{r['speedup']:>9.2f}x{r['ours_und_encode_s']:>12.3f}"
              f"{r['speedup_35_steps_incl_encode']:>10.2f}x{r['rel_err']:>10.1e}")
    print("* speedup = median over repetitions of (diffusers time / ours time), measured alternately")
    print(json.dumps({"benchmark": "bench_transformer", "threads": args.threads, "torch": torch.__version__,
                      "results": rows}))


if __name__ == "__main__":
    main()
