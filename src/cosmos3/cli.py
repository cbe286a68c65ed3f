"""The `cosmos3` command.

    cosmos3 info [--step]        versions, device, preset sizes; --step times one CFG denoising step (random weights)
    cosmos3 generate ...         text / image / video (+ sound, actions) -> image, video, actions
    cosmos3 reason ...           text + images / video -> text
    cosmos3 world generate ...   the synthetic world as LeRobot datasets + chat JSONL
    cosmos3 demo                 every surface of the embedded pico model (files in ./out)

Every subcommand validates its arguments first: a bad value exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

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


def print_checkpoint_defaults(name: str) -> None:
    """What `generate` uses on a checkpoint when a setting is left out, read from its folder (no model loaded)."""
    import json

    from .actions import ACTION_STATS_FILE, load_stats_file
    from .checkpoint import CheckpointError, resolve_checkpoint
    from .request import DEFAULTS_FILE, describe_defaults, read_native_defaults

    root = resolve_checkpoint(name)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such checkpoint directory")
    native = read_native_defaults(root)
    print(f"checkpoint {root}")
    if native:
        source = DEFAULTS_FILE if (root / DEFAULTS_FILE).is_file() else "model_index.json"
        print(f"  native settings ({source}): {json.dumps(native)}")
    else:
        print("  no native settings: the release's defaults apply")
    print(f"  a request that leaves them out gets: {describe_defaults(native)}")
    stats = load_stats_file(root / ACTION_STATS_FILE)
    print(f"  action statistics (actions normalized): {', '.join(sorted(stats)) if stats else 'none (raw actions)'}")


def cmd_info(args: argparse.Namespace) -> int:
    if args.plan:
        from .plan import parse_bytes, plan, print_plan

        try:
            budget = parse_bytes(args.budget) if args.budget else None
            print_plan(plan(args.plan, budget, resolution=args.resolution, num_frames=args.num_frames,
                            aspect_ratio=args.aspect_ratio))
        except (ValueError, OSError) as e:
            raise UsageError(str(e).splitlines()[0]) from None
        return 0
    print_info()
    if args.checkpoint:
        print()
        print_checkpoint_defaults(args.checkpoint)
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


# ----------------------------------------------------------------------------------------------------- generate


def _number_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return lo, hi


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate an image, a video (with sound) or actions",
                       description="Generate an image, a video (optionally with sound) or actions. The mode follows "
                                   "from the inputs: --num-frames 1 is text-to-image; --image makes image-to-video; "
                                   "--video makes video-to-video; --action-mode selects an action mode.")
    p.add_argument("prompt", nargs="?", default=None, help="the prompt (or use --prompt / --prompt-file)")
    p.add_argument("--prompt", dest="prompt_opt", help="the prompt")
    p.add_argument("--prompt-file", help="read the prompt from a file (plain text or a JSON prompt)")
    p.add_argument("--negative-prompt", help="what to steer away from (text, or a JSON file path)")
    p.add_argument("--checkpoint", default="pico", help="embedded model name (default pico) or checkpoint directory in the official diffusers layout")
    p.add_argument("-o", "--output", default="output.mp4", help=".mp4, .jpg/.png (image) or .json (actions)")
    p.add_argument("--image", help="conditioning image (JPG/PNG/WEBP)")
    p.add_argument("--video", help="conditioning video (MP4)")
    d = _native_help()
    p.add_argument("--num-frames", type=int, help=f"frames (1 = image; 5..300, rounded up to 4k+1); {d('num_frames')}")
    p.add_argument("--fps", type=float, help=f"frames per second (10, 16, 24, 30); {d('fps')}")
    p.add_argument("--height", type=int, help="exact height (with --width)")
    p.add_argument("--width", type=int, help="exact width (with --height)")
    p.add_argument("--resolution", help=f"tier: 256p, 480p, 720p; {d('resolution')}")
    p.add_argument("--aspect-ratio", help=f"16:9, 4:3, 1:1 (images: 1:1), 3:4, 9:16; {d('aspect_ratio')}")
    p.add_argument("--num-inference-steps", type=int,
                   help=f"denoising steps; {d('num_inference_steps', 'image_num_inference_steps', 'action_num_inference_steps')}")
    p.add_argument("--guidance-scale", type=float,
                   help=f"classifier-free guidance; {d('guidance_scale', 'image_guidance_scale', 'action_guidance_scale')}")
    p.add_argument("--flow-shift", type=float, help=f"sigma shift; {d('flow_shift', 'image_flow_shift', 'action_flow_shift')}")
    p.add_argument("--seed", type=int, help="random seed (printed when not given)")
    p.add_argument("--sound", action="store_true", help="also generate synchronized sound (video modes)")
    p.add_argument("--action-mode", choices=["forward_dynamics", "inverse_dynamics", "policy"])
    p.add_argument("--embodiment", help="embodiment for action modes (e.g. droid_lerobot, umi, av)")
    p.add_argument("--actions", help="action file for forward_dynamics (JSON [T, D] or .npy)")
    p.add_argument("--action-chunk-size", type=int,
                   help="actions per chunk; default: the checkpoint's (pico: "
                        f"{_pico_defaults().get('action_chunk_size') or 'the embodiment’s'}), else the embodiment's")
    p.add_argument("--condition-frame-indexes", type=_number_list,
                   help="latent frames of --video kept clean (default 0,1)")
    p.add_argument("--condition-video-keep", choices=["first", "last"], default="first")
    p.add_argument("--no-resolution-template", action="store_true", help="do not state the size in the prompt")
    p.add_argument("--no-duration-template", action="store_true", help="do not state duration/fps in the prompt")
    p.add_argument("--system-prompt", choices=["on", "off"], help="override the checkpoint's system-prompt rule")
    p.add_argument("--guidance-interval", type=_float_pair, help="apply CFG only for sigma in LOW,HIGH")
    p.add_argument("--sampler", choices=["unipc", "euler"], help="override the checkpoint's sampler")
    p.add_argument("--step-cache", type=float, metavar="THRESHOLD",
                   help="skip gen forwards whose input changed less than this in all (TeaCache-style; e.g. 0.05)")
    p.add_argument("--control", action="append", metavar="KIND[:PATH][:WEIGHT]",
                   help="video transfer (repeatable): a control video of KIND edge, blur, depth, seg or wsm, with an "
                        "optional weight; edge and blur without PATH are computed from --control-source "
                        "(docs/TRANSFER.md)")
    p.add_argument("--control-guidance-interval", type=_float_pair, metavar="LOW,HIGH",
                   help="apply control guidance only at timesteps strictly between LOW and HIGH (0-1000)")
    p.add_argument("--control-source", metavar="RGB_VIDEO", help="the RGB clip edge / blur controls are computed from")
    p.add_argument("--control-guidance", type=float,
                   help="push the output away from a run without controls (default: the release's per kind, 1.5 "
                        "edge / blur / depth, 2 seg, 3 wsm; 1 with several controls)")
    p.add_argument("--upsample-prompt", action="store_true",
                   help="let the checkpoint's reasoner expand the prompt into the release's JSON prompt first (greedy)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--parallel", choices=["cfg", "ulysses", "cfg+ulysses", "tower"],
                   help="one request over the processes of a torchrun job: `torchrun --nproc-per-node N -m "
                        "cosmos3.cli generate --parallel MODE ...` (docs/SCALING.md)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: float32 on CPU, bf16 on GPU")
    p.add_argument("--weights", choices=["float", "int8"], default="float",
                   help="int8: the towers' linears and lm_head in int8 (less memory; docs/MEMORY.md)")
    p.add_argument("--offload", choices=["none", "components", "layers"], default="none",
                   help="keep weights in host memory for a GPU smaller than the model: layers stream one ahead, "
                        "or whole components take turns (docs/MEMORY.md)")
    p.add_argument("--vae-tiling", action="store_true",
                   help="encode and decode frames in overlapping 384 px tiles: less VAE memory for large frames, a "
                        "small error at the seams (docs/MEMORY.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .guardrails.options import add_arguments as add_guardrail_arguments

    add_guardrail_arguments(p)  # --no-guardrails, --blocklist, --guard-model (docs/GUARDRAILS.md)
    p.add_argument("--batch", metavar="REQUESTS_JSONL",
                   help="one request per line (a JSON object of these arguments; the flags above are defaults for "
                        "every line), outputs in --out; resumable; under torchrun, lines shared over the ranks "
                        "(docs/SCALING.md)")
    p.add_argument("--out", metavar="DIR", help="with --batch: the output folder (line N -> NNNNNN.mp4, manifests)")
    p.set_defaults(func=cmd_generate)


def _pico_defaults() -> dict:
    from .checkpoint import EMBEDDED
    from .request import read_native_defaults

    try:
        return read_native_defaults(EMBEDDED["pico"])
    except Exception:  # a broken install still gets its help
        return {}


def _native_help():
    """`--help` text of a default: the checkpoint's native setting (pico's shown), else the release's."""
    from .request import native_value

    pico = _pico_defaults()

    def text(*keys: str) -> str:
        def show(defaults):
            values = [native_value(defaults, k) for k in keys]
            values = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
            return "; ".join(f"{label}{v}" for label, v in zip(("", "images ", "actions "), values))

        return f"default: the checkpoint's native setting (pico: {show(pico)}; checkpoints without one: {show({})})"

    return text


