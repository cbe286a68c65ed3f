"""Processes, devices and FSDP2 sharding. The same code runs as one plain process or under torchrun:

    python -m cosmos3.train --recipe r.toml                         one process, no process group
    torchrun --nproc_per_node 8 -m cosmos3.train --recipe r.toml    8 processes, FSDP2 (nccl on GPU, gloo on CPU)

Sharding (`shard`): every MoT layer is its own FSDP2 unit and the root module holds the rest (embeddings, heads,
final norms). The network is driven through the layers' `und` / `gen` methods rather than `forward`, so those
methods are registered with FSDP (`register_fsdp_forward_method`) to gather their weights around each call.

Loading under FSDP2 (`load_sharded`): the network is built on the meta device, then sharded, materialized empty, and each
process reads only its own rows of every tensor from the memory-mapped safetensors files, so no process ever holds
the whole model (FSDP2 shards each parameter along dim 0 in `torch.chunk` pieces, one per process).

Full tensors for checkpoints: `full_tensor` gathers a (possibly sharded) parameter or optimizer state on every
process; `shard_like` cuts a full tensor back to the local shard of a reference parameter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def initialized(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.initialized:
            dist.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum a few floats over processes (float64 on the CPU for gloo, the device for nccl)."""
        if not self.initialized:
            return list(values)
        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def all_reduce_max(self, value: int) -> int:
        if not self.initialized:
            return value
        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())


def init(device: str | None = None, group: bool = False) -> Dist:
    """Pick this process's device and join the process group when launched on several processes by torchrun (or
    on one, with `group=True`, for FSDP on a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if (world > 1 or group) and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ValueError("a process group needs a torchrun launch (torchrun --nproc_per_node N -m cosmos3.train)")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=dev if dev.type == "cuda" else None)
    return Dist(rank, world, local_rank, dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(root: nn.Module, layers: nn.ModuleList, methods: tuple[str, ...] = ("und", "gen")) -> None:
    """FSDP2: one unit per layer (with `methods` registered as forward methods), then the root."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for layer in layers:
        fully_shard(layer)
        for name in methods:
            register_fsdp_forward_method(layer, name)
    fully_shard(root)


def shard_rows(t: torch.Tensor) -> tuple[int, int]:
    """[start, end) of dim 0 that this process holds of the sharded parameter `t` (FSDP2: torch.chunk pieces)."""
    from torch.distributed.tensor import Shard

    mesh = t.device_mesh
    if mesh.ndim != 1 or tuple(t.placements) != (Shard(0),):
        raise ValueError(f"only 1-D FSDP sharding along dim 0 is read shard by shard, not {t.placements}")
    n, world, rank = t.shape[0], mesh.size(), mesh.get_local_rank()
    chunk = -(-n // world)
    start = min(rank * chunk, n)
    return start, min(start + chunk, n)


def load_sharded(index, model: nn.Module, device: torch.device, root: nn.Module | None = None) -> None:
    """Shard a network built on meta (`index.build()`), `root` (default: the network) being the FSDP root, then
    materialize the shards empty on `device` and fill them: each process reads its own rows of each parameter (and
    every persistent buffer whole) from the checkpoint files of `index` (a checkpoint.WeightIndex)."""
    from ..checkpoint import _open, rebuild_buffers

    root = model if root is None else root
    shard(root, model.layers)
    root.to_empty(device=device)
    targets = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for file, keys in index.by_file().items():
            with _open(file, torch.device("cpu")) as f:
                for key in keys:
                    target = targets[key]
                    if is_sharded(target):
                        local = target.to_local()
                        start, end = shard_rows(target)
                        if local.shape[0] != end - start:
                            raise RuntimeError(f"{key}: local shard has {local.shape[0]} rows, expected rows "
                                               f"{start}:{end} of {target.shape[0]}")
                        if end > start:
                            local.copy_(index.read(f, key, local.dtype, torch.device("cpu"), (start, end), file))
                    else:
                        target.copy_(index.read(f, key, target.dtype, torch.device("cpu"), file=file))
    rebuild_buffers(model, device)


def is_sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on the CPU (a collective for sharded tensors: every process must call it)."""
    if is_sharded(t):
        t = t.full_tensor()
    return t.detach().cpu()


def shard_like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `ref` (its local shard when ref is sharded), on ref's device and dtype."""
    if is_sharded(ref):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
    return full.to(ref.device, ref.dtype)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm (over all processes) and return it before clipping."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm > 0 else float("inf"), foreach=True)
    if is_sharded(norm):
        norm = norm.full_tensor()
    return float(norm)
