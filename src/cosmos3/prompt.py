"""From OpenAI-style messages to the reasoner's prompt: normalized parts, the chat template with each media
placeholder expanded to Qwen3-VL's tokens, and the mRoPE position ids.

Positions (Qwen3-VL): text counts up on all three axes; a media block of h x w merged tokens starting at running
position p gets T = p, H = p + row, W = p + column, and the text after it resumes at p + max(h, w). A video is one
`<t seconds>` + block per temporal patch. Decoding then places the token at cache slot s at s + rope_delta.

Media loading (paths, data URIs, arrays -> pixels) is the Reasoner's; this module only sees processed VisualInputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .model.vision import VisualInput
from .tokenizers import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, TextTokenizer

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# Appended to the last user turn when thinking is asked for (the Cosmos-Reason answer format).
REASONING_INSTRUCTION = ("Answer the question using the following format:\n\n<think>\nYour reasoning.\n</think>\n\n"
                         "Write your final answer immediately after the </think> tag.")
_IMAGE_BLOCK = VISION_START + IMAGE_PAD + VISION_END
_VIDEO_BLOCK = VISION_START + VIDEO_PAD + VISION_END


@dataclass
class Prompt:
    input_ids: torch.Tensor  # [L] long
    positions: torch.Tensor  # [3, L] float32
    media: list[VisualInput]  # in order of appearance
    visual_mask: torch.Tensor  # [L] bool, the media tokens
    rope_delta: int  # decode token at cache slot s has position s + rope_delta on every axis


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


def assemble(tokenizer: TextTokenizer, chat: list[dict], media: list[VisualInput], merge: int) -> Prompt:
    """Normalized messages and their processed media (in order) -> the Prompt: template, placeholders expanded,
    token ids, media mask and mRoPE positions."""
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True)
    # Expand each placeholder into its tokens, in order; the template must have kept every media part.
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
    ids = torch.tensor(tokenizer.encode("".join(pieces)), dtype=torch.long)
    visual = (ids == tokenizer.image_pad_id) | (ids == tokenizer.video_pad_id)
    if int(visual.sum()) != sum(item.num_tokens(merge) for item in media):
        raise ValueError("the prompt's own text contains image/video placeholder tokens; remove them")
    positions, delta = mrope_positions(ids, visual, media, merge)
    return Prompt(ids, positions, media, visual, delta)


def mrope_positions(ids: torch.Tensor, visual: torch.Tensor, media: list[VisualInput],
                    merge: int) -> tuple[torch.Tensor, int]:
    """Qwen3-VL mRoPE ids [3, L] and the decode delta: every media block (an image, or one temporal patch of a
    video) is a grid of merged tokens placed at the running position p; the next text starts at p + max(rows, cols)."""
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
