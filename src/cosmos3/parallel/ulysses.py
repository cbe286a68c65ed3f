"""Sequence parallel (DeepSpeed-Ulysses): the gen tokens split over S ranks, attention over a share of the heads.

Everything in a gen layer but attention works token by token, so each rank runs its own contiguous share of the N
gen tokens. Attention needs every token: an all-to-all turns [my tokens, every head] into [every token, my heads]
(S must divide the query heads), each rank attends over its heads, and a second all-to-all turns the result back.
The und keys and values are replicated on every rank (each takes its heads' slice). With fewer key/value heads than
ranks (S does not divide them), each query head gets its own copy of its key/value head before the exchange.
Shares need not be equal (N need not divide by S): the exchanges carry per-rank sizes.

The method: Jacobs et al., "DeepSpeed Ulysses" (arXiv 2309.14509); vLLM-Omni uses it for diffusion transformers
(docs/user_guide/diffusion/parallelism_acceleration.md, "Ulysses-SP").

Shapes: B batch   N gen tokens (n this rank's)   H query heads   Hkv key/value heads   S ranks   c = H / S   Dh
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..model.attention import attention


def token_split(n: int, size: int) -> list[int]:
    """Contiguous shares of n tokens over `size` ranks, the first n % size one larger."""
    return [n // size + (1 if r < n % size else 0) for r in range(size)]


@dataclass
class SequenceParallel:
    group: object  # the sequence group's process group
    rank: int  # rank within the group
    size: int  # S
    sizes: list[int] = field(default_factory=list)  # every rank's token count in the current forward

    def run_gen(self, model, x: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """`model.run_gen` over this rank's share of the tokens -> the whole final hidden [B, N, D] on every rank."""
        self.sizes = token_split(x.shape[1], self.size)
        lo = sum(self.sizes[:self.rank])
        hi = lo + self.sizes[self.rank]
        local = model.run_gen(x[:, lo:hi], positions[..., lo:hi], cache, parallel=self)  # [B, n, D]
        return self._gather_tokens(local)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, und_k: torch.Tensor, und_v: torch.Tensor,
               und_mask: torch.Tensor | None, backend: str) -> torch.Tensor:
        """Gen attention of this rank's tokens. q [B, n, H, Dh], k / v [B, n, Hkv, Dh], und_k / und_v
        [B, Hkv, L, Dh] (whole, replicated) -> [B, n, H * Dh]."""
        heads, kv_heads = q.shape[2], k.shape[2]
        if kv_heads % self.size:  # too few kv heads to share out: one copy per query head (GQA groups kept)
            groups = heads // kv_heads
            k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
            und_k, und_v = und_k.repeat_interleave(groups, dim=1), und_v.repeat_interleave(groups, dim=1)
            kv_heads = heads
        c = kv_heads // self.size
        mine = slice(self.rank * c, (self.rank + 1) * c)
        keys = torch.cat([und_k[:, mine], self._to_heads(k)], dim=2)  # [B, c, L + N, Dh]
        values = torch.cat([und_v[:, mine], self._to_heads(v)], dim=2)
        mask = None
        if und_mask is not None:  # padded prompts: hide the padding, every gen key stays visible
            gen_visible = torch.ones(q.shape[0], sum(self.sizes), dtype=torch.bool, device=q.device)
            mask = torch.cat([und_mask, gen_visible], dim=1)[:, None, None, :]
        out = attention(self._to_heads(q), keys, values, mask=mask, backend=backend)  # [B, H / S, N, Dh]
        return self._to_tokens(out)

    # ---------------------------------------------------------------------------------------- exchanges

    def _to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n, h, Dh] (my tokens, every head) -> [B, h / S, N, Dh] (every token, my heads)."""
        B, n, h, Dh = x.shape
        c, S = h // self.size, self.size
        send = x.reshape(B, n, S, c, Dh).permute(2, 0, 3, 1, 4).contiguous()  # [S, B, c, n, Dh]: block j to rank j
        recv = x.new_empty(B * c * sum(self.sizes) * Dh)
        dist.all_to_all_single(recv, send.reshape(-1), output_split_sizes=[B * c * s * Dh for s in self.sizes],
                               input_split_sizes=[B * c * n * Dh] * S, group=self.group)
        parts = recv.split([B * c * s * Dh for s in self.sizes])
        return torch.cat([p.view(B, c, s, Dh) for p, s in zip(parts, self.sizes)], dim=2)

    def _to_tokens(self, out: torch.Tensor) -> torch.Tensor:
        """[B, c, N, Dh] (every token, my heads) -> [B, n, S * c * Dh] (my tokens, every head, head-major)."""
        B, c, _, Dh = out.shape
        n, S = self.sizes[self.rank], self.size
        send = torch.cat([block.reshape(-1) for block in out.split(self.sizes, dim=2)])  # token share j to rank j
        recv = out.new_empty(S * B * c * n * Dh)
        dist.all_to_all_single(recv, send, output_split_sizes=[B * c * n * Dh] * S,
                               input_split_sizes=[B * c * s * Dh for s in self.sizes], group=self.group)
        return recv.view(S, B, c, n, Dh).permute(1, 3, 0, 2, 4).reshape(B, n, S * c * Dh)

    def _gather_tokens(self, local: torch.Tensor) -> torch.Tensor:
        """[B, n, D] on each rank -> [B, N, D] on every rank (shares padded to the largest for the all-gather)."""
        longest = max(self.sizes)
        padded = torch.nn.functional.pad(local, (0, 0, 0, longest - local.shape[1])).contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:, :s] for p, s in zip(parts, self.sizes)], dim=1)
