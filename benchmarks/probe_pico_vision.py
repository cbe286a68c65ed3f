"""Why pico's reasoner cannot see: two diagnostics on the synthetic world (docs/LOG.md, 2026-12-02).

    python benchmarks/probe_pico_vision.py tower  --steps 1000 --out runs/probe/tower
        Pretrain a vision tower densely: for every merged video token, predict how much of it each
        (colour, shape) block and the gripper cover in each of its two frames (coverage maps drawn from the
        simulator's truth, re-simulated from each episode's seed). Reports held-out coverage error and how often
        the set of blocks present in a video is read right.

    python benchmarks/probe_pico_vision.py oracle --steps 1500 --checkpoint CKPT --out runs/probe/oracle
        Reasoner SFT (und pathway) on the world's closed visual questions with the vision tower replaced by an
        oracle: the true coverage maps, through a fixed random projection to the network's width. Reports the
        held-out loss per question type beside the answer prior's, i.e. whether the network can learn to read
        perfect visual features at all, and how fast.

Both read the training world (runs/pico/world) and the held-out one (runs/pico/eval_world) that `cosmos3 train
--recipe pico` writes. Videos are processed as pico's reasoner sees them at `--max-pixels` (491,520 keeps all four
sampled 320x192 frames whole: 120 tokens). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from eval_pico import REASON_TYPES, EvalWorld  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def coverage_maps(ep, t: int) -> np.ndarray:
    """[C, H, W] float in [0, 1]: coverage of each (colour, shape) channel and, last, the gripper at frame t."""
    from cosmos3.world.geometry import BLOCK_COLORS, SHAPES
    from cosmos3.world.render import draw_block, draw_polygon, gripper_boxes

    colors = list(BLOCK_COLORS)
    H, W, ppm = ep.table.height_px, ep.table.width_px, ep.table.px_per_m
    out = np.zeros((len(colors) * len(SHAPES) + 1, H, W), np.float32)
    white = (255, 255, 255)
    for spec, (x, y, a) in zip(ep.blocks, ep.block_poses[t]):
        img = np.zeros((H, W, 3), np.uint8)
        draw_block(img, spec, float(x), float(y), float(a), ppm, white)
        out[colors.index(spec.color) * len(SHAPES) + SHAPES.index(spec.shape)] = img[..., 0] / 255.0
    img = np.zeros((H, W, 3), np.uint8)
    for _color, corners in gripper_boxes(ep.gripper_cfg, *(float(v) for v in ep.gripper[t])):
        draw_polygon(img, [(px * ppm, py * ppm) for px, py in corners], white)
    out[-1] = img[..., 0] / 255.0
    return out


def token_targets(root: Path, processor, limit: int | None = None):
    """Per tabletop episode: its VisualInput as the reasoner builds it and [tokens, 2 * C] coverage targets (the
    token's share of each channel in each of the two frames of its temporal patch), tokens in the tower's order."""
    world = EvalWorld(root)
    items, targets = [], []
    for i in range(len(world) if limit is None else min(limit, len(world))):
        it, ep = world.item(i), world.episode(i)
        frames = torch.from_numpy(it["frames"])
        fps = float(ep.fps)
        idx = processor.sample_indices(frames.shape[0], fps)
        vi = processor.video(frames[idx], [j / fps for j in idx])
        gt, gh, gw = vi.grid
        m = torch.from_numpy(np.stack([coverage_maps(ep, j) for j in idx]))  # [F, C, H, W]
        pooled = torch.nn.functional.adaptive_avg_pool2d(m, (gh // 2, gw // 2))  # [F, C, h, w] merged tokens
        F, C = pooled.shape[:2]
        # [gt, F / gt, C, h, w] -> [gt, h, w, F / gt, C] -> [tokens, 2C]: t, then rows, then columns
        pooled = pooled.view(gt, F // gt, C, gh // 2, gw // 2).permute(0, 3, 4, 1, 2).reshape(gt * (gh // 2) * (gw // 2),
                                                                                              (F // gt) * C)
        items.append(vi)
        targets.append(pooled)
    return items, targets


def processor_for(max_pixels: int, min_pixels: int = 1024):
    """min_pixels above a frame's own size upsamples it (blocks span more patches, at 4x the tokens for 2x)."""
    from cosmos3.model.vision import VisionProcessor

    return VisionProcessor({"min_pixels": 1024, "max_pixels": 122880},
                           {"min_pixels": min_pixels, "max_pixels": max(max_pixels, min_pixels)})


def run_tower(args) -> dict:
    from cosmos3.model.vision import VisionTower

    proc = processor_for(args.max_pixels, args.min_pixels)
    train, train_t = token_targets(args.world, proc)
    held, held_t = token_targets(args.eval_world, proc, args.held_out)
    cfg = json.loads((Path(args.checkpoint) / "vision_encoder" / "config.json").read_text())
    if args.width:
        cfg.update(hidden_size=args.width, intermediate_size=2 * args.width)
    tower = VisionTower.from_config(cfg).train()
    width = train_t[0].shape[1]
    heads = torch.nn.ModuleList([torch.nn.Linear(tower.out_hidden_size, width) for _ in range(1 + tower.num_deepstack)])
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * (
        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / args.steps))))
    draw = torch.Generator().manual_seed(0)

    def loss_of(items, targets):
        feats, deep = tower.features(items)
        y = torch.cat(targets)
        weight = 1 + 30 * (y > 0.05).float()  # covered tokens are ~0.3% of all: weigh them up
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(h(f), y, weight=weight)
                   for h, f in zip(heads, [feats] + deep))
        return loss, feats, y

    def evaluate() -> dict:
        tower.eval()
        with torch.no_grad():
            _, feats, y = loss_of(held, held_t)
            p = torch.sigmoid(heads[0](feats))
        tower.train()
        covered = y > 0.2
        right, k = [], 0
        for t in held_t:  # which (colour, shape) blocks are in the video, read off the maps
            n, blocks = t.shape[0], t.shape[1] // 2 - 1
            right.append(bool(((p[k:k + n, :blocks].amax(0) > 0.25) == (t[:, :blocks].amax(0) > 0.25)).all()))
            k += n
        return {"err_covered": float((p - y).abs()[covered].mean()), "err_empty": float((p - y).abs()[~covered].mean()),
                "blocks_read_right": sum(right) / len(right)}

    rows, t0 = [], time.perf_counter()
    for step in range(args.steps):
        batch = torch.randint(len(train), (args.batch,), generator=draw).tolist()
        loss, _, _ = loss_of([train[i] for i in batch], [train_t[i] for i in batch])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps - 1:
            rows.append({"step": step, "loss": round(float(loss.detach()), 4), **evaluate(),
                         "seconds": round(time.perf_counter() - t0)})
            r = rows[-1]
            if len(rows) == 1:
                print(f"{'step':>6}{'loss':>9}{'err covered':>13}{'err empty':>11}{'blocks right':>14}{'s':>6}")
            print(f"{step:>6}{r['loss']:>9.4f}{r['err_covered']:>13.4f}{r['err_empty']:>11.4f}"
                  f"{r['blocks_read_right']:>14.3f}{r['seconds']:>6}", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        tower.model.save_pretrained(args.out)
    return {"probe": "tower", "episodes": len(train), "held_out": len(held), "rows": rows}


def answer_prior_loss(train_file: Path, held_file: Path, tokenizer) -> dict[str, float]:
    """Per question type: the loss of always answering with the training answers' frequencies (the whole-answer
    log-probability spread over its tokens and <|im_end|>), on the held-out answers."""
    by_type: dict[str, Counter] = defaultdict(Counter)
    for line in train_file.read_text().splitlines():
        r = json.loads(line)
        by_type[r["type"]][r["messages"][1]["content"]] += 1
    losses: dict[str, list[float]] = defaultdict(list)
    for line in held_file.read_text().splitlines():
        r = json.loads(line)
        answer, counts = r["messages"][1]["content"], by_type[r["type"]]
        p = counts.get(answer, 0.5) / sum(counts.values())
        losses[r["type"]].append(-math.log(p) / (len(tokenizer.encode(answer)) + 1))
    return {t: sum(v) / len(v) for t, v in losses.items()}


def closed_questions(world: Path) -> Path:
    """The world's closed visual questions (eval_pico's reasoner task types) as their own chat file."""
    out = world / "closed.jsonl"
    rows = [line for line in (world / "chat.jsonl").read_text().splitlines() if json.loads(line)["type"] in REASON_TYPES]
    out.write_text("\n".join(rows) + "\n")
    return out


def run_oracle(args) -> dict:
    from cosmos3.train.batch import prepare_chat
    from cosmos3.train.chat import ChatSource
    from cosmos3.train.loop import Trainer
    from cosmos3.train.recipe import from_dict

    proc = processor_for(args.max_pixels, args.min_pixels)
    items, targets = token_targets(args.world, proc)
    held_items, held_targets = token_targets(args.eval_world, proc)
    digest = lambda px: hashlib.md5(px.numpy().tobytes()).hexdigest()  # noqa: E731
    table = {digest(it.pixels): t for it, t in zip(items + held_items, targets + held_targets)}
    train_file, held_file = closed_questions(args.world), closed_questions(args.eval_world)
    recipe = from_dict({
        "model": {"train": "und", "checkpoint": str(args.checkpoint)},
        "data": {"kind": "chat", "path": str(train_file), "max_text_tokens": 512},
        "optim": {"lr": args.lr, "warmup_steps": 50, "schedule": "cosine", "min_lr_ratio": 0.05, "weight_decay": 0.0},
        "run": {"steps": args.steps, "batch_size": args.batch, "batch_tokens": 4096, "save_every": 10**9,
                "output": str(args.out), "progress": False, "seed": 0, "export": False},
    }, "oracle probe")
    trainer = Trainer(recipe)
    trainer.reasoner.processor.video_max_pixels = args.max_pixels  # videos cut as the coverage maps were pooled
    width = trainer.model.config.hidden_size
    project = torch.randn(targets[0].shape[1], width, generator=torch.Generator().manual_seed(0))

    def oracle(media):
        rows = []
        for m in media:
            t = table.get(digest(m.pixels))
            if t is None:
                raise SystemExit("a video the oracle has no coverage maps for (not a tabletop episode of the worlds?)")
            rows.append(t @ project)
        f = torch.cat(rows)
        return f, [f] * trainer.module.vision[0].num_deepstack

    trainer.module.vision[0].features = oracle
    trainer.fit()
    types = [json.loads(line)["type"] for line in held_file.read_text().splitlines()]
    held = ChatSource(held_file)
    trainer.module.eval()
    losses: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for i in range(min(args.held_out, len(held))):
            sample = prepare_chat(json.loads(json.dumps(held.records[i])), trainer.reasoner, 512)
            losses[types[i]].append(float(trainer.module("chat", [sample])[0]))
    prior = answer_prior_loss(train_file, held_file, trainer.tokenizer)
    per_type = {t: {"loss": round(sum(v) / len(v), 4), "prior": round(prior[t], 4), "n": len(v)}
                for t, v in sorted(losses.items())}
    return {"probe": "oracle", "steps": args.steps, "per_type": per_type}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=("tower", "oracle"))
    p.add_argument("--checkpoint", type=Path, default=ROOT / "src" / "cosmos3" / "weights" / "pico",
                   help="tower: where the vision tower's config comes from; oracle: the network to fine-tune")
    p.add_argument("--world", type=Path, default=ROOT / "runs" / "pico" / "world")
    p.add_argument("--eval-world", type=Path, default=ROOT / "runs" / "pico" / "eval_world")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "probe")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=0, help="tower: its width (default: the checkpoint's)")
    p.add_argument("--max-pixels", type=int, default=491520)
    p.add_argument("--min-pixels", type=int, default=1024, help="frames x height x width: 983040 shows four 320x192 frames at 640x384")
    p.add_argument("--held-out", type=int, default=300, help="held-out videos (tower) or questions (oracle)")
    p.add_argument("--every", type=int, default=250)
    args = p.parse_args()
    torch.manual_seed(0)
    result = run_tower(args) if args.probe == "tower" else run_oracle(args)
    if args.probe == "oracle":
        print(f"{'type':<14}{'loss':>8}{'prior':>8}{'n':>6}")
        for t, r in result["per_type"].items():
            print(f"{t:<14}{r['loss']:>8.3f}{r['prior']:>8.3f}{r['n']:>6}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
