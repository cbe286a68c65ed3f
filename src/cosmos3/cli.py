"""The `cosmos3` command.

    cosmos3 info [--step]        versions, device, preset sizes; --step times one CFG denoising step (random weights)

Every subcommand validates its arguments first: a bad value exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from . import __version__
from .config import PRESETS, Cosmos3Config


class UsageError(Exception):
    """A bad command-line value: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------------------------- info


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:,.2f} GiB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:,.1f} MiB"


def print_info() -> None:
    device = _device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else (platform.processor() or platform.machine())
    from .checkpoint import default_dtype

    print(f"open-cosmos3 {__version__}  |  python {platform.python_version()}  |  torch {torch.__version__}")
    print(f"device: {device.type} ({name}), {torch.get_num_threads()} threads, default dtype "
          f"{str(default_dtype(device)).replace('torch.', '')}")
    print()
    print(f"{'preset':<11}{'hidden':>7}{'layers':>7}{'heads':>7}{'mlp':>6}{'parameters':>17}{'bf16':>13}{'fp32':>13}")
    for preset, cfg in PRESETS.items():
        n = cfg.param_count()
        print(f"{preset:<11}{cfg.hidden_size:>7}{cfg.num_hidden_layers:>7}"
              f"{f'{cfg.num_attention_heads}/{cfg.num_key_value_heads}':>7}{cfg.hidden_act:>6}{n:>17,}"
              f"{_gib(2 * n):>13}{_gib(4 * n):>13}")


def time_denoising_step(cfg: Cosmos3Config, text_tokens: int = 64, frames: int = 5, height: int = 12,
                        width: int = 20, repeat: int = 3) -> dict:
    """One classifier-free-guidance step of the network at random weights: und keys/values of both prompts computed
    once, both branches in one batched gen forward. Returns timings in seconds."""
    from .model import Cosmos3Omni, GenInputs, UndCache
    from .model.heads import patch_grid
    from .model.rope import modality_offset, text_positions, vision_positions

    torch.manual_seed(0)
    device = _device()
    model = Cosmos3Omni(cfg).to(device).eval()
    lengths = [text_tokens, text_tokens // 2]
    noisy = torch.ones(frames, dtype=torch.bool)
    inputs = GenInputs(vision=torch.randn(cfg.latent_channel, frames, height, width), vision_noisy=noisy,
                       timestep=torch.tensor(900.0))
    rows, cols = patch_grid(height, width, cfg.latent_patch_size)
    positions = torch.stack([vision_positions(frames, rows, cols, modality_offset(n), 24.0) for n in lengths])
    with torch.inference_mode():
        start = time.perf_counter()
        cache = UndCache.stack([model.encode_und(torch.randint(0, cfg.vocab_size, (n,)), text_positions(n))
                                for n in lengths])
        encode_s = time.perf_counter() - start
        steps = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            hidden = model.run_gen(model.embed_gen(inputs).expand(2, -1, -1), positions, cache)
            v_pos, v_neg = (model.decode_gen(h, inputs).vision for h in hidden)
            velocity = v_neg + 6.0 * (v_pos - v_neg)
            if device.type == "cuda":
                torch.cuda.synchronize()
            steps.append(time.perf_counter() - start)
    return dict(encode_s=encode_s, step_s=min(steps[1:]), gen_tokens=frames * rows * cols,
                text_tokens=lengths, finite=bool(torch.isfinite(velocity).all()))


def cmd_info(args: argparse.Namespace) -> int:
    print_info()
    if args.step:
        cfg = PRESETS[args.preset]
        print()
        print(f"Timing one denoising step of the '{args.preset}' network ({cfg.param_count():,} parameters) with "
              "RANDOM weights:")
        print("  the output is noise; this shows the network runs here and how fast, nothing more.")
        r = time_denoising_step(cfg)
        print(f"  prompts {r['text_tokens'][0]}/{r['text_tokens'][1]} tokens (positive/negative), "
              f"{r['gen_tokens']} video tokens, guidance 6")
        print(f"  und keys/values (once per request): {r['encode_s'] * 1000:.1f} ms;  "
              f"CFG step, both branches batched: {r['step_s'] * 1000:.1f} ms;  velocity finite: {r['finite']}")
    return 0


# --------------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosmos3", description="open-cosmos3: the Cosmos 3 world model.")
    parser.add_argument("--version", action="version", version=f"open-cosmos3 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="versions, device and model sizes",
                          description="Print versions, the device, and each preset's size.")
    info.add_argument("--step", action="store_true",
                      help="also time one CFG denoising step of a small network with random weights")
    info.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                      help="network for --step (default: tiny; nano/super need tens of GB)")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as e:
        print(f"cosmos3 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
