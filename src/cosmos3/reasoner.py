"""The Reasoner surface (DESIGN 1.7, 2.9): text, images and video in, text out, on the understanding tower.

    rsn = Reasoner.from_pretrained(path)                 # official layout, or a transformers Qwen3-VL directory
    out = rsn.chat(messages, max_tokens=256, ...)        # out.text, out.reasoning, out.finish_reason, out.usage
    for delta in rsn.chat(messages, stream=True): ...    # text deltas; the stream's .output is the ChatOutput

A request runs in four steps:
  1. messages -> normalized parts (text / image / video) and the media, loaded and checked (`ValueError` on bad media);
  2. chat template, then each media placeholder expanded to Qwen3-VL's tokens (video: one `<t seconds>` + block per
     temporal patch); Qwen3-VL mRoPE position ids: text counts up on all three axes, a media block of h x w merged
     tokens starting at p gets T = p, H = p + row, W = p + column, and the text after it resumes at p + max(h, w);
  3. `prefill`: the vision tower runs once, its features replace the placeholder embeddings, deepstack features are
     added after the first text layers, and every key/value lands in a static cache sized prompt + max_tokens;
  4. `decode_step` per token (position = slot + the prompt's rope delta), sampling, stop strings, streaming.

Shapes: L prompt tokens, D hidden, V vocabulary; positions [3, L] float; the cache holds [1, Hkv, L + max_tokens, Dh]
per layer.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, default_dtype, load_transformer, resolve_checkpoint
from .config import Cosmos3Config
from .media import MediaError, probe_video, read_image
from .model import Cosmos3Omni, KVCache
from .model.rope import MRoPE
from .model.vision import VisionProcessor, VisionTower, VisualInput
from .sampling import PLAIN, REASONING, Sampler, SamplingParams
from .tokenizers import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, IncrementalDecoder, TextTokenizer

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# Appended to the last user turn when thinking is asked for (the Cosmos-Reason answer format).
REASONING_INSTRUCTION = ("Answer the question using the following format:\n\n<think>\nYour reasoning.\n</think>\n\n"
                         "Write your final answer immediately after the </think> tag.")
MAX_INPUT_PIXELS = 1 << 27  # 134 M pixels per image / frame handed in as an array: beyond this, refuse early
_IMAGE_BLOCK = VISION_START + IMAGE_PAD + VISION_END
_VIDEO_BLOCK = VISION_START + VIDEO_PAD + VISION_END


@dataclass
class ChatOutput:
    text: str  # the answer (after </think> when the model reasoned)
    reasoning: str | None  # what stood between <think> and </think>, or None
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (max_tokens)
    usage: dict[str, int]  # prompt_tokens, completion_tokens, total_tokens
    raw_text: str = ""  # the completion as generated (what the stream's deltas add up to)
    token_ids: list[int] = field(default_factory=list)  # generated ids, end-of-turn token included


@dataclass
class Prompt:
    input_ids: torch.Tensor  # [L] long
    positions: torch.Tensor  # [3, L] float32
    media: list[VisualInput]  # in order of appearance
    visual_mask: torch.Tensor  # [L] bool, the media tokens
    rope_delta: int  # decode token at cache slot s has position s + rope_delta on every axis


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


def split_reasoning(text: str) -> tuple[str | None, str]:
    """'<think> r </think> answer' -> ('r', 'answer'). A template may open <think> itself, so a lone '</think>'
    also splits; an unclosed '<think>' (cut by max_tokens) is all reasoning."""
    if "</think>" in text:
        head, answer = text.split("</think>", 1)
        head = head.strip()
        return (head[len("<think>"):] if head.startswith("<think>") else head).strip(), answer.strip()
    stripped = text.lstrip()
    if stripped.startswith("<think>"):
        return stripped[len("<think>"):].strip(), ""
    return None, text


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
    Returns the frames and how many frames were decoded in all."""
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


