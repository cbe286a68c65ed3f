#!/usr/bin/env python
"""Plant small, plausible bugs one at a time in a scratch copy of the source and check the fast tests catch each.

    .venv/bin/python scripts/mutation_check.py                 # every mutation
    .venv/bin/python scripts/mutation_check.py -k euler -k mlp # only those whose name contains a word
    .venv/bin/python scripts/mutation_check.py --list

For each mutation the repository's src/, tests/ and pyproject.toml are copied to a temporary folder, the one edit is
applied there (the working tree is never touched), and the mutation's tests run there with PYTHONPATH pointing at
the copy's src. A mutation is *killed* when those tests fail, *survived* when they pass. An edit whose text is no
longer in the file is reported as *stale* (update the list when the code moves). Prints a table, then one JSON line:
{"killed": k, "survived": s, "stale": n, "kill_rate": k / (k + s), "survivors": [...]}.
Exit status 0 only when nothing survived and nothing is stale.

Add a mutation whenever a bug reaches users: the smallest edit that reproduces it and the fast test that should
catch it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to src/cosmos3
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids / files, relative to the repository root


SAMPLERS = ("tests/test_samplers_parity.py",)
LONG = ("tests/model/test_long_sequences.py",)
POSITIONS = ("tests/model/test_positions_independent.py",)
REASONER_ALL = ("tests/test_reasoner_all_positions.py",)
PREPROCESS = ("tests/test_vision_preprocessing_parity.py",)

MUTATIONS = [
    # samplers
    Mutation("euler-runs-unipc", "diffusion.py",
             'name = SAMPLERS[sampler] if sampler else',
             'name = SAMPLERS["unipc"] if sampler else', SAMPLERS),
    Mutation("sampler-switch-drops-shift", "diffusion.py",
             'else {"shift": shift})', 'else {"shift": 1.0})', SAMPLERS),
    Mutation("fixed-sigmas-ignored", "diffusion.py",
             "scheduler.set_timesteps(sigmas=np.asarray(sigmas, dtype=np.float64))",
             "scheduler.set_timesteps(len(sigmas))", SAMPLERS),
    Mutation("native-schedule-starts-at-one", "diffusion.py",
             "np.linspace(1.0 - 1.0 / n_train, 0.0, steps + 1)[:-1]",
             "np.linspace(1.0, 0.0, steps + 1)[:-1]", SAMPLERS),
    Mutation("cfg-combine-from-positive", "diffusion.py",
             "return neg + guidance * (pos - neg)", "return pos + guidance * (pos - neg)", SAMPLERS),
    Mutation("sound-shares-the-vision-scheduler", "diffusion.py",
             'schedulers["sound"] = copy.deepcopy(scheduler)', 'schedulers["sound"] = scheduler', SAMPLERS),
    # long sequences
    Mutation("mlp-chunks-reversed", "model/mot.py",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)], dim=-2)",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)][::-1], dim=-2)", LONG),
    Mutation("mlp-last-chunk-dropped-rows", "model/mot.py",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)], dim=-2)",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)][:-1] + [x[..., -(rows % self.INFERENCE_CHUNK "
             "or self.INFERENCE_CHUNK):, :] * 0], dim=-2)", LONG),
    Mutation("vae-decode-cache-reset-after-second-chunk", "vae.py",
             "vae._conv_idx = [0]  #",
             "vae._feat_map = [None] * len(vae._feat_map) if i > 1 else vae._feat_map; vae._conv_idx = [0]  #",
             LONG),
    # positions
    Mutation("action-positions-off-by-one", "model/rope.py",
             "base_fps / VAE_TEMPORAL_COMPRESSION, first=1)", "base_fps / VAE_TEMPORAL_COMPRESSION, first=0)",
             POSITIONS),
    Mutation("modality-offset-plus-one", "model/rope.py",
             "return float(num_text_tokens + margin)", "return float(num_text_tokens + margin + 1)", POSITIONS),
    Mutation("sound-positions-on-vision-clock", "sequence.py",
             "sound_positions(self.sound_latents, offset, sound_fps, cfg.base_fps,",
             "sound_positions(self.sound_latents, offset, sound_fps, cfg.base_fps / 4,", POSITIONS),
    Mutation("sound-spatial-ids-ignore-reset-flag", "model/rope.py",
             "hw = torch.full_like(t, 0.0 if reset_spatial else float(int(offset)))\n    return torch.stack([t, hw, "
             "hw.clone()])\n\n\ndef action",
             "hw = torch.zeros_like(t)\n    return torch.stack([t, hw, hw.clone()])\n\n\ndef action", POSITIONS),
    Mutation("spatial-ids-not-reset", "sequence.py",
             "offset, fps, cfg.base_fps, cfg.unified_3d_mrope_reset_spatial_ids)]",
             "offset, fps, cfg.base_fps, False)]", POSITIONS),
    # reasoner
    Mutation("deepstack-last-layer-skipped", "model/omni.py",
             "if deepstack is not None and i < len(deepstack[1]):",
             "if deepstack is not None and i < len(deepstack[1]) - 1:", REASONER_ALL),
    Mutation("reasoner-mlp-chunks-reversed", "model/mot.py",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)], dim=-2)",
             "for part in x.split(self.INFERENCE_CHUNK, dim=-2)][::-1], dim=-2)", REASONER_ALL),
    # preprocessing
    Mutation("odd-video-padded-with-first-frame", "model/vision.py",
             "x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])",
             "x = torch.cat([x, x[:1].expand(pad, -1, -1, -1)])", PREPROCESS),
    Mutation("video-resized-bilinear", "model/vision.py",
             'size=(h, w), mode="bicubic"', 'size=(h, w), mode="bilinear"', PREPROCESS),
    Mutation("video-resized-with-pil", "model/vision.py",
             'x = nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)',
             'x = torch.from_numpy(np.stack([np.asarray(Image.fromarray(f.permute(1, 2, 0).numpy()).resize((w, h), '
             'Image.BICUBIC)) for f in x])).permute(0, 3, 1, 2)', PREPROCESS),
    Mutation("image-min-max-pixels-swapped", "model/vision.py",
             'size={"shortest_edge": self.image_min_pixels, "longest_edge": self.image_max_pixels}',
             'size={"shortest_edge": self.image_min_pixels, "longest_edge": self.video_max_pixels}', PREPROCESS),
    Mutation("frame-sampling-floors", "model/vision.py",
             "np.linspace(0, total - 1, num_frames).round().astype(int)",
             "np.linspace(0, total - 1, num_frames).astype(int)", PREPROCESS),
    Mutation("video-rescale-256", "model/vision.py", "x * (1.0 / 255.0)", "x * (1.0 / 256.0)", PREPROCESS),
    Mutation("video-patch-transposed", "model/vision.py",
             ".permute(0, 3, 6, 4, 7, 2, 1, 5, 8)", ".permute(0, 3, 6, 4, 7, 2, 1, 8, 5)", PREPROCESS),
    Mutation("video-timestamp-first-frame", "model/vision.py",
             "stamps = [(times[i] + times[i + Tp - 1]) / 2", "stamps = [times[i]", PREPROCESS),
]


def run_one(m: Mutation, timeout: float) -> tuple[str, float, str]:
    """-> (status, seconds, last line of pytest's output)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        tmp = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
        shutil.copytree(ROOT / "src", tmp / "src", ignore=ignore)
        shutil.copytree(ROOT / "tests", tmp / "tests", ignore=ignore)
        shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
        target = tmp / "src" / "cosmos3" / m.file
        text = target.read_text() if target.is_file() else ""
        if text.count(m.old) != 1:
            return "stale", time.perf_counter() - started, f"{m.file}: edit text found {text.count(m.old)} times"
        target.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONPATH=str(tmp / "src"), HF_HUB_OFFLINE="1",
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed", time.perf_counter() - started, f"timed out after {timeout:.0f}s"
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        if proc.returncode == 0:
            return "survived", time.perf_counter() - started, last
        if proc.returncode in (2, 3, 4, 5):  # interrupted, internal error, usage error, no tests collected
            return "error", time.perf_counter() - started, last
        return "killed", time.perf_counter() - started, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", action="append", default=[], help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.k or any(k in m.name for k in args.k)]
    if args.list:
        for m in chosen:
            print(f"{m.name:45s} {m.file:20s} {' '.join(m.tests)}")
        return 0
    rows = []
    width = max(len(m.name) for m in chosen)
    print(f"{'mutation':{width}s}  {'status':8s}  {'secs':>6s}  detail", flush=True)
    for m in chosen:
        status, secs, detail = run_one(m, args.timeout)
        rows.append((m, status))
        print(f"{m.name:{width}s}  {status:8s}  {secs:6.1f}  {detail[:100]}", flush=True)
    killed = sum(s == "killed" for _, s in rows)
    survived = [m.name for m, s in rows if s == "survived"]
    bad = [m.name for m, s in rows if s in ("stale", "error")]
    rate = killed / (killed + len(survived)) if killed + len(survived) else 0.0
    print(json.dumps({"killed": killed, "survived": len(survived), "stale_or_error": len(bad),
                      "kill_rate": round(rate, 4), "survivors": survived, "stale_or_error_names": bad}))
    return 0 if not survived and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
