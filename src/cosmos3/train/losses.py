"""Training objectives: flow matching for the generation pathway, next-token cross-entropy for the reasoner.

Flow matching (DESIGN 2.6): for clean latents x0, noise n ~ N(0, 1) and a noise level sigma in [0, 1]
    x_sigma = sigma * n + (1 - sigma) * x0          target velocity v = n - x0
The network sees x_sigma at the noisy frames / steps (clean conditioning frames keep x0) with timestep sigma * 1000,
and the loss is the mean squared error of its velocity over the noisy elements only, per modality:
    vision: noisy latent frames, all channels       actions: noisy steps, raw dims only (not the zero padding)
    sound:  every sound latent
and a sample's loss is the weighted sum of its modality means.

Sigma sampling: logit-normal, uniform, or the release's "waver" rule t = 1 - u - 1.29 (cos^2(pi u / 2) - 1 + u),
u ~ U(0, 1); then the resolution shift s sigma / (1 + (s - 1) sigma).

Everything random here draws from an explicit torch.Generator, so a sample's noise depends only on its seed: the
same global batch gives the same losses on 1 or N processes, and after a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model import GenInputs, GenOutputs
from .recipe import LossConfig

WAVER_COEF = 1.29


# ------------------------------------------------------------------------------------------------ sigma


def waver_sigma(u: torch.Tensor) -> torch.Tensor:
    """The release's rule u in [0, 1] -> t = 1 - u - 1.29 (cos(pi u / 2)^2 - 1 + u); t(0) = 1, t(1) = 0."""
    return 1.0 - u - WAVER_COEF * (torch.cos(math.pi * u / 2) ** 2 - 1.0 + u)


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Resolution shift: s sigma / (1 + (s - 1) sigma) (s > 1 moves mass towards noise)."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_sigma(cfg: LossConfig, generator: torch.Generator, n: int = 1) -> torch.Tensor:
    """n noise levels [n] (float32) drawn as the config says, shifted, clamped to [sigma_min, sigma_max]."""
    if cfg.sigma_sampling == "logit_normal":
        sigma = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(n, generator=generator))
    elif cfg.sigma_sampling == "uniform":
        sigma = torch.rand(n, generator=generator)
    elif cfg.sigma_sampling == "waver":
        sigma = waver_sigma(torch.rand(n, generator=generator))
    else:
        raise ValueError(f"loss.sigma_sampling: unknown rule {cfg.sigma_sampling!r}")
    sigma = shift_sigma(sigma.clamp(0.0, 1.0), cfg.shift)
    return sigma.clamp(cfg.sigma_min, cfg.sigma_max)


# ------------------------------------------------------------------------------------------------ conditioning


def choose(weights: dict[str, float], generator: torch.Generator) -> str:
    """One key drawn with probability proportional to its weight."""
    names = [k for k, w in weights.items() if w > 0]
    probs = torch.tensor([weights[k] for k in names], dtype=torch.float64)
    return names[int(torch.multinomial(probs, 1, generator=generator))]


def vision_noisy_mask(mode: str, latent_frames: int, v2v_frames: int = 2) -> torch.Tensor:
    """[T] bool: which latent frames are generated. t2v / t2i: all; i2v: all but frame 0; v2v: all but the first
    `v2v_frames` (at least one frame stays noisy). Images (T = 1) are always fully noisy."""
    noisy = torch.ones(latent_frames, dtype=torch.bool)
    if latent_frames == 1 or mode == "t2v":
        return noisy
    if mode == "i2v":
        noisy[0] = False
    elif mode == "v2v":
        noisy[:min(v2v_frames, latent_frames - 1)] = False
    else:
        raise ValueError(f"unknown video conditioning mode {mode!r}")
    return noisy


