"""The guardrail flags shared by `cosmos3 generate`, `cosmos3 reason` and `cosmos3 serve`, and the Guardrail they
build. Guardrails are on unless `--no-guardrails`, as in the release's own inference commands."""

from __future__ import annotations

import argparse

from . import Guardrail


def add_arguments(parser: argparse.ArgumentParser, server: bool = False, frames: bool = True) -> None:
    parser.add_argument("--no-guardrails", action="store_true",
                        help="turn the guardrails off: no prompt screening" + (", no face blur" if frames else ""))
    parser.add_argument("--blocklist", metavar="FILE",
                        help="blocklist file (one word or phrase per line, '#' comments), in place of the small "
                             "shipped list (docs/GUARDRAILS.md)")
    parser.add_argument("--guard-model", metavar="DIR",
                        help="also screen prompts with this guard model (a causal-LM folder loadable by "
                             "transformers, e.g. Qwen3Guard-Gen-0.6B)")
    if server:
        parser.add_argument("--allow-guardrails-off", action="store_true",
                            help="honour guardrails: false in a request's extra_params / extra_args (refused with "
                                 "400 otherwise)")


def build(args: argparse.Namespace, frames: bool = True) -> Guardrail | None:
    """The Guardrail the flags ask for (None with --no-guardrails). Bad files raise ValueError naming the flag."""
    if args.no_guardrails:
        for flag in ("blocklist", "guard_model"):
            if getattr(args, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} has no effect with --no-guardrails")
        return None
    return Guardrail.default(blocklist=args.blocklist, guard_model=args.guard_model, face_blur=frames,
                             device=getattr(args, "device", None))
