"""Quality of `pico` on held-out episodes of the synthetic world: eight tasks, each against a baseline.

    python benchmarks/eval_pico.py --checkpoint runs/pico/pico --world runs/pico/eval_world --episodes 200
        [--steps 20] [--tasks vae,fd,id,policy,t2v,reason,sound,demo] [--questions 200] [--seed 0] [--out eval.json]

Every task loops over the first --episodes tabletop episodes of the evaluation world (a folder written by
`cosmos3.world.export.generate_dataset`); the simulator's truth of each episode is re-simulated from its seed with
the tabletop config the world's manifest records (pico v1's or v2's, cosmos3.train.pico DESIGNS). Every length
follows that config: an episode is one clip of N frames (its num_frames: 33 in v1, 17 in v2) and N - 1 actions.

    fd      image = true frame 0, actions = the N - 1 true actions -> N frames. PSNR over frames 1..N-1 against the
            true (decoded) frames, and the tracked block-position error against the simulator (pixels, frames 1..N-1;
            errors capped at 50 px, a block not found counts 50 px). Baseline: repeating frame 0.
            Pass: PSNR >= baseline + 2 dB and block error < baseline (pico v1 was held to + 3).
    id      video = the N true frames -> N - 1 actions; MSE against the true actions (all 10 dims; the translation
            dims alone are reported too). Baseline: the per-dimension mean action of the training world.
            Pass: MSE < 0.5 * baseline.
    policy  image = true frame 0, prompt = the instruction -> actions. The gripper path is the true start pose
            integrated with the predicted actions (translation in the gripper frame at t, rot6d, geometry.py).
            Success: the closest approach to the instructed block (goal["block"], its position at frame 0) is at
            most half the starting distance. Episodes without a target block (random motion) are skipped.
            Baselines: a zero chunk (never moves), and another episode's true actions ("shuffled"); the true
            actions are the sanity check. The same test on the gripper tracked in the generated video is reported
            as a side figure. Pass: >= 70%.
    t2v     prompt = the short caption, for captions that name a block's direction ("... pushes the red triangle
            down and to the left.") -> N frames at 16 fps, 256p. Success: the tracked net displacement of that
            block (first to last frame it is seen, > 2 px) has the caption's direction_word. Baseline: always the
            most common direction; the tracker on the true video is the sanity check. Pass: >= 70%.
    reason  questions of chat.jsonl with closed answers among >= 3 choices (count, count_moved, color, shape,
            direction, which_moved), the first --questions of them; greedy answers of at most 32 tokens, normalized
            exact match. Chance: the majority answer per type (from the training world's chat.jsonl when present),
            aggregated over the questions asked. Pass: >= 80%.
    sound   video-to-sound: the true video conditions all its video latent frames but the last ((N - 1) / 4 + 1 in
            all: 0..7 of 9 in v1, 0..3 of 5 in v2; enable_sound, caption as prompt). Onset: the first 1920-sample
            sound latent frame whose energy is 12 dB above the clip's floor (20th percentile) and above -60 dB.
            Truth: the first audible contact (impulse above the sound's minimum), at sound latent frame
            floor(time_s * 48000 / 1920). Success: within 2 latent frames. Episodes with an audible contact only;
            the detector on the true sound is the sanity check. Pass: >= 70%.

    vae     the checkpoint's video VAE alone (vae/ of --checkpoint; a run's ckpt/ folder will do): every true clip
            encoded (the mode) and decoded. PSNR over all frames against the true (decoded) frames; the tracker
            on the reconstruction against the simulator (block error, px), and per block whether it stays
            recognisable: seen in every frame, its centre within 3 px of where the tracker finds it in the true
            video, and its shape (the pixels of its colour, membership > 0.5) overlapping the true video's with
            IoU >= 0.5. Baseline: the frames average-pooled to the VAE's latent grid and upsampled (bilinear).
            Pass: PSNR >= 30 dB and every block recognisable in every episode.
    demo    `cosmos3 demo` on the checkpoint (its shipped inputs, --steps, --seed) into a temporary folder; every frame
            of rollout.mp4, t2v.mp4 and policy.mp4, read back from the files, must show the gripper and the blocks
            where the tracker finds them: the blocks of the demo's input frame (t2v: those of its own first frame
            and the prompt's red square). Baseline: the tracker on the input frame (sanity). Pass: every frame.

Prints a table, then one JSON line with every figure (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pico_metrics import (REASON_TYPES, block_error_px, caption_direction, contact_latent_frame,  # noqa: E402
                          detect_onset, direction_matches, gripper_path_px, gripper_toward_block, majority_chance,
                          normalize_answer, onset_matches, psnr)

TASKS = ("vae", "fd", "id", "policy", "t2v", "reason", "sound", "demo")

# ------------------------------------------------------------------------------------------------ the world


def tabletop_config(recorded: dict):
    """The TabletopConfig a world manifest records (nested dataclasses rebuilt; tuples restored)."""
    import dataclasses

    from cosmos3.world import TabletopConfig

    def build(cls, values: dict):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            v, default = values[f.name], getattr(cls(), f.name)
            if dataclasses.is_dataclass(default):
                v = build(type(default), v)
            elif isinstance(default, tuple):
                v = tuple(v)
            kwargs[f.name] = v
        return cls(**kwargs)

    return build(TabletopConfig, recorded)


def clip_lengths(cfg, temporal: int = 4) -> tuple[int, int, int]:
    """(frames, actions, video latent frames) of one episode of a world with tabletop config cfg; the video VAE keeps
    the first frame alone and folds `temporal` frames into each further latent frame."""
    return cfg.num_frames, cfg.num_frames - 1, (cfg.num_frames - 1) // temporal + 1


class EvalWorld:
    """Tabletop episodes of an evaluation world: decoded items, metadata, and the simulator's truth (re-simulated
    from each episode's seed, checked against the metadata)."""

    def __init__(self, root: Path):
        from dataclasses import asdict

        from cosmos3.lerobot import LeRobotDataset

        self.root = root
        manifest = json.loads((root / "world.json").read_text())
        self.cfg = tabletop_config(manifest["config"]["tabletop"])
        want = json.loads(json.dumps(asdict(self.cfg)))
        if manifest["config"]["tabletop"] != want:
            raise ValueError(f"{root}: the world's tabletop config cannot be rebuilt from its manifest; its episodes "
                             "cannot be re-simulated here")
        self.frames, self.chunk, _ = clip_lengths(self.cfg)
        self.ds = LeRobotDataset(root / "tabletop", chunk_size=self.chunk, stride=self.chunk, sound=True)
        self._truth: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def item(self, i: int) -> dict:
        it = self.ds[i]
        it["frames"] = it["frames"].numpy()
        it["actions"] = it["actions"].numpy().astype(np.float64)
        it["sound"] = None if it["sound"] is None else it["sound"].numpy()
        return it

    def meta(self, i: int) -> dict:
        m = dict(self.ds.episodes[self.ds.windows[i][0]])
        for k in ("world/blocks", "world/events", "world/goal"):
            m[k] = json.loads(m[k]) if m.get(k) else None
        return m

    def episode(self, i: int):
        if i not in self._truth:
            from cosmos3.world import simulate_tabletop

            m = self.meta(i)
            ep = simulate_tabletop(int(m["world/seed"]), self.cfg)
            if [b.color for b in ep.blocks] != [b["color"] for b in m["world/blocks"]] or \
                    len(ep.events) != len(m["world/events"]):
                raise ValueError(f"episode {i}: re-simulating seed {m['world/seed']} does not match its metadata")
            self._truth[i] = ep
        return self._truth[i]


