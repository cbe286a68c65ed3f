"""Does joining a clip's questions into one conversation (`data.chat_turns`) teach pico's reasoner faster?

    python benchmarks/bench_chat_turns.py --run RUN [--turns 8] [--single-steps 500] [--joined-steps 200]

RUN is a pico run folder (`python -m cosmos3.train.pico ...`) whose assemble stage is done: its `ckpt/` is the
starting checkpoint, `world/chat.jsonl` the training questions, `eval_world/` the held-out ones. Two reasoner SFT runs
from the same start and seed (the pico reasoner stage's settings: und pathway + vision tower, AdamW 2e-3 cosine,
batch 8 conversations), one on single questions and one on conversations of up to --turns questions about the same
clip; each is scored on the held-out closed questions (eval_pico's reason task: greedy, exact match, against the
majority answer). Compare at equal wall time: choose --joined-steps so that both runs take about as long (a joined
conversation costs more per step). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from eval_pico import EvalWorld, task_reason  # noqa: E402


def sft(run: Path, out: Path, turns: int, steps: int, seed: int) -> dict:
    from cosmos3.train.loop import Trainer
    from cosmos3.train.recipe import from_dict

    recipe = from_dict({
        "model": {"train": "und", "train_vision": True, "checkpoint": str(run / "ckpt")},
        "data": {"kind": "chat", "path": str(run / "world" / "chat.jsonl"), "max_text_tokens": 1024,
                 "chat_turns": turns},
        "optim": {"lr": 2e-3, "warmup_steps": 50, "schedule": "cosine", "min_lr_ratio": 0.05, "weight_decay": 0.0},
        "run": {"steps": steps, "batch_size": 8, "batch_tokens": 4096, "save_every": 0, "keep_checkpoints": 1,
                "output": str(out), "seed": seed, "progress": True},
    }, f"chat_turns {turns}")
    started = time.perf_counter()
    Trainer(recipe).fit()
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"turns": turns, "steps": steps, "minutes": round(seconds / 60, 1),
            "loss_last50": round(sum(r["loss"] for r in rows[-50:]) / len(rows[-50:]), 4),
            "checkpoint": out / "export" / "checkpoint"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, help="work folder (default RUN/bench_chat_turns)")
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--single-steps", type=int, default=500)
    p.add_argument("--joined-steps", type=int, default=200)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from cosmos3.reasoner import Reasoner

    out = args.out or args.run / "bench_chat_turns"
    world = EvalWorld(args.run / "eval_world")
    scoring = SimpleNamespace(questions=args.questions, train_world=args.run / "world")
    results = []
    for turns, steps in ((1, args.single_steps), (args.turns, args.joined_steps)):
        r = sft(args.run, out / f"turns{turns}", turns, steps, args.seed)
        r.update(task_reason(Reasoner.from_pretrained(r.pop("checkpoint")), world, scoring))
        results.append(r)
    print(f"\n{'turns':>6}{'steps':>7}{'minutes':>9}{'loss':>9}{'exact match':>13}{'majority':>10}  per type")
    for r in results:
        print(f"{r['turns']:>6}{r['steps']:>7}{r['minutes']:>9}{r['loss_last50']:>9}{r['accuracy']:>13.3f}"
              f"{r['chance_majority']:>10.3f}  {r['per_type']}")
    single, joined = results
    print(json.dumps({"bench": "chat_turns", "single": single, "joined": joined,
                      "time_ratio": round(joined["minutes"] / max(single["minutes"], 1e-9), 3),
                      "accuracy_gain": round(joined["accuracy"] - single["accuracy"], 4)}, default=str))


if __name__ == "__main__":
    main()
