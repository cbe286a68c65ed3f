"""FP8 checkpoints (issue #18, rung 2): the release's `fp8` revision, read into float or kept in 8 bits.

The layout (ModelOpt's Hugging Face export; docs/MEMORY.md has the sources): a linear `<m>` of the transformer holds

    <m>.weight         float8_e4m3fn [out, in]   the quantized weight (safetensors dtype F8_E4M3)
    <m>.weight_scale   float32, one value        w ~= weight * weight_scale (per tensor in the release)
    <m>.input_scale    float32, one value        the static activation scale of W8A8 kernels (optional here)

beside the float tensors of everything left in high precision (embeddings, norms, the gen heads, lm_head). The
declared quantization (`quant_method: modelopt`, `quant_algo: FP8`) sits in hf_quant_config.json or in
config.json's `quantization_config`; this loader goes by the tensors' dtypes and checks the declaration when there
is one. A per-output-channel `weight_scale` ([out] or [out, 1]) is read as well.

What a load makes of it (`load_transformer(..., fp8=...)`):
    "dequantize"  every fp8 weight becomes weight.float() * scale, rounded once to the compute dtype: the float model
                  of the checkpoint's own values (the CPU default: no CPU has fp8 matmuls).
    "keep"        the linears stay fp8 in memory (one byte per weight, half of bf16) as `Fp8Linear`, which
                  dequantizes its weight on the fly per call, layer by layer (W8A16). The CUDA default.
Why W8A16 and not torch._scaled_mm's W8A8 on sm89+: it runs on every GPU and every shape (scaled_mm needs sm89+
and dimensions divisible by 16), it gives exactly the "dequantize" model's numbers (so the CPU tests pin the GPU
path down), and activations stay unrounded; the release itself runs its first and last denoising steps this way
(diffusers' `mixed_precision.py`, the a16 mode). The memory saving, the reason to keep fp8, is the same; W8A8's
speed (vLLM-Omni: 1.15x on Nano) is left for later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from .checkpoint import CheckpointError

FP8 = torch.float8_e4m3fn
MODES = ("auto", "dequantize", "keep")
# Scales of quantization formats other than per-tensor / per-channel FP8 (NVFP4's second scale, blockwise inverse
# scales): refused by name rather than reported as unknown keys.
_OTHER_SCALES = (".weight_scale_2", ".weight_scale_inv", ".pre_quant_scale")


@dataclass(frozen=True)
class Fp8Weight:
    """Where an fp8 weight's scales are: keys and files (ModelOpt may shard a scale apart from its weight)."""

    file: Path
    scale_key: str
    scale_file: Path
    input_key: str | None = None
    input_file: Path | None = None


def declared_quantization(folder: Path) -> tuple[Path, dict] | None:
    """(file, its quantization dict) from hf_quant_config.json (in `folder` or the checkpoint root above it) or
    config.json's `quantization_config`; None when nothing is declared."""
    for file in (folder / "hf_quant_config.json", folder.parent / "hf_quant_config.json"):
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{file}: not valid JSON ({e})") from None
            # ModelOpt writes {"producer": ..., "quantization": {"quant_algo": ...}}; others flatten it
            data = data.get("quantization", data) if isinstance(data, dict) else data
            return file, data
    config = folder / "config.json"
    if config.is_file():
        q = json.loads(config.read_text()).get("quantization_config")
        if q is not None:
            return config, q
    return None


def check_declaration(folder: Path, has_fp8: bool) -> None:
    """A declared quantization must be ModelOpt FP8, and FP8 must come with fp8 tensors."""
    found = declared_quantization(folder)
    if found is None:
        return
    file, q = found
    if not isinstance(q, dict):
        raise CheckpointError(f"{file}: quantization config: expected a JSON object, got {type(q).__name__}")
    method = str(q.get("quant_method") or "modelopt").lower()
    algo = str(q.get("quant_algo") or q.get("quant_type") or "").upper()
    if method != "modelopt" or (algo and algo != "FP8"):
        raise CheckpointError(f"{file}: quantization {method!r} / {algo or '?'!r} is not supported (this loader "
                              f"reads ModelOpt FP8: quant_method 'modelopt', quant_algo 'FP8')")
    if not has_fp8:
        raise CheckpointError(f"{file}: declares FP8 quantization, but no tensor of the checkpoint is float8_e4m3fn")