STRIP_EPISODES = 3  # picture strips (--strips) of the first episodes of each video task


def strip_image(rows: list[np.ndarray], picks: int = 6, gap: int = 4) -> np.ndarray:
    """Rows of frames ([T, H, W, 3] each) -> one uint8 picture: `picks` evenly spaced frames per row."""
    T = min(r.shape[0] for r in rows)
    at = np.linspace(0, T - 1, picks).round().astype(int)
    H, W = rows[0].shape[1:3]
    out = np.full((len(rows) * (H + gap) - gap, picks * (W + gap) - gap, 3), 255, np.uint8)
    for r, frames in enumerate(rows):
        for c, t in enumerate(at):
            out[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W] = frames[t]
    return out


def save_strip(args, name: str, i: int, rows: list[np.ndarray]) -> None:
    if args.strips is None or i >= STRIP_EPISODES:
        return
    from PIL import Image

    args.strips.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip_image(rows)).save(args.strips / f"{name}_{i}.png", optimize=True)


def _tqdm(it, desc, total=None):
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, unit="ep", file=sys.stderr)


def _pil(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(frame))


def _mean(xs) -> float:
    xs = list(xs)
    return float(np.mean(xs)) if xs else math.nan


# ------------------------------------------------------------------------------------------------ tasks


