"""`pico`: train the whole small Cosmos 3 model of the synthetic world, from nothing, with one command.

    cosmos3 train --recipe pico [--output runs/pico] [--smoke]        (also: bash recipes/pico.sh)

Stages, in order; each writes <output>/<stage>.json when done, so a second run skips finished stages and the long
ones (reasoner and generator training) resume from their last checkpoint:

    world        the training world (seed 0) and the held-out evaluation world (seed 1) as LeRobot v3 + chat JSONL
    tokenizer    byte-level BPE over the world's text, Qwen special tokens, ChatML        -> ckpt/text_tokenizer
    vae          Wan 2.2-layout AutoencoderKLWan on world frames                          -> ckpt/vae
    audio        Cosmos3AVAEAudioTokenizer on world sounds                                -> ckpt/sound_tokenizer
    assemble     random MoT network + tiny Qwen3-VL vision tower, scheduler, model_index  -> ckpt/ (official layout)
    latents      every training episode encoded once: action samples (policy / forward / inverse dynamics) and
                 captioned text/image-to-video samples, with sound, and the actions' statistics -> latents/
    reasoner     SFT of the understanding pathway on the world's question/answer videos  -> reasoner/export
    vision       the vision tower alone, network frozen (generation untouched)            -> vision/export
    generator    flow matching of the generation pathway (understanding frozen)           -> generator/export
    ship         the final checkpoint, weights in bfloat16                                -> <output>/pico

Everything is seeded; the figures of every stage land in its JSON file and in docs/PICO.md.

Designs. `PicoPlan.design` names a `PicoDesign` preset: "v1" is the shipped model's recipe (unchanged, reproducible);
"v2" (issue 21, docs/PICO.md "pico v2") is an easier-to-see world (the table seen 1.4x closer, so blocks and gripper
are 1.4x larger; 17-frame 1 s clips; a faster gripper) and an 8x spatial video VAE trained resumably under a
per-stage time cap. v2 implements the stages measured so far (world, vae); the others refuse until they exist:

    python -m cosmos3.train.pico --design v2 --output RUN [--stage-hours 2.5]     (also: bash recipes/pico_v2.sh)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..actions import ACTION_STATS_FILE, get_embodiment, save_stats_file
from ..config import Cosmos3Config
from .components import save_json, train_audio_tokenizer, train_text_tokenizer, train_video_vae

# The network: both pathways, Qwen-style, at a size that trains on 2 CPU cores in about an hour.
PICO_CONFIG = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                   intermediate_size=768, vocab_size=2048, latent_channel=48, patch_latent_dim=192,
                   sound_gen=True, sound_dim=16, action_gen=True, action_dim=64, num_embodiment_domains=32,
                   rope_theta=5e6, rms_norm_eps=1e-6)
VISION_CONFIG = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16,
                     spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0],
                     num_position_embeddings=256)
# What `Generator.generate()` uses on pico when the caller leaves a setting out (model_index.json, cosmos3_defaults).
NATIVE = {"resolution": "256p", "aspect_ratio": "16:9", "num_frames": 33, "fps": 16, "num_inference_steps": 20,
          "guidance_scale": 3.0, "flow_shift": 3.0, "action_chunk_size": 32, "action_num_inference_steps": 20,
          "action_guidance_scale": 1.0}


@dataclass(frozen=True)
class WorldDesign:
    """The synthetic world pico trains and is evaluated on (cosmos3.world settings; all opt-in)."""
    px_per_m: float = 400.0  # image pixels per table meter: larger = blocks and gripper drawn larger
    duration_s: float = 2.0  # clip length at `fps` (frames = 1 + duration * fps, a 4k+1 count)
    fps: int = 16
    gripper_speed: tuple = (0.16, 0.3)  # m/s, drawn per episode

    @property
    def num_frames(self) -> int:
        return 1 + int(round(self.duration_s * self.fps))

    def config(self):
        from ..world.camera import CameraConfig
        from ..world.episode import TabletopConfig
        from ..world.export import WorldConfig
        from ..world.geometry import Table

        if self == WorldDesign():
            return WorldConfig()  # v1: the world's own defaults, exactly
        return WorldConfig(tabletop=TabletopConfig(duration_s=self.duration_s, gripper_speed=self.gripper_speed,
                                                   table=Table(px_per_m=self.px_per_m)),
                           camera=CameraConfig(duration_s=self.duration_s))


@dataclass(frozen=True)
class VaeDesign:
    """The video VAE (Wan 2.2 layout: patch 2, residual) and how it trains."""
    base_dim: int = 8
    z_dim: int = 48
    spatial: int = 16  # 16: three 2x stages after the 2x patch; 8: two
    steps: int = 1500
    batch_size: int = 4
    frames: int = 5  # pixel frames per training window (4k+1)
    crop: int = 96  # square training crop (pixels, a multiple of 16)
    lr: float = 1e-3
    train_clips: tuple = (160, 40)  # (tabletop, camera) training episodes it sees
    heldout_clips: tuple = (32, 8)  # held-out (eval world) episodes of the final PSNR; a quarter for the curve
    eval_every: int = 250


@dataclass(frozen=True)
class PicoDesign:
    name: str
    world: WorldDesign
    vae: VaeDesign
    stages: tuple  # the stages this design implements, in order
    stage_hours: float = 2.5  # a resumable stage stops (state saved) after this long; run again to continue


ALL_STAGES = ("world", "tokenizer", "vae", "audio", "assemble", "latents", "reasoner", "vision", "generator", "ship")
DESIGNS = {
    "v1": PicoDesign("v1", WorldDesign(), VaeDesign(), ALL_STAGES),
    # v2, issue 21. World: 560 px/m (blocks 31-37 px across instead of 22-26, the gripper likewise), 17 frames at
    # 16 fps, gripper 0.25-0.35 m/s (140-196 px/s, 2x v1's per frame; measured 92% task success over 80 seeds at 1 s,
    # against 70% at v1's speed and 89% at 0.3-0.45). VAE: 8x spatial (a block is 4-5 latent pixels wide instead of
    # 2), base width 16 (v1: 8), 2000 steps on 400 clips. Width 24 and 128 px crops were measured 12 s a step on a
    # shared core (2026-12-02, load 7 on 2 cores) against ~1.5 s alone: steps, not width, are the scarce thing.
    "v2": PicoDesign("v2", WorldDesign(px_per_m=560.0, duration_s=1.0, fps=16, gripper_speed=(0.25, 0.35)),
                     VaeDesign(base_dim=16, z_dim=48, spatial=8, steps=2000, batch_size=4, frames=5, crop=96,
                               lr=1e-3, train_clips=(320, 80), heldout_clips=(16, 4), eval_every=250),
                     ("world", "vae")),
}


@dataclass
class PicoPlan:
    output: Path = Path("runs/pico")
    episodes: int = 1000  # training world (80% tabletop, 20% moving camera)
    eval_episodes: int = 200
    gen_episodes: int = 600  # episodes encoded for the generator (the VAE encode is the slow part)
    vae_steps: int = 1500
    audio_steps: int = 600
    reasoner_steps: int = 1000
    vision_steps: int = 1000
    generator_steps: int = 2600
    batch_size: int = 8
    seed: int = 0
    workers: int = 2
    progress: bool = True
    design: str = "v1"
    stage_hours: float | None = None  # None: the design's cap (v2's resumable stages)
    vae_eval_every: int | None = None  # None: the design's
    heldout_clips: tuple | None = None  # None: the design's
    device: str | None = None  # None: the trainers' own choice (the reference: CPU); "cuda" for recipes/pico_gpu.sh
    bf16: bool = False  # bf16 autocast (weights and optimizer states stay float32)
    batch_scale: int = 1  # batch sizes (and batch token budgets) times this

    @classmethod
    def smoke(cls, output: Path, design: str = "v1") -> "PicoPlan":
        """Every stage at a size that runs in a few minutes (CI)."""
        return cls(output=output, episodes=10, eval_episodes=4, gen_episodes=6, vae_steps=4, audio_steps=2,
                   reasoner_steps=2, vision_steps=2, generator_steps=2, batch_size=2, design=design,
                   vae_eval_every=4, heldout_clips=(1, 0))

    @classmethod
    def for_design(cls, design: str, output: Path, **overrides) -> "PicoPlan":
        """The full-size plan of a design (its step counts)."""
        d = DESIGNS[design]
        return cls(output=output, design=design, vae_steps=d.vae.steps, **overrides)

    @property
    def spec(self) -> PicoDesign:
        if self.design not in DESIGNS:
            raise ValueError(f"unknown pico design {self.design!r}; known: {', '.join(DESIGNS)}")
        return DESIGNS[self.design]


def _done(plan: PicoPlan, stage: str) -> Path:
    return plan.output / f"{stage}.json"


class StagePaused(Exception):
    """A resumable stage reached its time cap; its state is saved and the same command continues it."""


def run(plan: PicoPlan, only: list[str] | None = None) -> Path:
    spec = plan.spec
    plan.output.mkdir(parents=True, exist_ok=True)
    if "OMP_NUM_THREADS" not in os.environ:  # every core, unless the caller chose (jobs running side by side)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    design_marker = plan.output / "design.json"
    if design_marker.is_file() and json.loads(design_marker.read_text())["design"] != spec.name:
        raise ValueError(f"{plan.output} holds a pico {json.loads(design_marker.read_text())['design']} run; "
                         f"give the {spec.name} run another output folder")
    if spec.name != "v1":  # v1's run folders stay as they were
        save_json(design_marker, {"design": spec.name})
    missing = [s for s in (only or []) if s not in spec.stages]
    if missing:
        raise ValueError(f"pico {spec.name} has no stage {', '.join(missing)} yet (it has {', '.join(spec.stages)})")
    fns = {"world": _world, "tokenizer": _tokenizer, "vae": _vae if spec.name == "v1" else _vae_resumable,
           "audio": _audio, "assemble": _assemble, "latents": _latents, "reasoner": _reasoner, "vision": _vision,
           "generator": _generator, "ship": _ship}
    for name in spec.stages:
        if only and name not in only:
            continue
        marker = _done(plan, name)
        if marker.is_file() and not only:
            print(f"[pico] {name}: done already ({marker})", flush=True)
            continue
        print(f"[pico] {name} ...", flush=True)
        started = time.perf_counter()
        figures = fns[name](plan) or {}
        figures["seconds"] = round(time.perf_counter() - started, 1)
        save_json(marker, figures)
        print(f"[pico] {name}: {json.dumps(figures)}", flush=True)
    if spec.stages != ALL_STAGES:
        print(f"[pico] design {spec.name}: stages {', '.join(spec.stages)} done; the rest are not implemented yet",
              flush=True)
    return plan.output / "pico"


# ------------------------------------------------------------------------------------------------ stages


def _world(plan: PicoPlan) -> dict:
    from ..world.export import WorldConfig, generate_dataset

    for name, seed, n in (("world", plan.seed, plan.episodes), ("eval_world", plan.seed + 1, plan.eval_episodes)):
        out = plan.output / name
        if (out / "world.json").is_file():
            continue
        if out.exists():
            shutil.rmtree(out)
        world = plan.spec.world
        config = WorldConfig() if plan.design == "v1" else world.config()
        generate_dataset(out, episodes=n, seed=seed, fps=world.fps, config=config, workers=plan.workers,
                         progress=plan.progress)
    return {"episodes": plan.episodes, "eval_episodes": plan.eval_episodes}


def world_texts(world: Path) -> list[str]:
    """Every piece of text the model meets: chat turns, captions, tasks, the templates' sentences."""
    from ..actions import VIEWPOINT_SENTENCES
    from .data import action_caption

    texts = []
    for line in (world / "chat.jsonl").read_text().splitlines():
        for m in json.loads(line)["messages"]:
            c = m["content"]
            texts.extend([c] if isinstance(c, str) else [p["text"] for p in c if p.get("type") == "text"])
    texts += ["You are a helpful assistant.", "You are a helpful assistant who will generate videos from a give "
              "prompt.", "You are a helpful assistant who will generate images from a give prompt."]
    for fps in (10, 16, 24, 30):
        for frames in (1, 17, 33, 65):
            texts.append(f"The video is {frames / fps:.1f} seconds long and is of {fps:.0f} FPS. "
                         f"This video is of 192x320 resolution. The video is not {frames / fps:.1f} seconds long "
                         f"and is not of {fps:.0f} FPS. This video is not of 192x320 resolution.")
    texts += [action_caption("Push the red square to the left.", v, 33, 16) for v in VIEWPOINT_SENTENCES]
    texts.append(json.dumps({"duration": 2.1, "fps": 16, "resolution": {"H": 192, "W": 320}, "aspect_ratio": "16:9"}))
    return texts


