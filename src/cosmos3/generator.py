"""The Generator surface: text / image / video (+ sound) in, image / video / sound out.

    gen = Generator.from_pretrained("path/to/checkpoint")        # official diffusers layout
    res = gen.generate("a red block slides to the left", num_frames=33, resolution="256p", seed=0)
    res.save("out.mp4")

Modes follow from the inputs: one frame is text-to-image; an `image` makes image-to-video; a `video` makes
video-to-video; otherwise text-to-video; `action_mode` selects forward / inverse dynamics or policy.

`generate(...)` is `run(resolve(...))`: `resolve` fills in what a request leaves out (the checkpoint's native
settings, cosmos3_defaults.json, then the embodiment's and the release's) and checks every argument with no model
work, returning a `GenRequest`; the server validates with it too. `run` builds the mode's plan (which tokens are
clean, which noisy, the prompt texts) and samples it on the one path every mode shares.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import spec
from .action_modes import ACTION_DEFAULTS, chunk_actions
from .actions import ACTION_STATS_FILE, ActionStats, denormalize, get_embodiment, load_stats_file, normalize
from .checkpoint import CheckpointError, default_dtype, load_transformer, resolve_checkpoint
from .diffusion import (SAMPLERS, Latents, distilled_settings, encode_branches, load_distilled_sigmas,
                        load_scheduler_config, make_scheduler, sample, set_schedule, with_noise)
from .media import read_image, video_frames, write_image, write_video
from .model import Cosmos3Omni
from .quant import apply_weights
from .model.heads import patch_grid
from .sequence import GenLayout, branch_inputs, prompt_text
from .vae import SoundCodec, VideoVAE

# DESIGN 2.6 defaults per mode: (steps, guidance, flow shift)
VIDEO_DEFAULTS = (35, 6.0, 10.0)
IMAGE_DEFAULTS = (50, 4.0, 3.0)
MAX_GUIDANCE = 20.0
WARN_GUIDANCE = 7.0
UPSAMPLE_INSTRUCTION = (
    "Expand the short description below into a detailed structured JSON prompt for a video generator, in this "
    "form: {{\"subjects\": [{{\"description\": ..., \"action\": ..., \"location\": ...}}], "
    "\"background_setting\": ..., \"lighting\": ..., \"cinematography\": {{\"framing\": ...}}, "
    "\"actions\": [{{\"time\": ..., \"description\": ...}}], \"temporal_caption\": ...}}. Keep every fact of "
    "the description and invent nothing that contradicts it. Answer with the JSON object only.\n\n"
    "Description: {prompt}"
)


def first_json_object(text: str) -> dict | None:
    """The first complete JSON object in a model's answer (which may wrap it in prose or a code fence)."""
    decoder = json.JSONDecoder()
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        try:
            value, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass
