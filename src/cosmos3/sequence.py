"""Packing one generation request into the network's token streams.

A request becomes, per CFG branch (the prompt and the negative prompt):
    und stream   chat-templated prompt ids + <|im_end|> + <|vision_start|>, positions 0..L-1 on all axes
    gen stream   vision latent tokens, then sound latents, then action steps, with 3D mRoPE positions that start
                 at O = L + 15000 (DESIGN 2.3; the order vision, sound, actions is the reference pipeline's)
plus the clean / noisy masks that say which frames are conditioning and which are generated.

Prompt text rules follow the reference pipeline (DESIGN 2.6, 2.12): metadata sentences appended to plain prompts
(their negated forms to the negative prompt), a JSON-object prompt gets the same metadata as keys instead, and a
mode-dependent system prompt unless the checkpoint or the caller turns it off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from .config import Cosmos3Config
from .model.heads import patch_grid
from .model.rope import action_positions, modality_offset, sound_positions, text_positions, vision_positions

SYSTEM_PROMPT_IMAGE = "You are a helpful assistant who will generate images from a give prompt."
SYSTEM_PROMPT_VIDEO = "You are a helpful assistant who will generate videos from a give prompt."

DURATION_TEMPLATE = "The video is {duration:.1f} seconds long and is of {fps:.0f} FPS."
VIDEO_RESOLUTION_TEMPLATE = "This video is of {height}x{width} resolution."
IMAGE_RESOLUTION_TEMPLATE = "This image is of {height}x{width} resolution."
NOT_DURATION_TEMPLATE = "The video is not {duration:.1f} seconds long and is not of {fps:.0f} FPS."
NOT_VIDEO_RESOLUTION_TEMPLATE = "This video is not of {height}x{width} resolution."
NOT_IMAGE_RESOLUTION_TEMPLATE = "This image is not of {height}x{width} resolution."

ASPECT_LABELS = ("1,1", "4,3", "3,4", "16,9", "9,16")  # how JSON prompts spell aspect ratios


# ------------------------------------------------------------------------------------------------ prompt text


def _join(base: str, sentence: str) -> str:
    """Append a sentence: the base's trailing periods are dropped and ". " joins them."""
    base = base.rstrip(".")
    return f"{base}. {sentence}" if base else sentence


def parse_json_prompt(prompt: str) -> dict | None:
    """The prompt as a JSON object, or None for plain text."""
    text = prompt.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def aspect_label(width: int, height: int) -> str:
    ratio = width / height
    return min(ASPECT_LABELS, key=lambda r: abs(int(r.split(",")[0]) / int(r.split(",")[1]) - ratio))


def prompt_text(prompt: str, *, num_frames: int, fps: float, height: int, width: int, negative: bool = False,
                use_resolution_template: bool = True, use_duration_template: bool = True) -> str:
    """The text the model reads for one branch, with the metadata of the output it should produce."""
    is_image = num_frames == 1
    structured = parse_json_prompt(prompt)
    if structured is not None:
        # A structured negative prompt is used as it is (sentences appended would break its JSON), and so is a
        # structured prompt with both templates off: byte for byte, not re-serialized.
        if negative or not (use_resolution_template or (use_duration_template and not is_image)):
            return prompt
        if not is_image and use_duration_template:
            structured["duration"] = f"{int(num_frames / fps)}s"
            structured["fps"] = float(fps)  # as the release's action captions write it (16.0)
        if use_resolution_template:
            structured["resolution"] = {"H": int(height), "W": int(width)}
            structured["aspect_ratio"] = aspect_label(width, height)
        return json.dumps(structured)
    text = prompt
    if not is_image and use_duration_template:
        template = NOT_DURATION_TEMPLATE if negative else DURATION_TEMPLATE
        text = _join(text, template.format(duration=num_frames / fps, fps=fps))
    if use_resolution_template:
        if is_image:
            template = NOT_IMAGE_RESOLUTION_TEMPLATE if negative else IMAGE_RESOLUTION_TEMPLATE
        else:
            template = NOT_VIDEO_RESOLUTION_TEMPLATE if negative else VIDEO_RESOLUTION_TEMPLATE
        text = _join(text, template.format(height=height, width=width))
    return text