def split_scales(folder: Path, files: dict[str, Path]) -> dict[str, Fp8Weight]:
    """Find the fp8 weights of a checkpoint ({key: file}, every key of it), check their scales, and take the scale
    keys out of `files` (the model has no such parameters). Returns {weight key: Fp8Weight}; {} for a float one."""
    dtypes, shapes = {}, {}
    for file in sorted(set(files.values())):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key in files and files[key] == file:
                    piece = f.get_slice(key)
                    dtypes[key], shapes[key] = piece.get_dtype(), tuple(piece.get_shape())
    for key, file in files.items():
        if key.endswith(_OTHER_SCALES):
            raise CheckpointError(f"{file}: tensor {key!r} belongs to a quantization format this loader does not "
                                  f"read (only FP8 E4M3 with a per-tensor or per-channel weight_scale)")
        if dtypes[key].startswith("F8_") and dtypes[key] != "F8_E4M3":
            raise CheckpointError(f"{file}: tensor {key!r} is {dtypes[key]}; fp8 weights must be F8_E4M3 "
                                  f"(float8_e4m3fn)")
    fp8 = sorted(k for k, d in dtypes.items() if d == "F8_E4M3")
    check_declaration(folder, bool(fp8))
    out = {}
    for key in fp8:
        file = files[key]
        if not key.endswith(".weight") or len(shapes[key]) != 2:
            raise CheckpointError(f"{file}: fp8 tensor {key!r} {list(shapes[key])} is not a linear weight "
                                  f"([out, in] named *.weight)")
        module = key[: -len(".weight")]
        scale_key, input_key = module + ".weight_scale", module + ".input_scale"
        if scale_key not in files:
            raise CheckpointError(f"{file}: fp8 weight {key!r} has no scale: expected tensor {scale_key!r}")
        out_features = shapes[key][0]
        if shapes[scale_key] not in ((), (1,), (out_features,), (out_features, 1)):
            raise CheckpointError(f"{files[scale_key]}: {scale_key!r} has shape {list(shapes[scale_key])}; "
                                  f"expected one value (per tensor) or {out_features} (one per output row of "
                                  f"{key!r})")
        if input_key in files and shapes[input_key] not in ((), (1,)):
            raise CheckpointError(f"{files[input_key]}: {input_key!r} has shape {list(shapes[input_key])}; expected "
                                  f"one value")
        for k in (scale_key, input_key):
            if k in files and not dtypes[k].startswith(("F32", "BF16", "F16")):
                raise CheckpointError(f"{files[k]}: scale {k!r} is {dtypes[k]}; expected a float tensor")
        has_input = input_key in files
        out[key] = Fp8Weight(file, scale_key, files[scale_key], input_key if has_input else None,
                             files[input_key] if has_input else None)
    owned = {w.scale_key for w in out.values()} | {w.input_key for w in out.values() if w.input_key}
    for key in [k for k in files if k.endswith((".weight_scale", ".input_scale"))]:
        if key not in owned:
            raise CheckpointError(f"{files[key]}: scale {key!r} belongs to no fp8 weight (its weight is missing "
                                  f"or not float8_e4m3fn)")
        del files[key]
    return out


def dequantize(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """fp8 [out, in] times its scale ([] or [out, 1]), in float32, rounded once to `dtype`."""
    return (weight.to(torch.float32) * scale.to(torch.float32)).to(dtype)


class Fp8Linear(nn.Module):
    """A linear whose weight stays float8_e4m3fn; each call multiplies by the weight dequantized to the input's
    dtype (W8A16). The same numbers as `dequantize` at load, half of bf16's bytes at rest."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
                 input_scale: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("weight_scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        # kept for a W8A8 kernel; the W8A16 forward does not use it
        self.register_buffer("input_scale", input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return nn.functional.linear(x, dequantize(self.weight, self.weight_scale, x.dtype), bias)

    def extra_repr(self) -> str:
        per = "tensor" if self.weight_scale.numel() == 1 else "channel"
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 per-{per} (W8A16)"


def _read_scales(fp8: dict[str, Fp8Weight]) -> dict[str, torch.Tensor]:
    """Every scale the fp8 weights name, {scale key: float32 [] (one value) or [out, 1] (per output row)}, each
    file opened once (a scale may sit in another shard than its weight)."""
    wanted: dict[Path, list[str]] = {}
    for w in fp8.values():
        wanted.setdefault(w.scale_file, []).append(w.scale_key)
        if w.input_key is not None:
            wanted.setdefault(w.input_file, []).append(w.input_key)
    scales = {}
    for file, keys in wanted.items():
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in keys:
                scale = f.get_tensor(key).to(torch.float32)
                if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
                    raise CheckpointError(f"{file}: scale {key!r} holds a non-positive or non-finite value")
                scales[key] = scale.reshape(()) if scale.numel() == 1 else scale.reshape(-1, 1)
    return scales


def read(model: nn.Module, fp8: dict[str, Fp8Weight], state: dict[str, torch.Tensor], dtype: torch.dtype,
         device: torch.device, mode: str = "auto") -> None:
    """Put the fp8 weights of `fp8` into `state` for `model.load_state_dict(state, strict=True, assign=True)`:
    dequantized to `dtype`, or (mode "keep", or "auto" on CUDA) kept fp8 in `Fp8Linear` modules swapped into
    `model` (built on the meta device). `state` already holds the checkpoint's other tensors (the biases)."""
    if mode not in MODES:
        raise ValueError(f"fp8: expected one of {MODES}, got {mode!r}")
    keep = mode == "keep" or (mode == "auto" and device.type == "cuda")
    scales = {k: v.to(device) for k, v in _read_scales(fp8).items()}
    by_file: dict[Path, list[str]] = {}
    for key, where in fp8.items():
        by_file.setdefault(where.file, []).append(key)
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in keys:
                where = fp8[key]
                weight, scale = f.get_tensor(key).to(device), scales[where.scale_key]
                name = key[: -len(".weight")]
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                if not keep or type(getattr(parent, child)) is not nn.Linear:  # anything else is read as float
                    state[key] = dequantize(weight, scale, dtype)
                    continue
                input_scale = None if where.input_key is None else scales[where.input_key]
                if input_scale is not None:
                    state[name + ".input_scale"] = input_scale
                setattr(parent, child, Fp8Linear(weight, scale, state.get(name + ".bias"), input_scale))
                state[key], state[name + ".weight_scale"] = weight, scale
