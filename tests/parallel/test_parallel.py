"""Every parallel mode gives what one process gives: CFG-parallel, Ulysses (2 and 4 ranks), CFG x Ulysses (2 x 2) and
the tower split, each run under torchrun with gloo on a tiny random official-layout checkpoint (fresh each run),
against the single-process Generator on the same request. One torchrun job runs several modes (one start-up)."""

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cosmos3.generator import Generator
from cosmos3.parallel import Parallel, init_parallel
from cosmos3.parallel.ulysses import SequenceParallel
from oracle import build_reference_pipeline, random_config, relative_error
from seeding import fresh_seed
from worker import as_json_prompt

WORKER = Path(__file__).with_name("worker.py")
TOLERANCE = 1e-5  # float32 noise: a different batch / token split changes the order of sums, nothing else


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Heads 4 or 8 (so 2 and 4 ranks divide them) with 1, 2 or 4 key/value heads: a kv head count below the rank
    count takes Ulysses' copy-per-query-head path, one above it the split path."""
    seed = fresh_seed("parallel checkpoint")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    heads = rng.choice([4, 8])
    kv = rng.choice([k for k in (1, 2, 4) if heads % k == 0])
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False, action=False).replace(
        vocab_size=rng.randint(300, 400), num_attention_heads=heads, num_key_value_heads=kv)
    root = tmp_path_factory.mktemp("parallel_ckpt")
    build_reference_pipeline(root, cfg, gen, sound=False)
    return root


@pytest.fixture(scope="module")
def request_and_reference(checkpoint):
    """A t2v request with guidance (prompts of different lengths: the und cache is padded and masked), a frame
    count and size whose token count does not divide by 4 ranks (unequal shares), and its single-process latents."""
    rng = random.Random(fresh_seed("parallel request"))
    request = dict(prompt="a red block slides left " * rng.randint(1, 3), negative_prompt="blurry",
                   num_frames=rng.choice([5, 9]), height=64, width=rng.choice([64, 96, 160]),
                   num_inference_steps=rng.randint(2, 3), guidance_scale=rng.uniform(2.0, 7.0),
                   seed=rng.randrange(2**31), fps=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = Generator.from_pretrained(checkpoint).generate(progress=False, **request).latents
    return request, reference


def _torchrun(tmp_path, checkpoint, jobs: list[dict], ranks: int) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path(p).resolve()) for p in sys.path if p]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", str(WORKER),
           str(checkpoint), str(out), json.dumps(jobs)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _check(out: Path, mode: str, ranks: list[int], reference: torch.Tensor, seed: int) -> None:
    for rank in ranks:
        latents = torch.load(out / f"{mode}.{rank}.pt")
        error = relative_error(latents, reference)
        assert error < TOLERANCE, f"{mode}, rank {rank}: relative error {error:.2e}"
        assert json.loads((out / f"{mode}.{rank}.json").read_text())["seed"] == seed


