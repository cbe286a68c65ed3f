"""Batch generation: `cosmos3 generate --batch requests.jsonl --out DIR`, one request per line, restartable, and
sharded over the ranks of a `torchrun --nproc-per-node N` job (docs/SCALING.md).

A line is a JSON object of `generate`'s arguments (prompt, negative_prompt, image, video, actions, num_frames,
resolution, num_inference_steps, seed, action_mode, ...) plus an optional "mode" (t2i, t2v, i2v, v2v or an action
mode) that must agree with the inputs. Flags given to `generate` beside --batch are defaults for every line; a line's
own fields win. A line without a seed gets `--seed` (default 0) plus its line number, so a request's output depends
on the request alone, never on which rank runs it or when.

Line n's output is `DIR/NNNNNN.mp4` (`.png` for an image; actions also as `.json`), written atomically and fsynced,
then recorded in the rank's manifest (`DIR/manifest.rank<R>.jsonl`: line, request hash, outputs, seconds, and a hash
of the frames, since the MP4 encoder is not bit-reproducible). A line is done when a manifest records its hash and
its outputs exist; a rerun skips those, so a killed run resumes where it stopped: a file cut short by the kill is a
temporary name (removed on the next start), never an output, and an output renamed into place whose manifest line
never got written is made again (same seed, same frames).

One manifest per rank rather than one shared file: each has a single writer, so no lock and no interleaving of
lines from several processes (O_APPEND's atomicity is not promised on network file systems, where clusters keep
their data); a kill can tear only the last line of one file, which the reader ignores. The reader takes the union of
all of them, so a rerun with another rank count still sees everything done.

Sharding: every rank reads the same manifests (between two barriers, before anyone writes), lists the lines still to
do in file order, and takes every N-th of them from its rank on; a resumed run therefore spreads what is left evenly.
The only collectives are those barriers and the final gather of the summaries: gloo, which needs no GPU and suffices
for a few small objects, with a timeout long enough for the slowest rank's shard.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import request as request_module

# Fields a line may hold: resolve's arguments, less those that are not data (a torch.Generator, a callback, the
# per-request progress bar: the batch shows one bar per rank), plus "mode".
_NOT_DATA = {"gen", "generator", "callback", "progress"}
FIELDS = sorted([name for name in inspect.signature(request_module.resolve).parameters if name not in _NOT_DATA]
                + ["mode"])
VIDEO_MODES = ("t2i", "t2v", "i2v", "v2v")
ACTION_MODES = ("forward_dynamics", "inverse_dynamics", "policy")
_PATH_FIELDS = ("image", "video", "actions")  # relative paths are taken from the requests file's folder
_TEMP = re.compile(r"^\.\d{6,}\.[0-9a-f]{12}\.tmp(\.\w+)?$")  # fileio.atomic_path's names for our outputs
MANIFEST_GLOB = "manifest.rank*.jsonl"


class LineError(ValueError):
    """A line that cannot run; `field` names the culprit (None: the line is not a JSON object at all)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Line:
    number: int  # 1-based line number in the requests file
    fields: dict | None  # the line's fields merged over the flag defaults; None when it did not parse
    seed: int | None = None
    digest: str | None = None  # hash of what decides the output (request, seed, model)
    error: LineError | None = None


@dataclass
class Summary:
    lines: int = 0  # requests in the file (blank lines are not requests)
    skipped: int = 0  # already done by an earlier run
    done: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    seconds: float = 0.0  # from reading the requests to the last output
    load_seconds: float = 0.0  # loading the model, before that
    ranks: int = 1

    @staticmethod
    def merge(parts: list["Summary"]) -> "Summary":
        """The job's summary from every rank's: the lines and skips are the same on all ranks (one file, one
        manifest read); done and failed add up; the job lasted as long as its slowest rank."""
        first = parts[0]
        return Summary(lines=first.lines, skipped=first.skipped, done=sum(p.done for p in parts),
                       failed=sorted(f for p in parts for f in p.failed), seconds=max(p.seconds for p in parts),
                       load_seconds=max(p.load_seconds for p in parts), ranks=len(parts))

    def describe(self, source: str, out: str) -> str:
        rate = f", {60 * self.done / self.seconds:.1f} clips/min" if self.done and self.seconds > 0 else ""
        text = (f"batch {source} -> {out}: {self.lines} request{'s' if self.lines != 1 else ''} on {self.ranks} "
                f"rank{'s' if self.ranks != 1 else ''}: {self.done} done, {self.skipped} skipped (done before), "
                f"{len(self.failed)} failed, {self.seconds:.1f} s{rate} (+ {self.load_seconds:.1f} s loading the "
                f"model)")
        for number, reason in self.failed:
            text += f"\n  failed: line {number}: {reason}"
        return text


