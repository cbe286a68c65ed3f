"""Recall and cost of the face-blur guardrail's detector (OpenCV's frontal-face Haar cascade), on faces rendered here.

    python benchmarks/bench_face_blur.py

No face photographs ship in the installed packages (scikit-image, with its `astronaut`, is not a dependency; the face
cards of gymnasium's blackjack are 20-pixel drawings the cascade never fires on), so the faces are drawn: a shaded
oval with hair, brows, eyes, nose and mouth, softened by a Gaussian blur, on a flat background. Each row varies one
thing from a 96-pixel upright face on a brown background: size, in-plane tilt, turn (the face squeezed sideways and
shifted, a crude profile), skin tone, background brightness, contrast, occlusion (dark glasses). Recall is the share of renders where the detector finds a
box overlapping the face; false positives are counted on face-free frames (noise, gradients, stripes, and the
repository's fixture images when present). Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

SKIN = {"light": (222, 184, 150), "medium": (180, 130, 90), "dark": (110, 72, 50), "very dark": (70, 45, 32)}


def render_face(size: int = 96, tilt: float = 0.0, turn: float = 0.0, skin=(222, 184, 150), contrast: float = 1.0,
                glasses: bool = False, background=(120, 90, 60), canvas: int | None = None, blur: float = 2.0,
                center: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An RGB uint8 picture [canvas, canvas, 3] of one drawn face -> (picture, the face's box x, y, w, h).
    `size`: the face's height in pixels; `tilt`: in-plane rotation in degrees; `turn` in [0, 1): 0 frontal, towards
    1 squeezed to one side as a head turning away."""
    import cv2

    canvas = canvas or max(2 * size, 64)
    img = np.zeros((canvas, canvas, 3), np.uint8)
    img[:] = background
    cx, cy = center or (canvas // 2, canvas // 2)
    s = size / 128  # drawn on a 128-pixel face, scaled
    sx = 1.0 - 0.6 * turn  # horizontal squeeze of the features when the head turns
    shift = int(18 * s * turn)  # features slide towards the turned side

    def px(v: float) -> int:
        return max(1, int(round(v * s)))

    skin = tuple(int(c) for c in skin)
    cv2.ellipse(img, (cx, cy - px(20)), (int(px(52) * (1 - 0.3 * turn)), px(50)), 0, 180, 360, (35, 28, 25), -1)
    cv2.ellipse(img, (cx, cy), (int(px(46) * (1 - 0.3 * turn)), px(60)), 0, 0, 360, skin, -1)
    for dx in (-1, 1):
        ex, ey = cx + shift + int(dx * px(20) * sx), cy - px(12)
        brow = (45, 35, 30)
        cv2.line(img, (ex - int(px(12) * sx), ey - px(12)), (ex + int(px(12) * sx), ey - px(13)), brow, px(4))
        if glasses:
            cv2.ellipse(img, (ex, ey), (int(px(14) * sx), px(9)), 0, 0, 360, (15, 15, 15), -1)
        else:
            cv2.ellipse(img, (ex, ey), (int(px(10) * sx), px(5)), 0, 0, 360, (235, 235, 235), -1)
            cv2.circle(img, (ex, ey), px(4), (40, 25, 20), -1)
    shade = tuple(int(c * 0.75) for c in skin)
    cv2.line(img, (cx + shift, cy - px(8)), (cx + shift - px(4), cy + px(16)), shade, px(3))
    cv2.ellipse(img, (cx + shift, cy + px(32)), (int(px(16) * sx), px(5)), 0, 0, 360, (150, 60, 60), -1)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), max(0.5, blur * s))
    if tilt:
        m = cv2.getRotationMatrix2D((cx, cy), tilt, 1.0)
        img = cv2.warpAffine(img, m, (canvas, canvas), borderValue=background)
    if contrast != 1.0:
        mean = img.reshape(-1, 3).mean(0)
        img = np.clip((img - mean) * contrast + mean, 0, 255).astype(np.uint8)
    half_w, half_h = px(52), px(66)
    return img, (cx - half_w, cy - half_h - px(14), 2 * half_w, 2 * half_h + px(14))


