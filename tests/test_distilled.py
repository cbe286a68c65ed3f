"""4-step distilled checkpoints (issue #18): detected from `modular_model_index.json` (diffusers'
Cosmos3DistilledModularPipeline layout: `distilled_sigmas`, FlowMatchEulerDiscreteScheduler), run on their fixed
sigmas (shifted by the scheduler's static shift, as diffusers does) with guidance forced to 1 (a warning when asked
otherwise); the latents equal diffusers' modular pipeline's. Tiny random checkpoint, fresh weights each run."""

import json
import random
import shutil
import warnings

import pytest
import torch

from cosmos3.diffusion import load_distilled_sigmas
from cosmos3.generator import Generator

from oracle import relative_error, tiny_generator_checkpoint

PROMPT = "A robot arm pushes the red block to the left."
SMALL = dict(num_frames=5, height=64, width=64, fps=16, progress=False)
SIGMAS = [0.999, 0.875, 0.625, 0.3]


def make_distilled(base, root, sigmas: list[float], shift: float):
    """Copy a base checkpoint and turn it into a distilled one: an Euler scheduler and a modular index naming the
    blocks and components the way diffusers' ModularPipeline.from_pretrained reads them."""
    shutil.copytree(base, root, dirs_exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": shift}))

    def entry(name: str, library: str, cls: str) -> list:
        return [library, cls, {"pretrained_model_name_or_path": "nvidia/Cosmos3-distilled", "subfolder": name,
                               "type_hint": [library, cls]}]

    (root / "modular_model_index.json").write_text(json.dumps(
        {"_class_name": "Cosmos3DistilledModularPipeline", "_blocks_class_name": "Cosmos3DistilledBlocks",
         "is_distilled": True, "distilled_sigmas": sigmas, "enable_safety_checker": False,
         "transformer": entry("transformer", "diffusers", "Cosmos3OmniTransformer"),
         "vae": entry("vae", "diffusers", "AutoencoderKLWan"),
         "scheduler": entry("scheduler", "diffusers", "FlowMatchEulerDiscreteScheduler"),
         "text_tokenizer": entry("text_tokenizer", "transformers", "AutoTokenizer")}))
    return root


def shifted(sigmas: list[float], shift: float) -> list[float]:
    return [shift * s / (1 + (shift - 1) * s) for s in sigmas]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_distilled(tiny_generator_checkpoint(tmp_path_factory), tmp_path_factory.mktemp("distilled"), SIGMAS,
                          shift=1.0)


def test_detection(folders, tmp_path):
    assert load_distilled_sigmas(folders) == SIGMAS
    assert load_distilled_sigmas(tmp_path) is None  # no index: a base checkpoint
    (tmp_path / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": SIGMAS, "is_distilled": False}))
    assert load_distilled_sigmas(tmp_path) is None
    (tmp_path / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": [0.3, 0.9]}))
    with pytest.raises(ValueError, match="decrease"):
        load_distilled_sigmas(tmp_path)
    # the scheduler's static shift applies to the list, as in diffusers' FlowMatchEulerDiscreteScheduler
    (tmp_path / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": SIGMAS}))
    (tmp_path / "scheduler").mkdir()
    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    assert load_distilled_sigmas(tmp_path) == pytest.approx(shifted(SIGMAS, 3.0), abs=1e-12)
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "use_dynamic_shifting": True}))
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
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


@pytest.mark.parametrize("frames", [1, 5])  # text-to-image and text-to-video
def test_parity_with_diffusers_modular_pipeline(tmp_path_factory, seed, frames):
    """Our Generator and diffusers' Cosmos3DistilledModularPipeline, both loaded from one distilled folder with a
    random schedule (3-5 sigmas) and a random scheduler shift (1 in half the runs: the list used as given)."""
    from diffusers.modular_pipelines import Cosmos3DistilledModularPipeline

    rng = random.Random(seed)
    sigmas = sorted((rng.uniform(0.05, 1.0) for _ in range(rng.randint(3, 5))), reverse=True)
    shift = 1.0 if rng.random() < 0.5 else round(rng.uniform(1.5, 8.0), 3)
    root = make_distilled(tiny_generator_checkpoint(tmp_path_factory), tmp_path_factory.mktemp("parity"), sigmas,
                          shift)
    size = dict(num_frames=frames, height=16 * rng.randint(4, 6), width=16 * rng.randint(4, 6), fps=16)
    prompt = " ".join(rng.choice(["red", "cube", "arm", "slides", "left", "a", "robot", "table"])
                      for _ in range(rng.randint(2, 9)))
    print(f"sigmas {sigmas}, shift {shift}, {size}, prompt {prompt!r}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny sizes are off the published table
        ours = Generator.from_pretrained(root, device="cpu").generate(prompt, seed=seed, progress=False, **size)
        pipe = Cosmos3DistilledModularPipeline.from_pretrained(str(root))
        pipe.load_components(dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        theirs = pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), output="latents", **size)
    assert ours.timings["steps"] == len(sigmas) and ours.timings["branch_forwards"] == len(sigmas)
    assert [float(s) for s in pipe.scheduler.sigmas[:-1]] == pytest.approx(
        shifted(sigmas, shift), abs=1e-6)  # what they ran is what we ran
    assert ours.latents.shape == theirs[0].shape
    assert relative_error(ours.latents, theirs[0]) < 1e-5