# ------------------------------------------------------------------------------------------------ lines


def read_lines(path: Path, defaults: dict, base_seed: int, model: dict) -> list[Line]:
    """Every non-blank line of the requests file, parsed (JSON object, known fields) and hashed; a line that does
    not parse carries its error and is reported when its rank reaches it."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if text.strip():
                lines.append(parse_line(number, text, defaults, base_seed, model))
    return lines


# Flags that only one kind of request takes: a default from the command line applies to the lines of that kind.
_VIDEO_ONLY = ("num_frames", "height", "width", "aspect_ratio", "condition_frame_indexes", "enable_sound")
_ACTION_ONLY = ("action_mode", "embodiment", "action_chunk_size")


def applicable(defaults: dict, given: dict) -> dict:
    """The command line's defaults that fit this line: an action line (its mode, or an action_mode from either
    side, or actions / an embodiment of its own) takes no video sizes, a video line no embodiment or chunk."""
    action = (given.get("mode") in ACTION_MODES or given.get("action_mode") is not None
              or any(given.get(k) is not None for k in ("actions", "embodiment", "action_chunk_size"))
              or (defaults.get("action_mode") is not None and given.get("mode") in (None, *ACTION_MODES)))
    drop = _VIDEO_ONLY if action else _ACTION_ONLY
    return {k: v for k, v in defaults.items() if k not in drop}


def parse_line(number: int, text: str, defaults: dict, base_seed: int, model: dict) -> Line:
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        return Line(number, None, error=LineError(None, f"not valid JSON ({e.msg} at column {e.colno})"))
    if not isinstance(given, dict):
        return Line(number, None, error=LineError(None, f"expected a JSON object of generate's arguments, got "
                                                        f"{type(given).__name__}"))
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        return Line(number, None, error=LineError(unknown[0], f"{unknown[0]}: unknown field (expected some of "
                                                              f"{', '.join(FIELDS)})"))
    fields = {**applicable(defaults, given), **given}
    if fields.get("mode") == "t2i" and "num_frames" not in given:
        fields["num_frames"] = 1
    seed = fields.pop("seed", None)
    if seed is None:
        seed = base_seed + number
    identity = json.dumps({"request": fields, "seed": seed, "model": model}, sort_keys=True, default=str)
    return Line(number, fields, seed=seed, digest=hashlib.sha256(identity.encode()).hexdigest()[:16])


def resolve_line(gen, line: Line, folder: Path) -> request_module.GenRequest:
    """The line as a resolved request (request.resolve: every argument checked, no model work); LineError or
    resolve's own errors (with `.field`) when it cannot run."""
    if line.error is not None:
        raise line.error
    kwargs = dict(line.fields)
    for name in _PATH_FIELDS:  # a path in the file is relative to the file, so a batch folder can move as a whole
        value = kwargs.get(name)
        if isinstance(value, str) and value and not os.path.isabs(value):
            kwargs[name] = str(folder / value)
    if "controls" in kwargs:
        kwargs["controls"] = _controls(kwargs["controls"], folder)
    mode = kwargs.pop("mode", None)
    if mode is not None and mode not in VIDEO_MODES + ACTION_MODES:
        raise LineError("mode", f"mode: expected one of {', '.join(VIDEO_MODES + ACTION_MODES)}, got {mode!r}")
    if mode in ACTION_MODES:
        if kwargs.get("action_mode", mode) != mode:
            raise LineError("mode", f"mode: {mode!r} disagrees with action_mode {kwargs['action_mode']!r}")
        kwargs["action_mode"] = mode
    req = gen.resolve(seed=line.seed, progress=False, **kwargs)
    if mode is not None and req.mode != mode:
        needs = {"t2i": "num_frames 1 and no image or video", "t2v": "no image or video and num_frames > 1",
                 "i2v": "an image", "v2v": "a video"}
        raise LineError("mode", f"mode: {mode} needs {needs.get(mode, 'action_mode')}; these inputs make a "
                                f"{req.mode} request")
    return req


