"""Training checkpoints: everything a resume needs, written atomically.

    <run>/checkpoints/step-00000120/
        trainable.safetensors    the trained parameters only (frozen ones come back from the base checkpoint)
        ema.safetensors          their EMA (when enabled)
        optimizer.safetensors    AdamW moments and step counts, by parameter name
        rng-<rank>.json          torch / CUDA / numpy / python RNG states of each process
        state.json               step, data position, LR scheduler, optimizer hyper-parameters, recipe
    <run>/checkpoints/latest     the name of the newest complete checkpoint

A checkpoint is assembled in a hidden temporary folder and renamed into place when complete, then `latest` is
replaced (write + rename): a run killed at any moment leaves the previous checkpoint intact and readable.
Tensors are gathered whole (FSDP shards included), so a checkpoint resumes on any number of processes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .distributed import Dist, full_tensor, shard_like

STATE = "state.json"
LATEST = "latest"
MOMENTS = ("exp_avg", "exp_avg_sq", "step")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state().tolist(), "numpy": list(np.random.get_state()),
             "python": random.getstate()}
    state["numpy"][1] = state["numpy"][1].tolist()
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    np_state = list(state["numpy"])
    np_state[1] = np.array(np_state[1], dtype=np.uint32)
    np.random.set_state(tuple(np_state))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def gather(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole CPU copies of (possibly sharded) tensors; a collective: every process calls it with the same names."""
    return {name: full_tensor(t).contiguous() for name, t in named.items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """AdamW state as {"<param name>.<exp_avg|exp_avg_sq|step>": tensor} (gathered)."""
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if key in MOMENTS and torch.is_tensor(value):
                    out[f"{names[id(p)]}.{key}"] = full_tensor(value).reshape(value.shape).contiguous()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str],
                           tensors: dict[str, torch.Tensor]) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            state = {}
            for key in MOMENTS:
                full = tensors.get(f"{name}.{key}")
                if full is None:
                    continue
                state[key] = full.clone() if key == "step" else shard_like(full, p.detach())
            if state:
                optimizer.state[p] = state


def save(run_dir: Path, step: int, dist: Dist, *, trainable: dict[str, torch.Tensor],
         ema: dict[str, torch.Tensor] | None, optimizer: torch.optim.Optimizer, param_names: dict[int, str],
         state: dict, keep: int = 2, fault: str | None = None) -> Path:
    """Write checkpoint `step` (every process calls this: tensors are gathered collectively)."""
    root = run_dir / "checkpoints"
    name = f"step-{step:08d}"
    tmp = root / f".{name}.tmp"
    weights = gather(trainable)
    ema_weights = gather(ema) if ema is not None else None
    moments = optimizer_tensors(optimizer, param_names)
    if dist.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".step-*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    (tmp / f"rng-{dist.rank}.json").write_text(json.dumps(rng_state()))
    if dist.is_main:
        save_file(weights, str(tmp / "trainable.safetensors"))
        if ema_weights is not None:
            save_file(ema_weights, str(tmp / "ema.safetensors"))
        save_file(moments, str(tmp / "optimizer.safetensors"))
        (tmp / STATE).write_text(json.dumps({"step": step, **state}, indent=2) + "\n")
    dist.barrier()
    final = root / name
    if dist.is_main:
        if fault == "checkpoint":  # tests: die with the checkpoint written but not yet in place
            os.kill(os.getpid(), 9)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = root / (LATEST + ".tmp")
        latest_tmp.write_text(name + "\n")
        os.replace(latest_tmp, root / LATEST)
        done = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in done[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / STATE).is_file() else None


def load(folder: Path, dist: Dist) -> dict:
    """Read a checkpoint -> {"state", "trainable", "ema" (or None), "optimizer", "rng" (this rank's, or None)}."""
    if not (folder / STATE).is_file():
        raise ValueError(f"{folder}: not a training checkpoint (no {STATE})")
    rng_file = folder / f"rng-{dist.rank}.json"
    ema_file = folder / "ema.safetensors"
    return {"state": json.loads((folder / STATE).read_text()),
            "trainable": load_file(str(folder / "trainable.safetensors")),
            "ema": load_file(str(ema_file)) if ema_file.is_file() else None,
            "optimizer": load_file(str(folder / "optimizer.safetensors")),
            "rng": json.loads(rng_file.read_text()) if rng_file.is_file() else None}
