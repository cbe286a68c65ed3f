"""Images and videos: request -> a resolved `Generator.resolve` request (every rule is the Generator's; the server
adds only its limits and the API's own fields), results -> files, bytes and job bodies.

Compute limit (`max_job_seconds`). The cost of a request is estimated from the checkpoint's own speed on this device,
measured once by two short timed runs (`CostModel.calibrate`, on the first request that needs it) and scaled by the
request's size:

    seconds = runs x steps x (c + k x branches x F(N)) + d x decoded pixels + p
    F(N)    = 2 P N + 4 L D N^2      (per branch: gen-pathway matmuls, and attention of the N gen tokens)

N is the generation tokens of one branch (vision patches, sound latents, action steps), P the parameters a gen
token passes through (about half the transformer), L x D layers x hidden width; c is the per-step overhead, k
seconds per FLOP, d seconds per decoded pixel and p the fixed preparation time, all measured (pico on one CPU core:
calibration 1.8 s; its native 320x192 x 33 x 20-step run estimated 12.8 s, measured 15.1 s; 720p x 97 frames
estimated 2,400 s). Text tokens are left out (the prompt is capped by max_prompt_tokens).
"""

from __future__ import annotations

import base64
import io
import math
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import spec
from ..actions import ActionError, get_embodiment
from ..fileio import atomic_write
from .errors import APIError, from_value_error
from .media_policy import refuse_if, sniff_kind
from .schemas import ExtraParams, ImageGenerationRequest, VideoRequest, parse_size

# Generator argument -> the API parameter a refusal names.
PARAMS = {"image": "input_reference", "video": "input_reference", "enable_sound": "generate_sound",
          "resolution": "size", "aspect_ratio": "size", "action_mode": "extra_params.action_mode",
          "embodiment": "extra_params.domain_name", "actions": "extra_params.action",
          "action_chunk_size": "extra_params.action_chunk_size",
          "condition_frame_indexes": "extra_params.condition_frame_indexes_vision",
          "condition_video_keep": "extra_params.condition_video_keep",
          "use_system_prompt": "extra_params.use_system_prompt"}


def _need_generator(state):
    if state.generator is None:
        raise APIError(400, "this checkpoint has no generator (it serves chat only)", code="unsupported")
    return state.generator


def frames_for_seconds(seconds: float, fps: float) -> int:
    """`seconds` of video at `fps` -> a frame count the model takes: at least seconds x fps, rounded up to 4k + 1."""
    # a vanishing duration (the schema only asks seconds > 0) is the shortest clip, not zero frames
    return max(spec.MIN_FRAMES, spec.round_frames(max(1, math.ceil(seconds * fps - 1e-9))))


def resolve(state, kwargs: dict, renamed: dict | None = None):
    """`Generator.resolve(**kwargs)` -> its GenRequest; a refusal becomes a 400 naming the API parameter."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # off-table sizes and untrained settings are allowed; the CLI warns
            return state.generator.resolve(**kwargs)
    except ValueError as e:
        field = getattr(e, "field", None)
        param = {**PARAMS, **(renamed or {})}.get(field, field)
        raise APIError(400, str(e).splitlines()[0], param=param, code=getattr(e, "code", "invalid_value")) from None


def check_limits(state, req, seconds_given: bool = False) -> None:
    """This server's limits on a resolved request (the defaults it filled in included)."""
    cfg = state.config
    if req.width is not None and req.width * req.height > cfg.max_pixels:
        raise APIError(400, f"size {req.width}x{req.height} is above this server's limit of {cfg.max_pixels} pixels; "
                            "give a smaller size", param="size", code="too_many_pixels")
    if req.is_action:
        from ..action_modes import CANVASES

        if max(h * w for h, w in CANVASES[req.tier].values()) > cfg.max_pixels:
            raise APIError(400, f"size={req.tier}p is above this server's limit of {cfg.max_pixels} pixels",
                           param="size", code="too_many_pixels")
    if req.total_frames > cfg.max_frames:
        raise APIError(400, f"num_frames={req.total_frames} is above this server's limit of {cfg.max_frames}",
                       param="seconds" if seconds_given else "num_frames", code="too_many_frames")
    if req.steps > cfg.max_steps:
        raise APIError(400, f"num_inference_steps={req.steps} is above this server's limit of {cfg.max_steps}",
                       param="num_inference_steps", code="too_many_steps")
    limit = getattr(cfg, "max_job_seconds", None)
    if limit:
        model = cost_model(state)
        estimate = model.estimate(state.generator.workload(req))
        if estimate > limit:
            w = state.generator.workload(req)
            raise APIError(400, f"this request would take about {estimate:,.0f} s on this server ({w['tokens']:,} "
                                f"tokens x {w['steps']} steps x {w['branches']} branches x {w['runs']} runs, "
                                f"{w['decode_pixels'] / 1e6:,.1f} Mpixels decoded), above its limit of {limit:g} s "
                                "(--max-job-seconds); ask for fewer frames, a smaller size or fewer steps",
                           param=None, code="job_too_long")


