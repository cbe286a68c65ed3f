"""How far a world-model rollout drifts from the truth, per chunk (docs/ROBOTS.md).

On the synthetic world (cosmos3.world) the scripted policy's episode is run twice: by the real simulator (its
rendered frames are the truth) and through WorldModelEnv(pico), chunk by chunk, the last generated frame
conditioning the next chunk (the scripted policy's actions replayed open loop). Per chunk: pixel error (mean absolute
error over 0-255, PSNR) of the world model's frames against the simulator's, and the tracked block positions'
error in pixels (cosmos3.world.track on the world model's frames against the simulator's block centres).

    python benchmarks/bench_sim.py --episodes 3 --chunks 2 --steps 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def drift(generated: np.ndarray, truth_frames: np.ndarray, truth_px: np.ndarray, colors: list[str]) -> dict:
    """generated / truth_frames: uint8 [T, H, W, 3] of the same chunk; truth_px: [T, n, 2] block centres."""
    from cosmos3.world import track_blocks

    T = min(len(generated), len(truth_frames))
    g, t = generated[:T].astype(np.float32), truth_frames[:T].astype(np.float32)
    if g.shape != t.shape:  # the model's output size: compare at the simulator's
        from PIL import Image

        g = np.stack([np.asarray(Image.fromarray(f.astype(np.uint8)).resize((t.shape[2], t.shape[1])))
                      for f in generated[:T]]).astype(np.float32)
    mae = float(np.abs(g - t).mean())
    mse = float(((g - t) ** 2).mean())
    psnr = float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    tracked = track_blocks(g.astype(np.uint8), colors)
    errors, lost = [], 0
    for i, color in enumerate(colors):
        d = np.linalg.norm(tracked[color] - truth_px[:T, i], axis=-1)
        lost += int(np.isnan(d).sum())
        errors.extend(d[~np.isnan(d)].tolist())
    return {"frame_mae": mae, "psnr_db": psnr, "block_err_px_mean": float(np.mean(errors)) if errors else None,
            "block_lost_frames": lost}


def run(generator, episodes: int, chunks: int, steps: int, seed: int = 0) -> list[dict]:
    from cosmos3.sim import WorldModelEnv
    from cosmos3.world import TabletopConfig, Truth, render_tabletop, simulate_tabletop

    chunk = generator.defaults.get("action_chunk_size", 32)
    fps = 16
    cfg = TabletopConfig(fps=fps, duration_s=chunk * chunks / fps)
    env = WorldModelEnv(generator, "umi", num_inference_steps=steps, seed=seed)
    rows = []
    for e in range(episodes):
        ep = simulate_tabletop(seed + e, cfg)
        truth_frames, truth = render_tabletop(ep), Truth.from_episode(ep)
        actions = ep.actions()
        env.reset(options={"image": truth_frames[0], "instruction": ep.instruction})
        for k in range(chunks):
            lo, hi = k * chunk, (k + 1) * chunk
            _, _, _, _, info = env.step(actions[lo:hi])
            row = drift(info["frames"], truth_frames[lo:hi + 1], truth.blocks_px[lo:hi + 1], truth.colors)
            # baseline: the chunk's first true frame held still (what "nothing moves" scores)
            still = np.repeat(truth_frames[lo:lo + 1], hi + 1 - lo, axis=0)
            base = drift(still, truth_frames[lo:hi + 1], truth.blocks_px[lo:hi + 1], truth.colors)
            row.update(still_psnr_db=base["psnr_db"], still_block_err_px_mean=base["block_err_px_mean"])
            row.update(episode=e, chunk=k, policy=ep.policy, seconds=info["seconds"], colors=truth.colors,
                       frames=hi + 1 - lo)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="pico")
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from cosmos3.generator import Generator

    started = time.time()
    rows = run(Generator.from_pretrained(args.checkpoint, device="cpu"), args.episodes, args.chunks, args.steps,
               args.seed)
    for k in range(args.chunks):
        sel = [r for r in rows if r["chunk"] == k]
        errs = [r["block_err_px_mean"] for r in sel if r["block_err_px_mean"] is not None]
        print(json.dumps({"chunk": k, "episodes": len(sel), "frame_mae": np.mean([r["frame_mae"] for r in sel]),
                          "psnr_db": np.mean([r["psnr_db"] for r in sel]),
                          "block_err_px_mean": float(np.mean(errs)) if errs else None,
                          "block_lost_frames": sum(r["block_lost_frames"] for r in sel),
                          "block_frames": sum(len(r["colors"]) * r["frames"] for r in sel),
                          "still_psnr_db": np.mean([r["still_psnr_db"] for r in sel]),
                          "still_block_err_px_mean": np.mean([r["still_block_err_px_mean"] for r in sel])}))
    print(json.dumps({"total_s": time.time() - started}))


if __name__ == "__main__":
    main()
