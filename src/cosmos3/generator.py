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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import control
from . import request as request_module
from .action_modes import chunk_actions
from .actions import ACTION_STATS_FILE, ActionStats, denormalize, get_embodiment, load_stats_file, normalize
from .checkpoint import CheckpointError, default_dtype, load_transformer, resolve_checkpoint
from .diffusion import (Latents, encode_branches, load_distilled_sigmas, load_scheduler_config, make_scheduler, sample,
                        set_schedule, with_noise)
from .media import read_image, video_frames, write_image, write_video
from .model import Cosmos3Omni
from .quant import apply_weights
from .request import GenRequest, read_native_defaults
from .sequence import GenLayout, branch_inputs, prompt_text
from .vae import SoundCodec, VideoVAE

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


def upsample_with(reasoner, prompt: str, seed: int | None = None) -> str:
    """`prompt` expanded by `reasoner` (greedy) into the release's structured JSON prompt; the prompt itself when
    the answer holds no JSON object. Generator.upsample_prompt and the tower split's und rank both call this."""
    answer = reasoner.chat([{"role": "user", "content": UPSAMPLE_INSTRUCTION.format(prompt=prompt)}],
                           max_tokens=1024, temperature=0.0, seed=seed).text
    structured = first_json_object(answer)
    if structured is None:
        warnings.warn("upsample_prompt: the reasoner's answer holds no JSON object; generating from the "
                      "original prompt", stacklevel=4)
        return prompt
    return json.dumps(structured)


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


