"""Images and videos: request -> `Generator.generate` keyword arguments (validated before queueing), results ->
files, bytes and job bodies."""

from __future__ import annotations

import base64
import io
import math
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import spec
from ..actions import ActionError, get_embodiment, load_actions
from .errors import APIError, from_value_error
from .jobs import atomic_write_bytes
from .media_policy import refuse_if, sniff_kind
from .schemas import ExtraParams, ImageGenerationRequest, VideoRequest, parse_size


def _need_generator(state):
    if state.generator is None:
        raise APIError(400, "this checkpoint has no generator (it serves chat only)", code="unsupported")
    return state.generator


def _check_settings(state, width, height, num_frames, fps, param_prefix: str = "") -> None:
    cfg = state.config
    if width is not None and width * height > cfg.max_pixels:
        raise APIError(400, f"size {width}x{height} is above this server's limit of {cfg.max_pixels} pixels",
                       param="size", code="too_many_pixels")
    if num_frames is not None and num_frames > cfg.max_frames:
        raise APIError(400, f"num_frames={num_frames} is above this server's limit of {cfg.max_frames}",
                       param="num_frames", code="too_many_frames")
    # what the generator will fill in (the checkpoint's native settings, e.g. pico's), so the limits see that size
    from ..generator import native_video_settings

    native = getattr(state.generator, "defaults", None) or {}
    tier, aspect, num_frames, fps = native_video_settings(native, None, None, height, width, num_frames, fps)
    if num_frames == 1 and width is None:
        aspect = "1:1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # off-table sizes are allowed; the warning is for the CLI
            settings = spec.resolve_settings(height=height, width=width, num_frames=num_frames, fps=fps,
                                             resolution=tier, aspect_ratio=aspect)
    except spec.SettingsError as e:
        raise APIError(400, str(e), param=param_prefix + e.field, code="invalid_value") from None
    if settings.width * settings.height > cfg.max_pixels:
        raise APIError(400, f"the default size {settings.width}x{settings.height} is above this server's limit of "
                            f"{cfg.max_pixels} pixels; give a smaller size", param="size", code="too_many_pixels")


def _check_steps(state, steps: int | None) -> None:
    if steps is not None and steps > state.config.max_steps:
        raise APIError(400, f"num_inference_steps={steps} is above this server's limit of {state.config.max_steps}",
                       param="num_inference_steps", code="too_many_steps")


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


# ------------------------------------------------------------------------------------------------ images


def image_kwargs(state, body: ImageGenerationRequest) -> list[dict[str, Any]]:
    _need_generator(state)
    state.check_model(body.model)
    if body.n > state.config.max_images:
        raise APIError(400, f"n={body.n} is above this server's limit of {state.config.max_images}", param="n")
    width, height = parse_size(body.size)
    _check_settings(state, width, height, 1, None)
    _check_steps(state, body.num_inference_steps)
    extra = body.extra_args
    if not (extra and extra.guardrails is False):
        refuse_if(state.guardrail.check_prompt(body.prompt, "image"), "prompt")
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    base = dict(prompt=_prompt(state, body.prompt, None), negative_prompt=body.negative_prompt, num_frames=1,
                width=width, height=height, num_inference_steps=body.num_inference_steps,
                guidance_scale=body.guidance_scale, flow_shift=body.flow_shift)
    if extra is not None:
        base.update(use_resolution_template=extra.use_resolution_template, use_system_prompt=extra.use_system_prompt)
    base = {k: v for k, v in base.items() if v is not None}
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
        atomic_write_bytes(path, data)
    else:
        path = folder / "input.mp4"
        atomic_write_bytes(path, data)
        state.policy.check_video(path, param)
    return kind, path


def _actions(state, extra: ExtraParams) -> dict[str, Any]:
    given = {k for k in ("domain_name", "raw_action_dim", "action_chunk_size", "action", "action_path")
             if getattr(extra, k) is not None}
    if extra.action_mode is None:
        if given:
            name = sorted(given)[0]
            raise APIError(400, f"extra_params.{name} needs extra_params.action_mode", param=f"extra_params.{name}")
        return {}
    if state.generator.model.config.action_gen is False:
        raise APIError(400, "this checkpoint does not generate actions", param="extra_params.action_mode",
                       code="unsupported")
    if extra.domain_name is None:
        raise APIError(400, "extra_params.domain_name is required with an action_mode",
                       param="extra_params.domain_name", code="missing_field")
    try:
        emb = get_embodiment(extra.domain_name)
    except ActionError as e:
        raise from_value_error(e, "extra_params.domain_name") from None
    mcfg = state.generator.model.config
    if emb.domain_id >= mcfg.num_embodiment_domains or emb.raw_dim > mcfg.action_dim:
        raise APIError(400, f"extra_params.domain_name: this checkpoint has no action head for {emb.name}",
                       param="extra_params.domain_name", code="unsupported")
    if extra.raw_action_dim is not None and extra.raw_action_dim != emb.raw_dim:
        raise APIError(400, f"extra_params.raw_action_dim={extra.raw_action_dim} does not match {emb.name} "
                            f"(raw dim {emb.raw_dim})", param="extra_params.raw_action_dim")
    out: dict[str, Any] = dict(action_mode=extra.action_mode, embodiment=emb.name,
                               action_chunk_size=extra.action_chunk_size)
    if extra.action is not None and extra.action_path is not None:
        raise APIError(400, "give extra_params.action or extra_params.action_path, not both",
                       param="extra_params.action")
    source = extra.action
    param = "extra_params.action"
    if extra.action_path is not None:
        param = "extra_params.action_path"
        source = str(state.policy.local_path(extra.action_path, param))
    if source is not None:
        try:
            out["actions"] = load_actions(source if isinstance(source, str) else np.asarray(source, np.float64),
                                          emb)
        except (ActionError, ValueError) as e:
            raise from_value_error(e, param) from None
    return {k: v for k, v in out.items() if v is not None}


