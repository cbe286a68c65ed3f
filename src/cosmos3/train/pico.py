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
per-stage time cap (pico_design.py). v2 runs the same stages in another order: the understanding pathway and vision
tower (reasoner, vision) train before the VAE, on a checkpoint holding an untrained VAE that the VAE stage replaces,
so the longest stage can run beside them (`--stage vae` in a second process):

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
from .pico_design import ALL_STAGES, DESIGNS, PICO_CONFIG, VISION_CONFIG, PicoDesign
from .pico_tools import SHARD_LIMIT, TRAINER_SERIES, plot_curve, smoothed, write_sharded
from .pico_vae import adopt_state, carry_state, design_vae, train_vae_resumable

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
    generator_continue: tuple = ()  # then continue to each of these totals (the design's; --generator-steps: none)
    generator_continue_loss: dict = field(default_factory=dict)  # loss settings changed for the continuations
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
        steps = dict(vae_steps=d.vae.steps, reasoner_steps=d.reasoner_steps, vision_steps=d.vision_steps,
                     generator_steps=d.generator_steps, generator_continue=d.generator_continue,
                     generator_continue_loss=dict(d.generator_continue_loss))
        return cls(output=output, design=design, **{**steps, **overrides})

    @property
    def spec(self) -> PicoDesign:
        if self.design not in DESIGNS:
            raise ValueError(f"unknown pico design {self.design!r}; known: {', '.join(DESIGNS)}")
        return DESIGNS[self.design]

    @property
    def cap_hours(self) -> float:
        """How long a resumable stage runs in one process before it stops with its state saved."""
        return self.stage_hours if self.stage_hours is not None else self.spec.stage_hours


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
    if spec.name != "v1" and not design_marker.is_file():  # v1's run folders stay as they were
        save_json(design_marker, {"design": spec.name})
    missing = [s for s in (only or []) if s not in spec.stages]
    if missing:
        raise ValueError(f"pico {spec.name} has no stage {', '.join(missing)} yet (it has {', '.join(spec.stages)})")
    fns = {"world": _world, "tokenizer": _tokenizer, "vae": _vae if spec.name == "v1" else train_vae_resumable,
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
    if set(spec.stages) != set(ALL_STAGES):
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
    from ..lerobot import LeRobotDataset

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
    if not (ckpt / "vae" / "config.json").is_file():  # v2 assembles before its VAE stage: the design's untrained
        torch.manual_seed(plan.seed)                   # VAE holds the place (the understanding stages never use it)
        design_vae(plan.spec.vae).save_pretrained(str(ckpt / "vae"))
    cfg = Cosmos3Config(**PICO_CONFIG)
    torch.manual_seed(plan.seed)
    transformer = Cosmos3OmniTransformer(**{k: v for k, v in cfg.to_dict().items() if not k.startswith("_")})
    init_weights(transformer, plan.seed)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                        flow_shift=plan.spec.native["flow_shift"], solver_order=2, solver_type="bh2",
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
    (staging / "cosmos3_defaults.json").write_text(json.dumps(plan.spec.native, indent=2) + "\n")  # not in model_index
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
    root, ckpt, out, dataset, indexes, chunk = args
    torch.set_num_threads(1)
    from ..actions import get_embodiment
    from ..lerobot import LeRobotDataset
    from .data import Encoder, action_caption
    from safetensors.torch import save_file

    sound = dataset == "tabletop"
    ds = LeRobotDataset(Path(root) / dataset, chunk_size=chunk, stride=chunk, sound=sound)
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

    from ..lerobot import LeRobotDataset
    from .data import INDEX_NAME

    out = plan.output / "latents"
    out.mkdir(parents=True, exist_ok=True)
    world = plan.output / "world"
    n_top = int(plan.gen_episodes * 0.85)
    chunk = plan.spec.world.chunk
    jobs = []
    for dataset, n in (("tabletop", n_top), ("camera", plan.gen_episodes - n_top)):
        total = min(n, len(LeRobotDataset(world / dataset, chunk_size=chunk, stride=chunk)))
        for start in range(0, total, 8):
            jobs.append((str(world), str(plan.output / "ckpt"), str(out), dataset,
                         list(range(start, min(total, start + 8))), chunk))
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
    from ..lerobot import LeRobotDataset
    from .data import dataset_action_stats

    stats = {}
    for dataset in ("tabletop", "camera"):
        ds = LeRobotDataset(world / dataset, chunk_size=2, stride=2)  # only its root and domain are read
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
    recipe.run.max_hours = plan.cap_hours
    if plan.device is not None:
        recipe.run.device, recipe.run.autocast = plan.device, plan.bf16
    if plan.batch_scale != 1:
        recipe.run.batch_size *= plan.batch_scale
        recipe.run.batch_tokens *= plan.batch_scale
    trainer = Trainer(recipe)
    history = trainer.fit()
    if trainer.paused:
        raise StagePaused(f"{stage}: the stage's {plan.cap_hours} h cap reached at step {trainer.step}/"
                          f"{recipe.run.steps}; checkpoint saved in {plan.output / stage / 'checkpoints'}")
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
    figures = _generator_to(plan, plan.generator_steps, {})
    for total in plan.generator_continue:  # each resumes the previous total's last checkpoint
        figures = _generator_to(plan, total, plan.generator_continue_loss)
    return figures


def _generator_to(plan: PicoPlan, steps: int, loss_changes: dict) -> dict:
    return _train(plan, "generator", plan.output / "reasoner" / "export" / "checkpoint", {
        "model": {"train": "gen"},
        "data": {"kind": "latents", "path": str(plan.output / "latents"), "normalize_actions": True},
        # v2v keeps 8 of the 9 latent frames clean: mostly a video-to-sound (foley) task, plus the last frames
        "loss": {"sigma_sampling": "logit_normal", "shift": 3.0, "caption_dropout": 0.1, "t2v": 0.45, "i2v": 0.35,
                 "v2v": 0.2, "v2v_frames": 8, "policy": 0.4, "forward_dynamics": 0.3, "inverse_dynamics": 0.3,
                 **loss_changes},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "schedule": "cosine", "min_lr_ratio": 0.05, "weight_decay": 0.0,
                  "ema_decay": 0.995},
        "run": {"steps": steps, "batch_size": plan.batch_size, "batch_tokens": 8192,
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
    shutil.rmtree(tmp / "vae")  # v2's later stages started from a checkpoint assembled before its VAE was trained
    shutil.copytree(plan.output / "ckpt" / "vae", tmp / "vae")
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
    """`cosmos3 demo`'s inputs: frame 0 of a held-out episode and two chunks of actions (that episode's and the next
    one's, as deltas they apply from any state; v1: 64)."""
    from PIL import Image

    from ..actions import save_actions
    from ..lerobot import LeRobotDataset

    chunk = plan.spec.world.chunk
    ds = LeRobotDataset(plan.output / "eval_world" / "tabletop", chunk_size=chunk, stride=chunk)
    first, second = ds[0], ds[1 % len(ds)]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(first["frames"][0].numpy()).save(out / "frame.png")
    save_actions(out / "actions.json", torch.cat([first["actions"], second["actions"]]).numpy())


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
    p.add_argument("--generator-steps", type=int, help="override the generator's optimizer steps (with --stage "
                   "generator, a finished generator continues from its last checkpoint to this step; the cosine "
                   "schedule is recomputed for the new total)")
    p.add_argument("--device", help="train on this device (e.g. cuda; default: CPU, the reference)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (weights and optimizer stay float32)")
    p.add_argument("--batch-scale", type=int, default=1, help="batch sizes times this (a GPU: 8-32)")
    p.add_argument("--workers", type=int, help="processes for the world and latents stages (default 2)")
    p.add_argument("--export", help="also write the run's weights here, every file under --max-shard-mb (sharded "
                   "safetensors with index json, as diffusers writes them)")
    p.add_argument("--max-shard-mb", type=float, default=SHARD_LIMIT / 2**20)
    p.add_argument("--snapshot", help="only write the VAE of the run's last saved state (vae_train/state.pt) to "
                   "SNAPSHOT/vae, for eval_pico --tasks vae --checkpoint SNAPSHOT while the stage runs")
    p.add_argument("--carry-state", metavar="DIR", help="only copy the run's VAE stage state into DIR (a folder to "
                   "commit, e.g. recipes/pico_v2_state) so that another machine resumes from it")
    p.add_argument("--resume-state", metavar="DIR", help="start the VAE stage from the state carried in DIR when "
                   "the run has none or an older one")
    p.add_argument("--plot", help="only draw a stage's learning curve (--plot-stage; its metrics.jsonl) to this PNG")
    p.add_argument("--plot-stage", default="vae", choices=("vae", *TRAINER_SERIES),
                   help="whose curve --plot draws (default vae)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.snapshot:
        state = torch.load(Path(args.output) / "vae_train" / "state.pt", weights_only=False, map_location="cpu")
        vae = design_vae(DESIGNS[args.design].vae)
        vae.load_state_dict(state["vae"])
        vae.save_pretrained(str(Path(args.snapshot) / "vae"))  # latents_mean/std 0/1: encode + decode unchanged
        print(f"snapshot: {args.snapshot}/vae (step {state['step']}, {state['seconds'] / 3600:.2f} h)")
        return 0
    if args.carry_state:
        try:
            info = carry_state(args.output, args.carry_state)
        except ValueError as e:
            print(f"python -m cosmos3.train.pico: error: {e}", file=sys.stderr)
            return 2
        print(f"carried: {args.carry_state} (pico {info['design']} VAE at step {info['step']}, {info['hours']} h)")
        return 0
    if args.plot:
        folder = "vae_train" if args.plot_stage == "vae" else args.plot_stage
        metrics = Path(args.output) / folder / "metrics.jsonl"
        if not metrics.is_file():
            print(f"python -m cosmos3.train.pico: error: {metrics}: missing (has the {args.plot_stage} stage run?)",
                  file=sys.stderr)
            return 2
        rows = [json.loads(r) for r in metrics.read_text().splitlines() if r.strip()]
        if args.plot_stage == "vae":
            plot_curve(rows, Path(args.plot), refs={"target": 30.0},
                       title=f"pico {args.design} video VAE: held-out PSNR (dB) and training loss")
        else:
            series = tuple(k for k in TRAINER_SERIES[args.plot_stage] if any(k in r for r in rows))
            rows = smoothed(rows, series)
            plot_curve(rows, Path(args.plot), series=series,
                       title=f"pico {args.design} {args.plot_stage}: training loss (mean of the last 50 steps)")
        print(f"curve: {args.plot} ({len(rows)} points)")
        return 0
    if args.batch_scale < 1 or (args.workers is not None and args.workers < 1) or args.max_shard_mb <= 0:
        p.error("--batch-scale and --workers must be >= 1, --max-shard-mb > 0")
    if any(n is not None and n < 1 for n in (args.vae_steps, args.generator_steps)):
        p.error("--vae-steps and --generator-steps must be >= 1")
    output = Path(args.output)
    plan = PicoPlan.smoke(output, args.design) if args.smoke else PicoPlan.for_design(args.design, output)
    plan.progress = not args.quiet
    plan.stage_hours = args.stage_hours
    plan.device, plan.bf16, plan.batch_scale = args.device, args.bf16, args.batch_scale
    if args.workers is not None:
        plan.workers = args.workers
    if args.vae_steps is not None:
        plan.vae_steps = args.vae_steps
    if args.generator_steps is not None:
        plan.generator_steps, plan.generator_continue, plan.generator_continue_loss = args.generator_steps, (), {}
    try:
        if args.resume_state:
            plan.output.mkdir(parents=True, exist_ok=True)
            adopted = adopt_state(args.resume_state, plan.output, args.design)
            if adopted:
                print(f"[pico] vae: starting from the carried state at step {adopted['step']} ({args.resume_state})",
                      flush=True)
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
