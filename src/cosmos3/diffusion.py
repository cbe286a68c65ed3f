"""Flow-matching sampling: schedules, the denoising step with classifier-free guidance, and the loop.

Flow matching (DESIGN 2.6): x_sigma = sigma * noise + (1 - sigma) * x0; the network predicts v = noise - x0.
The samplers themselves (UniPC with flow sigmas, flow-match Euler) are diffusers' schedulers, configured from the
checkpoint's `scheduler/` folder: they are commodity parts and the reference uses the very same code.

What is ours is the step: the und keys/values of both prompts are computed once per request (`UndCache`) and every
step runs both CFG branches as one batched gen forward (`denoise_step`), instead of two full forwards per step.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .model import Cosmos3Omni, GenInputs, UndCache
from .sequence import GenLayout

SAMPLERS = {"unipc": "UniPCMultistepScheduler", "euler": "FlowMatchEulerDiscreteScheduler"}


class Cancelled(Exception):
    """Raised by a step callback to stop sampling between steps."""


# ------------------------------------------------------------------------------------------------ schedules


def default_scheduler_config(flow_shift: float = 10.0) -> dict:
    """The release's sampler (DESIGN 2.6): UniPC, order 2, bh2, x0 prediction, lower order at the end."""
    return {"_class_name": SAMPLERS["unipc"], "use_flow_sigmas": True, "prediction_type": "flow_prediction",
            "flow_shift": flow_shift, "solver_order": 2, "solver_type": "bh2", "predict_x0": True,
            "lower_order_final": True, "num_train_timesteps": 1000}


def load_scheduler_config(checkpoint: str | os.PathLike) -> dict:
    path = Path(checkpoint) / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return default_scheduler_config()
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def load_distilled_sigmas(checkpoint: str | os.PathLike) -> list[float] | None:
    """A distilled (few-step) checkpoint's fixed schedule, or None for a base checkpoint.

    The layout is diffusers' Cosmos3DistilledModularPipeline's: `modular_model_index.json` holds `distilled_sigmas`
    (and `is_distilled`, true when absent), the scheduler is FlowMatchEulerDiscreteScheduler, and classifier-free
    guidance is baked into the weights. That pipeline hands the list to the checkpoint's scheduler, which applies its
    static `shift` to it (diffusers 0.42.1, FlowMatchEulerDiscreteScheduler.set_timesteps): the sigmas returned here
    are shifted the same way, so they are then used as given (identical when the shift is 1)."""
    path = Path(checkpoint) / "modular_model_index.json"
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    sigmas = index.get("distilled_sigmas")
    if not sigmas or index.get("is_distilled", True) is False:
        return None
    values = [float(x) for x in sigmas]
    if any(not 0 < x <= 1 for x in values) or any(a <= b for a, b in zip(values, values[1:])):
        raise ValueError(f"{path}: distilled_sigmas must decrease within (0, 1], got {sigmas!r}")
    scheduler = load_scheduler_config(checkpoint)
    if scheduler.get("use_dynamic_shifting"):
        raise ValueError(f"{path}: a distilled checkpoint's scheduler must not use dynamic shifting "
                         "(use_dynamic_shifting: true needs a resolution-dependent mu; a fixed schedule has none)")
    shift = float(scheduler.get("shift", 1.0))
    return [shift * x / (1 + (shift - 1) * x) for x in values]


def distilled_settings(sigmas: list[float], guidance: float | None, steps: int | None,
                       flow_shift: float | None) -> float:
    """What a distilled checkpoint runs whatever was asked: guidance 1 (baked in), its own fixed sigmas (so its step
    count, unshifted). Warns once per setting asked otherwise; returns the guidance (1.0)."""
    import warnings

    if guidance is not None and guidance != 1.0:
        warnings.warn(f"distilled checkpoint: guidance is baked into its weights; guidance_scale {guidance:g} is "
                      "forced to 1", UserWarning, stacklevel=3)
    if steps is not None and steps != len(sigmas):
        warnings.warn(f"distilled checkpoint: its fixed schedule has {len(sigmas)} steps; num_inference_steps "
                      f"{steps} is ignored", UserWarning, stacklevel=3)
    if flow_shift is not None:
        warnings.warn("distilled checkpoint: its fixed sigmas are used as given; flow_shift is ignored", UserWarning,
                      stacklevel=3)
    return 1.0


