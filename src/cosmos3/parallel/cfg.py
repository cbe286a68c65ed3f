"""CFG-parallel: the positive and the negative guidance branch of each step on two ranks.

One process runs both branches as one batch of 2 (diffusion.denoise_step). Here each rank of a CFG group runs its
own branch as a batch of 1 and the two velocities are exchanged (an all-gather, the size of the latents, not of the
hidden states), so both ranks combine v_neg + g (v_pos - v_neg) and step the sampler identically. A step outside
the guidance interval runs the positive branch alone: both ranks run it (the same result, no exchange).

vLLM-Omni splits the same way (docs/user_guide/diffusion/parallelism_acceleration.md, "CFG-Parallel": rank 0 the
positive prompt, rank 1 the negative, an all-gather of the two predictions); it steps on rank 0 and broadcasts the
latents, where here both ranks step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..diffusion import Branches
from ..model import GenOutputs, UndCache


def branch(branches: Branches, i: int) -> Branches:
    """Row i of the stacked branches (0 positive, 1 negative), with its row of the padding mask."""
    row = slice(i, i + 1)
    cache = branches.cache
    mask = None if cache.mask is None else cache.mask[row]
    return Branches(UndCache([k[row] for k in cache.keys], [v[row] for v in cache.values], mask),
                    branches.positions[row])


def exchange(mine: GenOutputs, group) -> list[GenOutputs]:
    """This rank's branch's velocities -> [positive, negative] from the two ranks of `group`."""
    def gather(t: torch.Tensor | None) -> list[torch.Tensor | None]:
        if t is None:
            return [None, None]
        parts = [torch.empty_like(t) for _ in range(2)]
        dist.all_gather(parts, t.contiguous(), group=group)
        return parts

    vision, sound, actions = gather(mine.vision), gather(mine.sound), gather(mine.actions)
    return [GenOutputs(vision[i], sound[i], actions[i]) for i in range(2)]
