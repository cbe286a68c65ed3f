"""Where along the flow does pico's generator fail? Its flow-matching loss per noise level and task on the
generator stage's own latents, against two trivial guesses of the clean latents.

    python benchmarks/pico_loss_by_sigma.py --run RUN [--checkpoint RUN/pico] [--samples 24]

For each noise level sigma and task (the conditioning of training: forward dynamics keeps latent frame 0 and the
actions clean, i2v frame 0, t2v nothing), the network's velocity error on the generated latent frames is turned
into its error on the clean latents, x0_hat = x_sigma - sigma v_hat, so x0 error = sigma^2 velocity error, beside
two trivial guesses: every generated frame is latent frame 0 (a weak guess: the causal VAE codes frame 0 alone and
each later latent frame from 4 frames) and every latent is 0. Then the generator's sampler (Euler, shift 3) run
through the same forward pass, started from pure noise or from the true latents noised to a lower level: one step
can be good at every level while the chain from noise still fails, which puts the failure at the noisy end.
Prints the tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

SIGMAS = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)
TASKS = ("forward_dynamics", "i2v", "t2v")


def trainer_for(run: Path, checkpoint: Path, out: Path):
    """A Trainer on the generator stage's recipe and latents, with `checkpoint`'s weights and no resume."""
    from cosmos3.train.loop import Trainer
    from cosmos3.train.recipe import from_dict

    recipe = from_dict(json.loads((run / "generator" / "recipe.json").read_text()))
    recipe.model.checkpoint = str(checkpoint)
    recipe.run.resume, recipe.run.output, recipe.optim.ema_decay = "none", str(out), 0.0
    recipe.data.path = str(run / "latents")
    return Trainer(recipe)


def fixed(loss, task: str, sigma: float):
    """The recipe's loss config with this task always drawn, no caption dropout, and sigma pinned."""
    weights = {k: 0.0 for k in ("t2v", "i2v", "v2v", "policy", "forward_dynamics", "inverse_dynamics")}
    weights[task] = 1.0
    return dataclasses.replace(loss, caption_dropout=0.0, sigma_sampling="uniform", sigma_min=sigma,
                               sigma_max=sigma, shift=1.0, **weights)


def first_items(trainer, samples: int) -> tuple[list, list]:
    """(captioned videos, action clips): the first `samples` of each in the stage's latents, read once. The stage's
    samples come in pairs per episode: the captioned video (t2v, i2v, v2v) and the action clip."""
    videos, clips = [], []
    for i in range(len(trainer.source)):
        if len(videos) >= samples and len(clips) >= samples:
            break
        item = trainer.source[i]
        kind = videos if item.actions is None else clips
        if len(kind) < samples:
            kind.append(item)
    return videos, clips


@torch.no_grad()
def measure(trainer, videos: list, clips: list, seed: int) -> list[dict]:
    from cosmos3.train.batch import prepare_gen

    r, model = trainer.recipe, trainer.model.eval()
    rows = []
    for task in TASKS:
        items = clips if task == "forward_dynamics" else videos
        for sigma in SIGMAS:
            cfg = fixed(r.loss, task, sigma)
            v_err, rep_err, zero_err = [], [], []
            for pos, item in enumerate(items):
                sample = prepare_gen(item, pos, seed, cfg, trainer.tokenizer.backend, model,
                                     r.data.use_system_prompt)
                _, parts = trainer.module("gen", [sample])
                noisy = sample.noised.inputs.vision_noisy
                x0 = item.vision.float()  # [C, T', H', W']
                v_err.append(parts[0]["vision"])
                rep_err.append(float((x0[:, noisy] - x0[:, :1]).square().mean()))
                zero_err.append(float(x0[:, noisy].square().mean()))
            v = sum(v_err) / len(v_err)
            rows.append({"task": task, "sigma": sigma, "velocity_mse": round(v, 5),
                         "x0_mse": round(sigma ** 2 * v, 5), "x0_mse_repeat_frame0": round(sum(rep_err) / len(rep_err), 5),
                         "x0_mse_zero": round(sum(zero_err) / len(zero_err), 5), "n": len(items)})
    return rows


