"""GPU readiness: one command that checks and measures everything on a CUDA GPU in under 9 minutes (issue #24).

    scripts/gpu_check.sh OUT_DIR                  on a CUDA machine: bf16 on the GPU, release shapes for speed
    scripts/gpu_check.sh OUT_DIR --cpu --tiny     the rehearsal: bf16 on the CPU, toy shapes everywhere

Steps, in this order, each in a process of its own with a time budget (a step over budget is killed and recorded as
"timeout"; once the total budget is spent the remaining steps are recorded as "skipped"):

  env           torch / CUDA / GPU name / memory
  correctness   tiny random checkpoints (presets `tiny` and `tiny-edge`, official layout built by diffusers) in bf16
                on the device against the same weights in float32 on the CPU, our code both times: the transformer
                forward, t2v / i2v / policy generations (Generator.generate) and a greedy reasoner answer
                (Reasoner.chat, temperature 0); diffusers' transformer and pipeline, and transformers' Qwen3-VL
                (tiny, random), in bf16 on the device against our float32 too; offload (layers, components) and
                a kept-fp8 checkpoint against the plain load on the device (issue #18)
  speed_generate  Nano-shaped network (preset `nano`, random bf16 weights made on the device, batch 1): t2v 256p
                and 480p at 189 frames (fewer when memory does not allow, stated); a few denoising steps with guidance
                timed and extrapolated to 35, plus a Wan 2.2-shaped VAE decode, against vLLM-Omni's published
                6.97 s / 58.17 s on one H100
  speed_reason  the reasoner at Nano shape (und pathway, bf16): time to first token and decode tokens/s
  training      a few steps of gen-only SFT (tiny checkpoint, video data) with bf16 autocast and FSDP2 on one rank
                (NCCL on a GPU, gloo on a CPU)

Each result is one JSON line in OUT_DIR/results.jsonl ("step", "name", "status": ok | error | timeout | skipped, its
figures, "wall_s"); a failure records its error (type and first line) and the script goes on. OUT_DIR also gets
log.txt (each step's own output, the tail only) and table.txt (the human table, also printed). Scratch files
(checkpoints, training runs) live in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "train"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (step, GPU budget s, rehearsal budget s). GPU total: 30 + 150 + 170 + 70 + 90 = 510 s < 540 s (9 minutes).
STEPS = [("env", 30, 60), ("correctness", 150, 240), ("speed_generate", 170, 90), ("speed_reason", 70, 60),
         ("training", 90, 180)]
TOTAL_BUDGET_S = 530  # the whole run, GPU mode (each step's budget is cut to what is left of it)
MIN_STEP_S = 10  # a step that would get less than this is skipped

PUBLISHED = {"256p": 6.97, "480p": 58.17}  # vLLM-Omni, Cosmos3-Nano t2v, 35 steps with guidance, one H100
RELEASE_FRAMES, RELEASE_FPS, STEPS_35, GUIDANCE = 189, 24.0, 35, 6.0
# bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 2e-3); a few layers and solver steps of rounding stay well
# under these bounds, a wrong dtype or device path does not.
BF16_FORWARD_BOUND = 0.05
BF16_GENERATE_BOUND = 0.1

RESULTS = "results.jsonl"
CHILD_STARTED = time.monotonic()


# ------------------------------------------------------------------------------------------------ recording


class Recorder:
    """Appends one JSON line per result to OUT/results.jsonl (flushed at once, so a killed step keeps its lines)."""

    def __init__(self, out: Path, step: str):
        self.path, self.step = out / RESULTS, step

    def emit(self, name: str, status: str, **fields) -> dict:
        rec = {"step": self.step, "name": name, "status": status, **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=_jsonable) + "\n")
        print(f"[{self.step}] {name}: {status} {_brief(fields)}", flush=True)
        return rec

    @contextlib.contextmanager
    def item(self, name: str):
        """One measurement: the body fills a dict of figures; an exception becomes an error line, and the step goes
        on with its next item."""
        fields: dict = {}
        started = time.perf_counter()
        try:
            yield fields
        except Exception as e:  # noqa: BLE001 - every failure is recorded, then the next item runs
            traceback.print_exc()
            self.emit(name, "error", error=error_text(e), wall_s=round(time.perf_counter() - started, 3), **fields)
            return
        status = fields.pop("status", "ok")
        self.emit(name, status, wall_s=round(time.perf_counter() - started, 3), **fields)


def error_text(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _jsonable(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.tolist()
        if isinstance(x, (torch.dtype, torch.device)):
            return str(x)
    except ImportError:
        pass
    return str(x)


def _brief(fields: dict) -> str:
    keep = [(k, v) for k, v in fields.items() if k not in ("wall_s",) and not isinstance(v, (list, dict))]
    return ", ".join(f"{k}={_fmt(v)}" for k, v in keep)[:240]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


# ------------------------------------------------------------------------------------------------ context


class Ctx:
    """What a step runs on: the device and its low-precision dtype, the shapes (tiny or release)."""

    def __init__(self, args):
        import torch

        self.cpu, self.tiny, self.out = args.cpu, args.tiny, Path(args.out)
        self.scratch = Path(args.scratch)
        self.device = torch.device("cpu" if args.cpu else "cuda")
        self.dtype = torch.bfloat16
        self.seed = args.seed

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> dict:
        """Peak memory since the last reset: GPU allocated on CUDA; the process's peak resident set on the CPU."""
        import torch

        if self.device.type == "cuda":
            return {"peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}
        return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}

    def timed(self, fn, *a, **kw):
        self.sync()
        t = time.perf_counter()
        out = fn(*a, **kw)
        self.sync()
        return out, time.perf_counter() - t


