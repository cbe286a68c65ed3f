"""Pure metrics of benchmarks/eval_pico.py: image, track, sound, answer and gripper-path scores of pico's tasks,
each a function of numpy arrays (no model), so tests can check them on the simulator's truth.
"""

from __future__ import annotations

import math
import re
import string

import numpy as np

from cosmos3.actions.poses import relative_to_absolute
from cosmos3.world.geometry import direction_word, rot_z, toward
SAMPLE_RATE = 48000
SOUND_HOP = 1920  # samples per sound latent frame (25 per second)
BLOCK_ERROR_CAP_PX = 50.0
MOVE_PX = 2.0  # track.py's "moved" threshold
DIRECTION_WORDS = ("right", "up and to the right", "up", "up and to the left", "left", "down and to the left", "down",
                   "down and to the right")
REASON_TYPES = ("count", "count_moved", "color", "shape", "direction", "which_moved")


# ------------------------------------------------------------------------------------------------ metrics (pure)


def psnr(pred: np.ndarray, true: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two uint8 stacks of the same shape over all their pixels (inf when identical)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"psnr: shapes differ, {pred.shape} vs {true.shape}")
    mse = float(np.mean((pred - true) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def block_error_px(tracked: np.ndarray, true: np.ndarray, cap: float = BLOCK_ERROR_CAP_PX) -> float:
    """Mean distance (pixels) of tracked block centers [T, n, 2] from the true ones [T, n, 2]; each error is capped
    at `cap` and a block not found in a frame (NaN) counts as `cap`."""
    err = np.hypot(*(np.asarray(tracked, np.float64) - np.asarray(true, np.float64)).transpose(2, 0, 1))
    return float(np.mean(np.where(np.isfinite(err), np.minimum(err, cap), cap)))


def net_direction(track: np.ndarray, min_px: float = MOVE_PX) -> str | None:
    """direction_word of a track's [T, 2] net displacement, first to last frame it is seen; None when it is seen in
    fewer than two frames or moves at most min_px."""
    track = np.asarray(track, np.float64)
    seen = np.flatnonzero(np.isfinite(track).all(1))
    if seen.size < 2:
        return None
    d = track[seen[-1]] - track[seen[0]]
    return direction_word(*d) if math.hypot(*d) > min_px else None


def direction_matches(track: np.ndarray, word: str) -> bool:
    """Does the track's net displacement have this direction word (the world's 8-way vocabulary)?"""
    if word not in DIRECTION_WORDS:
        raise ValueError(f"direction_matches: {word!r} is not one of {DIRECTION_WORDS}")
    return net_direction(track) == word


def caption_direction(caption: str) -> tuple[str, str, str] | None:
    """(color, shape, direction word) of a short caption that names a moving block and its direction ("A robot
    gripper pushes the red triangle down and to the left."), else None."""
    m = re.match(r"A robot gripper (?:pushes|knocks|picks up) the (\w+) (square|circle|triangle)(?: and moves it)? "
                 r"(.+)\.$", caption.strip())
    if not m:
        return None
    phrase = m.group(3)
    words = [w for w in DIRECTION_WORDS if toward(w) == phrase]
    return (m.group(1), m.group(2), words[0]) if words else None


def frame_energy_db(sound: np.ndarray, hop: int = SOUND_HOP) -> np.ndarray:
    """Energy per latent frame of a [channels, N] waveform: 10 log10(mean square) over each whole hop, in dB."""
    sound = np.asarray(sound, np.float64)
    n = sound.shape[-1] // hop
    if n == 0:
        return np.zeros(0)
    frames = sound[:, : n * hop].reshape(sound.shape[0], n, hop)
    return 10.0 * np.log10((frames ** 2).mean((0, 2)) + 1e-12)


def detect_onset(sound: np.ndarray, hop: int = SOUND_HOP, rise_db: float = 12.0, min_db: float = -60.0,
                 floor_percentile: float = 20.0) -> int | None:
    """First latent frame whose energy is rise_db above the clip's floor (a low percentile of its frame energies)
    and above min_db; None when no frame is."""
    e = frame_energy_db(sound, hop)
    if e.size == 0:
        return None
    floor = float(np.percentile(e, floor_percentile))
    loud = np.flatnonzero((e > floor + rise_db) & (e > min_db))
    return int(loud[0]) if loud.size else None


def contact_latent_frame(time_s: float, sample_rate: int = SAMPLE_RATE, hop: int = SOUND_HOP) -> int:
    """The sound latent frame in which an impact at time_s starts (the world starts it at sample round(t * sr))."""
    return int(round(time_s * sample_rate)) // hop


def onset_matches(onset: int | None, contact: int, tolerance: int = 2) -> bool:
    return onset is not None and abs(onset - contact) <= tolerance


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: "The red square." -> "the red square"."""
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(text.split())


def majority_chance(answers_by_type: dict[str, list[str]], asked: list[tuple[str, str]]) -> float:
    """Accuracy of always giving each type's most common (normalized) answer, over the asked (type, answer) list."""
    majority = {}
    for t, answers in answers_by_type.items():
        norm = [normalize_answer(a) for a in answers]
        majority[t] = max(sorted(set(norm)), key=norm.count) if norm else None
    if not asked:
        return math.nan
    return float(np.mean([majority.get(t) == normalize_answer(a) for t, a in asked]))


def gripper_path_px(start: np.ndarray, actions: np.ndarray, px_per_m: float) -> np.ndarray:
    """Gripper positions [T + 1, 2] in pixels from its start pose (x_m, y_m, yaw_rad) and T pose actions [T, >=9]
    (translation in the gripper frame at t, then rot6d; cosmos3.actions.poses.relative_to_absolute). Garbage
    predictions (non-finite values, a degenerate rot6d) give a non-finite path, which never counts as reaching a
    block."""
    from cosmos3.actions import ActionError

    x, y, yaw = (float(v) for v in start[:3])
    actions = np.asarray(actions, np.float64)[:, :9]
    p0 = np.eye(4)
    p0[:3, :3], p0[:3, 3] = rot_z(yaw), (x, y, 0.0)
    try:
        return relative_to_absolute(actions, p0)[:, :2, 3] * px_per_m
    except ActionError:
        return np.full((actions.shape[0] + 1, 2), np.nan)


def gripper_toward_block(path: np.ndarray, block: np.ndarray, ratio: float = 0.5) -> bool:
    """Does the gripper path [T + 1, 2] come closer to the block [2] than `ratio` times its starting distance?
    (A path with a non-finite point fails.)"""
    path = np.asarray(path, np.float64)
    if path.shape[0] < 2 or not np.isfinite(path).all():
        return False
    d = np.hypot(*(path - np.asarray(block, np.float64)).T)
    return bool(d[1:].min() <= ratio * d[0])


def action_motion_cosines(actions: np.ndarray, positions: np.ndarray, min_step: float = 1e-4) -> np.ndarray:
    """Per step, the cosine between an action's translation (x, y) and where the gripper went on the table: actions
    [T, >=2] (row t moves frame t to t + 1, as the world writes them), positions [T + 1 or more, 2] (table frame).
    Steps where the gripper moves less than `min_step` (m) are left out. 1 everywhere: the actions say the direction
    the camera sees; about 0 on average: they say it only in a frame that turns with the gripper."""
    a = np.asarray(actions, np.float64)[:, :2]
    d = np.diff(np.asarray(positions, np.float64)[:, :2], axis=0)[:a.shape[0]]
    a = a[:d.shape[0]]
    na, nd = np.linalg.norm(a, axis=1), np.linalg.norm(d, axis=1)
    keep = (nd >= min_step) & (na > 0)
    return (a[keep] * d[keep]).sum(1) / (na[keep] * nd[keep])
