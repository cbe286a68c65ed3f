"""`cosmos3 world generate --episodes N --seed S --out DIR`: write the synthetic world dataset."""

from __future__ import annotations

import argparse
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cosmos3 world", description="The synthetic physical world.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate episodes as LeRobot v3 datasets + chat JSONL")
    g.add_argument("--episodes", type=int, required=True, help="number of episodes (both embodiments together)")
    g.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    g.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    g.add_argument("--fps", type=int, default=16, choices=(16, 24), help="frame rate (default 16)")
    g.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    g.add_argument("--camera-fraction", type=float, default=0.2, help="share of moving-camera episodes")
    g.add_argument("--episodes-per-video-file", type=int, default=1, help="episodes concatenated per MP4")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .export import WorldConfig, generate_dataset

    try:
        cfg = WorldConfig(camera_fraction=args.camera_fraction, episodes_per_video_file=args.episodes_per_video_file)
        if not 0.0 <= args.camera_fraction <= 1.0:
            raise ValueError(f"--camera-fraction must be in [0, 1], got {args.camera_fraction}")
        if args.episodes_per_video_file < 1:
            raise ValueError("--episodes-per-video-file must be >= 1")
        t0 = time.perf_counter()
        out = generate_dataset(args.out, args.episodes, args.seed, fps=args.fps, progress=not args.quiet,
                               workers=args.workers, config=cfg, overwrite=args.overwrite)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.episodes} episodes to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
