"""Actions: the embodiment registry, action files, pose utilities and normalization (DESIGN 2.8).

An action is one row of numbers per transition between two consecutive video frames; a chunk of ``T`` actions
goes with ``T + 1`` frames. Every embodiment has a fixed raw width (``raw_dim``); inside the network rows are
zero-padded to :data:`ACTION_DIM` channels and a domain id selects the embodiment's projection weights.

Conventions (checked against the public release, see the notes by each function):

* Pose blocks are ``[translation(3), rot6d(6)]``. ``rot6d`` holds the first two *columns* of the rotation matrix,
  column 0 then column 1: ``(r00, r10, r20, r01, r11, r21)``; identity is ``(1, 0, 0, 0, 1, 0)``.
* Relative poses are "backward frame-wise": step ``i`` is ``inv(P_i) @ P_{i+1}``, the motion to frame ``i + 1``
  expressed in the frame of ``i``; chains are rebuilt as ``P_{i+1} = P_i @ rel_i``.
* AV translations are stored in a model unit of :data:`AV_TRANSLATION_SCALE` per metre.
* Optional quantile normalization maps ``q01 -> -1`` and ``q99 -> +1`` per dimension. A checkpoint trained on
  normalized actions carries the statistics in ``action_stats.json`` (one entry per embodiment); the generator then
  normalizes the actions it is given and denormalizes the ones it predicts.

Action files are bare JSON arrays ``[[a_0, ..., a_{D-1}], ...]`` (shape ``[T, D]``) or ``.npy`` arrays. Every
problem with a file or an in-memory array is reported as :class:`ActionError` (a ``ValueError``) whose message
names the source and the exact place at fault.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ACTION_DIM",
    "ALIASES",
    "AV_TRANSLATION_SCALE",
    "EMBODIMENTS",
    "NO_ACTION_DOMAIN_ID",
    "REFERENCE_VIEWPOINTS",
    "VIEWPOINT_SENTENCES",
    "ActionError",
    "ACTION_STATS_FILE",
    "ActionStats",
    "Embodiment",
    "absolute_to_relative",
    "compute_stats",
    "denormalize",
    "embodiment_names",
    "get_embodiment",
    "load_actions",
    "load_stats_file",
    "matrix_to_rot6d",
    "normalize",
    "pad_actions",
    "relative_to_absolute",
    "rot6d_to_matrix",
    "save_actions",
    "save_stats_file",
    "unpad_actions",
]

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
        found = EMBODIMENTS.get(key)
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


# ----------------------------------------------------------------------------------------------------------------
# Action files
# ----------------------------------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _describe(x: Any) -> str:
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, str):
        return f"a string ({x!r})" if len(x) <= 20 else "a string"
    if x is None:
        return "null"
    if _is_number(x):
        return f"a number ({x!r})"
    if isinstance(x, (list, tuple)):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    return f"a {type(x).__name__}"


def _rows_from_nested(data: Any, src: str) -> np.ndarray:
    """Validate a nested list structure as a 2D array of numbers and return it as float64."""
    if not isinstance(data, (list, tuple)):
        raise ActionError(f"{src}: expected a 2D array [T, D] of numbers, got {_describe(data)}")
    if len(data) == 0:
        raise ActionError(f"{src}: empty action array (no rows)")
    width = None
    for i, row in enumerate(data):
        if not isinstance(row, (list, tuple)):
            raise ActionError(
                f"{src}: expected a 2D array [T, D] of numbers, but row {i} is {_describe(row)}, not a list"
            )
        if len(row) == 0:
            raise ActionError(f"{src}: row {i} is empty")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ActionError(f"{src}: ragged rows: row {i} has {len(row)} values, row 0 has {width}")
        for j, v in enumerate(row):
            if not _is_number(v):
                if isinstance(v, (list, tuple)):
                    raise ActionError(
                        f"{src}: expected a 2D array [T, D] of numbers, but row {i} column {j} is a list "
                        "(nested deeper than 2D)"
                    )
                raise ActionError(f"{src}: row {i} column {j} is {_describe(v)}, expected a number")
    try:
        return np.array(data, dtype=np.float64)
    except OverflowError as exc:  # integers too large for a float
        raise ActionError(f"{src}: a value is too large to be a number of the action array ({exc})") from None


def _check_array(arr: np.ndarray, src: str, embodiment: Embodiment | None) -> np.ndarray:
    """Shape, dtype, finiteness and width checks; returns a float32 copy."""
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ActionError(f"{src}: expected an array of numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ActionError(f"{src}: expected a 2D array [T, D], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ActionError(f"{src}: empty action array (no rows)")
    if arr.shape[1] == 0:
        raise ActionError(f"{src}: rows are empty (shape {tuple(arr.shape)})")
    a64 = arr.astype(np.float64)
    bad = ~np.isfinite(a64)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        kind = "NaN" if math.isnan(a64[i, j]) else "infinite"
        raise ActionError(f"{src}: value at row {i} column {j} is {kind} ({a64[i, j]!r})")
    with np.errstate(over="ignore"):
        out = a64.astype(np.float32)
    over = ~np.isfinite(out)
    if over.any():
        i, j = (int(k) for k in np.argwhere(over)[0])
        raise ActionError(f"{src}: value at row {i} column {j} ({a64[i, j]!r}) is outside the float32 range")
    if embodiment is not None and arr.shape[1] != embodiment.raw_dim:
        raise ActionError(
            f"{src}: width mismatch for embodiment {embodiment.name!r}: expected {embodiment.raw_dim} values "
            f"per row, got {arr.shape[1]}"
        )
    return out


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ActionError(f"{path}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ActionError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except RecursionError:
        raise ActionError(f"{path}: not valid JSON: nested too deeply") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ActionError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise ActionError(f"{path}: expected one array in the .npy file, got {type(arr).__name__}")
    return arr


def load_actions(source: Any, embodiment: str | int | Embodiment | None) -> np.ndarray:
    """Read actions as a float32 array ``[T, D]``.

    ``source`` is a path to a bare JSON array or an ``.npy`` file, or the actions themselves (nested lists, a
    numpy array or a torch tensor). With an embodiment, ``D`` must equal its ``raw_dim``; ``None`` skips that
    check. Raises :class:`ActionError` naming the source and the problem (missing file, invalid JSON with its
    position, not a 2D array of numbers, ragged row, NaN / infinite value with its row and column, wrong width).
    """
    emb = get_embodiment(embodiment) if embodiment is not None else None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        src = str(path)
        if not path.exists():
            raise ActionError(f"{src}: action file not found")
        if path.is_dir():
            raise ActionError(f"{src}: is a directory, not an action file")
        if path.suffix.lower() == ".npy":
            return _check_array(_read_npy(path), src, emb)
        return _check_array(_rows_from_nested(_read_json(path), src), src, emb)
    src = "actions"
    if isinstance(source, np.ndarray):
        return _check_array(source, src, emb)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(source, torch.Tensor):
        if source.is_complex() or source.dtype == torch.bool:
            raise ActionError(f"{src}: expected a tensor of real numbers, got dtype {source.dtype}")
        return _check_array(source.detach().to("cpu", torch.float64).numpy(), src, emb)
    if isinstance(source, (list, tuple)):
        return _check_array(_rows_from_nested(source, src), src, emb)
    raise ActionError(f"{src}: expected a path, nested lists, an ndarray or a tensor, got {_describe(source)}")


def _format_row(row: np.ndarray) -> str:
    # str() of a numpy float32 is the shortest text that reads back to the same float32; repr() of a Python float
    # does the same for float64. Either way the file round-trips exactly.
    if row.dtype == np.float32:
        return "[" + ", ".join(str(v) for v in row) + "]"
    return "[" + ", ".join(repr(float(v)) for v in row) + "]"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_actions(path: str | os.PathLike, actions: Any) -> Path:
    """Write ``[T, D]`` actions as a bare JSON array (``.npy`` when the name ends so), atomically.

    float32 input is written with the shortest decimal text that reads back to the same float32, wider input with
    full float64 precision, so :func:`load_actions` returns exactly the saved float32 values.
    """
    path = Path(path)
    arr = actions
    try:
        import torch

        if isinstance(arr, torch.Tensor):
            arr = arr.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(arr, (list, tuple)):
        arr = _rows_from_nested(arr, "actions")
    arr = np.asarray(arr)
    _check_array(arr, "actions", None)  # same rules as loading: 2D, numbers, finite, non-empty
    if arr.dtype.kind in "iu" or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if path.suffix.lower() == ".npy":
        _atomic_write(path, lambda f: np.save(f, arr.astype(np.float32), allow_pickle=False))
        return path
    text = "[\n" + ",\n".join("  " + _format_row(r) for r in arr) + "\n]\n"
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Poses
# ----------------------------------------------------------------------------------------------------------------


def rot6d_to_matrix(r6: Any) -> np.ndarray:
    """``[..., 6]`` rot6d -> ``[..., 3, 3]`` rotation matrices (float64), by Gram-Schmidt.

    Layout (release convention, DESIGN 2.8 and the training framework's ``convert_rotation``): the first three
    values are column 0 of the matrix and the next three column 1. Column 0 is normalized, column 1 is made
    orthogonal to it and normalized, column 2 is their cross product, so the result is a proper rotation
    (orthonormal, determinant +1) even when the input is not exactly orthonormal.
    """
    r = np.asarray(r6, dtype=np.float64)
    if r.ndim < 1 or r.shape[-1] != 6:
        raise ActionError(f"rot6d must have shape [..., 6], got {tuple(r.shape)}")
    a1, a2 = r[..., 0:3], r[..., 3:6]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    b1 = a1 / np.where(n1 > 0, n1, 1.0)
    u2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    n2 = np.linalg.norm(u2, axis=-1, keepdims=True)
    degenerate = (n1[..., 0] < 1e-9) | (n2[..., 0] < 1e-9 * np.maximum(1.0, n1[..., 0])) | ~np.isfinite(r).all(-1)
    if degenerate.any():
        where = tuple(int(k) for k in np.argwhere(degenerate)[0]) if r.ndim > 1 else ()
        raise ActionError(
            f"rot6d at index {list(where)} does not define a rotation: its two columns must be finite, non-zero "
            "and not parallel"
        )
    b2 = u2 / n2
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def matrix_to_rot6d(R: Any) -> np.ndarray:
    """``[..., 3, 3]`` rotation matrices -> ``[..., 6]`` rot6d (column 0, then column 1)."""
    m = np.asarray(R, dtype=np.float64)
    if m.ndim < 2 or m.shape[-2:] != (3, 3):
        raise ActionError(f"rotation matrices must have shape [..., 3, 3], got {tuple(m.shape)}")
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def _check_pose(p: np.ndarray, what: str) -> None:
    if p.shape[-2:] != (4, 4):
        raise ActionError(f"{what} must be 4x4 homogeneous poses, got shape {tuple(p.shape)}")
    if not np.isfinite(p).all():
        raise ActionError(f"{what} contain NaN or infinite values")


def relative_to_absolute(
    rel: Any,
    start_pose: Any = None,
    *,
    translation_scale: float = 1.0,
    offset: int = 0,
) -> np.ndarray:
    """Chain relative pose actions ``[T, D]`` into absolute poses ``[T + 1, 4, 4]`` (float64).

    The 9D pose block ``[translation(3), rot6d(6)]`` is read from columns ``offset:offset + 9`` (a trailing
    gripper or other blocks are ignored). Backward frame-wise convention: ``P_0 = start_pose`` (identity by
    default) and ``P_{i+1} = P_i @ T_i`` where ``T_i`` is step ``i`` as a 4x4 transform. Translations are divided
    by ``translation_scale`` first (pass :data:`AV_TRANSLATION_SCALE` to get metres from AV actions).
    """
    a = np.asarray(rel, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < offset + 9 or offset < 0:
        raise ActionError(
            f"relative poses must have shape [T, D] with a 9D pose block at columns {offset}:{offset + 9}, "
            f"got shape {tuple(a.shape)}"
        )
    if not translation_scale or not math.isfinite(translation_scale):
        raise ActionError(f"translation_scale must be a finite non-zero number, got {translation_scale!r}")
    block = a[:, offset : offset + 9]
    if not np.isfinite(block).all():
        raise ActionError("relative poses contain NaN or infinite values")
    steps = np.broadcast_to(np.eye(4), (a.shape[0], 4, 4)).copy()
    steps[:, :3, :3] = rot6d_to_matrix(block[:, 3:9])
    steps[:, :3, 3] = block[:, 0:3] / translation_scale
    start = np.eye(4) if start_pose is None else np.asarray(start_pose, dtype=np.float64)
    _check_pose(start, "start_pose")
    if start.shape != (4, 4):
        raise ActionError(f"start_pose must be one 4x4 pose, got shape {tuple(start.shape)}")
    poses = np.empty((a.shape[0] + 1, 4, 4))
    poses[0] = start
    for i in range(a.shape[0]):
        poses[i + 1] = poses[i] @ steps[i]
    return poses


def absolute_to_relative(poses: Any, *, translation_scale: float = 1.0) -> np.ndarray:
    """Absolute poses ``[N, 4, 4]`` -> relative pose actions ``[N - 1, 9]`` (float64).

    Step ``i`` is ``inv(P_i) @ P_{i+1}`` (the release's ``backward_framewise`` convention), written as
    ``[translation * translation_scale, rot6d]``. Inverse of :func:`relative_to_absolute`.
    """
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3:
        raise ActionError(f"absolute poses must have shape [N, 4, 4], got {tuple(p.shape)}")
    _check_pose(p, "absolute poses")
    if p.shape[0] < 2:
        raise ActionError(f"need at least 2 absolute poses to form a relative step, got {p.shape[0]}")
    if not translation_scale or not math.isfinite(translation_scale):
        raise ActionError(f"translation_scale must be a finite non-zero number, got {translation_scale!r}")
    r_prev, t_prev = p[:-1, :3, :3], p[:-1, :3, 3]
    r_next, t_next = p[1:, :3, :3], p[1:, :3, 3]
    # Rigid inverse: inv([R t]) = [R^T, -R^T t]; so the step is R_prev^T R_next and R_prev^T (t_next - t_prev).
    r_rel = np.einsum("nji,njk->nik", r_prev, r_next)
    t_rel = np.einsum("nji,nj->ni", r_prev, t_next - t_prev)
    return np.concatenate([t_rel * translation_scale, matrix_to_rot6d(r_rel)], axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# Normalization
# ----------------------------------------------------------------------------------------------------------------

# Dimensions whose quantile range is below this are treated as constant (see normalize).
_MIN_RANGE = 1e-8


def _vector(value: Any, name: str, src: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ActionError(f"{src}: {name} must be a list of numbers") from None
    if v.ndim != 1 or v.size == 0:
        raise ActionError(f"{src}: {name} must be a non-empty 1D list of numbers, got shape {tuple(v.shape)}")
    if not np.isfinite(v).all():
        raise ActionError(f"{src}: {name} contains NaN or infinite values")
    return v


def _validated_stats(q01: Any, q99: Any, mean: Any, std: Any, src: str) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {}
    for name, value in (("q01", q01), ("q99", q99), ("mean", mean), ("std", std)):
        if value is None:
            if name in ("q01", "q99"):
                raise ActionError(f"{src}: {name} is required")
            out[name] = None
            continue
        v = _vector(value, name, src)
        if name != "q01" and v.size != out["q01"].size:
            raise ActionError(f"{src}: {name} has {v.size} values, q01 has {out['q01'].size}")
        out[name] = v
    lo, hi = out["q01"], out["q99"]
    if (hi < lo).any():
        j = int(np.argmax(hi < lo))
        raise ActionError(f"{src}: q99 < q01 in dimension {j} ({hi[j]!r} < {lo[j]!r})")
    if out["std"] is not None and (out["std"] < 0).any():
        raise ActionError(f"{src}: std is negative in dimension {int(np.argmax(out['std'] < 0))}")
    return out


@dataclass(frozen=True, eq=False)
class ActionStats:
    """Per-dimension action statistics: 1st and 99th percentiles (required), mean and std (optional).

    Stored as JSON ``{"q01": [...], "q99": [...], "mean": [...], "std": [...]}`` (the release ships q01/q99-only
    files, which load with ``mean = std = None``; a ``{"global": {...}}`` wrapper is accepted too).
    """

    q01: np.ndarray
    q99: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, value in _validated_stats(self.q01, self.q99, self.mean, self.std, "action stats").items():
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.q01.size)

    def to_dict(self) -> dict[str, list[float]]:
        out = {"q01": self.q01.tolist(), "q99": self.q99.tolist()}
        if self.mean is not None:
            out["mean"] = self.mean.tolist()
        if self.std is not None:
            out["std"] = self.std.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], src: str = "action stats") -> ActionStats:
        if not isinstance(data, Mapping):
            raise ActionError(f"{src}: expected a JSON object with q01 and q99, got {_describe(data)}")
        if "q01" not in data and isinstance(data.get("global"), Mapping):
            data = data["global"]
        missing = [k for k in ("q01", "q99") if data.get(k) is None]
        if missing:
            raise ActionError(f"{src}: missing {', '.join(missing)}")
        return cls(**_validated_stats(data["q01"], data["q99"], data.get("mean"), data.get("std"), src))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActionStats:
        path = Path(path)
        if not path.is_file():
            raise ActionError(f"{path}: statistics file not found")
        return cls.from_dict(_read_json(path), str(path))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path


def compute_stats(arrays: np.ndarray | Iterable[Any]) -> ActionStats:
    """Statistics over all rows of one ``[T, D]`` array or several (stacked along T).

    q01 / q99 are numpy's default (linear-interpolation) 1st and 99th percentiles; std is the population std.
    """
    if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
        parts = [arrays]
    else:
        parts = list(arrays)
    if not parts:
        raise ActionError("compute_stats: no arrays given")
    mats = []
    for k, part in enumerate(parts):
        m = load_actions(part, None).astype(np.float64) if not isinstance(part, np.ndarray) else part
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] == 0:
            raise ActionError(f"compute_stats: array {k} must be a non-empty [T, D] array, got {tuple(m.shape)}")
        if mats and m.shape[1] != mats[0].shape[1]:
            raise ActionError(f"compute_stats: array {k} has {m.shape[1]} columns, array 0 has {mats[0].shape[1]}")
        mats.append(m)
    a = np.concatenate(mats, axis=0)
    if not np.isfinite(a).all():
        raise ActionError("compute_stats: the arrays contain NaN or infinite values")
    q01, q99 = np.quantile(a, [0.01, 0.99], axis=0)
    return ActionStats(q01=q01, q99=q99, mean=a.mean(axis=0), std=a.std(axis=0))


def _stats_inputs(a: Any, stats: ActionStats) -> tuple[np.ndarray, np.dtype]:
    x = np.asarray(a)
    if x.ndim < 1 or x.shape[-1] != stats.dim:
        raise ActionError(f"actions have {x.shape[-1] if x.ndim else 0} channels, the statistics have {stats.dim}")
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    return x.astype(np.float64), np.dtype(out_dtype)


def normalize(a: Any, stats: ActionStats) -> np.ndarray:
    """Quantile normalization per dimension: ``2 * (a - q01) / (q99 - q01) - 1`` (q01 -> -1, q99 -> +1).

    Values outside the quantiles map outside [-1, 1] (no clipping). Dimensions whose range ``q99 - q01`` is below
    1e-8 carry no information and would divide by zero; they are set to 0 instead.
    """
    x, dtype = _stats_inputs(a, stats)
    span = stats.q99 - stats.q01
    flat = span < _MIN_RANGE
    y = 2.0 * (x - stats.q01) / np.where(flat, 1.0, span) - 1.0
    y = np.where(flat, 0.0, y)
    return y.astype(dtype)


def denormalize(a: Any, stats: ActionStats) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(a + 1) / 2 * (q99 - q01) + q01``; constant dimensions return their value."""
    x, dtype = _stats_inputs(a, stats)
    span = stats.q99 - stats.q01
    flat = span < _MIN_RANGE
    y = (x + 1.0) * 0.5 * span + stats.q01
    y = np.where(flat, 0.5 * (stats.q01 + stats.q99), y)
    return y.astype(dtype)


# The statistics a checkpoint (or a folder of precomputed latents) was trained with, one entry per embodiment.
ACTION_STATS_FILE = "action_stats.json"


def load_stats_file(path: str | os.PathLike) -> dict[str, ActionStats]:
    """``{embodiment name: ActionStats}`` from an action_stats.json; a missing file means no normalization ({})."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise ActionError(f"{path}: expected a JSON object {{embodiment name: {{q01, q99, ...}}}}, "
                          f"got {_describe(data)}")
    out = {}
    for name, entry in data.items():
        try:
            emb = get_embodiment(name)
        except ValueError as e:
            raise ActionError(f"{path}: {e}") from None
        stats = ActionStats.from_dict(entry, f"{path}: {name}")
        if stats.dim != emb.raw_dim:
            raise ActionError(f"{path}: {name} has {stats.dim} statistics per step, the embodiment has "
                              f"{emb.raw_dim} action dimensions")
        out[emb.name] = stats
    return out


def save_stats_file(path: str | os.PathLike, stats: Mapping[str, ActionStats]) -> Path:
    path = Path(path)
    text = json.dumps({name: s.to_dict() for name, s in sorted(stats.items())}, indent=2) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def __getattr__(name: str):
    # The LeRobot v3 reader lives with the synthetic world that writes such datasets; it is loaded lazily so this
    # module stays light (and free of the world's imports) for code that only reads action files.
    if name == "LeRobotDataset":
        from .world.lerobot import LeRobotDataset

        return LeRobotDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