@torch.no_grad()
def sample_fd(trainer, clips: list, seed: int, steps: int = 20, shift: float = 3.0,
              starts: tuple[float, ...] = (1.0, 0.9, 0.7, 0.5)) -> list[dict]:
    """Forward dynamics sampled with the training forward pass itself (Euler over the shifted schedule the
    generator uses, no guidance), started from pure noise (1.0) or from the true latents noised to a lower level
    (the steps of the schedule below it): the clean latents each chain ends at against the truth, and against the
    mean latent of these clips. If the chains from low levels land near the truth and the one from noise does not,
    the failure is at the noisy end of the flow."""
    from cosmos3.train.batch import prepare_gen
    from cosmos3.train.losses import shift_sigma

    r, model = trainer.recipe, trainer.model.eval()
    mean = torch.stack([c.vision.float() for c in clips]).mean(0)
    grid = shift_sigma(torch.linspace(1.0, 0.0, steps + 1), shift)
    rows = []
    for start in starts:
        errs, mean_errs = [], []
        for pos, item in enumerate(clips):
            sample = prepare_gen(item, pos, seed, fixed(r.loss, "forward_dynamics", start), trainer.tokenizer.backend,
                                 model, r.data.use_system_prompt)
            x_in = sample.noised.inputs
            n = x_in.vision_noisy
            x0 = item.vision.float()
            x = x_in.vision.clone()  # the true latents noised to `start` at the generated frames, frame 0 clean
            levels = [start] + [float(g) for g in grid if float(g) < start]
            for s, s_next in zip(levels[:-1], levels[1:]):
                x_in.vision, x_in.timestep = x, torch.tensor(s * 1000.0)
                velocity = trainer.module.gen_predictions([sample])[0].vision.float().cpu()
                x = torch.where(n.view(1, -1, 1, 1), x + (s_next - s) * velocity, x0)
            errs.append(float((x[:, n] - x0[:, n]).square().mean()))
            mean_errs.append(float((mean[:, n] - x0[:, n]).square().mean()))
        rows.append({"start_sigma": start, "sampled_x0_mse": round(sum(errs) / len(errs), 5),
                     "x0_mse_clip_mean": round(sum(mean_errs) / len(mean_errs), 5), "n": len(clips)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a pico run folder (generator/recipe.json, latents/)")
    p.add_argument("--checkpoint", type=Path, help="weights to measure (default: RUN/pico, the shipped folder)")
    p.add_argument("--samples", type=int, default=24, help="latent samples per (task, sigma)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    args = p.parse_args(argv)
    if not (args.run / "generator" / "recipe.json").is_file() or not (args.run / "latents").is_dir():
        print(f"pico_loss_by_sigma: error: --run {args.run}: needs generator/recipe.json and latents/ (a pico v2 run "
              "folder past its generator stage)", file=sys.stderr)
        return 2
    if args.samples < 1:
        p.error("--samples must be >= 1")
    checkpoint = args.checkpoint or args.run / "pico"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(args.run, checkpoint, Path(tmp))
        videos, clips = first_items(trainer, args.samples)
        rows = measure(trainer, videos, clips, args.seed)
        sampled = sample_fd(trainer, clips, args.seed)
    print(f"{'task':<18}{'sigma':>6}{'v MSE':>9}{'x0 MSE':>9}{'repeat f0':>11}{'zero':>9}  beats repeat")
    for row in rows:
        beats = "yes" if row["x0_mse"] < row["x0_mse_repeat_frame0"] else "no"
        print(f"{row['task']:<18}{row['sigma']:>6.2f}{row['velocity_mse']:>9.4f}{row['x0_mse']:>9.4f}"
              f"{row['x0_mse_repeat_frame0']:>11.4f}{row['x0_mse_zero']:>9.4f}  {beats}")
    print("\nforward dynamics sampled through the training forward (20 Euler steps, shift 3, no guidance)")
    print(f"{'from sigma':>10}{'x0 MSE':>9}{'clip mean':>11}")
    for row in sampled:
        print(f"{row['start_sigma']:>10.2f}{row['sampled_x0_mse']:>9.4f}{row['x0_mse_clip_mean']:>11.4f}")
    print(json.dumps({"bench": "pico_loss_by_sigma", "checkpoint": str(checkpoint), "samples": args.samples,
                      "seed": args.seed, "seconds": round(time.perf_counter() - started, 1), "rows": rows,
                      "sampled": sampled}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