def normalize_messages(messages: Any, system_prompt: str | None, think: bool) -> tuple[list[dict], list[dict]]:
    """OpenAI-style messages -> (messages with parts {"type": "text"|"image"|"video"} for the chat template,
    media specs in order of appearance: {"kind", "value", "fps", "num_frames", "where"})."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages: expected a non-empty list of {'role', 'content'} objects")
    out: list[dict] = []
    media: list[dict] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}]: expected {{'role': 'system'|'user'|'assistant', 'content': ...}}")
        content = msg.get("content")
        if isinstance(content, str):
            out.append({"role": msg["role"], "content": content})
            continue
        if not isinstance(content, (list, tuple)):
            raise ValueError(f"messages[{i}].content: expected a string or a list of parts")
        parts = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
                continue
            if kind in ("image_url", "video_url"):
                ref = part.get(kind)
                value = ref.get("url") if isinstance(ref, dict) else ref
                kind = kind[:-4]
            elif kind in ("image", "video"):
                value = part.get(kind)
            else:
                raise ValueError(f"{where}: unknown part {part!r:.80}; expected text, image_url, video_url, image "
                                 f"or video")
            if value is None or (isinstance(value, str) and not value):
                raise ValueError(f"{where}: the {kind} part has no {kind}")
            if msg["role"] != "user":
                raise ValueError(f"{where}: images and videos are accepted in user messages only")
            media.append({"kind": kind, "value": value, "fps": part.get("fps"), "num_frames": part.get("num_frames"),
                          "where": where})
            parts.append({"type": kind})
        out.append({"role": msg["role"], "content": parts})
    if system_prompt and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system_prompt})
    if think:
        last = next((m for m in reversed(out) if m["role"] == "user"), None)
        if last is None:
            raise ValueError("messages: thinking needs a user message to answer")
        if isinstance(last["content"], str):
            last["content"] = last["content"] + "\n\n" + REASONING_INSTRUCTION
        else:
            last["content"] = last["content"] + [{"type": "text", "text": "\n\n" + REASONING_INSTRUCTION}]
    return out, media


# ------------------------------------------------------------------------------------------------ loading


def config_from_qwen3vl(text: dict) -> Cosmos3Config:
    """Our network config from a transformers Qwen3-VL `text_config` (the und pathway alone is used)."""
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    if rope.get("mrope_interleaved") is False:
        raise ValueError("Qwen3-VL config with non-interleaved mRoPE is not supported")
    if text.get("hidden_act", "silu") != "silu":
        raise ValueError(f"Qwen3-VL text config: hidden_act {text['hidden_act']!r} is not supported (silu only)")
    heads = text["num_attention_heads"]
    return Cosmos3Config(
        hidden_size=text["hidden_size"], num_hidden_layers=text["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=text.get("num_key_value_heads", heads),
        head_dim=text.get("head_dim") or text["hidden_size"] // heads, intermediate_size=text["intermediate_size"],
        attention_bias=bool(text.get("attention_bias", False)), rms_norm_eps=text.get("rms_norm_eps", 1e-6),
        vocab_size=text["vocab_size"], rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 5e6))),
        rope_axes_dim=rope.get("mrope_section"))


_QWEN_ATTN = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out", "q_norm": "norm_q",
              "k_norm": "norm_k"}


def _qwen_text_key(key: str) -> str | None:
    """'model.language_model.layers.3.self_attn.q_proj.weight' -> 'layers.3.self_attn.to_q.weight'."""
    if key.startswith("lm_head."):
        return key
    if not key.startswith("model.language_model."):
        return None
    parts = key[len("model.language_model."):].split(".")
    if parts[0] == "layers" and parts[2] == "self_attn":
        parts[3] = _QWEN_ATTN.get(parts[3], parts[3])
    return ".".join(parts)


def _load_qwen3vl(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[Cosmos3Omni, VisionTower]:
    from safetensors import safe_open

    config = json.loads((path / "config.json").read_text())
    cfg = config_from_qwen3vl(config["text_config"])
    index = path / "model.safetensors.index.json"
    files = sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.is_file() \
        else sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weights")
    text_state, vision_state = {}, {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith("model.visual."):
                    vision_state[key[len("model.visual."):]] = f.get_tensor(key)
                elif (ours := _qwen_text_key(key)) is not None:
                    text_state[ours] = f.get_tensor(key).to(device=device, dtype=dtype)
    if "lm_head.weight" not in text_state and config.get("tie_word_embeddings"):
        text_state["lm_head.weight"] = text_state.get("embed_tokens.weight")
    with torch.device("meta"):
        model = Cosmos3Omni(cfg, with_gen=False)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(text_state)), sorted(set(text_state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: Qwen3-VL text weights do not match the config: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    model.load_state_dict(text_state, strict=True, assign=True)
    model.rotary = MRoPE(cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim).to(device)
    tower = VisionTower.from_state_dict(config["vision_config"], vision_state, dtype, device, source=str(path))
    return model.eval(), tower


# ------------------------------------------------------------------------------------------------ reasoner


class Reasoner:
    def __init__(self, model: Cosmos3Omni, tokenizer: TextTokenizer, vision: VisionTower | None,
                 processor: VisionProcessor):
        self.model, self.tokenizer, self.vision, self.processor = model, tokenizer, vision, processor
        if vision is not None and vision.out_hidden_size != model.config.hidden_size:
            raise ValueError(f"vision tower emits {vision.out_hidden_size}-wide features, the text model is "
                             f"{model.config.hidden_size} wide")
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the model only {model.config.vocab_size}")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "Reasoner":
        """An official-layout checkpoint (transformer/, vision_encoder/, text_tokenizer/) or a transformers
        Qwen3-VL directory (config.json of model_type qwen3_vl). Only the understanding weights are read."""
        root = resolve_checkpoint(path)
        device = torch.device(device) if device is not None else torch.device("cpu")
        dtype = dtype or default_dtype(device)
        if not root.is_dir():
            raise CheckpointError(f"{root}: no such checkpoint directory")
        if (root / "transformer" / "config.json").is_file():
            model = load_transformer(root, dtype=dtype, device=device, with_gen=False)
            vision_dir = root / "vision_encoder"
            vision = VisionTower.from_pretrained(vision_dir, dtype, device) if vision_dir.is_dir() else None
            tokenizer = TextTokenizer.from_pretrained(root / "text_tokenizer")
            processor = VisionProcessor.from_dirs(vision_dir, root, root / "text_tokenizer")
            return cls(model, tokenizer, vision, processor)
        config = root / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
        if model_type != "qwen3_vl":
            raise CheckpointError(f"{root}: expected an official-layout checkpoint (transformer/config.json) or a "
                                  f"Qwen3-VL directory (config.json with model_type qwen3_vl), got {model_type!r}")
        model, vision = _load_qwen3vl(root, dtype, device)
        return cls(model, TextTokenizer.from_pretrained(root), vision, VisionProcessor.from_dirs(root))

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
        text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True)
        # Expand each placeholder into its tokens, in order; the template must have kept every media part.
        merge = self.processor.merge_size
        pieces, cursor = [], 0
        for item in media:
            block = _IMAGE_BLOCK if item.kind == "image" else _VIDEO_BLOCK
            at = text.find(block, cursor)
            if at < 0:
                raise ValueError(f"the chat template dropped a {item.kind} placeholder ({block})")
            pieces.append(text[cursor:at])
            if item.kind == "image":
                pieces.append(VISION_START + IMAGE_PAD * item.num_tokens(merge) + VISION_END)
            else:
                per_frame = VISION_START + VIDEO_PAD * item.frame_tokens(merge) + VISION_END
                pieces.extend(f"<{t:.1f} seconds>" + per_frame for t in item.timestamps)
            cursor = at + len(block)
        pieces.append(text[cursor:])
        ids = torch.tensor(self.tokenizer.encode("".join(pieces)), dtype=torch.long)
        tok = self.tokenizer
        visual = (ids == tok.image_pad_id) | (ids == tok.video_pad_id)
        if int(visual.sum()) != sum(item.num_tokens(merge) for item in media):
            raise ValueError("the prompt's own text contains image/video placeholder tokens; remove them")
        positions, delta = self._positions(ids, visual, media)
        return Prompt(ids, positions, media, visual, delta)

    def _positions(self, ids: torch.Tensor, visual: torch.Tensor,
                   media: list[VisualInput]) -> tuple[torch.Tensor, int]:
        """Qwen3-VL mRoPE ids [3, L]: every media block (an image, or one temporal patch of a video) is a grid of
        merged tokens placed at the running position p; the next text starts at p + max(rows, cols)."""
        merge = self.processor.merge_size
        grids = [(it.grid[1] // merge, it.grid[2] // merge) for it in media for _ in range(it.grid[0])]
        chunks, cur, i, L = [], 0, 0, ids.shape[0]
        starts = torch.nonzero(visual[1:] & ~visual[:-1]).flatten().add(1).tolist()
        starts = ([0] if L and bool(visual[0]) else []) + starts
        for start, (h, w) in zip(starts, grids):
            if start > i:  # text before this block
                chunks.append(torch.arange(cur, cur + start - i).expand(3, -1))
                cur += start - i
            rows = torch.arange(h).view(h, 1).expand(h, w).reshape(-1)
            cols = torch.arange(w).view(1, w).expand(h, w).reshape(-1)
            chunks.append(torch.stack([torch.zeros(h * w, dtype=torch.long), rows, cols]) + cur)
            cur += max(h, w)
            i = start + h * w
        if i < L:
            chunks.append(torch.arange(cur, cur + L - i).expand(3, -1))
        positions = torch.cat(chunks, dim=1).float()
        return positions, int(positions.max()) + 1 - L

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
    def decode_step(self, token: int, slot: int, prompt: Prompt, cache: KVCache) -> torch.Tensor:
        """One token at cache slot `slot` -> logits of the next token [V]."""
        model = self.model
        embeds = model.embed_tokens(torch.tensor([[token]], device=model.device))  # [1, 1, D]
        positions = torch.full((3, 1), float(slot + prompt.rope_delta))
        write_at = torch.tensor([slot], device=model.device)
        visible = (torch.arange(cache.capacity, device=model.device) <= slot).view(1, 1, 1, -1)
        hidden = model.und_forward(embeds, positions, cache, write_at, mask=visible)
        return model.logits(hidden[0, -1])

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
        """Decode from a built prompt, yielding text deltas; returns (StopIteration.value) the ChatOutput."""
        L = prompt.input_ids.shape[0]
        model = self.model
        cache = KVCache.allocate(model.config, 1, L + params.max_tokens, model.dtype, model.device)
        sampler = Sampler(params, model.config.vocab_size, prompt.input_ids, model.device)
        decoder = IncrementalDecoder(self.tokenizer)
        eos = set() if params.ignore_eos else set(self.tokenizer.eos_ids)
        text, emitted, tokens, finish, cut = "", 0, [], "length", None
        logits = self.prefill(prompt, cache)
        while True:
            token = sampler(logits)
            tokens.append(token)
            sampler.update(token)
            if token in eos:
                finish = "stop"
                break
            text += decoder.push(token)
            if (cut := _find_stop(text, params.stop, emitted)) is not None:
                text, finish = text[:cut], "stop"
                break
            safe = len(text) - _pending_stop_prefix(text, params.stop)  # hold back what may start a stop string
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
            if len(tokens) >= params.max_tokens:
                break
            logits = self.decode_step(token, L + len(tokens) - 1, prompt, cache)
        if cut is None:  # not cut by a stop string: bytes still pending in the decoder belong to the answer
            text += decoder.flush()
            if (cut := _find_stop(text, params.stop, emitted)) is not None:
                text, finish = text[:cut], "stop"
        if len(text) > emitted:
            yield text[emitted:]
        reasoning, answer = split_reasoning(text)
        usage = {"prompt_tokens": L, "completion_tokens": len(tokens), "total_tokens": L + len(tokens)}
        return ChatOutput(answer, reasoning, finish, usage, text, tokens)


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the earliest stop string begins in text[start:] (a match cannot begin in text already streamed,
    since a possible beginning is always held back), or None."""
    hits = [k for k in (text.find(s, start) for s in stops) if k >= 0]
    return min(hits) if hits else None


def _pending_stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that could still grow into a stop string (held back from the stream)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-n:]):
                best = n
                break
    return best


# ------------------------------------------------------------------------------------------------ command line


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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line
        return int(e.code or 0)
    try:
        for p in args.image + args.video:
            if not Path(p).is_file():
                raise ValueError(f"{p}: file not found")
        content = [{"type": "image", "image": p} for p in args.image]
        content += [{"type": "video", "video": p} for p in args.video]
        content.append({"type": "text", "text": args.question})
        reasoner = Reasoner.from_pretrained(args.checkpoint, device=args.device)
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
