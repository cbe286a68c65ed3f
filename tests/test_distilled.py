"""4-step distilled checkpoints (issue #18): detected from `modular_model_index.json` (diffusers'
Cosmos3DistilledModularPipeline layout: `distilled_sigmas`, FlowMatchEulerDiscreteScheduler), run on their fixed
sigmas with guidance forced to 1 (a warning when asked otherwise). Tiny random checkpoint, fresh weights each run."""

import json
import random

import pytest
import torch

from cosmos3.diffusion import load_distilled_sigmas
from cosmos3.generator import Generator

from oracle import build_reference_pipeline, random_config
from seeding import fresh_seed

PROMPT = "A robot arm pushes the red block to the left."
SMALL = dict(num_frames=5, height=64, width=64, fps=16, progress=False)
SIGMAS = [0.999, 0.875, 0.625, 0.3]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    seed = fresh_seed("test_distilled.py::folders")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False, action=False).replace(
        vocab_size=rng.randint(300, 400))
    root = tmp_path_factory.mktemp("distilled")
    build_reference_pipeline(root, cfg, gen, sound=False)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 5.0}))
    (root / "modular_model_index.json").write_text(json.dumps(
        {"_class_name": "Cosmos3DistilledModularPipeline", "is_distilled": True, "distilled_sigmas": SIGMAS}))
    return root


def test_detection(folders, tmp_path):
    assert load_distilled_sigmas(folders) == SIGMAS
    assert load_distilled_sigmas(tmp_path) is None  # no index: a base checkpoint
    (tmp_path / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": SIGMAS, "is_distilled": False}))
    assert load_distilled_sigmas(tmp_path) is None
    (tmp_path / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": [0.3, 0.9]}))
    with pytest.raises(ValueError, match="decrease"):
        load_distilled_sigmas(tmp_path)


def test_fixed_sigmas_and_guidance_forced_to_one(folders, seed):
    g = Generator.from_pretrained(folders, device="cpu")
    assert g.distilled_sigmas == SIGMAS
    with pytest.warns(UserWarning) as caught:
        asked = g.generate(PROMPT, seed=seed, guidance_scale=6.0, num_inference_steps=30, **SMALL)
    messages = " ".join(str(w.message) for w in caught)
    assert "forced to 1" in messages and "4 steps" in messages
    assert asked.timings["steps"] == 4 and asked.timings["branch_forwards"] == 4  # one branch per step
    with pytest.warns(UserWarning) as quiet:
        plain = g.generate(PROMPT, seed=seed, **SMALL)
    assert "forced to 1" not in " ".join(str(w.message) for w in quiet)
    assert torch.equal(asked.latents, plain.latents)
    # the same as a base checkpoint run by hand on those sigmas with guidance 1
    g.distilled_sigmas = None
    with pytest.warns(UserWarning):
        by_hand = g.generate(PROMPT, seed=seed, guidance_scale=1.0, sigmas=SIGMAS, **SMALL)
    assert torch.equal(by_hand.latents, plain.latents)
    with pytest.warns(UserWarning):
        guided = g.generate(PROMPT, seed=seed, guidance_scale=6.0, sigmas=SIGMAS, **SMALL)
    assert not torch.equal(guided.latents, plain.latents)
