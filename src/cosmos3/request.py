"""Generation requests: what a request means, with no model work. `resolve(gen, **request) -> GenRequest` fills in
what a request leaves out (the checkpoint's native settings from `cosmos3_defaults.json`, the embodiment's, the
release's defaults) and checks every argument, raising `RequestError` naming it; `Generator.run` then does the work.
The server validates through the same function, so the CLI, Python and HTTP accept and refuse exactly the same
requests.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import spec
from .action_modes import ACTION_DEFAULTS
from .checkpoint import CheckpointError
from .diffusion import SAMPLERS, distilled_settings
from .model.heads import patch_grid

# DESIGN 2.6 defaults per mode: (steps, guidance, flow shift)
VIDEO_DEFAULTS = (35, 6.0, 10.0)
IMAGE_DEFAULTS = (50, 4.0, 3.0)
MAX_GUIDANCE = 20.0
WARN_GUIDANCE = 7.0


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
    state: torch.Tensor | None = None  # [state_dim] robot state of a variant that takes it (policy_droid)
    decode: bool = True  # False: skip the VAE decode (a policy server needs the actions only; frames empty)
    caption_format: str | None = None  # action caption: json | plain (embodiments.CAPTION_FORMATS); None: json
    # transfer (control.py): the active controls in the release's order, and the control guidance
    controls: tuple = ()
    control_guidance: float = 1.0
    control_guidance_interval: tuple[float, float] | None = None  # timesteps (0-1000); None: every step

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
                      state=self.state,
                      action_chunk_size=self.action.chunk, resolution=f"{self.tier}p")
        else:
            kw.update(num_frames=self.num_frames, height=self.height, width=self.width,
                      enable_sound=self.enable_sound, condition_frame_indexes=self.condition_frame_indexes,
                      condition_video_keep=self.condition_video_keep,
                      use_resolution_template=self.use_resolution_template,
                      use_duration_template=self.use_duration_template)
            if self.controls:
                kw.update(controls=list(self.controls), control_guidance=self.control_guidance,
                          control_guidance_interval=self.control_guidance_interval)
        return {k: v for k, v in kw.items() if v is not None}


# ------------------------------------------------------------------------------------------------ resolve


def _native(gen, value, key: str):
    """An argument as given, else the checkpoint's native setting, else the release's default."""
    return native_value(gen.defaults, key) if value is None else value


def resolve(gen, prompt: str = "", negative_prompt: str | None = None, image=None, video=None,
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
            control_guidance_interval: tuple[float, float] | None = None) -> GenRequest:
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
    if guidance_scale is None and gen.distilled_sigmas is None:
        from .control import default_guidance

        guidance_scale = default_guidance(controls)  # one control: the release's tuned text guidance for its kind
    if gen.distilled_sigmas is not None and sigmas is None:
        guidance_scale = distilled_settings(gen.distilled_sigmas, guidance_scale, num_inference_steps,
                                            flow_shift)
        sigmas, flow_shift, num_inference_steps = list(gen.distilled_sigmas), None, None
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
                  use_system_prompt=gen.default_use_system_prompt if use_system_prompt is None
                  else bool(use_system_prompt))
    if action_mode is not None or embodiment is not None or actions is not None or action_chunk_size is not None:
        req = _resolve_action(gen, common, action_mode, embodiment, actions, action_chunk_size, fps, resolution,
                                   height, width, num_frames, aspect_ratio, condition_frame_indexes, enable_sound,
                                   num_inference_steps, guidance_scale, flow_shift)
        req.state = _check_state(req.action.embodiment, state)
    else:
        if state is not None:
            raise RequestError("state", "the robot state goes with action_mode='policy' on an embodiment that "
                                        "takes it (policy_droid)")
        req = _resolve_video(gen, common, num_frames, fps, height, width, resolution, aspect_ratio,
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
                      stacklevel=4)
    _resolve_controls(req, controls, control_guidance, control_guidance_interval)
    if req.seed is None and generator is None:
        req.seed = int(torch.seed() % 2**63)  # drawn here, so the resolved request reproduces its output
    trained = gen.defaults.get("modes")  # a checkpoint may list the modes it was trained for
    if trained and req.mode not in trained:
        req.warnings += (f"{gen.name} was not trained for {req.mode} (it learnt {', '.join(trained)}): "
                         "expect poor results",)
    for message in req.warnings:
        if message not in gen._warned:
            gen._warned.add(message)
            warnings.warn(message, stacklevel=4)
    return req


def _resolve_controls(req: GenRequest, controls, control_guidance, interval) -> None:
    """Transfer: check the controls (control.py) against the resolved output (frames, size; no decoding)."""
    from . import control

    given = controls is not None and not (isinstance(controls, (list, tuple)) and len(controls) == 0)
    if not given:
        for name, value in (("control_guidance", control_guidance), ("control_guidance_interval", interval)):
            if value is not None:
                raise RequestError(name, "needs controls (control videos to guide by)")
        return
    if interval is not None:
        if not (isinstance(interval, (list, tuple)) and len(interval) == 2
                and all(_number(x, 0.0, 1000.0) for x in interval) and interval[0] <= interval[1]):
            raise RequestError("control_guidance_interval", f"expected (low, high) timesteps, 0 <= low <= high <= "
                                                            f"1000, got {interval!r}")
        req.control_guidance_interval = (float(interval[0]), float(interval[1]))
    for name, refused, message in (
            ("action_mode", req.is_action, "controls (video transfer) cannot be combined with an action mode"),
            ("enable_sound", req.enable_sound, "controls (video transfer) make a video without sound"),
            ("num_frames", req.mode == "t2i", "controls guide a video: num_frames must be > 1")):
        if refused:
            raise RequestError(name, message)
    req.controls, req.control_guidance = control.check_controls(controls, control_guidance)
    for c in req.controls:
        control.probe(c, req.num_frames, req.height, req.width)


def _check_state(emb, state):
    """The robot state of a variant that takes it (actions.STATE_DIMS): float [width]; None elsewhere."""
    from .actions.embodiments import STATE_DIMS

    width = STATE_DIMS.get(emb.name)
    if width is None:
        if state is not None:
            raise RequestError("state", f"{emb.name} takes no robot state (only {', '.join(STATE_DIMS)})")
        return None
    if state is None:
        raise RequestError("state", f"{emb.name} needs the robot state ({width} values: joint positions and "
                                    "gripper)")
    try:
        values = torch.as_tensor(np.asarray(state, dtype=np.float32)).reshape(-1)
    except (TypeError, ValueError):
        raise RequestError("state", f"expected {width} numbers, got {type(state).__name__}") from None
    if values.numel() != width or not torch.isfinite(values).all():
        raise RequestError("state", f"expected {width} finite numbers, got {tuple(np.shape(state))}")
    return values


def _resolve_video(gen, common, num_frames, fps, height, width, resolution, aspect_ratio, steps, guidance,
                   shift, enable_sound, condition_frame_indexes, condition_video_keep, use_resolution_template,
                   use_duration_template) -> GenRequest:
    if height is None and width is None:
        resolution = _native(gen, resolution, "resolution")
        if num_frames != 1 and aspect_ratio is None:
            aspect_ratio = native_value(gen.defaults, "aspect_ratio")
    num_frames = _native(gen, num_frames, "num_frames")
    fps = _native(gen, fps, "fps")
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
        if gen.sound is None or not gen.model.config.sound_gen:
            raise RequestError("enable_sound", "this checkpoint does not generate sound (no sound_tokenizer/ or "
                                               "no sound heads)", code="unsupported")
        if settings.is_image:
            raise RequestError("enable_sound", "sound goes with video (num_frames > 1), not with an image")
    mode = "t2i" if settings.is_image else "v2v" if video is not None else "i2v" if image is not None else "t2v"
    indexes = None
    if mode == "v2v":
        Tl = gen.vae.latent_shape(settings.num_frames, settings.height, settings.width)[1]
        given = condition_frame_indexes if condition_frame_indexes is not None else (0, 1)
        indexes = tuple(sorted(set(given))) if isinstance(given, (list, tuple)) else ()
        if not indexes or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < Tl for i in indexes):
            raise RequestError("condition_frame_indexes", f"expected latent frame indexes in [0, {Tl}), got "
                                                          f"{condition_frame_indexes!r}")
    kind = "image_" if settings.is_image else ""
    if common["sigmas"] is not None:
        shift = 1.0
    elif shift is None:
        shift = native_value(gen.defaults, kind + "flow_shift")
    notes = []
    native_tier = gen.defaults.get("resolution")
    if native_tier and settings.resolution != spec.resolve_settings(resolution=native_tier).resolution:
        notes.append(f"{gen.name} was trained at {native_tier}; {settings.width}x{settings.height} is outside "
                     "its training (expect poor results)")
    return GenRequest(
        mode=mode, num_frames=settings.num_frames, fps=float(settings.fps), height=settings.height,
        width=settings.width, shift=shift, enable_sound=bool(enable_sound), condition_frame_indexes=indexes,
        condition_video_keep=condition_video_keep, use_resolution_template=bool(use_resolution_template),
        use_duration_template=bool(use_duration_template),
        steps=_native(gen, steps, kind + "num_inference_steps"),
        guidance=_native(gen, guidance, kind + "guidance_scale"),
        warnings=tuple(notes), **common)


def _resolve_action(gen, common, action_mode, embodiment, actions, action_chunk_size, fps, resolution, height,
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
    if not gen.model.config.action_gen:
        raise RequestError("action_mode", "this checkpoint has no action heads (action_gen is false)",
                           code="unsupported")
    resolution = _native(gen, resolution, "action_resolution")
    fps = gen.defaults.get("fps") if fps is None else fps  # else the embodiment's
    chunk = gen.defaults.get("action_chunk_size") if action_chunk_size is None else action_chunk_size
    request = resolve_action_request(action_mode, embodiment, actions, chunk, fps, common["image"],
                                     common["video"])
    emb = request.embodiment
    if emb.domain_id >= gen.model.config.num_embodiment_domains:
        raise RequestError("embodiment", f"{emb.name} has domain id {emb.domain_id}, but this checkpoint has "
                                         f"action heads for {gen.model.config.num_embodiment_domains} domains only",
                           code="unsupported")
    if emb.raw_dim > gen.model.config.action_dim:
        raise RequestError("embodiment", f"{emb.name} actions are {emb.raw_dim} wide, wider than this "
                                         f"checkpoint's action_dim {gen.model.config.action_dim}",
                           code="unsupported")
    tier = tier_of(resolution)
    notes = []
    if gen.action_stats and emb.name not in gen.action_stats:
        notes.append(f"{gen.name} has no action statistics for embodiment {emb.name} (it learnt "
                     f"{', '.join(sorted(gen.action_stats))}): its actions go in and out raw (expect poor "
                     "results)")
    native_tier = gen.defaults.get("resolution")
    if native_tier and tier != tier_of(native_tier):
        notes.append(f"{gen.name} was trained at {native_tier}; the {tier}p tier is outside its training "
                     "(expect poor results)")
    if common["sigmas"] is not None:
        shift = 1.0
    elif shift is None:
        shift = native_value(gen.defaults, "action_flow_shift")
    return GenRequest(
        mode=request.mode, num_frames=request.chunk + 1, fps=request.fps, shift=shift, tier=tier, action=request,
        actions_arg=actions, steps=_native(gen, steps, "action_num_inference_steps"),
        guidance=_native(gen, guidance, "action_guidance_scale"), warnings=tuple(notes), **common)


def workload(gen, req: GenRequest) -> dict:
    """What sets a request's cost: generation tokens per CFG branch, branches, steps, sampling runs, and pixels
    decoded (an action canvas counts as its tier's largest; the input's aspect picks it at run time)."""
    from .action_modes import CANVASES

    if req.is_action:
        H, W = max(CANVASES[req.tier].values(), key=lambda hw: hw[0] * hw[1])
    else:
        H, W = req.height, req.width
    _, Tl, Hl, Wl = gen.vae.latent_shape(req.num_frames, H, W)
    rows, cols = patch_grid(Hl, Wl, gen.model.config.latent_patch_size)
    tokens = Tl * rows * cols
    if req.enable_sound:
        tokens += gen.sound.latent_count(req.num_frames, req.fps)
    if req.is_action:
        tokens += req.action.chunk
    tokens *= len(req.controls) + 1  # control clips are as long as the target
    return dict(tokens=tokens, branches=2 if req.guidance != 1.0 else 1, steps=req.steps, runs=req.chunks,
                decode_pixels=req.chunks * req.num_frames * H * W)
