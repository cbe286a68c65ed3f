"""The Mixture-of-Transformers layer: an understanding (und) pathway and a generation (gen) pathway per layer.

Shapes:
    B batch   L und (text) tokens   N gen tokens   D hidden   Hq / Hkv query / key-value heads   Dh head_dim
    und stream [B, L, D]   gen stream [B, N, D]   cos / sin [L or N, Dh] or [B, L or N, Dh]
    per-layer und keys / values as gen queries see them: [B, Hkv, L, Dh]

Attention structure (DESIGN 2.2): und queries attend causally to und keys only; gen queries attend without a mask
to every und and gen key of their sample. Hence the und stream never depends on gen tokens, and its keys/values can
be computed once per prompt (`MoTLayer.und`) and reused by any number of gen passes (`MoTLayer.gen`). Training may
pack several samples into one row (`Packing`); attention then runs per sample on its own slices of the row.

Parameter names follow the official checkpoint (to_q/to_k/to_v/to_out for und, add_*_proj/to_add_out for gen,
`*_moe_gen` for the gen copies of norms and MLP), so weights load by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Cosmos3Config
from .attention import attention
from .rope import apply_rope

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin)


# ------------------------------------------------------------------------------------------------ primitives


class RMSNorm(nn.Module):
    """RMSNorm over the last axis, statistics in float32.

    The two backbones round differently in low precision: Qwen casts the normalized value to the weight dtype and
    multiplies there; Nemotron multiplies in float32 and casts the product. Both are identical in float32.
    """

    def __init__(self, dim: int, eps: float, multiply_in_fp32: bool = False):
        super().__init__()
        self.eps = eps
        self.multiply_in_fp32 = multiply_in_fp32
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        if self.multiply_in_fp32:
            return (self.weight.float() * (x.float() * torch.rsqrt(variance + self.eps))).to(x.dtype)
        y = x * torch.rsqrt(variance + self.eps)  # promoted to float32
        return y.to(self.weight.dtype) * self.weight


class MLP(nn.Module):
    """SwiGLU (`silu`: down(silu(gate(x)) * up(x))) or squared ReLU (`relu2`: down(relu(up(x))^2))."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str):
        super().__init__()
        self.act = act
        if act == "silu":
            self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    # Without autograd, long sequences go through in row chunks: the intermediate activations of a 1,600-token prompt
    # were the largest transient of a text-to-image call (the MLP is per token, so chunks change nothing).
    INFERENCE_CHUNK = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[-2] if x.ndim > 1 else 1
        if rows > self.INFERENCE_CHUNK and not torch.is_grad_enabled():
            return torch.cat([self._mlp(part) for part in x.split(self.INFERENCE_CHUNK, dim=-2)], dim=-2)
        return self._mlp(x)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == "relu2":
            return self.down_proj(torch.relu(self.up_proj(x)).square())
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def _head_norm(cfg: Cosmos3Config) -> RMSNorm:
    return RMSNorm(cfg.head_dim, cfg.rms_norm_eps, multiply_in_fp32=cfg.is_edge_style)


# ------------------------------------------------------------------------------------------------ und cache