def _tokenizer(plan: PicoPlan) -> dict:
    texts = world_texts(plan.output / "world")
    tok = train_text_tokenizer(texts, plan.output / "ckpt" / "text_tokenizer", PICO_CONFIG["vocab_size"])
    sample = texts[1]
    return {"vocab": len(tok), "texts": len(texts),
            "bytes_per_token": round(len(sample.encode()) / len(tok.encode(sample)), 2)}


def _episode_clips(plan: PicoPlan, dataset: str, n: int, with_sound: bool = False, world: str = "world"):
    """Whole episodes of the training world (33 frames each in v1): (frames uint8 [n, T, H, W, 3], sound or None)."""
    from ..world.lerobot import LeRobotDataset

    chunk = plan.spec.world.num_frames - 1
    ds = LeRobotDataset(plan.output / world / dataset, chunk_size=chunk, stride=chunk, sound=with_sound)
    items = [ds[i] for i in range(min(n, len(ds)))]
    frames = torch.stack([it["frames"] for it in items])
    sound = torch.stack([it["sound"] for it in items]) if with_sound else None
    return frames, sound


def _vae(plan: PicoPlan) -> dict:
    top, _ = _episode_clips(plan, "tabletop", 160)
    cam, _ = _episode_clips(plan, "camera", 40)
    clips = torch.cat([top, cam])
    return train_video_vae(clips, plan.output / "ckpt" / "vae", steps=plan.vae_steps, base_dim=8, z_dim=48,
                           seed=plan.seed, progress=plan.progress)


