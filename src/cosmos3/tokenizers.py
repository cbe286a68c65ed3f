"""Tokenizers: the Qwen text tokenizer and its chat template (this part), then the video / audio VAE adapters.

Text part
---------
`TextTokenizer` wraps the checkpoint's fast (Rust) Qwen tokenizer as transformers loads it (tokenizer.json,
tokenizer_config.json, chat_template.jinja), so token ids and chat rendering are the reference's by construction.
What we add on top:
  - named access to the Qwen special tokens (DESIGN 2.1) read from the tokenizer itself, never hard-coded ids, so
    small test tokenizers with other ids work the same;
  - a ChatML template with Qwen3-VL's media placeholders for tokenizers that ship none;
  - `IncrementalDecoder`: streaming detokenization that never emits half a multi-byte character;
  - `byte_level_tokenizer()`: a hub-free byte-level Qwen2 tokenizer (256 byte tokens + the 26 Qwen3 special tokens
    in Qwen order) for tests, benchmarks and tiny models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The 26 special / added tokens of Qwen3 in id order (151643 ...): <|im_end|> is 151645, <|vision_start|> 151652,
# <|image_pad|> 151655, <|video_pad|> 151656. The flag says whether decoding with skip_special_tokens drops it:
# Qwen marks the tool/FIM/think markers as plain added tokens, so `<think>` survives decoding.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
)

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
THINK_START, THINK_END = "<think>", "</think>"

# ChatML with Qwen3-VL's media placeholders: one `<|vision_start|><|image_pad|><|vision_end|>` per image part and
# one `...<|video_pad|>...` per video part; the processor later expands each into the real number of tokens.
# Used only when the tokenizer ships no template of its own.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class TextTokenizer:
    """The checkpoint's Qwen tokenizer: encode / decode, chat template, special token ids."""

    def __init__(self, backend: Any):
        self.backend = backend  # a transformers fast tokenizer (TokenizersBackend)
        if not getattr(backend, "chat_template", None):
            backend.chat_template = CHATML_TEMPLATE
        missing = [t for t in (IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
                   if t not in backend.get_vocab()]
        if missing:
            raise ValueError(f"tokenizer lacks the Qwen special tokens {missing}; a Qwen3-VL tokenizer is required")
        self.im_end_id = self.token_id(IM_END)
        self.vision_start_id, self.vision_end_id = self.token_id(VISION_START), self.token_id(VISION_END)
        self.image_pad_id, self.video_pad_id = self.token_id(IMAGE_PAD), self.token_id(VIDEO_PAD)
        vocab = backend.get_vocab()
        # Generation ends at <|im_end|> (end of turn) or <|endoftext|> (end of document), as Qwen's generation config.
        self.eos_ids: tuple[int, ...] = tuple(vocab[t] for t in (IM_END, END_OF_TEXT) if t in vocab)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "TextTokenizer":
        from transformers import AutoTokenizer

        path = Path(path)
        if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
            raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json or vocab.json + merges.txt)")
        return cls(AutoTokenizer.from_pretrained(str(path)))

    def __len__(self) -> int:
        return len(self.backend)

    def token_id(self, token: str) -> int:
        ids = self.backend.convert_tokens_to_ids([token])
        if not ids or ids[0] is None or ids[0] == self.backend.unk_token_id and token != self.backend.unk_token:
            raise ValueError(f"token {token!r} is not in the tokenizer's vocabulary")
        return int(ids[0])

    def encode(self, text: str) -> list[int]:
        """Plain encoding: special tokens written in the text are recognized, nothing is added around it."""
        return list(self.backend.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        """Render messages (content = str, or parts {"type": "text"|"image"|"video"}) to the prompt string."""
        return self.backend.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                **kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.backend.save_pretrained(str(path))


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas whose concatenation is the full decoded text.

    Byte-level BPE splits many characters (accents, CJK, emoji) over several tokens; decoding such a token alone
    gives U+FFFD. A delta is therefore emitted only once the pending tokens decode to text that does not end in an
    incomplete character. The previous chunk is kept as left context so tokenizers whose decoding depends on the
    neighbour (leading-space markers) still give exact deltas.
    """

    def __init__(self, tokenizer: TextTokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.context = 0  # start of the already-emitted chunk kept as context
        self.emitted = 0  # tokens [0, emitted) have been turned into text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        before = self._decode(self.ids[self.context:self.emitted])
        after = self._decode(self.ids[self.context:])
        if after.endswith("\ufffd") or len(after) <= len(before) or not after.startswith(before):
            return ""  # an incomplete character (or nothing new yet): wait for the next token
        self.context, self.emitted = self.emitted, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """Whatever is still pending (e.g. a genuinely invalid byte sequence at the end), decoded as it is."""
        before = self._decode(self.ids[self.context:self.emitted])
        after = self._decode(self.ids[self.context:])
        self.context = self.emitted = len(self.ids)
        return after[len(before):] if after.startswith(before) else after


# --------------------------------------------------------------------------------------------- test tokenizer


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes, indexed by byte value (GPT-2's scheme):
    printable Latin-1 bytes stand for themselves, the others are shifted past 255."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    out, shift = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + shift))
            shift += 1
    return out


def byte_level_tokenizer(extra_tokens: int = 0) -> TextTokenizer:
    """A hub-free Qwen-compatible tokenizer: ids 0..255 are the bytes, then the 26 Qwen3 special tokens in Qwen
    order (so <|im_end|> is 258, <|image_pad|> 268, <|video_pad|> 269), a ChatML template with Qwen3-VL media
    placeholders, and `extra_tokens` unused ids reserved after them. No merges: every byte is one token, which also
    makes multi-byte characters span several tokens (what streaming must handle)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    # No special tokens at construction: they would take the first ids out of Qwen order.
    backend = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token=None, pad_token=None)
    backend.add_tokens([AddedToken(t, special=special, normalized=False) for t, special in QWEN_SPECIAL_TOKENS],
                       special_tokens=False)
    # add_tokens(special_tokens=False) keeps the per-token flag; the special ones must also be registered as such
    # so that skip_special_tokens drops them.
    backend.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                                              for t, s in QWEN_SPECIAL_TOKENS if s]})
    backend.eos_token, backend.pad_token = IM_END, END_OF_TEXT
    if extra_tokens:
        backend.add_tokens([f"<|reserved_{i}|>" for i in range(extra_tokens)])
    backend.chat_template = CHATML_TEMPLATE
    return TextTokenizer(backend)
