"""Loading the models a server needs from one checkpoint, sharing one copy of the weights.

An official-layout checkpoint (transformer/ + vae/) gives a Generator; its network also serves the Reasoner (the
und pathway is the reasoner's text decoder), with the vision tower from vision_encoder/ when present. A transformers
Qwen3-VL folder gives a Reasoner alone.
"""

from __future__ import annotations

from pathlib import Path

import torch


def load_models(checkpoint: str | Path, device: str | None = None, weights: str = "float"):
    """-> (generator or None, reasoner or None). `weights`: "float" or "int8" (quant.py)."""
    from ..checkpoint import CheckpointError, resolve_checkpoint
    from ..generator import Generator
    from ..reasoner import Reasoner

    root = resolve_checkpoint(checkpoint)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such checkpoint directory")
    if (root / "transformer" / "config.json").is_file() and (root / "vae").is_dir():
        gen = Generator.from_pretrained(root, device=device, weights=weights)
        return gen, Reasoner.sharing(gen.model, root)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return None, Reasoner.from_pretrained(root, device=dev, weights=weights)
