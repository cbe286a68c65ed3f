"""The GPU readiness script (issue #24) rehearsed on the CPU: `scripts/gpu_check.sh OUT --cpu --tiny` runs every step
at toy size (bf16 on the CPU against float32 on the CPU) and every result comes back ok with sane numbers, so the
script cannot rot before a GPU is lent. A step over its budget is stopped and recorded, and the run goes on."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402

ITEMS = {
    "env": ["environment"],
    "correctness": [f"{kind}/{v}" for v in ("qwen", "edge") for kind in
                    ("build", "forward", "forward-diffusers", "generate/t2v", "generate/i2v", "generate/policy",
                     "generate/t2v-diffusers", "reason")] + ["reason-transformers/qwen3vl"],
    "speed_generate": ["build/tiny", "t2v/256p", "t2v/480p", "vae-decode/256p", "vae-decode/480p"],
    "speed_reason": ["build/reasoner", "reason/ttft-decode"],
    "training": ["sft/gen/fsdp2"],
}


def run(out: Path, *flags: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--cpu", "--tiny", *flags],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = run(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / gpu_check.RESULTS).read_text().splitlines()]
    return out, done.stdout, {(r["step"], r["name"]): r for r in rows}


def test_every_step_and_item_is_ok(rehearsal):
    _, stdout, rows = rehearsal
    for step, names in ITEMS.items():
        for name in names + ["step"]:
            r = rows.get((step, name))
            assert r is not None, f"no result for {step} {name}"
            assert r["status"] == "ok", r
            assert r["wall_s"] > 0, r
    assert {s for s, _ in rows} == set(ITEMS) and [s for s, *_ in gpu_check.STEPS] == list(ITEMS)
    for step, names in ITEMS.items():  # the human table names every result
        assert all(f"{name}" in stdout for name in names)


def test_bf16_errors_are_small_but_not_zero(rehearsal):
    _, _, rows = rehearsal
    for v in ("qwen", "edge"):
        fwd = rows[("correctness", f"forward/{v}")]
        assert 0 < fwd["max_rel_err"] < gpu_check.BF16_FORWARD_BOUND  # zero would mean bf16 never ran
        assert fwd["out_dtype"] == "torch.bfloat16" and set(fwd["rel_err"]) == {"vision", "sound", "actions", "logits"}
        assert 0 < rows[("correctness", f"forward-diffusers/{v}")]["diffusers_lowp_vs_ours_fp32"] < \
            gpu_check.BF16_FORWARD_BOUND
        for mode in ("t2v", "i2v", "policy", "t2v-diffusers"):
            r = rows[("correctness", f"generate/{mode}/{v}")]
            assert 0 < r["latents_rel_err"] < gpu_check.BF16_GENERATE_BOUND, r
        assert 0 < rows[("correctness", f"generate/policy/{v}")]["actions_rel_err"] < gpu_check.BF16_GENERATE_BOUND
        r = rows[("correctness", f"reason/{v}")]
        assert 0 < r["prefill_logits_rel_err"] < gpu_check.BF16_FORWARD_BOUND and r["tokens"] == 16
    r = rows[("correctness", "reason-transformers/qwen3vl")]
    assert 0 < r["prefill_logits_rel_err"] < gpu_check.BF16_FORWARD_BOUND and r["tokens"] > 0


def test_timings_and_training_are_sane(rehearsal):
    _, _, rows = rehearsal
    for tier in ("256p", "480p"):
        r = rows[("speed_generate", f"t2v/{tier}")]
        assert r["step_s"] > 0 and r["und_encode_s"] > 0 and r["steps_timed"] >= 1 and r["frames"] == 9
        assert math.isclose(r["est_35_steps_s"], r["und_encode_s"] + 35 * r["step_s"])
        assert r["published_s"] == gpu_check.PUBLISHED[tier] and r["peak_rss_gib"] > 0
        d = rows[("speed_generate", f"vae-decode/{tier}")]
        assert d["decode_s"] > 0 and d["frames"] == 9 and d["est_total_s"] > d["est_35_steps_s"]
    assert rows[("speed_generate", "t2v/480p")]["gen_tokens"] > rows[("speed_generate", "t2v/256p")]["gen_tokens"]
    r = rows[("speed_reason", "reason/ttft-decode")]
    assert r["ttft_s"] > 0 and r["decode_tok_s"] > 0 and r["new_tokens"] == 16 and r["prompt_tokens"] > 100
    t = rows[("training", "sft/gen/fsdp2")]
    assert t["backend"] == "gloo" and t["fsdp2_sharded"] is True and t["autocast"].startswith("bf16")
    assert len(t["losses"]) == 3 and all(math.isfinite(x) and x > 0 for x in t["losses"])
    assert all(s > 0 for s in t["step_s"]) and t["tokens_per_s"] > 0 and t["trainable_params"] > 0


def test_output_folder_limits(rehearsal):
    out, stdout, _ = rehearsal
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8 and all(p.stat().st_size < 16 * 2**20 for p in files)
    assert (out / "table.txt").read_text().strip() in stdout


def test_a_step_over_budget_is_stopped_and_the_rest_recorded(tmp_path):
    done = run(tmp_path, "--only", "env,speed_reason", "--stall", "env", "--total-budget", "12", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / gpu_check.RESULTS).read_text().splitlines()]
    assert [(r["step"], r["name"], r["status"]) for r in rows] == [("env", "step", "timeout"),
                                                                  ("speed_reason", "step", "skipped")]
    assert rows[0]["wall_s"] < 30 and "budget" in rows[0]["error"]
    assert "timeout" in done.stdout and "skipped" in done.stdout
