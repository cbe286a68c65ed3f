"""Ulysses sequence parallelism over 3 gloo ranks (a count that is not a power of two) equals the one-process gen
stack: random network (6 query heads, 1 / 2 / 3 / 6 key-value heads: copied per query head or split), random token
count (unequal shares), two prompts of different lengths (padded, masked und cache)."""

import random

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cosmos3.model import Cosmos3Omni, UndCache
from cosmos3.model.rope import text_positions
from cosmos3.parallel.ulysses import SequenceParallel, token_split
from oracle import random_config, relative_error
from seeding import fresh_seed

RANKS = 3


def _rank(rank: int, seed: int, rendezvous: str, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=RANKS)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False, action=False).replace(
        num_attention_heads=6, num_key_value_heads=rng.choice([1, 2, 3, 6]))
    torch.manual_seed(seed)  # the same weights on every rank
    model = Cosmos3Omni(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1 / max(p.shape[-1], 1) ** 0.5, generator=gen)
    n = rng.randint(7, 40)
    lengths = [rng.randint(3, 12), rng.randint(3, 12)]
    with torch.inference_mode():
        cache = UndCache.stack([model.encode_und(torch.randint(0, cfg.vocab_size, (L,), generator=gen),
                                                 text_positions(L)) for L in lengths])
        x = torch.randn(2, n, cfg.hidden_size, generator=gen)
        positions = torch.randn(2, 3, n, generator=gen) * 50
        whole = model.run_gen(x, positions, cache)
        sequence = SequenceParallel(dist.group.WORLD, rank, RANKS)
        calls = []
        attend = sequence.attend
        sequence.attend = lambda *a: calls.append(1) or attend(*a)
        split = sequence.run_gen(model, x, positions, cache)
    results[rank] = (relative_error(split, whole), len(calls), cfg.num_hidden_layers, cache.mask is not None)
    dist.destroy_process_group()


def test_ulysses_equals_one_process_over_three_ranks(tmp_path):
    seed = fresh_seed("ulysses")
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(seed, f"file://{tmp_path}/rendezvous", results), nprocs=RANKS)
    for rank in range(RANKS):
        error, calls, layers, masked = results[rank]
        assert calls == layers  # every layer's attention went through the exchange
        assert error < 1e-5, f"rank {rank}: relative error {error:.2e}"


def test_token_split_covers_every_token_once():
    for n in range(0, 30):
        for size in range(1, 6):
            shares = token_split(n, size)
            assert sum(shares) == n and max(shares) - min(shares) <= 1 and len(shares) == size
