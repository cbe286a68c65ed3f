"""`cosmos3 serve`: the Reasoner and the Generator behind one OpenAI-compatible HTTP API (DESIGN 2.10).

    serve_main(["--checkpoint", "ckpt/", "--port", "8000", "--storage", "jobs/"])      # what `cosmos3 serve` runs
    app = create_app(ServerConfig(checkpoint="ckpt/"))                              # an ASGI app, to embed
"""

from __future__ import annotations

import argparse
import logging
import sys

from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve_main"]


def create_app(*args, **kwargs):
    from .app import create_app as _create

    return _create(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = argparse.ArgumentParser(prog="cosmos3 serve", description="OpenAI-compatible server for chat, images and "
                                                                 "videos (sync and async jobs).")
    p.add_argument("--checkpoint", default="pico", help="embedded model name (default pico) or official-layout checkpoint (or a Qwen3-VL folder: chat only)")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--storage", default=str(d.storage), help="folder for the job database and outputs")
    p.add_argument("--served-model-name", default=None, help="model id to report (default: the folder's name)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--allowed-local-media-path", action="append", default=[], metavar="DIR",
                   help="a folder whose files requests may name (repeatable); none by default")
    p.add_argument("--allow-remote-media", action="store_true", help="fetch http(s) media URLs (off by default)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--weights", choices=["float", "int8"], default="float",
                   help="int8: the towers' linears and lm_head in int8 (docs/MEMORY.md)")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="generation jobs waiting before 429")
    p.add_argument("--generation-workers", type=int, default=d.generation_workers,
                   help="generation jobs run at the same time")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="chat requests decoded together")
    p.add_argument("--max-model-len", type=int, default=d.max_model_len, help="chat prompt + completion tokens")
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens)
    p.add_argument("--max-upload-bytes", type=int, default=d.max_upload_bytes)
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="output width x height")
    p.add_argument("--max-input-pixels", type=int, default=d.max_input_pixels,
                   help="one input image or video frame (chat and generation), checked from its header before "
                        "decoding (413 beyond)")
    p.add_argument("--max-frames", type=int, default=d.max_frames)
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="num_inference_steps")
    p.add_argument("--max-job-seconds", type=float, default=d.max_job_seconds,
                   help="refuse (400) a generation request whose estimated compute on this device is longer; the "
                        "estimate comes from two short timed runs of the checkpoint on the first request")
    from ..guardrails.options import add_arguments as add_guardrail_arguments

    add_guardrail_arguments(p, server=True)  # --no-guardrails, --allow-guardrails-off, --blocklist, --guard-model
    p.add_argument("--log-level", default="info")
    return p


def serve_main(argv: list[str]) -> int:
    """Parse arguments, load the checkpoint, serve until interrupted. Exit status 2 on bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        config = ServerConfig(
            checkpoint=args.checkpoint, storage=args.storage, host=args.host, port=args.port,
            served_model_name=args.served_model_name, api_key=args.api_key,
            allowed_local_media_paths=args.allowed_local_media_path, allow_remote_media=args.allow_remote_media,
            device=args.device, weights=args.weights, max_queue=args.max_queue, generation_workers=args.generation_workers,
            max_batch=args.max_batch, max_model_len=args.max_model_len, max_prompt_tokens=args.max_prompt_tokens,
            max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels,
            max_input_pixels=args.max_input_pixels, max_frames=args.max_frames,
            max_steps=args.max_steps, max_job_seconds=args.max_job_seconds, guardrails=not args.no_guardrails,
            allow_guardrails_off=args.allow_guardrails_off, blocklist=args.blocklist, guard_model=args.guard_model)
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(config)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level.lower())
    return 0
