"""The reasoner's oracle: transformers' Qwen3-VL at tiny random sizes, saved as a folder our Reasoner loads, and the
inputs transformers wants for one of our prompts. Shared by every reasoner/decode parity test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

# Qwen3-VL's processor settings at tiny sizes: 16 px patches, 2x2 merge, 2-frame temporal patches.
IMAGE_CONFIG = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3, "size": {"shortest_edge": 4096, "longest_edge": 16384}}
VIDEO_CONFIG = {"size": {"shortest_edge": 4096, "longest_edge": 65536}, "fps": 2, "max_frames": 16}


def randomize_weights(model: torch.nn.Module, gen: torch.Generator, norm_spread: float = 0.5) -> None:
    """Every parameter random, norm weights around 1: their defaults of 1 and 0 would hide mistakes (a dropped norm
    or bias then changes nothing)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + norm_spread * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / max(p.shape[-1], 1) ** 0.5)


def random_qwen3vl(rng: random.Random, gen: torch.Generator, tok, *, layers: int, depth: int = 2,
                   deepstack: list[int] | None = None):
    """transformers' Qwen3VLForConditionalGeneration with random shapes (heads, head_dim, width, rope theta) drawn
    from rng and random weights from gen; `layers` text layers, a `depth`-block vision tower."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    kv, head_dim, hidden = rng.choice([1, 2]), rng.choice([16, 32]), rng.choice([64, 96])
    half = head_dim // 2
    section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # interleaved t/h/w rotary pairs
    cfg = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok) + rng.randint(0, 40), hidden_size=hidden, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=kv * rng.choice([1, 2]),
                         num_key_value_heads=kv, head_dim=head_dim, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": rng.choice([1e4, 5e6]),
                                          "mrope_section": section, "mrope_interleaved": True}),
        vision_config=dict(depth=depth, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=hidden,
                           num_position_embeddings=16,
                           deepstack_visual_indexes=list(range(min(2, layers))) if deepstack is None else deepstack,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=tok.image_pad_id, video_token_id=tok.video_pad_id,
        vision_start_token_id=tok.vision_start_id, vision_end_token_id=tok.vision_end_id)
    ref = Qwen3VLForConditionalGeneration(cfg).eval()
    randomize_weights(ref, gen)
    return ref


def write_processor_configs(folder: Path) -> None:
    (folder / "preprocessor_config.json").write_text(json.dumps(IMAGE_CONFIG))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_CONFIG))


def save_qwen3vl(ref, tok, folder: Path) -> Path:
    """A transformers-layout Qwen3-VL folder (weights, tokenizer, processors)."""
    ref.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_processor_configs(folder)
    return folder


def hf_inputs(prompt, tok) -> dict:
    """The keyword arguments of transformers' Qwen3-VL forward for one of our built prompts (batch of one)."""
    ids = prompt.input_ids[None]
    types = torch.zeros_like(ids)
    types[ids == tok.image_pad_id], types[ids == tok.video_pad_id] = 1, 2
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types)
    for kind, pix, grid in (("image", "pixel_values", "image_grid_thw"),
                            ("video", "pixel_values_videos", "video_grid_thw")):
        items = [m for m in prompt.media if m.kind == kind]
        if items:
            kw[pix] = torch.cat([m.pixels for m in items])
            kw[grid] = torch.tensor([m.grid for m in items])
    return kw
