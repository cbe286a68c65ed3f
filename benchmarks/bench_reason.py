"""Reasoner decoding: ours against transformers' Qwen3VLForConditionalGeneration.generate, same weights, one process.

A random Qwen3-VL (text hidden 512, 8 layers, 8/2 heads, the real 151936-token vocabulary, a small 4-block vision
tower) is saved with save_pretrained and loaded by our Reasoner from that directory. The prompt is a 64x64 image
(Qwen3-VL's default min_pixels resizes it to 256x256 -> 64 image tokens) plus a question; greedy decoding of 128 new
tokens, float32. Both sides get the same token ids and pixel patches (our processor's), so the figures compare the
network and the decode loop, not preprocessing (timed separately for ours).

    time to first token   ours: prefill (vision tower + text) + first pick; theirs: generate(max_new_tokens=1)
    decode tokens/s       ours: the `generate` loop over 128 tokens (static KV cache, sampler, detokenizer) minus
                          the time to first token; theirs: generate(128) - generate(1)

    python benchmarks/bench_reason.py [--repeat 3] [--tokens 128] [--threads 1] [--weights int8]

`--weights int8` loads ours with int8 weights (quant.py; transformers stays float32 on the same weights) and adds
quality figures: the prefill logits' relative error against our float32 model (max |diff| / max |logit|), and the
greedy agreement with transformers, teacher-forced: ours is fed transformers' 128 greedy tokens and, at each position,
picks the same next token or not (free-running agreement would count every token after a first divergence as wrong).

Rounds are interleaved (ours, theirs, ours, theirs); each ratio is the median of the per-round ratios.

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cosmos3.model import KVCache  # noqa: E402
from cosmos3.reasoner import Reasoner  # noqa: E402
from cosmos3.sampling import SamplingParams  # noqa: E402
from cosmos3.tokenizers import byte_level_tokenizer  # noqa: E402


def build(folder: str, seed: int = 0):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = byte_level_tokenizer()
    cfg = Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [12, 10, 10],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4, out_hidden_size=512,
                           num_position_embeddings=256, deepstack_visual_indexes=[1, 2, 3]),
        image_token_id=tok.image_pad_id, video_token_id=tok.video_pad_id,
        vision_start_token_id=tok.vision_start_id, vision_end_token_id=tok.vision_end_id)
    torch.manual_seed(seed)
    ref = Qwen3VLForConditionalGeneration(cfg).eval()
    ref.save_pretrained(folder)
    tok.save_pretrained(folder)
    return ref, tok


def median_time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def teacher_forced_agreement(rsn, prompt, tokens: list[int]) -> float:
    """Share of positions where our greedy pick equals `tokens` (the reference's greedy run), each position seeing
    the reference's tokens before it."""
    L = prompt.input_ids.shape[0]
    cache = KVCache.allocate(rsn.model.config, 1, L + len(tokens), rsn.model.dtype)
    picks = [int(rsn.prefill(prompt, cache).argmax())]
    for j, token in enumerate(tokens[:-1]):
        rows = KVCache([k[:, :, :L + j + 1] for k in cache.keys], [v[:, :, :L + j + 1] for v in cache.values])
        picks.append(int(rsn.decode_batch([token], [L + j], [prompt.rope_delta], rows)[0].argmax()))
    return sum(a == b for a, b in zip(picks, tokens)) / max(len(tokens), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", choices=["float", "int8"], default="float",
                        help="our side's weights (transformers is float32 either way)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.tokens

    with tempfile.TemporaryDirectory() as folder:
        ref, tok = build(folder)
        rsn = Reasoner.from_pretrained(folder, weights=args.weights)
        exact = Reasoner.from_pretrained(folder) if args.weights != "float" else None
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "Describe what the robot should do next."}]}]
    t_pre, prompt = median_time(lambda: rsn.build_prompt(messages), args.repeat)
    L = prompt.input_ids.shape[0]
    greedy = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)

    def ours_first():
        cache = KVCache.allocate(rsn.model.config, 1, L + n, rsn.model.dtype)
        return int(rsn.prefill(prompt, cache).argmax())

    def ours_all():
        run = rsn.generate(prompt, greedy)
        while True:
            try:
                next(run)
            except StopIteration as done:
                return done.value.token_ids

    ids = prompt.input_ids[None]
    types = torch.zeros_like(ids)
    types[ids == tok.image_pad_id] = 1
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
              pixel_values=prompt.media[0].pixels, image_grid_thw=torch.tensor([prompt.media[0].grid]),
              do_sample=False, pad_token_id=tok.eos_ids[0])

    def theirs(k):
        with torch.no_grad():
            return ref.generate(**kw, max_new_tokens=k, min_new_tokens=k)[0, L:].tolist()

    # Interleaved: each round times the four calls back to back and gives its own ratios; the figures are the
    # medians over rounds, so a slow spell on a shared machine hits both sides of a ratio alike.
    ours_first(), theirs(1), ours_all(), theirs(2)  # warm-up
    rounds = []
    for _ in range(args.repeat):
        (t1o, _), (t1t, _) = timed(ours_first), timed(lambda: theirs(1))
        (tno, ours_tokens), (tnt, their_tokens) = timed(ours_all), timed(lambda: theirs(n))
        rounds.append(dict(ttft_ours=t1o, ttft_theirs=t1t, decode_ours=(n - 1) / (tno - t1o),
                           decode_theirs=(n - 1) / (tnt - t1t)))
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ttft_ours, ttft_theirs, decode_ours, decode_theirs = (med["ttft_ours"], med["ttft_theirs"], med["decode_ours"],
                                                          med["decode_theirs"])
    ttft_ratio = statistics.median(r["ttft_ours"] / r["ttft_theirs"] for r in rounds)
    decode_ratio = statistics.median(r["decode_ours"] / r["decode_theirs"] for r in rounds)
    same = ours_tokens == their_tokens
    agreement = teacher_forced_agreement(rsn, prompt, their_tokens)
    logits_error = 0.0
    if exact is not None:
        cache = KVCache.allocate(rsn.model.config, 1, L, rsn.model.dtype)
        quant = rsn.prefill(prompt, cache)
        full = exact.prefill(prompt, KVCache.allocate(exact.model.config, 1, L, exact.model.dtype))
        logits_error = float((quant - full).abs().max() / full.abs().max())

    cpu = platform.processor() or platform.machine()
    print(f"reasoner, hidden 512 x 8 layers, vocab 151936, {L}-token prompt with a 64x64 image "
          f"({prompt.media[0].num_tokens(2)} image tokens), {n} new tokens, ours {args.weights} (transformers float32), {args.threads} threads, {cpu}")
    print(f"{'':<24}{'ours':>12}{'transformers':>14}{'ours/theirs':>13}")
    print(f"{'time to first token':<24}{ttft_ours * 1e3:>10.1f}ms{ttft_theirs * 1e3:>12.1f}ms"
          f"{ttft_ratio:>13.2f}")
    print(f"{'decode tokens/s':<24}{decode_ours:>12.1f}{decode_theirs:>14.1f}{decode_ratio:>13.2f}")
    print(f"{'preprocessing (ours)':<24}{t_pre * 1e3:>10.1f}ms")
    print(f"greedy tokens identical: {same}; agreeing positions (teacher-forced) {agreement:.1%}")
    if exact is not None:
        print(f"prefill logits relative error against our float32: {logits_error:.2e}")
    print(json.dumps({"bench": "reasoner", "prompt_tokens": L, "new_tokens": n, "threads": args.threads,
                      "machine": cpu, "ttft_ms_ours": round(ttft_ours * 1e3, 2),
                      "ttft_ms_transformers": round(ttft_theirs * 1e3, 2),
                      "ttft_ratio": round(ttft_ratio, 3), "decode_tok_s_ours": round(decode_ours, 1),
                      "decode_tok_s_transformers": round(decode_theirs, 1),
                      "decode_speedup": round(decode_ratio, 2), "rounds": args.repeat,
                      "preprocess_ms_ours": round(t_pre * 1e3, 2), "greedy_tokens_identical": same,
                      "weights": args.weights, "greedy_agreement": round(agreement, 4),
                      "logits_rel_error": logits_error}))


if __name__ == "__main__":
    main()
