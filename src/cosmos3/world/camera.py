"""The second embodiment: a camera looking straight down at a large textured scene, panning and zooming.

Geometry: the scene is a plane (z = 0) of 3.2 m x 1.92 m with a procedural texture. The camera looks along +z
(OpenCV: x right, y down, z forward) from height h, so it sits at (X, Y, -h). A pixel (u, v) sees the scene point
X + (u - W/2) * h / f, Y + (v - H/2) * h / f. Panning moves X, Y; zooming moves the camera along its optical axis
(zoom in = forward = +z), so the actions are the release's camera_pose 9D: translation(3) + rot6d(6), frame to
frame, in the previous camera frame. The camera never rotates, so rot6d is the identity (1, 0, 0, 0, 1, 0).

Rendering samples the texture bilinearly, blending in a 2x downsampled copy when zoomed out (trilinear mip
mapping) so that zooming out does not shimmer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .geometry import CAMERA_DOMAIN, HEIGHT, WIDTH, direction_word, relative_pose_actions, rot6d, toward
from .render import draw_circle, draw_polygon


@dataclass
class CameraConfig:
    fps: int = 16
    duration_s: float = 2.0
    scene_m: tuple = (3.2, 1.92)  # scene size (m): 4x the default view in each direction
    texture_px_per_m: float = 400.0  # texture resolution: 1280 x 768
    focal_px: float = 400.0  # at h = 1 m the view spans 0.8 m, one texture pixel per image pixel
    height_range: tuple = (0.6, 1.6)  # m; zoom limits
    pan_speed: tuple = (0.1, 0.35)  # m/s of the camera over the scene
    zoom_rate: tuple = (0.2, 0.5)  # |d log h / dt| per second
    motion_weights: dict = field(default_factory=lambda: {"pan": 0.35, "zoom": 0.2, "pan_zoom": 0.3,
                                                          "random": 0.15})
    num_textures: int = 16  # scenes are drawn from a bank of textures: a few places, filmed many ways
    texture_seed: int = 0  # seed of texture k is texture_seed * 1000 + k (export sets it from the dataset seed)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def num_frames(self) -> int:
        return 1 + int(round(self.duration_s * self.fps))


@dataclass
class CameraEpisode:
    seed: int
    fps: int
    cfg: CameraConfig
    poses: np.ndarray  # [T, 3] camera X, Y (m, scene frame) and height h (m)
    motion: str  # "pan", "zoom", "pan_zoom" or "random"
    instruction: str
    texture_seed: int  # which procedural scene it films (see make_texture)

    domain = CAMERA_DOMAIN
    kind = "camera"

    @property
    def num_frames(self) -> int:
        return self.poses.shape[0]

    def view_width(self, h: float) -> float:
        return self.cfg.width * h / self.cfg.focal_px

    def state(self) -> np.ndarray:
        """[T, 9] camera position (X, Y, -h) + rot6d of its (constant, identity) orientation."""
        T = self.num_frames
        pos = np.stack([self.poses[:, 0], self.poses[:, 1], -self.poses[:, 2]], -1)
        return np.concatenate([pos, np.tile(rot6d(np.eye(3)), (T, 1))], 1)

    def actions(self) -> np.ndarray:
        """[T, 9] camera_pose actions: row t moves the camera from frame t to t+1 (last row: identity)."""
        s = self.state()
        return relative_pose_actions(s[:, :3], np.tile(np.eye(3), (self.num_frames, 1, 1)))


@lru_cache(maxsize=16)
def make_texture(seed: int, width_px: int = 1280, height_px: int = 768) -> np.ndarray:
    """A colorful procedural scene [H, W, 3] uint8: smooth color fields, patches, discs, stripes and grain.

    Cached (read-only result): camera episodes share a small bank of scenes.
    """
    rng = np.random.default_rng(seed)
    W, H = width_px, height_px
    # Smooth background: a coarse random color grid upsampled bilinearly (separable matrix products).
    gh, gw = 7, 11
    grid = rng.uniform(60, 200, size=(gh, gw, 3))

    def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
        pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
        i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
        f = pos - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] = 1 - f
        m[np.arange(n_out), i0 + 1] = f
        return m

    Ay, Ax = interp_matrix(H, gh), interp_matrix(W, gw)
    img = np.stack([Ay @ grid[:, :, c] @ Ax.T for c in range(3)], -1)
    img = np.clip(img + rng.uniform(-10, 10, size=(H, W, 1)), 0, 255).astype(np.uint8)
    palette = rng.uniform(20, 235, size=(48, 3))
    for k in range(160):  # patches and discs of many sizes, so that motion is visible at every zoom
        color = tuple(float(c) for c in palette[k % len(palette)])
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        r = float(rng.uniform(6, 60))
        if rng.random() < 0.5:
            draw_circle(img, cx, cy, r, color)
        else:
            a = rng.uniform(0, math.pi)
            c, s = math.cos(a), math.sin(a)
            hw, hh = r, r * rng.uniform(0.3, 1.0)
            draw_polygon(img, [(cx + c * x - s * y, cy + s * x + c * y) for x, y in
                               ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh))], color)
    for _ in range(12):  # long thin stripes
        color = tuple(float(c) for c in palette[int(rng.integers(len(palette)))])
        a = rng.uniform(0, math.pi)
        c, s = math.cos(a), math.sin(a)
        cx, cy, L, w = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(150, 500), rng.uniform(3, 8)
        draw_polygon(img, [(cx + c * x - s * y, cy + s * x + c * y) for x, y in
                           ((-L, -w), (L, -w), (L, w), (-L, w))], color)
    img.setflags(write=False)
    return img


def _mip(tex: np.ndarray) -> np.ndarray:
    """2x box-downsampled copy of a texture (float32)."""
    t = tex.astype(np.float32)
    H, W = t.shape[0] // 2 * 2, t.shape[1] // 2 * 2
    t = t[:H, :W]
    return 0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2])


def _bilinear(tex: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Sample tex [h, w, 3] at texel coordinates tx [W] (columns) x ty [H] (rows).

    The view is axis aligned, so interpolation is separable: rows first (on the visible window of the texture
    only), then columns.
    """
    h, w = tex.shape[:2]
    tx = np.clip(tx, 0, w - 1.001)
    ty = np.clip(ty, 0, h - 1.001)
    x0, y0 = tx.astype(np.int64), ty.astype(np.int64)
    fx, fy = (tx - x0).astype(np.float32)[None, :, None], (ty - y0).astype(np.float32)[:, None, None]
    xa, ya = int(x0.min()), int(y0.min())
    win = tex[ya:int(y0.max()) + 2, xa:int(x0.max()) + 2]
    x0, y0 = x0 - xa, y0 - ya
    rows = win[y0] * (1 - fy) + win[y0 + 1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def render_camera(ep: CameraEpisode, texture: np.ndarray | None = None) -> np.ndarray:
    """All frames [T, H, W, 3] uint8 of a camera episode."""
    cfg = ep.cfg
    if texture is None:
        texture = make_texture(ep.texture_seed, int(round(cfg.scene_m[0] * cfg.texture_px_per_m)),
                               int(round(cfg.scene_m[1] * cfg.texture_px_per_m)))
    tex0 = texture.astype(np.float32)
    tex1 = _mip(tex0)
    k = cfg.texture_px_per_m
    u = np.arange(cfg.width) + 0.5 - cfg.width / 2
    v = np.arange(cfg.height) + 0.5 - cfg.height / 2
    out = np.empty((ep.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    for t, (X, Y, h) in enumerate(ep.poses):
        scale = h * k / cfg.focal_px  # texels per image pixel
        # Texel centers sit at integer + 0.5 in texture pixel units, hence the -0.5.
        tx, ty = (X + u * h / cfg.focal_px) * k - 0.5, (Y + v * h / cfg.focal_px) * k - 0.5
        img = _bilinear(tex0, tx, ty)
        blend = min(max(math.log2(scale), 0.0), 1.0) if scale > 1 else 0.0
        if blend > 0:
            img = img * (1 - blend) + _bilinear(tex1, (tx + 0.5) / 2 - 0.5, (ty + 0.5) / 2 - 0.5) * blend
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def simulate_camera(seed: int, cfg: CameraConfig | None = None) -> CameraEpisode:
    """A seeded camera trajectory with a smooth (ease-in, ease-out) pan and/or zoom, and its instruction."""
    cfg = cfg or CameraConfig()
    rng = np.random.default_rng(seed)
    names = list(cfg.motion_weights)
    p = np.array([cfg.motion_weights[k] for k in names], dtype=np.float64)
    motion = names[int(rng.choice(len(names), p=p / p.sum()))]
    texture_seed = cfg.texture_seed * 1000 + int(rng.integers(cfg.num_textures))
    T, dur = cfg.num_frames, (cfg.num_frames - 1) / cfg.fps
    Sw, Sh = cfg.scene_m
    u = np.arange(T) / (T - 1)
    ease = u * u * (3 - 2 * u)  # smoothstep: the camera accelerates and settles like a real rig
    for _ in range(100):
        h0 = float(np.exp(rng.uniform(*np.log(cfg.height_range))))
        heading = rng.integers(8) * math.pi / 4 + rng.uniform(-0.15, 0.15)
        dist = rng.uniform(*cfg.pan_speed) * dur if motion in ("pan", "pan_zoom") else 0.0
        rate = rng.uniform(*cfg.zoom_rate) * rng.choice([-1.0, 1.0]) if motion in ("zoom", "pan_zoom") else 0.0
        h1 = h0 * math.exp(rate * dur)
        if not (cfg.height_range[0] <= h1 <= cfg.height_range[1]):
            continue
        hs = h0 * np.exp(rate * dur * ease)
        if motion == "random":  # a wandering camera: smooth random offsets in x, y and log h
            ph = rng.uniform(0, 2 * math.pi, size=3)
            amp = rng.uniform(0.03, 0.12, size=2)
            wobble = np.stack([amp[0] * np.sin(2 * math.pi * u * 0.7 + ph[0]) - amp[0] * math.sin(ph[0]),
                               amp[1] * np.sin(2 * math.pi * u * 0.9 + ph[1]) - amp[1] * math.sin(ph[1])], -1)
            hs = h0 * np.exp(0.2 * (np.sin(2 * math.pi * u * 0.6 + ph[2]) - math.sin(ph[2])))
        else:
            wobble = np.zeros((T, 2))
        vw, vh = cfg.width * hs.max() / cfg.focal_px, cfg.height * hs.max() / cfg.focal_px
        dx, dy = math.cos(heading) * dist, math.sin(heading) * dist
        lo_x, hi_x = vw / 2 + max(0, -dx) + 0.15, Sw - vw / 2 - max(0, dx) - 0.15
        lo_y, hi_y = vh / 2 + max(0, -dy) + 0.15, Sh - vh / 2 - max(0, dy) - 0.15
        if not (lo_x < hi_x and lo_y < hi_y) or not (hs.min() >= cfg.height_range[0] * 0.8):
            continue
        x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        poses = np.stack([x0 + dx * ease + wobble[:, 0], y0 + dy * ease + wobble[:, 1], hs], -1)
        break
    else:  # pragma: no cover - the loop practically always finds a trajectory
        poses = np.tile([Sw / 2, Sh / 2, 1.0], (T, 1))
        motion = "random"
    pan_word = toward(direction_word(math.cos(heading), math.sin(heading)))
    zoom_word = "in" if rate < 0 else "out"  # lower camera = closer = zoom in
    instruction = {
        "pan": f"Pan the camera {pan_word}.",
        "zoom": f"Zoom the camera {zoom_word}.",
        "pan_zoom": f"Pan the camera {pan_word} while zooming {zoom_word}.",
        "random": "Move the camera around the scene.",
    }[motion]
    return CameraEpisode(seed, cfg.fps, cfg, poses, motion, instruction, texture_seed)
