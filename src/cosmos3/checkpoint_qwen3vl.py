"""Reading a transformers Qwen3-VL checkpoint directory (config.json of model_type qwen3_vl, *.safetensors) as our
und pathway plus vision tower: the config mapping and the renaming of the text weights. The official layout is
checkpoint.py's; this is the second layout the Reasoner accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .config import Cosmos3Config
from .model import Cosmos3Omni
from .model.rope import MRoPE
from .model.vision import VisionTower


def config_from_qwen3vl(text: dict) -> Cosmos3Config:
    """Our network config from a transformers Qwen3-VL `text_config` (the und pathway alone is used)."""
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    if rope.get("mrope_interleaved") is False:
        raise ValueError("Qwen3-VL config with non-interleaved mRoPE is not supported")
    if text.get("hidden_act", "silu") != "silu":
        raise ValueError(f"Qwen3-VL text config: hidden_act {text['hidden_act']!r} is not supported (silu only)")
    heads = text["num_attention_heads"]
    return Cosmos3Config(
        hidden_size=text["hidden_size"], num_hidden_layers=text["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=text.get("num_key_value_heads", heads),
        head_dim=text.get("head_dim") or text["hidden_size"] // heads, intermediate_size=text["intermediate_size"],
        attention_bias=bool(text.get("attention_bias", False)), rms_norm_eps=text.get("rms_norm_eps", 1e-6),
        vocab_size=text["vocab_size"], rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 5e6))),
        rope_axes_dim=rope.get("mrope_section"))


_QWEN_ATTN = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out", "q_norm": "norm_q",
              "k_norm": "norm_k"}


def _qwen_text_key(key: str) -> str | None:
    """'model.language_model.layers.3.self_attn.q_proj.weight' -> 'layers.3.self_attn.to_q.weight'."""
    if key.startswith("lm_head."):
        return key
    if not key.startswith("model.language_model."):
        return None
    parts = key[len("model.language_model."):].split(".")
    if parts[0] == "layers" and parts[2] == "self_attn":
        parts[3] = _QWEN_ATTN.get(parts[3], parts[3])
    return ".".join(parts)


def load_qwen3vl(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[Cosmos3Omni, VisionTower]:
    """The text weights (renamed, into their final dtype and device) and the vision tower of a Qwen3-VL directory."""
    from safetensors import safe_open

    config = json.loads((path / "config.json").read_text())
    cfg = config_from_qwen3vl(config["text_config"])
    index = path / "model.safetensors.index.json"
    files = sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.is_file() \
        else sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weights")
    text_state, vision_state = {}, {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith("model.visual."):
                    vision_state[key[len("model.visual."):]] = f.get_tensor(key)
                elif (ours := _qwen_text_key(key)) is not None:
                    text_state[ours] = f.get_tensor(key).to(device=device, dtype=dtype)
    if "lm_head.weight" not in text_state and config.get("tie_word_embeddings"):
        text_state["lm_head.weight"] = text_state.get("embed_tokens.weight")
    with torch.device("meta"):
        model = Cosmos3Omni(cfg, with_gen=False)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(text_state)), sorted(set(text_state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: Qwen3-VL text weights do not match the config: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    model.load_state_dict(text_state, strict=True, assign=True)
    model.rotary = MRoPE(cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim).to(device)
    tower = VisionTower.from_state_dict(config["vision_config"], vision_state, dtype, device, source=str(path))
    return model.eval(), tower
