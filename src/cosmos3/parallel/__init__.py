"""One request over several processes, with torch.distributed (run under torchrun; docs/SCALING.md).

    torchrun --nproc-per-node 2 -m cosmos3.cli generate --parallel cfg ...

Modes (`MODES`): "cfg" puts the two guidance branches on two ranks (cfg.py); "ulysses" splits the gen tokens over
the ranks and runs attention over a share of the heads (ulysses.py); "cfg+ulysses" does both (2 x N ranks); "tower"
runs the und tower on rank 0 and the gen tower on rank 1, each holding only its own weights (tower.py). The process
groups and the one object the generator and the denoising loop are handed live in group.py.
"""

from .group import MODES, Parallel, init_parallel

__all__ = ["MODES", "Parallel", "init_parallel"]