_CONTROL_KEYS = ("kind", "video", "source", "weight", "preset")  # control.Control's fields


def _controls(value, folder: Path):
    """A line's controls (video transfer): each `"KIND:PATH[:WEIGHT]"` as `--control` takes it, or an object of
    control.Control's fields; paths relative to the requests file. Anything else goes to resolve as given, which
    names what is wrong."""
    from .control import Control, parse_spec

    if not isinstance(value, list):
        return value
    controls = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(_CONTROL_KEYS))
            if unknown or "kind" not in item:
                problem = f"unknown key {unknown[0]!r}" if unknown else "no kind"
                raise LineError("controls", f"controls[{i}]: {problem} (keys: {', '.join(_CONTROL_KEYS)})")
            item = Control(**item)
        elif isinstance(item, str):
            item = parse_spec(item)
        else:
            return value
        for name in ("video", "source"):
            path = getattr(item, name)
            if isinstance(path, str) and path and not os.path.isabs(path):
                setattr(item, name, str(folder / path))
        controls.append(item)
    return controls


def describe_error(error: Exception) -> str:
    """One line naming the field (the library's errors mostly start with it already)."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    name = getattr(error, "field", None)
    if name and not re.match(rf"{re.escape(name)}\b", message):
        message = f"{name}: {message}"
    return message if isinstance(error, ValueError) else f"{type(error).__name__}: {message}"


# ------------------------------------------------------------------------------------------------ outputs


def output_names(number: int, req: request_module.GenRequest) -> list[str]:
    """File names of line `number`'s outputs: the video (an image: PNG, lossless) and, for the modes that
    predict actions, the actions as JSON."""
    names = [f"{number:06d}{'.png' if req.mode == 't2i' else '.mp4'}"]
    if req.mode in ("inverse_dynamics", "policy"):
        names.append(f"{number:06d}.json")
    return names


def frames_digest(frames: torch.Tensor) -> str:
    """Hash of the generated uint8 frames: libx264 does not encode the same frames to the same bytes twice, so this
    is what says two runs made the same clip (on another rank, after a resume)."""
    return hashlib.sha256(frames.contiguous().numpy().tobytes()).hexdigest()[:16]


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk: the manifest must never outlive the outputs it names."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_outputs(result, out: Path, names: list[str]) -> None:
    """Each output through GenerationResult.save (media.write_video / write_image / save_actions: atomic renames),
    then flushed with its folder, so that the manifest line written next only ever names complete files."""
    for name in names:
        result.save(out / name)
        _fsync(out / name)
    _fsync(out)


def remove_stale_temps(out: Path) -> list[str]:
    """Temporary files a killed run left (fileio.atomic_path writes `.NNNNNN.<12 hex>.tmp.<ext>`): never outputs;
    removed before any rank starts writing."""
    removed = []
    for path in out.iterdir():
        if _TEMP.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# ------------------------------------------------------------------------------------------------ manifest


def read_manifests(out: Path) -> dict[tuple[int, str], dict]:
    """(line, hash) -> its record, from every rank's manifest; a line that does not parse (the torn end of a killed
    writer's file) is ignored."""
    done = {}
    for path in sorted(out.glob(MANIFEST_GLOB)):
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(text)
                done[(int(entry["line"]), str(entry["hash"]))] = entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return done


def is_done(line: Line, done: dict, out: Path) -> bool:
    entry = done.get((line.number, line.digest)) if line.digest else None
    return entry is not None and all((out / name).is_file() for name in entry.get("outputs", ()))


