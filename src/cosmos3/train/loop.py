"""The training loop: build everything from a recipe, then step, log, checkpoint, resume and export.

    trainer = Trainer(recipe)          # loads the checkpoint, data, optimizer; resumes when asked
    trainer.fit()                      # run.steps optimizer steps; metrics in <output>/metrics.jsonl

One optimizer step: this process takes its share of the global batch from the sampler, prepares each sample (its
random draws come from the run seed and its stream position only), groups them into micro-batches, and runs
forward + backward per micro-batch (gradients accumulate; FSDP syncs them on the last one). Each sample's loss is
weighted 1 / batch_size, so the step's gradient is that of the mean loss over the global batch whatever the number
of processes. Then gradient clipping, AdamW, the LR schedule and the EMA.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
from pathlib import Path

import torch

from ..actions import ACTION_STATS_FILE, load_stats_file, save_stats_file
from ..checkpoint import WeightIndex, load_transformer, resolve_checkpoint
from . import checkpointing
from .batch import TrainModule, group, is_action_head, is_gen_param, prepare_chat, prepare_gen
from .chat import ChatSource
from .data import Encoder, LatentSource, LeRobotSource, ShardedSampler, VideoFolderSource
from .distributed import Dist, clip_grad_norm, init, load_sharded, shard, shard_like
from .recipe import TrainRecipe

VISION_PREFIX = "vision_encoder."  # trained vision-tower parameters in checkpoints and exported states


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base LR at optimizer step `step` (0-based): linear warm-up, then cosine / linear decay to
    min_ratio at the last step, or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * (1.0 - progress)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fresh_action_heads(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """New values of the action heads, drawn with the release's initialization (cosmos-framework
    cosmos3_vfm_network.init_weights): weights truncated normal at +-3 std, std = 1 / sqrt(fan in) (action width for
    action2llm, hidden size for llm2action and the modality embedding), biases zero. Whole tensors on the CPU."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if not is_action_head(name):
            continue
        x = torch.zeros(p.shape, dtype=torch.float32)
        if not name.endswith("bias.weight"):
            std = 1.0 / math.sqrt(cfg.action_dim if name.startswith("action_proj_in.") else cfg.hidden_size)
            torch.nn.init.trunc_normal_(x, std=std, a=-3 * std, b=3 * std, generator=g)
        out[name] = x
    return out


def param_groups(named: dict[str, torch.nn.Parameter], head_lr_mult: float, lr: float) -> list[dict]:
    """AdamW groups: the action heads at `head_lr_mult` x the LR, the rest at 1x ("lr_mult" is kept per group)."""
    heads = [p for n, p in named.items() if is_action_head(n)]
    rest = [p for n, p in named.items() if not is_action_head(n)]
    groups = [{"params": rest, "lr": lr, "lr_mult": 1.0}, {"params": heads, "lr": lr * head_lr_mult,
                                                          "lr_mult": head_lr_mult}]
    return [g for g in groups if g["params"]]


def set_trainable(model: torch.nn.Module, mode: str) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(mode == "full" or (mode != "vision" and (mode == "gen") == is_gen_param(name)))


