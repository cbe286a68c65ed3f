"""Where along the flow does pico's generator fail? Its flow-matching loss per noise level and task on the
generator stage's own latents, against two trivial guesses of the clean latents.

    python benchmarks/pico_loss_by_sigma.py --run RUN [--checkpoint RUN/pico] [--samples 24] [--embodiment NAME]
        [--probe-only]

For each noise level sigma and task (the conditioning of training: forward dynamics keeps latent frame 0 and the
actions clean, i2v frame 0, t2v nothing), the network's velocity error on the generated latent frames is turned
into its error on the clean latents, x0_hat = x_sigma - sigma v_hat, so x0 error = sigma^2 velocity error, split
into the latent positions that stay as frame 0 shows them and those that move (the gripper's and the pushed block's
paths), beside two trivial guesses: every generated frame is latent frame 0 (a weak guess: the causal VAE codes
frame 0 alone and each later latent frame from 4 frames) and every latent is 0. Then the generator's sampler (Euler,
shift 3) run through the same forward pass, started from pure noise or from the true latents noised to a lower
level. Read the chains with care: a sampler draws one plausible clip, so even a perfect one ends about twice the
network's remaining uncertainty from the truth; the one-step errors at high sigma, static against moving, say where
that uncertainty is. Last, an action probe: forward dynamics' error on the moving positions with the clip's own
actions, another clip's and zeros, with the caption and without (equal errors: the video does not read the
actions).
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


def fixed(loss, task: str, sigma: float, caption: bool = True):
    """The recipe's loss config with this task always drawn, sigma pinned, and the caption always kept (or always
    dropped: the negative prompt, as classifier-free guidance's unconditional branch sees it)."""
    weights = {k: 0.0 for k in ("t2v", "i2v", "v2v", "policy", "forward_dynamics", "inverse_dynamics")}
    weights[task] = 1.0
    return dataclasses.replace(loss, caption_dropout=0.0 if caption else 1.0, sigma_sampling="uniform",
                               sigma_min=sigma, sigma_max=sigma, shift=1.0, **weights)


def first_items(trainer, samples: int, domain_id: int | None = None) -> tuple[list, list]:
    """(captioned videos, action clips): the first `samples` of each in the stage's latents, read once; the clips
    only of embodiment `domain_id` when given. The stage's samples come in pairs per episode: the captioned video
    (t2v, i2v, v2v) and the action clip."""
    videos, clips = [], []
    for i in range(len(trainer.source)):
        if len(videos) >= samples and len(clips) >= samples:
            break
        item = trainer.source[i]
        kind = videos if item.actions is None else clips
        if len(kind) < samples and (kind is videos or domain_id is None or item.domain_id == domain_id):
            kind.append(item)
    return videos, clips


# a latent position moves when a generated frame's channel MSE from its mean over those frames exceeds this
MOVING = 0.25


