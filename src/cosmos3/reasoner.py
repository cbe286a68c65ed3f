"""The Reasoner surface (DESIGN 1.7, 2.9): text, images and video in, text out, on the understanding tower.

    rsn = Reasoner.from_pretrained(path)                 # official layout, or a transformers Qwen3-VL directory
    out = rsn.chat(messages, max_tokens=256, ...)        # out.text, out.reasoning, out.finish_reason, out.usage
    for delta in rsn.chat(messages, stream=True): ...    # text deltas; the stream's .output is the ChatOutput

A request runs in four steps:
  1. messages -> normalized parts (text / image / video) and the media, loaded here and checked (`ValueError` on
     bad media);
  2. the prompt (prompt.py): chat template, each media placeholder expanded to Qwen3-VL's tokens, mRoPE positions;
  3. `prefill_batch`: the vision tower runs once, its features replace the placeholder embeddings, deepstack features
     are added after the first text layers, and every key/value lands in a static cache;
  4. `decode_batch` per token, driven by the decode engine (decode/): sampling, end of turn, stop strings, streaming.
     `chat` is that engine with one row; the server's batcher is the same engine with many.

Shapes: L prompt tokens, D hidden, V vocabulary; positions [3, L] float; the cache holds [B, Hkv, capacity, Dh]
per layer.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, default_dtype, load_transformer, resolve_checkpoint
from .checkpoint_qwen3vl import load_qwen3vl
from .decode import ChatOutput, DecodeEngine, end_of_turn_ids, split_reasoning
from .media import MediaError, probe_video, read_image
from .model import Cosmos3Omni, KVCache
from .model.mot import cache_causal_mask
from .model.vision import VisionProcessor, VisionTower, VisualInput
from .quant import WEIGHTS, apply_weights
from .prompt import DEFAULT_SYSTEM_PROMPT, REASONING_INSTRUCTION, Prompt, assemble, normalize_messages
from .sampling import PLAIN, REASONING, SamplingParams
from .tokenizers import TextTokenizer

__all__ = ["ChatOutput", "ChatStream", "DEFAULT_SYSTEM_PROMPT", "Prompt", "REASONING_INSTRUCTION", "Reasoner",
           "load_image", "load_video", "split_reasoning"]

MAX_INPUT_PIXELS = 1 << 27  # 134 M pixels per image / frame handed in as an array: beyond this, refuse early


class ChatStream:
    """Iterates over text deltas; once exhausted, `.output` is the ChatOutput of the request."""

    def __init__(self, gen: Iterator[str]):
        self._gen, self.output = gen, None

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> str:
        try:
            return next(self._gen)
        except StopIteration as done:
            self.output = done.value
            raise


# ------------------------------------------------------------------------------------------------- media


def _bad(where: str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def _data_uri(url: str, where: str) -> tuple[str, bytes]:
    """'data:<mime>;base64,<payload>' -> (mime, bytes)."""
    match = re.match(r"data:([\w/+.-]*)(;[^,]*)?,(.*)$", url, re.S)
    if not match or "base64" not in (match.group(2) or ""):
        raise _bad(where, "malformed data URI (expected data:<mime>;base64,<payload>)")
    try:
        return match.group(1), base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "data URI payload is not valid base64") from None


def _local_path(url: str, where: str) -> Path:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", url) and not url.startswith("file://"):
        raise _bad(where, f"remote URLs are not fetched ({url.split('://')[0]}://); pass a local path or a data URI")
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def _array_frame(value: Any, where: str) -> np.ndarray:
    """A uint8 [H, W, 3] array or tensor (or PIL image) as a numpy array, checked."""
    if isinstance(value, Image.Image):
        return np.asarray(read_image(value))
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise _bad(where, f"expected a PIL image, a path or a uint8 array [H, W, 3], got {type(value).__name__}")
    if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        raise _bad(where, f"expected a uint8 array [H, W, 3], got {value.dtype} {list(value.shape)}")
    if value.shape[0] * value.shape[1] > MAX_INPUT_PIXELS or min(value.shape[:2]) < 1:
        raise _bad(where, f"image of {value.shape[1]}x{value.shape[0]} pixels is empty or too large")
    return value


def load_image(value: Any, where: str = "image") -> Image.Image:
    """PIL image, uint8 array / tensor [H, W, 3], path, file:// or data URI -> RGB PIL image."""
    if isinstance(value, (str, os.PathLike)):
        url = str(value)
        if url.startswith("data:"):
            return read_image(_data_uri(url, where)[1])
        return read_image(_local_path(url, where))
    if isinstance(value, Image.Image):
        return read_image(value)
    return Image.fromarray(_array_frame(value, where))