@dataclass
class _Plan:
    """What one sampling run needs; the modes differ only in how these are built."""

    layout: GenLayout
    clean: Latents
    texts: list[str]  # the positive branch's text, then the negative's when guidance != 1
    is_image: bool
    raw_action_dim: int | None = None
    system_prompt: str | None = None  # in place of the mode's (transfer)
    state_tokens: int = 0  # leading clean action tokens holding the robot state


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
        self.guardrail = None  # a guardrails.Guardrail that generate() applies when a call does not choose one
        self.parallel = None  # parallel.Parallel: this process is one rank of a torchrun job (docs/SCALING.md)
        self.offloader = None  # offload.Offloader when from_pretrained(offload=...) keeps weights in host memory
        self._warned: set[str] = set()
        if vae.channels != model.config.latent_channel:
            raise CheckpointError(f"vae z_dim {vae.channels} does not match transformer latent_channel "
                                  f"{model.config.latent_channel}")

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, weights: str | None = None,
                        parallel=None, offload: str = "none", vae_tiling: bool = False) -> "Generator":
        """Load an official-layout checkpoint: transformer/, vae/, scheduler/, text_tokenizer/, sound_tokenizer/.
        `weights="int8"`: the towers' and lm_head's linears in int8 (quant.py); default: as loaded.
        `parallel` (parallel.init_parallel under torchrun): this rank's part of a parallel run, on its device.
        `offload` "layers" / "components": the weights stay in host memory and visit the device when used
        (offload.py; for GPUs smaller than the model).
        `vae_tiling`: frames larger than 384 px are encoded and decoded in overlapping tiles (vae_tiling.py): less
        memory, a small error at the seams (docs/MEMORY.md)."""
        from .offload import MODES as OFFLOAD_MODES
        from transformers import AutoTokenizer

        root = resolve_checkpoint(path)
        if not root.is_dir():
            raise CheckpointError(f"{root}: no such checkpoint directory")
        device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        if parallel is not None:
            device = parallel.device
        if offload not in OFFLOAD_MODES or (offload != "none" and parallel is not None):
            raise ValueError(f"offload: expected one of {OFFLOAD_MODES} (not with parallel), got {offload!r}")
        dtype = dtype or default_dtype(device)
        index = {}
        if (root / "model_index.json").is_file():
            index = json.loads((root / "model_index.json").read_text())
        load_on = device if offload == "none" else torch.device("cpu")  # offloaded weights live in host memory
        fp8 = "keep" if device.type == "cuda" else "auto"  # an fp8 checkpoint stays fp8 for a GPU (fp8.py)
        model = (apply_weights(load_transformer(root, dtype=dtype, device=load_on, fp8=fp8), weights)
                 if parallel is None else parallel.load_transformer(root, dtype, weights))
        vae_dtype = torch.float32 if device.type == "cpu" else dtype
        vae = VideoVAE.from_pretrained(root / "vae", device, vae_dtype, tiling=vae_tiling)
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
        gen.parallel = parallel
        if offload != "none":
            from .offload import offload_generator

            gen.offloader = offload_generator(gen, device, offload)
        return gen

    def upsample_prompt(self, prompt: str, seed: int | None = None) -> str:
        """Ask the reasoner of this checkpoint (its und pathway, shared with the generator, no second copy of the
        weights) to expand a short prompt into the release's structured JSON prompt."""
        if self.parallel is not None and self.parallel.mode == "tower":  # the und tower lives on the und rank
            return self.parallel.upsample_prompt(prompt, seed)
        if self._reasoner is None:
            from .reasoner import Reasoner

            if self.path is None:
                raise ValueError("upsample_prompt: needs a Generator loaded with from_pretrained (for its tokenizer)")
            self._reasoner = Reasoner.sharing(self.model, self.path, vision=False)
        return upsample_with(self._reasoner, prompt, seed)

    # -------------------------------------------------------------------------------------------- resolve

    def resolve(self, prompt: str = "", **request) -> GenRequest:
        """Fill in what a request leaves out and check everything, with no model work (request.resolve): a bad
        argument raises ValueError naming it (`.field`). Arguments are those of `generate`."""
        return request_module.resolve(self, prompt, **request)

    def workload(self, req: GenRequest) -> dict:
        """What sets a request's cost (tokens per branch, branches, steps, runs, decoded pixels): request.workload."""
        return request_module.workload(self, req)

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
                 step_cache: float | None = None, state=None, controls=None,
                 control_guidance: float | None = None,
                 control_guidance_interval: tuple[float, float] | None = None,
                 guardrails=None) -> GenerationResult:
        """`run(resolve(...))`: every argument is checked before any model work. `guardrails`: a Guardrail, True
        (the built-in one), False, or None (this Generator's `guardrail`, none unless set): the prompts are screened
        first (GuardrailBlocked, nothing generated), the upsampled prompt too, and the frames filtered."""
        arguments = {k: v for k, v in locals().items() if k not in ("self", "guardrails")}
        from .guardrails import resolve_guardrail

        guard = resolve_guardrail(guardrails, self.guardrail)
        if guard is not None:
            guard.screen(prompt, "prompt")
            guard.screen(negative_prompt, "negative_prompt")
        req = self.resolve(**arguments)
        if guard is None:
            return self.run(req)
        if req.upsample_prompt:  # the release screens the final prompt: upsample here, screen, then run
            req.prompt, req.upsample_prompt = self.upsample_prompt(req.prompt, seed=req.seed), False
            guard.screen(req.prompt, "prompt (upsampled)")
        result = self.run(req)
        result.frames = guard.filter_frames(result.frames)
        return result

    def run(self, req: GenRequest) -> GenerationResult:
        """Generate a resolved request. Every mode is one sampling run per chunk (`_sample`); they differ only in
        the plan: which tokens are clean, which noisy, and the prompt texts."""
        from tqdm.auto import tqdm

        started = time.perf_counter()
        if self.parallel is not None:
            req = self.parallel.same_request(req)
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
                if len(frames):  # the next chunk starts from the last frame (none when not decoded)
                    condition = (Image.fromarray(frames[-1].numpy()), None)
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
        if req.controls:
            layout, clean = self._with_controls(req, layout, clean)
        templates = dict(num_frames=T, fps=req.fps, height=H, width=W,
                         use_resolution_template=req.use_resolution_template,
                         use_duration_template=req.use_duration_template)
        texts = [prompt_text(prompt, negative=False, **templates)]
        if req.controls:
            texts[0] = control.emphasized(texts[0], req.controls)
        if req.guidance != 1.0:
            texts.append(prompt_text(req.negative_prompt or "", negative=True, **templates))
        return _Plan(layout, clean, texts, is_image=req.mode == "t2i",
                     system_prompt=control.SYSTEM_PROMPT_TRANSFER if req.controls else None)

    def _with_controls(self, req: GenRequest, layout: GenLayout, clean: Latents) -> tuple[GenLayout, Latents]:
        """Transfer: the control clips' latents go in front of the target's, clean, [C, (N + 1) T', H', W']."""
        encoded = [self.vae.encode(control.control_pixels(c, req.num_frames, req.height, req.width))
                   for c in req.controls]
        Tl = layout.latent_shape[1]
        clean = Latents(vision=torch.cat([*encoded, clean.vision], dim=1))
        noisy = torch.cat([torch.zeros(len(encoded) * Tl, dtype=torch.bool), layout.vision_noisy])
        layout = replace(layout, latent_shape=tuple(clean.vision.shape), vision_noisy=noisy,
                         controls=len(encoded), control_weights=tuple(control.normalized_weights(req.controls)),
                         control_guidance=req.control_guidance,
                         control_guidance_interval=req.control_guidance_interval)
        return layout, clean

    def _action_plan(self, req: GenRequest, prompt: str, image, video, clean_actions) -> _Plan:
        """forward_dynamics (first frame and actions clean), inverse_dynamics (every frame clean), policy (first
        frame clean) on the tier's canvas."""
        from .action_modes import action_caption, build_canvas

        emb, chunk, mode = req.action.embodiment, req.action.chunk, req.mode
        canvas = build_canvas(image, video, chunk + 1, req.tier)
        # Causal VAE: the first latent frame needs only the first pixel frame.
        pixels = canvas.pixels if mode == "inverse_dynamics" else canvas.pixels[:, :, :1]
        encoded = canvas.crop_latents(self.vae.encode(pixels), self.vae.spatial)
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
        state_tokens = 0
        if req.state is not None and mode == "policy":
            # The release's use_state (cosmos-framework DROIDLeRobotDataset, build_sequence_plan_from_mode): the
            # state row is prepended to the actions (chunk + 1 tokens, as many as video frames), kept clean, and the
            # action tokens start at video frame 0 (docs/ROBOTS.md).
            row = torch.zeros(1, width)
            row[0, : req.state.numel()] = req.state
            clean.actions = torch.cat([row, clean.actions])
            action_noisy = torch.cat([torch.zeros(1, dtype=torch.bool), action_noisy])
            state_tokens = 1
        layout = GenLayout(latent_shape=(C, Tl, h, w), vision_noisy=vision_noisy, fps=req.fps,
                           action_steps=chunk + state_tokens, action_noisy=action_noisy, domain_id=emb.domain_id,
                           action_first_frame=1 - state_tokens)
        # JSON unless the request (or the checkpoint's defaults) asks for the plain form; Policy-DROID: docs/ROBOTS.md
        caption_format = req.caption_format or self.defaults.get("caption_format")
        texts = [action_caption(prompt, emb, chunk + 1, req.fps, canvas.height, canvas.width, caption_format)]
        if req.guidance != 1.0:
            texts.append(req.negative_prompt or "")  # the action models take the negative prompt as it is
        return _Plan(layout, clean, texts, is_image=False, raw_action_dim=emb.raw_dim, state_tokens=state_tokens)

    # -------------------------------------------------------------------------------------------- sampling

    def _sample(self, plan: _Plan, req: GenRequest, generator: torch.Generator, timings: dict, since: float):
        """The one sampling path: noise (vision, sound, actions, in the reference's order, from one CPU generator),
        prompts, denoising, decoding -> (uint8 frames, vision latents, sound or predicted actions)."""
        clean, layout = plan.clean, plan.layout
        C, T, H, W = clean.vision.shape
        Tt = T // (layout.controls + 1)  # the target's frames: its noise is what the same seed draws without controls
        noise = Latents(vision=torch.randn((1, C, Tt, H, W), generator=generator)[0])
        if layout.controls:  # control frames are clean: their noise is never used
            noise.vision = torch.cat([torch.zeros(C, T - Tt, H, W), noise.vision], dim=1)
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
                                 use_system_prompt=req.use_system_prompt, system_prompt=plan.system_prompt)
                   for t in plan.texts]
        with torch.inference_mode():
            encode = encode_branches if self.parallel is None else self.parallel.encode_branches
            branches = encode(self.model, layout, prompts)
        scheduler = make_scheduler(self.scheduler_config, flow_shift=req.shift, sampler=req.sampler)
        timesteps = set_schedule(scheduler, req.steps, sigmas=req.sigmas, native=self.native_flow_schedule)
        denoising = time.perf_counter()
        counts: dict = {}
        latents = sample(self.model, layout, latents, clean, branches, scheduler, timesteps, req.guidance,
                         guidance_interval=req.guidance_interval, raw_action_dim=plan.raw_action_dim,
                         callback=req.callback, progress=req.progress, step_cache=req.step_cache, stats=counts,
                         parallel=self.parallel)
        for key, value in counts.items():  # transformer evaluations: forwards run, skipped, CFG rows run
            timings[key] = timings.get(key, 0) + value
        decoding = time.perf_counter()
        del branches, noise, scheduler  # the prompts' und caches: free them before the VAE decode's peak
        if layout.controls:  # the output is the target clip, the last T' latent frames
            latents.vision = latents.vision[:, -(layout.latent_shape[1] // (layout.controls + 1)):]
        frames = self.vae.decode(latents.vision) if req.decode else torch.zeros(0, 1, 1, 3, dtype=torch.uint8)
        extra = None
        if latents.sound is not None:
            extra = self.sound.decode(latents.sound)
        elif plan.raw_action_dim is not None and req.mode != "forward_dynamics":
            extra = latents.actions[plan.state_tokens:, : plan.raw_action_dim].float().cpu()
            stats = self.action_stats.get(req.action.embodiment.name)
            if stats is not None:
                extra = torch.from_numpy(denormalize(extra.numpy(), stats))
        done = time.perf_counter()
        timings["prepare_s"] += denoising - since
        timings["denoise_s"] += decoding - denoising
        timings["decode_s"] += done - decoding
        return frames, latents.vision.float().cpu(), extra
