"""Video transfer: generation guided by control videos (edge, blur, depth, segmentation, world-scenario map).

    from cosmos3.control import Control
    gen.generate("a kitchen at dusk", controls=[Control("edge", source="rgb.mp4"),
                                                Control("depth", video="depth.mp4", weight=0.5)],
                 control_guidance=1.5, num_frames=33)

What the release does (docs/TRANSFER.md has the facts and where they come from):
- every control video is VAE-encoded like any clip and its latent frames are put in front of the generated clip
  in the generation stream: [ctrl_1 | ... | ctrl_N | target], controls in the fixed order edge, blur, depth, seg,
  wsm; control frames are clean (no timestep, zero velocity), exactly like conditioning frames;
- every control shares the target's mRoPE positions (same temporal and spatial ids: frame i of a control is aligned
  with frame i of the output);
- one control: plain full attention over [text | ctrl | target]. Several: N passes, pass i over
  [text | ctrl_i | target] with no mask; control i's tokens keep pass i's output and the target's output is the
  weighted sum of the passes with the weights normalised to sum to 1 (`multi_control_layers`);
- control guidance g: a second forward without any control tokens gives v_nc, and the positive branch's target
  velocity becomes v_nc + g (v_full - v_nc) before text CFG (`denoise_step` in diffusion.py);
- the prompt gets the transfer system prompt and one sentence naming the controls.

Edge and blur maps can be computed here from an RGB clip (OpenCV, the same operations and presets as the release);
depth, segmentation and WSM maps must be given as videos.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

KINDS = ("edge", "blur", "depth", "seg", "wsm")  # the release's fixed order of control items in the sequence
EXTRACTABLE = ("edge", "blur")

# Canny (low, high) thresholds per preset (cosmos-framework control_input.py, AddControlInputEdge)
EDGE_PRESETS = {"none": (20, 50), "very_low": (20, 50), "low": (50, 100), "medium": (100, 200),
                "high": (200, 300), "very_high": (300, 400)}
# blur: (downscale before the bilateral filter, final down-up factor) per preset (AddControlInputBlur)
BLUR_PRESETS = {"none": (1, 1), "very_low": (1, 4), "low": (4, 4), "medium": (2, 10), "high": (1, 16),
                "very_high": (4, 16)}
# bilateral filter at 720 px on the longest side; scaled with the frame (blur.py, BilateralFilterConfig)
BILATERAL = dict(d=30, sigma_color=150, sigma_space=100, reference=720)

# control_guidance when the caller gives none: the release's per-kind tuning for one control, 1 for several
CONTROL_GUIDANCE_DEFAULTS = {"edge": 1.5, "blur": 1.5, "depth": 1.5, "seg": 2.0, "wsm": 3.0}
TRANSFER_GUIDANCE = {"wsm": 1.0}  # text guidance with one control (3 for the other kinds)
MAX_CONTROL_GUIDANCE = 10.0  # the framework's ControlGuidance bound
MAX_ASPECT_MISMATCH = 0.05  # a control is scaled and centre-cropped to the output; more crop than this is refused

# The prompt side of transfer (strings the model was trained with, from the release's framework).
SYSTEM_PROMPT_TRANSFER = ("You are a helpful assistant that generates images or videos following the user's "
                          "instructions and control signals (edge maps, blur, depth, or segmentation).")
EMPHASIS = ("Follow the {names} control video precisely: shape, contour, silhouette, position, and motion of every "
            "visible structure must align with the {names} signal at every frame.")


@dataclass
class Control:
    """One control signal. Give `video` (the control map itself: a path, uint8 frames [T, H, W, 3], or a list of
    frames) or, for edge and blur only, `source` (an RGB clip the map is computed from, with `preset`)."""

    kind: str
    video: Any = None
    weight: float = 1.0
    source: Any = None
    preset: str | None = None  # edge: Canny thresholds, blur: strength (EDGE_PRESETS / BLUR_PRESETS); "medium"

    def as_dict(self) -> dict:
        """JSON-able fields (frames given as arrays are shown as their shape)."""
        def show(value):
            if value is None or isinstance(value, (str, os.PathLike)):
                return None if value is None else str(value)
            return f"frames {tuple(np.shape(value))}" if hasattr(value, "shape") else "frames"

        return dict(kind=self.kind, video=show(self.video), source=show(self.source), weight=float(self.weight),
                    preset=self.preset)

    def describe(self) -> str:
        given = self.video if self.video is not None else self.source
        return f"{self.kind} control ({given if isinstance(given, (str, os.PathLike)) else 'frames'})"


def _error(message: str):
    from .request import RequestError

    return RequestError("controls", message)


def check_controls(controls, control_guidance) -> tuple[tuple[Control, ...], float]:
    """Validate the controls (no media read) -> (controls in the release's order, zero weights dropped; the control
    guidance, defaulted). A weight of 0 removes its control: exactly what the weighted passes compute."""
    if controls is None:
        controls = ()
    if isinstance(controls, Control):
        controls = (controls,)
    if not isinstance(controls, (list, tuple)):
        raise _error(f"expected a list of Control, got {type(controls).__name__}")
    seen = set()
    for i, c in enumerate(controls):
        if not isinstance(c, Control):
            raise _error(f"controls[{i}]: expected a Control, got {type(c).__name__}")
        if c.kind not in KINDS:
            raise _error(f"controls[{i}]: unknown kind {c.kind!r}; expected one of {', '.join(KINDS)}")
        if c.kind in seen:
            raise _error(f"controls[{i}]: {c.kind} given twice; one control per kind")
        seen.add(c.kind)
        w = c.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise _error(f"controls[{i}] ({c.kind}): weight must be a finite number >= 0, got {w!r}")
        if (c.video is None) == (c.source is None):
            raise _error(f"controls[{i}] ({c.kind}): give the control video (video=) or, for edge and blur, an RGB "
                         "clip to compute it from (source=), one of them")
        if c.source is not None and c.kind not in EXTRACTABLE:
            raise _error(f"controls[{i}] ({c.kind}): a {c.kind} map cannot be computed here; give it as video=")
        presets = EDGE_PRESETS if c.kind == "edge" else BLUR_PRESETS if c.kind == "blur" else None
        if c.preset is not None and (presets is None or c.preset not in presets):
            expected = f"one of {', '.join(presets)}" if presets else "none (presets are for edge and blur)"
            raise _error(f"controls[{i}] ({c.kind}): preset {c.preset!r}: expected {expected}")
        if isinstance(c.video, (str, os.PathLike)) and not os.path.isfile(c.video):
            raise _error(f"controls[{i}] ({c.kind}): no such file {c.video}")
        if isinstance(c.source, (str, os.PathLike)) and not os.path.isfile(c.source):
            raise _error(f"controls[{i}] ({c.kind}): no such file {c.source}")
    active = tuple(sorted((c for c in controls if c.weight > 0), key=lambda c: KINDS.index(c.kind)))
    if control_guidance is None:
        control_guidance = CONTROL_GUIDANCE_DEFAULTS[active[0].kind] if len(active) == 1 else 1.0
    g = control_guidance
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= MAX_CONTROL_GUIDANCE:
        from .request import RequestError

        raise RequestError("control_guidance", f"expected a number in [0, {MAX_CONTROL_GUIDANCE:g}], got {g!r}")
    return active, float(g)


def default_guidance(controls) -> float | None:
    """Text guidance for a request that gives none: with exactly one (weighted) control, the release's per-kind
    value (TRANSFER_GUIDANCE); otherwise None (the checkpoint's own default). Unchecked input gives None."""
    if not isinstance(controls, (list, tuple)):
        controls = [controls]
    kinds = {c.kind for c in controls if isinstance(c, Control) and isinstance(c.weight, (int, float))
             and not isinstance(c.weight, bool) and c.weight > 0}
    if len(kinds) != 1 or not kinds <= set(KINDS):
        return None
    return TRANSFER_GUIDANCE.get(kinds.pop(), 3.0)


def normalized_weights(controls: tuple[Control, ...]) -> list[float]:
    total = sum(float(c.weight) for c in controls)
    return [float(c.weight) / total for c in controls]


def emphasized(text: str, controls: tuple[Control, ...]) -> str:
    """The positive prompt with the release's sentence naming the controls (appended after the templates)."""
    names = ", ".join(c.kind for c in controls)
    return text.rstrip() + " " + EMPHASIS.format(names=names)


# ------------------------------------------------------------------------------------------------ frames


def _frames(value, name: str, count: int) -> np.ndarray:
    """The first `count` frames of a clip as uint8 [count, H, W, 3]; too few frames is a MediaError."""
    from .media import MediaError, read_video, video_frames

    if isinstance(value, (str, os.PathLike)):
        frames, _ = read_video(value, max_frames=count)
        array = frames.numpy()
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        array = np.asarray(value)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise MediaError(name, f"expected uint8 frames [T, H, W, 3], got {array.dtype} {tuple(array.shape)}")
    else:
        array = np.stack([np.asarray(f.convert("RGB")) for f in video_frames(value)])
    if array.shape[0] < count:
        raise MediaError(name, f"has {array.shape[0]} frames; the output has {count} (a control needs one frame "
                               "per output frame)")
    return np.ascontiguousarray(array[:count])


def fit(frames: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    """Scale uint8 frames [T, h, w, 3] to cover H x W (bilinear, antialiased) and centre-crop, as the release reads
    control and source clips; a clip whose aspect differs from the output's by more than 5% is refused."""
    from .media import MediaError

    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    mismatch = abs((w / h) / (width / height) - 1.0)
    if mismatch > MAX_ASPECT_MISMATCH:
        raise MediaError(name, f"is {w}x{h}; the output is {width}x{height}: the aspect ratios differ by "
                               f"{mismatch:.0%} (at most {MAX_ASPECT_MISMATCH:.0%} is cropped away)")
    scale = max(width / w, height / h)
    new_h, new_w = math.ceil(scale * h), math.ceil(scale * w)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # [T, 3, h, w]
    x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = round((new_h - height) / 2), round((new_w - width) / 2)
    x = x[:, :, top:top + height, left:left + width]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def edge_map(frames: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Canny edges of uint8 RGB frames [T, H, W, 3] -> uint8 [T, H, W, 3] (0 or 255, the same in every channel).
    OpenCV takes the strongest gradient over the three colour channels, as in the release."""
    import cv2

    low, high = EDGE_PRESETS[preset]
    edges = np.stack([cv2.Canny(np.ascontiguousarray(f), low, high) for f in frames])  # [T, H, W]
    return np.repeat(edges[..., None], 3, axis=-1)


def blur_map(frames: np.ndarray, preset: str = "medium") -> np.ndarray:
    """The release's blur control of uint8 RGB frames [T, H, W, 3]: downscale (area), bilateral filter (its size
    and sigmas scaled from 720 px to the downscaled frame), upscale (linear), then a bicubic down-and-up by the
    preset's factor, which removes the detail an edge-preserving filter keeps."""
    import cv2

    pre, downup = BLUR_PRESETS[preset]
    if preset == "none":
        return frames.copy()
    T, H, W, _ = frames.shape
    out = np.empty_like(frames)
    for t in range(T):
        f = np.ascontiguousarray(frames[t])
        if pre > 1:
            f = cv2.resize(f, (W // pre, H // pre), interpolation=cv2.INTER_AREA)
        scale = max(f.shape[:2]) / BILATERAL["reference"]
        d = max(1, round(BILATERAL["d"] * scale))
        d += 1 - d % 2  # odd
        f = cv2.bilateralFilter(f, d, max(1.0, BILATERAL["sigma_color"] * scale),
                                max(1.0, BILATERAL["sigma_space"] * scale))
        if pre > 1:
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR)
        if downup > 1:
            f = cv2.resize(f, (int(W / downup), int(H / downup)), interpolation=cv2.INTER_CUBIC)
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_CUBIC)
        out[t] = f
    return out


def extract(kind: str, frames: np.ndarray, preset: str | None = None) -> np.ndarray:
    """An edge or blur control computed from uint8 RGB frames [T, H, W, 3]."""
    if kind == "edge":
        return edge_map(frames, preset or "medium")
    if kind == "blur":
        return blur_map(frames, preset or "medium")
    raise ValueError(f"{kind}: only edge and blur controls can be computed from an RGB clip")


def control_pixels(control: Control, num_frames: int, height: int, width: int) -> torch.Tensor:
    """A control as VAE input [1, 3, T, H, W] in [-1, 1]: read (or computed from its RGB source at the output
    size), fitted to H x W, its first T frames."""
    if control.video is not None:
        frames = fit(_frames(control.video, control.describe(), num_frames), height, width, control.describe())
    else:
        rgb = fit(_frames(control.source, control.describe(), num_frames), height, width, control.describe())
        frames = extract(control.kind, rgb, control.preset)
    pixels = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float()  # [1, 3, T, H, W]
    return pixels / 127.5 - 1.0


def probe(control: Control, num_frames: int, height: int, width: int) -> None:
    """The checks of `control_pixels` that need no decoding (frame count and size of a file, shape of frames):
    run at resolve so a bad control fails before any model work."""
    from .media import MediaError, probe_video

    value = control.video if control.video is not None else control.source
    name = control.describe()
    if isinstance(value, (str, os.PathLike)):
        info = probe_video(value)
        count, h, w = info["frames"], info["height"], info["width"]
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        shape = tuple(value.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise MediaError(name, f"expected uint8 frames [T, H, W, 3], got shape {shape}")
        count, h, w = shape[0], shape[1], shape[2]
    else:
        return  # a list of frames: checked when read
    if count < num_frames:
        raise MediaError(name, f"has {count} frames; the output has {num_frames} (a control needs one frame per "
                               "output frame)")
    mismatch = abs((w / h) / (width / height) - 1.0)
    if mismatch > MAX_ASPECT_MISMATCH:
        raise MediaError(name, f"is {w}x{h}; the output is {width}x{height}: the aspect ratios differ by "
                               f"{mismatch:.0%} (at most {MAX_ASPECT_MISMATCH:.0%} is cropped away)")


def parse_spec(text: str) -> Control:
    """CLI form KIND[:PATH][:WEIGHT]: `edge:clip.mp4`, `depth:d.mp4:0.5`; no path (`edge`, `edge::0.5`) means the
    map is computed from --control-source. The weight is the last field when it parses as a number."""
    kind, _, rest = text.partition(":")
    weight = 1.0
    head, sep, tail = rest.rpartition(":")
    if sep:
        try:
            weight, rest = float(tail), head
        except ValueError:
            pass
    elif rest:
        try:
            weight, rest = float(rest), ""
        except ValueError:
            pass
    return Control(kind=kind.strip(), video=rest or None, weight=weight)


# ------------------------------------------------------------------------------------------------ attention


def _multi_attention(attn, x: torch.Tensor, rope, und_k: torch.Tensor, und_v: torch.Tensor,
                     und_mask: torch.Tensor | None, spans: list[tuple[int, int]], target: tuple[int, int],
                     weights: list[float], backend: str) -> torch.Tensor:
    """The gen attention of one layer with several controls -> [B, N, D]. Pass i: queries of control i and of the
    target attend, with no mask between them, over [und | control i | target]; control i keeps pass i's output,
    the target gets sum_i w_i * pass i. Projections are the layer's own (`MoTAttention.gen`)."""
    from .model.attention import attention
    from .model.rope import apply_rope

    cos, sin = rope
    q = apply_rope(attn.norm_added_q(attn._heads(attn.add_q_proj(x), attn.num_heads)), cos, sin).transpose(1, 2)
    k = apply_rope(attn.norm_added_k(attn._heads(attn.add_k_proj(x), attn.num_kv_heads)), cos, sin).transpose(1, 2)
    v = attn._heads(attn.add_v_proj(x), attn.num_kv_heads).transpose(1, 2)  # q, k, v: [B, heads, N, Dh]
    s0, s1 = target
    out = torch.zeros_like(q)
    for (c0, c1), w in zip(spans, weights):
        keys = torch.cat([und_k, k[:, :, c0:c1], k[:, :, s0:s1]], dim=2)
        values = torch.cat([und_v, v[:, :, c0:c1], v[:, :, s0:s1]], dim=2)
        mask = None
        if und_mask is not None:  # padded prompts: hide the padding, every gen key stays visible
            visible = torch.ones(x.shape[0], (c1 - c0) + (s1 - s0), dtype=torch.bool, device=x.device)
            mask = torch.cat([und_mask, visible], dim=1)[:, None, None, :]
        queries = torch.cat([q[:, :, c0:c1], q[:, :, s0:s1]], dim=2)
        res = attention(queries, keys, values, mask=mask, backend=backend)
        out[:, :, c0:c1] = res[:, :, : c1 - c0]
        out[:, :, s0:s1] += w * res[:, :, c1 - c0:]
    return attn.to_add_out(out.transpose(1, 2).flatten(2))


def multi_control_layers(model, x: torch.Tensor, positions: torch.Tensor, cache, spans: list[tuple[int, int]],
                         target: tuple[int, int], weights: list[float]) -> torch.Tensor:
    """The gen layers (no final norm) of a stream [B, N, D] holding several controls: each layer is
    `MoTLayer.gen` with its attention replaced by the weighted passes (`_multi_attention`)."""
    rope = model.rope(positions)
    for layer, k, v in zip(model.layers, cache.keys, cache.values):
        a = _multi_attention(layer.self_attn, layer.input_layernorm_moe_gen(x), rope, k, v, cache.mask, spans,
                             target, weights, model.attention_backend)
        h = x + a
        x = h + layer.mlp_moe_gen(layer.post_attention_layernorm_moe_gen(h))
    return x


# ------------------------------------------------------------------------------------------------ sampling hooks


def token_spans(layout, cfg) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Token ranges of the controls and of the target in the generation stream: ([(start, end)] * N, target)."""
    from .model.heads import patch_grid

    _, T, H, W = layout.latent_shape
    rows, cols = patch_grid(H, W, cfg.latent_patch_size)
    per_item = T // (layout.controls + 1) * rows * cols
    spans = [(i * per_item, (i + 1) * per_item) for i in range(layout.controls)]
    return spans, (layout.controls * per_item, (layout.controls + 1) * per_item)


def target_layout(layout):
    """The same request with its control clips left out (control guidance's forward without controls)."""
    from dataclasses import replace

    C, T, H, W = layout.latent_shape
    Tt = T // (layout.controls + 1)
    return replace(layout, latent_shape=(C, Tt, H, W), vision_noisy=layout.vision_noisy[T - Tt:], controls=0,
                   control_weights=(), control_guidance=1.0)


def guide_by_controls(model, layout, vision: torch.Tensor, timestep: torch.Tensor, branches, positive) -> None:
    """Control guidance, in place on the positive branch's output: one more forward of the positive prompt over the
    target alone gives v_nc, and the target's velocity becomes v_nc + g (v - v_nc). Text CFG then mixes this with
    the negative branch (which keeps its controls), as the release's velocity post-process does."""
    from .model import GenInputs

    bare = target_layout(layout)
    Tt = bare.latent_shape[1]
    inputs = GenInputs(vision=vision[:, -Tt:], vision_noisy=bare.vision_noisy, timestep=timestep)
    tokens = model.embed_gen(inputs)
    first = branches.positive()
    hidden = model.run_gen(tokens[None], first.positions[:, :, -tokens.shape[0]:], first.cache)
    v_nc = model.decode_gen(hidden[0], inputs).vision.float()
    v = positive.vision[:, -Tt:].float()
    positive.vision[:, -Tt:] = (v_nc + layout.control_guidance * (v - v_nc)).to(positive.vision.dtype)
