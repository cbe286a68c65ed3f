"""pico v2's video VAE stage: the design's AutoencoderKLWan, trained as a deterministic autoencoder, resumable
bit for bit and capped in time per stage (it pauses with its whole state saved and the same command resumes), with
the held-out PSNR tracked as it goes."""

from __future__ import annotations

import json
import os
import time

import torch


def design_vae(d):
    """The video VAE of a design: AutoencoderKLWan, Wan 2.2 layout (patch 2, residual, 4x temporal) with
    log2(spatial) - 1 spatial 2x stages after the patch (16x: three, as the release; 8x: two)."""
    from diffusers import AutoencoderKLWan

    stages = {16: 3, 8: 2}[d.spatial]
    return AutoencoderKLWan(base_dim=d.base_dim, decoder_base_dim=d.base_dim, z_dim=d.z_dim,
                            dim_mult=[1] + [2] * stages, num_res_blocks=1,
                            temperal_downsample=[False] * (stages - 2) + [True, True], is_residual=True,
                            in_channels=12, out_channels=12, patch_size=2, scale_factor_temporal=4,
                            scale_factor_spatial=d.spatial, latents_mean=[0.0] * d.z_dim,
                            latents_std=[1.0] * d.z_dim)


def window_frames(d, step: int) -> int:
    """Pixel frames of the training window at `step`: short windows first (cheap), then each `longer` entry from its
    step on."""
    frames = d.frames
    for start, n in d.longer:
        if step >= start:
            frames = n
    return frames


@torch.no_grad()
def vae_psnr(vae, clips: torch.Tensor, bf16: bool = False) -> list[float]:
    """PSNR (dB, 8-bit scale) of each whole clip (uint8 [n, T, H, W, 3]) through encode (mode) and decode."""
    from .components import _to_pixels

    device = next(vae.parameters()).device
    out = []
    for i in range(clips.shape[0]):
        x = _to_pixels(clips[i:i + 1].to(device))
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
        rec = ((rec + 1) * 127.5).round()  # what a saved video holds
        mse = torch.mean((rec - (x + 1) * 127.5) ** 2).clamp_min(1e-6)
        out.append(float(10 * torch.log10(255.0 ** 2 / mse)))
    return out