@dataclass
class UndCache:
    """Per-layer und keys/values as gen queries see them (after norms and RoPE), for a batch of prompts.

    keys[i], values[i]: [B, Hkv, L, Dh]. `mask` [B, L] bool marks real tokens when prompts of different lengths were
    padded to one batch (None when every prompt has length L).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @staticmethod
    def stack(caches: list["UndCache"], consume: bool = False) -> "UndCache":
        """Batch several single-prompt caches (e.g. the CFG branches), right-padding shorter prompts. With `consume`,
        each input layer is released as soon as it is copied, so the peak holds one extra layer, not a second
        copy of every layer."""
        if len(caches) == 1:
            return caches[0]
        lengths = [c.length for c in caches]
        longest = max(lengths)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return nn.functional.pad(t, (0, 0, 0, longest - t.shape[2]))

        masks, batches = [c.mask for c in caches], [c.batch_size for c in caches]
        keys, values = [], []
        for i in range(len(caches[0].keys)):
            keys.append(torch.cat([pad(c.keys[i]) for c in caches]))
            values.append(torch.cat([pad(c.values[i]) for c in caches]))
            if consume:
                for c in caches:
                    c.keys[i] = c.values[i] = None
        mask = None
        if len(set(lengths)) > 1 or any(m is not None for m in masks):
            rows = []
            for m, b, n in zip(masks, batches, lengths):
                m = m if m is not None else torch.ones(b, n, dtype=torch.bool)
                rows.append(nn.functional.pad(m.to(keys[0].device), (0, longest - n), value=False))
            mask = torch.cat(rows)
        return UndCache(keys, values, mask)


@dataclass
class KVCache:
    """A static, preallocated und key/value cache for autoregressive decoding (the reasoner).

    keys[i], values[i]: [B, Hkv, capacity, Dh]. Each call writes its new tokens at explicit slots (`write_at`,
    [S] shared by the batch or [B, S] per row), so rows of one batch may sit at different lengths (continuous
    batching) and the buffers never move or grow (the loop can be compiled).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(cls, cfg: Cosmos3Config, batch: int, capacity: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> "KVCache":
        shape = (batch, cfg.num_key_value_heads, capacity, cfg.head_dim)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)])

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def write(self, layer: int, write_at: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [B, Hkv, S, Dh] at slots write_at ([S] or [B, S])."""
        B, H, S, Dh = k.shape
        index = write_at.to(k.device).expand(B, S)[:, None, :, None].expand(B, H, S, Dh)
        self.keys[layer].scatter_(2, index, k)
        self.values[layer].scatter_(2, index, v)


def cache_causal_mask(write_at: torch.Tensor, capacity: int, batch: int) -> torch.Tensor:
    """[B, 1, S, capacity] bool: a token written at slot p sees slots 0..p (what earlier calls wrote, and itself)."""
    slots = torch.arange(capacity, device=write_at.device)
    at = write_at.expand(batch, -1)  # [B, S]
    return (slots[None, None, :] <= at[:, :, None])[:, None]


@dataclass
class Packing:
    """Several samples end to end in one row (batch 1), for training: sample i is und tokens
    [und[i][0], und[i][0] + und[i][1]) of the row and gen tokens [gen[i][0], gen[i][0] + gen[i][1]). Attention runs
    per sample on its own slices (causal over its und tokens; its gen queries over its und and gen keys), so packing
    computes exactly what separate rows would, with no padding and no attention across samples."""

    und: list[tuple[int, int]]
    gen: list[tuple[int, int]] | None = None


def _span(t: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    return t[:, :, span[0]:span[0] + span[1]]  # [B, H, S, Dh] -> the span's S


# ------------------------------------------------------------------------------------------------ attention


class MoTAttention(nn.Module):
    def __init__(self, cfg: Cosmos3Config, with_gen: bool = True):
        super().__init__()
        D, Dh, bias = cfg.hidden_size, cfg.head_dim, cfg.attention_bias
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, Dh
        q_width, kv_width = self.num_heads * Dh, self.num_kv_heads * Dh
        # und pathway (the Qwen3-VL / Nemotron text layer)
        self.to_q = nn.Linear(D, q_width, bias=bias)
        self.to_k = nn.Linear(D, kv_width, bias=bias)
        self.to_v = nn.Linear(D, kv_width, bias=bias)
        self.to_out = nn.Linear(q_width, D, bias=bias)
        self.norm_q = _head_norm(cfg) if cfg.qk_norm_for_text else nn.Identity()
        self.norm_k = _head_norm(cfg) if cfg.qk_norm_for_text else nn.Identity()
        # Edge has no und q/k norm; gen queries instead see und keys through a norm of their own.
        self.k_norm_und_for_gen = (_head_norm(cfg) if with_gen and cfg.use_und_k_norm_for_gen
                                   and not cfg.qk_norm_for_text else None)
        if not with_gen:  # understanding only (the reasoner): the gen half is never built
            return
        # gen pathway
        self.add_q_proj = nn.Linear(D, q_width, bias=bias)
        self.add_k_proj = nn.Linear(D, kv_width, bias=bias)
        self.add_v_proj = nn.Linear(D, kv_width, bias=bias)
        self.to_add_out = nn.Linear(q_width, D, bias=bias)
        self.norm_added_q = _head_norm(cfg)
        self.norm_added_k = _head_norm(cfg)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(*x.shape[:-1], n, self.head_dim)  # [B, S, n * Dh] -> [B, S, n, Dh]

    def und(self, x: torch.Tensor, rope: Rope, mask: torch.Tensor | None = None, backend: str = "sdpa",
            cache: KVCache | None = None, layer: int = 0, write_at: torch.Tensor | None = None,
            packing: Packing | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Causal self-attention of the und stream. Returns (output [B, L, D], keys and values for gen queries).

        Without a cache, `mask` [B, L] marks real (not padding) tokens, or [B, 1, L, L] says which keys each query may
        see besides causality; `packing` instead cuts a packed row into independent samples. With a cache, the new
        keys/values are written at slots `write_at` and the queries attend over the whole buffer; `mask`
        [B, 1, S, capacity] then says which slots each query sees (default: every slot up to its own)."""
        cos, sin = rope
        q = apply_rope(self.norm_q(self._heads(self.to_q(x), self.num_heads)), cos, sin)
        k = self.norm_k(self._heads(self.to_k(x), self.num_kv_heads))
        v = self._heads(self.to_v(x), self.num_kv_heads).transpose(1, 2)
        k_for_gen = k if self.k_norm_und_for_gen is None else self.k_norm_und_for_gen(k)
        k = apply_rope(k, cos, sin).transpose(1, 2)  # [B, Hkv, L, Dh]
        k_for_gen = k if self.k_norm_und_for_gen is None else apply_rope(k_for_gen, cos, sin).transpose(1, 2)
        if packing is not None:
            q = q.transpose(1, 2)
            out = torch.cat([attention(_span(q, sp), _span(k, sp), _span(v, sp), causal=True, backend=backend)
                             for sp in packing.und], dim=2)
        elif cache is None:
            key_mask = None if mask is None else mask if mask.ndim == 4 else mask[:, None, None, :]
            out = attention(q.transpose(1, 2), k, v, causal=True, mask=key_mask, backend=backend)
        else:
            cache.write(layer, write_at, k, v)
            if mask is not None:
                out = attention(q.transpose(1, 2), cache.keys[layer], cache.values[layer], mask=mask,
                                backend=backend)
            else:
                # Attend only over the slots written so far, not the whole preallocated buffer. A prefill that
                # fills slots 0..S-1 is plain causal attention over its own keys (the fused causal kernel).
                span = int(write_at.max()) + 1
                if span == x.shape[1] and write_at.ndim == 1:
                    out = attention(q.transpose(1, 2), k, v, causal=True, backend=backend)
                else:
                    out = attention(q.transpose(1, 2), cache.keys[layer][:, :, :span],
                                    cache.values[layer][:, :, :span],
                                    mask=cache_causal_mask(write_at, span, x.shape[0]), backend=backend)
        return self.to_out(out.transpose(1, 2).flatten(2)), k_for_gen, v

    def gen(self, x: torch.Tensor, rope: Rope, und_k: torch.Tensor, und_v: torch.Tensor,
            und_mask: torch.Tensor | None = None, backend: str = "sdpa",
            packing: Packing | None = None, parallel=None) -> torch.Tensor:
        """Full attention of gen queries over [und keys | gen keys] of their own sample -> [B, N, D]. `parallel`
        (parallel.ulysses.SequenceParallel): x holds this rank's share of the tokens; the ranks exchange heads."""
        cos, sin = rope
        q = apply_rope(self.norm_added_q(self._heads(self.add_q_proj(x), self.num_heads)), cos, sin)
        k = apply_rope(self.norm_added_k(self._heads(self.add_k_proj(x), self.num_kv_heads)), cos, sin)
        v = self._heads(self.add_v_proj(x), self.num_kv_heads)
        if parallel is not None:
            return self.to_add_out(parallel.attend(q, k, v, und_k, und_v, und_mask, backend))
        if packing is not None:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            out = torch.cat([attention(_span(q, g), torch.cat([_span(und_k, u), _span(k, g)], dim=2),
                                       torch.cat([_span(und_v, u), _span(v, g)], dim=2), backend=backend)
                             for u, g in zip(packing.und, packing.gen)], dim=2)
            return self.to_add_out(out.transpose(1, 2).flatten(2))
        keys = torch.cat([und_k, k.transpose(1, 2)], dim=2)  # [B, Hkv, L + N, Dh]
        values = torch.cat([und_v, v.transpose(1, 2)], dim=2)
        mask = None
        if und_mask is not None:  # padded prompts: hide the padding, every gen key stays visible
            gen_visible = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
            mask = torch.cat([und_mask, gen_visible], dim=1)[:, None, None, :]
        out = attention(q.transpose(1, 2), keys, values, mask=mask, backend=backend)
        return self.to_add_out(out.transpose(1, 2).flatten(2))


# ------------------------------------------------------------------------------------------------ layer


class MoTLayer(nn.Module):
    """Pre-norm residual block, per pathway: h = x + attn(norm1(x)); out = h + mlp(norm2(h))."""

    def __init__(self, cfg: Cosmos3Config, with_gen: bool = True):
        super().__init__()
        D, eps, fp32 = cfg.hidden_size, cfg.rms_norm_eps, cfg.is_edge_style
        self.self_attn = MoTAttention(cfg, with_gen)
        self.mlp = MLP(D, cfg.intermediate_size, cfg.hidden_act)
        self.input_layernorm = RMSNorm(D, eps, fp32)
        self.post_attention_layernorm = RMSNorm(D, eps, fp32)
        if with_gen:
            self.mlp_moe_gen = MLP(D, cfg.intermediate_size, cfg.hidden_act)
            self.input_layernorm_moe_gen = RMSNorm(D, eps, fp32)
            self.post_attention_layernorm_moe_gen = RMSNorm(D, eps, fp32)

    def und(self, x: torch.Tensor, rope: Rope, mask: torch.Tensor | None = None, backend: str = "sdpa",
            cache: KVCache | None = None, layer: int = 0, write_at: torch.Tensor | None = None,
            packing: Packing | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """und stream through this layer -> (new stream, keys and values for gen queries)."""
        attn_out, k, v = self.self_attn.und(self.input_layernorm(x), rope, mask, backend, cache, layer, write_at,
                                            packing)
        h = x + attn_out
        return h + self.mlp(self.post_attention_layernorm(h)), k, v

    def gen(self, x: torch.Tensor, rope: Rope, und_k: torch.Tensor, und_v: torch.Tensor,
            und_mask: torch.Tensor | None = None, backend: str = "sdpa",
            packing: Packing | None = None, parallel=None) -> torch.Tensor:
        h = x + self.self_attn.gen(self.input_layernorm_moe_gen(x), rope, und_k, und_v, und_mask, backend, packing,
                                   parallel)
        return h + self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(h))
