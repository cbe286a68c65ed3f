"""LoRA through peft: adapters on chosen linear layers of the network, saved and loaded alone, merged for export.

    peft_model = add_lora(model, LoraConfig(rank=16, targets=["add_q_proj", "to_add_out"]))
    ... train (only the adapters require grad) ...
    save_adapter(peft_model, "adapter/", state)        # adapter_config.json + adapter_model.safetensors (peft format)
    peft_model = load_adapter(base_model, "adapter/")  # any process, any base with the same shapes
    merged = merge(peft_model)                         # plain Cosmos3Omni again (official weight names)

`model` keeps its identity: peft replaces the targeted nn.Linear modules inside it (their weight moves to
`<name>.base_layer.weight`, adapters to `<name>.lora_A/B.default.weight`), and the returned PeftModel only wraps it.
Targets are module-name suffixes: "add_q_proj" adapts every layer's gen query projection, "to_q" the und one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_path
from .recipe import LoraConfig

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _peft_config(cfg: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets),
                          bias="none", init_lora_weights=True)


def check_targets(model: nn.Module, targets: list[str]) -> None:
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    unknown = [t for t in targets if t not in linear]
    if unknown:
        raise ValueError(f"lora.targets: {unknown} name no linear layer of this network; linear layers are "
                         f"{sorted(linear)}")


def add_lora(model: nn.Module, cfg: LoraConfig):
    """Insert fresh adapters (B = 0, so the network's function is unchanged) and freeze everything else."""
    from peft import get_peft_model

    check_targets(model, cfg.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(model, _peft_config(cfg))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return peft_model


def adapter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if "lora_" in n]


def _file_key(name: str) -> str:
    """Parameter name inside the model -> key in peft's adapter file (prefixed, adapter name dropped)."""
    return "base_model.model." + name.replace(".default.", ".")


def save_adapter(peft_model, folder: str | os.PathLike, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the adapters alone in peft's format. `state` gives full (gathered) adapter tensors by parameter name;
    default: the model's own (unsharded) parameters."""
    from safetensors.torch import save_file

    model = peft_model.base_model.model
    if state is None:
        state = {n: p.detach().cpu() for n, p in model.named_parameters() if "lora_" in n}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {_file_key(n): t.contiguous() for n, t in state.items() if "lora_" in n}
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(folder))  # adapter_config.json, as peft writes it
    return folder


def read_adapter(folder: str | os.PathLike) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """(our LoraConfig, {parameter name: tensor}) from a peft adapter folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise ValueError(f"{folder}: not a LoRA adapter folder ({ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    raw = json.loads((folder / ADAPTER_CONFIG).read_text())
    targets = raw.get("target_modules") or []
    cfg = LoraConfig(rank=int(raw["r"]), alpha=float(raw["lora_alpha"]), dropout=float(raw.get("lora_dropout", 0)),
                     targets=[targets] if isinstance(targets, str) else list(targets))
    state = {}
    for key, t in load_file(str(folder / ADAPTER_WEIGHTS)).items():
        name = key.removeprefix("base_model.model.")
        for part in ("lora_A", "lora_B"):
            name = name.replace(f".{part}.", f".{part}.default.")
        state[name] = t
    return cfg, state


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter tensors into a model that already has adapters of the same shapes."""
    params = dict(model.named_parameters())
    missing = sorted(set(adapter_names(model)) - set(state))
    unknown = sorted(set(state) - set(params))
    if missing or unknown:
        raise ValueError(f"adapter does not fit this network: missing {missing[:3]}, unexpected {unknown[:3]}")
    with torch.no_grad():
        for name, t in state.items():
            params[name].copy_(t)


def load_adapter(model: nn.Module, folder: str | os.PathLike):
    """Attach a saved adapter to a base network -> PeftModel."""
    cfg, state = read_adapter(folder)
    peft_model = add_lora(model, cfg)
    load_adapter_state(model, state)
    return peft_model


def merge(peft_model) -> nn.Module:
    """Fold the adapters into the base weights: the plain network with its original parameter names."""
    return peft_model.merge_and_unload()