def _action_tier(state, size: str | None) -> str | None:
    """Action modes take a resolution tier: `size` may name it ("256p") or be one of the tier's table sizes."""
    if size is None:
        return None
    if size.lower() in spec.RESOLUTION_TIERS:
        tier = size.lower()
    else:
        w, h = parse_size(size)
        tier = next((t for t, table in spec.RESOLUTIONS.items() if (w, h) in table.values()), None)
        if tier is None:
            raise APIError(400, f"size={size!r}: action modes take a tier ({', '.join(spec.RESOLUTION_TIERS)}) or "
                                "one of its published sizes", param="size")
    if max(w * h for w, h in spec.RESOLUTIONS[tier].values()) > state.config.max_pixels:
        raise APIError(400, f"size={size!r} is above this server's limit of {state.config.max_pixels} pixels",
                       param="size", code="too_many_pixels")
    return tier


def video_kwargs(state, body: VideoRequest, reference: tuple[str, Path] | None) -> dict[str, Any]:
    """Validated keyword arguments for Generator.generate (plus 'seed', always set, so a job can be reproduced)."""
    _need_generator(state)
    state.check_model(body.model)
    extra = body.extra_params or ExtraParams()
    _check_steps(state, body.num_inference_steps)
    fps = body.fps
    if fps is not None and float(fps).is_integer():
        fps = int(fps)
    num_frames = body.num_frames
    if body.seconds is not None:
        if num_frames is not None:
            raise APIError(400, "give seconds or num_frames, not both", param="seconds")
        num_frames = max(spec.MIN_FRAMES, math.ceil(body.seconds * (fps or spec.DEFAULT_FPS)))
    actions = _actions(state, extra)
    resolution = width = height = None
    if not actions:
        width, height = parse_size(body.size)
        _check_settings(state, width, height, num_frames, fps)
    else:
        resolution = _action_tier(state, body.size)  # the canvas comes from the tier and the input
        for name in ("num_frames", "seconds", "generate_sound"):
            if getattr(body, name):
                raise APIError(400, f"{name}: action modes take their length from extra_params.action_chunk_size "
                                    f"and generate no sound", param=name, code="unsupported")
        for name in ("condition_frame_indexes_vision", "condition_video_keep", "use_resolution_template",
                     "use_duration_template"):
            if getattr(extra, name) is not None:  # action modes write their own caption and canvas
                raise APIError(400, f"extra_params.{name} is not used by action modes", param=f"extra_params.{name}",
                               code="unsupported")
        if fps is not None and not 1 <= fps <= 120:
            raise APIError(400, f"fps={fps}: action modes take 1 to 120", param="fps")
    if body.generate_sound and state.generator.sound is None:
        raise APIError(400, "generate_sound: this checkpoint does not generate sound", param="generate_sound",
                       code="unsupported")
    kind = reference[0] if reference else None
    if kind != "video":
        for name in ("condition_frame_indexes_vision", "condition_video_keep"):
            if getattr(extra, name) is not None:
                raise APIError(400, f"extra_params.{name} needs a video input_reference", param=f"extra_params.{name}")
    if extra.guardrails is not False:
        refuse_if(state.guardrail.check_prompt(body.prompt, "video"), "prompt")
    kwargs: dict[str, Any] = dict(
        prompt=_prompt(state, body.prompt, body.max_sequence_length), negative_prompt=body.negative_prompt,
        width=width, height=height, num_frames=num_frames, fps=fps, resolution=resolution,
        num_inference_steps=body.num_inference_steps,
        guidance_scale=body.guidance_scale, flow_shift=body.flow_shift,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        enable_sound=body.generate_sound or None, condition_frame_indexes=extra.condition_frame_indexes_vision,
        condition_video_keep=extra.condition_video_keep, use_resolution_template=extra.use_resolution_template,
        use_duration_template=extra.use_duration_template, use_system_prompt=extra.use_system_prompt)
    if reference is not None:
        kwargs[kind] = str(reference[1])
    kwargs.update(actions)
    return {k: v for k, v in kwargs.items() if v is not None}


def action_body(state, result, kwargs: dict) -> dict | None:
    if result.actions is None:
        return None
    arr = result.actions.float().cpu().numpy().astype(np.float32)
    emb = get_embodiment(kwargs["embodiment"]) if kwargs.get("embodiment") else None
    return {"data": arr.tolist(), "shape": list(arr.shape), "dtype": "float32", "raw_action_dim": int(arr.shape[-1]),
            "domain_id": emb.domain_id if emb else None}


def save_outputs(state, result, kwargs: dict, folder: Path) -> dict:
    """Write a job's outputs (atomically) -> the job's result record."""
    refuse_if(state.guardrail.check_output(result, "video"))
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
