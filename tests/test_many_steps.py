"""Many denoising steps at a large shift: the first integer timesteps repeat (999, 999, ...), and a scheduler that
finds its first step by value would start at the second and run off the end of its schedule."""

import random

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from cosmos3.diffusion import make_scheduler, set_schedule
from cosmos3.generator import Generator
from oracle import build_reference_pipeline, random_config


@pytest.mark.parametrize("sampler", ["unipc", "euler"])
def test_every_step_runs_once_in_order(sampler, seed, tmp_path, monkeypatch):
    rng = random.Random(seed)
    cfg = random_config("qwen", rng, action=False).replace(vocab_size=300)
    build_reference_pipeline(tmp_path, cfg, torch.Generator().manual_seed(seed), vae_dim=4)
    gen = Generator.from_pretrained(tmp_path)
    steps = rng.randint(150, 200)
    cls = UniPCMultistepScheduler if sampler == "unipc" else FlowMatchEulerDiscreteScheduler
    probe = make_scheduler(gen.scheduler_config, sampler=sampler, flow_shift=10.0)
    timesteps = set_schedule(probe, steps)
    if sampler == "unipc":  # integer timesteps: the case, repeated first timesteps (Euler's are floats)
        assert timesteps[0] == timesteps[1]

    seen = []
    original = cls.step

    def spy(self, model_output, timestep, sample, *args, **kwargs):
        seen.append(self.step_index if self.step_index is not None else 0)
        return original(self, model_output, timestep, sample, *args, **kwargs)

    monkeypatch.setattr(cls, "step", spy)
    res = gen.generate("a red block slides left", num_frames=1, height=64, width=64, num_inference_steps=steps,
                       flow_shift=10.0, guidance_scale=1.0, sampler=sampler, seed=seed, progress=False)
    assert torch.isfinite(res.latents).all() and res.timings["steps"] == steps
    assert seen == list(range(steps))
