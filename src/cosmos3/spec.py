"""Generation settings: resolution tiers, aspect ratios, frame rates and frame counts (DESIGN 2.5, 2.7).

Everything a caller may pass about the shape of the output goes through :func:`resolve_settings`, which either
returns a complete, consistent :class:`Settings` or raises :class:`SettingsError` naming the argument at fault.
Validating here, before any model work starts, is what lets the CLI and the server answer with one precise line
(DESIGN 1.6).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ASPECT_RATIOS",
    "DEFAULT_ASPECT_RATIO",
    "DEFAULT_FPS",
    "DEFAULT_IMAGE_ASPECT_RATIO",
    "DEFAULT_NUM_FRAMES",
    "DEFAULT_RESOLUTION",
    "FPS_CHOICES",
    "MAX_CUSTOM_SIDE",
    "MAX_FRAMES",
    "MIN_CUSTOM_SIDE",
    "MIN_FRAMES",
    "RESOLUTIONS",
    "RESOLUTION_TIERS",
    "SIZE_MULTIPLE",
    "VAE_SPATIAL_FACTOR",
    "VAE_TEMPORAL_FACTOR",
    "Settings",
    "SettingsError",
    "aspect_for_size",
    "latent_frames",
    "resolve_settings",
    "round_frames",
]

# Wan 2.2 VAE compression (DESIGN 2.5): 16x in each spatial direction, 4x in time after a lone first frame.
VAE_SPATIAL_FACTOR = 16
VAE_TEMPORAL_FACTOR = 4

RESOLUTION_TIERS: tuple[str, ...] = ("256p", "480p", "720p")
ASPECT_RATIOS: tuple[str, ...] = ("16:9", "4:3", "1:1", "3:4", "9:16")

# (width, height) per tier and aspect, exactly as published (DESIGN 2.7). The sizes are not exact ratios
# (832x480 is not 16:9), so lookups go through this table rather than arithmetic on the ratio.
RESOLUTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "256p": {
        "16:9": (320, 192),
        "4:3": (320, 256),
        "1:1": (256, 256),
        "3:4": (256, 320),
        "9:16": (192, 320),
    },
    "480p": {
        "16:9": (832, 480),
        "4:3": (736, 544),
        "1:1": (640, 640),
        "3:4": (544, 736),
        "9:16": (480, 832),
    },
    "720p": {
        "16:9": (1280, 720),
        "4:3": (1104, 832),
        "1:1": (960, 960),
        "3:4": (832, 1104),
        "9:16": (720, 1280),
    },
}

DEFAULT_RESOLUTION = "480p"
DEFAULT_ASPECT_RATIO = "16:9"
# Text-to-image defaults to a square picture in the release (DESIGN 2.6). resolve_settings does not apply it on
# its own, because a one-frame request may also be image-to-image with a wide input; the generator decides.
DEFAULT_IMAGE_ASPECT_RATIO = "1:1"

FPS_CHOICES: tuple[int, ...] = (10, 16, 24, 30)
DEFAULT_FPS = 24

DEFAULT_NUM_FRAMES = 189
MIN_FRAMES = 5
MAX_FRAMES = 300

# Sizes off the table are allowed for experiments; they must still patchify cleanly (16x VAE) and stay in a range
# where memory use is predictable.
SIZE_MULTIPLE = 16
MIN_CUSTOM_SIDE = 64
MAX_CUSTOM_SIDE = 1920

_SIZE_TO_TIER_ASPECT: dict[tuple[int, int], tuple[str, str]] = {
    size: (tier, aspect) for tier, row in RESOLUTIONS.items() for aspect, size in row.items()
}

_FRAMES_ALLOWED = f"1 (image) or an integer from {MIN_FRAMES} to {MAX_FRAMES} (rounded up to 4k+1)"
_FPS_ALLOWED = "one of " + ", ".join(str(f) for f in FPS_CHOICES)
_TIER_ALLOWED = "one of " + ", ".join(RESOLUTION_TIERS)
_ASPECT_ALLOWED = "one of " + ", ".join(ASPECT_RATIOS)
_SIDE_ALLOWED = (
    f"a table size (see RESOLUTIONS) or a multiple of {SIZE_MULTIPLE} from {MIN_CUSTOM_SIDE} to {MAX_CUSTOM_SIDE}"
)


class SettingsError(ValueError):
    """A generation setting is invalid. ``field`` names the argument, ``allowed`` describes what would be valid."""

    def __init__(self, field: str, value: Any, allowed: str, reason: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.reason = reason
        what = reason or "invalid value"
        super().__init__(f"{field}={value!r}: {what}; allowed: {allowed}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call __init__ with the formatted message only; keep the fields across pickling
        # (the server may hand errors between processes).
        return (type(self), (self.field, self.value, self.allowed, self.reason))


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True frames or True fps is always a caller bug.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def round_frames(n: int) -> int:
    """Round a frame count up to the next 4k+1 (the only lengths the causal VAE can encode); 1 stays 1."""
    if not _is_int(n) or n < 1:
        raise SettingsError("num_frames", n, "a positive integer")
    n = int(n)
    return n + (-(n - 1)) % VAE_TEMPORAL_FACTOR


def latent_frames(n: int) -> int:
    """Number of latent frames for ``n`` pixel frames: the first frame alone, then one per 4 frames."""
    if not _is_int(n) or n < 1:
        raise SettingsError("num_frames", n, "a positive integer")
    return 1 + (int(n) - 1) // VAE_TEMPORAL_FACTOR


def _aspect_value(aspect: str) -> float:
    num, den = aspect.split(":")
    return int(num) / int(den)


def aspect_for_size(width: int, height: int) -> str:
    """The table aspect ratio nearest to ``width / height`` (compared in log space, so 2:1 and 1:2 are equally far
    from 1:1)."""
    for name, value in (("width", width), ("height", height)):
        if not _is_int(value) or value <= 0:
            raise SettingsError(name, value, "a positive integer")
    target = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda a: abs(math.log(_aspect_value(a)) - target))


@dataclass(frozen=True)
class Settings:
    """Resolved output shape of one generation request."""

    width: int
    height: int
    num_frames: int
    fps: int
    latent_frames: int

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    @property
    def latent_height(self) -> int:
        return self.height // VAE_SPATIAL_FACTOR

    @property
    def latent_width(self) -> int:
        return self.width // VAE_SPATIAL_FACTOR

    @property
    def resolution(self) -> str | None:
        """Tier name for a table size, None for a custom size."""
        hit = _SIZE_TO_TIER_ASPECT.get((self.width, self.height))
        return hit[0] if hit else None

    @property
    def aspect_ratio(self) -> str:
        """Table aspect for a table size; the nearest table aspect for a custom size."""
        hit = _SIZE_TO_TIER_ASPECT.get((self.width, self.height))
        return hit[1] if hit else aspect_for_size(self.width, self.height)

    @property
    def duration(self) -> float:
        """Seconds of video, as the prompt templates count it (frames / fps, DESIGN 2.6)."""
        return self.num_frames / self.fps


def _normalize_resolution(resolution: Any) -> str:
    if _is_int(resolution):
        text = f"{int(resolution)}p"
    elif isinstance(resolution, str):
        text = resolution.strip().lower()
        if text.isdigit():
            text += "p"
    else:
        raise SettingsError("resolution", resolution, _TIER_ALLOWED, "must be a tier name")
    if text not in RESOLUTIONS:
        raise SettingsError("resolution", resolution, _TIER_ALLOWED, "unknown resolution tier")
    return text


def _normalize_aspect(aspect_ratio: Any) -> str:
    if not isinstance(aspect_ratio, str):
        raise SettingsError("aspect_ratio", aspect_ratio, _ASPECT_ALLOWED, "must be a string like '16:9'")
    text = aspect_ratio.replace(" ", "")
    if text not in ASPECT_RATIOS:
        raise SettingsError("aspect_ratio", aspect_ratio, _ASPECT_ALLOWED, "unknown aspect ratio")
    return text


def _resolve_frames(num_frames: Any) -> int:
    if num_frames is None:
        return DEFAULT_NUM_FRAMES
    if not _is_int(num_frames):
        raise SettingsError("num_frames", num_frames, _FRAMES_ALLOWED, "must be an integer")
    n = int(num_frames)
    if n == 1:
        return 1
    if n < MIN_FRAMES:
        reason = "must be positive" if n < 1 else "too few frames for a video"
        raise SettingsError("num_frames", num_frames, _FRAMES_ALLOWED, reason)
    if n > MAX_FRAMES:
        raise SettingsError("num_frames", num_frames, _FRAMES_ALLOWED, "too many frames")
    # The range is checked on what the caller asked for; rounding may then step just past MAX_FRAMES
    # (298..300 -> 301), which is what "5 to 300, rounded up to 4k+1" says.
    return round_frames(n)


def _resolve_fps(fps: Any) -> int:
    if fps is None:
        return DEFAULT_FPS
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise SettingsError("fps", fps, _FPS_ALLOWED, "must be a number")
    value = float(fps)
    if not math.isfinite(value) or value != int(value) or int(value) not in FPS_CHOICES:
        raise SettingsError("fps", fps, _FPS_ALLOWED, "unsupported frame rate")
    return int(value)


def _check_side(name: str, value: Any) -> int:
    if not _is_int(value):
        raise SettingsError(name, value, _SIDE_ALLOWED, "must be an integer")
    if value <= 0:
        raise SettingsError(name, value, _SIDE_ALLOWED, "must be positive")
    return int(value)


def _resolve_size(
    resolution: Any, aspect_ratio: Any, height: Any, width: Any
) -> tuple[int, int]:
    tier = None if resolution is None else _normalize_resolution(resolution)
    aspect = None if aspect_ratio is None else _normalize_aspect(aspect_ratio)

    if height is None and width is None:
        return RESOLUTIONS[tier or DEFAULT_RESOLUTION][aspect or DEFAULT_ASPECT_RATIO]
    if height is None:
        raise SettingsError("height", None, _SIDE_ALLOWED, "required when width is given")
    if width is None:
        raise SettingsError("width", None, _SIDE_ALLOWED, "required when height is given")

    h = _check_side("height", height)
    w = _check_side("width", width)
    on_table = _SIZE_TO_TIER_ASPECT.get((w, h))

    size_tier = on_table[0] if on_table else None
    size_aspect = on_table[1] if on_table else aspect_for_size(w, h)
    if tier is not None and tier != size_tier:
        expected = RESOLUTIONS[tier][aspect or size_aspect]
        raise SettingsError(
            "resolution",
            resolution,
            f"omit it, or give the matching size {expected[0]}x{expected[1]} (width x height)",
            f"disagrees with width x height {w}x{h}",
        )
    if aspect is not None and aspect != size_aspect:
        raise SettingsError(
            "aspect_ratio",
            aspect_ratio,
            f"omit it, or use {size_aspect} for width x height {w}x{h}",
            f"disagrees with width x height {w}x{h}",
        )
    if on_table:
        return w, h

    for name, value in (("height", h), ("width", w)):
        if value % SIZE_MULTIPLE or not MIN_CUSTOM_SIDE <= value <= MAX_CUSTOM_SIDE:
            raise SettingsError(name, value, _SIDE_ALLOWED, f"{w}x{h} (width x height) is not a supported size")
    warnings.warn(
        f"{w}x{h} (width x height) is not one of the published resolutions; quality may suffer "
        f"(nearest table aspect {size_aspect})",
        UserWarning,
        stacklevel=3,
    )
    return w, h


def resolve_settings(
    resolution: str | int | None = None,
    aspect_ratio: str | None = None,
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    fps: int | float | None = None,
) -> Settings:
    """Validate and complete the output shape of a request.

    Give either a tier (``resolution`` "256p"/"480p"/"720p", "480" also accepted) and ``aspect_ratio``, or an
    exact ``height`` and ``width`` (both). Missing pieces take the defaults (480p, 16:9, 189 frames, 24 fps).
    Frame counts are rounded up to 4k+1; ``num_frames=1`` means a single image.
    """
    w, h = _resolve_size(resolution, aspect_ratio, height, width)
    n = _resolve_frames(num_frames)
    rate = _resolve_fps(fps)
    return Settings(width=w, height=h, num_frames=n, fps=rate, latent_frames=latent_frames(n))
