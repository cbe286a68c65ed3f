"""Policy-server latency over the openpi protocol (docs/ROBOTS.md): p50 / p99 per request and the share of it that
is denoising, measured from the client side (openpi-client's WebsocketClientPolicy) against a live server.

    python benchmarks/bench_policy.py --checkpoint pico --requests 20
    python benchmarks/bench_policy.py --tiny --requests 20            # a tiny random Policy-DROID checkpoint

Each request is a full inference (answer_steps = the chunk: nothing cached). One JSON line per run on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def tiny_droid(root: Path):
    import random

    import torch

    from oracle import build_reference_pipeline, random_config

    from cosmos3.generator import Generator

    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    cfg = random_config("qwen", rng, sound=False).replace(vocab_size=300, action_dim=32, num_embodiment_domains=32)
    build_reference_pipeline(root, cfg, gen, sound=False, vae_dim=4)
    (root / "cosmos3_defaults.json").write_text(json.dumps({"embodiment": "policy_droid", "resolution": "256p"}))
    return Generator.from_pretrained(root, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="pico")
    ap.add_argument("--tiny", action="store_true", help="a tiny random checkpoint with the Policy-DROID layout")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()

    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from cosmos3.generator import Generator
    from cosmos3.policy_server import LAYOUTS, PolicyEngine, PolicySettings, latency_summary, start_policy_server

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            generator = tiny_droid(Path(tmp))
            cam = (64, 128)
            engine = PolicyEngine(generator, "droid", PolicySettings(steps=args.steps, resolution="256p"),
                                  camera_size=cam)

            def obs():
                cams = {k: rng.integers(0, 256, (*cam, 3), dtype=np.uint8) for k in LAYOUTS["droid"].image_keys}
                return {**cams, "observation/joint_position": rng.normal(size=7),
                        "observation/gripper_position": rng.random(1), "prompt": "put the marker in the cup"}
        else:
            generator = Generator.from_pretrained(args.checkpoint, device="cpu")
            engine = PolicyEngine(generator, "generic", PolicySettings(steps=args.steps))

            def obs():
                return {"observation/image": rng.integers(0, 256, (192, 320, 3), dtype=np.uint8),
                        "prompt": "push the red block to the left"}

        handle = start_policy_server(engine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = WebsocketClientPolicy("127.0.0.1", handle.port)
        client.infer(obs())  # warm-up
        wall, denoise, infer = [], [], []
        for _ in range(args.requests):
            t = time.perf_counter()
            answer = client.infer(obs())
            wall.append(1000 * (time.perf_counter() - t))
            denoise.append(answer["server_timing"]["denoise_ms"])
            infer.append(answer["server_timing"]["infer_ms"])
        handle.stop()
    meta = engine.metadata()
    print(json.dumps({"checkpoint": "tiny-policy-droid" if args.tiny else args.checkpoint,
                      "layout": meta["layout"], "steps": meta["num_inference_steps"],
                      "guidance": meta["guidance_scale"], "chunk": meta["action_chunk"],
                      "image_size": meta["image_size"], "client": latency_summary(wall),
                      "server_infer": latency_summary(infer), "denoise_share": sum(denoise) / sum(wall)}))


if __name__ == "__main__":
    main()
