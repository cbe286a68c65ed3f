"""The embodiment registry (DESIGN 2.8): every robot, vehicle or camera the release names, with its domain id, raw
action width, default chunk, frame rate and camera viewpoint; and the zero-padding of rows to the network's width.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

# Width of the action tokens inside the network; raw rows are zero-padded up to it.
ACTION_DIM = 64

# Domain id 0 means "no action" (DESIGN 2.8); it is not an embodiment.
NO_ACTION_DOMAIN_ID = 0

# The release's AV actions carry translations in units of 1/1.35 m: the public inverse-dynamics cookbook
# (cookbooks/cosmos3/generator/action/run_id_with_diffusers.ipynb) integrates predicted AV deltas with
# ``translation_scale=1.35`` ("the AV convention scales translations by 1.35"), dividing them back to metres.
# Pass it as ``translation_scale`` to :func:`relative_to_absolute` / :func:`absolute_to_relative`.
AV_TRANSLATION_SCALE = 1.35

# Camera viewpoint label -> the framing sentence placed in the action caption. The model was trained with these
# exact strings (the first four are the diffusers reference table; the last two come from the release's training
# framework, where 2D scenes such as Push-T use the top-down sentence).
VIEWPOINT_SENTENCES: dict[str, str] = {
    "ego_view": "This video is captured from a first-person perspective looking at the scene.",
    "third_person_view": (
        "This video is captured from a third-person perspective looking towards the agent from the front."
    ),
    "wrist_view": "This video is captured from a wrist-mounted camera.",
    "concat_view": "This video contains concatenated views from multiple camera perspectives.",
    "top_down_2d_view": "This video is captured from a top-down view of a flat 2D scene.",
    "video_game_view": "This video is captured from an in-game camera perspective in a virtual environment.",
}

# The labels the diffusers 0.42.1 reference pipeline knows; it drops the framing field for any other label.
REFERENCE_VIEWPOINTS: frozenset[str] = frozenset({"ego_view", "third_person_view", "wrist_view", "concat_view"})


class ActionError(ValueError):
    """An action input (file, array, embodiment name, statistics) is invalid; the message says where and why."""


@dataclass(frozen=True)
class Embodiment:
    """One row of the embodiment registry.

    ``viewpoint`` is the camera label (a key of :data:`VIEWPOINT_SENTENCES`, the value the reference pipeline takes
    as ``view_point``); :attr:`viewpoint_sentence` is the caption sentence the model was trained with.
    ``chunk_size`` and ``fps`` are the defaults for one generation chunk.
    """

    name: str
    domain_id: int
    raw_dim: int
    chunk_size: int
    fps: float
    viewpoint: str

    @property
    def viewpoint_sentence(self) -> str:
        return VIEWPOINT_SENTENCES[self.viewpoint]

    @property
    def num_frames(self) -> int:
        """Video frames that go with one default chunk (one more than the number of actions)."""
        return self.chunk_size + 1


def _e(name: str, domain_id: int, raw_dim: int, chunk_size: int, fps: float, viewpoint: str) -> Embodiment:
    return Embodiment(name, domain_id, raw_dim, chunk_size, float(fps), viewpoint)


# Names, ids and widths: DESIGN 2.8 (identical to the release's domain table). Chunk sizes and frame rates:
# - release facts: av 60 @ 10 fps, droid_lerobot 16 @ 15, umi 16 @ 20, hand_pose 16 @ 15 (action cookbook README),
#   camera_pose 60 @ 30 (forward-dynamics cookbook);
# - the training framework's dataset defaults: bridge 16 @ 5, fractal 16 @ 3, libero 16 @ 20,
#   robomind 16 @ 10, agibotworld 16 @ 10, robotwin 16 @ 30;
# - our defaults, 16 steps at the data's usual rate: pusht 10, embodiment_b 10, xdof_yam 30, drawanything 10,
#   behavior1k_lerobot 30, maniparena 30.
# Viewpoints: release / framework defaults where known (av, camera_pose, umi, hand_pose, bridge, fractal: ego;
# droid, libero, robomind-franka-dual, agibotworld, robotwin: concatenated views; pusht: top-down 2D); the rest
# (embodiment_b, robomind-ur, xdof_yam, behavior1k_lerobot, maniparena: concatenated; drawanything: top-down) are
# our choice.
_REGISTRY: tuple[Embodiment, ...] = (
    _e("av", 1, 9, 60, 10, "ego_view"),
    _e("camera_pose", 2, 9, 60, 30, "ego_view"),
    _e("hand_pose", 3, 57, 16, 15, "ego_view"),
    _e("pusht", 4, 2, 16, 10, "top_down_2d_view"),
    _e("libero", 5, 10, 16, 20, "concat_view"),
    _e("umi", 6, 10, 16, 20, "ego_view"),
    _e("bridge_orig_lerobot", 7, 10, 16, 5, "ego_view"),
    _e("droid_lerobot", 8, 10, 16, 15, "concat_view"),
    _e("embodiment_b", 9, 30, 16, 10, "concat_view"),
    _e("robomind-franka-dual", 12, 20, 16, 10, "concat_view"),
    _e("robomind-ur", 13, 10, 16, 10, "concat_view"),
    _e("agibotworld", 15, 29, 16, 10, "concat_view"),
    _e("xdof_yam", 16, 20, 16, 30, "concat_view"),
    _e("robotwin", 17, 14, 16, 30, "concat_view"),
    _e("fractal", 20, 10, 16, 3, "ego_view"),
    _e("drawanything", 21, 3, 16, 10, "top_down_2d_view"),
    _e("behavior1k_lerobot", 22, 23, 16, 30, "concat_view"),
    _e("maniparena", 23, 20, 16, 30, "concat_view"),
)

EMBODIMENTS: dict[str, Embodiment] = {e.name: e for e in _REGISTRY}

# Other names the release uses for the same domain (same id and width, hence the same projection weights):
# the diffusers reference table and the training framework's table.
ALIASES: dict[str, str] = {
    "robomind-franka": "droid_lerobot",
    "galbot": "embodiment_b",
    "agibot_gear_gripper": "agibotworld",
    "agibot_gear_gripper_ext": "agibotworld",
    "embodiment_c_gripper": "agibotworld",
    "embodiment_c_gripper_ext": "agibotworld",
    "molmoact2_yam": "xdof_yam",
    "abc_yam": "xdof_yam",
}

_BY_ID: dict[int, Embodiment] = {e.domain_id: e for e in _REGISTRY}

# Post-trained variants: a domain of the table with its own action layout (their checkpoints re-initialize the action
# heads, so the width differs from the base domain's). Looked up by name only; `domain_id` keeps the base domain's.
# policy_droid: Cosmos3-Nano-Policy-DROID (DESIGN 2.8): joint_pos 8D (7 joints + gripper), robot state as input,
# concat_view of three cameras, chunk 32 at 15 fps; DROID's domain id 8 is our assumption (docs/ROBOTS.md).
VARIANTS: dict[str, Embodiment] = {e.name: e for e in (_e("policy_droid", 8, 8, 32, 15, "concat_view"),)}
# Variants that take the robot state as input: its width (the state is a joint_pos row, as the actions are).
STATE_DIMS: dict[str, int] = {"policy_droid": 8}

# What a variant's concatenated views show, said after the viewpoint sentence in its caption (the release's DROID
# dataset, cosmos-framework droid_lerobot_dataset.py `additional_view_description`, repeated by its policy server
# scripts/action_policy_server_robolab.py `_CONCAT_VIEW_DESCRIPTION`).
VIEW_DESCRIPTIONS: dict[str, str] = {
    "policy_droid": "The top row is from the wrist-mounted camera. The bottom row contains two horizontally "
                    "concatenated third-person perspective views of the scene from opposite sides, with the robot "
                    "visible.",
}

# The two caption forms of the framework's ActionTransformPipeline: "json" (format_prompt_as_json=True, the
# ActionPromptJsonFormatter object; what action_policy_droid_nano trains on) and "plain" (sentences appended by
# ViewpointTextInfo, DurationFPSTextTimeStamps, ResolutionTextInfo). `action_modes.action_caption` builds either.
CAPTION_FORMATS = ("json", "plain")


def check_caption_format(value: str | None, field: str = "caption_format") -> str:
    """None -> "json" (the release's Policy-DROID); anything but "json" / "plain" is refused by name."""
    if value is None:
        return "json"
    if value not in CAPTION_FORMATS:
        raise ActionError(f"{field}: expected one of {list(CAPTION_FORMATS)}, got {value!r}")
    return value


def plain_action_caption(instruction: str, embodiment: Embodiment, num_frames: int, fps: float, height: int,
                         width: int) -> str:
    """The framework's plain-text action caption: instruction, the viewpoint sentence (+ the view description),
    "The video is {whole seconds:.1f} seconds long and is of {fps:.0f} FPS.", "This video is of HxW resolution."
    (H x W: the canvas). Each piece joins with " " after a period, else ". "; an empty instruction stays empty (the
    unconditional caption)."""
    text = instruction.rstrip()
    if not text:
        return ""

    def join(base: str, sentence: str) -> str:
        return base + (" " if base.rstrip().endswith(".") else ". ") + sentence

    view = VIEWPOINT_SENTENCES[embodiment.viewpoint]
    extra = VIEW_DESCRIPTIONS.get(embodiment.name)
    if extra:
        view = join(view, extra.rstrip())
    text = join(text, view)
    text = join(text, f"The video is {float(int(num_frames / fps)):.1f} seconds long and is of {fps:.0f} FPS.")
    return join(text, f"This video is of {int(height)}x{int(width)} resolution.")


def embodiment_names() -> list[str]:
    """Canonical embodiment names, in domain-id order."""
    return [e.name for e in _REGISTRY]


def get_embodiment(name_or_id: str | int | Embodiment) -> Embodiment:
    """Look an embodiment up by name (case-insensitive; aliases accepted), domain id, or pass one through."""
    if isinstance(name_or_id, Embodiment):
        return name_or_id
    if isinstance(name_or_id, numbers.Integral) and not isinstance(name_or_id, bool):
        found = _BY_ID.get(int(name_or_id))
        if found is None:
            ids = ", ".join(str(e.domain_id) for e in _REGISTRY)
            raise ActionError(f"unknown embodiment domain id {int(name_or_id)}; valid ids: {ids}")
        return found
    if isinstance(name_or_id, str):
        key = name_or_id.strip().lower()
        key = ALIASES.get(key, key)
        found = EMBODIMENTS.get(key) or VARIANTS.get(key)
        if found is not None:
            return found
        if key.isdigit():
            return get_embodiment(int(key))
    valid = ", ".join(embodiment_names())
    aliases = ", ".join(f"{a} ({c})" for a, c in ALIASES.items())
    raise ActionError(f"unknown embodiment {name_or_id!r}; valid names: {valid}; aliases: {aliases}")


# ----------------------------------------------------------------------------------------------------------------
# Padding
# ----------------------------------------------------------------------------------------------------------------


def pad_actions(a: Any, width: int = ACTION_DIM) -> Any:
    """Zero-pad the last axis of ``a`` (numpy array or torch tensor) up to ``width`` channels."""
    d = int(a.shape[-1])
    if d > width:
        raise ActionError(f"actions have {d} channels, more than the padded width {width}")
    if d == width:
        return a
    if isinstance(a, np.ndarray):
        pad = [(0, 0)] * (a.ndim - 1) + [(0, width - d)]
        return np.pad(a, pad)
    import torch

    if isinstance(a, torch.Tensor):
        return torch.nn.functional.pad(a, (0, width - d))
    return pad_actions(np.asarray(a), width)


def unpad_actions(a: Any, raw_dim: int) -> Any:
    """Keep the first ``raw_dim`` channels of the last axis (the inverse of :func:`pad_actions`)."""
    d = int(a.shape[-1])
    if not 1 <= raw_dim <= d:
        raise ActionError(f"cannot keep {raw_dim} channels of actions that have {d}")
    return a[..., :raw_dim]
