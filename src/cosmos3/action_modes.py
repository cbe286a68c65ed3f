"""Requests of the three action modes (DESIGN 2.8, 2.12): the conditioning canvas, the action caption, the masks.

    forward_dynamics   first frame + actions (clean)        -> video of chunk + 1 frames
    inverse_dynamics   whole video (clean)                   -> actions
    policy             first frame + instruction             -> actions and video

The conditioning clip is fitted into a canvas picked from the resolution tier by aspect ratio: scaled down (never
up) to fit, then padded on the right and bottom by reflection. The model sees the canvas; the generated latents are
cropped back to the content, so the output video has the input's aspect.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .actions import ACTION_DIM, Embodiment, VIEWPOINT_SENTENCES, get_embodiment, load_actions, pad_actions
from .actions.embodiments import VIEW_DESCRIPTIONS, check_caption_format, plain_action_caption
from .media import read_image, video_frames
from .sequence import prompt_text

MODES = ("forward_dynamics", "inverse_dynamics", "policy")
ACTION_DEFAULTS = (30, 1.0, 10.0)  # steps, guidance, flow shift (DESIGN 2.6)
VAE_MULTIPLE = 16

# Canvas (height, width) per tier, keyed by the height / width ratio it serves (the release's bins).
CANVASES: dict[int, dict[float, tuple[int, int]]] = {
    256: {1.0: (256, 256), 0.8: (256, 320), 1.25: (320, 256), 0.6: (192, 320), 320 / 192: (320, 192)},
    480: {1.0: (640, 640), 544 / 736: (544, 736), 736 / 544: (736, 544), 480 / 832: (480, 832),
          832 / 480: (832, 480)},
    704: {1.0: (960, 960), 832 / 1088: (832, 1088), 1088 / 832: (1088, 832), 0.55: (704, 1280),
          1280 / 704: (1280, 704)},
    720: {1.0: (960, 960), 832 / 1104: (832, 1104), 1104 / 832: (1104, 832), 0.5625: (720, 1280),
          1280 / 720: (1280, 720)},
}


def _refusal(field: str, message: str) -> ValueError:
    """A refused argument: the message starts with its name, `.field` names it (the server maps it to its own)."""
    error = ValueError(f"{field}: {message}")
    error.field = field
    return error


def _tagged(error: ValueError, field: str) -> ValueError:
    if getattr(error, "field", None) is None:
        error.field = field
    return error


def tier_of(resolution: str | int | None) -> int:
    """"256p" / "480" / 720 -> 256 / 480 / 720 (default 480, the release's)."""
    if resolution is None:
        return 480
    text = str(resolution).lower().removesuffix("p")
    if not text.isdigit() or int(text) not in CANVASES:
        raise _refusal("resolution", f"action modes take a tier in {sorted(f'{t}p' for t in CANVASES)}, got "
                                     f"{resolution!r}")
    return int(text)


def canvas_for(height: int, width: int, tier: int) -> tuple[int, int]:
    ratio = height / width
    key = min(CANVASES[tier], key=lambda r: abs(r - ratio))
    return CANVASES[tier][key]


@dataclass
class Canvas:
    pixels: torch.Tensor  # [1, 3, frames, H, W] in [-1, 1]
    height: int  # canvas size (what the caption states)
    width: int
    content_height: int  # the input's size inside the canvas
    content_width: int

    def crop_latents(self, latents: torch.Tensor, spatial: int) -> torch.Tensor:
        """[C, T, H/s, W/s] -> the part covering the content (s: the VAE's spatial factor, 16 for the release's,
        8 for pico v2's)."""
        h = max(self.content_height // spatial, 1)
        w = max(self.content_width // spatial, 1)
        return latents[:, :, :h, :w].contiguous()


def _frames(image, video) -> list[Image.Image]:
    return [read_image(image)] if image is not None else video_frames(video)


def build_canvas(image, video, num_frames: int, tier: int) -> Canvas:
    """Fit the clip (an image, or a video's first `num_frames` frames, repeating its last) into the tier's canvas."""
    return fit_canvas(_frames(image, video), num_frames, tier)


def fit_canvas(frames: list[Image.Image], num_frames: int, tier: int) -> Canvas:
    """Frames (PIL images) -> the tier's canvas: the one placement the Generator and training (Policy-DROID's
    concat_view samples) give pixels, so both see the same conditioning frame and state the same size."""
    frames = [f.convert("RGB") for f in frames]
    # Sources are first brought to whole VAE cells (sizes rounded down to multiples of 16), as the release does.
    w16 = frames[0].width - frames[0].width % VAE_MULTIPLE
    h16 = frames[0].height - frames[0].height % VAE_MULTIPLE
    if w16 == 0 or h16 == 0:
        raise ValueError(f"image: {frames[0].width}x{frames[0].height} is too small (at least 16x16)")
    arrays = [np.asarray(f.resize((w16, h16), Image.BILINEAR), dtype=np.float32) / 255.0 for f in frames]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * 2.0 - 1.0  # [T, 3, h, w]
    if pixels.shape[0] < num_frames:
        pixels = torch.cat([pixels, pixels[-1:].expand(num_frames - pixels.shape[0], -1, -1, -1)])
    pixels = pixels[:num_frames]

    target_h, target_w = canvas_for(h16, w16, tier)
    scale = min(target_w / w16, target_h / h16, 1.0)  # downscale only
    content_h, content_w = max(1, int(scale * h16 + 0.5)), max(1, int(scale * w16 + 0.5))
    if (content_h, content_w) != (h16, w16):
        pixels = torch.nn.functional.interpolate(pixels, size=(content_h, content_w), mode="bicubic",
                                                 align_corners=False, antialias=True)
    pad_right, pad_bottom = target_w - content_w, target_h - content_h
    if pad_right or pad_bottom:
        # Reflection needs the pad to be smaller than the content; very thin content falls back to replication.
        mode = "replicate" if pad_right >= content_w or pad_bottom >= content_h else "reflect"
        pixels = torch.nn.functional.pad(pixels, (0, pad_right, 0, pad_bottom), mode=mode)
    return Canvas(pixels.permute(1, 0, 2, 3)[None], target_h, target_w, content_h, content_w)


def action_instruction(instruction: str, viewpoint: str | None, num_frames: int, fps: float,
                       view_description: str | None = None) -> str:
    """The instruction part of the action caption (a JSON object): the camera framing sentence (followed by the
    `view_description` of concatenated views, joined as the release's ActionPromptJsonFormatter does) and the
    instruction as one action spanning the clip. Training items carry this; `action_caption` adds the clip's
    metadata."""
    text = instruction.strip()
    if text and not text.endswith((".", "!", "?")):
        text += "."
    minutes, rest = divmod(round(num_frames / fps), 60)
    caption: dict = {}
    framing = VIEWPOINT_SENTENCES.get(viewpoint) if viewpoint is not None else None
    if framing and view_description:
        framing += (" " if framing.endswith(".") else ". ") + view_description.rstrip()
    if framing:
        caption["cinematography"] = {"framing": framing}
    caption["actions"] = [{"time": f"0:00-{minutes}:{rest:02d}", "description": text}]
    return json.dumps(caption)


def action_caption(instruction: str, embodiment: Embodiment | str, num_frames: int, fps: float, height: int,
                   width: int, caption_format: str | None = None) -> str:
    """The caption the action models were trained on, the one rule inference and training (train/batch.py,
    train/data.py) apply to the same instruction, so both read byte-identical prompts.

    "json" (the default): the structured caption, `action_instruction` plus duration, fps, resolution and aspect
    ratio as the prompt templates write them (`sequence.prompt_text`); a variant with concatenated views
    (`VIEW_DESCRIPTIONS`, Policy-DROID) also says what its views show, and its empty instruction stays empty (the
    release's formatter leaves an empty caption alone: the unconditional branch). "plain": the framework's
    sentences (`embodiments.plain_action_caption`)."""
    emb = get_embodiment(embodiment) if isinstance(embodiment, str) else embodiment
    if check_caption_format(caption_format) == "plain":
        return plain_action_caption(instruction, emb, num_frames, fps, height, width)
    description = VIEW_DESCRIPTIONS.get(emb.name)
    if description is not None and not instruction.strip():
        return ""
    return prompt_text(action_instruction(instruction, emb.viewpoint, num_frames, fps, description),
                       num_frames=num_frames, fps=fps, height=height, width=width)


@dataclass
class ActionRequest:
    mode: str
    embodiment: Embodiment
    chunk: int
    fps: float
    actions: torch.Tensor | None  # [chunk, ACTION_DIM] clean actions (forward dynamics), zero-padded
    all_actions: np.ndarray | None  # the whole [T, raw_dim] file, for rollouts longer than one chunk


def resolve_action_request(action_mode, embodiment, actions, action_chunk_size, fps, image, video) -> ActionRequest:
    """Check the action arguments together and resolve their defaults (before any model work)."""
    if action_mode not in MODES:
        raise _refusal("action_mode", f"expected one of {list(MODES)}, got {action_mode!r}")
    if embodiment is None:
        raise _refusal("embodiment", "required with action_mode (e.g. 'droid_lerobot', 'umi', 'av')")
    try:
        emb = get_embodiment(embodiment)
    except ValueError as e:
        raise _tagged(e, "embodiment") from None
    chunk = emb.chunk_size if action_chunk_size is None else action_chunk_size
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 4 <= chunk <= 256 or chunk % 4:
        # chunk + 1 video frames must be a whole number of VAE latent frames (4k + 1): the release uses 16 and 60.
        raise _refusal("action_chunk_size", f"expected a multiple of 4 in [4, 256] (the video has chunk + 1 = 4k + 1 "
                                            f"frames), got {action_chunk_size!r}")
    fps = emb.fps if fps is None else fps
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 1 <= fps <= 120:
        raise _refusal("fps", f"expected a number in [1, 120] for action modes, got {fps!r}")
    if image is not None and video is not None:
        raise _refusal("image", "image, video: give one conditioning input, not both")
    if action_mode == "inverse_dynamics" and video is None:
        raise _refusal("video", "inverse_dynamics needs the video whose actions it infers")
    if image is None and video is None:
        raise _refusal("image", f"{action_mode} needs a conditioning image or video")
    clean, whole = None, None
    if action_mode == "forward_dynamics":
        if actions is None:
            raise _refusal("actions", "forward_dynamics needs the actions to roll out ([T, raw_dim] or a JSON file)")
        try:
            whole = load_actions(actions, emb)
        except ValueError as e:
            raise _tagged(e, "actions") from None
        if whole.shape[0] == 0:
            raise _refusal("actions", "the action array is empty")
        clean = chunk_actions(whole[:chunk], chunk)
    elif actions is not None:
        raise _refusal("actions", f"{action_mode} predicts actions; do not pass them")
    return ActionRequest(action_mode, emb, chunk, float(fps), clean, whole)


def chunk_actions(raw: np.ndarray, chunk: int) -> torch.Tensor:
    """[t <= chunk, raw_dim] -> [chunk, ACTION_DIM]: short chunks repeat their last action; zero-padded width."""
    a = torch.from_numpy(np.asarray(raw, dtype=np.float32))
    if a.shape[0] < chunk:
        a = torch.cat([a, a[-1:].expand(chunk - a.shape[0], -1)])
    return pad_actions(a[:chunk], ACTION_DIM)


def rollout_chunks(total_steps: int, chunk: int) -> int:
    return math.ceil(total_steps / chunk)