def _overlaps(a, b) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy >= 0.3 * min(aw * ah, bw * bh)


def face_free_frames(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [("noise", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
              ("gradient", np.broadcast_to(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None],
                                           (256, 256, 3)).copy()),
              ("stripes", np.where((np.arange(256)[:, None] // 8) % 2 == 0, 200, 40).astype(np.uint8)[..., None]
               .repeat(256, 1).repeat(3, 2)),
              ("flat", np.full((256, 256, 3), 128, np.uint8))]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        from fixture_paths import FIXTURES
        from PIL import Image

        for p in sorted((FIXTURES / "images").glob("*")):
            frames.append((f"fixture {p.name}", np.asarray(Image.open(p).convert("RGB"))))
    except Exception:  # the fixtures are optional
        pass
    return frames


def main() -> None:
    from cosmos3.guardrails.faces import FaceBlur

    blur = FaceBlur()
    rows: list[tuple[str, str, int, int]] = []

    def measure(group: str, label: str, renders: list) -> None:
        hits = sum(any(_overlaps(b, box) for b in blur.detect(img)) for img, box in renders)
        rows.append((group, label, hits, len(renders)))

    def jittered(**kw) -> list:  # 8 placements of the same face on the canvas: the detector is position-sensitive
        size = kw.get("size", 96)
        canvas = 2 * size + 16
        return [render_face(canvas=canvas, center=(canvas // 2 + dx, canvas // 2 + dy), **kw)
                for dx in (-6, 0, 5, 7) for dy in (-5, 4)]

    for size in (16, 20, 24, 32, 48, 96, 192):
        measure("size (px)", str(size), jittered(size=size))
    for tilt in (0, 10, 20, 30, 45, 90):
        measure("tilt (deg)", str(tilt), jittered(tilt=tilt))
    upright = blur
    blur = FaceBlur(tilts=(0.0, -30.0, 30.0))
    for tilt in (30, 45, 60):
        measure("tilt, 3 angles", str(tilt), jittered(tilt=tilt))
    blur = upright
    for turn in (0.0, 0.25, 0.5, 0.75):
        measure("turn", f"{turn:g}", jittered(turn=turn))
    for name, rgb in SKIN.items():
        measure("skin", name, jittered(skin=rgb))
    for bg_name, bg in (("light", (230, 230, 230)), ("grey", (160, 160, 160)), ("dark", (30, 30, 30))):
        for name in ("light", "very dark"):
            measure(f"{bg_name} bg", f"{name} skin", jittered(skin=SKIN[name], background=bg))
    for c in (1.0, 0.5, 0.3, 0.15):
        measure("contrast", f"{c:g}", jittered(contrast=c))
    measure("occlusion", "dark glasses", jittered(glasses=True))

    false_pos = [(name, len(blur.detect(f))) for name, f in face_free_frames()]
    frame = render_face(size=96, canvas=256)[0]
    clip = np.stack([frame] * 16)
    start = time.perf_counter()
    blur.apply(clip)
    per_frame_ms = (time.perf_counter() - start) / len(clip) * 1000
    start = time.perf_counter()
    FaceBlur(tilts=(0.0, -30.0, 30.0)).apply(clip)
    three_ms = (time.perf_counter() - start) / len(clip) * 1000

    print(f"{'vary':<12}{'value':>14}{'found':>8}{'recall':>9}")
    for group, label, hits, n in rows:
        print(f"{group:<12}{label:>14}{hits:>5}/{n:<2}{hits / n:>9.2f}")
    print()
    print("false positives on face-free frames: " + ", ".join(f"{n}: {k}" for n, k in false_pos))
    print(f"cost: {per_frame_ms:.1f} ms per 256x256 frame (one thread); with 3 angles {three_ms:.1f} ms "
          f"({three_ms / per_frame_ms:.1f}x)")
    print(json.dumps({"bench": "face_blur", "recall": {f"{g}={lab}": round(h / n, 3) for g, lab, h, n in rows},
                      "false_positives": dict(false_pos), "ms_per_256px_frame": round(per_frame_ms, 2),
                      "three_angles_cost_ratio": round(three_ms / per_frame_ms, 2)}))


if __name__ == "__main__":
    main()
