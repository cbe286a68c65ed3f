"""Geometry shared by the synthetic world: the table, the palette, block shapes, and pose deltas.

Conventions (used everywhere in `cosmos3.world`):
- Units are meters, seconds, kilograms and radians.
- The table frame is the fixed overhead camera's frame (OpenCV style): x points right in the image, y points down
  in the image, z points into the table. The origin is the top-left corner of the image, so a point (x, y) on the
  table lands on pixel coordinates (x * px_per_m, y * px_per_m); pixel (row i, column j) has its center at
  ((j + 0.5) / px_per_m, (i + 0.5) / px_per_m).
- Angles turn about +z, so a positive angle turns +x toward +y (clockwise as seen in the image).
- Pose actions follow DESIGN 2.8: translation(3) + rot6d(6), frame to frame. The delta from pose t to pose t+1 is
  expressed in the frame of pose t: translation = R_t^T (p_{t+1} - p_t) and R_rel = R_t^T R_{t+1}. rot6d is the
  first two columns of R_rel, column after column, so the identity is (1, 0, 0, 0, 1, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..actions.poses import relative_pose_actions  # noqa: F401  (the world's actions use it)
from ..actions.poses import matrix_to_rot6d as rot6d  # noqa: F401  (the world's name for it)

# Image size of the 256p tier at 16:9 (DESIGN 2.7): 320 x 192.
WIDTH = 320
HEIGHT = 192

# Domain ids from DESIGN 2.8. The gripper speaks the single-arm 10D format of UMI (translation + rot6d + gripper);
# the moving camera speaks camera_pose 9D (translation + rot6d).
GRIPPER_DOMAIN = ("umi", 6, 10)
CAMERA_DOMAIN = ("camera_pose", 2, 9)

# Saturated, distinct block colors (RGB) on a neutral table. They are far apart in RGB and far from the table,
# rim and gripper colors, so that the trackers in track.py can segment them by color alone.
BLOCK_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50),
    "green": (50, 170, 70),
    "blue": (50, 90, 220),
    "yellow": (235, 200, 40),
}
TABLE_COLOR = (150, 150, 150)  # neutral gray table top
RIM_COLOR = (110, 100, 90)  # darker brown-gray rim around the table
FINGER_COLOR = (240, 240, 240)  # white fingers: the gripper's position is the centroid of the white pixels
PALM_COLOR = (30, 30, 30)  # dark palm behind the fingers: gives the gripper's heading

SHAPES = ("square", "circle", "triangle")


@dataclass(frozen=True)
class Table:
    """The tabletop as the camera sees it."""

    px_per_m: float = 400.0  # 320 x 192 px show 0.8 m x 0.48 m of table
    rim: float = 0.02  # m; the raised rim (8 px) that keeps blocks on the table, drawn darker
    width_px: int = WIDTH
    height_px: int = HEIGHT

    @property
    def width(self) -> float:
        return self.width_px / self.px_per_m

    @property
    def height(self) -> float:
        return self.height_px / self.px_per_m

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Inner table bounds (x0, y0, x1, y1) in meters: blocks live inside them."""
        return (self.rim, self.rim, self.width - self.rim, self.height - self.rim)


# Block sizes, chosen so that the three shapes have similar areas (and masses): about 22-26 px across.
BLOCK_SIZES = {
    "square": 0.055,  # side
    "circle": 0.03,  # radius
    "triangle": 0.066,  # side of the equilateral triangle
}


def shape_vertices(shape: str, size: float) -> list[tuple[float, float]] | None:
    """Vertices of a block in its own frame (centroid at the origin), or None for a circle.

    The triangle points along +x at angle 0; the square is axis aligned at angle 0.
    """
    if shape == "circle":
        return None
    if shape == "square":
        h = size / 2
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        r = size / math.sqrt(3.0)  # circumradius of the equilateral triangle
        return [(r * math.cos(a), r * math.sin(a)) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def box_vertices(length: float, width: float) -> list[tuple[float, float]]:
    """Vertices of a box, length along x and width along y, centered at the origin."""
    hl, hw = length / 2, width / 2
    return [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]


def shape_area(shape: str, size: float) -> float:
    if shape == "circle":
        return math.pi * size * size
    if shape == "square":
        return size * size
    if shape == "triangle":
        return math.sqrt(3.0) / 4 * size * size
    raise ValueError(shape)


def shape_inertia(shape: str, size: float, mass: float) -> float:
    """Moment of inertia about the centroid (axis z) of a uniform block."""
    if shape == "circle":
        return 0.5 * mass * size * size
    if shape == "square":
        return mass * size * size / 6.0
    if shape == "triangle":
        return mass * size * size / 12.0
    raise ValueError(shape)


def bounding_radius(shape: str, size: float) -> float:
    if shape == "circle":
        return size
    return max(math.hypot(x, y) for x, y in shape_vertices(shape, size))


def transform(verts: list[tuple[float, float]], x: float, y: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a body frame moved to pose (x, y, angle) in the table frame."""
    c, s = math.cos(angle), math.sin(angle)
    return [(x + c * vx - s * vy, y + s * vx + c * vy) for vx, vy in verts]


def wrap_angle(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


# ---- 3D poses, rot6d ---------------------------------------------------------------------------------------------


def rot_z(angle: np.ndarray | float) -> np.ndarray:
    """Rotation matrices about z, shape [..., 3, 3]."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def direction_word(dx: float, dy: float) -> str:
    """Image-space direction of a displacement: 'right', 'up and to the left', ... (y grows downward)."""
    ang = math.degrees(math.atan2(-dy, dx)) % 360.0  # counter-clockwise from +x as a viewer sees it
    words = ["right", "up and to the right", "up", "up and to the left", "left", "down and to the left", "down",
             "down and to the right"]
    return words[int(((ang + 22.5) % 360.0) // 45.0)]


def toward(word: str) -> str:
    """Direction word as a phrase after a verb: 'left' -> 'to the left', 'up and to the left' unchanged."""
    return f"to the {word}" if word in ("left", "right") else word
