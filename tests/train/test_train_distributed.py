"""One command, three ways, one result. Full-model training (gradient accumulation, clipping, EMA, a mixed
action-mode batch with caption dropout) run
  - on 1 process,
  - on 2 processes (torchrun, gloo, FSDP2) with the same global batch,
  - on 1 process killed with SIGKILL after step 3, resumed, killed again while writing its step-4 checkpoint, and
    resumed again,
gives the same losses and the same weights (tolerance 1e-5)."""

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import ROOT, latents_folder, read_metrics, run_cli, tiny_checkpoint

STEPS = 4


def args(output, *extra):
    return ["--checkpoint", str(tiny_checkpoint()), "--data", str(latents_folder()), "--data-kind", "latents",
            "--output", str(output), "--train", "full", "--steps", str(STEPS), "--batch-size", "4", "--lr", "1e-3",
            "--batch-tokens", "600", "--save-every", "2", "--quiet", "--no-export", "--ema-decay", "0.9",
            "--set", "data.use_system_prompt=false", "--set", "loss.forward_dynamics=1",
            "--set", "loss.inverse_dynamics=1", "--set", "loss.caption_dropout=0.5", *extra]


def final(run, name="trainable"):
    return load_file(str(run / "checkpoints" / f"step-{STEPS:08d}" / f"{name}.safetensors"))


def assert_same(run_a, run_b, tol=1e-5):
    ma, mb = read_metrics(run_a), read_metrics(run_b)
    assert sorted(ma) == sorted(mb) == list(range(1, STEPS + 1))
    for step in ma:
        assert abs(ma[step]["loss"] - mb[step]["loss"]) <= tol * max(1.0, abs(ma[step]["loss"])), step
        assert ma[step]["tokens"] == mb[step]["tokens"]
    for name in ("trainable", "ema"):
        wa, wb = final(run_a, name), final(run_b, name)
        assert set(wa) == set(wb)
        for key in wa:
            assert float((wa[key] - wb[key]).abs().max()) <= tol, (name, key)


@pytest.fixture(scope="module")
def reference():
    run = ROOT / "ref-1proc"
    run_cli(args(run))
    return run


def test_two_processes_match_one(reference):
    run = ROOT / "fsdp-2proc"
    run_cli(args(run), nproc=2)
    assert read_metrics(run)[1]["processes"] == 2 and read_metrics(reference)[1]["processes"] == 1
    assert_same(reference, run)
    from cosmos3.checkpoint import load_transformer

    base = load_transformer(tiny_checkpoint(), dtype=torch.float32).state_dict()
    weights = final(run)
    assert "embed_tokens.weight" in weights and "proj_in.weight" in weights  # full model: both pathways
    assert sum(not torch.equal(w, base[k]) for k, w in weights.items()) > len(weights) // 2


def test_kill_and_resume_matches_uninterrupted(reference):
    run = ROOT / "killed"
    died = run_cli(args(run, "--fault-at-step", "3"), check=False)
    assert died.returncode in (-9, 137), died.stderr[-2000:]
    assert max(read_metrics(run)) == 3 and (run / "checkpoints" / "latest").read_text().strip() == "step-00000002"
    died = run_cli(args(run, "--fault-in", "checkpoint"), check=False)  # dies inside the step-4 save
    assert died.returncode in (-9, 137), died.stderr[-2000:]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000002"  # the old one still stands
    assert list((run / "checkpoints").glob(".step-*.tmp"))  # the half-made one is hidden
    done = run_cli(args(run))
    assert "resumed from" in done.stdout and "step-00000002" in done.stdout
    assert not list((run / "checkpoints").glob(".step-*.tmp"))
    assert_same(reference, run)
