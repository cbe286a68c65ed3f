"""Under FSDP each process reads only its own rows of the checkpoint: 3 processes (so some parameters split unevenly
and some processes hold no rows of a small one) load the tiny random checkpoint shard by shard; every local shard
must equal its rows of the tensor read whole, the gathered tensors must equal the whole ones, and together the
shards must cover each parameter exactly once."""

import json
import os
import subprocess
import sys
from pathlib import Path

from train_helpers import REPO, ROOT, tiny_checkpoint

NPROC = 3


def test_each_process_reads_only_its_rows():
    out = ROOT / "sharded-load"
    out.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={NPROC}",
           str(Path(__file__).with_name("sharded_load_worker.py")), str(tiny_checkpoint()), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(NPROC)]
    names = reports[0]["params"]
    assert sum(p["sharded"] for p in names.values()) == len(names)  # every tensor of the network is sharded
    uneven = 0
    for name, info in names.items():
        spans = sorted(tuple(r["params"][name]["rows"]) for r in reports)
        assert spans[0][0] == 0 and spans[-1][1] == info["dim0"], (name, spans)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), (name, spans)  # contiguous, no overlap
        uneven += len({e - s for s, e in spans}) > 1
        for r in reports:
            assert r["params"][name]["local_max_diff"] == 0.0, (r["rank"], name)
            assert r["params"][name]["full_max_diff"] == 0.0, (r["rank"], name)
    assert uneven > 0  # the 3-way split really exercised unequal pieces
    total = reports[0]["total_elements"]
    assert sum(r["local_elements"] for r in reports) == total
    assert all(r["local_elements"] < 0.5 * total for r in reports)
    assert all(r["rotary_max_diff"] == 0.0 for r in reports)