def test_two_ranks_cfg_ulysses_and_tower_equal_one_process(checkpoint, request_and_reference, tmp_path,
                                                          monkeypatch):
    request, reference = request_and_reference
    unseeded = {k: v for k, v in request.items() if k != "seed"}
    upsampled = dict(request, upsample_prompt=True)
    jobs = [dict(tag=mode, mode=mode, request=request) for mode in ("cfg", "ulysses", "tower")]
    jobs += [dict(tag="unseeded", mode="cfg", request=unseeded),
             dict(tag="upsample", mode="tower", request=upsampled, json_answers=True)]
    out = _torchrun(tmp_path, checkpoint, jobs, 2)
    _check(out, "cfg", [0, 1], reference, request["seed"])
    _check(out, "ulysses", [0, 1], reference, request["seed"])
    _check(out, "tower", [1], reference, request["seed"])
    # The tower split holds each weight once: the two ranks' weights add up to the whole network's (the gen rank's
    # stand-in vocabulary table is empty), and the und rank answered the one request.
    und, gen = (json.loads((out / f"tower.{r}.json").read_text()) for r in (0, 1))
    whole = json.loads((out / "cfg.0.json").read_text())["weights"]
    assert und["served"] == 1
    assert 0 < und["weights"] < whole and 0 < gen["weights"] < whole
    assert und["weights"] + gen["weights"] == whole
    # Without a seed each process would draw its own noise: the ranks take rank 0's, so both hold one result.
    seeds = [json.loads((out / f"unseeded.{r}.json").read_text())["seed"] for r in (0, 1)]
    assert seeds[0] == seeds[1]
    assert torch.equal(torch.load(out / "unseeded.0.pt"), torch.load(out / "unseeded.1.pt"))
    # --upsample-prompt: the und rank runs the reasoner (greedy) and the gen rank generates from its text. Every
    # answer counts as JSON here (worker.as_json_prompt: a random model writes none), so the prompt carries the whole
    # answer: the same text as one process's reasoner, the same latents, and the gen rank never built a reasoner.
    monkeypatch.setattr("cosmos3.generator.first_json_object", as_json_prompt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = Generator.from_pretrained(checkpoint).generate(progress=False, **upsampled)
    split = json.loads((out / "upsample.1.json").read_text())
    assert split["prompt"] == one.prompt != request["prompt"]
    assert not split["reasoner"] and split["weights"] == gen["weights"]
    assert json.loads((out / "upsample.0.json").read_text())["served"] == 1
    error = relative_error(torch.load(out / "upsample.1.pt"), one.latents)
    assert error < TOLERANCE, f"tower with upsampling: relative error {error:.2e}"


def test_four_ranks_ulysses_and_cfg_by_ulysses_equal_one_process(checkpoint, request_and_reference, tmp_path):
    request, reference = request_and_reference
    out = _torchrun(tmp_path, checkpoint, [dict(tag=m, mode=m, request=request) for m in ("ulysses", "cfg+ulysses")],
                    4)
    _check(out, "ulysses", [0, 1, 2, 3], reference, request["seed"])
    _check(out, "cfg+ulysses", [0, 1, 2, 3], reference, request["seed"])


def test_modes_outside_torchrun_and_unknown_modes_are_refused(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="parallel: cfg needs several processes; launch with `torchrun"):
        init_parallel("cfg")
    with pytest.raises(ValueError, match="parallel: expected one of cfg, ulysses, cfg\\+ulysses, tower, got 'ring'"):
        init_parallel("ring")
    three = Parallel("ulysses", 0, 3, torch.device("cpu"), sequence=SequenceParallel(None, 0, 3))
    with pytest.raises(ValueError, match="parallel: 3 sequence-parallel ranks must divide the 4 attention heads"):
        three.check(random_config("qwen", random.Random(0)).replace(num_attention_heads=4, num_key_value_heads=2))


def test_cli_tower_writes_what_one_process_writes(checkpoint, tmp_path, capsys):
    """`torchrun ... -m cosmos3.cli generate --parallel tower --upsample-prompt`: rank 0 serves the und tower and
    runs the reasoner, rank 1 writes the image, both exit 0; the upsampled prompt and the PNG equal the one-process
    command's."""
    from cosmos3.cli import main

    seed = random.Random(fresh_seed("cli tower")).randrange(2**31)
    args = ["generate", "--checkpoint", str(checkpoint), "a blue ball rolls", "--num-frames", "1", "--height", "64",
            "--width", "64", "--num-inference-steps", "2", "--guidance-scale", "3", "--seed", str(seed), "--quiet",
            "--upsample-prompt"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "-o", str(tmp_path / "one.png")]) == 0
    upsampled = [line for line in capsys.readouterr().out.splitlines() if line.startswith("upsampled prompt: ")]
    assert len(upsampled) == 1
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path(p).resolve()) for p in sys.path if p]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                           "cosmos3.cli", *args, "--parallel", "tower", "-o", str(tmp_path / "tower.png")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(" -> ") == 1  # one rank reports the output
    assert [line for line in done.stdout.splitlines() if line.startswith("upsampled prompt: ")] == upsampled
    import numpy as np
    from PIL import Image

    one, split = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=np.int16) for n in ("one", "tower"))
    assert one.shape == split.shape == (64, 64, 3)
    assert np.abs(one - split).max() <= 1


def test_cli_parallel_outside_torchrun_is_a_usage_error(checkpoint, tmp_path, capsys, monkeypatch):
    from cosmos3.cli import main

    monkeypatch.delenv("RANK", raising=False)
    code = main(["generate", "--checkpoint", str(checkpoint), "a cat", "--parallel", "ulysses", "--quiet",
                 "-o", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "parallel: ulysses needs several processes; launch with `torchrun" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
