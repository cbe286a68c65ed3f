"""One t2v request over 1, 2 and 4 processes (torchrun; gloo on CPU, NCCL on GPUs): per-rank peak memory and time.

The checkpoint is built here with random weights (tests/oracle.py: diffusers' transformer, a small Wan-layout VAE,
the byte-level tokenizer). Sizes: `--size tiny` (hidden 128, 2 layers), `small` (hidden 512, 8 layers, the
default), `medium` (hidden 1024, 12 layers); 8 query / 2 key-value heads. Configurations: one process; cfg (2);
ulysses (2); tower (2); ulysses (4); cfg+ulysses (2 x 2). Every process runs one thread (OMP_NUM_THREADS=1), the
request once with 1 step to warm up, then `--repeat` times (the fastest counts). Per configuration: the peak memory
of each rank (CPU: the process's peak resident set, which includes the ~0.5 GB of the Python libraries; GPU: torch's
peak allocation), the weights each rank holds, the request's denoising and total seconds on the rank that writes
the result, the speedup of denoising over one process, and the relative error of the latents against one process.

    python benchmarks/bench_parallel.py [--size small] [--frames 17] [--height 256] [--width 256] [--steps 4]
                                        [--repeat 3]

On a machine with fewer cores than processes the times measure the oversubscription, not the method; memory holds.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {"tiny": dict(hidden_size=128, num_hidden_layers=2, intermediate_size=256),
         "small": dict(hidden_size=512, num_hidden_layers=8, intermediate_size=1536),
         "medium": dict(hidden_size=1024, num_hidden_layers=12, intermediate_size=3072)}
CONFIGS = [("one process", None, 1), ("cfg", "cfg", 2), ("ulysses", "ulysses", 2), ("tower", "tower", 2),
           ("ulysses", "ulysses", 4), ("cfg+ulysses", "cfg+ulysses", 4)]
PROMPT = ("A robot arm in a bright kitchen picks up a red cup from the counter and places it in the sink, "
          "the camera slowly pans to the left.")


def build_checkpoint(root: Path, size: str) -> None:
    from cosmos3.config import Cosmos3Config
    from oracle import build_reference_pipeline

    cfg = Cosmos3Config(**SIZES[size], num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                        vocab_size=400, latent_channel=16, patch_latent_dim=64, sound_gen=False, action_gen=False)
    build_reference_pipeline(root, cfg, torch.Generator().manual_seed(0), sound=False)


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args) -> None:
    """One rank (or the single process): warm up, run the request, write OUT/RANK.json (and latents)."""
    from cosmos3.generator import Generator
    from cosmos3.parallel import init_parallel, tower

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    request = json.loads(args.request)
    parallel = init_parallel(args.mode) if args.mode else None
    rank = parallel.rank if parallel else 0
    record: dict = {"rank": rank}
    if parallel is not None and parallel.serves_und:
        model = tower.load_tower(args.checkpoint, "und", device=parallel.device)
        tower.serve_und(model)  # the warm-up request, then the timed ones
        record.update(weights=tower.resident_bytes(model), peak=_peak_bytes(parallel.device))
    else:
        gen = Generator.from_pretrained(args.checkpoint, parallel=parallel)
        gen.generate(progress=False, **dict(request, num_inference_steps=1))
        runs = []
        for _ in range(args.repeat):  # the fastest of several: the least disturbed by other work on the machine
            if gen.device.type == "cuda":
                torch.cuda.synchronize()
            runs.append(gen.generate(progress=False, **request))
        res = min(runs, key=lambda r: r.timings["denoise_s"])
        record.update(weights=tower.resident_bytes(gen.model), peak=_peak_bytes(gen.device),
                      denoise_s=res.timings["denoise_s"], total_s=res.timings["total_s"])
        if parallel is None or parallel.writes_output:
            torch.save(res.latents, Path(args.out) / "latents.pt")
    Path(args.out, f"{rank}.json").write_text(json.dumps(record))
    if parallel is not None:
        parallel.close()


def launch(checkpoint: Path, mode: str | None, procs: int, request: dict, out: Path, repeat: int) -> list[dict]:
    out.mkdir(parents=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    tail = [__file__, "--worker", "--checkpoint", str(checkpoint), "--out", str(out), "--request", json.dumps(request),
            "--repeat", str(repeat)]
    if mode is None:
        cmd = [sys.executable, *tail]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", *tail,
               "--mode", mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode or 'one process'} x {procs} failed:\n{done.stderr[-3000:]}")
    return [json.loads((out / f"{r}.json").read_text()) for r in range(procs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="timed requests per configuration (the fastest counts)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--request", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from oracle import relative_error

    request = dict(prompt=PROMPT, negative_prompt="blurry, static", num_frames=args.frames, height=args.height,
                   width=args.width, num_inference_steps=args.steps, guidance_scale=6.0, seed=random.randrange(2**31))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "ckpt"
        build_checkpoint(checkpoint, args.size)
        reference = None
        for i, (name, mode, procs) in enumerate(CONFIGS):
            if torch.cuda.is_available() and procs > torch.cuda.device_count():  # NCCL: one GPU per rank
                print(f"skipped: {name} x {procs} needs {procs} GPUs", file=sys.stderr)
                continue
            started = time.perf_counter()
            out = Path(tmp) / f"run{i}"
            ranks = launch(checkpoint, mode, procs, request, out, args.repeat)
            writer = next(r for r in ranks if "denoise_s" in r and (out / "latents.pt").exists())
            latents = torch.load(out / "latents.pt")
            reference = latents if reference is None else reference
            rows.append(dict(config=name, processes=procs, peak_mib=[round(r["peak"] / 2**20) for r in ranks],
                             weights_mib=[round(r["weights"] / 2**20, 1) for r in ranks],
                             denoise_s=round(writer["denoise_s"], 3), total_s=round(writer["total_s"], 3),
                             launch_s=round(time.perf_counter() - started, 1),
                             error=relative_error(latents, reference)))
    base = rows[0]["denoise_s"]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    print(f"t2v {args.frames} frames {args.width}x{args.height}, {args.steps} steps, guidance 6, size {args.size}, "
          f"{device}, 1 thread per process, fastest of {args.repeat}")
    print(f"{'config':<13}{'procs':>6}  {'peak MiB per rank':<26}{'weights MiB per rank':<24}{'denoise s':>10}"
          f"{'speedup':>9}{'total s':>9}{'rel. error':>12}")
    for r in rows:
        r["speedup"] = round(base / r["denoise_s"], 2)
        print(f"{r['config']:<13}{r['processes']:>6}  {' / '.join(map(str, r['peak_mib'])):<26}"
              f"{' / '.join(map(str, r['weights_mib'])):<24}{r['denoise_s']:>10.2f}{r['speedup']:>9.2f}"
              f"{r['total_s']:>9.2f}{r['error']:>12.1e}")
    print(json.dumps(dict(benchmark="parallel", size=args.size, frames=args.frames, height=args.height,
                          width=args.width, steps=args.steps, repeat=args.repeat, device=device, rows=rows)))


if __name__ == "__main__":
    main()