class GenerationResult:
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    latents: torch.Tensor  # float32 [C, T', H', W'], normalized, before VAE decode
    fps: float
    mode: str
    seed: int | None
    sound: torch.Tensor | None = None  # float32 [2, N] at 48 kHz
    prompt: str | None = None  # the prompt generated from (after upsampling, before templates)
    actions: torch.Tensor | None = None  # float32 [steps, raw_dim]
    sample_rate: int = 48000
    timings: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """.mp4 (with sound if any), .jpg / .jpeg / .png (the first frame), .json (actions)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".mp4":
            sound = self.sound
            if sound is not None:  # the decoder pads to whole latents: keep exactly the video's duration
                sound = sound[:, : int(round(self.frames.shape[0] / self.fps * self.sample_rate))]
            write_video(path, self.frames, self.fps, sound=sound, sample_rate=self.sample_rate)
        elif suffix in (".jpg", ".jpeg", ".png"):
            write_image(path, self.frames[0])
        elif suffix == ".json":
            if self.actions is None:
                raise ValueError(f"{path}: this result has no actions to save (use .mp4 or an image suffix)")
            from .actions import save_actions

            save_actions(path, self.actions.numpy())
        else:
            raise ValueError(f"{path}: unsupported output type {suffix!r}; expected .mp4, .jpg, .png or .json")
        return path


def _peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------------------------ conditioning


def image_to_pixels(image, height: int, width: int) -> torch.Tensor:
    """One conditioning image -> [1, 3, H, W] in [-1, 1]: scaled to cover H x W (bilinear, antialiased), centre
    cropped, rounded to 8-bit levels (the preprocessing the release was trained with)."""
    rgb = torch.from_numpy(np.array(read_image(image), dtype=np.uint8)).permute(2, 0, 1)[None].float()
    src_h, src_w = rgb.shape[-2:]
    scale = max(width / src_w, height / src_h)
    new_h, new_w = math.ceil(scale * src_h), math.ceil(scale * src_w)
    rgb = torch.nn.functional.interpolate(rgb, size=(new_h, new_w), mode="bilinear", align_corners=False,
                                          antialias=True)
    top, left = round((new_h - height) / 2), round((new_w - width) / 2)
    rgb = rgb[:, :, top:top + height, left:left + width]
    return rgb.round().clamp(0, 255) / 127.5 - 1.0


def video_to_pixels(video, height: int, width: int, keep: int, which: str) -> torch.Tensor:
    """A conditioning clip -> [1, 3, keep, H, W] in [-1, 1]: its first (or last) `keep` frames, each resized to
    H x W (bilinear, no crop), padded by repeating the last frame when the clip is shorter."""
    frames = video_frames(video)
    frames = frames[:keep] if which == "first" else frames[-keep:]
    resized = [np.asarray(f.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
               for f in frames]
    pixels = torch.from_numpy(np.stack(resized)).permute(3, 0, 1, 2)[None] * 2.0 - 1.0  # [1, 3, t, H, W]
    if pixels.shape[2] < keep:
        pixels = torch.cat([pixels, pixels[:, :, -1:].expand(-1, -1, keep - pixels.shape[2], -1, -1)], dim=2)
    return pixels


# ------------------------------------------------------------------------------------------------ requests

DEFAULTS_FILE = "cosmos3_defaults.json"  # a checkpoint's native settings (older folders: model_index.json's key)


def read_native_defaults(root: str | os.PathLike) -> dict:
    """A checkpoint folder's native settings: cosmos3_defaults.json, else the "cosmos3_defaults" key that older
    folders kept in model_index.json (diffusers warns about unknown keys there), else {}."""
    root = Path(root)
    for path, key in ((root / DEFAULTS_FILE, None), (root / "model_index.json", "cosmos3_defaults")):
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{path}: not valid JSON ({e.msg})") from None
            data = data.get(key) if key else data
            if data:
                if not isinstance(data, dict):
                    raise CheckpointError(f"{path}: native settings must be a JSON object")
                return dict(data)
    return {}


# Defaults of a checkpoint without native settings (DESIGN 2.6): the release's.
_RELEASE_DEFAULTS = dict(resolution=spec.DEFAULT_RESOLUTION, aspect_ratio=spec.DEFAULT_ASPECT_RATIO,
                         num_frames=spec.DEFAULT_NUM_FRAMES, fps=spec.DEFAULT_FPS,
                         num_inference_steps=VIDEO_DEFAULTS[0], guidance_scale=VIDEO_DEFAULTS[1],
                         flow_shift=VIDEO_DEFAULTS[2], image_num_inference_steps=IMAGE_DEFAULTS[0],
                         image_guidance_scale=IMAGE_DEFAULTS[1], image_flow_shift=IMAGE_DEFAULTS[2],
                         action_num_inference_steps=ACTION_DEFAULTS[0], action_guidance_scale=ACTION_DEFAULTS[1],
                         action_flow_shift=ACTION_DEFAULTS[2],
                         action_chunk_size=None, action_resolution="480p")


# A setting a checkpoint does not state falls back to the one it shares (images and actions take the native flow
# shift, images the native steps and guidance, actions the native tier), then to the release's default.
_FALLBACK = {"image_num_inference_steps": "num_inference_steps", "image_guidance_scale": "guidance_scale",
             "image_flow_shift": "flow_shift", "action_flow_shift": "flow_shift", "action_resolution": "resolution"}


def native_value(defaults: dict, key: str):
    """What a request that leaves `key` out gets on a checkpoint with these native settings."""
    if key in defaults:
        return defaults[key]
    if _FALLBACK.get(key) in defaults:
        return defaults[_FALLBACK[key]]
    return _RELEASE_DEFAULTS[key]


def describe_defaults(defaults: dict) -> str:
    """One line: what a request that leaves everything out gets from these native settings."""
    d = {key: native_value(defaults, key) for key in _RELEASE_DEFAULTS}
    return (f"{d['resolution']} {d['aspect_ratio']}, {d['num_frames']} frames, {d['fps']:g} fps, "
            f"{d['num_inference_steps']} steps, guidance {d['guidance_scale']:g}, flow shift {d['flow_shift']:g}; "
            f"images {d['image_num_inference_steps']} steps, guidance {d['image_guidance_scale']:g}; actions "
            f"{d['action_num_inference_steps']} steps, guidance {d['action_guidance_scale']:g}, chunk "
            f"{d['action_chunk_size'] or 'the embodiment’s'}")


class RequestError(ValueError):
    """A refused request; `field` names the argument (the server maps it to its parameter); `code` is
    "unsupported" when the request is fine but this checkpoint cannot do it."""

    def __init__(self, field: str, message: str, code: str = "invalid_value"):
        super().__init__(f"{field}: {message}")
        self.field, self.code = field, code


def require_input(prompt: str, image=None, video=None, actions=None) -> None:
    """A request needs something to generate from: a prompt, or an image, video or actions."""
    if not (prompt or "").strip() and image is None and video is None and actions is None:
        raise RequestError("prompt", "empty, with no image, video or actions to condition on: give a prompt "
                                     "(an unconditional run is not supported)")


def _number(value, lo: float, hi: float, lo_open: bool = False) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return (lo < value if lo_open else lo <= value) and value <= hi


@dataclass
class GenRequest:
    """One generation request, resolved: every default filled in and every argument checked (`Generator.resolve`).
    `Generator.run` does the model work; `as_kwargs()` is the same request as explicit `generate` arguments."""

    mode: str  # t2i | t2v | i2v | v2v | forward_dynamics | inverse_dynamics | policy
    prompt: str
    negative_prompt: str | None
    num_frames: int  # output frames (an action chunk: chunk + 1)
    fps: float
    steps: int
    guidance: float
    shift: float  # 1.0 with fixed sigmas
    seed: int | None  # None only when a torch.Generator is given
    generator: torch.Generator | None = None
    height: int | None = None  # output size; None for action modes (it follows the input's aspect in the canvas)
    width: int | None = None
    sigmas: list[float] | None = None
    image: object = None
    video: object = None
    enable_sound: bool = False
    condition_frame_indexes: tuple[int, ...] | None = None  # v2v: latent frames kept clean
    condition_video_keep: str = "first"
    use_resolution_template: bool = True
    use_duration_template: bool = True
    use_system_prompt: bool = True
    guidance_interval: tuple[float, float] | None = None
    step_cache: float | None = None  # TeaCache-style skip threshold (diffusion.StepCache); None: off
    sampler: str | None = None
    upsample_prompt: bool = False
    progress: bool = True
    callback: object = None
    # action modes
    tier: int | None = None  # canvas tier (256 / 480 / 704 / 720)
    action: object = None  # action_modes.ActionRequest
    actions_arg: object = None  # the actions as given (for as_kwargs)
    warnings: tuple[str, ...] = ()  # what the checkpoint was not trained for (warned once per Generator)

    @property
    def is_action(self) -> bool:
        return self.action is not None

    @property
    def chunks(self) -> int:
        """Sampling runs: 1, or the chunks of a long forward-dynamics rollout."""
        if self.action is None or self.mode != "forward_dynamics":
            return 1
        return max(1, math.ceil(self.action.all_actions.shape[0] / self.action.chunk))

    @property
    def total_frames(self) -> int:
        return self.num_frames if self.chunks == 1 else self.chunks * (self.num_frames - 1) + 1

    def as_kwargs(self) -> dict:
        """Explicit `generate` arguments that resolve to this same request (what a server queues)."""
        kw = dict(prompt=self.prompt, negative_prompt=self.negative_prompt, image=self.image, video=self.video,
                  fps=self.fps, num_inference_steps=self.steps, guidance_scale=self.guidance,
                  flow_shift=None if self.sigmas is not None else self.shift, sigmas=self.sigmas,
                  seed=self.seed, generator=self.generator, use_system_prompt=self.use_system_prompt,
                  guidance_interval=self.guidance_interval, step_cache=self.step_cache, sampler=self.sampler,
                  upsample_prompt=self.upsample_prompt)
        if self.is_action:
            kw.update(action_mode=self.mode, embodiment=self.action.embodiment.name, actions=self.actions_arg,
                      action_chunk_size=self.action.chunk, resolution=f"{self.tier}p")
        else:
            kw.update(num_frames=self.num_frames, height=self.height, width=self.width,
                      enable_sound=self.enable_sound, condition_frame_indexes=self.condition_frame_indexes,
                      condition_video_keep=self.condition_video_keep,
                      use_resolution_template=self.use_resolution_template,
                      use_duration_template=self.use_duration_template)
        return {k: v for k, v in kw.items() if v is not None}


@dataclass
class _Plan:
    """What one sampling run needs; the modes differ only in how these are built."""

    layout: GenLayout
    clean: Latents
    texts: list[str]  # the positive branch's text, then the negative's when guidance != 1
    is_image: bool
    raw_action_dim: int | None = None


# ------------------------------------------------------------------------------------------------ generator


class Generator:
    def __init__(self, model: Cosmos3Omni, vae: VideoVAE, tokenizer, scheduler_config: dict,
                 sound: SoundCodec | None = None, *, default_use_system_prompt: bool = True,
                 native_flow_schedule: bool = False, name: str = "cosmos3", defaults: dict | None = None,
                 action_stats: dict | None = None, distilled_sigmas: list[float] | None = None):
        self.model, self.vae, self.tokenizer, self.sound = model, vae, tokenizer, sound
        # {embodiment name: ActionStats} of a checkpoint trained on normalized actions (action_stats.json): its
        # action modes take and give raw actions, normalized on the way in and denormalized on the way out.
        self.action_stats = {}
        for name_, stats in (action_stats or {}).items():
            emb = get_embodiment(name_)
            if not isinstance(stats, ActionStats) or stats.dim != emb.raw_dim:
                raise ValueError(f"action_stats[{name_!r}]: expected ActionStats of {emb.raw_dim} dimensions "
                                 f"({emb.name}), got {stats!r:.80}")
            self.action_stats[emb.name] = stats
        # A checkpoint's native settings (cosmos3_defaults.json; pico has them): used in place of the release's
        # defaults for whatever a call leaves out.
        self.defaults = dict(defaults or {})
        self.scheduler_config = scheduler_config
        self.default_use_system_prompt = default_use_system_prompt
        self.native_flow_schedule = native_flow_schedule
        # A distilled checkpoint's fixed schedule (guidance baked in: every request runs it with guidance 1).
        self.distilled_sigmas = list(distilled_sigmas) if distilled_sigmas else None
        self.name = name
        self.path: Path | None = None  # set by from_pretrained; the reasoner for prompt upsampling reads from it
        self._reasoner = None
        self._warned: set[str] = set()
        if vae.channels != model.config.latent_channel:
            raise CheckpointError(f"vae z_dim {vae.channels} does not match transformer latent_channel "
                                  f"{model.config.latent_channel}")

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, weights: str | None = None) -> "Generator":
        """Load an official-layout checkpoint: transformer/, vae/, scheduler/, text_tokenizer/, sound_tokenizer/.
        `weights="int8"`: the towers' and lm_head's linears in int8 (quant.py); default: as loaded."""
        from transformers import AutoTokenizer

        root = resolve_checkpoint(path)
        if not root.is_dir():
            raise CheckpointError(f"{root}: no such checkpoint directory")
        device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or default_dtype(device)
        index = {}
        if (root / "model_index.json").is_file():
            index = json.loads((root / "model_index.json").read_text())
        model = apply_weights(load_transformer(root, dtype=dtype, device=device), weights)
        vae_dtype = torch.float32 if device.type == "cpu" else dtype
        vae = VideoVAE.from_pretrained(root / "vae", device, vae_dtype)
        if not (root / "text_tokenizer").is_dir():
            raise CheckpointError(f"{root}: no text_tokenizer/ folder")
        tokenizer = AutoTokenizer.from_pretrained(root / "text_tokenizer")
        sound = None
        if (root / "sound_tokenizer" / "config.json").is_file():
            sound = SoundCodec.from_pretrained(root / "sound_tokenizer", device, vae_dtype)
        gen = cls(model, vae, tokenizer, load_scheduler_config(root), sound,
                  default_use_system_prompt=index.get("default_use_system_prompt", True),
                  native_flow_schedule=index.get("use_native_flow_schedule", False), name=root.name,
                  defaults=read_native_defaults(root), action_stats=load_stats_file(root / ACTION_STATS_FILE),
                  distilled_sigmas=load_distilled_sigmas(root))
        gen.path = root
        return gen

    def upsample_prompt(self, prompt: str, seed: int | None = None) -> str:
        """Ask the reasoner of this checkpoint (its und pathway, shared with the generator, no second copy of the
        weights) to expand a short prompt into the release's structured JSON prompt."""
        if self._reasoner is None:
            from .model.vision import VisionProcessor
            from .reasoner import Reasoner
            from .tokenizers import TextTokenizer

            if self.path is None:
                raise ValueError("upsample_prompt: needs a Generator loaded with from_pretrained (for its tokenizer)")
            self._reasoner = Reasoner(self.model, TextTokenizer.from_pretrained(self.path / "text_tokenizer"), None,
                                      VisionProcessor.from_dirs(self.path))
        answer = self._reasoner.chat([{"role": "user", "content": UPSAMPLE_INSTRUCTION.format(prompt=prompt)}],
                                     max_tokens=1024, temperature=0.0, seed=seed).text
        structured = first_json_object(answer)
        if structured is None:
            warnings.warn("upsample_prompt: the reasoner's answer holds no JSON object; generating from the "
                          "original prompt", stacklevel=3)
            return prompt
        return json.dumps(structured)

    # -------------------------------------------------------------------------------------------- resolve

    def _native(self, value, key: str):
        """An argument as given, else the checkpoint's native setting, else the release's default."""
        return native_value(self.defaults, key) if value is None else value

    def resolve(self, prompt: str = "", negative_prompt: str | None = None, image=None, video=None,
                num_frames: int | None = None, fps: float | None = None, height: int | None = None,
                width: int | None = None, resolution: str | None = None, aspect_ratio: str | None = None,
                num_inference_steps: int | None = None, guidance_scale: float | None = None,
                flow_shift: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                enable_sound: bool = False, action_mode: str | None = None, embodiment: str | None = None,
                actions=None, action_chunk_size: int | None = None,
                condition_frame_indexes: list[int] | tuple[int, ...] | None = None,
                condition_video_keep: str = "first", use_resolution_template: bool = True,
                use_duration_template: bool = True, use_system_prompt: bool | None = None, progress: bool = True,
                guidance_interval: tuple[float, float] | None = None, sampler: str | None = None,
                sigmas: list[float] | None = None, callback=None, upsample_prompt: bool = False,
                step_cache: float | None = None) -> GenRequest:
        """Fill in what a request leaves out (the checkpoint's native settings, the embodiment's) and check
        everything, with no model work: a bad argument raises ValueError naming it (`.field`). Arguments are those
        of `generate`."""
        if not isinstance(prompt, str):
            raise RequestError("prompt", f"expected a string, got {type(prompt).__name__}")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise RequestError("negative_prompt", f"expected a string or None, got {type(negative_prompt).__name__}")
        if upsample_prompt and not prompt.strip():
            raise RequestError("upsample_prompt", "needs a non-empty prompt to expand")
        require_input(prompt, image, video, actions)
        if image is not None and video is not None:
            raise RequestError("image", "image, video: give one conditioning input, not both")
        for name, source in (("image", image), ("video", video)):
            if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
                raise RequestError(name, f"no such file {source}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise RequestError("seed", f"expected a non-negative integer, got {seed!r}")
        if seed is not None and generator is not None:
            raise RequestError("seed", "seed, generator: give one of them, not both")
        if sampler is not None and sampler not in SAMPLERS:
            raise RequestError("sampler", f"expected one of {sorted(SAMPLERS)}, got {sampler!r}")
        if guidance_interval is not None and not (
                isinstance(guidance_interval, (list, tuple)) and len(guidance_interval) == 2
                and all(_number(x, 0.0, math.inf) for x in guidance_interval)
                and guidance_interval[0] <= guidance_interval[1]):
            raise RequestError("guidance_interval", f"expected (low, high) sigmas, 0 <= low <= high, got "
                                                    f"{guidance_interval!r}")
        if self.distilled_sigmas is not None and sigmas is None:
            guidance_scale = distilled_settings(self.distilled_sigmas, guidance_scale, num_inference_steps,
                                                flow_shift)
            sigmas, flow_shift, num_inference_steps = list(self.distilled_sigmas), None, None
        if sigmas is not None:
            if flow_shift is not None:
                raise RequestError("sigmas", "sigmas, flow_shift: a fixed sigma list is used as given; do not also "
                                             "shift it")
            values = [float(x) for x in sigmas] if isinstance(sigmas, (list, tuple)) and all(
                _number(x, 0.0, 1.0) for x in sigmas) else []
            if not values or any(not 0 < x <= 1 for x in values) or any(a <= b for a, b in zip(values, values[1:])):
                raise RequestError("sigmas", f"expected a decreasing list of numbers in (0, 1], got {sigmas!r}")
            sigmas = values
        if step_cache is not None and (isinstance(step_cache, bool) or not _number(step_cache, 0.0, math.inf)):
            raise RequestError("step_cache", f"expected a threshold >= 0 (e.g. 0.05), got {step_cache!r}")
        if condition_video_keep not in ("first", "last"):
            raise RequestError("condition_video_keep", f"expected 'first' or 'last', got {condition_video_keep!r}")
        common = dict(prompt=prompt, negative_prompt=negative_prompt, image=image, video=video, generator=generator,
                      seed=seed,
                      sigmas=sigmas, guidance_interval=tuple(guidance_interval) if guidance_interval else None,
                      sampler=sampler, upsample_prompt=upsample_prompt, progress=progress, callback=callback,
                      step_cache=float(step_cache) if step_cache else None,
                      use_system_prompt=self.default_use_system_prompt if use_system_prompt is None
                      else bool(use_system_prompt))
        if action_mode is not None or embodiment is not None or actions is not None or action_chunk_size is not None:
            req = self._resolve_action(common, action_mode, embodiment, actions, action_chunk_size, fps, resolution,
                                       height, width, num_frames, aspect_ratio, condition_frame_indexes, enable_sound,
                                       num_inference_steps, guidance_scale, flow_shift)
        else:
            req = self._resolve_video(common, num_frames, fps, height, width, resolution, aspect_ratio,
                                      num_inference_steps, guidance_scale, flow_shift, enable_sound,
                                      condition_frame_indexes, condition_video_keep, use_resolution_template,
                                      use_duration_template)
        if req.sigmas is not None:
            req.steps = len(req.sigmas)  # a fixed sigma list is the schedule
        if not isinstance(req.steps, int) or isinstance(req.steps, bool) or not 1 <= req.steps <= 1000:
            raise RequestError("num_inference_steps", f"expected an integer in [1, 1000], got {req.steps!r}")
        if not _number(req.guidance, 0.0, MAX_GUIDANCE):
            raise RequestError("guidance_scale", f"expected a number in [0, {MAX_GUIDANCE:g}], got {req.guidance!r}")
        if not _number(req.shift, 0.0, 100.0, lo_open=True):
            raise RequestError("flow_shift", f"expected a number in (0, 100], got {req.shift!r}")
        if req.guidance > WARN_GUIDANCE:
            warnings.warn(f"guidance_scale={req.guidance} is above {WARN_GUIDANCE:g}: expect over-saturated output",
                          stacklevel=3)
        if req.seed is None and generator is None:
            req.seed = int(torch.seed() % 2**63)  # drawn here, so the resolved request reproduces its output
        trained = self.defaults.get("modes")  # a checkpoint may list the modes it was trained for
        if trained and req.mode not in trained:
            req.warnings += (f"{self.name} was not trained for {req.mode} (it learnt {', '.join(trained)}): "
                             "expect poor results",)
        for message in req.warnings:
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, stacklevel=3)
        return req

    def _resolve_video(self, common, num_frames, fps, height, width, resolution, aspect_ratio, steps, guidance,
                       shift, enable_sound, condition_frame_indexes, condition_video_keep, use_resolution_template,
                       use_duration_template) -> GenRequest:
        if height is None and width is None:
            resolution = self._native(resolution, "resolution")
            if num_frames != 1 and aspect_ratio is None:
                aspect_ratio = native_value(self.defaults, "aspect_ratio")
        num_frames = self._native(num_frames, "num_frames")
        fps = self._native(fps, "fps")
        if num_frames == 1 and aspect_ratio is None and height is None:
            aspect_ratio = spec.DEFAULT_IMAGE_ASPECT_RATIO  # text-to-image is square unless told otherwise
        settings = spec.resolve_settings(resolution=resolution, aspect_ratio=aspect_ratio, height=height,
                                         width=width, num_frames=num_frames, fps=fps)
        image, video = common["image"], common["video"]
        if image is not None and settings.is_image:
            raise RequestError("image", "image conditioning needs a video (num_frames > 1); text-to-image takes none")
        if video is not None and settings.is_image:
            raise RequestError("video", "video conditioning needs num_frames > 1")
        if enable_sound:
            if self.sound is None or not self.model.config.sound_gen:
                raise RequestError("enable_sound", "this checkpoint does not generate sound (no sound_tokenizer/ or "
                                                   "no sound heads)", code="unsupported")
            if settings.is_image:
                raise RequestError("enable_sound", "sound goes with video (num_frames > 1), not with an image")
        mode = "t2i" if settings.is_image else "v2v" if video is not None else "i2v" if image is not None else "t2v"
        indexes = None
        if mode == "v2v":
            Tl = self.vae.latent_shape(settings.num_frames, settings.height, settings.width)[1]
            given = condition_frame_indexes if condition_frame_indexes is not None else (0, 1)
            indexes = tuple(sorted(set(given))) if isinstance(given, (list, tuple)) else ()
            if not indexes or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < Tl for i in indexes):
                raise RequestError("condition_frame_indexes", f"expected latent frame indexes in [0, {Tl}), got "
                                                              f"{condition_frame_indexes!r}")
        kind = "image_" if settings.is_image else ""
        if common["sigmas"] is not None:
            shift = 1.0
        elif shift is None:
            shift = native_value(self.defaults, kind + "flow_shift")
        notes = []
        native_tier = self.defaults.get("resolution")
        if native_tier and settings.resolution != spec.resolve_settings(resolution=native_tier).resolution:
            notes.append(f"{self.name} was trained at {native_tier}; {settings.width}x{settings.height} is outside "
                         "its training (expect poor results)")
        return GenRequest(
            mode=mode, num_frames=settings.num_frames, fps=float(settings.fps), height=settings.height,
            width=settings.width, shift=shift, enable_sound=bool(enable_sound), condition_frame_indexes=indexes,
            condition_video_keep=condition_video_keep, use_resolution_template=bool(use_resolution_template),
            use_duration_template=bool(use_duration_template),
            steps=self._native(steps, kind + "num_inference_steps"),
            guidance=self._native(guidance, kind + "guidance_scale"),
            warnings=tuple(notes), **common)

    def _resolve_action(self, common, action_mode, embodiment, actions, action_chunk_size, fps, resolution, height,
                        width, num_frames, aspect_ratio, condition_frame_indexes, enable_sound, steps, guidance,
                        shift) -> GenRequest:
        from .action_modes import resolve_action_request, tier_of

        if action_mode is None:
            raise RequestError("action_mode", "embodiment / actions / action_chunk_size need an action_mode "
                                              "('forward_dynamics', 'inverse_dynamics' or 'policy')")
        for name, value in (("height", height), ("width", width), ("num_frames", num_frames),
                            ("aspect_ratio", aspect_ratio), ("condition_frame_indexes", condition_frame_indexes)):
            if value is not None:
                raise RequestError(name, "action modes size the output from the input and the resolution tier (and "
                                         f"the length from action_chunk_size); do not pass {name}")
        if enable_sound:
            raise RequestError("enable_sound", "action modes do not generate sound")
        if not self.model.config.action_gen:
            raise RequestError("action_mode", "this checkpoint has no action heads (action_gen is false)",
                               code="unsupported")
        resolution = self._native(resolution, "action_resolution")
        fps = self.defaults.get("fps") if fps is None else fps  # else the embodiment's
        chunk = self.defaults.get("action_chunk_size") if action_chunk_size is None else action_chunk_size
        request = resolve_action_request(action_mode, embodiment, actions, chunk, fps, common["image"],
                                         common["video"])
        emb = request.embodiment
        if emb.domain_id >= self.model.config.num_embodiment_domains:
            raise RequestError("embodiment", f"{emb.name} has domain id {emb.domain_id}, but this checkpoint has "
                                             f"action heads for {self.model.config.num_embodiment_domains} domains only",
                               code="unsupported")
        if emb.raw_dim > self.model.config.action_dim:
            raise RequestError("embodiment", f"{emb.name} actions are {emb.raw_dim} wide, wider than this "
                                             f"checkpoint's action_dim {self.model.config.action_dim}",
                               code="unsupported")
        tier = tier_of(resolution)
        notes = []
        if self.action_stats and emb.name not in self.action_stats:
            notes.append(f"{self.name} has no action statistics for embodiment {emb.name} (it learnt "
                         f"{', '.join(sorted(self.action_stats))}): its actions go in and out raw (expect poor "
                         "results)")
        native_tier = self.defaults.get("resolution")
        if native_tier and tier != tier_of(native_tier):
            notes.append(f"{self.name} was trained at {native_tier}; the {tier}p tier is outside its training "
                         "(expect poor results)")
        if common["sigmas"] is not None:
            shift = 1.0
        elif shift is None:
            shift = native_value(self.defaults, "action_flow_shift")
        return GenRequest(
            mode=request.mode, num_frames=request.chunk + 1, fps=request.fps, shift=shift, tier=tier, action=request,
            actions_arg=actions, steps=self._native(steps, "action_num_inference_steps"),
            guidance=self._native(guidance, "action_guidance_scale"), warnings=tuple(notes), **common)

    def workload(self, req: GenRequest) -> dict:
        """What sets a request's cost: generation tokens per CFG branch, branches, steps, sampling runs, and pixels
        decoded (an action canvas counts as its tier's largest; the input's aspect picks it at run time)."""
        from .action_modes import CANVASES

        if req.is_action:
            H, W = max(CANVASES[req.tier].values(), key=lambda hw: hw[0] * hw[1])
        else:
            H, W = req.height, req.width
        _, Tl, Hl, Wl = self.vae.latent_shape(req.num_frames, H, W)
        rows, cols = patch_grid(Hl, Wl, self.model.config.latent_patch_size)
        tokens = Tl * rows * cols
        if req.enable_sound:
            tokens += self.sound.latent_count(req.num_frames, req.fps)
        if req.is_action:
            tokens += req.action.chunk
        return dict(tokens=tokens, branches=2 if req.guidance != 1.0 else 1, steps=req.steps, runs=req.chunks,
                    decode_pixels=req.chunks * req.num_frames * H * W)

    # -------------------------------------------------------------------------------------------- generate

    def generate(self, prompt: str = "", negative_prompt: str | None = None, image=None, video=None,
                 num_frames: int | None = None, fps: float | None = None, height: int | None = None,
                 width: int | None = None, resolution: str | None = None, aspect_ratio: str | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 flow_shift: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 enable_sound: bool = False, action_mode: str | None = None, embodiment: str | None = None,
                 actions=None, action_chunk_size: int | None = None,
                 condition_frame_indexes: list[int] | tuple[int, ...] | None = None,
                 condition_video_keep: str = "first", use_resolution_template: bool = True,
                 use_duration_template: bool = True, use_system_prompt: bool | None = None, progress: bool = True,
                 guidance_interval: tuple[float, float] | None = None, sampler: str | None = None,
                 sigmas: list[float] | None = None, callback=None, upsample_prompt: bool = False,
                 step_cache: float | None = None) -> GenerationResult:
        """`run(resolve(...))`: every argument is checked before any model work."""
        return self.run(self.resolve(**{k: v for k, v in locals().items() if k != "self"}))

    def run(self, req: GenRequest) -> GenerationResult:
        """Generate a resolved request. Every mode is one sampling run per chunk (`_sample`); they differ only in
        the plan: which tokens are clean, which noisy, and the prompt texts."""
        from tqdm.auto import tqdm

        started = time.perf_counter()
        prompt = req.prompt
        if req.upsample_prompt:
            prompt = self.upsample_prompt(prompt, seed=req.seed)
        generator = req.generator if req.generator is not None else torch.Generator("cpu").manual_seed(req.seed)
        timings = dict(prepare_s=0.0, denoise_s=0.0, decode_s=0.0)
        if not req.is_action:
            frames, latents, sound = self._sample(self._video_plan(req, prompt), req, generator, timings, started)
            result = GenerationResult(frames=frames, latents=latents, fps=req.fps, mode=req.mode, seed=req.seed,
                                      sound=sound, prompt=prompt,
                                      sample_rate=self.sound.sample_rate if self.sound else 48000)
        else:
            action = req.action
            condition, pieces, predicted = (req.image, req.video), [], None
            whole = action.all_actions
            starts = range(0, whole.shape[0], action.chunk) if req.chunks > 1 else [0]
            for k in tqdm(starts, desc="action chunks", unit="chunk", disable=not req.progress or req.chunks == 1):
                clean = action.actions if req.chunks == 1 else chunk_actions(whole[k:k + action.chunk], action.chunk)
                since = time.perf_counter()
                plan = self._action_plan(req, prompt, *condition, clean)
                frames, latents, predicted = self._sample(plan, req, generator, timings, since)
                pieces.append(frames if not pieces else frames[1:])
                condition = (Image.fromarray(frames[-1].numpy()), None)  # the next chunk starts from the last frame
            result = GenerationResult(frames=torch.cat(pieces), latents=latents, fps=req.fps, mode=req.mode,
                                      seed=req.seed, actions=predicted, prompt=prompt)
        result.timings = dict(timings, total_s=time.perf_counter() - started, steps=req.steps,
                              peak_memory_bytes=_peak_memory_bytes(self.device))
        return result

    # -------------------------------------------------------------------------------------------- plans

    def _video_plan(self, req: GenRequest, prompt: str) -> _Plan:
        """t2i / t2v / i2v / v2v (+ sound): the conditioning frames are clean, the rest noisy."""
        T, H, W = req.num_frames, req.height, req.width
        C, Tl, Hl, Wl = self.vae.latent_shape(T, H, W)
        vision_noisy = torch.ones(Tl, dtype=torch.bool)
        clean = Latents(vision=torch.zeros(C, Tl, Hl, Wl))
        if req.mode == "i2v":
            vision_noisy[0] = False
            clean.vision[:, :1] = self.vae.encode(image_to_pixels(req.image, H, W)[:, :, None])
        elif req.mode == "v2v":
            indexes = list(req.condition_frame_indexes)
            keep = max(indexes) * self.vae.temporal + 1
            encoded = self.vae.encode(video_to_pixels(req.video, H, W, keep, req.condition_video_keep))
            vision_noisy[indexes] = False
            clean.vision[:, indexes] = encoded[:, indexes]
        sound_latents = self.sound.latent_count(T, req.fps) if req.enable_sound else 0
        if sound_latents:
            clean.sound = torch.zeros(self.model.config.sound_dim, sound_latents)
        layout = GenLayout(latent_shape=(C, Tl, Hl, Wl), vision_noisy=vision_noisy, fps=req.fps,
                           sound_latents=sound_latents, sound_fps=self.model.config.sound_latent_fps)
        templates = dict(num_frames=T, fps=req.fps, height=H, width=W,
                         use_resolution_template=req.use_resolution_template,
                         use_duration_template=req.use_duration_template)
        texts = [prompt_text(prompt, negative=False, **templates)]
        if req.guidance != 1.0:
            texts.append(prompt_text(req.negative_prompt or "", negative=True, **templates))
        return _Plan(layout, clean, texts, is_image=req.mode == "t2i")

    def _action_plan(self, req: GenRequest, prompt: str, image, video, clean_actions) -> _Plan:
        """forward_dynamics (first frame and actions clean), inverse_dynamics (every frame clean), policy (first
        frame clean) on the tier's canvas."""
        from .action_modes import action_caption, build_canvas

        emb, chunk, mode = req.action.embodiment, req.action.chunk, req.mode
        canvas = build_canvas(image, video, chunk + 1, req.tier)
        # Causal VAE: the first latent frame needs only the first pixel frame.
        pixels = canvas.pixels if mode == "inverse_dynamics" else canvas.pixels[:, :, :1]
        encoded = canvas.crop_latents(self.vae.encode(pixels))
        C, Tl, width = self.vae.channels, 1 + chunk // self.vae.temporal, self.model.config.action_dim
        h, w = encoded.shape[2:]
        vision_noisy = torch.ones(Tl, dtype=torch.bool)
        vision_noisy[: encoded.shape[1]] = False
        clean = Latents(vision=torch.zeros(C, Tl, h, w), actions=torch.zeros(chunk, width))
        clean.vision[:, : encoded.shape[1]] = encoded
        action_noisy = torch.ones(chunk, dtype=torch.bool)
        if mode == "forward_dynamics":
            stats = self.action_stats.get(emb.name)
            if stats is not None:
                raw = clean_actions[:, : emb.raw_dim].double().numpy()
                clean_actions = clean_actions.clone()
                clean_actions[:, : emb.raw_dim] = torch.from_numpy(normalize(raw, stats)).to(clean_actions.dtype)
            clean.actions = clean_actions[:, :width].clone()
            action_noisy[:] = False
        layout = GenLayout(latent_shape=(C, Tl, h, w), vision_noisy=vision_noisy, fps=req.fps, action_steps=chunk,
                           action_noisy=action_noisy, domain_id=emb.domain_id)
        texts = [action_caption(prompt, emb, chunk + 1, req.fps, canvas.height, canvas.width)]
        if req.guidance != 1.0:
            texts.append(req.negative_prompt or "")  # the action models take the negative prompt as it is
        return _Plan(layout, clean, texts, is_image=False, raw_action_dim=emb.raw_dim)

    # -------------------------------------------------------------------------------------------- sampling

    def _sample(self, plan: _Plan, req: GenRequest, generator: torch.Generator, timings: dict, since: float):
        """The one sampling path: noise (vision, sound, actions, in the reference's order, from one CPU generator),
        prompts, denoising, decoding -> (uint8 frames, vision latents, sound or predicted actions)."""
        clean, layout = plan.clean, plan.layout
        noise = Latents(vision=torch.randn((1, *clean.vision.shape), generator=generator)[0])
        if clean.sound is not None:
            noise.sound = torch.randn(clean.sound.shape, generator=generator)
        if clean.actions is not None:
            noise.actions = torch.randn(clean.actions.shape, generator=generator)
        latents = with_noise(clean, noise, layout)
        if plan.raw_action_dim is not None:
            latents.actions[:, plan.raw_action_dim:] = 0
        # Denoise on the model's device (noise is drawn on the host, so a seed gives the same run on any device).
        latents, clean = (x.map(lambda _, t: t.to(self.device)) for x in (latents, clean))
        prompts = [branch_inputs(self.tokenizer, self.model.config, t, is_image=plan.is_image,
                                 use_system_prompt=req.use_system_prompt) for t in plan.texts]
        with torch.inference_mode():
            branches = encode_branches(self.model, layout, prompts)
        scheduler = make_scheduler(self.scheduler_config, flow_shift=req.shift, sampler=req.sampler)
        timesteps = set_schedule(scheduler, req.steps, sigmas=req.sigmas, native=self.native_flow_schedule)
        denoising = time.perf_counter()
        counts: dict = {}
        latents = sample(self.model, layout, latents, clean, branches, scheduler, timesteps, req.guidance,
                         guidance_interval=req.guidance_interval, raw_action_dim=plan.raw_action_dim,
                         callback=req.callback, progress=req.progress, step_cache=req.step_cache, stats=counts)
        for key, value in counts.items():  # transformer evaluations: forwards run, skipped, CFG rows run
            timings[key] = timings.get(key, 0) + value
        decoding = time.perf_counter()
        del branches, noise, scheduler  # the prompts' und caches: free them before the VAE decode's peak
        frames = self.vae.decode(latents.vision)
        extra = None
        if latents.sound is not None:
            extra = self.sound.decode(latents.sound)
        elif plan.raw_action_dim is not None and req.mode != "forward_dynamics":
            extra = latents.actions[:, : plan.raw_action_dim].float().cpu()
            stats = self.action_stats.get(req.action.embodiment.name)
            if stats is not None:
                extra = torch.from_numpy(denormalize(extra.numpy(), stats))
        done = time.perf_counter()
        timings["prepare_s"] += denoising - since
        timings["denoise_s"] += decoding - denoising
        timings["decode_s"] += done - decoding
        return frames, latents.vision.float().cpu(), extra
