"""`info --plan`'s activation estimate (plan.activation_peak) against the measured peak of one CFG gen forward on
this CPU (PyTorch's CPU flash attention: no N x N scores, as the estimate assumes). Random weights, 4 layers,
hidden 1024; the resident-set growth is sampled every millisecond with glibc's mmap threshold at 64 KiB (freed
tensors leave the resident set). Prints measured and estimated MiB per shape.

    MALLOC_MMAP_THRESHOLD_=65536 OMP_NUM_THREADS=1 python benchmarks/bench_plan_peak.py
"""
import os, threading, time, torch
torch.set_num_threads(1)
from cosmos3.config import Cosmos3Config
from cosmos3.model import Cosmos3Omni, UndCache
from cosmos3.plan import activation_peak
def rss():
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
for D, F, L, N in [(1024, 3072, 256, 2048), (1024, 3072, 512, 4096)]:
    cfg = Cosmos3Config(hidden_size=D, intermediate_size=F, num_hidden_layers=4, num_attention_heads=16,
                        num_key_value_heads=4, head_dim=64, vocab_size=1000, sound_gen=False, action_gen=False)
    m = Cosmos3Omni(cfg).eval()
    B = 2
    with torch.inference_mode():
        tokens = torch.randn(B, N, D)
        pos = torch.zeros(B, 3, N)
        m.run_gen(tokens[:, :64], pos[:, :, :64], UndCache([torch.randn(B, 4, L, 64) for _ in range(4)], [torch.randn(B, 4, L, 64) for _ in range(4)]))
        base = rss(); peak=[base]; done=threading.Event()
        def watch():
            while not done.is_set():
                peak[0]=max(peak[0], rss()); time.sleep(0.001)
        t=threading.Thread(target=watch); t.start()
        cache = UndCache([torch.randn(B, 4, L, 64) for _ in range(4)], [torch.randn(B, 4, L, 64) for _ in range(4)])
        out = m.run_gen(tokens, pos, cache)
        done.set(); t.join()
    est = activation_peak(cfg, N, L, B, 4)
    print(D, L, N, "measured MiB", (peak[0]-base)/2**20, "estimate MiB", est/2**20)