def task_fd(gen, world: EvalWorld, n: int, args) -> dict:
    from cosmos3.world import track_blocks

    ps, ps0, errs, errs0 = [], [], [], []
    for i in _tqdm(range(n), "fd"):
        it, ep = world.item(i), world.episode(i)
        true = it["frames"]
        res = gen.generate(prompt="", image=_pil(true[0]), action_mode="forward_dynamics", embodiment="umi",
                           actions=it["actions"], action_chunk_size=true.shape[0] - 1, fps=16, resolution="256p",
                           num_inference_steps=args.steps, seed=args.seed + i, progress=False)
        frames = res.frames.numpy()
        if frames.shape != true.shape:
            raise ValueError(f"fd: generated {frames.shape}, expected {true.shape}")
        save_strip(args, "fd", i, [true, frames])  # top: the truth, bottom: forward dynamics from frame 0
        repeat = np.repeat(true[:1], true.shape[0], 0)
        ps.append(psnr(frames[1:], true[1:]))
        ps0.append(psnr(repeat[1:], true[1:]))
        colors = [b.color for b in ep.blocks]
        truth = ep.block_poses[:, :, :2] * ep.table.px_per_m
        tr = track_blocks(frames, colors)
        tr0 = track_blocks(true[:1], colors)
        errs.append(block_error_px(np.stack([tr[c] for c in colors], 1)[1:], truth[1:]))
        errs0.append(block_error_px(np.repeat(np.stack([tr0[c] for c in colors], 1), truth.shape[0] - 1, 0),
                                    truth[1:]))
    out = {"episodes": n, "psnr_db": _mean(ps), "psnr_db_baseline": _mean(ps0), "block_error_px": _mean(errs),
           "block_error_px_baseline": _mean(errs0)}
    out["pass"] = bool(out["psnr_db"] >= out["psnr_db_baseline"] + 2.0
                       and out["block_error_px"] < out["block_error_px_baseline"])
    return out


