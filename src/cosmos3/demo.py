"""`cosmos3 demo`: every surface of the embedded `pico` model, on a CPU, in a couple of minutes.

    cosmos3 demo [--checkpoint pico] [--out out] [--steps N] [--seed 0]

Writes into --out:
    rollout.mp4          forward dynamics: a world frame + an action file (64 steps, two chunks) -> video
    t2v.mp4              text-to-video with synchronized sound
    policy.mp4/.json     policy: a world frame + an instruction -> an action chunk (and the imagined video)
    answers.txt          two reasoner answers about the generated clip
and prints one line per file saying what it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_PROMPT = "A robot gripper pushes the red square to the right."
POLICY_INSTRUCTION = "Push the blue circle up."
QUESTIONS = ("Describe this video in one sentence.", "How many blocks are on the table?")


def demo_inputs(checkpoint: Path) -> tuple[Path, Path]:
    """The world frame and action file shipped next to the embedded model (written by the pico ship stage)."""
    frame, actions = checkpoint / "demo" / "frame.png", checkpoint / "demo" / "actions.json"
    for f in (frame, actions):
        if not f.is_file():
            raise ValueError(f"{f}: the checkpoint has no demo inputs (pico ships them under demo/)")
    return frame, actions


def run_demo(checkpoint: str = "pico", out: str = "out", steps: int | None = None, seed: int = 0,
             progress: bool = True) -> list[tuple[Path, str]]:
    from PIL import Image

    from .actions import load_actions
    from .checkpoint import resolve_checkpoint
    from .generator import Generator
    from .reasoner import Reasoner

    root = resolve_checkpoint(checkpoint)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_file, action_file = demo_inputs(root)
    gen = Generator.from_pretrained(root)
    written: list[tuple[Path, str]] = []

    def note(path: Path, what: str) -> None:
        written.append((path, what))
        print(f"{path}: {what}", flush=True)

    started = time.perf_counter()
    frame = Image.open(frame_file).convert("RGB")
    actions = load_actions(action_file, "umi")
    res = gen.generate(action_mode="forward_dynamics", embodiment="umi", image=frame, actions=actions,
                       num_inference_steps=steps, seed=seed, progress=progress)
    res.save(out_dir / "rollout.mp4")
    note(out_dir / "rollout.mp4", f"forward dynamics from {frame_file.name} + {action_file.name} "
                                  f"({actions.shape[0]} actions): {res.frames.shape[0]} frames at {res.fps:g} fps")

    res = gen.generate(DEMO_PROMPT, enable_sound=True, num_inference_steps=steps, seed=seed, progress=progress)
    res.save(out_dir / "t2v.mp4")
    note(out_dir / "t2v.mp4", f"text-to-video with sound, \"{DEMO_PROMPT}\": {res.frames.shape[0]} frames "
                              f"{res.frames.shape[2]}x{res.frames.shape[1]} at {res.fps:g} fps, "
                              f"{res.sound.shape[1] / 48000:.2f} s of 48 kHz stereo")
    clip = out_dir / "t2v.mp4"

    res = gen.generate(POLICY_INSTRUCTION, action_mode="policy", embodiment="umi", image=frame,
                       num_inference_steps=steps, seed=seed, progress=progress)
    res.save(out_dir / "policy.mp4")
    res.save(out_dir / "policy.json")
    note(out_dir / "policy.json", f"policy for \"{POLICY_INSTRUCTION}\": an action chunk of shape "
                                  f"{list(res.actions.shape)} (umi: translation, rot6d, gripper); "
                                  f"the imagined video is policy.mp4")
    del gen

    rsn = Reasoner.from_pretrained(root)
    lines = []
    for q in QUESTIONS:
        answer = rsn.chat([{"role": "user", "content": [{"type": "video", "video": str(clip)},
                                                        {"type": "text", "text": q}]}],
                          max_tokens=64, temperature=0.0).text
        lines.append(f"Q: {q}\nA: {answer.strip()}\n")
    (out_dir / "answers.txt").write_text("\n".join(lines))
    note(out_dir / "answers.txt", "two reasoner answers about t2v.mp4:\n  " +
         "\n  ".join(line.replace("\n", "  ").strip() for line in lines))
    print(f"demo done in {time.perf_counter() - started:.0f} s", flush=True)
    return written


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cosmos3 demo", description="Run every surface of the embedded pico model: "
                                "forward dynamics, text-to-video with sound, policy, reasoner.")
    p.add_argument("--checkpoint", default="pico", help="embedded model name (default pico) or checkpoint directory")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's native setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        run_demo(args.checkpoint, args.out, args.steps, args.seed, not args.quiet)
    except ValueError as e:
        print(f"cosmos3 demo: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
