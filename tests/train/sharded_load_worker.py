"""Run under torchrun by test_train_sharded_load.py: load a checkpoint shard by shard, then report, per parameter,
how its local rows compare with the same tensor read whole (JSON, one file per process)."""

import json
import sys

import torch

from cosmos3.checkpoint import WeightIndex, load_transformer
from cosmos3.train.distributed import full_tensor, init, is_sharded, load_sharded, shard_rows

checkpoint, out = sys.argv[1], sys.argv[2]
d = init(group=True)
index = WeightIndex(checkpoint)
model = index.build()
load_sharded(index, model, torch.device("cpu"))

whole = load_transformer(checkpoint, dtype=torch.float32).state_dict()
report = {"rank": d.rank, "world": d.world, "local_elements": 0, "total_elements": 0, "params": {}}
for name, p in model.state_dict(keep_vars=True).items():
    ref = whole[name]
    if is_sharded(p):
        start, end = shard_rows(p)
        local = p.to_local()
        report["local_elements"] += local.numel()
        local_diff = float((local - ref[start:end]).abs().max()) if end > start else 0.0
        rows = [start, end]
    else:
        local_diff, rows = float((p - ref).abs().max()), None
    report["total_elements"] += ref.numel()
    report["params"][name] = {"rows": rows, "dim0": ref.shape[0] if ref.ndim else 0, "local_max_diff": local_diff,
                              "full_max_diff": float((full_tensor(p) - ref).abs().max()), "sharded": is_sharded(p)}
report["rotary_max_diff"] = float((model.rotary.inv_freq - load_transformer(checkpoint).rotary.inv_freq).abs().max())
with open(f"{out}/rank{d.rank}.json", "w") as f:
    json.dump(report, f)
