"""`cosmos3 demo`: every surface of the embedded `pico` model, on a CPU, in a couple of minutes.

    cosmos3 demo [--checkpoint pico] [--out out] [--steps N] [--seed 0]

Writes into --out, its inputs beside its outputs:
    frame.png            input: the world frame the rollout and the policy start from (shipped with the model)
    actions.json         input: the action file of the rollout (two of the model's action chunks)
    rollout.mp4          forward dynamics: frame.png + actions.json -> video
    t2v.mp4              text-to-video with synchronized sound
    policy.mp4/.json     policy: frame.png + an instruction -> an action chunk (and the imagined video)
    answers.txt          two reasoner answers about the generated clip
    index.html           one page: every clip playing beside the inputs that made it, the actions plotted per
                         dimension over time (inline SVG), the reasoner's answers; open it in a browser
    strip.png            the same at a glance for a terminal: one row per clip, input first, then frames over time
and prints one line per file saying what it is, then the page's path.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
import time
from pathlib import Path

import numpy as np

DEMO_PROMPT = "A robot gripper pushes the red square to the right."
POLICY_INSTRUCTION = "Push the blue circle up."
QUESTIONS = ("Describe this video in one sentence.", "How many blocks are on the table?")
# The umi embodiment's 10 action columns (the world's single-arm actions: a relative pose and the gripper value).
UMI_COLUMNS = ("dx", "dy", "dz", "r1", "r2", "r3", "r4", "r5", "r6", "gripper")
STRIP_FRAMES = 6  # frames per clip in strip.png


def demo_inputs(checkpoint: Path) -> tuple[Path, Path]:
    """The world frame and action file shipped next to the embedded model (written by the pico ship stage)."""
    frame, actions = checkpoint / "demo" / "frame.png", checkpoint / "demo" / "actions.json"
    for f in (frame, actions):
        if not f.is_file():
            raise ValueError(f"{f}: the checkpoint has no demo inputs (pico ships them under demo/)")
    return frame, actions


def run_demo(checkpoint: str = "pico", out: str = "out", steps: int | None = None, seed: int = 0,
             progress: bool = True, weights: str = "float") -> list[tuple[Path, str]]:
    from PIL import Image

    from .actions import load_actions
    from .checkpoint import resolve_checkpoint
    from .generator import Generator
    from .reasoner import Reasoner

    root = resolve_checkpoint(checkpoint)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped_frame, shipped_actions = demo_inputs(root)
    frame_file, action_file = out_dir / "frame.png", out_dir / "actions.json"  # the inputs beside the outputs
    for src, dst in ((shipped_frame, frame_file), (shipped_actions, action_file)):
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    gen = Generator.from_pretrained(root, weights=weights)
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
    clips = {"rollout": res.frames.numpy()}
    note(out_dir / "rollout.mp4", f"forward dynamics from {frame_file.name} + {action_file.name} "
                                  f"({actions.shape[0]} actions): {res.frames.shape[0]} frames at {res.fps:g} fps")

    res = gen.generate(DEMO_PROMPT, enable_sound=True, num_inference_steps=steps, seed=seed, progress=progress)
    res.save(out_dir / "t2v.mp4")
    clips["t2v"] = res.frames.numpy()
    note(out_dir / "t2v.mp4", f"text-to-video with sound, \"{DEMO_PROMPT}\": {res.frames.shape[0]} frames "
                              f"{res.frames.shape[2]}x{res.frames.shape[1]} at {res.fps:g} fps, "
                              f"{res.sound.shape[1] / 48000:.2f} s of 48 kHz stereo")
    clip = out_dir / "t2v.mp4"

    res = gen.generate(POLICY_INSTRUCTION, action_mode="policy", embodiment="umi", image=frame,
                       num_inference_steps=steps, seed=seed, progress=progress)
    res.save(out_dir / "policy.mp4")
    res.save(out_dir / "policy.json")
    clips["policy"] = res.frames.numpy()
    policy_actions = res.actions.numpy()
    note(out_dir / "policy.json", f"policy for \"{POLICY_INSTRUCTION}\": an action chunk of shape "
                                  f"{list(res.actions.shape)} (umi: translation, rot6d, gripper); "
                                  f"the imagined video is policy.mp4")
    del gen

    rsn = Reasoner.from_pretrained(root, weights=weights)
    lines, answers = [], []
    for q in QUESTIONS:
        answer = rsn.chat([{"role": "user", "content": [{"type": "video", "video": str(clip)},
                                                        {"type": "text", "text": q}]}],
                          max_tokens=64, temperature=0.0).text
        answers.append((q, answer.strip()))
        lines.append(f"Q: {q}\nA: {answer.strip()}\n")
    (out_dir / "answers.txt").write_text("\n".join(lines))
    note(out_dir / "answers.txt", "two reasoner answers about t2v.mp4:\n  " +
         "\n  ".join(line.replace("\n", "  ").strip() for line in lines))
    write_strip(out_dir / "strip.png", np.asarray(frame), clips)
    note(out_dir / "strip.png", f"one row per clip ({', '.join(clips)}): its input frame (t2v: none), then "
                                f"{STRIP_FRAMES} frames over time")
    page = write_page(out_dir, actions, policy_actions, answers, str(root))
    note(page, "the demo on one page: clips beside their inputs, actions plotted, answers")
    print(f"demo done in {time.perf_counter() - started:.0f} s; open {page.resolve()}", flush=True)
    return written


# ------------------------------------------------------------------------------------------------ page and strip


def write_strip(path: Path, first: np.ndarray, clips: dict[str, np.ndarray]) -> Path:
    """strip.png: one row per clip, the frame it started from (a blank for text-to-video) then STRIP_FRAMES frames
    evenly spread over the clip, at half size."""
    from PIL import Image

    H, W = first.shape[:2]
    h, w = H // 2, W // 2
    sheet = Image.new("RGB", ((STRIP_FRAMES + 1) * (w + 4) + 4, len(clips) * (h + 4) + 4), (255, 255, 255))
    for r, (name, frames) in enumerate(clips.items()):
        start = first if name != "t2v" else np.full_like(first, 255)
        picks = np.linspace(0, frames.shape[0] - 1, STRIP_FRAMES).round().astype(int)
        for c, img in enumerate([start] + [frames[i] for i in picks]):
            tile = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BILINEAR)
            sheet.paste(tile, (4 + c * (w + 4), 4 + r * (h + 4)))
    sheet.save(path)
    return path


def svg_plot(values: np.ndarray, columns: tuple[str, ...], title: str, width: int = 220, height: int = 56) -> str:
    """Inline SVG, one small plot per action dimension (column) over time, each scaled to its own range."""
    values = np.asarray(values, dtype=np.float64)
    T, D = values.shape
    parts = [f'<div class="plots"><div class="plot-title">{html.escape(title)}</div>']
    for d in range(D):
        v = values[:, d]
        lo, hi = float(v.min()), float(v.max())
        span = hi - lo if hi > lo else 1.0
        xs = np.linspace(4, width - 4, T) if T > 1 else np.array([width / 2])
        ys = height - 12 - (v - lo) / span * (height - 20) if hi > lo else np.full(T, height / 2)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        name = columns[d] if d < len(columns) else f"a{d}"
        parts.append(
            f'<svg class="dim" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html.escape(name)}"><rect width="{width}" height="{height}" fill="#fafafa"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>'
            f'<text x="4" y="{height - 2}" font-size="10">{html.escape(name)}: {lo:.3g} .. {hi:.3g}</text></svg>')
    parts.append("</div>")
    return "\n".join(parts)


def write_page(out_dir: Path, given_actions: np.ndarray, policy_actions: np.ndarray,
               answers: list[tuple[str, str]], checkpoint: str) -> Path:
    """index.html: each clip beside the inputs that made it, the actions plotted, the reasoner's answers. Every file
    it references lies in out_dir (relative links), so the folder can be moved or served as it is."""
    e = html.escape
    video = '<video src="{0}" controls autoplay loop muted playsinline width="320"></video>'
    rows = [
        ("Forward dynamics",
         f"the world frame and the action file ({len(given_actions)} actions) drive the model's video",
         '<img src="frame.png" width="320" alt="input frame"><div><a href="actions.json">actions.json</a></div>'
         + svg_plot(given_actions, UMI_COLUMNS, "input actions per dimension over time"),
         video.format("rollout.mp4")),
        ("Text to video, with sound", "a prompt alone",
         f"<blockquote>{e(DEMO_PROMPT)}</blockquote>", video.format("t2v.mp4").replace(" muted", "")),
        ("Policy", "the world frame and an instruction; the model answers with actions (and imagines the video)",
         f'<img src="frame.png" width="320" alt="input frame"><blockquote>{e(POLICY_INSTRUCTION)}</blockquote>',
         video.format("policy.mp4") + '<div><a href="policy.json">policy.json</a></div>'
         + svg_plot(policy_actions, UMI_COLUMNS, "predicted actions per dimension over time")),
    ]
    body = []
    for title, what, inputs, outputs in rows:
        body.append(f'<section><h2>{e(title)}</h2><p>{e(what)}</p><div class="row"><div class="cell"><h3>input</h3>'
                    f'{inputs}</div><div class="cell"><h3>output</h3>{outputs}</div></div></section>')
    qa = "".join(f"<dt>{e(q)}</dt><dd>{e(a) or '<em>(empty answer)</em>'}</dd>" for q, a in answers)
    body.append(f'<section><h2>Reasoner</h2><p>questions about <a href="t2v.mp4">t2v.mp4</a></p><dl>{qa}</dl>'
                f'<p><a href="answers.txt">answers.txt</a> &middot; <a href="strip.png">strip.png</a></p></section>')
    page = out_dir / "index.html"
    page.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosmos3 demo</title>
<style>body{{font-family:sans-serif;margin:1em 2em;max-width:1100px}}.row{{display:flex;gap:2em;flex-wrap:wrap}}
.cell{{flex:1;min-width:330px}}.plots{{display:flex;flex-wrap:wrap;gap:4px;margin-top:.5em}}
.plot-title{{width:100%;font-size:12px;color:#555}}section{{border-top:1px solid #ddd;padding:.5em 0}}
dt{{font-weight:bold}}blockquote{{font-style:italic}}</style></head>
<body><h1>cosmos3 demo</h1><p>checkpoint: {e(checkpoint)}</p>
{chr(10).join(body)}
</body></html>
""")
    return page


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cosmos3 demo", description="Run every surface of the embedded pico model: "
                                "forward dynamics, text-to-video with sound, policy, reasoner.")
    p.add_argument("--checkpoint", default="pico", help="embedded model name (default pico) or checkpoint directory")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's native setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--weights", choices=["float", "int8"], default="float",
                   help="int8: the towers' linears and lm_head in int8 (docs/MEMORY.md)")
    args = p.parse_args(argv)
    try:
        run_demo(args.checkpoint, args.out, args.steps, args.seed, not args.quiet, weights=args.weights)
    except ValueError as e:
        print(f"cosmos3 demo: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
