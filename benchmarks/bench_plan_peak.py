"""`info --plan`'s activation estimate (plan.activation_peak) against the measured peak of one CFG gen forward on
this CPU (PyTorch's CPU flash attention: no N x N scores, as the estimate assumes). Random weights, 4 layers, hidden
1024; the peak is the allocator's in-use bytes read after every op (plan.measured_peak), after a warm-up at the same
shape. Prints measured and estimated MiB per shape, then one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/bench_plan_peak.py
"""

import json

import torch

from cosmos3.config import Cosmos3Config
from cosmos3.model import Cosmos3Omni, UndCache
from cosmos3.plan import activation_peak, measured_peak


def main() -> None:
    torch.manual_seed(0)
    rows = []
    print(f"{'hidden':>7}{'prompt':>8}{'gen':>7}{'measured MiB':>14}{'plan MiB':>10}{'error':>8}")
    for D, F, L, N in [(1024, 3072, 256, 2048), (1024, 3072, 512, 4096)]:
        cfg = Cosmos3Config(hidden_size=D, intermediate_size=F, num_hidden_layers=4, num_attention_heads=16,
                            num_key_value_heads=4, head_dim=64, vocab_size=1000, sound_gen=False, action_gen=False)
        model = Cosmos3Omni(cfg).eval()
        B = 2

        def step():
            tokens, positions = torch.randn(B, N, D), torch.zeros(B, 3, N)
            cache = UndCache([torch.randn(B, 4, L, 64) for _ in range(4)], [torch.randn(B, 4, L, 64) for _ in range(4)])
            return model.run_gen(tokens, positions, cache)

        with torch.inference_mode():
            step()
            _, peak = measured_peak(step)
        est = activation_peak(cfg, N, L, B, 4)
        rows.append(dict(hidden=D, prompt=L, gen=N, measured=peak, plan=est, error=est / peak - 1))
        print(f"{D:>7}{L:>8}{N:>7}{peak / 2**20:>14.1f}{est / 2**20:>10.1f}{est / peak - 1:>+8.1%}")
    print(json.dumps({"bench": "plan_peak", "rows": rows}))


if __name__ == "__main__":
    main()
