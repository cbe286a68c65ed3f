"""One rank of a parallel test run, started by torchrun from test_parallel.py:

    worker.py CHECKPOINT OUT JOBS_JSON        jobs: [{"tag": ..., "mode": ..., "request": {generate arguments}}]

Runs the jobs in turn in one process group (one start-up for several modes). Each rank that holds the result saves
its latents as OUT/TAG.RANK.pt; every rank writes OUT/TAG.RANK.json with the seed it used and the bytes of weights
it holds.
"""

import json
import sys
import warnings

import torch
import torch.distributed as dist

from cosmos3.generator import Generator
from cosmos3.parallel import init_parallel, tower


def main(checkpoint: str, out: str, jobs: str) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for job in json.loads(jobs):
        mode = job["mode"]
        parallel = init_parallel(mode)
        stem = f"{out}/{job['tag']}.{parallel.rank}"
        if parallel.serves_und:
            model = tower.load_tower(checkpoint, "und")
            served = tower.serve_und(model)
            json.dump({"weights": tower.resident_bytes(model), "served": served}, open(f"{stem}.json", "w"))
            continue
        gen = Generator.from_pretrained(checkpoint, parallel=parallel)
        res = gen.generate(progress=False, **job["request"])
        torch.save(res.latents, f"{stem}.pt")
        json.dump({"weights": tower.resident_bytes(gen.model), "seed": res.seed}, open(f"{stem}.json", "w"))
        if mode == "tower":
            tower.stop(parallel.device)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