def prompt_ids(tokenizer, text: str, *, is_image: bool, use_system_prompt: bool,
               system_prompt: str | None = None) -> list[int]:
    """Chat-template the text as one user turn, open the assistant turn, then close it and open generation:
    ... <|im_start|>assistant\\n <|im_end|> <|vision_start|>. `system_prompt` replaces the mode's (transfer)."""
    messages = []
    if use_system_prompt:
        messages.append({"role": "system", "content": system_prompt or (
            SYSTEM_PROMPT_IMAGE if is_image else SYSTEM_PROMPT_VIDEO)})
    messages.append({"role": "user", "content": text})
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                            add_vision_id=False)
    ids = list(encoded["input_ids"])
    return ids + [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|vision_start|>")]


# ------------------------------------------------------------------------------------------------ layout


@dataclass
class GenLayout:
    """Shapes and clean/noisy masks of one request's generation tokens (shared by its CFG branches)."""

    latent_shape: tuple[int, int, int, int]  # (C, T, H, W) of the vision latent
    vision_noisy: torch.Tensor  # [T] bool
    fps: float
    sound_latents: int = 0  # Ts (0: no sound)
    sound_fps: float = 25.0
    action_steps: int = 0  # n (0: no actions)
    action_noisy: torch.Tensor | None = None  # [n] bool
    domain_id: int | None = None
    action_first_frame: int = 1  # the video frame of action token 0 (0 when the robot state leads)
    # transfer: the vision latent holds this many control clips in front of the target, each T / (controls + 1)
    # latent frames, all sharing the target's positions (control.py)
    controls: int = 0
    control_weights: tuple[float, ...] = ()  # normalised, one per control (several controls: weighted passes)
    control_guidance: float = 1.0  # != 1: the target's velocity is pushed away from a forward without controls
    control_guidance_interval: tuple[float, float] | None = None  # timesteps (0-1000) where it applies; None: all

    def positions(self, cfg: Cosmos3Config, num_text_tokens: int) -> torch.Tensor:
        """[3, N] positions of the gen tokens for a prompt of `num_text_tokens` (the offset depends on it)."""
        fps = self.fps if cfg.enable_fps_modulation else None
        offset = modality_offset(num_text_tokens, cfg.unified_3d_mrope_temporal_modality_margin)
        _, T, H, W = self.latent_shape
        rows, cols = patch_grid(H, W, cfg.latent_patch_size)
        items = self.controls + 1
        parts = [vision_positions(T // items, rows, cols, offset, fps, cfg.base_fps,
                                  cfg.unified_3d_mrope_reset_spatial_ids)] * items
        if self.sound_latents:
            sound_fps = self.sound_fps if cfg.enable_fps_modulation else None
            parts.append(sound_positions(self.sound_latents, offset, sound_fps, cfg.base_fps,
                                         cfg.unified_3d_mrope_reset_spatial_ids))
        if self.action_steps:
            parts.append(action_positions(self.action_steps, offset, fps, cfg.base_fps,
                                          cfg.unified_3d_mrope_reset_spatial_ids, first=self.action_first_frame))
        return torch.cat(parts, dim=1)


def branch_inputs(tokenizer, cfg: Cosmos3Config, text: str, *, is_image: bool,
                  use_system_prompt: bool, system_prompt: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [L], text positions [3, L]) of one branch."""
    ids = prompt_ids(tokenizer, text, is_image=is_image, use_system_prompt=use_system_prompt,
                     system_prompt=system_prompt)
    if max(ids) >= cfg.vocab_size:
        raise ValueError(f"prompt: token id {max(ids)} is outside the model's vocabulary ({cfg.vocab_size}); the "
                         "text tokenizer does not belong to this checkpoint")
    return torch.tensor(ids, dtype=torch.long), text_positions(len(ids))