def _prompt(state, text: str, max_sequence_length: int | None, param: str = "prompt") -> str:
    tok = state.generator.tokenizer
    ids = tok.encode(text, add_special_tokens=False)
    if max_sequence_length is not None and len(ids) > max_sequence_length:  # truncated, as text encoders do
        ids = ids[:max_sequence_length]
        text = tok.decode(ids)
    if len(ids) > state.config.max_prompt_tokens:
        raise APIError(400, f"{param} has {len(ids)} tokens, more than this server's limit of "
                            f"{state.config.max_prompt_tokens}", param=param, code="prompt_too_long")
    return text


def _explicit_size_limit(state, width, height) -> None:
    """A given size above the pixel limit is refused as such, before the resolver judges the size itself."""
    if width is not None and height is not None and width * height > state.config.max_pixels:
        raise APIError(400, f"size {width}x{height} is above this server's limit of {state.config.max_pixels} "
                            "pixels", param="size", code="too_many_pixels")


# ------------------------------------------------------------------------------------------------ compute estimate


@dataclass
class CostModel:
    """seconds = runs x steps x (step_s + flop_s x branches x F(N)) + pixel_s x decoded pixels + fixed_s."""

    params: float  # P: parameters one gen token passes through
    attention: float  # 4 L D
    step_s: float = 0.0
    flop_s: float = 0.0
    pixel_s: float = 0.0
    fixed_s: float = 0.0

    @classmethod
    def for_generator(cls, generator) -> "CostModel":
        cfg = generator.model.config
        total = sum(p.numel() for p in generator.model.parameters())
        return cls(params=total / 2, attention=4.0 * cfg.num_hidden_layers * cfg.hidden_size)

    def flops(self, tokens: int) -> float:
        return 2.0 * self.params * tokens + self.attention * tokens * tokens

    def estimate(self, w: dict) -> float:
        per_step = self.step_s + self.flop_s * w["branches"] * self.flops(w["tokens"])
        return w["runs"] * w["steps"] * per_step + self.pixel_s * w["decode_pixels"] + self.fixed_s

    def calibrate(self, generator, repeat: int = 2) -> "CostModel":
        """Time two short text-to-video runs of the checkpoint on its device (the fastest of `repeat` each) and fit
        the step overhead, the seconds per FLOP, per decoded pixel and the fixed part."""
        points = []
        for height, width, frames in ((64, 64, 5), (128, 128, 9)):
            best = None
            for _ in range(repeat):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    req = generator.resolve("calibration", num_frames=frames, height=height, width=width,
                                            num_inference_steps=2, guidance_scale=2.0, seed=0, progress=False)
                t = generator.run(req).timings
                if best is None or t["total_s"] < best[0]["total_s"]:
                    best = (t, generator.workload(req))
            points.append(best)
        (t1, w1), (t2, w2) = points
        s1, s2 = t1["denoise_s"] / w1["steps"], t2["denoise_s"] / w2["steps"]
        f1, f2 = (w["branches"] * self.flops(w["tokens"]) for w in (w1, w2))
        self.flop_s = max((s2 - s1) / (f2 - f1), 0.0) if f2 > f1 else 0.0
        if self.flop_s == 0.0:  # noise hid the growth: charge the larger run's step time wholly to its FLOPs
            self.flop_s = s2 / f2
        self.step_s = max(s1 - self.flop_s * f1, 0.0)
        self.pixel_s = t2["decode_s"] / w2["decode_pixels"]
        self.fixed_s = max(t1["prepare_s"], t2["prepare_s"])
        return self


