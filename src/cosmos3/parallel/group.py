"""The process groups of a parallel run and the `Parallel` object the generator and the denoising loop are handed.

Ranks are laid out CFG-major: with C CFG ranks (1 or 2) and S sequence ranks, rank r holds CFG branch r // S and
token share r % S. The sequence group of a rank is the S ranks of its branch; its CFG group the C ranks of its token
share. Every rank computes the whole und cache (replicated: it is computed once per request and is small next to
the weights) and after each step every rank holds the whole velocity, so every rank steps the sampler itself and
the latents never travel.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..checkpoint import load_transformer
from ..config import Cosmos3Config
from ..diffusion import Branches, encode_branches
from ..model import Cosmos3Omni, GenInputs, GenOutputs
from ..quant import apply_weights
from ..sequence import GenLayout
from . import cfg as cfg_parallel
from . import tower
from .ulysses import SequenceParallel

MODES = ("cfg", "ulysses", "cfg+ulysses", "tower")
LAUNCH = "torchrun --nproc-per-node N -m cosmos3.cli generate --parallel MODE ..."


@dataclass
class Parallel:
    mode: str  # one of MODES
    rank: int  # global rank
    world: int
    device: torch.device  # this rank's device (cuda:LOCAL_RANK under NCCL, cpu under gloo)
    cfg_group: object = None  # the 2 ranks of one token share, one per guidance branch (None: no CFG split)
    cfg_rank: int = 0  # 0: the positive branch, 1: the negative
    sequence: SequenceParallel | None = None

    @property
    def writes_output(self) -> bool:
        """The rank that saves the result (every rank of cfg / ulysses holds it; in tower mode only the gen rank)."""
        return self.rank == (1 if self.mode == "tower" else 0)

    @property
    def serves_und(self) -> bool:
        """Tower mode's rank 0: it runs `tower.serve_und` instead of a Generator."""
        return self.mode == "tower" and self.rank == 0

    # ---------------------------------------------------------------------------------------- hooks

    def check(self, cfg: Cosmos3Config) -> None:
        if self.sequence is not None and cfg.num_attention_heads % self.sequence.size:
            raise ValueError(f"parallel: {self.sequence.size} sequence-parallel ranks must divide the "
                             f"{cfg.num_attention_heads} attention heads of this checkpoint")

    def load_transformer(self, path, dtype: torch.dtype | None, weights: str | None) -> Cosmos3Omni:
        """This rank's network: the gen tower alone in tower mode, else the whole network."""
        if self.mode == "tower":
            if weights not in (None, "float"):
                raise ValueError(f"weights: {weights!r} is not supported with --parallel tower (float weights only)")
            return tower.load_tower(path, "gen", dtype, self.device)
        model = apply_weights(load_transformer(path, dtype=dtype, device=self.device), weights)
        self.check(model.config)
        return model

    def encode_branches(self, model: Cosmos3Omni, layout: GenLayout,
                        prompts: list[tuple[torch.Tensor, torch.Tensor]]) -> Branches:
        if self.mode == "tower":
            return tower.request_branches(model, layout, prompts)
        return encode_branches(model, layout, prompts)

    def same_request(self, req):
        """Every rank must draw the same noise: a seed drawn at random on each rank is replaced by rank 0's."""
        if self.mode == "tower" or req.generator is not None:  # tower: the gen rank alone draws noise
            return req
        seed = torch.tensor([req.seed], dtype=torch.int64, device=self.device)
        dist.broadcast(seed, src=0)
        return dataclasses.replace(req, seed=int(seed.item()))

    def upsample_prompt(self, prompt: str, seed: int | None) -> str:
        """Tower mode's gen rank: the reasoner is the und tower, so the und rank upsamples and sends the text back."""
        return tower.request_upsample(self.device, prompt, seed)

    def outputs(self, model: Cosmos3Omni, tokens: torch.Tensor, branches: Branches,
                inputs: GenInputs) -> list[GenOutputs]:
        """The step's velocities, one per branch in `branches` (positive first), on every rank. This rank runs its
        own branch (CFG split) over its own tokens (sequence split); the rest arrives from the other ranks."""
        split = self.cfg_group is not None and branches.cache.batch_size == 2
        mine = cfg_parallel.branch(branches, self.cfg_rank) if split else branches
        x = tokens.expand(mine.cache.batch_size, -1, -1)  # [B, N, D]
        if self.sequence is None:
            hidden = model.run_gen(x, mine.positions, mine.cache)
        else:
            hidden = self.sequence.run_gen(model, x, mine.positions, mine.cache)
        outs = [model.decode_gen(h, inputs) for h in hidden]
        return cfg_parallel.exchange(outs[0], self.cfg_group) if split else outs

    def close(self) -> None:
        """End the run: tower mode's gen rank releases the und rank; then the process group goes."""
        if self.mode == "tower" and self.rank == 1:
            tower.stop(self.device)
        if dist.is_initialized():
            dist.destroy_process_group()


def _groups(rank: int, cfg_size: int, seq_size: int) -> tuple[object, object]:
    """(this rank's CFG group, its sequence group); every rank creates every group, in one order (torch's rule)."""
    cfg_group = seq_group = None
    if cfg_size > 1 and seq_size > 1:
        for s in range(seq_size):
            group = dist.new_group([c * seq_size + s for c in range(cfg_size)])
            if rank % seq_size == s:
                cfg_group = group
        for c in range(cfg_size):
            group = dist.new_group([c * seq_size + s for s in range(seq_size)])
            if rank // seq_size == c:
                seq_group = group
    elif cfg_size > 1:
        cfg_group = dist.group.WORLD
    elif seq_size > 1:
        seq_group = dist.group.WORLD
    return cfg_group, seq_group


def init_parallel(mode: str, device: str | torch.device | None = None) -> Parallel:
    """Join the torchrun job (NCCL on CUDA, gloo on CPU) and build the groups of `mode`."""
    if mode not in MODES:
        raise ValueError(f"parallel: expected one of {', '.join(MODES)}, got {mode!r}")
    if not dist.is_initialized() and "RANK" not in os.environ:
        raise ValueError(f"parallel: {mode} needs several processes; launch with `{LAUNCH}`")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local}")
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(f"parallel: rank {local} of this machine needs {device}; it has {torch.cuda.device_count()} "
                         "GPU(s) (NCCL takes one GPU per rank: lower --nproc-per-node, or --device cpu for gloo)")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    need = {"cfg": world == 2, "tower": world == 2, "ulysses": world >= 2,
            "cfg+ulysses": world >= 4 and world % 2 == 0}[mode]
    if not need:
        counts = {"cfg": "2", "tower": "2", "ulysses": "2 or more", "cfg+ulysses": "an even number, 4 or more"}
        raise ValueError(f"parallel: {mode} needs {counts[mode]} processes, got {world} (--nproc-per-node)")
    cfg_size = 2 if mode in ("cfg", "cfg+ulysses") else 1
    seq_size = world // cfg_size if "ulysses" in mode else 1
    cfg_group, seq_group = _groups(rank, cfg_size, seq_size)
    sequence = SequenceParallel(seq_group, rank % seq_size, seq_size) if seq_size > 1 else None
    return Parallel(mode, rank, world, device, cfg_group, rank // seq_size if cfg_size > 1 else 0, sequence)
