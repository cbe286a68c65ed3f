"""Int8 weights for the two towers and the lm_head (issue #18, rung 1): `quantize_int8(model)`.

What is quantized: every nn.Linear of the MoT layers (und and gen pathways: attention projections, MLPs) and the
lm_head. What stays in the model dtype: embeddings, norms, the gen heads (proj_in / proj_out, timestep embedder,
action / sound projections: small and precision-bound) and the vision tower.

CPU: int8 weights, one scale per output channel (symmetric), through PyTorch's fbgemm dynamic linear
(`quantized::linear_dynamic`): activations are quantized per call (per tensor, asymmetric, uint8) and the product runs
in int8 x int8 -> int32 (AVX2 / AVX512 kernels), the result is rescaled to float32. Measured on this project's
2-core AVX512 box, one thread, float32 baseline = nn.Linear:
                                   float32   fbgemm dynamic   _weight_int8pack_mm (bf16 x)   torchao 0.18 eager
    lm_head  [1, 512] x 151936      78 ms       19 ms              36 ms                     297 ms (weight-only)
    MLP up   [1, 512] x 1536       0.12 ms     0.036 ms           0.051 ms
    MLP up   [64, 512] x 1536      3.5 ms      0.73 ms            5.5 ms                    4.7 ms (weight-only)
`torch._weight_int8pack_mm` is weight-only (exact activations) but needs bf16 activations on CPU and loses to float32
at prefill shapes; torchao's CPU path wants torch.compile (eager it is slower than float32). fbgemm wins at every
shape, decode and prefill, so it is the CPU kernel. The price is activation rounding (8 bits per tensor per call);
the quality tests bound what it costs (tests/test_quant.py).

CUDA: torchao's `Int8WeightOnlyConfig` (weight-only, per channel), imported only when asked for; this project's
CI has no GPU, so that path is untested here beyond its import guard.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

WEIGHTS = ("float", "int8")


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float -> (int8 [out, in], float32 scales [out]): symmetric per output channel, w ~= q * scale."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """nn.Linear with int8 per-channel weights, run by fbgemm's dynamic int8 linear on CPU.

    Inputs of any float dtype and any leading shape; the output has the input's dtype."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = q.shape
        zero = torch.zeros(q.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensor creation is deprecated in favour of torchao, whose CPU
            warnings.simplefilter("ignore")  # path is slower (module notes); the fbgemm op itself is not deprecated
            qweight = torch._make_per_channel_quantized_tensor(q, scale.double(), zero, 0)
        self._packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        q, scale = quantize_weight(linear.weight)
        return cls(q, scale, linear.bias)

    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dequantized float32 weight [out, in], bias): what this layer multiplies by."""
        qweight, bias = torch.ops.quantized.linear_unpack(self._packed)
        return qweight.dequantize(), bias

    @property
    def nbytes(self) -> int:
        """Bytes held: int8 weights, float32 scales, the bias."""
        bias = self.unpacked()[1]
        return self.out_features * self.in_features + 4 * self.out_features + (0 if bias is None else
                                                                              4 * bias.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        shape = x.shape
        # reduce_range: 7-bit activations. On CPUs without VNNI (AVX2, plain AVX-512) fbgemm multiplies u8 x s8 pairs
        # into saturating int16 sums; with 8-bit activations that saturation cost 5-7% relative error on an AVX2
        # machine (measured 2026-12-02), against < 2% with 7 bits, and VNNI machines lose nothing measurable.
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float().contiguous(), self._packed, True)
        return y.view(*shape[:-1], self.out_features).to(dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel (fbgemm)"


def _targets(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, linear) for every Linear of the MoT layers and the lm_head."""
    out = []
    for layer in model.layers:
        for name, module in layer.named_modules():
            for child_name, child in module.named_children():
                if type(child) is nn.Linear:
                    out.append((module, child_name, child))
    if type(getattr(model, "lm_head", None)) is nn.Linear:
        out.append((model, "lm_head", model.lm_head))
    return out


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace the towers' and the lm_head's Linear layers by int8 ones, in place; returns the model.

    CPU: `Int8Linear` (fbgemm). CUDA: torchao's int8 weight-only tensors (needs `pip install torchao`)."""
    targets = _targets(model)
    if not targets:
        raise ValueError("quantize_int8: no Linear layers found in .layers / .lm_head")
    device = targets[0][2].weight.device
    if device.type == "cpu":
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            raise RuntimeError("int8 weights on CPU need PyTorch's fbgemm engine (x86); this build lacks it")
        torch.backends.quantized.engine = "fbgemm"
        for parent, name, linear in targets:
            setattr(parent, name, Int8Linear.from_linear(linear))
        return model
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as e:
        raise RuntimeError(f"int8 weights on {device.type} need torchao (pip install torchao): {e}") from None
    chosen = {id(linear) for _, _, linear in targets}
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda m, _fqn: id(m) in chosen)
    return model


def apply_weights(model: nn.Module, weights: str | None) -> nn.Module:
    """`weights` "float" / None: as loaded; "int8": `quantize_int8`."""
    if weights in (None, "float"):
        return model
    if weights == "int8":
        return quantize_int8(model)
    raise ValueError(f"weights: expected one of {WEIGHTS}, got {weights!r}")


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and int8 layers (what the weights take in memory)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total + sum(m.nbytes for m in model.modules() if isinstance(m, Int8Linear))
