"""Training throughput: tokens/s and peak memory of one optimizer step, full model vs gen pathway only vs LoRA.

The network is built here with random weights (default hidden 512, 8 layers, 8/2 heads, head 64, MLP 1536,
vocabulary 4096, 48 latent channels, 64-wide actions); each step trains on `--batch` policy samples (a prompt of
`--text` tokens, a 5-frame latent video of 12x20 latents = 300 vision tokens, 16 action steps) through the trainer's
own forward pass (cosmos3.train.batch.TrainModule), AdamW and gradient clipping. Each mode runs in its own process
so peak memory is its own: CUDA max allocated on a GPU, peak resident set on a CPU.

Reasoner SFT (und pathway trained): `chat` pads 4 x `--batch` conversations of 32-`--chat-max` tokens (fixed seed,
the loss on their last third) into one batch; `chat-packed` puts the same conversations end to end in one row
(data.pack). Their tokens/s count real tokens only.

Generation samples of mixed shapes (gen pathway trained): `mixed` is 4 x `--batch` policy and text-to-video samples
of four latent shapes (12x20 and 8x14 latents, 2 and 3 latent frames, prompts of 64-`--text` tokens), which the
trainer groups into one padded micro-batch per shape; `mixed-packed` puts them all in one row (data.pack).

    python benchmarks/bench_train.py [--steps 3] [--modes full,gen,lora,chat,chat-packed,mixed,mixed-packed]
                                     [--checkpointing]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def config(args):
    from cosmos3.config import Cosmos3Config

    return Cosmos3Config(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=8,
                         num_key_value_heads=2, head_dim=args.hidden // 8, intermediate_size=3 * args.hidden,
                         vocab_size=4096, latent_channel=48, patch_latent_dim=192, action_gen=True, action_dim=64,
                         sound_gen=False)


def samples(cfg, args, gen: torch.Generator):
    """Synthetic policy samples: noised latents and actions with their positions (no tokenizer, no VAE)."""
    from cosmos3.model import GenInputs
    from cosmos3.model.rope import text_positions
    from cosmos3.sequence import GenLayout
    from cosmos3.train.batch import GenSample
    from cosmos3.train.losses import action_masks, add_noise

    out = []
    for _ in range(args.batch):
        T, H, W, n = args.frames, args.latent_height, args.latent_width, 16
        vision_noisy, action_noisy = action_masks("policy", T, n)
        actions = torch.zeros(n, 64)
        actions[:, :10] = torch.randn(n, 10, generator=gen)
        clean = GenInputs(vision=torch.randn(48, T, H, W, generator=gen), vision_noisy=vision_noisy,
                          timestep=torch.tensor(0.0), actions=actions, action_noisy=action_noisy, domain_id=8)
        noised = add_noise(clean, torch.rand(1, generator=gen)[0], gen, raw_action_dim=10)
        layout = GenLayout(latent_shape=(48, T, H, W), vision_noisy=vision_noisy, fps=15.0, action_steps=n,
                           action_noisy=action_noisy, domain_id=8)
        ids = torch.randint(0, cfg.vocab_size, (args.text,), generator=gen)
        out.append(GenSample(ids, text_positions(args.text), noised, layout.positions(cfg, args.text), "policy",
                             False))
    return out


def mixed_samples(cfg, args, gen: torch.Generator):
    """4 x batch samples cycling through four generation shapes: policy (actions) and t2v (video only) samples at
    two latent sizes and lengths; prompts of random length."""
    from cosmos3.model import GenInputs
    from cosmos3.model.rope import text_positions
    from cosmos3.sequence import GenLayout
    from cosmos3.train.batch import GenSample
    from cosmos3.train.losses import action_masks, add_noise, vision_noisy_mask

    out = []
    shapes = [(2, 12, 20, True), (3, 8, 14, True), (2, 8, 14, False), (3, 12, 20, False)]
    for i in range(4 * args.batch):
        T, H, W, act = shapes[i % 4]
        n = 16 if act else 0
        if act:
            vision_noisy, action_noisy = action_masks("policy", T, n)
            actions = torch.zeros(n, 64)
            actions[:, :10] = torch.randn(n, 10, generator=gen)
        else:
            vision_noisy, action_noisy, actions = vision_noisy_mask("t2v", T, 0), None, None
        clean = GenInputs(vision=torch.randn(48, T, H, W, generator=gen), vision_noisy=vision_noisy,
                          timestep=torch.tensor(0.0), actions=actions, action_noisy=action_noisy,
                          domain_id=8 if act else None)
        noised = add_noise(clean, torch.rand(1, generator=gen)[0], gen, raw_action_dim=10 if act else None)
        layout = GenLayout(latent_shape=(48, T, H, W), vision_noisy=vision_noisy, fps=15.0, action_steps=n,
                           action_noisy=action_noisy, domain_id=8 if act else None)
        L = int(torch.randint(64, args.text + 1, (1,), generator=gen))
        ids = torch.randint(0, cfg.vocab_size, (L,), generator=gen)
        out.append(GenSample(ids, text_positions(L), noised, layout.positions(cfg, L), "policy" if act else "t2v",
                             False))
    return out


def chat_samples(args, gen: torch.Generator):
    from cosmos3.model.rope import text_positions
    from cosmos3.train.batch import ChatSample

    out = []
    for _ in range(4 * args.batch):
        L = int(torch.randint(32, args.chat_max + 1, (1,), generator=gen))
        labels = torch.zeros(L, dtype=torch.bool)
        labels[-(L // 3):] = True
        out.append(ChatSample(torch.randint(0, 4096, (L,), generator=gen), text_positions(L), labels, [],
                              torch.zeros(L, dtype=torch.bool)))
    return out


def run_mode(args) -> dict:
    """One mode in this process -> measurements."""
    from cosmos3.model import Cosmos3Omni
    from cosmos3.train.batch import TrainModule, group
    from cosmos3.train.loop import set_trainable
    from cosmos3.train.recipe import LoraConfig, LossConfig

    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = config(args)
    model = Cosmos3Omni(cfg).to(device).train()
    if args.mode == "lora":
        from cosmos3.train.lora import add_lora

        add_lora(model, LoraConfig(rank=16, targets=["add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]))
    else:
        set_trainable(model, {"chat": "und", "mixed": "gen"}.get(args.mode.split("-")[0], args.mode))
    module = TrainModule(model, LossConfig(), activation_checkpointing=args.checkpointing,
                         pack=args.mode.endswith("-packed"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    kind = "chat" if args.mode.startswith("chat") else "gen"
    draw = torch.Generator().manual_seed(0)
    if kind == "chat":
        batch = chat_samples(args, draw)
    else:
        batch = mixed_samples(cfg, args, draw) if args.mode.startswith("mixed") else samples(cfg, args, draw)
    micro = group(batch, args.batch_tokens, pack=module.pack)  # as the trainer groups them
    tokens = sum(s.tokens for s in batch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)

    def step():
        optimizer.zero_grad(set_to_none=True)
        for g in micro:
            with autocast:
                loss, _ = module(kind, [batch[i] for i in g])
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"mode": args.mode, "micro_batches": len(micro), "tokens_per_step": tokens, "step_s": best, "tokens_per_s": tokens / best,
            "peak_memory_bytes": int(peak), "trainable_params": sum(p.numel() for p in params),
            "total_params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="full,gen,lora,chat,chat-packed,mixed,mixed-packed")
    p.add_argument("--chat-max", type=int, default=512, help="longest chat conversation (tokens)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--text", type=int, default=128)
    p.add_argument("--batch-tokens", type=int, default=1 << 20, help="micro-batch token budget (run.batch_tokens)")
    p.add_argument("--frames", type=int, default=2, help="latent frames (2 = 5 video frames)")
    p.add_argument("--latent-height", type=int, default=12)
    p.add_argument("--latent-width", type=int, default=20)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", help=argparse.SUPPRESS)  # child process: run this one mode
    args = p.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    gen_rows = [r for r in rows if not r["mode"].startswith(("chat", "mixed"))]
    shapes = ([f"generation batch {args.batch} x {gen_rows[0]['tokens_per_step'] // args.batch} tokens"] if gen_rows
              else []) + ([f"chat {4 * args.batch} conversations of 32-{args.chat_max} tokens"]
                          if any(r["mode"].startswith("chat") for r in rows) else []) + (
        [f"mixed generation {4 * args.batch} samples of 4 shapes"] if any(r["mode"].startswith("mixed") for r in rows)
        else [])
    print(f"training step, hidden {args.hidden}, {args.layers} layers, {', '.join(shapes)}, {device}, "
          f"torch {torch.__version__}")
    print(f"{'mode':<14}{'micro':>6}{'trainable':>14}{'step s':>9}{'tokens/s':>11}{'peak memory':>14}")
    for r in rows:
        print(f"{r['mode']:<14}{r['micro_batches']:>6}{r['trainable_params']:>14,}{r['step_s']:>9.3f}"
              f"{r['tokens_per_s']:>11,.0f}"
              f"{r['peak_memory_bytes'] / 2**20:>11,.0f} MiB")
    print(json.dumps({"benchmark": "train", "device": device, "hidden": args.hidden, "layers": args.layers,
                      "batch": args.batch, "checkpointing": args.checkpointing, "results": rows}))


if __name__ == "__main__":
    main()