class Manifest:
    """One rank's manifest: appended a line per finished request, each flushed to disk before the next request."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "ab")
        if self.file.tell() > 0:  # a killed writer may have left half a line: start on a fresh one
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self.file.write(b"\n")

    def append(self, entry: dict) -> None:
        self.file.write((json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


# ------------------------------------------------------------------------------------------------ the run


def model_identity(gen) -> dict:
    """What of the model decides the outputs, for the request hash: a rerun with another checkpoint, precision or
    weight format makes everything again."""
    from .quant import Int8Linear

    dtype = next(gen.model.parameters()).dtype
    int8 = any(isinstance(m, Int8Linear) for m in gen.model.modules())
    return dict(checkpoint=str(gen.path.resolve()) if gen.path else gen.name, dtype=str(dtype),
                weights="int8" if int8 else "float")


def _no_barrier() -> None:
    pass


def generate(gen, req: request_module.GenRequest, guard=None):
    """`gen.run(req)` under a guardrail as Generator.generate applies one: the prompts were screened when the line
    was checked; an upsampled prompt is screened before it is used, and the frames filtered."""
    if guard is None:
        return gen.run(req)
    if req.upsample_prompt:
        req.prompt, req.upsample_prompt = gen.upsample_prompt(req.prompt, seed=req.seed), False
        guard.screen(req.prompt, "prompt (upsampled)")
    result = gen.run(req)
    result.frames = guard.filter_frames(result.frames)
    return result


def run_batch(gen, requests: str | os.PathLike, out: str | os.PathLike, *, defaults: dict | None = None,
              base_seed: int = 0, rank: int = 0, world: int = 1, barrier=_no_barrier, quiet: bool = False,
              guard=None, log=None) -> Summary:
    """This rank's share of the batch: parse every line, skip what is done, resolve this rank's lines (reporting bad
    ones at once; `guard`, a guardrails.Guardrail, screens their prompts), generate them in file order. Returns this
    rank's Summary (merge them for the job's)."""
    from tqdm.auto import tqdm

    log = log or (lambda text: tqdm.write(text, file=sys.stderr))
    started = time.perf_counter()
    requests, out = Path(requests), Path(out)
    lines = read_lines(requests, dict(defaults or {}), base_seed, model_identity(gen))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for name in remove_stale_temps(out):
            log(f"removed {out / name} (a file a killed run left half-written)")
    barrier()  # the folder exists, no stale temporaries
    done = read_manifests(out)
    barrier()  # every rank has read the manifests before any rank appends to them
    pending = [line for line in lines if not is_done(line, done, out)]
    summary = Summary(lines=len(lines), skipped=len(lines) - len(pending), ranks=world)
    mine = pending[rank::world]

    runnable = []
    for line in mine:  # every bad line of the shard reported before the long part starts
        try:
            req = resolve_line(gen, line, requests.parent)
            if guard is not None:
                guard.screen(req.prompt, "prompt")
                guard.screen(req.negative_prompt, "negative_prompt")
            runnable.append((line, req))
        except ValueError as e:
            summary.failed.append((line.number, describe_error(e)))
            log(f"{requests}:{line.number}: {describe_error(e)} (skipped)")

    manifest = Manifest(out / f"manifest.rank{rank}.jsonl")
    bar = tqdm(total=len(mine), initial=len(mine) - len(runnable), desc=f"rank {rank}", unit="clip",
               position=rank, disable=quiet, dynamic_ncols=True)
    try:
        for line, req in runnable:
            since = time.perf_counter()
            names = output_names(line.number, req)
            try:
                result = generate(gen, req, guard)
                save_outputs(result, out, names)
            except Exception as e:  # noqa: BLE001 - one failed request must not stop thousands of others
                summary.failed.append((line.number, describe_error(e)))
                log(f"{requests}:{line.number}: failed: {describe_error(e)}")
                bar.update()
                continue
            manifest.append(dict(line=line.number, hash=line.digest, outputs=names, mode=req.mode, seed=req.seed,
                                 frames_sha256=frames_digest(result.frames),
                                 seconds=round(time.perf_counter() - since, 3), rank=rank))
            summary.done += 1
            bar.update()
    finally:
        bar.close()
        manifest.close()
    summary.seconds = time.perf_counter() - started
    return summary


# ------------------------------------------------------------------------------------------------ the command

# generate's flags that set a default for every line (each named as the request field it sets); --sound and the
# template switches count only when given, so a line may still set them.
_FLAG_FIELDS = ("negative_prompt", "num_frames", "fps", "height", "width", "resolution", "aspect_ratio",
                "num_inference_steps", "guidance_scale", "flow_shift", "action_mode", "embodiment",
                "action_chunk_size", "condition_frame_indexes", "guidance_interval", "sampler", "step_cache",
                "control_guidance")


def flag_defaults(args) -> dict:
    defaults = {key: getattr(args, key) for key in _FLAG_FIELDS if getattr(args, key) is not None}
    negative = defaults.get("negative_prompt")
    if negative and negative.endswith(".json") and os.path.isfile(negative):  # as generate reads it
        defaults["negative_prompt"] = Path(negative).read_text(encoding="utf-8").strip()
    if defaults.get("guidance_interval") is not None:
        defaults["guidance_interval"] = list(defaults["guidance_interval"])
    if args.sound:
        defaults["enable_sound"] = True
    if args.condition_video_keep != "first":
        defaults["condition_video_keep"] = args.condition_video_keep
    if args.no_resolution_template:
        defaults["use_resolution_template"] = False
    if args.no_duration_template:
        defaults["use_duration_template"] = False
    if args.system_prompt is not None:
        defaults["use_system_prompt"] = args.system_prompt == "on"
    return defaults


def batch_command(args) -> int:
    """`cosmos3 generate --batch FILE --out DIR [flags]`, alone or under torchrun: 0 when every line ran (or was
    done before), 1 when a line failed, 2 on bad flags."""
    from .cli import UsageError

    if args.batch is None or args.out is None:
        raise UsageError("--batch and --out go together: --batch requests.jsonl --out DIR")
    for flag, value in (("a prompt", args.prompt), ("--prompt", args.prompt_opt), ("--prompt-file", args.prompt_file),
                        ("--image", args.image), ("--video", args.video), ("--actions", args.actions),
                        ("--control", args.control), ("--control-source", args.control_source)):
        if value is not None:
            raise UsageError(f"{flag}: with --batch, each line of {args.batch} gives its own inputs")
    if getattr(args, "parallel", None):
        raise UsageError("--parallel: with --batch the ranks share the lines, each rank running whole requests")
    if args.output != "output.mp4":
        raise UsageError("-o/--output: with --batch, outputs are named by line number in --out DIR")
    if not os.path.isfile(args.batch):
        raise UsageError(f"--batch: no such file {args.batch}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out: {args.out} exists and is not a folder")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")

    from .guardrails.options import build

    guard = build(args)  # generate's guardrail flags: the same screening as a single request
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = args.device
    if world > 1:
        import torch.distributed as dist

        # The batch's collectives are two barriers and one gather of small objects: gloo, on any machine. The
        # timeout must outlast the longest shard, since a rank that finishes waits in the gather for the others.
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        if device is None and torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        from .generator import Generator

        dtype = getattr(torch, args.dtype) if args.dtype else None
        loading = time.perf_counter()
        gen = Generator.from_pretrained(args.checkpoint, device=device, dtype=dtype, weights=args.weights,
                                        offload=args.offload, vae_tiling=args.vae_tiling)
        loaded = time.perf_counter() - loading
        summary = run_batch(gen, args.batch, args.out, defaults=flag_defaults(args), base_seed=args.seed or 0,
                            rank=rank, world=world, barrier=dist.barrier if world > 1 else _no_barrier,
                            quiet=args.quiet, guard=guard)
        summary.load_seconds = loaded
        parts = [summary]
        if world > 1:
            parts = [None] * world
            dist.all_gather_object(parts, summary)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    total = Summary.merge(parts)
    if rank == 0:
        print(total.describe(args.batch, args.out), flush=True)
    return 1 if total.failed else 0