def _read_prompt(args) -> str:
    given = [x for x in (args.prompt, args.prompt_opt, args.prompt_file) if x is not None]
    if len(given) > 1:
        raise UsageError("give the prompt once: positional, --prompt or --prompt-file")
    if args.prompt_file:
        try:
            return open(args.prompt_file, encoding="utf-8").read().strip()
        except OSError as e:
            raise UsageError(f"--prompt-file: cannot read {args.prompt_file} ({e.strerror})") from None
    return (args.prompt if args.prompt is not None else args.prompt_opt) or ""


def _controls(args) -> list | None:
    """--control KIND[:PATH][:WEIGHT] (repeatable) and --control-source -> Control list (checked again at resolve)."""
    from .control import parse_spec

    controls = [parse_spec(text) for text in args.control or []]
    for c in controls:
        if c.video is None:
            if args.control_source is None:
                raise UsageError(f"--control {c.kind}: no control video; give {c.kind}:PATH, or --control-source "
                                 "RGB_VIDEO to compute it from")
            c.source = args.control_source
    if args.control_source is not None and not any(c.source is not None for c in controls):
        raise UsageError("--control-source: no --control without a PATH uses it (e.g. --control edge)")
    return controls or None


def cmd_generate(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    if args.batch is not None or args.out is not None:
        from .batch import batch_command

        return batch_command(args)
    prompt = _read_prompt(args)
    output = Path(args.output)
    if output.suffix.lower() not in (".mp4", ".jpg", ".jpeg", ".png", ".json"):
        raise UsageError(f"--output: {output.name} must end in .mp4, .jpg, .png or .json")
    if not output.parent.exists():
        raise UsageError(f"--output: folder {output.parent} does not exist")
    for flag, path in (("--image", args.image), ("--video", args.video), ("--actions", args.actions)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{flag}: no such file {path}")
    negative = args.negative_prompt
    if negative and negative.endswith(".json") and os.path.isfile(negative):
        negative = open(negative, encoding="utf-8").read().strip()
    dtype = getattr(torch, args.dtype) if args.dtype else None
    from .generator import Generator
    from .request import require_input

    require_input(prompt, args.image, args.video, args.actions)  # before the model loads
    controls = _controls(args)
    from .guardrails import Guardrail
    from .guardrails.options import build as build_guardrail

    guard = build_guardrail(args)
    if guard is not None:  # a refused prompt exits 2 before the model loads: nothing is generated
        guard.screen(prompt, "prompt")
        guard.screen(negative, "negative_prompt")
        guard = Guardrail(frame_filters=guard.frame_filters)  # screened once: only the frames are left to filter
    parallel = None
    if args.parallel:  # this process is one rank of a torchrun job (docs/SCALING.md)
        from .parallel import init_parallel

        parallel = init_parallel(args.parallel, args.device)
        if parallel.serves_und:  # tower mode's rank 0: und keys and values for the gen rank
            from .parallel.tower import load_tower, serve_und

            serve_und(load_tower(args.checkpoint, "und", dtype, parallel.device), args.checkpoint)
            parallel.close()
            return 0

    start = time.perf_counter()
    gen = Generator.from_pretrained(args.checkpoint, device=args.device, dtype=dtype, weights=args.weights,
                                    parallel=parallel, offload=args.offload, vae_tiling=args.vae_tiling)
    res = gen.generate(
        prompt, negative_prompt=negative, image=args.image, video=args.video, num_frames=args.num_frames,
        fps=args.fps, height=args.height, width=args.width, resolution=args.resolution,
        aspect_ratio=args.aspect_ratio, num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale, flow_shift=args.flow_shift, seed=args.seed, enable_sound=args.sound,
        action_mode=args.action_mode, embodiment=args.embodiment, actions=args.actions,
        action_chunk_size=args.action_chunk_size, condition_frame_indexes=args.condition_frame_indexes,
        condition_video_keep=args.condition_video_keep, use_resolution_template=not args.no_resolution_template,
        use_duration_template=not args.no_duration_template,
        use_system_prompt=None if args.system_prompt is None else args.system_prompt == "on",
        progress=not args.quiet and (parallel is None or parallel.writes_output),
        guidance_interval=args.guidance_interval, sampler=args.sampler,
        step_cache=args.step_cache, guardrails=guard if guard is not None else False, controls=controls,
        control_guidance=args.control_guidance, control_guidance_interval=args.control_guidance_interval,
        upsample_prompt=args.upsample_prompt)
    if parallel is not None:
        parallel.close()
        if not parallel.writes_output:  # every rank holds the result; one writes it
            return 0
    if output.suffix.lower() == ".json" and res.actions is None:
        raise UsageError(f"--output: {res.mode} produced no actions to write as JSON; use .mp4")
    res.save(output)
    if args.upsample_prompt:
        print(f"upsampled prompt: {res.prompt}")
    if res.actions is not None and output.suffix.lower() == ".mp4":
        res.save(output.with_suffix(".json"))
    T, H, W = res.frames.shape[:3]
    peak = res.timings.get("peak_memory_bytes", 0)
    print(f"{res.mode}: {W}x{H}, {T} frame{'s' if T != 1 else ''} at {res.fps:g} fps, "
          f"{res.timings.get('steps')} steps, seed {res.seed}, {time.perf_counter() - start:.1f} s "
          f"(denoise {res.timings.get('denoise_s', res.timings.get('total_s', 0)):.1f} s), peak memory "
          f"{_gib(peak)}{', sound' if res.sound is not None else ''}"
          f"{', actions ' + str(tuple(res.actions.shape)) if res.actions is not None else ''} -> {output}")
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
    info.add_argument("--checkpoint", help="also print this checkpoint's native settings (a folder or 'pico')")
    info.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                      help="network for --step (default: tiny; nano/super need tens of GB)")
    info.add_argument("--plan", metavar="CKPT", help="memory plan of a checkpoint (folder, 'pico', or a preset: nano), weights "
                      "not loaded: per component and precision, the activation peak, which rungs fit --budget")
    info.add_argument("--budget", help="--plan: device memory, e.g. 24GB")
    info.add_argument("--resolution", default="480p", help="--plan: tier (default 480p)")
    info.add_argument("--num-frames", type=int, default=93, help="--plan: frames (default 93)")
    info.add_argument("--aspect-ratio", help="--plan: aspect ratio (default the tier's)")
    info.set_defaults(func=cmd_info)
    add_generate_parser(sub)
    for name, help_text in DELEGATED.items():
        d = sub.add_parser(name, help=help_text, add_help=False)
        d.add_argument("rest", nargs=argparse.REMAINDER)
        d.set_defaults(func=_delegate(name))
    return parser


# --------------------------------------------------------------------------------------------------------- reason


def reason_main(argv: list[str]) -> int:
    """`cosmos3 reason --checkpoint DIR [--image P] [--video P] [--think] [--stream] "question"`; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="cosmos3 reason", description="Ask the reasoner about text, images, video.")
    parser.add_argument("question")
    parser.add_argument("--checkpoint", default="pico", help="embedded model name (default pico) or official-layout or Qwen3-VL checkpoint directory")
    parser.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    parser.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    parser.add_argument("--fps", type=float, default=None, help="video sampling rate (default 2)")
    parser.add_argument("--think", action="store_true", help="reason in <think> first (reasoning preset)")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights", choices=["float", "int8"], default="float",
                        help="int8: the und tower's linears and lm_head in int8 (faster decode on CPU)")
    parser.add_argument("--offload", choices=["none", "components", "layers"], default="none",
                        help="keep weights in host memory for a GPU smaller than the model (docs/MEMORY.md)")
    from .guardrails.options import add_arguments as add_guardrail_arguments

    add_guardrail_arguments(parser, frames=False)  # the question is screened like a generation prompt
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line
        return int(e.code or 0)
    try:
        for p in args.image + args.video:
            if not Path(p).is_file():
                raise ValueError(f"{p}: file not found")
        from .guardrails.options import build as build_guardrail

        guard = build_guardrail(args, frames=False)
        if guard is not None:  # before the model loads
            guard.screen(args.question, "question")
        content = [{"type": "image", "image": p} for p in args.image]
        content += [{"type": "video", "video": p} for p in args.video]
        content.append({"type": "text", "text": args.question})
        from .reasoner import Reasoner

        reasoner = Reasoner.from_pretrained(args.checkpoint, device=args.device, weights=args.weights,
                                           offload=args.offload)
        kwargs = dict(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed, think=args.think,
                      fps=args.fps)
        messages = [{"role": "user", "content": content}]
        if args.stream:
            run = reasoner.chat(messages, stream=True, **kwargs)
            for delta in run:
                print(delta, end="", flush=True)
            print()
            return 0
        out = reasoner.chat(messages, **kwargs)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    if out.reasoning is not None:
        print(f"<think>\n{out.reasoning}\n</think>\n")
    print(out.text)
    return 0


# Subcommands whose parsers live with their code (each module exposes main(argv) -> exit status).
DELEGATED = {
    "train": "post-train: `cosmos3 train --recipe recipes/action_lerobot.toml` (or flags; see docs/TRAINING.md)",
    "serve": "the OpenAI-compatible HTTP server: `cosmos3 serve --checkpoint DIR [--port 8000] ...`",
    "reason": "ask the reasoner: `cosmos3 reason --checkpoint DIR [--image P] [--video P] [--think] [--stream] Q`",
    "world": "the synthetic physical world: `cosmos3 world generate --episodes N --seed S --out DIR`",
    "demo": "every surface of the embedded pico model, files in ./out: `cosmos3 demo [--out DIR]`",
    "serve-policy": "a robot policy over the openpi websocket protocol: `cosmos3 serve-policy --checkpoint DIR --port P` (docs/ROBOTS.md)",
    "sim": "run a policy inside the world model: `cosmos3 sim --checkpoint DIR --episodes N --out DIR` (docs/ROBOTS.md)",
}


def _delegate(name: str):
    def run(args: argparse.Namespace) -> int:
        if name == "world":
            from .world.__main__ import main as world_main

            return world_main(args.rest)
        if name == "train":
            from .train.__main__ import train_main

            return train_main(args.rest)
        if name == "serve":
            from .serve import serve_main

            return serve_main(args.rest)
        if name == "reason":
            return reason_main(args.rest)
        if name == "serve-policy":
            from .policy_server import serve_policy_main

            return serve_policy_main(args.rest)
        if name == "sim":
            from .sim import sim_main

            return sim_main(args.rest)
        if name == "demo":
            from .demo import demo_main

            return demo_main(args.rest)
        raise UsageError(f"unknown command {name}")

    return run


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning  # a user needs the message, not our source line
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:  # their own parsers own every flag, --help included
        return _delegate(argv[0])(argparse.Namespace(rest=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError) as e:
        # Bad input of any kind (flags, settings, media, checkpoints): one line, status 2, no traceback.
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"cosmos3 {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
