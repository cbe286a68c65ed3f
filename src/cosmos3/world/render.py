"""Rendering the tabletop to RGB frames: flat colors with anti-aliased edges, vectorized with numpy.

Each shape is drawn from its signed distance: for a pixel center p, sd(p) < 0 inside; the pixel's coverage is
clip(0.5 - sd_in_pixels, 0, 1). That gives clean, sub-pixel-accurate edges (so block positions can be recovered from
the pixels to a fraction of a pixel) at the cost of a few array operations on each shape's bounding box.

Drawing order: table and rim, blocks, then the gripper's palm (dark) and fingers (white). Nothing overlaps in a
physically valid frame (the simulator forbids it), so the order only matters for the deliberately violated clips.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .geometry import BLOCK_COLORS, FINGER_COLOR, PALM_COLOR, RIM_COLOR, TABLE_COLOR, Table, shape_vertices
from .physics import BlockSpec, GripperConfig


@lru_cache(maxsize=8)
def _background(table: Table) -> np.ndarray:
    img = np.empty((table.height_px, table.width_px, 3), dtype=np.uint8)
    img[:] = RIM_COLOR
    r = int(round(table.rim * table.px_per_m))
    img[r:table.height_px - r, r:table.width_px - r] = TABLE_COLOR
    img.setflags(write=False)
    return img


def _blend(img: np.ndarray, color, x0: int, y0: int, alpha: np.ndarray) -> None:
    """Composite a flat color with per-pixel coverage alpha into img[y0:, x0:] (in place)."""
    h, w = alpha.shape
    region = img[y0:y0 + h, x0:x0 + w].astype(np.float32)
    a = alpha[..., None]
    region += a * (np.asarray(color, np.float32) - region)
    img[y0:y0 + h, x0:x0 + w] = np.rint(region).astype(np.uint8)


def _grid(img: np.ndarray, cx: float, cy: float, reach: float):
    """Pixel-center coordinates (in pixels) of the box around (cx, cy) +- reach, clipped to the image."""
    H, W = img.shape[:2]
    x0, x1 = max(0, int(math.floor(cx - reach)) - 1), min(W, int(math.ceil(cx + reach)) + 2)
    y0, y1 = max(0, int(math.floor(cy - reach)) - 1), min(H, int(math.ceil(cy + reach)) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5
    return x0, y0, xs[None, :], ys[:, None]


def draw_polygon(img: np.ndarray, verts_px: list[tuple[float, float]], color) -> None:
    """Anti-aliased convex polygon; vertices in pixel coordinates."""
    vs = np.asarray(verts_px, dtype=np.float64)
    c = vs.mean(0)
    g = _grid(img, c[0], c[1], float(np.max(np.hypot(*(vs - c).T))))
    if g is None:
        return
    x0, y0, xs, ys = g
    sd = None
    for i in range(len(vs)):
        (ax, ay), (bx, by) = vs[i], vs[(i + 1) % len(vs)]
        nx, ny = by - ay, ax - bx
        n = math.hypot(nx, ny)
        nx, ny = nx / n, ny / n
        if nx * (ax - c[0]) + ny * (ay - c[1]) < 0:
            nx, ny = -nx, -ny
        d = np.float32(nx) * (xs - np.float32(ax)) + np.float32(ny) * (ys - np.float32(ay))
        sd = d if sd is None else np.maximum(sd, d)
    _blend(img, color, x0, y0, np.clip(0.5 - sd, 0.0, 1.0))


def draw_circle(img: np.ndarray, cx: float, cy: float, r: float, color) -> None:
    """Anti-aliased disc; center and radius in pixels."""
    g = _grid(img, cx, cy, r)
    if g is None:
        return
    x0, y0, xs, ys = g
    sd = np.sqrt((xs - np.float32(cx)) ** 2 + (ys - np.float32(cy)) ** 2) - np.float32(r)
    _blend(img, color, x0, y0, np.clip(0.5 - sd, 0.0, 1.0))


def draw_block(img: np.ndarray, spec: BlockSpec, x: float, y: float, angle: float, ppm: float, color=None) -> None:
    color = BLOCK_COLORS[spec.color] if color is None else color
    if spec.shape == "circle":
        draw_circle(img, x * ppm, y * ppm, spec.size * ppm, color)
        return
    c, s = math.cos(angle), math.sin(angle)
    verts = [((x + c * vx - s * vy) * ppm, (y + s * vx + c * vy) * ppm) for vx, vy in shape_vertices(spec.shape,
                                                                                                      spec.size)]
    draw_polygon(img, verts, color)


def gripper_boxes(g: GripperConfig, x: float, y: float, yaw: float, opening: float):
    """[(color, corners)] for the palm and the two fingers, corners in meters (table frame)."""
    c, s = math.cos(yaw), math.sin(yaw)

    def box(cx, cy, length, width):  # box centered at (cx, cy) in the gripper frame, length along forward
        hl, hw = length / 2, width / 2
        pts = [(cx - hl, cy - hw), (cx + hl, cy - hw), (cx + hl, cy + hw), (cx - hl, cy + hw)]
        return [(x + c * px - s * py, y + s * px + c * py) for px, py in pts]

    off = opening / 2 + g.finger_width / 2
    back = -(g.finger_length / 2 + g.palm_depth / 2)
    return [
        (PALM_COLOR, box(back, 0.0, g.palm_depth, g.max_opening + 2 * g.finger_width)),
        (FINGER_COLOR, box(0.0, off, g.finger_length, g.finger_width)),
        (FINGER_COLOR, box(0.0, -off, g.finger_length, g.finger_width)),
    ]


def render_frame(table: Table, blocks: list[BlockSpec], poses, gripper, gcfg: GripperConfig,
                 visible=None, colors=None) -> np.ndarray:
    """One frame [H, W, 3] uint8. poses: [n, 3] (x, y, angle); gripper: (x, y, yaw, opening) or None.

    visible (optional [n] bools) hides blocks, colors (optional [n] RGB) repaints them: both only serve the clips
    with deliberate physics violations.
    """
    img = _background(table).copy()
    ppm = table.px_per_m
    for i, (spec, (x, y, a)) in enumerate(zip(blocks, poses)):
        if visible is None or visible[i]:
            draw_block(img, spec, float(x), float(y), float(a), ppm, None if colors is None else colors[i])
    if gripper is not None:
        for color, corners in gripper_boxes(gcfg, *(float(v) for v in gripper)):
            draw_polygon(img, [(px * ppm, py * ppm) for px, py in corners], color)
    return img


def render_tabletop(ep, block_poses: np.ndarray | None = None, visible: np.ndarray | None = None) -> np.ndarray:
    """All frames of a TabletopEpisode: uint8 [T, H, W, 3].

    block_poses [T, n, 3] and visible [T, n] override the simulated ones (violated clips).
    """
    poses = ep.block_poses if block_poses is None else block_poses
    T = poses.shape[0]
    out = np.empty((T, ep.table.height_px, ep.table.width_px, 3), dtype=np.uint8)
    for t in range(T):
        out[t] = render_frame(ep.table, ep.blocks, poses[t], ep.gripper[t], ep.gripper_cfg,
                              None if visible is None else visible[t])
    return out