def design_vae(d: VaeDesign):
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


def _vae_resumable(plan: PicoPlan) -> dict:
    """The video VAE as a deterministic autoencoder (L1 + MSE on pixels, a small L2 pull on the latents, AdamW with
    warmup and cosine decay) on random crops of training-world windows, with its whole state saved every
    `eval_every` steps and at the stage's time cap (StagePaused: the same command resumes, bit for bit the same data
    order). Every eval_every steps: the held-out PSNR of a quarter of the held-out clips (whole frames, whole clips)
    into <output>/vae_train/metrics.jsonl. At the end: latents_mean/std from whole training clips, the PSNR of all
    held-out clips, the VAE saved in ckpt/vae."""
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from .components import _lr_at, _to_pixels

    d, cap_h = plan.spec.vae, plan.stage_hours if plan.stage_hours is not None else plan.spec.stage_hours
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
        t0 = torch.randint(T - d.frames + 1, (1,), generator=g).item()
        y0 = torch.randint(0, (H - crop) // 16 + 1, (1,), generator=g).item() * 16
        x0 = torch.randint(0, (W - crop) // 16 + 1, (1,), generator=g).item() * 16
        x = _to_pixels(clips[idx, t0:t0 + d.frames, y0:y0 + crop, x0:x0 + crop].to(device))
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


def _audio(plan: PicoPlan) -> dict:
    _, sound = _episode_clips(plan, "tabletop", 200, with_sound=True)
    return train_audio_tokenizer(sound.float(), plan.output / "ckpt" / "sound_tokenizer", steps=plan.audio_steps,
                                 latent_dim=PICO_CONFIG["sound_dim"], dim=8, seed=plan.seed, progress=plan.progress)


@torch.no_grad()
def init_weights(model: torch.nn.Module, seed: int) -> None:
    """GPT-style init: normal(0, 0.02) matrices and embeddings, zero biases, unit norms; output projections scaled
    down by depth so the residual stream starts near the identity."""
    g = torch.Generator().manual_seed(seed)
    layers = sum(1 for n, _ in model.named_modules() if n.count(".") == 1 and n.startswith("layers."))
    for name, p in model.named_parameters():
        if "norm" in name and p.ndim == 1:
            p.fill_(1.0)
        elif name.endswith("bias") or name.endswith("modality_embed"):
            p.zero_()
        else:
            std = 0.02 / (2 * max(layers, 1)) ** 0.5 if any(k in name for k in ("to_out", "to_add_out",
                                                                                   "down_proj")) else 0.02
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _assemble(plan: PicoPlan) -> dict:
    """The starting checkpoint, written through diffusers' own pipeline so the reference loads it as it is."""
    from diffusers import (AutoencoderKLWan, Cosmos3AVAEAudioTokenizer, Cosmos3OmniPipeline, Cosmos3OmniTransformer,
                           UniPCMultistepScheduler)
    from transformers import AutoTokenizer, Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    ckpt = plan.output / "ckpt"
    cfg = Cosmos3Config(**PICO_CONFIG)
    torch.manual_seed(plan.seed)
    transformer = Cosmos3OmniTransformer(**{k: v for k, v in cfg.to_dict().items() if not k.startswith("_")})
    init_weights(transformer, plan.seed)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                        flow_shift=NATIVE["flow_shift"], solver_order=2, solver_type="bh2",
                                        predict_x0=True, lower_order_final=True, num_train_timesteps=1000)
    pipe = Cosmos3OmniPipeline(transformer=transformer,
                               text_tokenizer=AutoTokenizer.from_pretrained(ckpt / "text_tokenizer"),
                               vae=AutoencoderKLWan.from_pretrained(ckpt / "vae"), scheduler=scheduler,
                               sound_tokenizer=Cosmos3AVAEAudioTokenizer.from_pretrained(ckpt / "sound_tokenizer"),
                               safety_checker=None, enable_safety_checker=False)
    staging = plan.output / "ckpt.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    pipe.save_pretrained(str(staging))
    shutil.copytree(ckpt / "text_tokenizer", staging / "text_tokenizer", dirs_exist_ok=True)  # chat template too
    torch.manual_seed(plan.seed)
    vision = Qwen3VLVisionModel(Qwen3VLVisionConfig(out_hidden_size=cfg.hidden_size, **VISION_CONFIG))
    vision.save_pretrained(str(staging / "vision_encoder"))
    processor = {"min_pixels": 1024, "max_pixels": 320 * 192 * 2}  # a world frame stays at its size: 60 tokens
    (staging / "vision_encoder" / "preprocessor_config.json").write_text(json.dumps(processor))
    (staging / "vision_encoder" / "video_preprocessor_config.json").write_text(json.dumps(processor))
    index = json.loads((staging / "model_index.json").read_text())
    (staging / "cosmos3_defaults.json").write_text(json.dumps(NATIVE, indent=2) + "\n")  # not in model_index
    (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (staging / "config.json").write_text(json.dumps({"model_type": "cosmos3_omni", "name": "pico",
                                                     "trained_on": "cosmos3.world (synthetic)"}, indent=2) + "\n")
    for name in ("vae", "sound_tokenizer"):  # the trained weights, exactly as written by their trainers
        shutil.copytree(ckpt / name, staging / name, dirs_exist_ok=True)
    for name in ("vae", "sound_tokenizer", "text_tokenizer"):
        shutil.rmtree(ckpt / name)
    shutil.rmtree(ckpt)
    os.replace(staging, ckpt)
    return {"transformer_parameters": sum(p.numel() for p in transformer.parameters()),
            "vision_parameters": sum(p.numel() for p in vision.parameters())}


def _encode_part(args) -> list[dict]:
    """One worker's share of the latents stage (a process of its own, one thread)."""
    root, ckpt, out, dataset, indexes = args
    torch.set_num_threads(1)
    from ..actions import get_embodiment
    from ..world.lerobot import LeRobotDataset
    from .data import Encoder, action_caption
    from safetensors.torch import save_file

    sound = dataset == "tabletop"
    ds = LeRobotDataset(Path(root) / dataset, chunk_size=32, stride=32, sound=sound)
    embodiment = get_embodiment(ds.domain_name or ds.domain_id)
    enc = Encoder(ckpt, torch.device("cpu"), cache=False)
    records = []
    for i in indexes:
        w = ds[i]
        T, H, W = w["frames"].shape[:3]
        key = f"{dataset}:{w['episode_index']}"
        vision = enc.encode(key, w["frames"], None, None)
        tensors = {"vision": vision.contiguous()}
        if sound and w.get("sound") is not None:
            tensors["sound"] = enc.encode_sound(key, w["sound"], 48000, T, float(w["fps"])).contiguous()
        meta = dict(fps=float(w["fps"]), num_frames=T, height=H, width=W)
        base = f"{dataset}-{w['episode_index']:06d}"
        save_file(tensors, str(Path(out) / f"{base}-video.safetensors"))
        captions = ds.episodes[ds.windows[i][0]].get("world/captions") or []
        if captions:
            records.append(dict(file=f"{base}-video.safetensors", prompt=captions[0], domain_id=None, **meta))
        # action modes generate no sound (as in the release), so their samples carry none
        save_file({"vision": tensors["vision"], "actions": w["actions"].float().contiguous()},
                  str(Path(out) / f"{base}-action.safetensors"))
        records.append(dict(file=f"{base}-action.safetensors", domain_id=embodiment.domain_id,
                            prompt=action_caption(w["task"], embodiment.viewpoint, T, w["fps"]), **meta))
    return records


def _latents(plan: PicoPlan) -> dict:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from ..world.lerobot import LeRobotDataset
    from .data import INDEX_NAME

    out = plan.output / "latents"
    out.mkdir(parents=True, exist_ok=True)
    world = plan.output / "world"
    n_top = int(plan.gen_episodes * 0.85)
    jobs = []
    for dataset, n in (("tabletop", n_top), ("camera", plan.gen_episodes - n_top)):
        total = min(n, len(LeRobotDataset(world / dataset, chunk_size=32, stride=32)))
        for start in range(0, total, 8):
            jobs.append((str(world), str(plan.output / "ckpt"), str(out), dataset,
                         list(range(start, min(total, start + 8)))))
    records = []
    with ProcessPoolExecutor(plan.workers, mp_context=get_context("spawn")) as pool:
        for part in tqdm(pool.map(_encode_part, jobs), total=len(jobs), desc="encoding", unit="batch",
                         disable=not plan.progress):
            records.extend(part)
    world_action_stats(world, out / ACTION_STATS_FILE)
    tmp = out / (INDEX_NAME + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, out / INDEX_NAME)
    return {"samples": len(records), "action_samples": sum(r["domain_id"] is not None for r in records)}


def world_action_stats(world: Path, path: Path) -> Path:
    """action_stats.json of the world's two embodiments, from each dataset's meta/stats.json (all its episodes).
    The generator learns actions normalized with them: raw, the tabletop's translations are ~0.01 m per step and
    its rotations ~0.08, against flow-matching noise of std 1 (measured 2026-12-02: inverse dynamics trained raw
    was worse than predicting the mean action)."""
    from ..world.lerobot import LeRobotDataset
    from .data import dataset_action_stats

    stats = {}
    for dataset in ("tabletop", "camera"):
        ds = LeRobotDataset(world / dataset, chunk_size=32, stride=32)
        stats[get_embodiment(ds.domain_name or ds.domain_id).name] = dataset_action_stats(ds.root)
    return save_stats_file(path, stats)


def _train(plan: PicoPlan, stage: str, checkpoint: Path, settings: dict) -> dict:
    from .loop import Trainer
    from .recipe import from_dict

    recipe = from_dict(settings, f"pico {stage}")
    recipe.model.checkpoint = str(checkpoint)
    recipe.run.output = str(plan.output / stage)
    recipe.run.progress = plan.progress
    recipe.run.seed = plan.seed
    if plan.device is not None:
        recipe.run.device, recipe.run.autocast = plan.device, plan.bf16
    if plan.batch_scale != 1:
        recipe.run.batch_size *= plan.batch_scale
        recipe.run.batch_tokens *= plan.batch_scale
    trainer = Trainer(recipe)
    history = trainer.fit()
    metrics = [json.loads(line) for line in (plan.output / stage / "metrics.jsonl").read_text().splitlines()]
    first, last = metrics[:20], metrics[-20:]
    mean = lambda rows: sum(r["loss"] for r in rows) / len(rows)  # noqa: E731
    del history
    return {"steps": recipe.run.steps, "loss_first20": round(mean(first), 4), "loss_last20": round(mean(last), 4),
            "tokens_per_s": round(sum(r["tokens_per_s"] for r in last) / len(last), 1)}


def _chat_sft(plan: PicoPlan, stage: str, base: Path, train: str, steps: int) -> dict:
    """SFT on the world's question/answer videos; the vision tower trains in both chat stages."""
    return _train(plan, stage, base, {
        "model": {"train": train, "train_vision": True},
        "data": {"kind": "chat", "path": str(plan.output / "world" / "chat.jsonl"), "max_text_tokens": 512},
        "optim": {"lr": 2e-3, "warmup_steps": 50, "schedule": "cosine", "min_lr_ratio": 0.05, "weight_decay": 0.0},
        "run": {"steps": steps, "batch_size": plan.batch_size, "batch_tokens": 4096, "save_every": 100,
                "keep_checkpoints": 1},
    })


def _reasoner(plan: PicoPlan) -> dict:
    return _chat_sft(plan, "reasoner", plan.output / "ckpt", "und", plan.reasoner_steps)


def _vision(plan: PicoPlan) -> dict:
    """The vision tower alone, on the same chat data, with the whole network frozen: the reasoner learns to see
    without moving the understanding pathway the generator is conditioned on (so this stage and the generator's are
    independent). Measured need: after the joint SFT the reasoner answered every visual question with the training
    set's most common answer."""
    return _chat_sft(plan, "vision", plan.output / "reasoner" / "export" / "checkpoint", "vision", plan.vision_steps)


def _generator(plan: PicoPlan) -> dict:
    return _train(plan, "generator", plan.output / "reasoner" / "export" / "checkpoint", {
        "model": {"train": "gen"},
        "data": {"kind": "latents", "path": str(plan.output / "latents"), "normalize_actions": True},
        # v2v keeps 8 of the 9 latent frames clean: mostly a video-to-sound (foley) task, plus the last frames
        "loss": {"sigma_sampling": "logit_normal", "shift": 3.0, "caption_dropout": 0.1, "t2v": 0.45, "i2v": 0.35,
                 "v2v": 0.2, "v2v_frames": 8, "policy": 0.4, "forward_dynamics": 0.3, "inverse_dynamics": 0.3},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "schedule": "cosine", "min_lr_ratio": 0.05, "weight_decay": 0.0,
                  "ema_decay": 0.995},
        "run": {"steps": plan.generator_steps, "batch_size": plan.batch_size, "batch_tokens": 8192,
                "save_every": 200, "keep_checkpoints": 1, "export_ema": True},
    })


def _ship(plan: PicoPlan) -> dict:
    """The exported checkpoint with its transformer weights in bfloat16 (half the bytes; loading casts back)."""
    from safetensors.torch import load_file, save_file

    src = plan.output / "generator" / "export" / "checkpoint"
    dst, tmp = plan.output / "pico", plan.output / "pico.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.tmp"))
    shutil.rmtree(tmp / "vision_encoder")  # the one the vision stage trained
    shutil.copytree(plan.output / "vision" / "export" / "checkpoint" / "vision_encoder", tmp / "vision_encoder")
    for f in sorted((tmp / "transformer").glob("*.safetensors")):
        state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(f)).items()}
        save_file(state, str(f), metadata={"format": "pt"})
    _demo_inputs(plan, tmp / "demo")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    return {"path": str(dst), "megabytes": round(size / 2**20, 2)}


