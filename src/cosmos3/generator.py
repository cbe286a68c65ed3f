"""The Generator surface: text / image / video (+ sound) in, image / video / sound out.

    gen = Generator.from_pretrained("path/to/checkpoint")        # official diffusers layout
    res = gen.generate("a red block slides to the left", num_frames=33, resolution="256p", seed=0)
    res.save("out.mp4")

Modes follow from the inputs: one frame is text-to-image; an `image` makes image-to-video; a `video` makes
video-to-video; otherwise text-to-video. Every argument is validated before any model work starts.
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
from .actions import ACTION_STATS_FILE, ActionStats, denormalize, get_embodiment, load_stats_file, normalize
from .checkpoint import CheckpointError, default_dtype, load_transformer, resolve_checkpoint
from .diffusion import Latents, encode_branches, load_scheduler_config, make_scheduler, sample, set_schedule, with_noise
from .media import read_image, video_frames, write_image, write_video
from .model import Cosmos3Omni
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


# ------------------------------------------------------------------------------------------------ generator


def native_video_settings(defaults: dict, resolution, aspect_ratio, height, width, num_frames, fps) -> tuple:
    """Fill what a video / image request leaves out from a checkpoint's native settings -> (resolution, aspect_ratio,
    num_frames, fps). An exact size keeps its own aspect; an image (1 frame) stays square unless told otherwise."""
    if height is None and width is None:
        resolution = defaults.get("resolution") if resolution is None else resolution
        if num_frames != 1 and aspect_ratio is None:
            aspect_ratio = defaults.get("aspect_ratio")
    num_frames = defaults.get("num_frames") if num_frames is None else num_frames
    fps = defaults.get("fps") if fps is None else fps
    return resolution, aspect_ratio, num_frames, fps


class Generator:
    def __init__(self, model: Cosmos3Omni, vae: VideoVAE, tokenizer, scheduler_config: dict,
                 sound: SoundCodec | None = None, *, default_use_system_prompt: bool = True,
                 native_flow_schedule: bool = False, name: str = "cosmos3", defaults: dict | None = None,
                 action_stats: dict | None = None):
        self.model, self.vae, self.tokenizer, self.sound = model, vae, tokenizer, sound
        # {embodiment name: ActionStats} of a checkpoint trained on normalized actions (action_stats.json): its
        # action modes take and give raw actions, normalized on the way in and denormalized on the way out.
        self.action_stats = {}
        for name, stats in (action_stats or {}).items():
            emb = get_embodiment(name)
            if not isinstance(stats, ActionStats) or stats.dim != emb.raw_dim:
                raise ValueError(f"action_stats[{name!r}]: expected ActionStats of {emb.raw_dim} dimensions "
                                 f"({emb.name}), got {stats!r:.80}")
            self.action_stats[emb.name] = stats
        # A checkpoint's native settings (model_index.json "cosmos3_defaults"; pico has them): used in place of the
        # release's defaults for whatever a call leaves out.
        self.defaults = dict(defaults or {})
        self.scheduler_config = scheduler_config
        self.default_use_system_prompt = default_use_system_prompt
        self.native_flow_schedule = native_flow_schedule
        self.name = name
        self.path: Path | None = None  # set by from_pretrained; the reasoner for prompt upsampling reads from it
        self._reasoner = None
        if vae.channels != model.config.latent_channel:
            raise CheckpointError(f"vae z_dim {vae.channels} does not match transformer latent_channel "
                                  f"{model.config.latent_channel}")

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "Generator":
        """Load an official-layout checkpoint: transformer/, vae/, scheduler/, text_tokenizer/, sound_tokenizer/."""
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
        model = load_transformer(root, dtype=dtype, device=device)
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
                  defaults=index.get("cosmos3_defaults"), action_stats=load_stats_file(root / ACTION_STATS_FILE))
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

    # -------------------------------------------------------------------------------------------- checks

    def _check(self, prompt, negative_prompt, image, video, steps, guidance, flow_shift, seed, generator,
               enable_sound, condition_video_keep, settings: spec.Settings) -> None:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError(f"negative_prompt: expected a string or None, got {type(negative_prompt).__name__}")
        if image is not None and video is not None:
            raise ValueError("image, video: give one conditioning input, not both")
        if image is not None and settings.is_image:
            raise ValueError("image: image conditioning needs a video (num_frames > 1); text-to-image takes none")
        if video is not None and settings.is_image:
            raise ValueError("video: video conditioning needs num_frames > 1")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
            raise ValueError(f"num_inference_steps: expected an integer in [1, 1000], got {steps!r}")
        if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not (
                0.0 <= guidance <= MAX_GUIDANCE):
            raise ValueError(f"guidance_scale: expected a number in [0, {MAX_GUIDANCE:g}], got {guidance!r}")
        if guidance > WARN_GUIDANCE:
            warnings.warn(f"guidance_scale={guidance} is above {WARN_GUIDANCE:g}: expect over-saturated output",
                          stacklevel=3)
        if not isinstance(flow_shift, (int, float)) or isinstance(flow_shift, bool) or not (
                0 < flow_shift <= 100 and math.isfinite(flow_shift)):
            raise ValueError(f"flow_shift: expected a number in (0, 100], got {flow_shift!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        if seed is not None and generator is not None:
            raise ValueError("seed, generator: give one of them, not both")
        if enable_sound:
            if self.sound is None or not self.model.config.sound_gen:
                raise ValueError("enable_sound: this checkpoint does not generate sound (no sound_tokenizer/ or no "
                                 "sound heads)")
            if settings.is_image:
                raise ValueError("enable_sound: sound goes with video (num_frames > 1), not with an image")
        if condition_video_keep not in ("first", "last"):
            raise ValueError(f"condition_video_keep: expected 'first' or 'last', got {condition_video_keep!r}")

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
                 sigmas: list[float] | None = None, callback=None, upsample_prompt: bool = False) -> GenerationResult:
        if upsample_prompt:
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("upsample_prompt: needs a non-empty prompt to expand")
            prompt = self.upsample_prompt(prompt, seed=seed)
        if self.defaults:
            d = self.defaults
            pick = lambda value, key: d.get(key) if value is None else value  # noqa: E731
            if action_mode is not None:
                resolution, fps = pick(resolution, "resolution"), pick(fps, "fps")
                action_chunk_size = pick(action_chunk_size, "action_chunk_size")
                num_inference_steps = pick(num_inference_steps, "action_num_inference_steps")
                guidance_scale = pick(guidance_scale, "action_guidance_scale")
            else:
                resolution, aspect_ratio, num_frames, fps = native_video_settings(
                    d, resolution, aspect_ratio, height, width, num_frames, fps)
                num_inference_steps = pick(num_inference_steps, "num_inference_steps")
                guidance_scale = pick(guidance_scale, "guidance_scale")
            flow_shift = pick(flow_shift, "flow_shift") if sigmas is None else flow_shift
        if action_mode is not None or embodiment is not None or actions is not None or action_chunk_size is not None:
            if action_mode is None:
                raise ValueError("action_mode: embodiment / actions / action_chunk_size need an action_mode "
                                 "('forward_dynamics', 'inverse_dynamics' or 'policy')")
            return self._generate_actions(**{k: v for k, v in locals().items() if k != "self"})
        started = time.perf_counter()
        if num_frames == 1 and aspect_ratio is None and height is None:
            aspect_ratio = spec.DEFAULT_IMAGE_ASPECT_RATIO  # text-to-image is square unless told otherwise
        settings = spec.resolve_settings(resolution=resolution, aspect_ratio=aspect_ratio, height=height,
                                         width=width, num_frames=num_frames, fps=fps)
        d_steps, d_guidance, d_shift = IMAGE_DEFAULTS if settings.is_image else VIDEO_DEFAULTS
        steps = d_steps if num_inference_steps is None else num_inference_steps
        guidance = d_guidance if guidance_scale is None else guidance_scale
        shift = d_shift if flow_shift is None else flow_shift
        if sigmas is not None:
            if flow_shift is not None:
                raise ValueError("sigmas, flow_shift: a fixed sigma list is used as given; do not also shift it")
            shift = 1.0
            values = [float(x) for x in sigmas] if isinstance(sigmas, (list, tuple)) else []
            if not values or any(not 0 < x <= 1 for x in values) or any(a <= b for a, b in zip(values, values[1:])):
                raise ValueError(f"sigmas: expected a decreasing list of numbers in (0, 1], got {sigmas!r}")
        self._check(prompt, negative_prompt, image, video, steps, guidance, shift, seed, generator, enable_sound,
                    condition_video_keep, settings)
        T, H, W, fps = settings.num_frames, settings.height, settings.width, float(settings.fps)
        C, Tl, Hl, Wl = self.vae.latent_shape(T, H, W)

        mode = "t2i" if settings.is_image else "v2v" if video is not None else "i2v" if image is not None else "t2v"
        vision_noisy = torch.ones(Tl, dtype=torch.bool)
        clean = Latents(vision=torch.zeros(C, Tl, Hl, Wl))
        if mode == "i2v":
            vision_noisy[0] = False
            clean.vision[:, :1] = self.vae.encode(image_to_pixels(image, H, W)[:, :, None])
        elif mode == "v2v":
            indexes = sorted(set(condition_frame_indexes if condition_frame_indexes is not None else (0, 1)))
            if not indexes or any(not isinstance(i, int) or not 0 <= i < Tl for i in indexes):
                raise ValueError(f"condition_frame_indexes: expected latent frame indexes in [0, {Tl}), "
                                 f"got {condition_frame_indexes!r}")
            keep = max(indexes) * self.vae.temporal + 1
            encoded = self.vae.encode(video_to_pixels(video, H, W, keep, condition_video_keep))
            vision_noisy[indexes] = False
            clean.vision[:, indexes] = encoded[:, indexes]

        sound_latents = self.sound.latent_count(T, fps) if enable_sound else 0
        layout = GenLayout(latent_shape=(C, Tl, Hl, Wl), vision_noisy=vision_noisy, fps=fps,
                           sound_latents=sound_latents,
                           sound_fps=self.model.config.sound_latent_fps)
        if sound_latents:
            clean.sound = torch.zeros(self.model.config.sound_dim, sound_latents)

        # Noise in the reference's order: vision, then sound (then actions), from one CPU generator.
        if generator is None:
            seed = int(torch.seed() % 2**63) if seed is None else seed
            generator = torch.Generator("cpu").manual_seed(seed)
        noise = Latents(vision=torch.randn((1, *clean.vision.shape), generator=generator)[0])
        if clean.sound is not None:
            noise.sound = torch.randn(clean.sound.shape, generator=generator)
        latents = with_noise(clean, noise, layout)

        use_sys = self.default_use_system_prompt if use_system_prompt is None else use_system_prompt
        texts = [prompt_text(prompt, num_frames=T, fps=fps, height=H, width=W, negative=False,
                             use_resolution_template=use_resolution_template,
                             use_duration_template=use_duration_template)]
        if guidance != 1.0:
            texts.append(prompt_text(negative_prompt or "", num_frames=T, fps=fps, height=H, width=W, negative=True,
                                     use_resolution_template=use_resolution_template,
                                     use_duration_template=use_duration_template))
        prompts = [branch_inputs(self.tokenizer, self.model.config, t, is_image=settings.is_image,
                                 use_system_prompt=use_sys) for t in texts]
        prepared = time.perf_counter()
        with torch.inference_mode():
            branches = encode_branches(self.model, layout, prompts)
        scheduler = make_scheduler(self.scheduler_config, flow_shift=shift, sampler=sampler)
        timesteps = set_schedule(scheduler, steps, sigmas=sigmas, native=self.native_flow_schedule)
        latents = sample(self.model, layout, latents, clean, branches, scheduler, timesteps, guidance,
                         guidance_interval=guidance_interval, callback=callback, progress=progress)
        denoised = time.perf_counter()
        del branches, noise, scheduler  # the prompts' und caches: free them before the VAE decode's peak
        frames = self.vae.decode(latents.vision)
        sound = self.sound.decode(latents.sound) if latents.sound is not None else None
        done = time.perf_counter()
        return GenerationResult(
            frames=frames, latents=latents.vision.float().cpu(), fps=fps, mode=mode, seed=seed, sound=sound,
            prompt=prompt,
            sample_rate=self.sound.sample_rate if self.sound else 48000,
            timings=dict(prepare_s=prepared - started, denoise_s=denoised - prepared, decode_s=done - denoised,
                         total_s=done - started, steps=len(timesteps),
                         peak_memory_bytes=_peak_memory_bytes(self.device)))

    def _generate_actions(self, *, prompt, negative_prompt, image, video, fps, resolution, height, width,
                          num_frames, aspect_ratio, num_inference_steps, guidance_scale, flow_shift, seed, generator,
                          enable_sound, action_mode, embodiment, actions, action_chunk_size, condition_frame_indexes,
                          use_system_prompt, progress, guidance_interval, sampler, sigmas, callback,
                          **_) -> GenerationResult:
        """forward_dynamics / inverse_dynamics / policy (DESIGN 2.8). Long action files roll out chunk by chunk."""
        from tqdm.auto import tqdm

        from .action_modes import ACTION_DEFAULTS, chunk_actions, resolve_action_request, tier_of

        started = time.perf_counter()
        for name, value in (("height", height), ("width", width), ("num_frames", num_frames),
                            ("aspect_ratio", aspect_ratio), ("condition_frame_indexes", condition_frame_indexes)):
            if value is not None:
                raise ValueError(f"{name}: action modes size the output from the input and the resolution tier "
                                 f"(and the length from action_chunk_size); do not pass {name}")
        if enable_sound:
            raise ValueError("enable_sound: action modes do not generate sound")
        if not self.model.config.action_gen:
            raise ValueError("action_mode: this checkpoint has no action heads (action_gen is false)")
        request = resolve_action_request(action_mode, embodiment, actions, action_chunk_size, fps, image, video)
        if request.embodiment.domain_id >= self.model.config.num_embodiment_domains:
            raise ValueError(f"embodiment: {request.embodiment.name} has domain id {request.embodiment.domain_id}, "
                             f"but this checkpoint has action heads for {self.model.config.num_embodiment_domains} "
                             "domains only")
        if request.embodiment.raw_dim > self.model.config.action_dim:
            raise ValueError(f"embodiment: {request.embodiment.name} actions are {request.embodiment.raw_dim} wide, "
                             f"wider than this checkpoint's action_dim {self.model.config.action_dim}")
        tier = tier_of(resolution)
        steps = ACTION_DEFAULTS[0] if num_inference_steps is None else num_inference_steps
        guidance = ACTION_DEFAULTS[1] if guidance_scale is None else guidance_scale
        shift = ACTION_DEFAULTS[2] if flow_shift is None else flow_shift
        self._check(prompt, negative_prompt, None, None, steps, guidance, shift, seed, generator, False, "first",
                    spec.Settings(width=64, height=64, num_frames=request.chunk + 1, fps=request.fps,
                                  latent_frames=1))
        if generator is None:
            seed = int(torch.seed() % 2**63) if seed is None else seed
            generator = torch.Generator("cpu").manual_seed(seed)
        common = dict(prompt=prompt, negative_prompt=negative_prompt, tier=tier, steps=steps, guidance=guidance,
                      shift=shift, generator=generator, use_system_prompt=use_system_prompt, progress=progress,
                      guidance_interval=guidance_interval, sampler=sampler, sigmas=sigmas, callback=callback)

        if request.mode != "forward_dynamics" or request.all_actions.shape[0] <= request.chunk:
            frames, latents, predicted = self._action_chunk(request, image, video, request.actions, **common)
        else:  # a long rollout: each chunk starts from the last frame the previous one generated
            pieces, condition = [], (image, video)
            starts = range(0, request.all_actions.shape[0], request.chunk)
            for k in tqdm(starts, desc="action chunks", unit="chunk", disable=not progress):
                clean = chunk_actions(request.all_actions[k:k + request.chunk], request.chunk)
                frames, latents, predicted = self._action_chunk(request, *condition, clean, **common)
                pieces.append(frames if not pieces else frames[1:])
                condition = (Image.fromarray(frames[-1].numpy()), None)
            frames = torch.cat(pieces)
        done = time.perf_counter()
        return GenerationResult(frames=frames, latents=latents, fps=request.fps, mode=request.mode, seed=seed,
                                actions=predicted,
                                timings=dict(total_s=done - started, steps=steps,
                                             peak_memory_bytes=_peak_memory_bytes(self.device)))

    def _action_chunk(self, request, image, video, clean_actions, *, prompt, negative_prompt, tier, steps,
                      guidance, shift, generator, use_system_prompt, progress, guidance_interval, sampler, sigmas,
                      callback):
        """One chunk: (uint8 frames [chunk + 1, h, w, 3], latents, predicted actions [chunk, raw_dim] or None)."""
        from .action_modes import action_caption, build_canvas

        emb, chunk, mode = request.embodiment, request.chunk, request.mode
        canvas = build_canvas(image, video, chunk + 1, tier)
        # Causal VAE: the first latent frame needs only the first pixel frame.
        pixels = canvas.pixels if mode == "inverse_dynamics" else canvas.pixels[:, :, :1]
        encoded = canvas.crop_latents(self.vae.encode(pixels))
        C, Tl = self.vae.channels, 1 + chunk // self.vae.temporal
        h, w = encoded.shape[2:]
        vision_noisy = torch.ones(Tl, dtype=torch.bool)
        vision_noisy[: encoded.shape[1]] = False
        clean = Latents(vision=torch.zeros(C, Tl, h, w), actions=torch.zeros(chunk, self.model.config.action_dim))
        clean.vision[:, : encoded.shape[1]] = encoded
        action_noisy = torch.ones(chunk, dtype=torch.bool)
        stats = self.action_stats.get(emb.name)
        if mode == "forward_dynamics":
            if stats is not None:
                raw = clean_actions[:, : emb.raw_dim].double().numpy()
                clean_actions = clean_actions.clone()
                clean_actions[:, : emb.raw_dim] = torch.from_numpy(normalize(raw, stats)).to(clean_actions.dtype)
            clean.actions = clean_actions[:, : self.model.config.action_dim].clone()
            action_noisy[:] = False
        layout = GenLayout(latent_shape=(C, Tl, h, w), vision_noisy=vision_noisy, fps=request.fps,
                           action_steps=chunk, action_noisy=action_noisy, domain_id=emb.domain_id)
        noise = Latents(vision=torch.randn((1, C, Tl, h, w), generator=generator)[0],
                        actions=torch.randn((chunk, self.model.config.action_dim), generator=generator))
        latents = with_noise(clean, noise, layout)
        latents.actions[:, emb.raw_dim:] = 0

        texts = [action_caption(prompt, emb, chunk + 1, request.fps, canvas.height, canvas.width)]
        if guidance != 1.0:
            texts.append(negative_prompt or "")  # the action models take the negative prompt as it is
        use_sys = self.default_use_system_prompt if use_system_prompt is None else use_system_prompt
        prompts = [branch_inputs(self.tokenizer, self.model.config, t, is_image=False, use_system_prompt=use_sys)
                   for t in texts]
        with torch.inference_mode():
            branches = encode_branches(self.model, layout, prompts)
        scheduler = make_scheduler(self.scheduler_config, flow_shift=shift, sampler=sampler)
        timesteps = set_schedule(scheduler, steps, sigmas=sigmas, native=self.native_flow_schedule)
        latents = sample(self.model, layout, latents, clean, branches, scheduler, timesteps, guidance,
                         guidance_interval=guidance_interval, raw_action_dim=emb.raw_dim, callback=callback,
                         progress=progress)
        predicted = None if mode == "forward_dynamics" else latents.actions[:, : emb.raw_dim].float().cpu()
        if predicted is not None and stats is not None:
            predicted = torch.from_numpy(denormalize(predicted.numpy(), stats))
        del branches, noise, scheduler  # free the prompts' und caches before the VAE decode's peak
        return self.vae.decode(latents.vision), latents.vision.float().cpu(), predicted
