"""`cosmos3 info --plan CKPT`: what a checkpoint needs in memory, per component and precision, without its weights.

The transformer is built on the meta device from `transformer/config.json` (no memory, no weights read) and its
parameters are split into components; the other folders (vae/, vision_encoder/, sound_tokenizer/) are counted from
their safetensors headers (the few kilobytes that name shapes and dtypes; no tensor data is read).

Precisions: float32 (4 bytes), bf16 (2), int8 (quant.py's rung: the towers' linears and the lm_head at 1 byte plus a
float32 scale per output row; everything else in bf16). The activation peak is the denoising step's largest live set
(CFG: two gen rows), assuming a memory-efficient attention kernel (no N x N score matrix; the GPU case, and PyTorch's
CPU flash kernel) and the MLP's 512-row inference chunks; the VAE decode's own peak is not estimated. The model of
the live set comes from tracing the allocator after every op of a gen forward (`measured_peak`,
benchmarks/bench_memory.py); see `activation_peak`.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path

import torch
from torch import nn

from .config import Cosmos3Config

PRECISIONS = {"float32": 4, "bf16": 2}
UND_PARTS = ("to_q", "to_k", "to_v", "to_out", "norm_q", "norm_k", "k_norm_und_for_gen", "input_layernorm",
             "post_attention_layernorm", "mlp.")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1}


def parse_bytes(text: str) -> int:
    """'24GB', '24 GiB', '512MB', '1.5e9' -> bytes (GB and GiB both read as 2**30: what a GPU's label means)."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmgt]?i?b?)?\s*", text.lower())
    if not match:
        raise ValueError(f"budget: expected a size like 24GB, got {text!r}")
    unit = (match.group(2) or "").rstrip("b").rstrip("i")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(unit or " "))


def _component(name: str) -> str:
    if name.startswith("layers."):
        rest = name.split(".", 2)[2]
        und = any(rest.startswith(p) or rest.startswith("self_attn." + p) for p in UND_PARTS)
        return "und tower" if und and "moe_gen" not in rest else "gen tower"
    if name.startswith("embed_tokens"):
        return "embeddings"
    if name.startswith("lm_head"):
        return "lm_head"
    if name == "norm.weight":
        return "und tower"
    return "gen heads"


def transformer_components(cfg: Cosmos3Config) -> dict[str, dict[str, int]]:
    """{component: {"params", "float32", "bf16", "int8"} bytes} from the network built on the meta device."""
    from .quant import _targets

    from .model import Cosmos3Omni

    with torch.device("meta"):
        model = Cosmos3Omni(cfg)
    quantized = {id(linear.weight) for _, _, linear in _targets(model)}
    out: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        row = out.setdefault(_component(name), {"params": 0, "float32": 0, "bf16": 0, "int8": 0})
        n = p.numel()
        row["params"] += n
        row["float32"] += 4 * n
        row["bf16"] += 2 * n
        row["int8"] += n + 4 * p.shape[0] if id(p) in quantized else 2 * n
    return out


def safetensors_params(folder: Path) -> tuple[int, int]:
    """(parameters, bytes as stored) of every .safetensors file in `folder`, from the headers alone."""
    params = stored = 0
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            n = math.prod(info["shape"])
            params += n
            stored += n * DTYPE_BYTES.get(info["dtype"], 4)
    return params, stored


def activation_peak(cfg: Cosmos3Config, gen_tokens: int, text_tokens: int, branches: int, nbytes: int) -> int:
    """Bytes live at the peak of one denoising step (no autograd). For the whole step: every layer's und keys/values
    for the `branches` prompts and the rotary tables. Inside one gen layer the largest set is one of two moments
    (they never overlap: the attention's buffers are freed before the MLP starts):
      - the attention's end: the step's input (held by the caller), the layer's input, its norm and the output
        projection (4 x D per token), the queries and the attention output (2 x q), the gen keys and values
        (2 x kv), and the joint keys/values (prompt + gen);
      - the MLP: step input, layer input, residual and norm (4 x D), the row chunks already done, and one chunk of
        c rows' SwiGLU intermediates (silu(gate), up, their product: 3 x F; relu2: 2 x F); when done, the chunks
        and their concatenation (6 x D in all).
    Traced op by op on CPU (benchmarks/bench_memory.py) this is exact to the byte at float32 but for one-time
    allocator buffers (BLAS workspaces: ~18 MiB at hidden 1024). A one-layer model holds one B x N x D less (its
    step input is its layer input). An earlier version added the MLP chunk to the attention's set and left out the
    step input and the rotary tables (docs/MEMORY.md)."""
    from .model.mot import MLP

    B, N, L = branches, gen_tokens, text_tokens
    D, F, Dh = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * Dh, cfg.num_key_value_heads * Dh
    resident = cfg.num_hidden_layers * 2 * B * kv * L + 2 * B * N * Dh  # und caches; rotary cos / sin
    attention = B * N * (4 * D + 2 * q + 2 * kv) + 2 * B * kv * (L + N)
    widths = 3 if cfg.hidden_act == "silu" else 2
    chunk = min(N, MLP.INFERENCE_CHUNK)
    mlp = B * (5 * N - chunk) * D + widths * B * chunk * F  # the last chunk, the others done
    if N > chunk:
        mlp = max(mlp, 6 * B * N * D)  # the concatenation of the chunks
    return (resident + max(attention, mlp)) * nbytes