def train_vae_resumable(plan) -> dict:
    """The video VAE as a deterministic autoencoder (L1 + MSE on pixels, a small L2 pull on the latents, AdamW with
    warmup and cosine decay) on random crops of training-world windows, with its whole state saved every
    `eval_every` steps and at the stage's time cap (StagePaused: the same command resumes, bit for bit the same data
    order). Every eval_every steps: the held-out PSNR of a quarter of the held-out clips (whole frames, whole clips)
    into <output>/vae_train/metrics.jsonl. At the end: latents_mean/std from whole training clips, the PSNR of all
    held-out clips, the VAE saved in ckpt/vae."""
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from .components import _lr_at, _to_pixels
    from .pico import StagePaused, _episode_clips  # the recipe's own pieces (pico imports this module)

    d, cap_h = plan.spec.vae, plan.cap_hours
    every = plan.vae_eval_every or d.eval_every
    n_top, n_cam = d.train_clips
    h_top, h_cam = plan.heldout_clips or d.heldout_clips
    steps = plan.vae_steps
    work = plan.output / "vae_train"
    work.mkdir(parents=True, exist_ok=True)
    def gather(world: str, counts: tuple) -> torch.Tensor:  # a small world may have no camera episodes
        return torch.cat([_episode_clips(plan, ds, k, world=world)[0] for ds, k in zip(("tabletop", "camera"), counts)
                          if k and (plan.output / world / ds / "meta" / "info.json").is_file()])

    clips, heldout = gather("world", (n_top, n_cam)), gather("eval_world", (h_top, h_cam))
    probe = heldout[torch.linspace(0, heldout.shape[0] - 1, max(1, heldout.shape[0] // 4)).long()]
    n, T, H, W, _ = clips.shape
    crop = min(d.crop, H, W)
    device = torch.device(plan.device or "cpu")
    batch = d.batch_size * plan.batch_scale
    torch.manual_seed(plan.seed)
    vae = design_vae(d).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=d.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(plan.seed)
    state_file, metrics_file = work / "state.pt", work / "metrics.jsonl"
    step, spent, running = 0, 0.0, None
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False, map_location=device)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"].cpu())
        step, spent, running = state["step"], state["seconds"], state["running"]
        print(f"[pico] vae: resuming at step {step} ({spent / 3600:.2f} h spent before)", flush=True)
    if metrics_file.is_file():  # drop curve rows past the saved state (a run stopped between saves)
        rows = [r for r in metrics_file.read_text().splitlines() if json.loads(r)["step"] <= step]
        metrics_file.write_text("".join(r + "\n" for r in rows))

    def save() -> None:
        tmp = work / "state.pt.tmp"
        torch.save({"vae": vae.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step,
                    "seconds": spent, "running": running}, tmp)
        os.replace(tmp, state_file)

    started = time.perf_counter()
    cap_s = cap_h * 3600
    bar = tqdm(range(step, steps), desc="video VAE", unit="step", disable=not plan.progress, initial=step,
               total=steps)
    for _ in bar:
        idx = torch.randint(n, (batch,), generator=g)
        frames = window_frames(d, step)
        t0 = torch.randint(T - frames + 1, (1,), generator=g).item()
        y0 = torch.randint(0, (H - crop) // 16 + 1, (1,), generator=g).item() * 16
        x0 = torch.randint(0, (W - crop) // 16 + 1, (1,), generator=g).item() * 16
        x = _to_pixels(clips[idx, t0:t0 + frames, y0:y0 + crop, x0:x0 + crop].to(device))
        lr = _lr_at(step, steps, d.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, torch.bfloat16, enabled=plan.bf16):
            z = vae.encode(x).latent_dist.mode()
            rec = vae.decode(z).sample
        rec, z = rec.float(), z.float()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        step += 1
        now = time.perf_counter()
        if step % every == 0 or step == steps:
            vae.eval()
            psnr = vae_psnr(vae, probe, plan.bf16)
            vae.train()
            with metrics_file.open("a") as f:
                f.write(json.dumps({"step": step, "loss": round(running, 5), "lr": lr,
                                    "heldout_psnr_db": round(sum(psnr) / len(psnr), 3),
                                    "hours": round((spent + now - started) / 3600, 4)}) + "\n")
            print(f"[pico] vae step {step}: loss {running:.4f}, held-out PSNR {sum(psnr) / len(psnr):.2f} dB "
                  f"({len(psnr)} clips)", flush=True)
            spent, started = spent + time.perf_counter() - started, time.perf_counter()
            save()
        if step < steps and spent + time.perf_counter() - started > cap_s:
            spent, started = spent + time.perf_counter() - started, time.perf_counter()
            save()
            raise StagePaused(f"vae: the stage's {cap_h} h cap reached at step {step}/{steps}; state saved in "
                              f"{work}; run the same command again to continue")
    spent += time.perf_counter() - started
    save()
    vae.eval()
    with torch.no_grad():  # per-channel statistics of whole-clip latents: the normalization the pipeline applies
        sample = clips[torch.randperm(n, generator=torch.Generator().manual_seed(plan.seed))[:min(n, 8)]]
        zs = torch.cat([vae.encode(_to_pixels(sample[i:i + 1].to(device))).latent_dist.mode()
                        for i in range(sample.shape[0])]).float()
        mean, std = zs.mean(dim=(0, 2, 3, 4)), zs.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    psnr = vae_psnr(vae, heldout)  # float32: the figure does not depend on how it trained
    vae.to("cpu")
    vae.register_to_config(latents_mean=[round(float(v), 6) for v in mean],
                           latents_std=[round(float(v), 6) for v in std])
    vae.save_pretrained(str(plan.output / "ckpt" / "vae"))
    tops = psnr[:h_top]
    return {"steps": steps, "loss": round(running, 5), "heldout_psnr_db": round(sum(psnr) / len(psnr), 3),
            "heldout_psnr_min_db": round(min(psnr), 3),
            "heldout_tabletop_psnr_db": round(sum(tops) / max(1, len(tops)), 3), "heldout_clips": len(psnr),
            "train_hours": round(spent / 3600, 3), "parameters": sum(p.numel() for p in vae.parameters()),
            "device": device.type, "bf16": plan.bf16, "batch_size": batch,
            "latent_hw": [H // d.spatial, W // d.spatial]}


# The files that let a paused VAE stage continue on another machine: its whole resumable state and its curve.
CARRIED = {"state.pt": "vae_state.pt", "metrics.jsonl": "vae_metrics.jsonl"}


def carry_state(output, dest) -> dict:
    """Copy a run's VAE stage state (weights, optimizer, data-order RNG, step, hours) into `dest`, a folder that can
    be committed, so that a fresh machine resumes the stage where it stopped (`adopt_state`)."""
    import shutil
    from pathlib import Path

    work, dest = Path(output) / "vae_train", Path(dest)
    if not (work / "state.pt").is_file():
        raise ValueError(f"{work / 'state.pt'}: no VAE stage state to carry (the stage saves it every eval_every "
                         f"steps)")
    state = torch.load(work / "state.pt", weights_only=False, map_location="cpu")
    dest.mkdir(parents=True, exist_ok=True)
    for src, dst in CARRIED.items():
        if (work / src).is_file():
            shutil.copyfile(work / src, dest / (dst + ".tmp"))
            os.replace(dest / (dst + ".tmp"), dest / dst)
    design = json.loads((Path(output) / "design.json").read_text())["design"]
    info = {"design": design, "step": state["step"], "hours": round(state["seconds"] / 3600, 3)}
    done = Path(output) / "vae.json"
    if done.is_file():  # the finished stage's output too: the trained VAE and its figures, for the stages after it
        if (dest / "vae").exists():
            shutil.rmtree(dest / "vae")
        shutil.copytree(Path(output) / "ckpt" / "vae", dest / "vae")
        shutil.copyfile(done, dest / "vae.json")
        info["finished"] = True
    (dest / "vae_state.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def adopt_state(src, output, design: str) -> dict | None:
    """Start a run's VAE stage from a carried state (`carry_state`) when the run has none or an older one; the data
    order continues bit for bit because the world is regenerated from the same seeds. None when nothing is adopted."""
    import shutil
    from pathlib import Path

    src, work = Path(src), Path(output) / "vae_train"
    info_file = src / "vae_state.json"
    if not info_file.is_file():
        raise ValueError(f"{info_file}: missing; not a folder written by --carry-state")
    info = json.loads(info_file.read_text())
    if info["design"] != design:
        raise ValueError(f"{src} carries a pico {info['design']} VAE state, not {design}")
    if (work / "state.pt").is_file():
        mine = torch.load(work / "state.pt", weights_only=False, map_location="cpu")["step"]
        if mine >= info["step"]:
            return None
    work.mkdir(parents=True, exist_ok=True)
    for dst, name in CARRIED.items():
        if (src / name).is_file():
            shutil.copyfile(src / name, work / (dst + ".tmp"))
            os.replace(work / (dst + ".tmp"), work / dst)
    if info.get("finished"):  # the stage is done: its VAE where the later stages read it, and its marker
        target = Path(output) / "ckpt" / "vae"
        staged = target.with_name(f"vae.{os.getpid()}.tmp")  # another process of the run may be reading ckpt/vae
        shutil.copytree(src / "vae", staged)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
        shutil.copyfile(src / "vae.json", Path(output) / "vae.json")
    return info