class Trainer:
    def __init__(self, recipe: TrainRecipe, dist: Dist | None = None, fault: dict | None = None):
        recipe.validate()
        self.recipe = recipe
        self.dist = dist or init(recipe.run.device, group=recipe.model.fsdp == "always")
        self.fault = fault or {}  # tests: {"at_step": n} kills the process after step n; {"in": "checkpoint"}
        self.output = Path(recipe.run.output)
        self.step = 0
        device = self.dist.device
        torch.manual_seed(recipe.run.seed)

        self.fsdp = recipe.model.fsdp == "always" or (recipe.model.fsdp == "auto" and self.dist.world > 1)
        if self.dist.world > 1 and not self.fsdp:
            raise ValueError("model.fsdp = 'never' with several processes: gradients would not be synchronized")

        # network and what trains. Under FSDP (LoRA aside) it is built on meta, sharded, and each process reads
        # only its own rows of the weights (load_sharded); LoRA reads it whole to the CPU, then moves its shards.
        ckpt = resolve_checkpoint(recipe.model.checkpoint)  # "pico" is the embedded model
        recipe.model.checkpoint = str(ckpt)
        read_by_shard = self.fsdp and recipe.model.train != "lora"
        if read_by_shard:
            index = WeightIndex(ckpt)
            self.model = index.build().train()
        else:
            self.model = load_transformer(ckpt, dtype=torch.float32,
                                          device=torch.device("cpu") if self.fsdp else device).train()
        self.peft_model = None
        if recipe.model.train == "lora":
            from .lora import add_lora, load_adapter_state, read_adapter

            self.peft_model = add_lora(self.model, recipe.lora)
            if recipe.lora.adapter:
                load_adapter_state(self.model, read_adapter(recipe.lora.adapter)[1])
        else:
            set_trainable(self.model, recipe.model.train)

        # data
        from ..tokenizers import TextTokenizer

        self.tokenizer = TextTokenizer.from_pretrained(ckpt / "text_tokenizer")
        self.kind = "chat" if recipe.data.kind == "chat" else "gen"
        self.source = self._source()
        self.action_stats = self._action_stats(ckpt)
        if self.action_stats and self.dist.is_main:  # for `train export` of this run's checkpoints
            self.output.mkdir(parents=True, exist_ok=True)
            save_stats_file(self.output / ACTION_STATS_FILE, self.action_stats)
        self.sampler = ShardedSampler(len(self.source), recipe.run.seed, recipe.data.shuffle)
        vision = None
        if self.kind == "chat":
            vision = self._reasoner_parts()

        # sharding, optimizer, schedule, EMA
        self.module = TrainModule(self.model, recipe.loss, recipe.model.activation_checkpointing, vision,
                                  pack=recipe.data.pack)
        if read_by_shard:
            load_sharded(index, self.model, device, root=self.module)
        elif self.fsdp:
            shard(self.module, self.model.layers)
            self.module.to(device)
        if recipe.model.reinit_action_heads:
            fresh = fresh_action_heads(self.model, recipe.run.seed)
            if not fresh:
                raise ValueError(f"model.reinit_action_heads: {ckpt} has no action heads")
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, full in fresh.items():
                    params[name].copy_(shard_like(full, params[name].detach()))
        self.named_trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if recipe.model.train_vision:
            if self.kind != "chat" or vision is None or self.fsdp:
                raise ValueError("model.train_vision: needs chat data, a checkpoint with vision_encoder/, and one "
                                 "process (the vision tower is not sharded)")
            vision.requires_grad_(True).train()
            self.named_trainable.update({f"{VISION_PREFIX}{n}": p for n, p in vision.model.named_parameters()})
        if not self.named_trainable:
            raise ValueError(f"model.train = {recipe.model.train!r} leaves nothing to train")
        self.param_names = {id(p): n for n, p in self.named_trainable.items()}
        o = recipe.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.named_trainable, o.action_head_lr_mult, o.lr), lr=o.lr,
                                           betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, foreach=True)
        self.ema = None
        if o.ema_decay > 0:
            self.ema = {n: p.detach().clone() for n, p in self.named_trainable.items()}
        self._resume()

    # ------------------------------------------------------------------------------------------ building

    def _source(self):
        d = self.recipe.data
        encoder = Encoder(self.recipe.model.checkpoint, self.dist.device, d.cache_latents)
        if d.kind == "lerobot":
            return LeRobotSource(d.path, encoder, camera=d.camera, chunk_size=d.chunk_size, stride=d.stride,
                                 height=d.height, width=d.width, embodiment=d.embodiment,
                                 normalize_actions=d.normalize_actions, sound=d.sound,
                                 action_columns=d.action_columns, state_columns=d.state_columns,
                                 flip_gripper=d.flip_gripper, concat_view=d.concat_view,
                                 missing_views=d.missing_views, resolution=d.resolution,
                                 caption_format=d.caption_format)
        if d.kind == "video":
            return VideoFolderSource(d.path, encoder, num_frames=d.num_frames, height=d.height, width=d.width,
                                     sound=d.sound)
        if d.kind == "latents":
            return LatentSource(d.path, normalize_actions=d.normalize_actions)
        return ChatSource(d.path, turns=d.chat_turns, seed=self.recipe.run.seed)

    def _action_stats(self, ckpt: Path) -> dict:
        """The exported checkpoint's action_stats.json: the base's entries, this data's over them. Raw actions
        trained into a checkpoint that learnt the same embodiment normalized would mix two spaces: refused."""
        base = load_stats_file(ckpt / ACTION_STATS_FILE)
        used = getattr(self.source, "action_stats", {})
        clash = sorted((getattr(self.source, "embodiments", set()) & set(base)) - set(used))
        if clash:
            raise ValueError(f"data.normalize_actions: {ckpt} learnt {', '.join(clash)} actions normalized "
                             f"({ACTION_STATS_FILE}); set data.normalize_actions = true to train in that space")
        return {**base, **used}

    def _reasoner_parts(self):
        """The reasoner's prompt builder (chat template + media expansion) and its frozen vision tower, if any."""
        from ..model.vision import VisionProcessor, VisionTower
        from ..reasoner import Reasoner

        root = Path(self.recipe.model.checkpoint)
        vision_dir = root / "vision_encoder"
        vision = None
        if vision_dir.is_dir():
            vision = VisionTower.from_pretrained(vision_dir, torch.float32, self.dist.device).eval()
            vision.requires_grad_(False)
        processor = VisionProcessor.from_dirs(vision_dir, root, root / "text_tokenizer")
        self.reasoner = Reasoner(self.model, self.tokenizer, vision, processor)
        return vision

    def _resume(self) -> None:
        run = self.recipe.run
        if run.resume == "none":
            return
        folder = checkpointing.latest(self.output) if run.resume == "auto" else Path(run.resume)
        if folder is None:
            return
        ckpt = checkpointing.load(folder, self.dist)
        missing = sorted(set(self.named_trainable) - set(ckpt["trainable"]))
        if missing:
            raise ValueError(f"{folder}: checkpoint lacks trained parameters {missing[:3]} (a different model.train "
                             "or lora setting?); start a new run.output or pass --resume none")
        with torch.no_grad():
            for name, full in ckpt["trainable"].items():
                if name not in self.named_trainable:
                    raise ValueError(f"{folder}: parameter {name!r} is not trained by this recipe")
                p = self.named_trainable[name]
                p.copy_(shard_like(full, p.detach()))
            if self.ema is not None and ckpt["ema"] is not None:
                for name, full in ckpt["ema"].items():
                    self.ema[name].copy_(shard_like(full, self.ema[name]))
        checkpointing.load_optimizer_tensors(self.optimizer, self.param_names, ckpt["optimizer"])
        state = ckpt["state"]
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["data"])
        if ckpt["rng"] is not None:
            checkpointing.set_rng_state(ckpt["rng"])
        if self.dist.is_main:
            print(f"resumed from {folder} at step {self.step}", flush=True)

    # ------------------------------------------------------------------------------------------ one step

    def _prepare(self, share: list[tuple[int, int]]) -> list:
        r = self.recipe
        if self.kind == "chat":
            return [prepare_chat(self.source[i], self.reasoner, r.data.max_text_tokens) for _, i in share]
        return [prepare_gen(self.source[i], pos, r.run.seed, r.loss, self.tokenizer.backend, self.model,
                            r.data.use_system_prompt) for pos, i in share]

    def _micro_batches(self, samples: list) -> list[tuple[list, float]]:
        """[(samples, weight)]; every process runs the same number of micro-batches (FSDP collectives pair up),
        padding with weight-0 repeats where it has fewer."""
        groups = [([samples[i] for i in g], 1.0)
                  for g in group(samples, self.recipe.run.batch_tokens, self.recipe.data.pack)]
        most = self.dist.all_reduce_max(len(groups))
        return groups + [(groups[0][0], 0.0)] * (most - len(groups))

    def train_step(self) -> dict:
        r = self.recipe
        started = time.perf_counter()
        lr = r.optim.lr * lr_factor(self.step, r.optim.warmup_steps, r.run.steps, r.optim.schedule,
                                    r.optim.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        if r.run.overfit_batch and self.sampler.position:  # the same samples at the same stream positions
            self.sampler.position = 0
        share = self.sampler.next_batch(r.run.batch_size, self.dist.rank, self.dist.world)
        samples = self._prepare(share)
        micro = self._micro_batches(samples)
        # FSDP averages gradients over processes: scale so the result is the mean over the global batch.
        scale = (self.dist.world if self.fsdp else 1) / r.run.batch_size
        device = self.dist.device
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and r.run.autocast
                    else contextlib.nullcontext())
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens, parts_sum, parts_n = 0.0, 0, {}, {}
        for i, (batch, weight) in enumerate(micro):
            if self.fsdp:
                self.module.set_requires_gradient_sync(i == len(micro) - 1)
            with autocast:
                loss, parts = self.module(self.kind, batch)
            (loss * (weight * scale)).backward()
            if weight:
                loss_sum += float(loss.detach())
                tokens += sum(s.tokens for s in batch)
                for p in parts:
                    for k, v in p.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v
                        parts_n[k] = parts_n.get(k, 0) + 1
        grad_norm = clip_grad_norm(list(self.named_trainable.values()), r.optim.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                for name, p in self.named_trainable.items():
                    self.ema[name].lerp_(p.detach(), 1.0 - r.optim.ema_decay)
        self.step += 1
        keys = sorted(set(parts_sum) | {"vision", "actions", "sound", "text"})
        totals = self.dist.all_reduce_sum([loss_sum, float(tokens)] + [parts_sum.get(k, 0.0) for k in keys]
                                          + [float(parts_n.get(k, 0)) for k in keys])
        n = len(keys)
        seconds = time.perf_counter() - started
        metrics = {"step": self.step, "loss": totals[0] / r.run.batch_size, "lr": lr, "grad_norm": grad_norm,
                   "tokens": int(totals[1]), "tokens_per_s": totals[1] / max(seconds, 1e-9), "step_s": seconds,
                   "processes": self.dist.world,
                   "peak_memory_bytes": peak_memory_bytes(device)}
        for k, s, c in zip(keys, totals[2:2 + n], totals[2 + n:]):
            if c:
                metrics[f"loss_{k}"] = s / c
        return metrics

    # ------------------------------------------------------------------------------------------ the loop

    def save(self) -> Path:
        r = self.recipe
        return checkpointing.save(
            self.output, self.step, self.dist, trainable=self.named_trainable, ema=self.ema, optimizer=self.optimizer,
            param_names=self.param_names, keep=r.run.keep_checkpoints, fault=self.fault.get("in"),
            state={"data": self.sampler.state_dict(), "lr_factor": lr_factor(self.step, r.optim.warmup_steps,
                                                                             r.run.steps, r.optim.schedule,
                                                                             r.optim.min_lr_ratio),
                   "recipe": r.to_dict()})

    def fit(self) -> list[dict]:
        from tqdm.auto import tqdm

        r = self.recipe.run
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "recipe.json").write_text(json.dumps(self.recipe.to_dict(), indent=2) + "\n")
        history = []
        bar = tqdm(total=r.steps, initial=self.step, desc="training", unit="step",
                   disable=not (r.progress and self.dist.is_main))
        metrics_file = self.output / "metrics.jsonl"
        started, self.paused = time.perf_counter(), False
        while self.step < r.steps:
            if r.max_hours and self._over_time(started, r.max_hours):
                self.save()  # the time cap: a resumable stop, not the end (no export)
                self.paused = True
                break
            m = self.train_step()
            history.append(m)
            if self.dist.is_main:
                bar.update(1)
                bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}", refresh=False)
                if self.step % r.log_every == 0 or self.step == r.steps:
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps(m) + "\n")
            if self.fault.get("at_step") == self.step:  # tests: an abrupt death mid-run
                os.kill(os.getpid(), 9)
            if (r.save_every and self.step % r.save_every == 0) or self.step == r.steps:
                self.save()
        bar.close()
        if r.export and not self.paused:
            self.export(self.output / "export")
        return history

    def _over_time(self, started: float, hours: float) -> bool:
        """Whether the cap is reached, decided alike on every process (clocks differ by a step's jitter)."""
        over = int(time.perf_counter() - started >= hours * 3600)
        return bool(self.dist.all_reduce_max(over))

    def _export_embodiment(self, folder: Path) -> None:
        """A post-trained variant (policy_droid) is the exported checkpoint's own embodiment: its native settings
        (cosmos3_defaults.json) name it and the caption form it trained on, so the Generator and serve-policy
        default to both."""
        from ..actions.embodiments import VARIANTS
        from ..request import DEFAULTS_FILE

        emb = getattr(self.source, "embodiment", None)
        if emb is None or emb.name not in VARIANTS:
            return
        path = folder / DEFAULTS_FILE
        native = json.loads(path.read_text()) if path.is_file() else {}
        extra = {"caption_format": self.source.caption_format} if hasattr(self.source, "caption_format") else {}
        path.write_text(json.dumps({**native, "embodiment": emb.name, **extra}, indent=2) + "\n")

    def trained_state(self, ema: bool = False) -> dict[str, torch.Tensor]:
        """Whole copies of the trained parameters (or their EMA); a collective under FSDP."""
        return checkpointing.gather(self.ema if ema and self.ema is not None else self.named_trainable)

    def export(self, out: Path) -> Path | None:
        """LoRA: the adapter alone (out/adapter) and the merged checkpoint (out/checkpoint); else the checkpoint."""
        from .export import export_adapter, export_checkpoint

        state = self.trained_state(self.recipe.run.export_ema)
        if self.dist.is_main:
            lora = self.recipe.lora if self.peft_model is not None else None
            if self.peft_model is not None:
                export_adapter(self.peft_model, out / "adapter", state)
            vision = {k[len(VISION_PREFIX):]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
            state = {k: v for k, v in state.items() if not k.startswith(VISION_PREFIX)}
            export_checkpoint(self.recipe.model.checkpoint, out / "checkpoint", state, lora, vision or None,
                              action_stats=self.action_stats)
            self._export_embodiment(out / "checkpoint")
        self.dist.barrier()
        return out
