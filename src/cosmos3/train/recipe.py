"""Training recipes: typed configuration sections, read from TOML and overridden from the command line.

A recipe file has one table per section (all optional; defaults below):

    [model]  checkpoint = "ckpt/"  train = "gen"          what to load and which weights train
    [lora]   rank = 16  targets = ["add_q_proj", ...]     when model.train = "lora"
    [data]   kind = "lerobot"  path = "data/droid"        where samples come from
    [loss]   sigma_sampling = "waver"  shift = 5.0        flow matching / SFT settings
    [optim]  lr = 1e-4  schedule = "cosine"               AdamW and its LR schedule
    [run]    steps = 1000  batch_size = 8  output = "runs/x"   loop, checkpoints, logging

`set_value(recipe, "optim.lr", "3e-4")` parses a string into the field's type (the CLI's `--set`).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAIN_MODES = ("full", "gen", "und", "lora", "vision")
DATA_KINDS = ("lerobot", "video", "latents", "chat")
SIGMA_SAMPLINGS = ("logit_normal", "uniform", "waver")
SCHEDULES = ("cosine", "linear", "constant")
VIEW_ROLES = ("wrist", "exterior_1", "exterior_2")  # data.concat_view: top, bottom left, bottom right
MISSING_VIEWS = ("refuse", "duplicate")


@dataclass
class ModelConfig:
    checkpoint: str = ""  # official-layout checkpoint directory (transformer/, vae/, text_tokenizer/, ...)
    # full: every weight; gen: generation pathway only, und frozen (the release's SFT); und: understanding pathway
    # only (reasoner SFT); lora: low-rank adapters on `lora.targets`, everything else frozen; vision: the reasoner's
    # vision tower alone (with train_vision), the network frozen, so generation is untouched
    train: str = "gen"
    train_vision: bool = False  # chat data, one process: also train the reasoner's vision tower (vision_encoder/)
    activation_checkpointing: bool = False  # recompute each layer in backward: less memory, ~30% more compute
    fsdp: str = "auto"  # auto: shard with FSDP2 when launched on several processes; always; never
    # fresh action heads (action_proj_in / action_proj_out / action_modality_embed, the release's action2llm /
    # llm2action / action_modality_embed) instead of the checkpoint's, as the release's post-training does for a new
    # action layout (Policy-DROID); drawn from run.seed with the release's initialization
    reinit_action_heads: bool = False


@dataclass
class LoraConfig:
    rank: int = 16
    alpha: float = 16.0  # scale = alpha / rank
    dropout: float = 0.0
    # module names (suffixes) to adapt; the defaults are the gen pathway's attention projections
    targets: list[str] = field(default_factory=lambda: ["add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"])
    adapter: str = ""  # an adapter folder to start from (peft format), "" = fresh adapters


@dataclass
class DataConfig:
    kind: str = "lerobot"  # lerobot | video (folder of MP4 + captions) | latents (precomputed) | chat (JSONL)
    path: str = ""
    camera: str | None = None  # LeRobot video feature; None = the first camera with videos
    chunk_size: int = 16  # LeRobot: actions per window (frames = chunk_size + 1)
    stride: int = 16  # LeRobot: frames between window starts
    num_frames: int = 17  # video folders: frames per clip (1 or 4k+1)
    height: int | None = None  # resize frames to this size before encoding (None = keep the source size)
    width: int | None = None
    embodiment: str | None = None  # LeRobot: override the dataset's embodiment (name or domain id)
    action_columns: list[str] = field(default_factory=list)  # LeRobot: columns concatenated into the action row
    # ([] = the `action` column, or actions derived from DROID's cartesian state)
    state_columns: list[str] = field(default_factory=list)  # LeRobot: the robot state at a window's first frame
    # (columns concatenated), given as a clean action token at video frame 0 (the release's use_state); [] = none
    flip_gripper: bool = False  # LeRobot: the last action and state channel become 1 - g (the release's DROID data)
    # LeRobot: {"wrist": key, "exterior_1": key, "exterior_2": key}: compose the three cameras as concat_view (wrist
    # on top, the exteriors at half size below, [3H/2, W]); {} = one camera (data.camera)
    concat_view: dict[str, str] = field(default_factory=dict)
    missing_views: str = "refuse"  # concat_view cameras without videos: refuse (name them) | duplicate (a present one)
    resolution: str = "480p"  # concat_view: the Generator's canvas tier the composed frames are placed on (as served)
    caption_format: str | None = None  # a variant's action caption (policy_droid): json (the release's; None) | plain
    sound: bool = False  # also train on the clips' sound (encoded with the checkpoint's audio tokenizer, 48 kHz)
    normalize_actions: bool = False  # quantile-normalize actions with the dataset's statistics (q01 -> -1, q99 -> 1)
    cache_latents: bool = True  # keep VAE latents in memory after the first encode (exact: the VAE is deterministic)
    use_system_prompt: bool = True  # generation prompts get the release's system prompt
    max_text_tokens: int = 2048  # chat: longer conversations are cut (labels included)
    chat_turns: int = 1  # chat: single questions about the same media joined into conversations of up to this many
    # question/answer pairs (the media encoded once, every answer labelled); 1 = each line as it is
    pack: bool = False  # put the samples of a micro-batch end to end in one row of up to run.batch_tokens tokens,
    # each attending only to itself with its own positions: no padding (chat), any latent shapes together (generation)
    shuffle: bool = True


@dataclass
class LossConfig:
    sigma_sampling: str = "logit_normal"  # logit_normal | uniform | waver (the release's rule)
    logit_mean: float = 0.0  # logit-normal: sigma = sigmoid(mean + std * N(0, 1))
    logit_std: float = 1.0
    shift: float = 1.0  # resolution shift s: sigma -> s sigma / (1 + (s - 1) sigma); 1 = none
    sigma_min: float = 0.0  # sampled sigmas are clamped to [sigma_min, sigma_max]
    sigma_max: float = 1.0
    vision_weight: float = 1.0
    action_weight: float = 1.0
    sound_weight: float = 1.0
    caption_dropout: float = 0.0  # probability of training on the empty / negative prompt (for CFG)
    negative_prompt: str = ""  # the text that replaces a dropped caption
    # conditioning mix for video: relative weights of text-to-video (all frames noisy), image-to-video (latent
    # frame 0 clean) and video-to-video (the first `v2v_frames` latent frames clean)
    t2v: float = 1.0
    i2v: float = 0.0
    v2v: float = 0.0
    v2v_frames: int = 2
    # action data: relative weights of policy (frame 0 clean -> video + actions), forward dynamics (frame 0 and
    # actions clean -> video) and inverse dynamics (video clean -> actions)
    policy: float = 1.0
    forward_dynamics: float = 0.0
    inverse_dynamics: float = 0.0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant (after warm-up)
    min_lr_ratio: float = 0.0  # the schedule ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    ema_decay: float = 0.0  # EMA of the trained weights; 0 = off (0.999 is typical)
    action_head_lr_mult: float = 1.0  # LR multiplier of the action heads (the release's Policy-DROID recipe: 5)


@dataclass
class RunConfig:
    output: str = "runs/cosmos3"  # run folder: checkpoints/, metrics.jsonl, export/
    steps: int = 1000  # optimizer steps
    batch_size: int = 1  # samples per optimizer step, over all processes (a multiple of the process count)
    batch_tokens: int = 16384  # token budget of one micro-batch (samples of one shape are grouped up to it)
    seed: int = 0
    save_every: int = 500  # checkpoint every N steps (and at the end); 0 = only at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept
    log_every: int = 1  # metrics line every N steps
    resume: str = "auto"  # auto: the run's latest checkpoint if any; none; or a checkpoint folder
    export: bool = True  # write export/ (official layout, or the adapter for LoRA) at the end
    export_ema: bool = False  # export the EMA weights instead of the raw ones
    progress: bool = True
    overfit_batch: bool = False  # sanity check: every step reuses the first global batch, noise and all
    device: str | None = None  # None: cuda (this process's local rank) when available, else cpu
    autocast: bool = True  # bf16 autocast on GPU (weights and optimizer stay float32)
    max_hours: float = 0.0  # stop after this long in one process, checkpoint saved (resume continues); 0 = no cap


@dataclass
class TrainRecipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.model.train in TRAIN_MODES, f"model.train: expected one of {TRAIN_MODES}, got {self.model.train!r}")
        need(self.model.fsdp in ("auto", "always", "never"), f"model.fsdp: expected auto|always|never, got "
             f"{self.model.fsdp!r}")
        need(self.data.kind in DATA_KINDS, f"data.kind: expected one of {DATA_KINDS}, got {self.data.kind!r}")
        need(self.loss.sigma_sampling in SIGMA_SAMPLINGS,
             f"loss.sigma_sampling: expected one of {SIGMA_SAMPLINGS}, got {self.loss.sigma_sampling!r}")
        need(self.optim.schedule in SCHEDULES, f"optim.schedule: expected one of {SCHEDULES}, got "
             f"{self.optim.schedule!r}")
        need(self.run.steps >= 1, f"run.steps: expected >= 1, got {self.run.steps}")
        need(self.run.max_hours >= 0, f"run.max_hours: expected >= 0 (0 = no cap), got {self.run.max_hours}")
        need(self.run.batch_size >= 1, f"run.batch_size: expected >= 1, got {self.run.batch_size}")
        need(self.run.batch_tokens >= 1, f"run.batch_tokens: expected >= 1, got {self.run.batch_tokens}")
        need(self.optim.lr > 0, f"optim.lr: expected > 0, got {self.optim.lr}")
        need(0 <= self.loss.caption_dropout <= 1, f"loss.caption_dropout: expected [0, 1], got "
             f"{self.loss.caption_dropout}")
        need(self.loss.shift > 0, f"loss.shift: expected > 0, got {self.loss.shift}")
        need(0 <= self.loss.sigma_min < self.loss.sigma_max <= 1, "loss.sigma_min/sigma_max: expected 0 <= min < "
             f"max <= 1, got {self.loss.sigma_min}, {self.loss.sigma_max}")
        need(min(self.loss.t2v, self.loss.i2v, self.loss.v2v) >= 0 and self.loss.t2v + self.loss.i2v + self.loss.v2v
             > 0, "loss.t2v/i2v/v2v: expected non-negative weights, not all zero")
        need(min(self.loss.policy, self.loss.forward_dynamics, self.loss.inverse_dynamics) >= 0
             and self.loss.policy + self.loss.forward_dynamics + self.loss.inverse_dynamics > 0,
             "loss.policy/forward_dynamics/inverse_dynamics: expected non-negative weights, not all zero")
        need(0 <= self.optim.ema_decay < 1, f"optim.ema_decay: expected [0, 1), got {self.optim.ema_decay}")
        need(self.lora.rank >= 1, f"lora.rank: expected >= 1, got {self.lora.rank}")
        need(self.model.train != "vision" or self.model.train_vision, "model.train = 'vision' needs "
             "model.train_vision = true")
        need(self.optim.action_head_lr_mult > 0, f"optim.action_head_lr_mult: expected > 0, got "
             f"{self.optim.action_head_lr_mult}")
        need(not self.model.reinit_action_heads or self.model.train in ("gen", "full"),
             f"model.reinit_action_heads: fresh heads must train (model.train gen or full, got {self.model.train!r})")
        need(self.data.missing_views in MISSING_VIEWS, f"data.missing_views: expected one of {MISSING_VIEWS}, got "
             f"{self.data.missing_views!r}")
        need(not self.data.concat_view or sorted(self.data.concat_view) == sorted(VIEW_ROLES),
             f"data.concat_view: expected the cameras of {list(VIEW_ROLES)}, got {sorted(self.data.concat_view)}")
        need(not (self.data.concat_view or self.data.state_columns or self.data.action_columns)
             or self.data.kind == "lerobot", "data.concat_view / state_columns / action_columns: LeRobot data only "
             f"(data.kind = 'lerobot', got {self.data.kind!r})")
        need(self.data.caption_format in (None, "json", "plain"), f"data.caption_format: expected json or plain, got "
             f"{self.data.caption_format!r}")
        need(bool(self.model.checkpoint), "model.checkpoint: required (an official-layout checkpoint directory)")
        need(bool(self.data.path), "data.path: required")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = [f.name for f in dataclasses.fields(TrainRecipe)]


def _section_types(name: str) -> dict[str, Any]:
    cls = {"model": ModelConfig, "lora": LoraConfig, "data": DataConfig, "loss": LossConfig,
           "optim": OptimConfig, "run": RunConfig}[name]
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """A TOML value or a command-line string -> the field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if isinstance(value, str) and hint in (list[str], tuple[float, float]):
        value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
    if hint is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{where}: expected true or false, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    try:
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if origin is list:
            return [str(v) for v in value]
        if origin is tuple:
            return tuple(float(v) for v in value)
        if origin is dict:  # a TOML table, or JSON on the command line
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError
            return {str(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


def set_value(recipe: TrainRecipe, dotted: str, value: Any) -> None:
    section, _, name = dotted.partition(".")
    if section not in SECTIONS:
        raise ValueError(f"{dotted}: unknown section {section!r}; expected one of {sorted(SECTIONS)}")
    types = _section_types(section)
    if name not in types:
        raise ValueError(f"{dotted}: unknown key {name!r} in [{section}]; expected one of {sorted(types)}")
    setattr(getattr(recipe, section), name, _coerce(value, types[name], dotted))


def from_dict(data: dict[str, Any], source: str = "recipe") -> TrainRecipe:
    recipe = TrainRecipe()
    for section, values in data.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise ValueError(f"{source}: unknown section [{section}]; expected tables {sorted(SECTIONS)}")
        for name, value in values.items():
            set_value(recipe, f"{section}.{name}", value)
    return recipe


def load_recipe(path: str | Path) -> TrainRecipe:
    """Read a TOML recipe (paths inside it are relative to the working directory, as on the command line)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such recipe file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None
    return from_dict(data, str(path))