def pooled(frames: np.ndarray, factor: int) -> np.ndarray:
    """The trivial codec of a VAE's spatial grid: average-pool by `factor`, upsample bilinearly; uint8 frames."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(F.avg_pool2d(x, factor), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def block_recognisable(recon: np.ndarray, true: np.ndarray, color: str, centre_px: float = 3.0,
                       min_iou: float = 0.5) -> tuple[bool, float]:
    """Is a block as recognisable in a reconstruction as in the true video: seen in every frame, its tracked centre
    within `centre_px` of the true video's, its colour's solid pixels overlapping with IoU >= min_iou in every
    frame. Returns (recognisable, the smallest IoU over frames)."""
    from cosmos3.world import track_blocks
    from cosmos3.world.geometry import BLOCK_COLORS
    from cosmos3.world.track import color_membership

    a, b = track_blocks(recon, [color])[color], track_blocks(true, [color])[color]
    seen = bool(np.isfinite(a).all())
    near = seen and bool((np.hypot(*(a - b).T)[np.isfinite(b).all(1)] <= centre_px).all())
    ma, mb = color_membership(recon, BLOCK_COLORS[color]) > 0.5, color_membership(true, BLOCK_COLORS[color]) > 0.5
    iou = min(mask_iou(ma[t], mb[t]) for t in range(true.shape[0]))
    return seen and near and iou >= min_iou, iou


def task_vae(vae, world: EvalWorld, n: int, args) -> dict:
    ps, ps0, errs, errs_true, ious, ok = [], [], [], [], [], []
    for i in _tqdm(range(n), "vae"):
        it, ep = world.item(i), world.episode(i)
        true = it["frames"]
        import torch

        pixels = torch.from_numpy(true).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
        recon = vae.decode(vae.encode(pixels)).cpu().numpy()
        if recon.shape != true.shape:
            raise ValueError(f"vae: reconstructed {recon.shape}, expected {true.shape}")
        save_strip(args, "vae", i, [true, recon])
        ps.append(psnr(recon, true))
        ps0.append(psnr(pooled(true, vae.spatial), true))
        colors = [b.color for b in ep.blocks]
        truth = ep.block_poses[:, :, :2] * ep.table.px_per_m
        from cosmos3.world import track_blocks

        tr, tt = track_blocks(recon, colors), track_blocks(true, colors)
        errs.append(block_error_px(np.stack([tr[c] for c in colors], 1), truth))
        errs_true.append(block_error_px(np.stack([tt[c] for c in colors], 1), truth))
        for c in colors:
            good, iou = block_recognisable(recon, true, c)
            ok.append(good)
            ious.append(iou)
    out = {"episodes": n, "psnr_db": _mean(ps), "psnr_db_baseline": _mean(ps0), "psnr_db_min": float(np.min(ps)),
           "block_error_px": _mean(errs), "block_error_px_true_video": _mean(errs_true),
           "blocks_recognisable": _mean(ok), "min_block_iou_mean": _mean(ious)}
    out["pass"] = bool(out["psnr_db"] >= 30.0 and out["blocks_recognisable"] == 1.0)
    return out


def train_action_mean(train_world: Path, chunk: int) -> np.ndarray:
    stats = train_world / "tabletop" / "meta" / "stats.json"
    if stats.is_file():
        mean = json.loads(stats.read_text()).get("action", {}).get("mean")
        if mean is not None:
            return np.asarray(mean, np.float64)
    from cosmos3.lerobot import LeRobotDataset

    ds = LeRobotDataset(train_world / "tabletop", chunk_size=chunk, stride=chunk)
    return ds._actions.astype(np.float64).mean(0)


def task_id(gen, world: EvalWorld, n: int, args) -> dict:
    mean = train_action_mean(args.train_world, world.chunk)
    mse, mse0, mse_t, mse0_t = [], [], [], []
    for i in _tqdm(range(n), "id"):
        it = world.item(i)
        res = gen.generate(prompt="", video=it["frames"], action_mode="inverse_dynamics", embodiment="umi",
                           action_chunk_size=world.chunk, fps=16, resolution="256p", num_inference_steps=args.steps,
                           seed=args.seed + i, progress=False)
        pred, true = res.actions.numpy().astype(np.float64), it["actions"]
        if pred.shape != true.shape:
            raise ValueError(f"id: predicted actions {pred.shape}, expected {true.shape}")
        mse.append(float(np.mean((pred - true) ** 2)))
        mse0.append(float(np.mean((mean[None] - true) ** 2)))
        mse_t.append(float(np.mean((pred[:, :3] - true[:, :3]) ** 2)))
        mse0_t.append(float(np.mean((mean[None, :3] - true[:, :3]) ** 2)))
    out = {"episodes": n, "action_mse": _mean(mse), "action_mse_baseline": _mean(mse0),
           "translation_mse": _mean(mse_t), "translation_mse_baseline": _mean(mse0_t)}
    out["pass"] = bool(out["action_mse"] < 0.5 * out["action_mse_baseline"])
    return out


def task_policy(gen, world: EvalWorld, n: int, args) -> dict:
    from cosmos3.world import track_gripper

    ok, ok_video, ok_true, ok_zero, ok_shuffled, skipped = [], [], [], [], [], 0
    for i in _tqdm(range(n), "policy"):
        ep = world.episode(i)
        goal = ep.goal or {}
        if "block" not in goal:
            skipped += 1
            continue
        it = world.item(i)
        if it["task"] != ep.instruction:
            raise ValueError(f"policy: episode {i} instruction {it['task']!r} != simulated {ep.instruction!r}")
        res = gen.generate(prompt=it["task"], image=_pil(it["frames"][0]), action_mode="policy", embodiment="umi",
                           action_chunk_size=world.chunk, fps=16, resolution="256p", num_inference_steps=args.steps,
                           seed=args.seed + i, progress=False)
        pred = res.actions.numpy().astype(np.float64)
        ppm = ep.table.px_per_m
        block = ep.block_poses[0, ep.block_index(goal["block"]), :2] * ppm
        start = ep.gripper[0, :3]
        other = world.episode((i + 1) % len(world))  # the next episode's true actions: a plausible, unrelated motion
        ok.append(gripper_toward_block(gripper_path_px(start, pred, ppm), block))
        ok_true.append(gripper_toward_block(gripper_path_px(start, it["actions"], ppm), block))
        ok_zero.append(gripper_toward_block(gripper_path_px(start, np.tile([0, 0, 0, 1, 0, 0, 0, 1, 0, 0],
                                                                           (world.chunk, 1)), ppm), block))
        ok_shuffled.append(gripper_toward_block(gripper_path_px(start, other.actions()[:world.chunk], ppm), block))
        save_strip(args, "policy", i, [it["frames"], res.frames.numpy()])
        track = track_gripper(res.frames.numpy())["position"][1:]
        track = track[np.isfinite(track).all(1)]  # frames where the gripper is found
        ok_video.append(gripper_toward_block(np.vstack([ep.gripper[:1, :2] * ppm, track]), block))
    used = len(ok)
    out = {"episodes": used, "skipped_no_target": skipped, "success": _mean(ok),
           "success_zero_actions": _mean(ok_zero), "success_shuffled_actions": _mean(ok_shuffled),
           "success_true_actions": _mean(ok_true), "success_video_tracked": _mean(ok_video)}
    out["pass"] = bool(used > 0 and out["success"] >= 0.7)
    return out


def task_t2v(gen, world: EvalWorld, n: int, args) -> dict:
    from cosmos3.world import track_blocks

    ok, ok_true, words, skipped = [], [], [], 0
    for i in _tqdm(range(n), "t2v"):
        caption = world.meta(i)["world/captions"][0]
        parsed = caption_direction(caption)
        if parsed is None:
            skipped += 1
            continue
        color, _shape, word = parsed
        res = gen.generate(prompt=caption, num_frames=world.frames, fps=16, resolution="256p", aspect_ratio="16:9",
                           num_inference_steps=args.steps, seed=args.seed + i, progress=False)
        frames = res.frames.numpy()
        ok.append(direction_matches(track_blocks(frames, [color])[color], word))
        true = world.item(i)["frames"]
        save_strip(args, "t2v", i, [true, frames])  # top: the episode the caption describes, bottom: generated
        ok_true.append(direction_matches(track_blocks(true, [color])[color], word))
        words.append(word)
    common = max(sorted(set(words)), key=words.count) if words else None
    out = {"episodes": len(ok), "skipped_no_direction": skipped, "success": _mean(ok),
           "success_majority_direction": _mean([w == common for w in words]),
           "success_true_video": _mean(ok_true)}
    out["pass"] = bool(ok and out["success"] >= 0.7)
    return out


def reason_questions(world_root: Path, limit: int) -> list[dict]:
    from cosmos3.world import load_chat

    recs = [r for r in load_chat(world_root / "chat.jsonl") if r["type"] in REASON_TYPES]
    return recs[:limit]


def task_reason(rsn, world: EvalWorld, args) -> dict:
    from cosmos3.world import load_chat

    recs = reason_questions(world.root, args.questions)
    prior_file = args.train_world / "chat.jsonl"
    prior = load_chat(prior_file if prior_file.is_file() else world.root / "chat.jsonl")
    by_type: dict[str, list[str]] = {}
    for r in prior:
        if r["type"] in REASON_TYPES:
            by_type.setdefault(r["type"], []).append(r["messages"][1]["content"])
    right, per_type = [], {}
    for r in _tqdm(recs, "reason"):
        question = [m for m in r["messages"] if m["role"] == "user"]
        out = rsn.chat(question, max_tokens=32, temperature=0.0)
        hit = normalize_answer(out.text) == normalize_answer(r["messages"][1]["content"])
        right.append(hit)
        per_type.setdefault(r["type"], []).append(hit)
    asked = [(r["type"], r["messages"][1]["content"]) for r in recs]
    out = {"questions": len(recs), "accuracy": _mean(right), "chance_majority": majority_chance(by_type, asked),
           "per_type": {t: round(_mean(v), 4) for t, v in sorted(per_type.items())}}
    out["pass"] = bool(recs and out["accuracy"] >= 0.8)
    return out


def task_sound(gen, world: EvalWorld, n: int, args) -> dict:
    from cosmos3.world.sound import SoundConfig, impact_amplitude

    cfg = SoundConfig()
    latents = clip_lengths(world.cfg, gen.vae.temporal)[2]
    ok, ok_true, errs, contacts, skipped = [], [], [], [], 0
    for i in _tqdm(range(n), "sound"):
        ep = world.episode(i)
        audible = [e for e in ep.events if impact_amplitude(e.impulse, cfg) > 0]
        if not audible:
            skipped += 1
            continue
        contact = contact_latent_frame(audible[0].time)
        contacts.append(contact)
        it = world.item(i)
        res = gen.generate(prompt=world.meta(i)["world/captions"][0], video=it["frames"],
                           condition_frame_indexes=list(range(latents - 1)), enable_sound=True,
                           num_frames=world.frames, fps=16, resolution="256p", aspect_ratio="16:9",
                           num_inference_steps=args.steps, seed=args.seed + i, progress=False)
        if res.sound is None:
            raise ValueError("sound: the generator returned no sound")
        onset = detect_onset(res.sound.float().numpy())
        ok.append(onset_matches(onset, contact))
        if onset is not None:
            errs.append(abs(onset - contact))
        ok_true.append(onset_matches(detect_onset(it["sound"]), contact))
    guess = int(np.median(contacts)) if contacts else 0  # a constant guess: the median true onset
    out = {"episodes": len(ok), "skipped_no_contact": skipped, "success": _mean(ok),
           "success_constant_onset": _mean([onset_matches(guess, c) for c in contacts]),
           "success_true_sound": _mean(ok_true), "mean_onset_error_latent_frames": _mean(errs),
           "onset_found": len(errs) / len(ok) if ok else math.nan}
    out["pass"] = bool(ok and out["success"] >= 0.7)
    return out


def demo_frames_found(frames: np.ndarray, colors: list[str]) -> np.ndarray:
    """[T] bool: in which frames the tracker finds the gripper and every one of these block colours."""
    from cosmos3.world import track_blocks, track_gripper

    found = np.isfinite(track_gripper(frames)["position"]).all(1)
    for track in track_blocks(frames, colors).values():
        found &= np.isfinite(track).all(1)
    return found


def visible_colors(frames: np.ndarray) -> list[str]:
    """The block colours the tracker finds in every one of these frames."""
    from cosmos3.world import track_blocks

    return sorted(c for c, t in track_blocks(frames).items() if np.isfinite(t).all())


def task_demo(world: EvalWorld, args) -> dict:
    """`cosmos3 demo` on the checkpoint, into a temporary folder; every frame of the three clips it writes is read
    back from its MP4 and tracked. The blocks expected: those the tracker finds in the demo's input frame (rollout,
    policy), and in the text-to-video clip those in its own first frame plus the prompt's red block."""
    import contextlib
    import io
    import tempfile

    from PIL import Image

    from cosmos3.demo import run_demo
    from cosmos3.media import read_video

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        run_demo(args.checkpoint, out=tmp, steps=args.steps, seed=args.seed, progress=False)
        first = np.asarray(Image.open(Path(tmp) / "frame.png").convert("RGB"))[None]
        clips = {name: read_video(Path(tmp) / f"{name}.mp4")[0].numpy() for name in ("rollout", "t2v", "policy")}
    in_input = visible_colors(first)
    per_clip, counts = {}, []
    for name, frames in clips.items():
        colors = in_input
        if name == "t2v":
            colors = sorted(set(visible_colors(frames[:1])) | {"red"})
        found = demo_frames_found(frames, colors)
        per_clip[name] = float(found.mean())
        counts.append(found)
    found = np.concatenate(counts)
    out = {"frames": int(found.size), "blocks_in_input": in_input, "frames_all_found": float(found.mean()),
           "frames_all_found_input": float(demo_frames_found(first, in_input).mean()),
           "per_clip": per_clip}
    out["pass"] = bool(found.size and found.all())
    return out


