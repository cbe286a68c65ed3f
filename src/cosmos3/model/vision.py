"""The reasoner's vision side: Qwen3-VL pixel processing and a thin adapter over transformers' Qwen3-VL vision tower.

Shapes:
    P patch_size (16)   Tp temporal_patch_size (2)   M spatial merge (2)   C = 3 channels
    an image or video becomes a grid (t, h, w) of patches, t = frames / Tp, h = H / P, w = W / P
    pixels   [t * h * w, C * Tp * P * P]   float32, patches ordered t, then merge blocks of M x M, row-major
    tokens   t * h * w / M^2 per item; the tower returns features [tokens, D_text] per item, plus one deepstack
             feature tensor of the same shape per deepstack layer (added to the text stream after text layers 0..k-1)

The tower itself is transformers' `Qwen3VLVisionModel` (DESIGN 1.3: its weights load as they are). Images are
processed by transformers' PIL image processor, so image pixels are the reference's exactly. Transformers' video
processor needs torchvision (never installed here), so video frames are resized here as torchvision resizes a uint8
tensor on CPU (the native uint8 antialiased bicubic of `interpolate`, which is not PIL's bit for bit) and patchified
in the video processor's layout; a two-frame video of one image gives that image's patches when no resize is needed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

# Qwen3-VL's published preprocessing (preprocessor_config.json / video_preprocessor_config.json of the release);
# used for whatever a checkpoint's files do not say.
IMAGE_DEFAULTS = dict(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5],
                      image_std=[0.5, 0.5, 0.5], min_pixels=65536, max_pixels=16777216)
VIDEO_DEFAULTS = dict(min_pixels=4096, max_pixels=25165824, fps=2.0, min_frames=4, max_frames=768)
MAX_ASPECT_RATIO = 200  # Qwen's resize refuses anything more elongated


@dataclass
class VisualInput:
    """One image or video, ready for the tower."""

    kind: str  # "image" or "video"
    pixels: torch.Tensor  # [t * h * w, C * Tp * P * P] float32
    grid: tuple[int, int, int]  # (t, h, w) in patches
    timestamps: list[float] = field(default_factory=list)  # video: seconds at the middle of each temporal patch

    def num_tokens(self, merge: int) -> int:
        t, h, w = self.grid
        return t * h * w // (merge * merge)

    def frame_tokens(self, merge: int) -> int:
        """Tokens of one temporal patch (an image has one)."""
        return self.grid[1] * self.grid[2] // (merge * merge)


def _read_json(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def _pixel_bounds(cfg: dict, defaults: dict) -> tuple[int, int]:
    size = cfg.get("size") or {}
    low = cfg.get("min_pixels") or size.get("shortest_edge") or defaults["min_pixels"]
    high = cfg.get("max_pixels") or size.get("longest_edge") or defaults["max_pixels"]
    return int(low), int(high)


def video_resize(frames: int, height: int, width: int, factor: int, temporal: int, min_pixels: int,
                 max_pixels: int) -> tuple[int, int]:
    """Qwen3-VL's video target size: sides multiples of `factor`, aspect kept, and the pixel count of the whole clip
    (frames rounded to the temporal patch) within [min_pixels, max_pixels]. Frames smaller than one factor are first
    scaled up to it."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"video frames of {width}x{height} are more elongated than {MAX_ASPECT_RATIO}:1")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    t = round(frames / temporal) * temporal
    if t * h * w > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif t * h * w < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