def measured_peak(fn) -> tuple[object, int | None]:
    """(fn(), the most bytes the C allocator held beyond its level at the start, read after every aten op fn runs):
    the figure `activation_peak` models. glibc only (mallinfo2); None elsewhere. Exact to one op and independent of
    timing, unlike sampling the resident set."""
    import ctypes

    from torch.utils._python_dispatch import TorchDispatchMode

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
    except (OSError, AttributeError):
        return fn(), None

    def in_use() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd  # arena bytes handed out + mmapped chunks

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.peak = max(self.peak, in_use())
            return out

    watch = Watch()
    watch.peak = 0
    with watch:  # the first op through a Python dispatch mode allocates the mode's own tables (~24 MB): not fn's
        torch.zeros(1)
    start = watch.peak = in_use()
    with watch:
        out = fn()
    return out, watch.peak - start


def plan(checkpoint: str | os.PathLike, budget: int | None = None, resolution: str = "480p",
         num_frames: int = 93, aspect_ratio: str | None = None, text_tokens: int = 512) -> dict:
    """The plan as a dict (what `print_plan` shows). `checkpoint`: a folder, an embedded name ('pico'), or a preset
    name of config.PRESETS ('nano', 'super': the transformer alone)."""
    from .checkpoint import resolve_checkpoint
    from .model.heads import patch_grid
    from .spec import resolve_settings

    from .config import PRESETS

    if str(checkpoint) in PRESETS and not Path(checkpoint).is_dir():  # a preset: the transformer alone
        root, cfg = Path(str(checkpoint)), PRESETS[str(checkpoint)]
    else:
        root = resolve_checkpoint(checkpoint)
        cfg = Cosmos3Config.from_json(root / "transformer" / "config.json")
    components = transformer_components(cfg)
    for folder in ("vae", "vision_encoder", "sound_tokenizer"):
        if (root / folder).is_dir():
            n, _ = safetensors_params(root / folder)
            if n:
                components[folder] = {"params": n, "float32": 4 * n, "bf16": 2 * n, "int8": 2 * n}
    vae_cfg = json.loads((root / "vae" / "config.json").read_text()) if (root / "vae" / "config.json").is_file() \
        else {}
    temporal, spatial = vae_cfg.get("scale_factor_temporal", 4), vae_cfg.get("scale_factor_spatial", 16)
    settings = resolve_settings(resolution=resolution, aspect_ratio=aspect_ratio, num_frames=num_frames)
    T, H, W = settings.num_frames, settings.height, settings.width
    rows, cols = patch_grid(H // spatial, W // spatial, cfg.latent_patch_size)
    gen_tokens = (1 + (T - 1) // temporal) * rows * cols
    totals = {p: sum(c[p] for c in components.values()) for p in ("float32", "bf16", "int8")}
    activations = {p: activation_peak(cfg, gen_tokens, text_tokens, 2, 4 if p == "float32" else 2)
                   for p in totals}
    rungs = {p: totals[p] + activations[p] for p in totals}
    return dict(checkpoint=str(root), resolution=f"{W}x{H}", num_frames=T, gen_tokens=gen_tokens,
                text_tokens=text_tokens, components=components, weights=totals, activations=activations,
                rungs=rungs, budget=budget,
                fits=None if budget is None else {p: need <= budget for p, need in rungs.items()})


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def print_plan(p: dict) -> None:
    print(f"Memory plan for {p['checkpoint']} (weights not loaded)")
    print(f"{'component':<18}{'parameters':>15}{'float32':>14}{'bf16':>14}{'int8':>14}")
    for name, c in p["components"].items():
        print(f"{name:<18}{c['params']:>15,}{_gib(c['float32']):>14}{_gib(c['bf16']):>14}{_gib(c['int8']):>14}")
    w, a = p["weights"], p["activations"]
    print(f"{'all weights':<18}{'':>15}{_gib(w['float32']):>14}{_gib(w['bf16']):>14}{_gib(w['int8']):>14}")
    print(f"{'activation peak':<18}{'':>15}{_gib(a['float32']):>14}{_gib(a['bf16']):>14}{_gib(a['int8']):>14}")
    print(f"  (one CFG denoising step at {p['resolution']}, {p['num_frames']} frames: {p['gen_tokens']:,} gen tokens, "
          f"{p['text_tokens']} prompt tokens assumed; VAE decode peak not included)")
    for rung, need in p["rungs"].items():
        verdict = "" if p["budget"] is None else ("  fits" if p["fits"][rung] else "  does not fit")
        label = {"float32": "float32", "bf16": "bf16", "int8": "int8 towers + lm_head, rest bf16"}[rung]
        print(f"  {label:<36}{_gib(need):>14}{verdict}"
              + ("" if p["budget"] is None else f" in {_gib(p['budget'])}"))
    print("  step cache and guidance interval save time, not memory; --offload, fp8 checkpoints and --vae-tiling are "
          "further rungs (docs/MEMORY.md).")


def count_bytes(model: nn.Module) -> int:
    """Bytes a built model's weights take (int8 layers included): what `plan` predicts, measured."""
    from .quant import weight_bytes

    return weight_bytes(model)
