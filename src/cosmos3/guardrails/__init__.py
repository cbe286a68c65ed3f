"""Guardrails: prompt checks that can refuse a request before any model work, and frame filters applied to what was
generated (docs/GUARDRAILS.md).

    guard = Guardrail.default()                                  # shipped blocklist + face blur
    guard = Guardrail.default(blocklist="list.txt", guard_model="Qwen3Guard-Gen-0.6B/")
    guard.screen("a red block slides left")                      # raises GuardrailBlocked(check, reason) if refused
    frames = guard.filter_frames(frames)                         # uint8 [T, H, W, 3], faces pixelated
    Generator.generate(prompt, guardrails=guard)                 # or True (the default guardrail) / False

A prompt check is any object with a `name` and `check(text) -> str | None` (None: allowed; else the reason); a frame
filter any object with a `name` and `apply(uint8 [T, H, W, 3] array) -> array`. `Guardrail()` with neither is the
no-op one; the server's `create_app(..., guardrail=)` takes any of these, or a subclass overriding `check_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Blocked", "Guardrail", "GuardrailBlocked", "PromptCheck", "FrameFilter"]


class PromptCheck(Protocol):
    name: str

    def check(self, text: str) -> str | None: ...


class FrameFilter(Protocol):
    name: str

    def apply(self, frames: np.ndarray) -> np.ndarray: ...


@dataclass
class Blocked:
    """A refusal: which check refused, and why."""

    check: str
    reason: str


class GuardrailBlocked(ValueError):
    """A prompt refused by a guardrail check. `.check` names the check ("blocklist", "guard_model", ...), `.field`
    the refused input ("prompt", "negative_prompt", ...)."""

    def __init__(self, check: str, reason: str, field: str = "prompt"):
        self.check, self.reason, self.field = check, reason, field
        super().__init__(f"{field} blocked by the {check} check: {reason}")


class Guardrail:
    def __init__(self, prompt_checks: list[PromptCheck] | tuple = (), frame_filters: list[FrameFilter] | tuple = ()):
        self.prompt_checks, self.frame_filters = list(prompt_checks), list(frame_filters)

    @classmethod
    def default(cls, blocklist: str | Path | None = None, guard_model: str | Path | None = None,
                face_blur: bool = True, device: str | None = None) -> "Guardrail":
        """The built-in guardrail: the blocklist (`blocklist`: a user's file, None: the shipped list), the guard
        model when a folder is given, face blur unless `face_blur=False`. Bad paths raise ValueError."""
        from .blocklist import Blocklist

        checks: list = [Blocklist.from_file(blocklist)]
        if guard_model is not None:
            from .guard_model import GuardModel

            checks.append(GuardModel.from_pretrained(guard_model, device=device))
        filters: list = []
        if face_blur:
            from .faces import FaceBlur, _cascade_path

            _cascade_path()  # fail at start-up, not on the first generated frame
            filters.append(FaceBlur())
        return cls(checks, filters)

    @property
    def active(self) -> bool:
        """Whether it can refuse or change anything (a subclass overriding a hook counts)."""
        overridden = type(self).check_prompt is not Guardrail.check_prompt or \
            type(self).check_output is not Guardrail.check_output
        return bool(self.prompt_checks or self.frame_filters) or overridden

    def describe(self) -> str:
        names = [c.name for c in self.prompt_checks] + [f.name for f in self.frame_filters]
        return ", ".join(names) if names else "none"

    # ------------------------------------------------------------------------------------------- prompts

    def check_prompt(self, text: str, surface: str = "video") -> Blocked | str | None:
        """The first check that refuses `text` -> Blocked(check, reason); None when every check allows it.
        `surface` ("chat" | "image" | "video") is for subclasses that treat them differently."""
        if not text:
            return None
        for check in self.prompt_checks:
            reason = check.check(text)
            if reason:
                return Blocked(check.name, reason)
        return None

    def screen(self, text: str | None, field: str = "prompt", surface: str = "video") -> None:
        """Raise GuardrailBlocked when a check refuses `text`."""
        blocked = self.check_prompt(text or "", surface)
        if blocked:
            if isinstance(blocked, Blocked):
                raise GuardrailBlocked(blocked.check, blocked.reason, field)
            raise GuardrailBlocked(type(self).__name__, str(blocked), field)

    # ------------------------------------------------------------------------------------------- frames

    def filter_frames(self, frames: Any) -> Any:
        """uint8 [T, H, W, 3] (numpy or torch) -> the same type after every frame filter. An empty clip (no frames
        decoded) and a guardrail without filters return the input object itself."""
        if not self.frame_filters or frames is None or len(frames) == 0:
            return frames
        is_torch = not isinstance(frames, np.ndarray)
        array = frames.cpu().numpy() if is_torch else frames
        out = array
        for f in self.frame_filters:
            out = f.apply(out)
        if out is array:
            return frames
        if is_torch:
            import torch

            return torch.from_numpy(np.ascontiguousarray(out)).to(frames.device)
        return out

    def check_output(self, result: Any, surface: str = "video") -> Blocked | str | None:
        """The server's output hook: filters `result.frames` in place. Never refuses (the release's video content
        classifier is off in its own release; see docs/GUARDRAILS.md)."""
        if getattr(result, "frames", None) is not None:
            result.frames = self.filter_frames(result.frames)
        return None


def resolve_guardrail(guardrails: "Guardrail | bool | None", default: "Guardrail | None" = None) -> "Guardrail | None":
    """The `guardrails=` argument of the Python surface -> the Guardrail to apply: a Guardrail as is, True the
    built-in one, False no guardrail, None `default`."""
    if guardrails is None:
        return default
    if guardrails is True:
        return Guardrail.default()
    if guardrails is False:
        return None
    if isinstance(guardrails, Guardrail):
        return guardrails
    raise ValueError(f"guardrails: expected a Guardrail, True or False, got {type(guardrails).__name__}")