def moving_positions(x0: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """[H', W'] bool: the latent positions whose content changes across the generated frames of x0 [C, T', H', W']
    (noisy [T'] marks them): the gripper's and the pushed block's paths; the rest is the scene frame 0 shows."""
    gen = x0[:, noisy]  # [C, n, H', W']
    return (gen - gen.mean(1, keepdim=True)).square().mean(0).gt(MOVING).any(0)


def x0_error(sample, velocity: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """[n, H', W']: the squared error (channel mean) of the clean latents a velocity implies, on the generated
    frames."""
    noisy = sample.noised.inputs.vision_noisy
    return (sample.noised.inputs.vision - sigma * velocity - x0)[:, noisy].square().mean(0)


@torch.no_grad()
def measure(trainer, videos: list, clips: list, seed: int) -> list[dict]:
    """Per (task, sigma): the velocity error on the generated frames, the x0 error it means (split into the static
    and the moving latent positions) and the two trivial guesses' x0 errors."""
    from cosmos3.train.batch import prepare_gen

    r, model = trainer.recipe, trainer.model.eval()
    rows = []
    for task in TASKS:
        items = clips if task == "forward_dynamics" else videos
        for sigma in SIGMAS:
            cfg = fixed(r.loss, task, sigma)
            v_err, rep_err, zero_err = [], [], []
            sums = {True: 0.0, False: 0.0}  # x0 squared error summed over moving (True) / static positions
            counts = {True: 0, False: 0}
            for pos, item in enumerate(items):
                sample = prepare_gen(item, pos, seed, cfg, trainer.tokenizer.backend, model,
                                     r.data.use_system_prompt)
                velocity = trainer.module.gen_predictions([sample])[0].vision.float().cpu()
                noisy = sample.noised.inputs.vision_noisy
                x0 = item.vision.float()  # [C, T', H', W']
                v_err.append(float((velocity - sample.noised.target.vision)[:, noisy].square().mean()))
                err = x0_error(sample, velocity, x0, sigma)
                moving = moving_positions(x0, noisy).expand_as(err)
                for key in (True, False):
                    sums[key] += float(err[moving == key].sum())
                    counts[key] += int((moving == key).sum())
                rep_err.append(float((x0[:, noisy] - x0[:, :1]).square().mean()))
                zero_err.append(float(x0[:, noisy].square().mean()))
            v = sum(v_err) / len(v_err)
            split = {k: round(sums[k] / counts[k], 5) if counts[k] else None for k in (True, False)}
            rows.append({"task": task, "sigma": sigma, "velocity_mse": round(v, 5),
                         "x0_mse": round(sigma ** 2 * v, 5), "x0_mse_static": split[False],
                         "x0_mse_moving": split[True], "moving_share": round(counts[True] / sum(counts.values()), 4),
                         "x0_mse_repeat_frame0": round(sum(rep_err) / len(rep_err), 5),
                         "x0_mse_zero": round(sum(zero_err) / len(zero_err), 5), "n": len(items)})
    return rows


@torch.no_grad()
def action_probe(trainer, clips: list, seed: int, sigmas: tuple[float, ...] = (0.6, 0.95),
                 captions: tuple[bool, ...] = (True, False)) -> list[dict]:
    """Does the video read the actions? Forward dynamics' x0 error on the moving latent positions with the clip's own
    actions, with the next clip's, and with zeros: equal errors mean the generated video ignores them. With the
    caption and without it (then the actions are the only thing that says where the gripper goes)."""
    from cosmos3.train.batch import prepare_gen

    r, model = trainer.recipe, trainer.model.eval()
    rows = []
    for sigma, caption in ((s, c) for c in captions for s in sigmas):
        cfg = fixed(r.loss, "forward_dynamics", sigma, caption)
        samples = [prepare_gen(item, pos, seed, cfg, trainer.tokenizer.backend, model, r.data.use_system_prompt)
                   for pos, item in enumerate(clips)]
        sums, count = {"own": 0.0, "other_clip": 0.0, "zeros": 0.0}, 0  # over moving positions, as measure()
        for i, (item, sample) in enumerate(zip(clips, samples)):
            x_in, x0 = sample.noised.inputs, item.vision.float()
            own, noisy = x_in.actions, x_in.vision_noisy
            other = samples[(i + 1) % len(samples)].noised.inputs.actions
            moving = moving_positions(x0, noisy)
            for name, actions in (("own", own), ("other_clip", other), ("zeros", torch.zeros_like(own))):
                x_in.actions = actions
                velocity = trainer.module.gen_predictions([sample])[0].vision.float().cpu()
                err = x0_error(sample, velocity, x0, sigma)
                sums[name] += float(err[moving.expand_as(err)].sum())
            x_in.actions = own
            count += int(moving.sum()) * int(noisy.sum())
        rows.append({"sigma": sigma, "caption": caption,
                     **{f"moving_x0_mse_{k}_actions": round(v / count, 5) if count else None for k, v in sums.items()},
                     "moving_positions": count})
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


def print_measured(rows: list[dict], sampled: list[dict]) -> None:
    print(f"{'task':<18}{'sigma':>6}{'v MSE':>9}{'x0 MSE':>9}{'static':>9}{'moving':>9}{'repeat f0':>11}{'zero':>9}"
          "  beats repeat")
    fmt = lambda x: f"{x:>9.4f}" if x is not None else f"{'-':>9}"  # noqa: E731
    for row in rows:
        beats = "yes" if row["x0_mse"] < row["x0_mse_repeat_frame0"] else "no"
        print(f"{row['task']:<18}{row['sigma']:>6.2f}{row['velocity_mse']:>9.4f}{row['x0_mse']:>9.4f}"
              f"{fmt(row['x0_mse_static'])}{fmt(row['x0_mse_moving'])}{row['x0_mse_repeat_frame0']:>11.4f}"
              f"{row['x0_mse_zero']:>9.4f}  {beats}")
    share = [r["moving_share"] for r in rows if r["task"] == "forward_dynamics"][0]
    print(f"(moving: latent positions whose content changes over the generated frames, {share:.0%} of the forward "
          "dynamics clips' positions)")
    print("\nforward dynamics sampled through the training forward (20 Euler steps, shift 3, no guidance)")
    print(f"{'from sigma':>10}{'x0 MSE':>9}{'clip mean':>11}")
    for row in sampled:
        print(f"{row['start_sigma']:>10.2f}{row['sampled_x0_mse']:>9.4f}{row['x0_mse_clip_mean']:>11.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a pico run folder (generator/recipe.json, latents/)")
    p.add_argument("--checkpoint", type=Path, help="weights to measure (default: RUN/pico, the shipped folder)")
    p.add_argument("--samples", type=int, default=24, help="latent samples per (task, sigma)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--embodiment", help="forward dynamics on this embodiment's clips only (pico: umi, the gripper; "
                   "camera_pose, the moving camera); default: the first clips of the latents")
    p.add_argument("--probe-only", action="store_true", help="only the action probe (about a minute): the first "
                   "number to watch while a generator learns to read its actions")
    args = p.parse_args(argv)
    if not (args.run / "generator" / "recipe.json").is_file() or not (args.run / "latents").is_dir():
        print(f"pico_loss_by_sigma: error: --run {args.run}: needs generator/recipe.json and latents/ (a pico v2 run "
              "folder past its generator stage)", file=sys.stderr)
        return 2
    if args.samples < 1:
        p.error("--samples must be >= 1")
    domain_id = None
    if args.embodiment:
        from cosmos3.actions import ActionError, get_embodiment

        try:
            domain_id = get_embodiment(args.embodiment).domain_id
        except ActionError as e:
            p.error(f"--embodiment: {e}")
    checkpoint = args.checkpoint or args.run / "pico"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(args.run, checkpoint, Path(tmp))
        videos, clips = first_items(trainer, args.samples, domain_id)
        if not clips:
            print(f"pico_loss_by_sigma: error: --embodiment {args.embodiment}: no such action clips in "
                  f"{args.run / 'latents'}", file=sys.stderr)
            return 2
        rows = [] if args.probe_only else measure(trainer, videos, clips, args.seed)
        sampled = [] if args.probe_only else sample_fd(trainer, clips, args.seed)
        probe = action_probe(trainer, clips, args.seed)
    if rows:
        print_measured(rows, sampled)
    print("\nforward dynamics, x0 error on the moving positions, by the actions given")
    print(f"{'caption':<9}{'sigma':>6}{'own':>9}{'other clip':>12}{'zeros':>9}")
    for row in probe:
        print(f"{'yes' if row['caption'] else 'dropped':<9}{row['sigma']:>6.2f}"
              f"{row['moving_x0_mse_own_actions']:>9.4f}"
              f"{row['moving_x0_mse_other_clip_actions']:>12.4f}{row['moving_x0_mse_zeros_actions']:>9.4f}")
    print(json.dumps({"bench": "pico_loss_by_sigma", "checkpoint": str(checkpoint), "samples": args.samples,
                      "embodiment": args.embodiment, "seed": args.seed,
                      "seconds": round(time.perf_counter() - started, 1), "rows": rows, "sampled": sampled,
                      "action_probe": probe}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
