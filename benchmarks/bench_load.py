"""Loading a checkpoint for FSDP training: per-process memory when every process reads the whole model and then
shards it, against reading only its own rows of each tensor (the trainer's way, cosmos3.train.distributed.
load_sharded).

A random network (default hidden 1024, 8 layers, both pathways, bfloat16 on disk as
the release's are, read as float32 for training) is saved once in the official
layout; then, for each way, `--nproc` processes are launched with torchrun (gloo) and each reports the growth of
its peak private (anonymous) memory over loading and sharding, and the wall time. The processes' gathered weights are checked
equal between the two ways.

    python benchmarks/bench_load.py [--nproc 2] [--hidden 1024] [--layers 8]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def anon_bytes() -> int:
    """Private (anonymous) resident memory now. The peak resident set would also count the checkpoint's file pages
    that the memory map brought in: shared page cache, which the kernel drops under pressure."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class AnonPeak:
    """Highest anon_bytes() seen while the block runs, sampled every millisecond by a thread."""

    def __enter__(self):
        self.peak, self._stop = anon_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, anon_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anon_bytes())


def child(way: str, checkpoint: str, out: str) -> None:
    """One process of a torchrun launch: load and shard `way`, report its figures and a weight checksum."""
    from cosmos3.checkpoint import WeightIndex, load_transformer
    from cosmos3.train.distributed import init, load_sharded, shard

    d = init(group=True)
    before = anon_bytes()
    t0 = time.perf_counter()
    with AnonPeak() as watch:
        if way == "whole":
            model = load_transformer(checkpoint, dtype=torch.float32, device="cpu")
            shard(model, model.layers)
        else:
            index = WeightIndex(checkpoint)
            model = index.build()
            load_sharded(index, model, torch.device("cpu"))
    seconds = time.perf_counter() - t0
    grown = watch.peak - before
    checksum = sum(float(p.detach().to_local().double().sum()) for p in model.parameters())
    figures = torch.tensor([grown, seconds, checksum], dtype=torch.float64)
    gathered = [torch.zeros_like(figures) for _ in range(d.world)]
    torch.distributed.all_gather(gathered, figures)
    if d.is_main:
        rows = torch.stack(gathered)
        Path(out).write_text(json.dumps({"way": way, "peak_growth_bytes": int(rows[:, 0].max()),
                                         "seconds": float(rows[:, 1].max()), "checksum": float(rows[:, 2].sum())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # way, checkpoint, output file
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return

    from cosmos3.checkpoint import save_transformer
    from cosmos3.config import Cosmos3Config
    from cosmos3.model import Cosmos3Omni

    cfg = Cosmos3Config(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=8,
                        num_key_value_heads=2, head_dim=args.hidden // 8, intermediate_size=3 * args.hidden,
                        vocab_size=4096, latent_channel=48, patch_latent_dim=192, action_gen=True, action_dim=64)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    torch.manual_seed(0)
    model = Cosmos3Omni(cfg).to(torch.bfloat16)  # as the release ships its weights; training reads them as float32
    params = sum(p.numel() for p in model.parameters())
    save_transformer(model, tmp / "ckpt" / "transformer")
    del model
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    rows = []
    for way in ("whole", "sharded"):
        out = tmp / f"{way}.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               __file__, "--child", way, str(tmp / "ckpt"), str(out)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{way}: torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}")
        rows.append(json.loads(out.read_text()))
    whole, sharded = rows
    if abs(whole["checksum"] - sharded["checksum"]) > 1e-6 * max(1.0, abs(whole["checksum"])):
        raise SystemExit(f"the two ways loaded different weights: {whole['checksum']} vs {sharded['checksum']}")
    model_bytes = 4 * params
    print(f"loading for FSDP, hidden {args.hidden}, {args.layers} layers, {params / 1e6:.1f} M parameters "
          f"({model_bytes / 2**20:.0f} MiB in float32, bfloat16 on disk), {args.nproc} processes, {platform.machine()} CPU, "
          f"torch {torch.__version__}")
    print(f"{'way':<10}{'peak growth / process':>24}{'x model':>10}{'seconds':>10}")
    for r in rows:
        print(f"{r['way']:<10}{r['peak_growth_bytes'] / 2**20:>20.0f} MiB{r['peak_growth_bytes'] / model_bytes:>10.2f}"
              f"{r['seconds']:>10.2f}")
    ratio = whole["peak_growth_bytes"] / max(1, sharded["peak_growth_bytes"])
    print(f"whole / sharded peak: {ratio:.2f}x")
    print(json.dumps({"bench": "load", "nproc": args.nproc, "hidden": args.hidden, "layers": args.layers,
                      "params": params, "whole_peak_bytes": whole["peak_growth_bytes"],
                      "sharded_peak_bytes": sharded["peak_growth_bytes"], "whole_s": round(whole["seconds"], 3),
                      "sharded_s": round(sharded["seconds"], 3), "peak_ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