def rel(a, b) -> float:
    from oracle import relative_error

    return relative_error(a.detach().float().cpu(), b.detach().float().cpu())


# ------------------------------------------------------------------------------------------------ step: env


def step_env(ctx: Ctx, rec: Recorder) -> None:
    import torch

    with rec.item("environment") as f:
        f.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                 cuda_available=torch.cuda.is_available(), device=str(ctx.device), dtype=str(ctx.dtype),
                 cpu_threads=torch.get_num_threads(), machine=platform.machine())
        for mod in ("diffusers", "transformers", "av"):
            try:
                m = __import__(mod)
                f[mod] = "stand-in (not installed; no video I/O here)" if getattr(m, "GPU_CHECK_STAND_IN", False) \
                    else m.__version__
            except Exception as e:  # noqa: BLE001
                f[mod] = f"unavailable ({error_text(e)})"
        if ctx.device.type == "cuda":
            props = torch.cuda.get_device_properties(0)
            f.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                     gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                     bf16_supported=torch.cuda.is_bf16_supported(),
                     flash_sdp=torch.backends.cuda.flash_sdp_enabled(), nccl=str(torch.cuda.nccl.version()))
            x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
            _, f["matmul_s"] = ctx.timed(lambda: x @ x)
        else:
            f["gpu"] = "none (CPU rehearsal)"


# ------------------------------------------------------------------------------------------------ step: correctness


class OnDevice:
    """diffusers' transformer called with our oracle's CPU keyword arguments: every tensor moved to the device, the
    latent token inputs cast to the model dtype (positions and timesteps stay float32)."""

    def __init__(self, model, device, dtype):
        self.model, self.device, self.dtype = model, device, dtype

    def _move(self, key, v):
        import torch

        if isinstance(v, torch.Tensor):
            v = v.to(self.device)
            return v.to(self.dtype) if key.endswith("_tokens") and v.is_floating_point() else v
        if isinstance(v, list):
            return [self._move(key, x) for x in v]
        return v

    def __call__(self, **kw):
        return self.model(**{k: self._move(k, v) for k, v in kw.items()})


def build_tiny_checkpoint(ctx: Ctx, preset: str, seed: int) -> Path:
    import torch

    from cosmos3.config import get_preset
    from oracle import build_reference_pipeline

    root = ctx.scratch / f"ckpt-{preset}"
    if not (root / "model_index.json").is_file():
        build_reference_pipeline(root, get_preset(preset), torch.Generator().manual_seed(seed), sound=True)
    return root


def step_correctness(ctx: Ctx, rec: Recorder) -> None:
    import torch

    for k, preset in enumerate(("tiny", "tiny-edge")):
        variant = "qwen" if preset == "tiny" else "edge"
        seed = ctx.seed + k
        with rec.item(f"build/{variant}") as f:
            root = build_tiny_checkpoint(ctx, preset, seed)
            f["preset"] = preset
        correctness_forward(ctx, rec, root, variant, seed)
        correctness_generate(ctx, rec, root, variant, seed)
        correctness_reasoner(ctx, rec, root, variant)
        if k == 0:
            correctness_memory(ctx, rec, root, variant, seed)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    correctness_transformers(ctx, rec, ctx.seed)


