"""The one attention entry point of the network.

Shapes:
    B batch   Hq query heads   Hkv key/value heads (Hq % Hkv == 0, grouped-query attention)
    S queries K keys   Dh head_dim
    q [B, Hq, S, Dh]   k, v [B, Hkv, K, Dh]   ->   out [B, Hq, S, Dh]

`backend="sdpa"` (the default) is PyTorch's scaled_dot_product_attention, which always works and picks the fused
kernel of the device. `backend="math"` is a plain softmax(q k^T) v written out, slow but obviously right; tests use it
to check the fused path. Masks are boolean, True = may attend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "math")


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, Hkv, K, Dh] -> [B, Hkv * groups, K, Dh], each kv head repeated for the query heads it serves."""
    if groups == 1:
        return x
    b, h, k, d = x.shape
    return x[:, :, None].expand(b, h, groups, k, d).reshape(b, h * groups, k, d)


def causal_mask(num_queries: int, num_keys: int, device: torch.device | None = None) -> torch.Tensor:
    """[S, K] bool, aligned to the bottom right: query i (the i-th of the last S positions) sees keys 0..K-S+i."""
    q = torch.arange(num_queries, device=device).unsqueeze(1) + (num_keys - num_queries)
    return torch.arange(num_keys, device=device).unsqueeze(0) <= q


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              mask: torch.Tensor | None = None, backend: str = "sdpa") -> torch.Tensor:
    """Scaled dot-product attention with GQA, scale Dh^-0.5.

    causal: queries are the last S of the K key positions and see only keys at or before their own.
    mask:   optional bool mask broadcastable to [B, Hq, S, K], combined with `causal`.
    """
    groups = q.shape[1] // k.shape[1]
    if q.shape[1] != groups * k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} are not a multiple of key/value heads {k.shape[1]}")
    S, K = q.shape[2], k.shape[2]
    if causal and (mask is not None or S != K):
        allowed = causal_mask(S, K, q.device)
        mask = allowed if mask is None else (mask & allowed)
        causal = False
    if backend == "sdpa":
        # enable_gqa measured as fast as repeating kv heads by hand on CPU (and bit-identical), without the copy. On
        # CUDA, GQA with a mask has no fused kernel: SDPA falls back to its math kernel, which materializes every
        # [S, K] score (tens of GB for a 480p video). There the kv heads are repeated by hand, so the fused
        # memory-efficient kernel takes the mask.
        if groups > 1 and mask is not None and q.device.type != "cpu":
            k, v, groups = _expand_kv(k, groups), _expand_kv(v, groups), 1
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=groups > 1)
    if backend == "math":
        k, v = _expand_kv(k, groups).float(), _expand_kv(v, groups).float()
        scores = (q.float() @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if causal:
            scores = scores.masked_fill(~causal_mask(S, K, q.device), float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return (scores.softmax(dim=-1) @ v).to(q.dtype)
    raise ValueError(f"attention backend {backend!r} is unknown; expected one of {BACKENDS}")