class VisionProcessor:
    """Pixels -> patches, by Qwen3-VL's rules (patch 16, temporal patch 2, merge 2, min/max pixels, mean/std)."""

    def __init__(self, image_config: dict | None = None, video_config: dict | None = None):
        image_config, video_config = dict(image_config or {}), dict(video_config or {})
        get = lambda key: image_config.get(key, IMAGE_DEFAULTS[key])  # noqa: E731
        self.patch_size, self.temporal_patch_size, self.merge_size = (
            int(get("patch_size")), int(get("temporal_patch_size")), int(get("merge_size")))
        self.mean = [float(x) for x in get("image_mean")]
        self.std = [float(x) for x in get("image_std")]
        self.image_min_pixels, self.image_max_pixels = _pixel_bounds(image_config, IMAGE_DEFAULTS)
        self.video_min_pixels, self.video_max_pixels = _pixel_bounds(video_config, VIDEO_DEFAULTS)
        self.fps = float(video_config.get("fps") or VIDEO_DEFAULTS["fps"])
        self.min_frames = int(video_config.get("min_frames") or VIDEO_DEFAULTS["min_frames"])
        self.max_frames = int(video_config.get("max_frames") or VIDEO_DEFAULTS["max_frames"])
        self._image_processor = None

    @classmethod
    def from_dirs(cls, *folders: str | os.PathLike | None) -> "VisionProcessor":
        """Read preprocessor_config.json / video_preprocessor_config.json from the first folder that has them."""
        image, video = {}, {}
        for folder in [Path(f) for f in folders if f is not None]:
            image = image or _read_json(folder / "preprocessor_config.json")
            video = video or _read_json(folder / "video_preprocessor_config.json")
        # A release processor config that carries the video fields inline (older Qwen-VL layouts) serves both.
        return cls(image, video or {k: image[k] for k in ("fps", "min_frames", "max_frames") if k in image})

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def _pil_processor(self):
        if self._image_processor is None:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

            self._image_processor = Qwen2VLImageProcessorPil(
                patch_size=self.patch_size, temporal_patch_size=self.temporal_patch_size, merge_size=self.merge_size,
                image_mean=self.mean, image_std=self.std,
                size={"shortest_edge": self.image_min_pixels, "longest_edge": self.image_max_pixels})
        return self._image_processor

    def image(self, image: Image.Image) -> VisualInput:
        """An RGB PIL image -> patches (the image is repeated over the temporal patch, as Qwen does)."""
        w, h = image.size
        if max(w, h) / max(1, min(w, h)) > MAX_ASPECT_RATIO:
            raise ValueError(f"image of {w}x{h} is more elongated than {MAX_ASPECT_RATIO}:1")
        out = self._pil_processor()(images=[image], return_tensors="pt")
        grid = tuple(int(x) for x in out["image_grid_thw"][0])
        return VisualInput("image", out["pixel_values"].float(), grid)

    def sample_indices(self, total: int, video_fps: float | None, fps: float | None = None,
                       num_frames: int | None = None) -> list[int]:
        """Which of `total` decoded frames to keep: `num_frames` evenly spread, or `fps` per second (default the
        processor's 2), clamped to [min_frames, max_frames] and to what exists."""
        if fps is not None and num_frames is not None:
            raise ValueError("give either fps or num_frames for video sampling, not both")
        if num_frames is None:
            rate = video_fps or 24.0  # Qwen's fallback when a stream states no rate
            num_frames = int(total / rate * (fps or self.fps))
            num_frames = min(max(num_frames, self.min_frames), self.max_frames, total)
        num_frames = max(1, min(int(num_frames), total))
        return np.linspace(0, total - 1, num_frames).round().astype(int).tolist()

    def video(self, frames: torch.Tensor, times: list[float]) -> VisualInput:
        """Sampled uint8 frames [T, H, W, 3] with their times in seconds -> patches and per-patch timestamps."""
        T, H, W, _ = frames.shape
        Tp, P, M = self.temporal_patch_size, self.patch_size, self.merge_size
        h, w = video_resize(max(T, Tp), H, W, self.factor, Tp, self.video_min_pixels, self.video_max_pixels)
        x = torch.as_tensor(frames).permute(0, 3, 1, 2).contiguous()  # uint8 [T, C, H, W]
        if (h, w) != (H, W):  # torchvision's resize of a uint8 CPU tensor, as transformers' video processor runs it
            x = nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        x = x.float()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        x = (x * (1.0 / 255.0) - mean) / std
        times = list(times)
        if pad := -T % Tp:  # the last temporal patch is completed by repeating the last frame
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
            times += [times[-1]] * pad
        gt, gh, gw = x.shape[0] // Tp, h // P, w // P
        # [gt, Tp, C, gh/M, M, P, gw/M, M, P] -> [gt, gh/M, gw/M, M, M, C, Tp, P, P]: merge blocks stay contiguous
        x = x.reshape(gt, Tp, 3, gh // M, M, P, gw // M, M, P).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        pixels = x.reshape(gt * gh * gw, 3 * Tp * P * P).contiguous()
        stamps = [(times[i] + times[i + Tp - 1]) / 2 for i in range(0, len(times), Tp)]
        return VisualInput("video", pixels, (gt, gh, gw), stamps)


# ------------------------------------------------------------------------------------------------ the tower


def _vision_config(data: dict):
    from transformers import Qwen3VLVisionConfig

    data = data.get("vision_config", data)  # a whole Qwen3-VL config.json carries the tower's config nested
    data = {k: v for k, v in data.items() if k not in ("architectures", "transformers_version", "dtype")}
    cfg = Qwen3VLVisionConfig(**data)
    cfg._attn_implementation = "sdpa"
    return cfg


class VisionTower(nn.Module):
    """transformers' Qwen3-VL vision model, returning merged features and deepstack features per call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.merge_size = int(model.config.spatial_merge_size)
        self.out_hidden_size = int(model.config.out_hidden_size)
        self.num_deepstack = len(model.config.deepstack_visual_indexes)

    @classmethod
    def from_config(cls, config: dict) -> "VisionTower":
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

        return cls(Qwen3VLVisionModel(_vision_config(config)).eval())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype, device: torch.device) -> "VisionTower":
        """A folder written by `Qwen3VLVisionModel.save_pretrained` (config.json + safetensors)."""
        from safetensors.torch import load_file

        path = Path(path)
        config = _read_json(path / "config.json")
        if not config:
            raise FileNotFoundError(f"{path}: no vision tower config.json")
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{path}: no vision tower weights (*.safetensors)")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        for prefix in ("model.visual.", "visual."):  # towers saved from inside a Qwen3-VL model keep its prefix
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
        return cls.from_state_dict(config, state, dtype, device, source=str(path))

    @classmethod
    def from_state_dict(cls, config: dict, state: dict[str, torch.Tensor], dtype: torch.dtype,
                        device: torch.device, source: str = "vision weights") -> "VisionTower":
        """Build on the meta device and take the given tensors as the weights (no random init, one copy)."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

        cfg = _vision_config(config)
        with torch.device("meta"):
            model = Qwen3VLVisionModel(cfg)
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"{source}: vision tower keys do not match its config: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True,
                              assign=True)
        # Non-persistent buffers (the rotary frequencies) were created on meta: rebuild them for real.
        model.rotary_pos_emb = type(model.rotary_pos_emb)(cfg).to(device)
        left = [n for n, b in model.named_buffers() if b.is_meta]
        if left:
            raise RuntimeError(f"vision tower buffers left unset after loading: {left}")
        return cls(model.eval())

    @property
    def dtype(self) -> torch.dtype:
        return self.model.patch_embed.proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.patch_embed.proj.weight.device

    @torch.no_grad()
    def forward(self, items: list[VisualInput]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """All items in one call -> (features [sum tokens, D], deepstack: one [sum tokens, D] per deepstack layer),
        rows in item order."""
        return self.features(items)

    def features(self, items: list[VisualInput]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`forward` with autograd (training the tower)."""
        pixels = torch.cat([it.pixels for it in items]).to(self.device, self.dtype)
        grid = torch.tensor([it.grid for it in items], dtype=torch.long, device=self.device)
        out = self.model(pixels, grid_thw=grid, return_dict=True)
        return out.pooler_output, list(out.deepstack_features)
