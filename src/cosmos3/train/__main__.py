"""Command line of the trainer (`cosmos3 train` calls `train_main`).

    python -m cosmos3.train --recipe recipes/lora_video_sft.toml [--steps 100 --lr 1e-4 ...] [--set loss.shift=5]
    torchrun --nproc_per_node 8 -m cosmos3.train --recipe ...            same command, FSDP2 over 8 processes
    python -m cosmos3.train precompute --checkpoint C --data D --data-kind lerobot --output latents/ [--height ..]
    python -m cosmos3.train export --run runs/x --output out/ [--ema]      out/checkpoint (+ out/adapter)

Flags override the recipe; every recipe key can be set with `--set section.key=value`. Bad values exit with
status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .recipe import DATA_KINDS, TRAIN_MODES, TrainRecipe, load_recipe, set_value

# flag -> recipe key
FLAGS = {
    "checkpoint": "model.checkpoint", "train": "model.train", "data": "data.path", "data_kind": "data.kind",
    "output": "run.output", "steps": "run.steps", "lr": "optim.lr", "batch_size": "run.batch_size",
    "batch_tokens": "run.batch_tokens", "seed": "run.seed", "save_every": "run.save_every", "resume": "run.resume",
    "lora_rank": "lora.rank", "lora_targets": "lora.targets", "warmup_steps": "optim.warmup_steps",
    "schedule": "optim.schedule", "ema_decay": "optim.ema_decay", "grad_clip": "optim.grad_clip",
    "height": "data.height", "width": "data.width", "device": "run.device",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cosmos3 train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Post-train Cosmos 3: flow matching (video, actions, sound) or reasoner SFT; full weights, gen "
                    "pathway, und pathway or LoRA.",
        epilog="the embedded pico model has recipes of its own (stages resume):\n"
               "  PICO_OUTPUT=RUN bash recipes/pico_v2.sh             the shipped pico (v2), ~8 h on 2 cores\n"
               "  cosmos3 train --recipe pico [--output runs/pico]    the first pico (v1), ~2 h\n"
               "  cosmos3 train --recipe pico --smoke                 v1's stages at toy size, in runs/pico-smoke\n"
               "  bash recipes/pico_v2.sh --help                      v2's options (docs/PICO.md)\n"
               "subcommands: `cosmos3 train precompute --help`, `cosmos3 train export --help`")
    p.add_argument("--recipe", help="TOML recipe (see recipes/); flags below override it")
    p.add_argument("--checkpoint", help="base checkpoint, official diffusers layout")
    p.add_argument("--data", help="dataset path (LeRobot root, video folder, latents folder or chat JSONL)")
    p.add_argument("--data-kind", choices=DATA_KINDS)
    p.add_argument("--output", help="run folder (checkpoints/, metrics.jsonl, export/)")
    p.add_argument("--train", choices=TRAIN_MODES, help="which weights train")
    p.add_argument("--lora", action="store_true", help="shorthand for --train lora")
    p.add_argument("--lora-rank", type=int)
    p.add_argument("--lora-targets", help="comma-separated module names, e.g. add_q_proj,add_v_proj")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--schedule", choices=("cosine", "linear", "constant"))
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--batch-size", type=int, help="samples per optimizer step over all processes")
    p.add_argument("--batch-tokens", type=int, help="token budget of one micro-batch")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--resume", help="auto (default), none, or a checkpoint folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="any recipe value")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--fault-at-step", type=int, help=argparse.SUPPRESS)  # tests: SIGKILL after this step
    p.add_argument("--fault-in", choices=("checkpoint",), help=argparse.SUPPRESS)  # tests: SIGKILL while saving
    return p


def recipe_from_args(args: argparse.Namespace) -> TrainRecipe:
    recipe = load_recipe(args.recipe) if args.recipe else TrainRecipe()
    if args.lora:
        args.train = "lora"
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_value(recipe, key, value)
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        set_value(recipe, key.strip(), value.strip())
    if args.quiet:
        recipe.run.progress = False
    if args.no_export:
        recipe.run.export = False
    recipe.validate()
    return recipe


def precompute_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cosmos3 train precompute", description="Encode a dataset's videos with the "
                                "checkpoint's VAE once; train on the result with --data-kind latents.")
    p.add_argument("--recipe")
    p.add_argument("--checkpoint")
    p.add_argument("--data")
    p.add_argument("--data-kind", choices=("lerobot", "video"))
    p.add_argument("--output", required=True, help="latents folder to write")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    from .data import Encoder, LeRobotSource, VideoFolderSource, precompute_latents

    recipe = load_recipe(args.recipe) if args.recipe else TrainRecipe()
    for flag, key in (("checkpoint", "model.checkpoint"), ("data", "data.path"), ("data_kind", "data.kind"),
                      ("height", "data.height"), ("width", "data.width")):
        if getattr(args, flag) is not None:
            set_value(recipe, key, getattr(args, flag))
    for item in args.set:
        key, _, value = item.partition("=")
        set_value(recipe, key, value)
    d = recipe.data
    if not recipe.model.checkpoint or not d.path or d.kind not in ("lerobot", "video"):
        raise ValueError("precompute needs --checkpoint, --data and --data-kind lerobot|video")
    if d.kind == "lerobot" and (d.concat_view or d.state_columns):
        # a latents folder keeps one camera's latents, actions and a templated caption: no composed views on the
        # canvas, no robot state, no whole variant caption
        raise ValueError("precompute: data.concat_view / data.state_columns (a policy_droid recipe) are not kept in "
                         "precomputed latents; train from the LeRobot dataset directly (data.kind = 'lerobot', "
                         "data.cache_latents keeps each window's latents in memory)")
    import torch

    encoder = Encoder(recipe.model.checkpoint, torch.device("cuda" if torch.cuda.is_available() else "cpu"), False)
    if d.kind == "lerobot":
        source = LeRobotSource(d.path, encoder, camera=d.camera, chunk_size=d.chunk_size, stride=d.stride,
                               height=d.height, width=d.width, embodiment=d.embodiment, sound=d.sound)
    else:
        source = VideoFolderSource(d.path, encoder, num_frames=d.num_frames, height=d.height, width=d.width,
                                     sound=d.sound)
    out = precompute_latents(source, args.output)
    print(f"wrote {len(source)} samples to {out}")
    return 0


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cosmos3 train export", description="Export a run's checkpoint: "
                                "OUTPUT/checkpoint in the official diffusers layout (and OUTPUT/adapter for LoRA).")
    p.add_argument("--run", required=True, help="run folder (or a checkpoints/step-* folder)")
    p.add_argument("--output", required=True)
    p.add_argument("--ema", action="store_true", help="export the EMA weights")
    args = p.parse_args(argv)
    import json

    from . import checkpointing
    from .distributed import Dist
    from .export import export_checkpoint
    from .recipe import from_dict

    run = Path(args.run)
    folder = run if (run / checkpointing.STATE).is_file() else checkpointing.latest(run)
    if folder is None:
        raise ValueError(f"{run}: no checkpoint found")
    ckpt = checkpointing.load(folder, Dist())
    recipe = from_dict(json.loads(json.dumps(ckpt["state"]["recipe"])))
    state = ckpt["ema"] if args.ema and ckpt["ema"] is not None else ckpt["trainable"]
    lora = recipe.lora if recipe.model.train == "lora" else None
    out = Path(args.output)
    from ..actions import ACTION_STATS_FILE, load_stats_file

    run_dir = run if folder != run else run.parents[1]  # <run>/checkpoints/step-N
    stats = load_stats_file(run_dir / ACTION_STATS_FILE)  # written by the run, if it normalized its actions
    export_checkpoint(recipe.model.checkpoint, out / "checkpoint", state, lora, action_stats=stats)
    if lora is not None:
        _export_adapter_files(state, lora, out / "adapter", recipe.model.checkpoint)
    print(f"exported {folder} to {out}")
    return 0


def _export_adapter_files(state, lora, out: Path, base: str) -> None:
    from ..checkpoint import load_transformer
    from .export import export_adapter
    from .lora import add_lora

    model = load_transformer(base, device="cpu")
    export_adapter(add_lora(model, lora), out, {k: v for k, v in state.items() if "lora_" in k})


def _check_run_kind(output: Path, smoke: bool) -> str | None:
    """A smoke run and a full run never share a folder: the full recipe would take the smoke's finished stages (and
    its toy checkpoint) for its own. The folder remembers which kind it holds in `run_kind.json`."""
    import json

    kind = "smoke" if smoke else "full"
    marker = output / "run_kind.json"
    if marker.is_file():
        found = json.loads(marker.read_text()).get("kind")
        if found != kind:
            return (f"{output} holds a {found} run of the pico recipe; give this {kind} run another --output "
                    f"(or delete {output})")
    elif smoke and output.is_dir() and any(output.glob("*.json")):
        # a folder from before the marker: presumably a full run (the smoke default was runs/pico then too)
        return f"{output} holds pico stages of an older run; give this smoke run another --output (or delete {output})"
    output.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"kind": kind}) + "\n")
    return None


def pico_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cosmos3 train --recipe pico", description="Train the first embedded pico model "
                                "(v1) from nothing on the synthetic world (stages resume; the shipped v2: "
                                "bash recipes/pico_v2.sh; see cosmos3.train.pico).")
    p.add_argument("--output", help="run folder (default runs/pico, or runs/pico-smoke with --smoke); the model lands "
                   "in OUTPUT/pico")
    p.add_argument("--smoke", action="store_true", help="every stage at a tiny size (minutes; what CI runs)")
    p.add_argument("--stage", action="append", choices=("world", "tokenizer", "vae", "audio", "assemble", "latents",
                                                        "reasoner", "vision", "generator", "ship"),
                   help="run only this stage (again); repeatable")
    p.add_argument("--reasoner-steps", type=int, help="override the reasoner SFT's optimizer steps")
    p.add_argument("--vision-steps", type=int, help="override the vision-tower stage's optimizer steps")
    p.add_argument("--generator-steps", type=int, help="override the generator's optimizer steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from .pico import PicoPlan, StagePaused, run

    output = Path(args.output or ("runs/pico-smoke" if args.smoke else "runs/pico"))
    problem = _check_run_kind(output, args.smoke)
    if problem:
        print(f"cosmos3 train: error: {problem}", file=sys.stderr)
        return 2
    plan = PicoPlan.smoke(output) if args.smoke else PicoPlan(output=output)
    plan.progress = not args.quiet
    for name in ("reasoner_steps", "vision_steps", "generator_steps"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                print(f"cosmos3 train: error: --{name.replace('_', '-')}: expected >= 1, got {value}", file=sys.stderr)
                return 2
            setattr(plan, name, value)
    try:
        out = run(plan, args.stage)
    except StagePaused as e:
        print(f"cosmos3 train: paused: {e}; the same command continues", file=sys.stderr)
        return 3
    except ValueError as e:
        print(f"cosmos3 train: error: {e}", file=sys.stderr)
        return 2
    print(f"pico checkpoint: {out}")
    return 0


def train_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "precompute":
            return precompute_main(argv[1:])
        if argv and argv[0] == "export":
            return export_main(argv[1:])
        if "--recipe" in argv and argv[argv.index("--recipe") + 1:argv.index("--recipe") + 2] == ["pico"]:
            return pico_main([a for i, a in enumerate(argv) if a != "--recipe" and
                              (i == 0 or argv[i - 1] != "--recipe")])
        args = build_parser().parse_args(argv)
        recipe = recipe_from_args(args)
    except ValueError as e:
        print(f"cosmos3 train: error: {e}", file=sys.stderr)
        return 2
    from .distributed import shutdown
    from .loop import Trainer

    fault = {"at_step": args.fault_at_step, "in": args.fault_in}
    try:
        trainer = Trainer(recipe, fault=fault)
        trainer.fit()
    except ValueError as e:
        print(f"cosmos3 train: error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if trainer.paused:
        print(f"cosmos3 train: paused at step {trainer.step}/{recipe.run.steps} (run.max_hours = "
              f"{recipe.run.max_hours}); checkpoint saved, the same command continues")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
