"""The face-blur frame filter: detect faces in every generated frame and pixelate them.

    blur = FaceBlur()
    frames = blur.apply(frames)             # uint8 [T, H, W, 3] -> the same, faces pixelated; no face: unchanged

The detector is OpenCV's frontal-face Haar cascade (haarcascade_frontalface_default.xml, shipped inside the
opencv-python-headless wheel, 4.x: OpenCV 5 no longer ships the cascades), so nothing is downloaded. It is a weak
detector next to the release's RetinaFace: it finds upright frontal faces of at least `min_size` pixels and misses
profiles, tilted (unless `tilts` searches more angles) or small faces (docs/GUARDRAILS.md has its measured
recall). Each box found in a frame is
also pixelated in the frames next to it (`temporal_reach`), so a face missed in one frame between two hits does not
flash through unblurred.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np


def _cascade_path() -> str:
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = f"{folder}haarcascade_frontalface_default.xml" if folder else None
    if not path or not os.path.isfile(path):
        raise ValueError(f"face blur needs OpenCV's bundled Haar cascade, which OpenCV {cv2.__version__} does not "
                         "ship; install opencv-python-headless 4.x (pip install 'opencv-python-headless<5')")
    return path


def _rotated(gray: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame turned by `angle` degrees about its centre (same size), and the 2x3 map back (None for 0)."""
    import cv2

    if not angle:
        return gray, None
    h, w = gray.shape
    forward = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(gray, forward, (w, h), borderMode=cv2.BORDER_REPLICATE), cv2.invertAffineTransform(forward)


def _unrotate(box, back: np.ndarray | None) -> tuple[int, int, int, int]:
    """A box found in a turned frame -> the upright box (x, y, w, h) around its corners in the original frame."""
    x, y, w, h = (int(v) for v in box)
    if back is None:
        return x, y, w, h
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64) @ back.T  # [4, 2]
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    return int(x0), int(y0), int(round(x1 - x0)), int(round(y1 - y0))


def pixelate(region: np.ndarray, blocks: int) -> np.ndarray:
    """A [h, w, 3] region -> the same size in `blocks` x `blocks` flat cells (the mean colour of each)."""
    import cv2

    h, w = region.shape[:2]
    small = cv2.resize(region, (min(blocks, w), min(blocks, h)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@dataclass
class FaceBlur:
    min_size: int = 24  # smallest face side in pixels the detector looks for
    min_neighbors: int = 5  # overlapping hits a box needs (3 finds more faces and more non-faces)
    scale_factor: float = 1.1  # step between detector scales
    blocks: int = 6  # cells across a pixelated face
    margin: float = 0.15  # the box grown by this fraction of its side on every edge (hair, chin, ears)
    temporal_reach: int = 1  # a box also covers this many frames before and after its own
    tilts: tuple[float, ...] = (0.0,)  # in-plane angles searched; (0, -30, 30) finds tilted faces at 3x the cost
    name: str = "face_blur"
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cascade: object = field(default=None, init=False, repr=False)

    def detect(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Faces in one uint8 [H, W, 3] RGB frame -> boxes (x, y, w, h)."""
        import cv2

        with self._lock:  # a cascade object is not safe to share between threads
            if self._cascade is None:
                self._cascade = cv2.CascadeClassifier(_cascade_path())
            gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY))
            boxes = []
            for angle in self.tilts:
                turned, back = _rotated(gray, angle)
                found = self._cascade.detectMultiScale(turned, scaleFactor=self.scale_factor,
                                                       minNeighbors=self.min_neighbors,
                                                       minSize=(self.min_size, self.min_size))
                boxes += [_unrotate(box, back) for box in found]
        return boxes

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [T, H, W, 3] -> the frames with every detected face pixelated. Without a detection the input
        array itself is returned, untouched."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"face blur takes uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        boxes = [self.detect(f) for f in frames]
        if not any(boxes):
            return frames
        out = frames.copy()
        T, H, W = frames.shape[:3]
        for t in range(T):
            near = range(max(0, t - self.temporal_reach), min(T, t + self.temporal_reach + 1))
            for x, y, w, h in (b for s in near for b in boxes[s]):
                dx, dy = int(w * self.margin), int(h * self.margin)
                x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(W, x + w + dx), min(H, y + h + dy)
                out[t, y0:y1, x0:x1] = pixelate(out[t, y0:y1, x0:x1], self.blocks)
        return out
