"""One rank of a parallel test run, started by torchrun from test_parallel.py:

    worker.py CHECKPOINT OUT JOBS_JSON        jobs: [{"tag": ..., "mode": ..., "request": {generate arguments},
                                                     "json_answers": bool (optional)}]

Runs the jobs in turn in one process group (one start-up for several modes). Each rank that holds the result saves
its latents as OUT/TAG.RANK.pt; every rank writes OUT/TAG.RANK.json with the seed it used, the prompt it generated
from and the bytes of weights it holds. `json_answers`: every reasoner answer counts as a JSON prompt (a random
model writes no JSON), so an upsampled prompt carries the reasoner's whole answer (test_parallel.as_json_prompt).
"""

import json
import sys
import warnings

import torch
import torch.distributed as dist

import cosmos3.generator
from cosmos3.generator import Generator
from cosmos3.parallel import init_parallel, tower


def main(checkpoint: str, out: str, jobs: str) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    plain = cosmos3.generator.first_json_object
    for job in json.loads(jobs):
        mode = job["mode"]
        cosmos3.generator.first_json_object = as_json_prompt if job.get("json_answers") else plain
        parallel = init_parallel(mode)
        stem = f"{out}/{job['tag']}.{parallel.rank}"
        if parallel.serves_und:
            model = tower.load_tower(checkpoint, "und")
            served = tower.serve_und(model, checkpoint)
            json.dump({"weights": tower.resident_bytes(model), "served": served}, open(f"{stem}.json", "w"))
            continue
        gen = Generator.from_pretrained(checkpoint, parallel=parallel)
        res = gen.generate(progress=False, **job["request"])
        torch.save(res.latents, f"{stem}.pt")
        json.dump({"weights": tower.resident_bytes(gen.model), "seed": res.seed, "prompt": res.prompt,
                   "reasoner": gen._reasoner is not None}, open(f"{stem}.json", "w"))
        if mode == "tower":
            tower.stop(parallel.device)
    dist.destroy_process_group()


def as_json_prompt(answer: str) -> dict:
    return {"answer": answer}


if __name__ == "__main__":
    main(*sys.argv[1:])