_COST_LOCK = threading.Lock()


def cost_model(state) -> CostModel:
    """The server's cost model, calibrated on the first request that needs it (before any job of this server runs:
    every generation request passes here first)."""
    with _COST_LOCK:
        model = getattr(state, "cost_model", None)
        if model is None:
            started = time.perf_counter()
            model = CostModel.for_generator(state.generator).calibrate(state.generator)
            model.calibration_s = time.perf_counter() - started
            state.cost_model = model
        return model


# ------------------------------------------------------------------------------------------------ images


def image_kwargs(state, body: ImageGenerationRequest) -> list[dict[str, Any]]:
    _need_generator(state)
    state.check_model(body.model)
    if body.n > state.config.max_images:
        raise APIError(400, f"n={body.n} is above this server's limit of {state.config.max_images}", param="n")
    width, height = parse_size(body.size)
    _explicit_size_limit(state, width, height)
    extra = body.extra_args
    guard = state.request_guardrail(extra.guardrails if extra else None, "extra_args.guardrails")
    if guard is not None:  # before any model work: a refused request generates nothing
        refuse_if(guard.check_prompt(body.prompt, "image"), "prompt")
        refuse_if(guard.check_prompt(body.negative_prompt or "", "image"), "negative_prompt")
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    kwargs = dict(prompt=_prompt(state, body.prompt, None), negative_prompt=body.negative_prompt, num_frames=1,
                  width=width, height=height, num_inference_steps=body.num_inference_steps,
                  guidance_scale=body.guidance_scale, flow_shift=body.flow_shift, seed=seed)
    if extra is not None:
        kwargs.update(use_resolution_template=extra.use_resolution_template,
                      use_system_prompt=extra.use_system_prompt)
    req = resolve(state, {k: v for k, v in kwargs.items() if v is not None})
    check_limits(state, req)
    base = req.as_kwargs()
    return [dict(base, seed=seed + i) for i in range(body.n)]


def encode_image(result, fmt: str) -> str:
    buf = io.BytesIO()
    Image.fromarray(result.frames[0].numpy()).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------------------------ videos


def save_reference(state, data: bytes, folder: Path, param: str = "input_reference") -> tuple[str, Path]:
    """An uploaded conditioning file -> ('image' | 'video', path under `folder`), checked and written atomically."""
    kind = sniff_kind(data[:16])
    if kind is None:
        raise APIError(400, "input_reference: not a JPG / PNG / WEBP image or an MP4 video", param=param,
                       code="invalid_media")
    if kind == "image":
        state.policy.check_image(data, param)
        path = folder / "input.img"
        atomic_write(path, data)
    else:
        path = folder / "input.mp4"
        atomic_write(path, data)
        state.policy.check_video(path, param)
    return kind, path


def _actions(state, extra: ExtraParams) -> tuple[dict[str, Any], dict[str, str]]:
    """The action fields of extra_params -> (generate arguments, {argument: API parameter} for refusals)."""
    given = {k for k in ("domain_name", "raw_action_dim", "action_chunk_size", "action", "action_path")
             if getattr(extra, k) is not None}
    if extra.action_mode is None:
        if given:
            name = sorted(given)[0]
            raise APIError(400, f"extra_params.{name} needs extra_params.action_mode", param=f"extra_params.{name}")
        return {}, {}
    if extra.domain_name is None:
        raise APIError(400, "extra_params.domain_name is required with an action_mode",
                       param="extra_params.domain_name", code="missing_field")
    try:
        emb = get_embodiment(extra.domain_name)
    except ActionError as e:
        raise from_value_error(e, "extra_params.domain_name") from None
    if extra.raw_action_dim is not None and extra.raw_action_dim != emb.raw_dim:
        raise APIError(400, f"extra_params.raw_action_dim={extra.raw_action_dim} does not match {emb.name} "
                            f"(raw dim {emb.raw_dim})", param="extra_params.raw_action_dim")
    out: dict[str, Any] = dict(action_mode=extra.action_mode, embodiment=emb.name,
                               action_chunk_size=extra.action_chunk_size)
    if extra.action is not None and extra.action_path is not None:
        raise APIError(400, "give extra_params.action or extra_params.action_path, not both",
                       param="extra_params.action")
    source, param = extra.action, "extra_params.action"
    if extra.action_path is not None:
        param = "extra_params.action_path"
        source = str(state.policy.local_path(extra.action_path, param))
    if source is not None:  # read and checked by the resolver, like every other argument
        try:
            out["actions"] = source if isinstance(source, str) else np.asarray(source, np.float64)
        except ValueError as e:
            raise from_value_error(e, param) from None
    return {k: v for k, v in out.items() if v is not None}, {"actions": param}