def correctness_forward(ctx: Ctx, rec: Recorder, root: Path, variant: str, seed: int) -> None:
    import torch
    from diffusers import Cosmos3OmniTransformer

    from cosmos3.checkpoint import load_transformer
    from oracle import random_case, reference_forward

    state = {}
    with rec.item(f"forward/{variant}") as f:
        ours32 = load_transformer(root, dtype=torch.float32, device="cpu")
        ourslo = load_transformer(root, dtype=ctx.dtype, device=ctx.device)
        cfg = ours32.config
        case = random_case(cfg, torch.Generator().manual_seed(seed), random.Random(seed))
        f["tokens"] = int(case["input_ids"].shape[0] + case["gen_positions"].shape[1])
        args = (case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
        with torch.no_grad():
            out32, und32 = ours32(*args)
            (outlo, undlo), f["ours_lowp_s"] = ctx.timed(ourslo, *args)
            logits32, logitslo = ours32.logits(und32), ourslo.logits(undlo)
        state.update(cfg=cfg, case=case, out32=out32)
        errs = {"vision": rel(outlo.vision, out32.vision), "sound": rel(outlo.sound, out32.sound),
                "actions": rel(outlo.actions, out32.actions), "logits": rel(logitslo, logits32)}
        f["rel_err"] = {k: float(f"{v:.3e}") for k, v in errs.items()}
        f["max_rel_err"] = max(errs.values())
        f["out_device"], f["out_dtype"] = str(outlo.vision.device), str(outlo.vision.dtype)
        f["bound"] = BF16_FORWARD_BOUND
        if not (f["max_rel_err"] < BF16_FORWARD_BOUND and outlo.vision.device.type == ctx.device.type
                and outlo.vision.dtype == ctx.dtype):
            f["status"], f["error"] = "error", "relative error above the bf16 bound, or the output's device / dtype"
    if not state:
        return
    with rec.item(f"forward-diffusers/{variant}") as f:
        # diffusers' transformer, same weights, bf16 on the device, against our float32 on the CPU
        cfg, case, out32 = state["cfg"], state["case"], state["out32"]
        ref = Cosmos3OmniTransformer.from_pretrained(root / "transformer", torch_dtype=ctx.dtype).to(ctx.device).eval()
        with torch.no_grad():
            ref_out, f["diffusers_lowp_s"] = ctx.timed(reference_forward, OnDevice(ref, ctx.device, ctx.dtype), cfg,
                                                       case)
        f["diffusers_lowp_vs_ours_fp32"] = max(rel(ref_out[0], out32.vision), rel(ref_out[1], out32.sound),
                                               rel(ref_out[2], out32.actions))
        f["bound"] = BF16_FORWARD_BOUND
        if not f["diffusers_lowp_vs_ours_fp32"] < BF16_FORWARD_BOUND:
            f["status"], f["error"] = "error", "relative error above the bf16 bound"


def _image(seed: int, size: int = 256):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((size, size), Image.BILINEAR)


def correctness_generate(ctx: Ctx, rec: Recorder, root: Path, variant: str, seed: int) -> None:
    import torch

    from cosmos3.generator import Generator

    g32 = Generator.from_pretrained(root, device="cpu", dtype=torch.float32)
    glo = Generator.from_pretrained(root, device=ctx.device, dtype=ctx.dtype)
    image = _image(seed)
    common = dict(num_inference_steps=4, seed=seed, progress=False)
    cases = {
        "t2v": dict(prompt="a red block slides to the left", num_frames=9, height=128, width=128,
                    guidance_scale=GUIDANCE, **common),
        "i2v": dict(prompt="the block falls over", image=image, num_frames=9, height=128, width=128,
                    guidance_scale=GUIDANCE, **common),
        "policy": dict(prompt="pick up the cup", image=image, action_mode="policy", embodiment="droid_lerobot",
                       action_chunk_size=4, resolution="256p", guidance_scale=2.0, **common),
    }
    for mode, kw in cases.items():
        with rec.item(f"generate/{mode}/{variant}") as f:
            a = g32.generate(**kw)
            b, f["lowp_s"] = ctx.timed(glo.generate, **kw)
            f["latents_rel_err"] = rel(b.latents, a.latents)
            f["frames_mean_abs_diff"] = float((b.frames.float() - a.frames.float()).abs().mean())
            f["latent_shape"] = list(a.latents.shape)
            errs = [f["latents_rel_err"]]
            if a.actions is not None:
                f["actions_rel_err"] = rel(b.actions, a.actions)
                errs.append(f["actions_rel_err"])
            f["bound"] = BF16_GENERATE_BOUND
            if max(errs) >= BF16_GENERATE_BOUND or not bool(torch.isfinite(b.latents).all()):
                f["status"], f["error"] = "error", "relative error above the bf16 bound (or non-finite)"
    with rec.item(f"generate/t2v-diffusers/{variant}") as f:
        # diffusers' pipeline in bf16 on the device against our float32 on the CPU, same request
        import warnings

        from diffusers import Cosmos3OmniPipeline

        kw = cases["t2v"]
        ours = g32.generate(**kw, flow_shift=5.0)  # the folder's scheduler shift (the pipeline always uses it)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = Cosmos3OmniPipeline.from_pretrained(root, safety_checker=None, enable_safety_checker=False,
                                                       torch_dtype=ctx.dtype).to(ctx.device)
        ref, f["diffusers_lowp_s"] = ctx.timed(
            pipe, kw["prompt"], generator=torch.Generator().manual_seed(seed), output_type="latent",
            enable_safety_check=False, num_frames=kw["num_frames"], height=kw["height"], width=kw["width"],
            num_inference_steps=kw["num_inference_steps"], guidance_scale=kw["guidance_scale"])
        f["latents_rel_err"] = rel(ref.video[0], ours.latents)
        f["bound"] = BF16_GENERATE_BOUND
        if f["latents_rel_err"] >= BF16_GENERATE_BOUND:
            f["status"], f["error"] = "error", "relative error above the bf16 bound"