def make_scheduler(config: dict, flow_shift: float | None = None, sampler: str | None = None):
    """A fresh scheduler from a checkpoint config; `sampler` ("unipc" | "euler") and `flow_shift` override it."""
    import diffusers

    config = dict(config)
    name = SAMPLERS[sampler] if sampler else config.get("_class_name", SAMPLERS["unipc"])
    if name not in SAMPLERS.values():
        raise ValueError(f"scheduler: {name!r} is not supported; expected one of {sorted(SAMPLERS.values())}")
    if sampler and config.get("_class_name") != name:  # switching class: keep only the shared flow settings
        shift = config.get("flow_shift", config.get("shift", 10.0))
        config = {"num_train_timesteps": config.get("num_train_timesteps", 1000)}
        config.update(default_scheduler_config(shift) if name == SAMPLERS["unipc"] else {"shift": shift})
    if flow_shift is not None:
        config["flow_shift" if name == SAMPLERS["unipc"] else "shift"] = float(flow_shift)
    cls = getattr(diffusers, name)
    return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def set_schedule(scheduler, steps: int, sigmas: list[float] | None = None, native: bool = False) -> torch.Tensor:
    """Set the scheduler's steps and return its timesteps. `sigmas` gives a fixed list (distilled checkpoints; make
    the scheduler with flow_shift 1 so they are used as given);
    `native` uses sigma = linspace(1 - 1/1000, 0, N + 1)[:-1] before the shift (the training schedule)."""
    if sigmas is not None:
        scheduler.set_timesteps(sigmas=np.asarray(sigmas, dtype=np.float64))
    elif native:
        n_train = scheduler.config.num_train_timesteps
        scheduler.set_timesteps(sigmas=np.linspace(1.0 - 1.0 / n_train, 0.0, steps + 1)[:-1])
    else:
        scheduler.set_timesteps(steps)
    # Sampling starts at the first step. Left to itself the scheduler finds its first step by timestep value, and
    # with many steps at a large shift the first two integer timesteps are equal (both 999): it then starts at the
    # second, runs off the end of the schedule and UniPC fails an assertion (measured: 150 steps at shift 10).
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler.timesteps


# ------------------------------------------------------------------------------------------------ the step


@dataclass
class Latents:
    """The state being denoised. vision [C, T, H, W], sound [Cs, Ts], actions [n, A]; float32."""

    vision: torch.Tensor
    sound: torch.Tensor | None = None
    actions: torch.Tensor | None = None

    def map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> "Latents":
        return Latents(*(None if x is None else fn(name, x) for name, x in
                         (("vision", self.vision), ("sound", self.sound), ("actions", self.actions))))


@dataclass
class Branches:
    """The CFG branches of one request: und cache and gen positions, positive prompt first."""

    cache: UndCache  # batch 1 (positive only) or 2 (positive, negative)
    positions: torch.Tensor  # [B, 3, N]

    def positive(self) -> "Branches":
        if self.cache.batch_size == 1:
            return self
        keep = lambda t: t[:1]  # noqa: E731
        mask = None if self.cache.mask is None else self.cache.mask[:1]
        return Branches(UndCache([keep(k) for k in self.cache.keys], [keep(v) for v in self.cache.values], mask),
                        self.positions[:1])


def encode_branches(model: Cosmos3Omni, layout: GenLayout, prompts: list[tuple[torch.Tensor, torch.Tensor]]
                    ) -> Branches:
    """Run the und stream of each branch's prompt once; stack them for batched gen passes."""
    cfg = model.config
    caches = [model.encode_und(ids, pos) for ids, pos in prompts]
    positions = torch.stack([layout.positions(cfg, ids.shape[0]) for ids, _ in prompts])
    return Branches(UndCache.stack(caches, consume=True), positions)


