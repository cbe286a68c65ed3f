"""Do pico's actions say which way the gripper moves on screen? The cosine between each action's translation and
the gripper's motion on the table (the fixed camera sees the table), over simulated episodes of a design's world.

    python benchmarks/pico_action_frame.py [--design v2] [--episodes 200]

The world writes actions as the release's single-arm (umi) rows: the translation in the frame of the gripper at that
frame, which turns with the gripper's yaw (uniform over the circle at an episode's start). A cosine near 1 means a
network can read the direction of motion from an action alone; near 0 means it must also read the gripper's yaw off
the pixels and turn the action by it. The same translations turned back to the table frame are printed beside them
(cosine 1: the check that the two frames differ only by that yaw). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pico_metrics import action_motion_cosines  # noqa: E402


def frame_cosines(design: str, episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{"gripper frame": cosines, "table frame": cosines} over the design's simulated episodes (seeds seed...)."""
    from cosmos3.train.pico_design import DESIGNS
    from cosmos3.world import simulate_tabletop
    from cosmos3.world.geometry import rot_z

    cfg = DESIGNS[design].world.config().tabletop
    out: dict[str, list] = {"gripper frame": [], "table frame": []}
    for s in range(seed, seed + episodes):
        ep = simulate_tabletop(s, cfg)
        actions, path = ep.actions()[:-1], ep.gripper[:, :2]
        turned = np.einsum("tij,tj->ti", rot_z(ep.gripper[:-1, 2])[:, :2, :2], actions[:, :2])
        out["gripper frame"].append(action_motion_cosines(actions, path))
        out["table frame"].append(action_motion_cosines(turned, path))
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--design", default="v2", help="a pico design (cosmos3.train.pico_design.DESIGNS)")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="first episode seed")
    args = p.parse_args(argv)
    from cosmos3.train.pico_design import DESIGNS

    if args.design not in DESIGNS:
        p.error(f"--design: expected one of {', '.join(sorted(DESIGNS))}, got {args.design!r}")
    if args.episodes < 1:
        p.error("--episodes must be >= 1")
    started = time.perf_counter()
    cos = frame_cosines(args.design, args.episodes, args.seed)
    rows = [{"frame": k, "mean_cosine": round(float(v.mean()), 4), "share_above_0.9": round(float((v > 0.9).mean()), 4),
             "steps": int(v.size)} for k, v in cos.items()]
    print(f"{'actions in the':<16}{'mean cosine':>12}{'> 0.9':>8}{'steps':>8}")
    for r in rows:
        print(f"{r['frame']:<16}{r['mean_cosine']:>12.3f}{r['share_above_0.9']:>8.2f}{r['steps']:>8d}")
    print(json.dumps({"bench": "pico_action_frame", "design": args.design, "episodes": args.episodes,
                      "seed": args.seed, "seconds": round(time.perf_counter() - started, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