# ------------------------------------------------------------------------------------------------ main


ROWS = [  # task, metric, model key, baseline key, baseline name, rule
    ("vae", "PSNR dB (all frames)", "psnr_db", "psnr_db_baseline", "pool to latent grid", ">= 30"),
    ("vae", "block error px", "block_error_px", "block_error_px_true_video", "tracker on truth", ""),
    ("fd", "PSNR dB (frames 1..N-1)", "psnr_db", "psnr_db_baseline", "repeat frame 0", ">= base + 2"),
    ("fd", "block error px", "block_error_px", "block_error_px_baseline", "repeat frame 0", "< base"),
    ("id", "action MSE", "action_mse", "action_mse_baseline", "mean action", "< 0.5 base"),
    ("id", "translation MSE", "translation_mse", "translation_mse_baseline", "mean action", ""),
    ("policy", "toward target block", "success", "success_shuffled_actions", "shuffled actions", ">= 0.70"),
    ("policy", "  same, gripper in video", "success_video_tracked", "success_zero_actions", "zero actions", ""),
    ("t2v", "direction matches", "success", "success_majority_direction", "majority direction", ">= 0.70"),
    ("reason", "exact match", "accuracy", "chance_majority", "majority answer", ">= 0.80"),
    ("sound", "onset within 2 latents", "success", "success_constant_onset", "median onset", ">= 0.70"),
    ("demo", "frames: gripper + blocks", "frames_all_found", "frames_all_found_input", "tracker on input", "all"),
]


