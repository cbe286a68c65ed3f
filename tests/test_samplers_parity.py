"""Every sampler the Generator offers against diffusers' Cosmos3OmniPipeline run with the matching scheduler.

One tiny random official-layout checkpoint per run (fresh config, weights and flow shift) is copied into three
folders that differ only in their sampler settings: a UniPC `scheduler/` (the release's), a flow-match Euler one, and
a UniPC one with `use_native_flow_schedule`. For each way of choosing a sampler (the checkpoint's, `sampler=`, a fixed
`sigmas` list as distilled checkpoints use, the native training schedule) our final latents must equal the
pipeline's within 1e-4, where the reference scheduler is written out here from diffusers' own classes, not taken
from our code. A sampler silently swapped for another (euler running UniPC, a lost shift, sigmas ignored) fails.
"""

import json
import random
import shutil
import warnings

import numpy as np
import pytest
import torch

from cosmos3.generator import Generator
from oracle import build_reference_pipeline, random_config, relative_error
from seeding import fresh_seed

PROMPT = "A red block slides across a wooden table."
NEGATIVE = "blurry"


def unipc(shift: float):
    """The release's sampler, written out from diffusers (UniPC, flow sigmas, order 2, bh2, x0 prediction)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift,
                                   solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True,
                                   num_train_timesteps=1000)


def euler(shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def fixed_sigmas(scheduler, sigmas: list[float]):
    """The pipeline calls set_timesteps(steps); a distilled run sets its fixed sigma list instead (as diffusers'
    distilled Cosmos 3 blocks do: set_timesteps(sigmas=...))."""
    original = scheduler.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, **_):
        assert num_inference_steps == len(sigmas)
        return original(device=device, sigmas=np.asarray(sigmas, dtype=np.float64))

    scheduler.set_timesteps = set_timesteps
    return scheduler


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    seed = fresh_seed("test_samplers_parity.py::setup")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, action=False).replace(vocab_size=rng.randint(300, 400))
    shift = rng.choice([2.0, 3.0, 5.0, 7.0])
    root = tmp_path_factory.mktemp("samplers")
    pipe = build_reference_pipeline(root / "unipc", cfg, gen, flow_shift=shift)
    shutil.copytree(root / "unipc", root / "euler")
    euler(shift).save_config(root / "euler" / "scheduler")
    shutil.copytree(root / "unipc", root / "native")
    index = json.loads((root / "native" / "model_index.json").read_text())
    index["use_native_flow_schedule"] = True
    (root / "native" / "model_index.json").write_text(json.dumps(index))
    ours = {name: Generator.from_pretrained(root / name) for name in ("unipc", "euler", "native")}
    sigmas = sorted({round(rng.uniform(0.05, 1.0), 4) for _ in range(rng.randint(2, 5))}, reverse=True)
    return pipe, ours, shift, sigmas, rng


# case: (checkpoint folder, sampler=, use sigmas, reference scheduler (shift, sigmas) -> scheduler, native)
CASES = {
    "checkpoint-unipc": ("unipc", None, False, lambda s, _: unipc(s), False),
    "unipc": ("unipc", "unipc", False, lambda s, _: unipc(s), False),
    "euler": ("unipc", "euler", False, lambda s, _: euler(s), False),
    "checkpoint-euler": ("euler", None, False, lambda s, _: euler(s), False),
    "checkpoint-euler-asked-unipc": ("euler", "unipc", False, lambda s, _: unipc(s), False),
    "distilled-euler-sigmas": ("unipc", "euler", True, lambda s, sig: fixed_sigmas(euler(1.0), sig), False),
    "unipc-sigmas": ("unipc", None, True, lambda s, sig: fixed_sigmas(unipc(1.0), sig), False),
    "checkpoint-euler-sigmas": ("euler", None, True, lambda s, sig: fixed_sigmas(euler(1.0), sig), False),
    "native-unipc": ("native", None, False, lambda s, _: unipc(s), True),
    "native-euler": ("native", "euler", False, lambda s, _: euler(s), True),
}
MODES = {
    "t2v-sound": dict(num_frames=9, height=64, width=64, fps=16, enable_sound=True),
    "t2i": dict(num_frames=1, height=64, width=96),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("case", list(CASES))
def test_sampler_matches_reference_scheduler(case, mode, setup, seed):
    from diffusers import Cosmos3OmniPipeline

    pipe, ours, shift, sigmas, rng = setup
    folder, sampler, use_sigmas, make_ref, native = CASES[case]
    kw = MODES[mode]
    steps = len(sigmas) if use_sigmas else rng.randint(3, 5)
    # distilled checkpoints bake guidance in (one branch); the others run CFG on video, one branch on images
    guidance = 1.0 if case.startswith("distilled") or mode == "t2i" else rng.choice([3.0, 5.0])
    extra = dict(sigmas=sigmas) if use_sigmas else dict(flow_shift=shift)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny sizes are off the published table
        res = ours[folder].generate(PROMPT, negative_prompt=NEGATIVE, seed=seed, num_inference_steps=steps,
                                    guidance_scale=guidance, sampler=sampler, progress=False, **extra, **kw)
    ref_pipe = Cosmos3OmniPipeline(transformer=pipe.transformer, text_tokenizer=pipe.text_tokenizer, vae=pipe.vae,
                                   scheduler=make_ref(shift, sigmas), sound_tokenizer=pipe.sound_tokenizer,
                                   safety_checker=None, enable_safety_checker=False, use_native_flow_schedule=native)
    ref_kw = {k: v for k, v in kw.items() if k != "fps"}
    ref = ref_pipe(PROMPT, negative_prompt=NEGATIVE, generator=torch.Generator().manual_seed(seed),
                   output_type="latent", num_inference_steps=steps, guidance_scale=guidance,
                   fps=float(kw.get("fps", 24)), enable_safety_check=False, **ref_kw)
    assert res.timings["steps"] == steps
    assert relative_error(res.latents, ref.video[0]) < 1e-4, (case, mode, shift, sigmas)
    if kw.get("enable_sound"):
        assert relative_error(res.sound, ref.sound) < 1e-4


def test_the_samplers_differ(setup, seed):
    """The cases above would pass vacuously if every scheduler gave the same latents: they must not."""
    pipe, ours, shift, sigmas, _ = setup
    kw = dict(num_frames=1, height=64, width=64, num_inference_steps=3, seed=seed, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        runs = [ours["unipc"].generate(PROMPT, sampler="unipc", flow_shift=shift, **kw),
                ours["unipc"].generate(PROMPT, sampler="euler", flow_shift=shift, **kw),
                ours["native"].generate(PROMPT, sampler="unipc", flow_shift=shift, **kw),
                ours["unipc"].generate(PROMPT, sampler="unipc", flow_shift=shift + 1.0, **kw)]
    # 3x the parity tolerance (1e-4): a mix-up of any two cannot pass the cases above. The closest pair, the native
    # schedule against the shifted one at a large shift, measured 8.6e-4 to 6e-3 over 12 random draws (2026-12-02).
    for i in range(len(runs)):
        for j in range(i):
            assert relative_error(runs[i].latents, runs[j].latents) > 3e-4, (i, j)


@pytest.mark.parametrize("folder, sampler", [("unipc", "euler"), ("euler", "unipc"), ("unipc", None), ("euler", None)])
def test_switching_sampler_keeps_the_checkpoints_shift(folder, sampler, setup):
    """make_scheduler without a flow_shift: the checkpoint's shift carries over to the other sampler."""
    from cosmos3.diffusion import load_scheduler_config, make_scheduler

    pipe, ours, shift, _, rng = setup
    made = make_scheduler(load_scheduler_config(ours[folder].path), sampler=sampler)
    name = sampler or folder
    ref = euler(shift) if name == "euler" else unipc(shift)
    assert type(made) is type(ref)
    steps = rng.randint(2, 40)
    made.set_timesteps(steps)
    ref.set_timesteps(steps)
    torch.testing.assert_close(made.sigmas, ref.sigmas, rtol=0, atol=0)
    torch.testing.assert_close(made.timesteps.double(), ref.timesteps.double(), rtol=0, atol=0)
