"""Physics violations inserted on purpose, for "is this video plausible?" questions.

A violation edits the block trajectories (or visibility) of a simulated episode after the fact, then the clip is
rendered as usual. The edits are things real physics never does on this table:
- teleport: a block jumps to another place between two frames;
- vanish: a block disappears;
- moves_by_itself: a resting block nobody touches starts sliding (and may pass through another block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import direction_word, toward
from .physics import blocks_overlap

KINDS = ("teleport", "vanish", "moves_by_itself")


@dataclass
class Violation:
    kind: str  # one of KINDS
    block: str  # color of the block it happens to
    frame: int  # first frame that shows it
    description: str  # one sentence, used as the explanation in the answer
    block_poses: np.ndarray  # [T, n, 3] edited trajectories
    visible: np.ndarray  # [T, n] bool


def make_violation(ep, rng: np.random.Generator) -> Violation:
    """Pick a violation that fits the episode and apply it."""
    T, n = ep.block_poses.shape[:2]
    poses = ep.block_poses.copy()
    visible = np.ones((T, n), dtype=bool)
    untouched = [i for i, b in enumerate(ep.blocks) if not any(b.color in pair for pair in ep.touched)]
    kinds = ["teleport", "vanish"] + (["moves_by_itself"] * 2 if untouched else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    frame = int(rng.integers(T // 4, T - T // 4))
    x0, y0, x1, y1 = ep.table.bounds

    if kind == "moves_by_itself":
        i = untouched[int(rng.integers(len(untouched)))]
        name = ep.blocks[i].name
        heading = rng.uniform(-math.pi, math.pi)
        speed = rng.uniform(0.12, 0.25)  # m/s: clearly visible, as fast as a push
        dt = np.clip(np.arange(T) - frame + 1, 0, None) / ep.fps
        path = poses[:, i, :2] + np.stack([np.cos(heading), np.sin(heading)], -1) * (speed * dt)[:, None]
        r = 0.04
        path[:, 0] = np.clip(path[:, 0], x0 + r, x1 - r)
        path[:, 1] = np.clip(path[:, 1], y0 + r, y1 - r)
        poses[:, i, :2] = path
        crossed = [ep.blocks[j].name for j in range(n) if j != i and any(
            blocks_overlap([ep.blocks[i], ep.blocks[j]], [poses[t, i], poses[t, j]]) for t in range(frame, T))]
        word = toward(direction_word(math.cos(heading), math.sin(heading)))
        desc = f"The {name} starts sliding {word} although nothing touches it"
        if crossed:
            desc += f", and it passes through the {crossed[0]}"
        return Violation(kind, ep.blocks[i].color, frame, desc, poses, visible)

    i = int(rng.integers(n))
    name = ep.blocks[i].name
    if kind == "vanish":
        visible[frame:, i] = False
        return Violation(kind, ep.blocks[i].color, frame, f"The {name} suddenly disappears", poses, visible)

    # teleport: a jump of 6-12 cm to a spot inside the table that overlaps no other block at the jump.
    for _ in range(50):
        ang, dist = rng.uniform(-math.pi, math.pi), rng.uniform(0.06, 0.12)
        off = np.array([math.cos(ang), math.sin(ang)]) * dist
        moved = poses[frame:, i, :2] + off
        if not (np.all(moved[:, 0] > x0 + 0.04) and np.all(moved[:, 0] < x1 - 0.04) and
                np.all(moved[:, 1] > y0 + 0.04) and np.all(moved[:, 1] < y1 - 0.04)):
            continue
        trial = poses[frame].copy()
        trial[i, :2] = moved[0]
        if not blocks_overlap(ep.blocks, trial, clearance=0.005):
            poses[frame:, i, :2] = moved
            return Violation(kind, ep.blocks[i].color, frame,
                             f"The {name} jumps to another place from one moment to the next", poses, visible)
    visible[frame:, i] = False  # nowhere to jump to: make it vanish instead
    return Violation("vanish", ep.blocks[i].color, frame, f"The {name} suddenly disappears", poses, visible)