def _decode_selected(path: Path, wanted: list[int]) -> tuple[list[np.ndarray], int]:
    """Decode a video keeping only frames `wanted` (sorted indices), so memory holds the sampled frames alone.
    Returns the frames and how many frames were decoded in all.

    Not media.read_video, on purpose: the reasoner must see the pixels transformers' Qwen3-VL video loader sees
    (FFmpeg's default YUV -> RGB conversion), which read_video's accurate rounding shifts by about one level;
    tests/test_vision_preprocessing_parity.py compares them pixel for pixel."""
    import av

    keep, out, count = set(wanted), [], 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for count, frame in enumerate(container.decode(stream), start=1):
                if count - 1 in keep:
                    arr = frame.to_ndarray(format="rgb24")
                    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4  # display rotation
                    if turns:
                        arr = np.ascontiguousarray(np.rot90(arr, k=turns, axes=(0, 1)))
                    if out and arr.shape != out[0].shape:  # resolution changes mid-stream: match the first
                        arr = np.asarray(Image.fromarray(arr).resize(out[0].shape[1::-1], Image.BILINEAR))
                    out.append(arr)
                if count - 1 >= wanted[-1]:
                    break
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(path, f"corrupt or truncated video data ({exc})") from exc
    return out, count


def load_video(value: Any, processor: VisionProcessor, fps: float | None, num_frames: int | None,
               where: str = "video") -> tuple[torch.Tensor, list[float]]:
    """A video file (path, file:// or data URI) sampled at `fps` / `num_frames`, or a list of frames taken as they
    are -> (uint8 frames [T, H, W, 3], their times in seconds)."""
    if isinstance(value, (str, os.PathLike)):
        url, tmp = str(value), None
        if url.startswith("data:"):
            mime, payload = _data_uri(url, where)
            suffix = "." + (mime.split("/")[-1] or "mp4") if mime.startswith("video/") else ".mp4"
            tmp = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
            tmp.write(payload)
            tmp.close()
            path = Path(tmp.name)
        else:
            path = _local_path(url, where)
        try:
            info = probe_video(path)  # MediaError for missing / non-video / truncated files
            wanted = processor.sample_indices(info["frames"], info["fps"], fps, num_frames)
            frames, seen = _decode_selected(path, wanted)
            if len(frames) < len(wanted):  # the container overstated its frame count: sample what exists
                wanted = processor.sample_indices(seen, info["fps"], fps, num_frames)
                frames, _ = _decode_selected(path, wanted)
            if not frames:
                raise MediaError(path, "no decodable video frames")
        finally:
            if tmp is not None:
                os.unlink(tmp.name)
        rate = info["fps"] or 24.0
        return torch.from_numpy(np.stack(frames)), [i / rate for i in wanted]
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        value = list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(where, "expected a video path / URL or a non-empty list of frames")
    if len(value) > processor.max_frames:
        raise _bad(where, f"{len(value)} frames given, at most {processor.max_frames} are accepted")
    frames = [_array_frame(f, f"{where} frame {i}") for i, f in enumerate(value)]
    if len({f.shape for f in frames}) > 1:
        raise _bad(where, "frames differ in size")
    rate = fps or processor.fps  # a frame list is taken as already sampled at this rate
    return torch.from_numpy(np.stack(frames)), [i / rate for i in range(len(frames))]



# ------------------------------------------------------------------------------------------------ reasoner