def _demo_inputs(plan: PicoPlan, out: Path) -> None:
    """`cosmos3 demo`'s inputs: frame 0 of a held-out episode and 64 actions (that episode's and the next one's, as
    deltas they apply from any state)."""
    from PIL import Image

    from ..actions import save_actions
    from ..world.lerobot import LeRobotDataset

    ds = LeRobotDataset(plan.output / "eval_world" / "tabletop", chunk_size=32, stride=32)
    first, second = ds[0], ds[1 % len(ds)]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(first["frames"][0].numpy()).save(out / "frame.png")
    save_actions(out / "actions.json", torch.cat([first["actions"], second["actions"]]).numpy())


def plot_curve(rows: list[dict], path: Path, series: tuple = ("heldout_psnr_db", "loss"),
               refs: dict | None = None, title: str = "") -> Path:
    """A learning curve as a PNG (PIL only): one panel per series over `step`, with labelled horizontal reference
    lines in the first panel (refs: {label: value})."""
    from PIL import Image, ImageDraw

    W, H, pad, gap = 640, 220, 48, 16
    img = Image.new("RGB", (W, len(series) * (H + gap) + 24), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 4), title, fill="black")
    steps = [r["step"] for r in rows]
    x0, x1 = 0, max(steps + [1])
    for k, key in enumerate(series):
        top = 24 + k * (H + gap)
        ys = [r[key] for r in rows if key in r]
        extra = list((refs or {}).values()) if k == 0 else []
        lo, hi = min(ys + extra), max(ys + extra)
        lo, hi = (lo - 1, hi + 1) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))

        def at(step, v):
            return (pad + (step - x0) / (x1 - x0) * (W - 2 * pad), top + H - 20 - (v - lo) / (hi - lo) * (H - 30))

        draw.rectangle([pad, top, W - pad, top + H - 20], outline="grey")
        for v in (lo, (lo + hi) / 2, hi):
            draw.text((2, at(0, v)[1] - 6), f"{v:.3g}", fill="grey")
        for st in (x0, x1 // 2, x1):
            draw.text((at(st, lo)[0] - 8, top + H - 16), str(st), fill="grey")
        for label, v in (refs or {}).items() if k == 0 else ():
            y = at(0, v)[1]
            draw.line([pad, y, W - pad, y], fill=(200, 120, 0))
            draw.text((pad + 4, y - 12), f"{label} {v:g}", fill=(200, 120, 0))
        pts = [at(r["step"], r[key]) for r in rows if key in r]
        if len(pts) > 1:
            draw.line(pts, fill=(31, 119, 180), width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
        draw.text((W - pad - 160, top + 4), f"{key} vs step", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


SHARD_LIMIT = 15 * 2**20  # bytes: every weight file written by write_sharded stays under 16 MB


def write_sharded(src: Path, dst: Path, max_bytes: int = SHARD_LIMIT) -> dict:
    """Copy a checkpoint folder to `dst` with every safetensors file larger than `max_bytes` split into shards in the
    layout diffusers and transformers write themselves (`<stem>-0000i-of-0000n.safetensors` + `<stem>.safetensors.
    index.json` with metadata.total_size and weight_map), so `from_pretrained` of either library, and this package's
    loader, read the folder as it is. Files already under the limit are copied unchanged. A single tensor larger than
    the limit is an error (it cannot be split without changing the format). Returns {"files", "largest_bytes"}."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.tmp"))
    for f in sorted(tmp.rglob("*.safetensors")):
        if f.stat().st_size <= max_bytes:
            continue
        with safe_open(str(f), "pt") as h:
            metadata = h.metadata() or {"format": "pt"}
            tensors = {k: h.get_tensor(k) for k in h.keys()}
        groups, size = [[]], 0
        for k, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            if nbytes + 4096 > max_bytes:
                raise ValueError(f"{f.relative_to(tmp)}: tensor {k} alone is {nbytes} bytes, over the "
                                 f"{max_bytes}-byte shard limit")
            if groups[-1] and size + nbytes + 4096 * (len(groups[-1]) + 1) > max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(k)
            size += nbytes
        stem = f.name[:-len(".safetensors")]
        weight_map = {}
        for i, keys in enumerate(groups, 1):
            name = f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors"
            save_file({k: tensors[k].contiguous() for k in keys}, str(f.parent / name), metadata=metadata)
            weight_map.update({k: name for k in keys})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (f.parent / f"{f.name}.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
        f.unlink()
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    sizes = [f.stat().st_size for f in dst.rglob("*") if f.is_file()]
    return {"files": len(sizes), "largest_bytes": max(sizes, default=0)}


def main(argv: list[str] | None = None) -> int:
    """`python -m cosmos3.train.pico`: the recipe with a design choice (v1 is also `cosmos3 train --recipe pico`)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m cosmos3.train.pico", description="Train pico from nothing on the "
                                "synthetic world, one design (stages resume; resumable stages stop at a time cap).")
    p.add_argument("--design", default="v1", choices=sorted(DESIGNS))
    p.add_argument("--output", required=True, help="run folder (keep it outside the repository)")
    p.add_argument("--smoke", action="store_true", help="every stage at toy size")
    p.add_argument("--stage", action="append", choices=ALL_STAGES, help="run only this stage (again); repeatable")
    p.add_argument("--stage-hours", type=float, help="time cap of a resumable stage (default: the design's)")
    p.add_argument("--vae-steps", type=int, help="override the VAE's optimizer steps")
    p.add_argument("--device", help="train on this device (e.g. cuda; default: CPU, the reference)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (weights and optimizer stay float32)")
    p.add_argument("--batch-scale", type=int, default=1, help="batch sizes times this (a GPU: 8-32)")
    p.add_argument("--workers", type=int, help="processes for the world and latents stages (default 2)")
    p.add_argument("--export", help="also write the run's weights here, every file under --max-shard-mb (sharded "
                   "safetensors with index json, as diffusers writes them)")
    p.add_argument("--max-shard-mb", type=float, default=SHARD_LIMIT / 2**20)
    p.add_argument("--snapshot", help="only write the VAE of the run's last saved state (vae_train/state.pt) to "
                   "SNAPSHOT/vae, for eval_pico --tasks vae --checkpoint SNAPSHOT while the stage runs")
    p.add_argument("--plot", help="only draw the run's VAE learning curve (vae_train/metrics.jsonl) to this PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.snapshot:
        state = torch.load(Path(args.output) / "vae_train" / "state.pt", weights_only=False, map_location="cpu")
        vae = design_vae(DESIGNS[args.design].vae)
        vae.load_state_dict(state["vae"])
        vae.save_pretrained(str(Path(args.snapshot) / "vae"))  # latents_mean/std 0/1: encode + decode unchanged
        print(f"snapshot: {args.snapshot}/vae (step {state['step']}, {state['seconds'] / 3600:.2f} h)")
        return 0
    if args.plot:
        rows = [json.loads(r) for r in (Path(args.output) / "vae_train" / "metrics.jsonl").read_text().splitlines()]
        plot_curve(rows, Path(args.plot), refs={"target": 30.0},
                   title=f"pico {args.design} video VAE: held-out PSNR (dB) and training loss")
        print(f"curve: {args.plot} ({len(rows)} points)")
        return 0
    if args.batch_scale < 1 or (args.workers is not None and args.workers < 1) or args.max_shard_mb <= 0:
        p.error("--batch-scale and --workers must be >= 1, --max-shard-mb > 0")
    output = Path(args.output)
    plan = PicoPlan.smoke(output, args.design) if args.smoke else PicoPlan.for_design(args.design, output)
    plan.progress = not args.quiet
    plan.stage_hours = args.stage_hours
    plan.device, plan.bf16, plan.batch_scale = args.device, args.bf16, args.batch_scale
    if args.workers is not None:
        plan.workers = args.workers
    if args.vae_steps is not None:
        plan.vae_steps = args.vae_steps
    try:
        out = run(plan, args.stage)
    except StagePaused as e:
        print(f"[pico] paused: {e}", flush=True)
        return 3
    except ValueError as e:
        print(f"python -m cosmos3.train.pico: error: {e}", file=sys.stderr)
        return 2
    print(f"pico run: {plan.output} (checkpoint, when every stage is done: {out})")
    if args.export:
        src = out if out.is_dir() else plan.output / "ckpt"  # a design with stages still to come: what exists
        figures = write_sharded(src, Path(args.export), int(args.max_shard_mb * 2**20))
        print(f"pico weights: {args.export} ({figures['files']} files, largest {figures['largest_bytes']} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
