"""Shared builders for the training tests: a tiny random official-layout checkpoint (diffusers oracle), tiny
datasets of every kind, and helpers to run the trainer in-process or as a subprocess. Everything is built once per
test process and kept in one temporary folder."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(tempfile.mkdtemp(prefix="cosmos3-train-tests-"))
atexit.register(shutil.rmtree, ROOT, True)
REPO = Path(__file__).resolve().parents[2]


def tiny_config():
    from cosmos3.config import Cosmos3Config

    return Cosmos3Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, intermediate_size=128, vocab_size=300, latent_channel=4, patch_latent_dim=16,
                         sound_gen=True, sound_dim=8, action_gen=True, action_dim=16, num_embodiment_domains=32)


@functools.cache
def tiny_checkpoint() -> Path:
    """A random Cosmos3OmniPipeline in the official layout (fixed seed: the tests compare runs, not weights)."""
    from oracle import build_reference_pipeline

    root = ROOT / "checkpoint"
    build_reference_pipeline(root, tiny_config(), torch.Generator().manual_seed(1234), vae_dim=4)
    return root


@functools.cache
def lerobot_dataset() -> Path:
    """One episode of the synthetic tabletop world (LeRobot v3, 10D actions, domain umi)."""
    from cosmos3.world import WorldConfig, generate_dataset

    cfg = WorldConfig(camera_fraction=0.0, violation_fraction=0.0, prefix_fraction=0.0)
    return generate_dataset(ROOT / "world", episodes=1, seed=0, progress=False, config=cfg) / "tabletop"


@functools.cache
def video_folder() -> Path:
    """Two 5-frame 32x32 clips with captions.jsonl."""
    from cosmos3.media import write_video

    folder = ROOT / "videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, caption in enumerate(["A red ball rolls to the left.", "A blue cube slides to the right."]):
        base = rng.integers(0, 255, (1, 32, 32, 3))
        frames = np.clip(base + np.arange(5)[:, None, None, None] * 10, 0, 255).astype(np.uint8)
        write_video(folder / f"clip{i}.mp4", torch.from_numpy(frames), 16.0)
        lines.append(json.dumps({"video": f"clip{i}.mp4", "caption": caption}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@functools.cache
def chat_file() -> Path:
    """Two text-only conversations (the tiny test tokenizer's template takes string contents only)."""
    path = ROOT / "chat.jsonl"
    records = [
        {"messages": [{"role": "user", "content": "Which way does the red block move?"},
                      {"role": "assistant", "content": "Left."}]},
        {"messages": [{"role": "user", "content": "Is the gripper open?"},
                      {"role": "assistant", "content": "Yes, it is open."}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@functools.cache
def vl_checkpoint() -> Path:
    """The tiny checkpoint plus a tiny Qwen3-VL vision tower (vision_encoder/) and a tokenizer without its own chat
    template (so the media-aware ChatML template of cosmos3.tokenizers applies)."""
    from cosmos3.model.vision import VisionTower

    root = ROOT / "checkpoint-vl"
    shutil.copytree(tiny_checkpoint(), root)
    tok = root / "text_tokenizer"
    (tok / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    tower = VisionTower.from_config({"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                                     "out_hidden_size": tiny_config().hidden_size, "num_position_embeddings": 64,
                                     "deepstack_visual_indexes": [0]})
    tower.model.save_pretrained(root / "vision_encoder")
    return root


@functools.cache
def media_chat_file() -> Path:
    """Conversations about two small images (relative image_url paths, resolved next to the file)."""
    from PIL import Image

    folder = ROOT / "media-chat"
    folder.mkdir()
    rng = np.random.default_rng(1)
    records = []
    for i, answer in enumerate(["A red square.", "Two blue dots."]):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        records.append({"messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"img{i}.png"}},
                                         {"type": "text", "text": "What is shown?"}]},
            {"role": "assistant", "content": answer}]})
    path = folder / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@functools.cache
def latents_folder() -> Path:
    """The LeRobot windows precomputed (4 samples of 5 frames at 32x32)."""
    from cosmos3.train.data import Encoder, LeRobotSource, precompute_latents

    source = LeRobotSource(lerobot_dataset(), Encoder(tiny_checkpoint(), torch.device("cpu"), False),
                           chunk_size=4, stride=4, height=32, width=32)
    source.dataset.windows = source.dataset.windows[:4]
    return precompute_latents(source, ROOT / "latents", progress=False)


def run_cli(args: list[str], nproc: int = 1, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """The trainer as a subprocess (torchrun for nproc > 1), single-threaded per process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "src"))
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "cosmos3.train", *args]
    else:
        cmd = [sys.executable, "-m", "cosmos3.train", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


def read_metrics(run: Path) -> dict[int, dict]:
    """step -> metrics (the last line written for a step wins: a resumed run rewrites the steps it redid)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        out[m["step"]] = m
    return out
