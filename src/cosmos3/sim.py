"""Closed loop inside the world model (docs/ROBOTS.md): a gymnasium environment whose dynamics is the generator's
forward-dynamics mode, and `cosmos3 sim`, which runs a policy (any openpi server) against it.

    env = WorldModelEnv(Generator.from_pretrained("pico"), embodiment="umi", num_inference_steps=4)
    obs, info = env.reset(options={"image": first_frame, "instruction": "push the red block to the left"})
    obs, reward, terminated, truncated, info = env.step(action_chunk)     # [chunk, raw_dim] -> info["frames"]

Each step generates the chunk's video from the current frame and the actions; the last generated frame is the next
observation and conditions the next chunk. The reward is 0 unless `reward_fn(frames, instruction, info)` is given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image


class WorldModelEnv(gym.Env):
    """gymnasium.Env over a Generator's forward dynamics. Observations: uint8 [H, W, 3] (the latest frame, the
    model's output size); actions: float32 [chunk, raw_dim] (shorter chunks repeat their last row)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, generator, embodiment: str = "umi", chunk: int | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 resolution: str | None = None, reward_fn=None, max_chunks: int | None = None, seed: int = 0):
        from .actions import get_embodiment

        self.generator, self.embodiment = generator, get_embodiment(embodiment)
        self.chunk = chunk or generator.defaults.get("action_chunk_size") or self.embodiment.chunk_size
        self.settings = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                             resolution=resolution)
        self.reward_fn, self.max_chunks, self.base_seed = reward_fn, max_chunks, seed
        self.action_space = spaces.Box(-np.inf, np.inf, (self.chunk, self.embodiment.raw_dim), np.float32)
        self.observation_space = spaces.Box(0, 255, (1, 1, 3), np.uint8)  # sized by reset
        self.frame: np.ndarray | None = None
        self.instruction = ""
        self.frames: list[np.ndarray] = []
        self.chunks = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None, image=None,
              instruction: str | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        image = options.get("image", image)
        if image is None:
            raise ValueError("reset: needs an image (options={'image': ..., 'instruction': ...})")
        if isinstance(image, (str, Path)):
            image = Image.open(image)
        frame = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"reset: expected an RGB image [H, W, 3], got shape {list(frame.shape)}")
        self.frame, self.frames, self.chunks = frame, [frame], 0
        self.instruction = options.get("instruction", instruction) or ""
        if seed is not None:
            self.base_seed = seed
        self.observation_space = spaces.Box(0, 255, frame.shape, np.uint8)
        return frame, {"instruction": self.instruction}

    def step(self, action):
        if self.frame is None:
            raise RuntimeError("step before reset")
        actions = np.asarray(action, dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[None]
        if actions.ndim != 2 or actions.shape[1] != self.embodiment.raw_dim or not 1 <= actions.shape[0] <= self.chunk:
            raise ValueError(f"step: expected actions [<= {self.chunk}, {self.embodiment.raw_dim}], got "
                             f"{list(actions.shape)}")
        started = time.perf_counter()
        result = self.generator.generate(self.instruction, image=Image.fromarray(self.frame),
                                         action_mode="forward_dynamics", embodiment=self.embodiment.name,
                                         actions=actions, action_chunk_size=self.chunk,
                                         seed=self.base_seed + self.chunks, progress=False,
                                         **{k: v for k, v in self.settings.items() if v is not None})
        frames = result.frames.numpy()
        frames = frames[: actions.shape[0] + 1]  # a short chunk: only the frames its actions drive
        self.frame = frames[-1]
        self.frames.extend(frames[1:])
        self.chunks += 1
        info = {"frames": frames, "seconds": time.perf_counter() - started, "timings": result.timings,
                "chunk": self.chunks}
        reward = float(self.reward_fn(frames, self.instruction, info)) if self.reward_fn else 0.0
        truncated = self.max_chunks is not None and self.chunks >= self.max_chunks
        return self.frame, reward, False, truncated, info

    def render(self):
        return self.frame

    def video(self) -> np.ndarray:
        """Every frame of the episode so far: uint8 [T, H, W, 3]."""
        return np.stack(self.frames)


class ReasonerReward:
    """A reward from the reasoner: the probability that it answers "yes" to a success question about the chunk's
    video, P(yes) / (P(yes) + P(no)) from the logits of the answer's first token (yes / Yes against no / No).

        reward = ReasonerReward(Reasoner.sharing(generator.model, generator.path))      # same checkpoint, no copy
        env = WorldModelEnv(generator, reward_fn=reward)
    """

    def __init__(self, reasoner, question: str = "Did the robot complete this task: {instruction}? Answer yes or no.",
                 num_frames: int = 8):
        self.reasoner, self.question, self.num_frames = reasoner, question, num_frames
        tok = reasoner.tokenizer
        # the answer's first token: "yes" / "Yes" (their first token, e.g. a byte), plus " yes" / " Yes" when one token
        first = lambda words: sorted({ids[0] for w in words if (ids := tok.encode(w)) and  # noqa: E731
                                      (not w.startswith(" ") or len(ids) == 1)})
        self.yes, self.no = first(("yes", "Yes", " yes", " Yes")), first(("no", "No", " no", " No"))
        if set(self.yes) & set(self.no):
            raise ValueError("ReasonerReward: the tokenizer does not tell 'yes' from 'no' by their first token")

    @classmethod
    def from_generator(cls, generator, **kwargs) -> "ReasonerReward":
        from .reasoner import Reasoner

        if generator.path is None:
            raise ValueError("ReasonerReward: needs a Generator loaded with from_pretrained (its folder)")
        return cls(Reasoner.sharing(generator.model, generator.path), **kwargs)

    def probability(self, frames: np.ndarray, instruction: str) -> float:
        import torch

        from .model.mot import KVCache

        pick = np.linspace(0, len(frames) - 1, min(self.num_frames, len(frames))).round().astype(int)
        clip = [Image.fromarray(np.asarray(frames[i], dtype=np.uint8)) for i in pick]
        text = self.question.format(instruction=instruction.strip().rstrip("."))
        messages = [{"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": text}]}]
        r = self.reasoner
        prompt = r.build_prompt(messages)
        cache = KVCache.allocate(r.model.config, 1, prompt.input_ids.shape[0], r.model.dtype, r.model.device)
        logits = r.prefill(prompt, cache).float()
        both = torch.logsumexp(logits[self.yes], 0), torch.logsumexp(logits[self.no], 0)
        return float(torch.softmax(torch.stack(both), 0)[0])

    def __call__(self, frames, instruction: str, info: dict | None = None) -> float:
        return self.probability(frames, instruction)