class Reasoner:
    def __init__(self, model: Cosmos3Omni, tokenizer: TextTokenizer, vision: VisionTower | None,
                 processor: VisionProcessor, end_of_turn: tuple[int, ...] | None = None):
        self.model, self.tokenizer, self.vision, self.processor = model, tokenizer, vision, processor
        self.offloader = None  # offload.Offloader when from_pretrained(offload=...) keeps weights in host memory
        # The ids that end an answer (from the checkpoint's generation_config.json when from_pretrained finds one).
        self.end_of_turn = tuple(tokenizer.eos_ids) if end_of_turn is None else tuple(end_of_turn)
        if vision is not None and vision.out_hidden_size != model.config.hidden_size:
            raise ValueError(f"vision tower emits {vision.out_hidden_size}-wide features, the text model is "
                             f"{model.config.hidden_size} wide")
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the model only {model.config.vocab_size}")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, weights: str | None = None,
                        offload: str = "none") -> "Reasoner":
        """An official-layout checkpoint (transformer/, vision_encoder/, text_tokenizer/) or a transformers
        Qwen3-VL directory (config.json of model_type qwen3_vl). Only the understanding weights are read.
        `weights="int8"`: the und tower's and lm_head's linears in int8 (quant.py); default: as loaded.
        `offload` "layers" / "components": the weights stay in host memory and visit the device when used."""
        from .offload import MODES as OFFLOAD_MODES, offload_reasoner

        if weights not in (None, *WEIGHTS):
            raise ValueError(f"weights: expected one of {WEIGHTS}, got {weights!r}")
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload: expected one of {OFFLOAD_MODES}, got {offload!r}")
        root = resolve_checkpoint(path)
        device = torch.device(device) if device is not None else torch.device("cpu")
        dtype = dtype or default_dtype(device)
        load_on = device if offload == "none" else torch.device("cpu")  # offloaded weights live in host memory
        if not root.is_dir():
            raise CheckpointError(f"{root}: no such checkpoint directory")
        if (root / "transformer" / "config.json").is_file():
            fp8 = "keep" if device.type == "cuda" else "auto"  # an fp8 checkpoint stays fp8 for a GPU (fp8.py)
            model = apply_weights(load_transformer(root, dtype=dtype, device=load_on, with_gen=False, fp8=fp8),
                                  weights)
            reasoner = cls.sharing(model, root)
        else:
            config = root / "config.json"
            model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
            if model_type != "qwen3_vl":
                raise CheckpointError(f"{root}: expected an official-layout checkpoint (transformer/config.json) or "
                                      f"a Qwen3-VL directory (config.json with model_type qwen3_vl), got "
                                      f"{model_type!r}")
            model, vision = load_qwen3vl(root, dtype, load_on)
            model = apply_weights(model, weights)
            tokenizer = TextTokenizer.from_pretrained(root)
            eot = end_of_turn_ids(root, tokenizer.eos_ids, model.config.vocab_size)
            reasoner = cls(model, tokenizer, vision, VisionProcessor.from_dirs(root), eot)
        if offload != "none":
            reasoner.offloader = offload_reasoner(reasoner, device, offload)
        return reasoner

    @classmethod
    def sharing(cls, model: Cosmos3Omni, root: Path, vision: bool = True) -> "Reasoner":
        """A reasoner over a network already loaded (the Generator's: one copy of the weights serves both), with
        the tokenizer, vision tower (unless `vision=False`: text only) and end-of-turn ids of official-layout
        checkpoint `root`."""
        vision_dir = root / "vision_encoder"
        tower = None
        if vision and (vision_dir / "config.json").is_file():
            tower = VisionTower.from_pretrained(vision_dir, model.dtype, model.device)
        tokenizer = TextTokenizer.from_pretrained(root / "text_tokenizer")
        processor = VisionProcessor.from_dirs(vision_dir, root, root / "text_tokenizer")
        return cls(model, tokenizer, tower, processor, end_of_turn_ids(root, tokenizer.eos_ids,
                                                                        model.config.vocab_size))

    # ---------------------------------------------------------------------------------------- prompt

    def _process(self, spec: dict, fps: float | None, num_frames: int | None) -> VisualInput:
        where = spec["where"]
        if self.vision is None:
            raise ValueError(f"{where}: this checkpoint has no vision encoder; it takes text only")
        try:
            if spec["kind"] == "image":
                return self.processor.image(load_image(spec["value"], where))
            frames, times = load_video(spec["value"], self.processor, spec["fps"] or fps,
                                       spec["num_frames"] or num_frames, where)
            return self.processor.video(frames, times)
        except MediaError:
            raise
        except ValueError as e:
            raise e if str(e).startswith(where) else _bad(where, str(e))

    def build_prompt(self, messages: Any, fps: float | None = None, num_frames: int | None = None,
                     system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, think: bool = False) -> Prompt:
        """Messages -> token ids, mRoPE positions and processed media (no network work yet)."""
        chat, specs = normalize_messages(messages, system_prompt, think)
        media = [self._process(s, fps, num_frames) for s in specs]
        return assemble(self.tokenizer, chat, media, self.processor.merge_size)

    # ---------------------------------------------------------------------------------------- network

    @torch.no_grad()
    def prefill(self, prompt: Prompt, cache: KVCache) -> torch.Tensor:
        """Run the prompt into cache slots 0..L-1 -> logits of the next token [V]."""
        return self.prefill_batch([prompt], cache)[0]

    @torch.no_grad()
    def prefill_batch(self, prompts: list[Prompt], cache: KVCache) -> torch.Tensor:
        """Prompts of any lengths in one forward, prompt i into row i of `cache` (batch >= n, capacity >= the
        longest) -> logits of each one's next token [n, V].

        Rows are right-padded to the longest prompt. Exact: a real token at slot j sees only slots 0..j of its own
        row, all real; the pad tokens write slots past the prompt, which a decode step overwrites before it reads.
        """
        model = self.model
        n, lengths = len(prompts), [p.input_ids.shape[0] for p in prompts]
        longest = max(lengths)
        ids = torch.zeros((n, longest), dtype=torch.long)
        positions = torch.zeros((n, 3, longest))
        visual = torch.zeros((n, longest), dtype=torch.bool)
        for i, (p, L) in enumerate(zip(prompts, lengths)):
            ids[i, :L], positions[i, :, :L], visual[i, :L] = p.input_ids, p.positions, p.visual_mask
        embeds = model.embed_tokens(ids.to(model.device))  # [n, longest, D]
        deepstack = None
        media = [m for p in prompts for m in p.media]
        if media:
            # a bool-mask write fills rows in row-major order: row 0's media tokens first, as `media` is ordered
            features, deep = self.vision(media)  # [n_visual, D], k x [n_visual, D]
            visual = visual.to(model.device)
            embeds[visual] = features.to(embeds.dtype)
            deepstack = (visual, deep) if deep else None
        write_at = torch.arange(longest, device=model.device)  # [S] shared: plain causal attention, fused kernel
        rows = KVCache([k[:n, :, :longest] for k in cache.keys], [v[:n, :, :longest] for v in cache.values])
        hidden = model.und_forward(embeds, positions, rows, write_at, deepstack=deepstack)  # [n, longest, D]
        last = torch.tensor(lengths, device=model.device) - 1
        return model.logits(hidden[torch.arange(n, device=model.device), last])

    @torch.no_grad()
    def decode_batch(self, tokens: list[int], slots: list[int], rope_deltas: list[int],
                     cache: KVCache) -> torch.Tensor:
        """One token per row: row i's `tokens[i]` goes to its cache slot `slots[i]` at position slot + rope delta
        and attends over its slots 0..slot -> logits of each next token [n, V].
        `cache` holds exactly the n rows, trimmed to the slots read."""
        model, n = self.model, len(tokens)
        embeds = model.embed_tokens(torch.tensor(tokens, device=model.device).view(n, 1))  # [n, 1, D]
        positions = torch.tensor([float(s + d) for s, d in zip(slots, rope_deltas)]).view(n, 1, 1).expand(n, 3, 1)
        write_at = torch.tensor(slots, device=model.device).view(n, 1)
        # The mask once per step rather than per layer (the default reads the span back from the device per layer).
        visible = cache_causal_mask(write_at, cache.capacity, n)  # [n, 1, 1, span]
        hidden = model.und_forward(embeds, positions, cache, write_at, mask=visible)
        return model.logits(hidden[:, -1])

    # ---------------------------------------------------------------------------------------- chat

    def chat(self, messages: Any, max_tokens: int = 256, temperature: float | None = None,
             top_p: float | None = None, top_k: int | None = None, presence_penalty: float | None = None,
             repetition_penalty: float | None = None, seed: int | None = None, stop: str | list[str] | None = None,
             stream: bool = False, think: bool = False, fps: float | None = None, num_frames: int | None = None,
             system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> ChatOutput | ChatStream:
        """Answer a conversation. Unset sampling fields come from the plain preset, or from the reasoning preset
        with `think=True` (which also asks for a <think> ... </think> answer). `fps` / `num_frames` set how videos
        are sampled (default 2 fps); a part's own "fps" / "num_frames" keys win."""
        params = (REASONING if think else PLAIN).replace(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            presence_penalty=presence_penalty, repetition_penalty=repetition_penalty, seed=seed, stop=stop)
        prompt = self.build_prompt(messages, fps, num_frames, system_prompt, think)
        run = ChatStream(self.generate(prompt, params))
        if stream:
            return run
        for _ in run:
            pass
        return run.output

    def generate(self, prompt: Prompt, params: SamplingParams) -> Iterator[str]:
        """Decode from a built prompt, yielding text deltas; returns (StopIteration.value) the ChatOutput. The
        decode engine with one row; a row whose sampling fails raises its SamplingError here."""
        engine = DecodeEngine(self, 1, prompt.input_ids.shape[0] + params.max_tokens)
        row = engine.row(prompt, params)
        engine.prefill([row])
        while True:
            if row.delta:
                yield row.delta
            if row.done:
                break
            engine.step()
        if row.error is not None:
            raise row.error
        return row.output