def print_table(results: dict, times: dict) -> None:
    print(f"{'task':<8}{'metric':<26}{'model':>10}{'baseline':>10}  {'baseline is':<20}{'rule':<12}{'n':>5}"
          f"{'s/ep':>8}  pass")
    for task, metric, key, bkey, bname, rule in ROWS:
        r = results.get(task)
        if r is None:
            continue
        n = r.get("episodes", r.get("questions", r.get("frames", 0)))
        first = rule != ""
        print(f"{task if first else '':<8}{metric:<26}{r[key]:>10.4g}{r[bkey]:>10.4g}  {bname:<20}{rule:<12}"
              f"{n if first else '':>5}{(f'{times[task]:.2f}' if first else ''):>8}  "
              f"{('yes' if r['pass'] else 'no') if first else ''}")
    if "vae" in results:
        v = results["vae"]
        print(f"vae: blocks recognisable {v['blocks_recognisable']:.2f} (rule: all), smallest per-block IoU "
              f"{v['min_block_iou_mean']:.2f} on average, worst clip {v['psnr_db_min']:.1f} dB")
    if "policy" in results:
        p = results["policy"]
        print(f"policy: {p['episodes']} episodes with a target block ({p['skipped_no_target']} random-motion "
              f"skipped); true actions {p['success_true_actions']:.2f} (sanity)")
    if "t2v" in results:
        t = results["t2v"]
        print(f"t2v: {t['episodes']} episodes with a direction caption ({t['skipped_no_direction']} skipped); "
              f"tracker on the true video {t['success_true_video']:.2f}")
    if "sound" in results:
        snd = results["sound"]
        print(f"sound: {snd['episodes']} episodes with an audible contact ({snd['skipped_no_contact']} skipped); "
              f"detector on the true sound {snd['success_true_sound']:.2f}; onset found in {snd['onset_found']:.2f} "
              f"of generated clips")
    if "demo" in results:
        d = results["demo"]
        print(f"demo: blocks in the input frame {', '.join(d['blocks_in_input'])}; frames where all are found per "
              "clip: " + ", ".join(f"{k} {v:.2f}" for k, v in d["per_clip"].items()))
    if "reason" in results:
        print("reason per type: " + ", ".join(f"{k} {v:.2f}" for k, v in results["reason"]["per_type"].items()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pico")
    parser.add_argument("--world", type=Path, required=True, help="evaluation world (generate_dataset output)")
    parser.add_argument("--train-world", type=Path, default=None,
                        help="training world, for the mean-action and majority-answer baselines "
                             "(default: the sibling 'world' folder of --world)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per generation")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--strips", type=Path, default=None,
                        help=f"write PNG picture strips (truth above, generated below) of the first {STRIP_EPISODES} "
                             "episodes of fd, policy and t2v here")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        parser.error(f"--tasks: unknown {bad}; choose from {','.join(TASKS)}")
    if args.episodes < 1 or args.steps < 1 or args.questions < 1:
        parser.error("--episodes, --steps and --questions must be >= 1")
    if args.train_world is None:
        args.train_world = args.world.parent / "world"

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = EvalWorld(args.world)
    n = min(args.episodes, len(world))
    gen = rsn = vae = None
    started = time.perf_counter()
    if "vae" in tasks:
        from cosmos3.checkpoint import resolve_checkpoint
        from cosmos3.vae import VideoVAE

        vae = VideoVAE.from_pretrained(resolve_checkpoint(args.checkpoint) / "vae", torch.device(device),
                                       torch.float32)
    if any(t not in ("reason", "vae", "demo") for t in tasks):
        from cosmos3.generator import Generator

        gen = Generator.from_pretrained(args.checkpoint, device=device)
    if "reason" in tasks:
        from cosmos3.reasoner import Reasoner

        rsn = Reasoner.from_pretrained(args.checkpoint, device=device)
    load_s = time.perf_counter() - started

    results, times = {}, {}
    for task in TASKS:
        if task not in tasks:
            continue
        t0 = time.perf_counter()
        if task == "reason":
            results[task] = task_reason(rsn, world, args)
        elif task == "vae":
            results[task] = task_vae(vae, world, n, args)
        elif task == "demo":
            results[task] = task_demo(world, args)
        else:
            results[task] = {"fd": task_fd, "id": task_id, "policy": task_policy, "t2v": task_t2v,
                             "sound": task_sound}[task](gen, world, n, args)
        count = results[task].get("episodes", results[task].get("questions", results[task].get("frames", 0)))
        times[task] = (time.perf_counter() - t0) / max(count, 1)
        results[task]["seconds_per_item"] = round(times[task], 3)

    print(f"pico eval: checkpoint {args.checkpoint}, world {args.world} ({n} episodes of N = {world.frames} frames, "
          f"{world.chunk} actions), {args.steps} steps, device {device}, load {load_s:.1f} s")
    print_table(results, times)
    summary = {"bench": "eval_pico", "checkpoint": str(args.checkpoint), "world": str(args.world),
               "episodes": n, "frames": world.frames, "actions": world.chunk, "steps": args.steps, "seed": args.seed,
               "device": device, "load_s": round(load_s, 2), "tasks": _rounded(results),
               "passed": sorted(t for t, r in results.items() if r["pass"])}
    line = json.dumps(summary)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(line)
    return summary


def _rounded(x):
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 5)
    return x


if __name__ == "__main__":
    main()
