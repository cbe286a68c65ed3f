"""Step caching (diffusion.StepCache, TeaCache-style) and the guidance interval's transformer-evaluation accounting,
on a tiny random official-layout checkpoint with fresh weights each run."""

import math

import pytest
import torch

from cosmos3.diffusion import StepCache
from cosmos3.generator import Generator

from oracle import tiny_generator_checkpoint

PROMPT = "A robot arm pushes the red block to the left."
SMALL = dict(num_frames=5, height=64, width=64, fps=16, num_inference_steps=6, progress=False)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return Generator.from_pretrained(tiny_generator_checkpoint(tmp_path_factory), device="cpu")


def _run(generator, **kw):
    with pytest.warns(UserWarning):  # tiny sizes are off the published table
        return generator.generate(PROMPT, **{**SMALL, **kw})


def _psnr(ref: torch.Tensor, x: torch.Tensor) -> float:
    mse = float((x.double() - ref.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(float(ref.abs().max()) ** 2 / mse)


def test_skip_decisions_accumulate_relative_change():
    cache = StepCache(0.25)
    base = torch.ones(4, 3)
    assert not cache.skip(base, 1, force=False)  # nothing cached yet
    cache.residual = torch.zeros(1, 4, 3)
    assert cache.skip(base * 1.1, 1, force=False)  # 10% change: under 0.25
    assert cache.skip(base * 1.2, 1, force=False)  # 10% + 9%
    assert not cache.skip(base * 1.3, 1, force=False)  # 10% + 9% + 8% > 0.25: run, and start counting anew
    assert cache.accumulated == 0.0
    assert not cache.skip(base * 1.3, 1, force=True)  # forced (the last step)
    assert not cache.skip(base * 1.3, 2, force=False)  # the cached residual has another branch count


def test_step_cache_off_and_tiny_threshold_match_full_sampling(generator, seed):
    full = _run(generator, seed=seed)
    off = _run(generator, seed=seed, step_cache=0)
    assert torch.equal(full.latents, off.latents)
    assert (full.timings["forwards"], full.timings["skipped"]) == (6, 0)
    tiny = _run(generator, seed=seed, step_cache=1e-9)  # never skips: the residual path equals the plain one
    assert tiny.timings["forwards"] == 6 and tiny.timings["skipped"] == 0
    assert float((tiny.latents - full.latents).norm() / full.latents.norm()) < 1e-5


def test_step_cache_skips_and_counts(generator, seed):
    full = _run(generator, seed=seed)
    everything = _run(generator, seed=seed, step_cache=1e9)  # skips all but the first and the last step
    assert everything.timings["forwards"] == 2 and everything.timings["skipped"] == 4
    assert everything.timings["branch_forwards"] == 2 * full.timings["branch_forwards"] // 6
    assert not torch.equal(everything.latents, full.latents) and torch.isfinite(everything.latents).all()
    some = _run(generator, seed=seed, step_cache=0.1)
    assert some.timings["forwards"] + some.timings["skipped"] == 6
    if some.timings["skipped"] == 0:
        assert float((some.latents - full.latents).norm() / full.latents.norm()) < 1e-5
    print(f"step_cache 0.1: {some.timings['skipped']} of 6 skipped, PSNR {_psnr(full.latents, some.latents):.1f} dB; "
          f"all skipped: {_psnr(full.latents, everything.latents):.1f} dB")


def test_guidance_interval_counts_branch_evaluations(generator, seed):
    full = _run(generator, seed=seed, guidance_scale=5.0)
    assert full.timings["branch_forwards"] == 12  # two CFG rows per step
    half = _run(generator, seed=seed, guidance_scale=5.0, guidance_interval=(0.0, 0.9))  # shift 5: half the sigmas above 0.9
    assert 6 < half.timings["branch_forwards"] < 12
    assert half.timings["forwards"] == 6


def test_bad_step_cache_is_refused(generator):
    for bad in (-0.1, "fast", True):
        with pytest.raises(ValueError, match="step_cache"):
            generator.resolve(PROMPT, step_cache=bad)
    assert generator.resolve(PROMPT, step_cache=0.05, **{k: v for k, v in SMALL.items()
                                                         if k != "progress"}).step_cache == 0.05


def test_cli_flags():
    from cosmos3.cli import build_parser

    args = build_parser().parse_args(["generate", "p", "--step-cache", "0.05", "--guidance-interval", "0.2,0.9"])
    assert args.step_cache == 0.05 and tuple(args.guidance_interval) == (0.2, 0.9)