# ------------------------------------------------------------------------------------------------ command


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="cosmos3 sim", description="Run a policy inside the world model: N episodes, "
                                "an MP4 each and a JSON summary (docs/ROBOTS.md).")
    p.add_argument("--checkpoint", default="pico", help="the world model (embedded name or folder)")
    p.add_argument("--policy", default="self", help="an openpi server (ws://HOST:PORT[/path]), or 'self': our own "
                   "policy server on the same checkpoint, started here")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--chunks", type=int, default=2, help="action chunks per episode")
    p.add_argument("--chunk", type=int, default=None, help="actions per chunk (default: the checkpoint's)")
    p.add_argument("--image", action="append", default=[], help="first frame(s); default: synthetic-world scenes")
    p.add_argument("--instruction", default=None, help="default: the synthetic world's instruction")
    p.add_argument("--embodiment", default="umi")
    p.add_argument("--steps", type=int, default=4, help="denoising steps of the world model (and of 'self')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", choices=["none", "reasoner"], default="none",
                   help="reasoner: P(yes) of the same checkpoint's reasoner to 'did the robot complete the task?'")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="out/sim")
    return p


def sim_main(argv: list[str]) -> int:
    import sys

    from .generator import Generator
    from .media import write_video

    args = build_parser().parse_args(argv)
    if args.episodes < 1 or args.chunks < 1:
        print("error: --episodes and --chunks must be at least 1", file=sys.stderr)
        return 2
    from .policy_server import PolicyClient

    generator = Generator.from_pretrained(args.checkpoint, device=args.device)
    handle = None
    url = args.policy
    if url == "self":
        from .policy_server import PolicyEngine, PolicySettings, start_policy_server

        settings = PolicySettings(steps=args.steps, chunk=args.chunk)
        handle = start_policy_server(PolicyEngine(generator, "generic", settings,
                                                  embodiment=args.embodiment))
        url = f"ws://127.0.0.1:{handle.port}"
    if not url.startswith(("ws://", "wss://")):
        url = f"ws://{url}"
    client = PolicyClient(url)
    meta = client.metadata
    key = (meta.get("image_keys") or ["observation/image"])[0]
    size = meta.get("camera_size")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reward = ReasonerReward.from_generator(generator) if args.reward == "reasoner" else None
    env = WorldModelEnv(generator, args.embodiment, chunk=args.chunk, num_inference_steps=args.steps,
                        max_chunks=args.chunks, seed=args.seed, reward_fn=reward)
    summary = {"checkpoint": args.checkpoint, "policy": args.policy, "policy_metadata": meta, "episodes": []}
    try:
        for e in range(args.episodes):
            if args.image:
                image, instruction = Image.open(args.image[e % len(args.image)]), args.instruction or ""
            else:
                from .world import render_tabletop, simulate_tabletop

                ep = simulate_tabletop(args.seed + e)
                image, instruction = Image.fromarray(render_tabletop(ep)[0]), args.instruction or ep.instruction
            obs, _ = env.reset(options={"image": image, "instruction": instruction})
            record = {"episode": e, "instruction": instruction, "chunks": [], "policy_ms": [], "world_model_s": []}
            truncated = False
            while not truncated:
                frame = obs if size is None else np.asarray(Image.fromarray(obs).resize((size[1], size[0])))
                t = time.perf_counter()
                answer = client.infer({key: frame, "prompt": instruction})
                record["policy_ms"].append(1000 * (time.perf_counter() - t))
                actions = np.asarray(answer["actions"], np.float32)[: env.chunk]
                obs, reward, _, truncated, info = env.step(actions)
                record["world_model_s"].append(info["seconds"])
                record["chunks"].append({"reward": reward, "actions": int(actions.shape[0])})
            path = out / f"episode_{e:03d}.mp4"
            video = env.video()
            write_video(path, video, generator.defaults.get("fps", 16))
            strip = out / f"episode_{e:03d}.png"  # every 8th frame side by side: a picture strip of the episode
            Image.fromarray(np.concatenate(list(video[::8]), axis=1)).save(strip)
            record.update(video=str(path), strip=str(strip), reward=sum(c["reward"] for c in record["chunks"]))
            summary["episodes"].append(record)
            print(f"episode {e}: {len(record['chunks'])} chunks -> {path}", flush=True)
    finally:
        if handle is not None:
            handle.stop()
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"summary: {out / 'summary.json'}")
    return 0