@dataclass
class StepCache:
    """TeaCache-style step skipping (opt-in, `threshold` > 0): the gen tokens entering the layers (latents through
    proj_in plus the timestep embedding: this network's "modulated input") are compared with the last step's; while
    their accumulated relative L1 change stays under `threshold`, the layers are skipped and the residual they added
    last time (output - input, per branch) is added to the new tokens. The first step, the last, and any step whose
    branch count differs from the cached residual's (a guidance interval's edge) always run the layers.

    Counts: `forwards` batched gen forwards run, `skipped` skipped, `branch_forwards` rows run (CFG counts 2)."""

    threshold: float
    previous: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    accumulated: float = 0.0
    forwards: int = 0
    skipped: int = 0
    branch_forwards: int = 0

    def skip(self, tokens: torch.Tensor, batch: int, force: bool) -> bool:
        """Decide for this step's tokens [N, D]; remembers them for the next decision."""
        previous, self.previous = self.previous, tokens
        if force or previous is None or self.residual is None or self.residual.shape[0] != batch:
            self.accumulated = 0.0
            return False
        change = float((tokens - previous).abs().mean() / previous.abs().mean().clamp_min(1e-12))
        self.accumulated += change
        if self.accumulated < self.threshold:
            return True
        self.accumulated = 0.0
        return False


def _gen_layers(model: Cosmos3Omni, x: torch.Tensor, positions: torch.Tensor, cache: UndCache,
                layout: GenLayout | None = None) -> torch.Tensor:
    """`run_gen` without the final norm (so a step cache can keep the layers' residual): [B, N, D] -> [B, N, D].
    A layout with several controls runs the weighted control passes instead (control.multi_control_layers)."""
    if layout is not None and layout.controls > 1:
        from .control import multi_control_layers, token_spans

        return multi_control_layers(model, x, positions, cache, *token_spans(layout, model.config),
                                    list(layout.control_weights))
    rope = model.rope(positions)
    for layer, k, v in zip(model.layers, cache.keys, cache.values):
        x = layer.gen(x, rope, k, v, cache.mask, backend=model.attention_backend)
    return x


def denoise_step(model: Cosmos3Omni, layout: GenLayout, latents: Latents, timestep: torch.Tensor,
                 branches: Branches, guidance: float, raw_action_dim: int | None = None,
                 step_cache: StepCache | None = None, force: bool = False, parallel=None) -> Latents:
    """Velocity for one step: one batched gen forward over the branches, then v = v_neg + g (v_pos - v_neg).
    Clean frames / steps get zero velocity; padded action channels too. With a `step_cache`, the forward may be
    skipped (see StepCache; `force` runs it regardless). `parallel` (parallel.Parallel) spreads the branches and / or
    the tokens over the ranks of a torchrun job."""
    inputs = GenInputs(vision=latents.vision, vision_noisy=layout.vision_noisy, timestep=timestep,
                       sound=latents.sound,
                       sound_noisy=None if latents.sound is None else torch.ones(latents.sound.shape[1], dtype=bool),
                       actions=latents.actions, action_noisy=layout.action_noisy, domain_id=layout.domain_id)
    tokens = model.embed_gen(inputs)
    B = branches.cache.batch_size
    if parallel is not None:  # each rank runs its share; every rank ends with every branch's velocity
        outs = parallel.outputs(model, tokens, branches, inputs)
    elif step_cache is None and layout.controls < 2:
        hidden = model.run_gen(tokens.expand(B, -1, -1), branches.positions, branches.cache)
    elif step_cache is None:
        hidden = model.norm_moe_gen(_gen_layers(model, tokens.expand(B, -1, -1), branches.positions,
                                                branches.cache, layout))
    else:
        if step_cache.skip(tokens, B, force):
            step_cache.skipped += 1
        else:
            x = tokens.expand(B, -1, -1)
            step_cache.residual = _gen_layers(model, x, branches.positions, branches.cache, layout) - x
            step_cache.forwards += 1
            step_cache.branch_forwards += B
        hidden = model.norm_moe_gen(tokens + step_cache.residual)
    if parallel is None:
        outs = [model.decode_gen(h, inputs) for h in hidden]
    window = layout.control_guidance_interval  # the release's test: strictly inside (lo, hi)
    if layout.controls and layout.control_guidance != 1.0 and (
            window is None or window[0] < float(timestep) < window[1]):
        from .control import guide_by_controls

        guide_by_controls(model, layout, latents.vision, timestep, branches, outs[0])

    def combine(name: str, _: torch.Tensor) -> torch.Tensor:
        pos = getattr(outs[0], name).float()
        if B == 1:
            return pos
        neg = getattr(outs[1], name).float()
        return neg + guidance * (pos - neg)

    velocity = latents.map(combine)
    if velocity.actions is not None and raw_action_dim is not None:
        velocity.actions[:, raw_action_dim:] = 0
    return velocity


