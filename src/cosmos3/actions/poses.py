"""Pose maths of action rows: rot6d <-> rotation matrices, relative <-> absolute pose chains, Euler angles.

Pose blocks are ``[translation(3), rot6d(6)]``. ``rot6d`` holds the first two *columns* of the rotation matrix,
column 0 then column 1: ``(r00, r10, r20, r01, r11, r21)``; identity is ``(1, 0, 0, 0, 1, 0)``. Relative poses are
"backward frame-wise": step ``i`` is ``inv(P_i) @ P_{i+1}``, the motion to frame ``i + 1`` expressed in the frame of
``i``; chains are rebuilt as ``P_{i+1} = P_i @ rel_i``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .embodiments import ActionError

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


def relative_pose_actions(positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Frame-to-frame pose deltas ``[T, 9]`` (translation + rot6d) from absolute poses: positions ``[T, 3]``,
    rotations ``[T, 3, 3]``. The last row (no next pose) is the identity motion, so that every frame of a LeRobot
    episode carries an action; the others are :func:`absolute_to_relative`'s backward frame-wise steps."""
    positions = np.asarray(positions, dtype=np.float64)
    T = positions.shape[0]
    poses = np.broadcast_to(np.eye(4), (T, 4, 4)).copy()
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = positions
    identity = np.array([[0, 0, 0, 1, 0, 0, 0, 1, 0]], dtype=np.float64)
    return np.concatenate([absolute_to_relative(poses), identity]) if T > 1 else identity.repeat(T, 0)


def euler_xyz_to_matrix(angles: Any) -> np.ndarray:
    """Extrinsic x-y-z Euler angles (roll, pitch, yaw; DROID's convention) -> rotation matrices ``[..., 3, 3]``."""
    a = np.asarray(angles, dtype=np.float64)
    cr, sr = np.cos(a[..., 0]), np.sin(a[..., 0])
    cp, sp = np.cos(a[..., 1]), np.sin(a[..., 1])
    cy, sy = np.cos(a[..., 2]), np.sin(a[..., 2])
    # R = Rz(yaw) @ Ry(pitch) @ Rx(roll)
    return np.stack([
        np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
        np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
        np.stack([-sp, cp * sr, cp * cr], -1),
    ], -2)
