"""Export trained weights: a whole checkpoint in the official diffusers layout, or a LoRA adapter alone.

    export_checkpoint(base, out, trained_state, lora=None)
        out/ = base/ with transformer/ rewritten: vae/, scheduler/, text_tokenizer/, sound_tokenizer/,
        vision_encoder/, model_index.json, config.json are copied unchanged; transformer/ holds the base weights with
        the trained ones in place (LoRA adapters merged), each tensor in the dtype it had in the base.
        Loadable by diffusers' Cosmos3OmniPipeline.from_pretrained and by cosmos3.Generator.from_pretrained.

Both are written next to `out` under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from ..actions import ACTION_STATS_FILE, save_stats_file
from ..checkpoint import INDEX_NAME, WEIGHTS_NAME, load_transformer, save_transformer, transformer_dir
from .recipe import LoraConfig


def base_dtypes(base: str | os.PathLike) -> dict[str, torch.dtype]:
    """{weight name: dtype} as stored in the base checkpoint's transformer files."""
    folder = transformer_dir(base)
    index = folder / INDEX_NAME
    files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.is_file() \
        else [folder / WEIGHTS_NAME]
    out = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                out[key] = f.get_slice(key).get_dtype()
    return {k: getattr(torch, {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64",
                               "I64": "int64"}.get(v, "float32")) for k, v in out.items()}


def trained_model(base: str | os.PathLike, state: dict[str, torch.Tensor], lora: LoraConfig | None = None):
    """The base network (float32, CPU) with `state` (parameter name -> tensor) loaded; adapters merged."""
    model = load_transformer(base, dtype=torch.float32, device="cpu")
    if lora is not None:
        from .lora import add_lora, load_adapter_state, merge

        peft_model = add_lora(model, lora)
        adapters = {k: v for k, v in state.items() if "lora_" in k}
        load_adapter_state(model, adapters)
        state = {k: v for k, v in state.items() if "lora_" not in k}
        model = merge(peft_model)
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ValueError(f"trained weights do not fit the base network: unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, t in state.items():
            params[name].copy_(t)
    return model.eval()


def export_checkpoint(base: str | os.PathLike, out: str | os.PathLike, state: dict[str, torch.Tensor],
                      lora: LoraConfig | None = None, vision: dict[str, torch.Tensor] | None = None,
                      action_stats: dict | None = None) -> Path:
    """`vision`: trained vision-tower weights, written over vision_encoder/'s (same keys, same dtypes).
    `action_stats`: {embodiment: ActionStats} the actions were normalized with (action_stats.json)."""
    base, out = Path(base), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for entry in base.iterdir():
        if entry.name == "transformer":
            continue
        if entry.is_dir():
            shutil.copytree(entry, tmp / entry.name)
        else:
            shutil.copy2(entry, tmp / entry.name)
    if vision:
        _write_vision(tmp / "vision_encoder", vision)
    if action_stats:
        save_stats_file(tmp / ACTION_STATS_FILE, action_stats)
    model = trained_model(base, state, lora)
    dtypes = base_dtypes(base)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.data = p.data.to(dtypes.get(name, p.dtype))
    save_transformer(model, tmp / "transformer")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _write_vision(folder: Path, trained: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import load_file, save_file

    files = sorted(folder.glob("*.safetensors"))
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(str(f)))
    unknown = sorted(set(trained) - set(weights))
    if unknown:
        raise ValueError(f"{folder}: trained vision weights {unknown[:3]} are not in the base vision tower")
    for k, v in trained.items():
        weights[k] = v.to(weights[k].dtype).contiguous()
    for f in files:
        f.unlink()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def export_adapter(peft_model, out: str | os.PathLike, state: dict[str, torch.Tensor] | None = None) -> Path:
    from .lora import save_adapter

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_adapter(peft_model, tmp, state)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