# ------------------------------------------------------------------------------------------------ the loop


def sample(model: Cosmos3Omni, layout: GenLayout, latents: Latents, clean: Latents, branches: Branches,
           scheduler, timesteps: torch.Tensor, guidance: float, *,
           guidance_interval: tuple[float, float] | None = None, raw_action_dim: int | None = None,
           callback: Callable[[int, int], None] | None = None, progress: bool = True,
           step_cache: float | None = None, stats: dict | None = None, parallel=None) -> Latents:
    """Denoise `latents` over `timesteps`. Each modality keeps its own copy of the (stateful) scheduler.

    `clean` holds the conditioning values; they are written back after every step so conditioning frames stay
    exactly as given. `guidance_interval=(lo, hi)` applies CFG only while sigma is in [lo, hi] and runs the positive
    branch alone elsewhere. `callback(step, total)` runs after each step and may raise `Cancelled`.
    `step_cache` (a threshold, e.g. 0.05; None or 0: off) skips gen forwards whose input barely changed
    (`StepCache`). `stats`, when given, receives the counts: forwards, skipped, branch_forwards.
    `parallel` (parallel.Parallel): the steps run over the ranks of a torchrun job (docs/SCALING.md).
    """
    from tqdm.auto import tqdm

    if parallel is not None and step_cache:
        raise ValueError("step_cache: not supported with parallel inference (each rank would skip on its own)")
    schedulers = {"vision": scheduler}
    if latents.sound is not None:
        schedulers["sound"] = copy.deepcopy(scheduler)
    has_noisy_actions = latents.actions is not None and layout.action_noisy is not None and bool(
        layout.action_noisy.any())
    if has_noisy_actions:
        schedulers["actions"] = copy.deepcopy(scheduler)
    positive = branches.positive()
    sigmas = scheduler.sigmas
    vision_clean = ~layout.vision_noisy
    action_clean = None if layout.action_noisy is None else ~layout.action_noisy
    cache = StepCache(float(step_cache)) if step_cache else None
    forwards = branch_forwards = 0

    for i, t in enumerate(tqdm(timesteps, desc="denoising", unit="step", disable=not progress, leave=False)):
        sigma = float(sigmas[i])
        use_cfg = guidance != 1.0 and (guidance_interval is None
                                       or guidance_interval[0] <= sigma <= guidance_interval[1])
        step_branches = branches if use_cfg else positive
        with torch.inference_mode():
            velocity = denoise_step(model, layout, latents, torch.tensor(t.item()), step_branches, guidance,
                                    raw_action_dim, cache, force=i == len(timesteps) - 1, parallel=parallel)
        if cache is None:
            forwards += 1
            branch_forwards += step_branches.cache.batch_size

        def advance(name: str, x: torch.Tensor) -> torch.Tensor:
            if name not in schedulers:
                return x
            v = getattr(velocity, name)
            return schedulers[name].step(v[None], t, x[None], return_dict=False)[0][0]

        latents = latents.map(advance)
        # Conditioning stays exactly what the caller gave (the solver would only move it by rounding error).
        latents.vision[:, vision_clean] = clean.vision[:, vision_clean]
        if latents.actions is not None:
            if action_clean is not None:
                latents.actions[action_clean] = clean.actions[action_clean]
            if raw_action_dim is not None:
                latents.actions[:, raw_action_dim:] = 0
        if callback is not None:
            callback(i + 1, len(timesteps))
    if stats is not None:
        if cache is not None:
            forwards, branch_forwards = cache.forwards, cache.branch_forwards
        stats.update(forwards=forwards, skipped=len(timesteps) - forwards, branch_forwards=branch_forwards)
    return latents


def with_noise(clean: Latents, noise: Latents, layout: GenLayout) -> Latents:
    """Initial state: clean values where conditioning, noise elsewhere (mask * x0 + (1 - mask) * noise)."""
    def mix(name: str, x0: torch.Tensor) -> torch.Tensor:
        n = getattr(noise, name)
        if name == "vision":
            mask = (~layout.vision_noisy).to(x0.dtype)[None, :, None, None]
        elif name == "actions" and layout.action_noisy is not None:
            mask = (~layout.action_noisy).to(x0.dtype)[:, None]
        else:
            mask = torch.zeros((), dtype=x0.dtype)
        return mask * x0 + (1.0 - mask) * n

    return clean.map(mix)
