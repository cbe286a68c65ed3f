"""cosmos3.sim: the world model as a gymnasium environment (forward dynamics, the last frame conditioning the next
chunk), `cosmos3 sim` against our own openpi server, and bench_sim's drift figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from cosmos3.generator import Generator
from cosmos3.sim import WorldModelEnv, sim_main
from cosmos3.world import Truth, render_tabletop, simulate_tabletop

CHUNK = 4


@pytest.fixture(scope="module")
def pico():
    return Generator.from_pretrained("pico", device="cpu")


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sim.py"
    spec = importlib.util.spec_from_file_location("bench_sim", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_rolls_out_chunks_from_the_last_frame(pico, monkeypatch):
    ep = simulate_tabletop(1)
    truth = render_tabletop(ep)
    seen, rewards = [], []
    original = pico.generate

    def spy(*args, **kwargs):
        seen.append(np.asarray(kwargs["image"]).copy())
        return original(*args, **kwargs)

    monkeypatch.setattr(pico, "generate", spy)
    env = WorldModelEnv(pico, "umi", chunk=CHUNK, num_inference_steps=1, max_chunks=2,
                        reward_fn=lambda frames, instruction, info: rewards.append(frames.shape) or 0.5)
    assert isinstance(env, gym.Env)
    obs, info = env.reset(options={"image": truth[0], "instruction": ep.instruction})
    assert np.array_equal(obs, truth[0]) and info["instruction"] == ep.instruction
    actions = ep.actions()
    obs1, r, term, trunc, info1 = env.step(actions[:CHUNK])
    assert info1["frames"].shape[0] == CHUNK + 1 and obs1.shape == info1["frames"][-1].shape and r == 0.5
    assert not term and not trunc
    obs2, _, _, trunc, info2 = env.step(actions[CHUNK:2 * CHUNK - 1])  # a short chunk: its own frames only
    assert trunc and info2["frames"].shape[0] == CHUNK
    assert np.array_equal(seen[0], truth[0]) and np.array_equal(seen[1], obs1)  # the last frame conditions the next
    assert env.video().shape[0] == 1 + CHUNK + CHUNK - 1 and rewards == [info1["frames"].shape, info2["frames"].shape]
    with pytest.raises(ValueError, match="expected actions"):
        env.step(np.zeros((CHUNK, 9)))


def test_drift_is_zero_on_truth_and_grows_with_error():
    bench = _bench()
    ep = simulate_tabletop(2)
    frames, truth = render_tabletop(ep), Truth.from_episode(ep)
    same = bench.drift(frames, frames, truth.blocks_px, truth.colors)
    assert same["frame_mae"] == 0 and same["block_err_px_mean"] < 1.0 and same["block_lost_frames"] == 0
    shifted = bench.drift(np.roll(frames, 12, axis=2), frames, truth.blocks_px, truth.colors)
    assert shifted["frame_mae"] > 1 and shifted["block_err_px_mean"] > 8


def test_sim_command_with_our_policy_server(tmp_path):
    out = tmp_path / "sim"
    assert sim_main(["--episodes", "1", "--chunks", "1", "--chunk", str(CHUNK), "--steps", "1", "--device", "cpu",
                     "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy_metadata"]["protocol"] == "openpi" and len(summary["episodes"]) == 1
    episode = summary["episodes"][0]
    assert len(episode["chunks"]) == 1 and episode["chunks"][0]["actions"] == CHUNK
    assert Path(episode["video"]).stat().st_size > 0 and Path(episode["strip"]).stat().st_size > 0


class _FakeTokenizer:
    def encode(self, text):
        return [{"yes": 1, "Yes": 2, " yes": 1, " Yes": 2, "no": 3, "No": 4, " no": 3, " No": 4}[text]]


class _FakeReasoner:
    """Stands in for Reasoner: fixed next-token logits, and a record of the prompt it was asked."""

    def __init__(self, logits):
        import torch

        from cosmos3.config import Cosmos3Config

        self.tokenizer, self.logits, self.asked = _FakeTokenizer(), torch.tensor(logits), []
        self.model = type("M", (), {"config": Cosmos3Config(num_hidden_layers=1), "dtype": torch.float32,
                                    "device": torch.device("cpu")})()

    def build_prompt(self, messages):
        import torch

        self.asked.append(messages)
        return type("P", (), {"input_ids": torch.zeros(4, dtype=torch.long)})()

    def prefill(self, prompt, cache):
        return self.logits


def test_reasoner_reward_is_p_yes():
    from cosmos3.sim import ReasonerReward

    logits = [0.0, 1.0, 0.5, -1.0, 0.2]
    fake = _FakeReasoner(logits)
    reward = ReasonerReward(fake, num_frames=3)
    frames = np.zeros((9, 16, 16, 3), np.uint8)
    p = reward(frames, "push the red block.", {})
    e = np.exp(logits)
    assert p == pytest.approx((e[1] + e[2]) / (e[1] + e[2] + e[3] + e[4]), rel=1e-5)
    content = fake.asked[0][0]["content"]
    assert len(content[0]["video"]) == 3 and content[1]["text"] == ("Did the robot complete this task: push the red "
                                                                     "block? Answer yes or no.")


def test_reasoner_reward_on_pico(pico):
    from cosmos3.sim import ReasonerReward

    ep = simulate_tabletop(4)
    p = ReasonerReward.from_generator(pico)(render_tabletop(ep), ep.instruction)
    assert 0.0 < p < 1.0