def _controls(state, extra: ExtraParams, reference, renamed: dict) -> tuple[list, dict]:
    """The transfer hints of extra_params (edge, blur, depth, seg, wsm) -> Control list. A hint without a
    control_path is computed from the input_reference video, which then guides only that (the target is not
    conditioned on it: the release's default of no conditional frames)."""
    from ..control import KINDS, Control

    controls = []
    for kind in KINDS:
        hint, param = getattr(extra, kind), f"extra_params.{kind}"
        if hint is None or hint is False:
            continue
        path = hint if isinstance(hint, str) else None if hint is True else hint.control_path
        weight = 1.0 if isinstance(hint, (bool, str)) or hint.control_weight is None else hint.control_weight
        preset = getattr(hint, "preset_edge_threshold", None) or getattr(hint, "preset_blur_strength", None)
        if path is not None:
            controls.append(Control(kind, video=str(state.policy.local_path(path, f"{param}.control_path")),
                                    weight=weight, preset=preset))
            continue
        if kind not in ("edge", "blur"):
            raise APIError(400, f"{param}: a {kind} map cannot be computed here; give its control_path",
                           param=param, code="missing_field")
        if reference is None or reference[0] != "video":
            raise APIError(400, f"{param}: no control_path, so the {kind} map is computed from the input_reference "
                                "video; send one", param=param, code="missing_field")
        controls.append(Control(kind, source=str(reference[1]), weight=weight, preset=preset))
    names = {"controls": "extra_params." + controls[0].kind if len(controls) == 1 else "extra_params",
             "control_guidance": "extra_params.control_guidance"} if controls else {
        "control_guidance": "extra_params.control_guidance"}
    names["control_guidance_interval"] = "extra_params.control_guidance_interval"
    return controls, {**renamed, **names}


def _action_tier(size: str | None) -> str | None:
    """Action modes take a resolution tier: `size` may name it ("256p") or be one of the tier's table sizes."""
    if size is None:
        return None
    if size.lower() in spec.RESOLUTION_TIERS:
        return size.lower()
    w, h = parse_size(size)
    tier = next((t for t, table in spec.RESOLUTIONS.items() if (w, h) in table.values()), None)
    if tier is None:
        raise APIError(400, f"size={size!r}: action modes take a tier ({', '.join(spec.RESOLUTION_TIERS)}) or one "
                            "of its published sizes", param="size")
    return tier