def action_masks(mode: str, latent_frames: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vision noisy [T], action noisy [n]) of an action mode (DESIGN 2.8)."""
    vision = torch.ones(latent_frames, dtype=torch.bool)
    actions = torch.ones(steps, dtype=torch.bool)
    if mode == "policy":  # frame 0 given -> video and actions
        vision[0] = False
    elif mode == "forward_dynamics":  # frame 0 and actions given -> video
        vision[0] = False
        actions[:] = False
    elif mode == "inverse_dynamics":  # whole video given -> actions
        vision[:] = False
    else:
        raise ValueError(f"unknown action mode {mode!r}")
    return vision, actions


def drop_caption(prompt: str, cfg: LossConfig, generator: torch.Generator) -> tuple[str, bool]:
    """With probability caption_dropout, the negative prompt replaces the caption (classifier-free guidance learns
    the unconditional branch from these). -> (text, dropped)."""
    if cfg.caption_dropout > 0 and float(torch.rand(1, generator=generator)) < cfg.caption_dropout:
        return cfg.negative_prompt, True
    return prompt, False


# ------------------------------------------------------------------------------------------------ flow matching


@dataclass
class NoisedSample:
    inputs: GenInputs  # what the network sees (x_sigma at noisy positions, x0 at clean ones; timestep)
    target: GenOutputs  # v = noise - x0 per modality
    sigma: float
    raw_action_dim: int | None = None


def add_noise(clean: GenInputs, sigma: torch.Tensor, generator: torch.Generator,
              raw_action_dim: int | None = None) -> NoisedSample:
    """Noise the noisy positions of `clean` (its *_noisy masks say which) at level sigma (a scalar tensor).

    Noise is drawn vision first, then sound, then actions, each over the whole tensor (so the draw does not depend
    on the masks). Padded action channels stay exactly zero in the input and the target."""
    s = float(sigma)

    def noised(x0: torch.Tensor, noisy: torch.Tensor, axis_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.dtype)
        mask = noisy.view(axis_shape).to(x0.dtype)
        x = mask * (s * noise + (1.0 - s) * x0) + (1.0 - mask) * x0
        return x, noise - x0

    vision, v_target = noised(clean.vision, clean.vision_noisy, (1, -1, 1, 1))
    inputs = GenInputs(vision=vision, vision_noisy=clean.vision_noisy, timestep=torch.tensor(s * 1000.0),
                       domain_id=clean.domain_id)
    target = GenOutputs(vision=v_target)
    if clean.sound is not None:
        inputs.sound, target.sound = noised(clean.sound, clean.sound_noisy, (1, -1))
        inputs.sound_noisy = clean.sound_noisy
    if clean.actions is not None:
        x, t = noised(clean.actions, clean.action_noisy, (-1, 1))
        if raw_action_dim is not None:
            x[:, raw_action_dim:] = 0
            t[:, raw_action_dim:] = 0
        inputs.actions, target.actions, inputs.action_noisy = x, t, clean.action_noisy
    return NoisedSample(inputs, target, s, raw_action_dim)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """Mean of (pred - target)^2 over the elements where mask (broadcast to pred's shape) is true; None if none."""
    mask = mask.expand_as(pred)
    count = int(mask.sum())
    if count == 0:
        return None
    diff = (pred.float() - target.float().to(pred.device)).square()
    return (diff * mask.to(diff.device, diff.dtype)).sum() / count


def flow_matching_loss(pred: GenOutputs, sample: NoisedSample, cfg: LossConfig) -> tuple[torch.Tensor, dict]:
    """One sample's weighted loss (a scalar) and its parts {"vision": float, "actions": ..., "sound": ...}."""
    x = sample.inputs
    parts: dict[str, torch.Tensor] = {}
    vision = masked_mse(pred.vision, sample.target.vision, x.vision_noisy.view(1, -1, 1, 1))
    if vision is not None:
        parts["vision"] = vision
    if x.sound is not None:
        sound = masked_mse(pred.sound, sample.target.sound, x.sound_noisy.view(1, -1))
        if sound is not None:
            parts["sound"] = sound
    if x.actions is not None:
        n, A = x.actions.shape
        dims = torch.arange(A) < (sample.raw_action_dim if sample.raw_action_dim is not None else A)
        actions = masked_mse(pred.actions, sample.target.actions, x.action_noisy.view(-1, 1) & dims.view(1, -1))
        if actions is not None:
            parts["actions"] = actions
    weights = {"vision": cfg.vision_weight, "sound": cfg.sound_weight, "actions": cfg.action_weight}
    if not parts:
        raise ValueError("flow matching sample with no noisy token: nothing to learn from")
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


# ------------------------------------------------------------------------------------------------ SFT


def sft_loss(hidden: torch.Tensor, lm_head, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """Next-token cross-entropy of one conversation, averaged over its labelled tokens.

    hidden [L, D] final-normed und states (position i predicts token i + 1), input_ids [L], labels [L] bool (true on
    assistant tokens). Logits are computed only where a labelled token is predicted. None when nothing is labelled."""
    targets = labels[1:].to(hidden.device)
    if not bool(targets.any()):
        return None
    logits = lm_head(hidden[:-1][targets]).float()  # [K, V]
    return F.cross_entropy(logits, input_ids[1:].to(hidden.device)[targets])