def correctness_memory(ctx: Ctx, rec: Recorder, root: Path, variant: str, seed: int) -> None:
    """Issue #18 on the device: offload (layers, components) gives the plain load's latents; an fp8 checkpoint kept
    fp8 (W8A16 linears) gives the dequantized model's outputs."""
    import torch
    from safetensors.torch import save_file

    from cosmos3.checkpoint import load_transformer, save_transformer
    from cosmos3.fp8 import Fp8Linear
    from cosmos3.generator import Generator
    from oracle import random_case

    kw = dict(prompt="a red block slides to the left", num_frames=9, height=128, width=128, num_inference_steps=3,
              guidance_scale=GUIDANCE, seed=seed, progress=False)
    plain = Generator.from_pretrained(root, device=ctx.device, dtype=ctx.dtype).generate(**kw)
    for mode in ("layers", "components"):
        with rec.item(f"offload/{mode}/{variant}") as f:
            ctx.reset_peak()
            g = Generator.from_pretrained(root, device=ctx.device, dtype=ctx.dtype, offload=mode)
            res, f["lowp_s"] = ctx.timed(g.generate, **kw)
            f.update(ctx.peak(), transfers=g.offloader.stats.transfers, peak_groups=g.offloader.stats.peak_groups)
            f["latents_rel_err"] = rel(res.latents, plain.latents)
            if f["latents_rel_err"] > 1e-6:
                f["status"], f["error"] = "error", "offloaded latents differ from the plain load's"
    with rec.item(f"fp8/{variant}") as f:
        # the tiny checkpoint's layer linears in the release's fp8 layout (E4M3 + per-tensor weight_scale)
        model = load_transformer(root, dtype=torch.float32, device="cpu")
        folder = ctx.scratch / f"fp8-{variant}" / "transformer"
        save_transformer(model, folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        for i, layer in enumerate(model.layers):
            for name, m in layer.named_modules():
                if type(m) is torch.nn.Linear:
                    key = f"layers.{i}.{name}"
                    scale = m.weight.detach().abs().amax() / 448.0
                    state[key + ".weight"] = (m.weight.detach() / scale).to(torch.float8_e4m3fn)
                    state[key + ".weight_scale"] = scale.reshape(())
        save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
        kept = load_transformer(folder, dtype=ctx.dtype, device=ctx.device, fp8="keep")
        flat = load_transformer(folder, dtype=ctx.dtype, device=ctx.device, fp8="dequantize")
        case = random_case(model.config, torch.Generator().manual_seed(seed), random.Random(seed))
        args = (case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
        with torch.no_grad():
            (a, _), f["kept_s"] = ctx.timed(kept, *args)
            b, _ = flat(*args)
        f["fp8_linears"] = sum(isinstance(m, Fp8Linear) for m in kept.modules())
        f["kept_vs_dequantized_rel_err"] = rel(a.vision, b.vision)
        if f["kept_vs_dequantized_rel_err"] > 1e-3 or not f["fp8_linears"]:
            f["status"], f["error"] = "error", "kept-fp8 outputs differ from the dequantized model's"


def correctness_reasoner(ctx: Ctx, rec: Recorder, root: Path, variant: str) -> None:
    import torch

    from cosmos3.model import KVCache
    from cosmos3.reasoner import Reasoner

    with rec.item(f"reason/{variant}") as f:
        r32 = Reasoner.from_pretrained(root, device="cpu", dtype=torch.float32)
        rlo = Reasoner.from_pretrained(root, device=ctx.device, dtype=ctx.dtype)
        messages = [{"role": "user", "content": "Which way does the red block move, and why?"}]
        kw = dict(max_tokens=16, temperature=0.0, presence_penalty=0.0)
        a = r32.chat(messages, **kw)
        b, f["lowp_s"] = ctx.timed(rlo.chat, messages, **kw)
        prompt = r32.build_prompt(messages)
        L, cfg = prompt.input_ids.shape[0], r32.model.config
        l32 = r32.prefill(prompt, KVCache.allocate(cfg, 1, L, torch.float32, "cpu"))
        llo = rlo.prefill(prompt, KVCache.allocate(cfg, 1, L, ctx.dtype, ctx.device))
        f["prefill_logits_rel_err"] = rel(llo, l32)
        same = 0
        for x, y in zip(a.token_ids, b.token_ids):
            if x != y:
                break
            same += 1
        f["tokens"] = len(a.token_ids)
        f["greedy_tokens_agree"] = same  # leading tokens equal (random weights: near-ties may flip in bf16)
        f["first_token_equal"] = bool(a.token_ids[:1] == b.token_ids[:1])
        f["bound"] = BF16_FORWARD_BOUND
        if f["prefill_logits_rel_err"] >= BF16_FORWARD_BOUND or len(b.token_ids) == 0:
            f["status"], f["error"] = "error", "prefill logits above the bf16 bound (or no tokens)"


def correctness_transformers(ctx: Ctx, rec: Recorder, seed: int) -> None:
    """transformers' Qwen3-VL (a tiny random one, text prompt) in bf16 on the device against our reasoner in float32
    on the CPU, loaded from the same transformers folder: prefill logits and the greedy answer."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from cosmos3.model import KVCache
    from cosmos3.reasoner import Reasoner
    from cosmos3.tokenizers import byte_level_tokenizer

    with rec.item("reason-transformers/qwen3vl") as f:
        tok = byte_level_tokenizer()
        hidden, head_dim = 128, 32
        half = head_dim // 2
        section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]
        cfg = Qwen3VLConfig(
            text_config=dict(vocab_size=len(tok) + 16, hidden_size=hidden, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, rms_norm_eps=1e-6,
                             rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": section,
                                              "mrope_interleaved": True}),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=hidden,
                               num_position_embeddings=16, deepstack_visual_indexes=[0], patch_size=16,
                               spatial_merge_size=2, temporal_patch_size=2),
            image_token_id=tok.image_pad_id, video_token_id=tok.video_pad_id,
            vision_start_token_id=tok.vision_start_id, vision_end_token_id=tok.vision_end_id)
        gen = torch.Generator().manual_seed(seed)
        ref = Qwen3VLForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) / max(p.shape[-1], 1) ** 0.5)
        folder = ctx.scratch / "qwen3vl"
        ref.save_pretrained(folder)
        tok.save_pretrained(folder)
        ours = Reasoner.from_pretrained(folder, device="cpu", dtype=torch.float32)
        messages = [{"role": "user", "content": "Is the gripper open or closed?"}]
        prompt = ours.build_prompt(messages)
        L = prompt.input_ids.shape[0]
        ours_logits = ours.prefill(prompt, KVCache.allocate(ours.model.config, 1, L, torch.float32, "cpu"))
        answer = ours.chat(messages, max_tokens=12, temperature=0.0, presence_penalty=0.0)
        ref = ref.to(ctx.device, ctx.dtype)
        ids = prompt.input_ids[None].to(ctx.device)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=torch.zeros_like(ids))
        with torch.no_grad():
            theirs, f["transformers_lowp_s"] = ctx.timed(lambda: ref(**kw).logits[0, -1])
            seq = ref.generate(**kw, do_sample=False, max_new_tokens=12, eos_token_id=list(tok.eos_ids),
                               pad_token_id=tok.eos_ids[0])[0, L:].tolist()
        f["prefill_logits_rel_err"] = rel(theirs, ours_logits)
        same = 0
        for x, y in zip(answer.token_ids, seq):
            if x != y:
                break
            same += 1
        f["greedy_tokens_agree"], f["tokens"] = same, len(answer.token_ids)
        f["bound"] = BF16_FORWARD_BOUND
        if f["prefill_logits_rel_err"] >= BF16_FORWARD_BOUND:
            f["status"], f["error"] = "error", "prefill logits above the bf16 bound"


# ------------------------------------------------------------------------------------------------ random big weights


def random_model(cfg, device, dtype, with_gen: bool = True, seed: int = 0):
    """A network with random weights made directly on the device in `dtype`: built on meta, materialized empty,
    then filled in place (no float32 copy anywhere; Nano is about 16B parameters)."""
    import torch

    from cosmos3.checkpoint import rebuild_buffers
    from cosmos3.model import Cosmos3Omni

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = Cosmos3Omni(cfg, with_gen=with_gen)
    finally:
        torch.set_default_dtype(previous)
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            elif name.endswith("bias") or name.endswith("modality_embed"):
                p.zero_()
            else:
                p.normal_(0.0, 1.0 / math.sqrt(max(p.shape[-1], 1)), generator=gen)
    rebuild_buffers(model, device)
    return model.eval()


def speed_config(ctx: Ctx):
    from cosmos3.config import get_preset

    return get_preset("tiny" if ctx.tiny else "nano")


# ------------------------------------------------------------------------------------------ step: speed, generation


def step_speed_generate(ctx: Ctx, rec: Recorder) -> None:
    import torch

    from cosmos3 import spec

    cfg = speed_config(ctx)
    with rec.item("build/nano" if not ctx.tiny else "build/tiny") as f:
        ctx.reset_peak()
        model, f["build_s"] = ctx.timed(random_model, cfg, ctx.device, ctx.dtype)
        f["params_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
        f["weights_gib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30, 2)
        f.update(ctx.peak())
    frames = 9 if ctx.tiny else RELEASE_FRAMES
    text = (64, 48) if ctx.tiny else (1024, 512)  # positive / negative prompt tokens
    deadline = CHILD_STARTED + ctx_budget_left() - 40  # leave time for the 480p case and the VAE decodes
    measured = {}
    for tier in ("256p", "480p"):
        width, height = spec.RESOLUTIONS[tier]["16:9"]
        with rec.item(f"t2v/{tier}") as f:
            f.update(resolution=f"{width}x{height}", published_s=PUBLISHED[tier], text_tokens=list(text))
            tried, result = frames, None
            while result is None:
                oom = False
                try:
                    result = time_denoising(ctx, model, cfg, tried, height, width, text, deadline)
                except torch.OutOfMemoryError:
                    oom = True
                if oom:  # outside the except block, so the failed attempt's tensors are free to go
                    import gc

                    gc.collect()
                    torch.cuda.empty_cache()
                    f.setdefault("oom_at_frames", []).append(tried)
                    tried = spec.round_frames((tried - 1) // 2 + 1)
                    if tried < 5:
                        raise RuntimeError(f"out of memory down to {f['oom_at_frames'][-1]} frames")
            f.update(result)
            f["frames"], f["fps"] = tried, RELEASE_FPS
            if tried == frames:
                f["extrapolation"] = (f"{result['steps_timed']} steps timed (after 1 warm-up), x 35 + the prompts' "
                                      "und pass once; the VAE decode is timed in vae-decode/" + tier)
            else:
                f["extrapolation"] = (f"{tried} frames fit, not {frames}: 35-step time measured at {tried} frames; "
                                      "at 189 frames it grows at least linearly in the frame count")
            if not f["step_s"] > 0:
                f["status"], f["error"] = "error", "non-positive step time"
            measured[tier] = (f["est_35_steps_s"], tried, height, width)
    del model
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    vae = None
    for tier, (est, tried, height, width) in measured.items():
        with rec.item(f"vae-decode/{tier}") as f:
            if time.monotonic() > deadline + 25:
                f["status"], f["error"] = "skipped", "step budget nearly spent"
                continue
            if vae is None:
                vae, f["build_s"] = ctx.timed(random_vae, ctx)
            C, Tl, Hl, Wl = vae.latent_shape(tried, height, width)
            latents = torch.randn(C, Tl, Hl, Wl, generator=torch.Generator().manual_seed(ctx.seed))
            ctx.reset_peak()
            decoded, f["decode_s"] = ctx.timed(vae.decode, latents)
            f.update(ctx.peak())
            f.update(frames=int(decoded.shape[0]), vae=VAE_NOTE if not ctx.tiny else "tiny Wan-layout VAE",
                     est_35_steps_s=est, est_total_s=est + f["decode_s"], published_s=PUBLISHED[tier])
            if not ctx.tiny:
                f["vs_published"] = round(f["est_total_s"] / PUBLISHED[tier], 3)
            if not (f["decode_s"] > 0 and decoded.shape[1:3] == (height, width)):
                f["status"], f["error"] = "error", "non-positive time or wrong frame size"


# Wan 2.2 (TI2V-5B) VAE geometry, the release's video tokenizer: 48 latent channels, 16x spatial, 4x temporal.
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                 patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16)
VAE_NOTE = "Wan 2.2 VAE shape (base 160, decoder 256, z 48), random weights, bf16"


def random_vae(ctx: Ctx):
    """The video VAE at the release's shape (tiny: oracle's tiny Wan layout) with random weights, on the device."""
    import torch
    from diffusers import AutoencoderKLWan

    from cosmos3.vae import VideoVAE

    if ctx.tiny:
        from oracle import random_wan_vae

        vae = random_wan_vae(8, torch.Generator().manual_seed(ctx.seed))
    else:
        C = WAN22_VAE["z_dim"]
        with torch.device("meta"):
            vae = AutoencoderKLWan(**WAN22_VAE, latents_mean=[0.0] * C, latents_std=[1.0] * C)
        vae = vae.to_empty(device=ctx.device).to(ctx.dtype)
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        with torch.no_grad():
            for name, p in vae.named_parameters():
                if p.ndim > 1 and not name.endswith("gamma"):
                    p.normal_(0.0, 0.5 / math.sqrt(p[0].numel()), generator=gen)
                elif name.endswith("gamma"):
                    p.fill_(1.0)
                else:
                    p.zero_()
            for b in vae.buffers():
                b.zero_()
    return VideoVAE(vae.eval(), ctx.device, ctx.dtype)


def time_denoising(ctx: Ctx, model, cfg, frames: int, height: int, width: int, text: tuple[int, int],
                   deadline: float) -> dict:
    """Und pass of both prompts once, then denoising steps with guidance (batch 2 through the gen pathway), timed
    until 3 steps or the deadline."""
    import torch

    from cosmos3.diffusion import Latents, denoise_step, encode_branches
    from cosmos3.model.rope import text_positions
    from cosmos3.sequence import GenLayout

    temporal, spatial = 4, 16  # the Wan 2.2 VAE's compression
    Tl, Hl, Wl = 1 + (frames - 1) // temporal, height // spatial, width // spatial
    C = cfg.latent_channel
    layout = GenLayout(latent_shape=(C, Tl, Hl, Wl), vision_noisy=torch.ones(Tl, dtype=torch.bool), fps=RELEASE_FPS)
    gen = torch.Generator().manual_seed(ctx.seed)
    prompts = [(torch.randint(0, cfg.vocab_size, (n,), generator=gen), text_positions(n)) for n in text]
    ctx.reset_peak()
    with torch.inference_mode():
        branches, und_s = ctx.timed(encode_branches, model, layout, prompts)
        latents = Latents(vision=torch.randn(C, Tl, Hl, Wl, generator=gen).to(ctx.device))
        times = []
        for i in range(4):
            t = torch.tensor(1000.0 * (1 - i / 35))
            velocity, s = ctx.timed(denoise_step, model, layout, latents, t, branches, GUIDANCE)
            times.append(s)
            if time.monotonic() > deadline and len(times) >= 2:
                break
        assert velocity.vision.device == latents.vision.device and velocity.vision.dtype == torch.float32
    timed = times[1:] or times
    step = statistics.median(timed)
    rows, cols = -(-Hl // cfg.latent_patch_size), -(-Wl // cfg.latent_patch_size)
    return dict(latent_shape=[C, Tl, Hl, Wl], gen_tokens=Tl * rows * cols, und_encode_s=und_s, step_s=step,
                step_times_s=[round(x, 4) for x in times], steps_timed=len(timed),
                est_35_steps_s=und_s + STEPS_35 * step, **ctx.peak())


# ------------------------------------------------------------------------------------------------ step: speed, reasoner


def step_speed_reason(ctx: Ctx, rec: Recorder) -> None:
    from cosmos3.decode import DecodeEngine
    from cosmos3.model.vision import VisionProcessor
    from cosmos3.reasoner import Reasoner
    from cosmos3.sampling import SamplingParams
    from cosmos3.tokenizers import byte_level_tokenizer

    cfg = speed_config(ctx)
    with rec.item("build/reasoner") as f:
        ctx.reset_peak()
        model, f["build_s"] = ctx.timed(random_model, cfg, ctx.device, ctx.dtype, False)
        f["params_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
        f.update(ctx.peak())
    rsn = Reasoner(model, byte_level_tokenizer(), None, VisionProcessor.from_dirs())
    prompt_chars, new_tokens = (200, 16) if ctx.tiny else (2000, 128)
    rng = random.Random(ctx.seed)
    words = " ".join(rng.choice(["robot", "arm", "cup", "table", "left", "moves", "red", "the"]) for _ in range(2000))

    def run(chars: int, tokens: int) -> dict:
        prompt = rsn.build_prompt([{"role": "user", "content": words[:chars]}])
        params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
        engine = DecodeEngine(rsn, 1, prompt.input_ids.shape[0] + tokens)
        row = engine.row(prompt, params)
        _, ttft = ctx.timed(engine.prefill, [row])
        _, decode = ctx.timed(lambda: [engine.step() for _ in range(tokens - 1) if not row.done])
        return dict(prompt_tokens=int(prompt.input_ids.shape[0]), new_tokens=len(row.tokens), ttft_s=ttft,
                    decode_s=decode, decode_tok_s=(len(row.tokens) - 1) / decode)

    with rec.item("reason/ttft-decode") as f:
        run(64, 4)  # warm-up: kernels, allocator
        ctx.reset_peak()
        f.update(run(prompt_chars, new_tokens))
        f.update(ctx.peak())
        f["batch"] = 1
        if not (f["ttft_s"] > 0 and f["decode_tok_s"] > 0 and f["new_tokens"] == new_tokens):
            f["status"], f["error"] = "error", "non-positive timing or short answer"


# ------------------------------------------------------------------------------------------------ step: training


def step_training(ctx: Ctx, rec: Recorder) -> None:
    import torch

    with rec.item("sft/gen/fsdp2") as f:
        import train_helpers
        from cosmos3.train import distributed
        from cosmos3.train.__main__ import build_parser, recipe_from_args
        from cosmos3.train.loop import Trainer

        ckpt, latents = train_helpers.tiny_checkpoint(), latents_folder(ctx, train_helpers.tiny_config())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        steps = 3
        argv = ["--checkpoint", str(ckpt), "--data", str(latents), "--data-kind", "latents",
                "--output", str(ctx.scratch / "train-run"), "--train", "gen", "--steps", str(steps),
                "--batch-size", "2", "--lr", "1e-4", "--save-every", "0", "--quiet", "--no-export",
                "--device", str(ctx.device), "--resume", "none", "--set", "model.fsdp=always",
                "--set", "run.autocast=true"]
        recipe = recipe_from_args(build_parser().parse_args(argv))
        ctx.reset_peak()
        trainer = Trainer(recipe)
        try:
            import torch.distributed as dist

            f["backend"] = dist.get_backend() if dist.is_initialized() else "none"
            f["fsdp2_sharded"] = all(distributed.is_sharded(p) for p in trainer.named_trainable.values())
            # The trainer autocasts to bf16 on CUDA itself; on the CPU the rehearsal wraps its steps in CPU autocast
            # so the same mixed-precision paths run.
            cpu = ctx.device.type == "cpu"
            f["autocast"] = "bf16 (cpu autocast around train_step)" if cpu else "bf16 (the trainer's, cuda)"
            history = []
            for _ in range(steps):
                with torch.autocast("cpu", dtype=torch.bfloat16) if cpu else contextlib.nullcontext():
                    history.append(trainer.train_step())
        finally:
            distributed.shutdown()
        f["losses"] = [round(m["loss"], 5) for m in history]
        f["step_s"] = [round(m["step_s"], 4) for m in history]
        f["tokens_per_s"] = round(statistics.median(m["tokens_per_s"] for m in history), 1)
        f["grad_norm"] = history[-1]["grad_norm"]
        f["trainable_params"] = sum(p.numel() for p in trainer.named_trainable.values())
        f.update(ctx.peak())
        ok = (all(math.isfinite(m["loss"]) and m["loss"] > 0 for m in history) and all(s > 0 for s in f["step_s"])
              and f["fsdp2_sharded"] and f["backend"] == ("nccl" if ctx.device.type == "cuda" else "gloo"))
        if not ok:
            f["status"], f["error"] = "error", "non-finite loss, no FSDP2 sharding or the wrong backend"


def latents_folder(ctx: Ctx, cfg) -> Path:
    """Precomputed text-to-video samples with random latents (no video decoding, no VAE: PyAV is not needed)."""
    import torch

    from cosmos3.train.data import GenItem, precompute_latents

    gen = torch.Generator().manual_seed(ctx.seed)
    shapes = [(2, 4, 6), (2, 4, 6), (3, 4, 4), (3, 4, 4)]  # latent frames, height, width: two micro-batch shapes
    items = [GenItem(vision=torch.randn(cfg.latent_channel, T, H, W, generator=gen), prompt=f"a red block, take {i}",
                     fps=16.0, num_frames=1 + 4 * (T - 1), height=16 * H, width=16 * W)
             for i, (T, H, W) in enumerate(shapes)]
    return precompute_latents(items, ctx.scratch / "latents", progress=False)


STEP_FUNCS = {"env": step_env, "correctness": step_correctness, "speed_generate": step_speed_generate,
              "speed_reason": step_speed_reason, "training": step_training}


def ctx_budget_left() -> float:
    return float(os.environ.get("GPU_CHECK_STEP_BUDGET", "120"))


# ------------------------------------------------------------------------------------------------ orchestration


def run_child(args) -> int:
    import torch

    if args.stall == args.step:  # tests: a step that overruns its budget
        time.sleep(3600)
    torch.manual_seed(args.seed)
    ctx = Ctx(args)
    rec = Recorder(ctx.out, args.step)
    STEP_FUNCS[args.step](ctx, rec)
    return 0


def read_results(out: Path) -> list[dict]:
    path = out / RESULTS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


KEY_FIGURES = ("gpu", "max_rel_err", "latents_rel_err", "actions_rel_err", "prefill_logits_rel_err",
               "greedy_tokens_agree", "diffusers_lowp_vs_ours_fp32", "params_b", "frames", "step_s",
               "est_35_steps_s", "decode_s", "est_total_s", "published_s", "vs_published", "ttft_s", "decode_tok_s",
               "losses", "tokens_per_s",
               "backend", "peak_gpu_gib", "peak_rss_gib", "error")


def table(rows: list[dict]) -> str:
    lines = [f"{'step':<15}{'item':<28}{'status':<9}{'wall s':>8}  figures"]
    for r in rows:
        figs = []
        for k in KEY_FIGURES:
            if k in r:
                v = r[k]
                v = "[" + ", ".join(_fmt(x) for x in v) + "]" if isinstance(v, list) else _fmt(v)
                figs.append(f"{k}={v}")
        wall = r.get("wall_s")
        lines.append(f"{r['step']:<15}{r['name']:<28}{r['status']:<9}{'' if wall is None else f'{wall:.1f}':>8}  "
                     + ", ".join(figs))
    return "\n".join(lines)


def orchestrate(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS, "log.txt", "table.txt"):
        (out / name).unlink(missing_ok=True)
    rehearsal = args.cpu
    total = args.total_budget or (sum(s[2] for s in STEPS) if rehearsal else TOTAL_BUDGET_S)
    started = time.monotonic()
    only = set(args.only.split(",")) if args.only else None
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    print(f"gpu_check: {'CPU rehearsal' if args.cpu else 'CUDA'}, {'tiny' if args.tiny else 'release'} shapes, "
          f"total budget {total} s, results in {out / RESULTS}", flush=True)
    log = open(out / "log.txt", "a")
    try:
        for name, gpu_budget, cpu_budget in STEPS:
            if only and name not in only:
                continue
            rec = Recorder(out, name)
            left = total - (time.monotonic() - started)
            budget = min(cpu_budget if rehearsal else gpu_budget, left)
            if budget < MIN_STEP_S:
                rec.emit("step", "skipped", error=f"total budget spent ({left:.0f} s left)", budget_s=round(budget, 1))
                continue
            before = len(read_results(out))
            cmd = [sys.executable, str(Path(__file__).resolve()), str(out), "--step", name, "--scratch", str(scratch),
                   "--seed", str(args.seed)] + (["--cpu"] if args.cpu else []) + (["--tiny"] if args.tiny else []) \
                + (["--stall", args.stall] if args.stall else [])
            env = dict(os.environ, GPU_CHECK_STEP_BUDGET=str(budget), PYTHONPATH=os.pathsep.join(
                [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, text=True)
            try:
                output, _ = proc.communicate(timeout=budget)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                timed_out = True
            wall = time.monotonic() - t0
            log.write(f"===== {name} (rc {proc.returncode}, {wall:.1f} s)\n{_tail(output)}\n")
            log.flush()
            if timed_out:
                rec.emit("step", "timeout", error=f"over its budget of {budget:.0f} s (stopped)",
                         budget_s=round(budget),
                         wall_s=round(wall, 1))
            elif proc.returncode != 0:
                last = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or [""]
                rec.emit("step", "error", error=f"exit status {proc.returncode}: {last[0][:250]}",
                         wall_s=round(wall, 1))
            elif len(read_results(out)) == before:
                rec.emit("step", "error", error="the step wrote no result", wall_s=round(wall, 1))
            else:
                rec_line = {"budget_s": round(budget), "wall_s": round(wall, 1)}
                with open(out / RESULTS, "a") as f:
                    f.write(json.dumps({"step": name, "name": "step", "status": "ok", **rec_line}) + "\n")
    finally:
        log.close()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    rows = read_results(out)
    text = table(rows)
    summary = (f"{text}\n\ntotal {time.monotonic() - started:.1f} s; {sum(r['status'] == 'ok' for r in rows)} ok, "
               f"{sum(r['status'] != 'ok' for r in rows)} not ok")
    (out / "table.txt").write_text(summary + "\n")
    print(summary, flush=True)
    return 0


def _tail(text: str, limit: int = 200_000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output folder (results.jsonl, log.txt, table.txt)")
    p.add_argument("--cpu", action="store_true", help="rehearsal: bf16 on the CPU against float32 on the CPU")
    p.add_argument("--tiny", action="store_true", help="toy shapes everywhere (speed steps included)")
    p.add_argument("--only", help="comma-separated steps to run (default: all)")
    p.add_argument("--total-budget", type=float, help="seconds for the whole run (default 530 on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", choices=list(STEP_FUNCS), help=argparse.SUPPRESS)  # internal: run one step
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    p.add_argument("--stall", help=argparse.SUPPRESS)  # tests: this step sleeps past its budget
    args = p.parse_args(argv)
    if args.step:
        return run_child(args)
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; use --cpu --tiny for the rehearsal", file=sys.stderr)
            return 2
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