def video_request(state, body: VideoRequest, reference: tuple[str, Path] | None):
    """A video request -> the Generator's resolved request (after this server's own checks and limits)."""
    _need_generator(state)
    state.check_model(body.model)
    extra = body.extra_params or ExtraParams()
    if body.seconds is not None and body.num_frames is not None:
        raise APIError(400, "give seconds or num_frames, not both", param="seconds")
    actions, renamed = _actions(state, extra)
    kind = reference[0] if reference else None
    if kind != "video":
        for name in ("condition_frame_indexes_vision", "condition_video_keep"):
            if getattr(extra, name) is not None:
                raise APIError(400, f"extra_params.{name} needs a video input_reference", param=f"extra_params.{name}")
    kwargs: dict[str, Any] = dict(
        prompt=body.prompt, negative_prompt=body.negative_prompt, fps=body.fps,
        num_inference_steps=body.num_inference_steps, guidance_scale=body.guidance_scale,
        flow_shift=body.flow_shift, seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        use_system_prompt=extra.use_system_prompt)
    if actions:
        for name in ("num_frames", "seconds", "generate_sound"):
            if getattr(body, name):
                raise APIError(400, f"{name}: action modes take their length from extra_params.action_chunk_size "
                                    f"and generate no sound", param=name, code="unsupported")
        for name in ("condition_frame_indexes_vision", "condition_video_keep", "use_resolution_template",
                     "use_duration_template"):
            if getattr(extra, name) is not None:  # action modes write their own caption and canvas
                raise APIError(400, f"extra_params.{name} is not used by action modes", param=f"extra_params.{name}",
                               code="unsupported")
        kwargs.update(actions, resolution=_action_tier(body.size))
    else:
        width, height = parse_size(body.size)
        _explicit_size_limit(state, width, height)
        if body.num_frames is not None and body.num_frames > state.config.max_frames:
            raise APIError(400, f"num_frames={body.num_frames} is above this server's limit of "
                                f"{state.config.max_frames}", param="num_frames", code="too_many_frames")
        kwargs.update(width=width, height=height, num_frames=body.num_frames, enable_sound=body.generate_sound,
                      condition_frame_indexes=extra.condition_frame_indexes_vision,
                      condition_video_keep=extra.condition_video_keep,
                      use_resolution_template=extra.use_resolution_template,
                      use_duration_template=extra.use_duration_template)
    controls, renamed = _controls(state, extra, reference, renamed)
    if controls:
        kwargs["controls"] = controls
    kwargs["control_guidance"] = extra.control_guidance
    kwargs["control_guidance_interval"] = extra.control_guidance_interval
    if reference is not None and not any(c.source is not None for c in controls):
        kwargs[kind] = str(reference[1])
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if body.seconds is not None and not actions:
        # seconds at the fps the clip is written with: the request's, else the checkpoint's native one
        fps = resolve(state, {**kwargs, "num_frames": spec.MIN_FRAMES}, renamed).fps
        kwargs["num_frames"] = frames_for_seconds(body.seconds, fps)
        renamed = {**renamed, "num_frames": "seconds"}
    req = resolve(state, kwargs, renamed)
    check_limits(state, req, seconds_given=body.seconds is not None)
    req.prompt = _prompt(state, req.prompt, body.max_sequence_length)
    return req


def action_body(state, result, kwargs: dict) -> dict | None:
    if result.actions is None:
        return None
    arr = result.actions.float().cpu().numpy().astype(np.float32)
    emb = get_embodiment(kwargs["embodiment"]) if kwargs.get("embodiment") else None
    return {"data": arr.tolist(), "shape": list(arr.shape), "dtype": "float32", "raw_action_dim": int(arr.shape[-1]),
            "domain_id": emb.domain_id if emb else None}


def video_guardrail(state, body: VideoRequest):
    """The guardrail of a video request (None: turned off by it, where the server allows that)."""
    return state.request_guardrail((body.extra_params or ExtraParams()).guardrails, "extra_params.guardrails")


def screen_video(state, body: VideoRequest) -> None:
    """Refuse a video request whose prompts a guardrail check blocks: before its upload is saved or a job made."""
    guard = video_guardrail(state, body)
    if guard is not None:
        refuse_if(guard.check_prompt(body.prompt, "video"), "prompt")
        refuse_if(guard.check_prompt(body.negative_prompt or "", "video"), "negative_prompt")


def save_outputs(state, result, kwargs: dict, folder: Path, guard=None) -> dict:
    """Write a job's outputs (atomically) -> the job's result record. `guard`: the request's guardrail, whose
    frame filters (face blur) run first."""
    if guard is not None:
        refuse_if(guard.check_output(result, "video"))
    T, H, W = (int(x) for x in result.frames.shape[:3]) if result.frames is not None else (0, 0, 0)
    out = {"num_frames": T, "width": W, "height": H, "fps": float(result.fps), "seed": kwargs.get("seed"),
           "mode": result.mode, "video": None}
    if T > 0 and kwargs.get("action_mode") != "inverse_dynamics":
        result.save(folder / "video.mp4")  # written beside its name and renamed into place
        out["video"] = "video.mp4"
    action = action_body(state, result, kwargs)
    if action is not None:
        result.save(folder / "action.json")
        out["action"] = action
    return out
