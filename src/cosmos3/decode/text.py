"""The streaming text layer over the token engine: token ids -> text deltas, stop strings, the `<think>` split.

Everything that streams must hold back the end of its text while it could still turn into something that changes
what was already sent (a stop string that cuts the answer, a `</think>` that moves text from reasoning to content).
`held_back` is that one rule; `TextStream` (per row: detokenize, cut at stop strings) and `ThinkSplitter` (per
client stream: reasoning vs content) both use it, so a partial tag or stop string split over token boundaries is
handled the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tokenizers import IncrementalDecoder, TextTokenizer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass
class ChatOutput:
    text: str  # the answer (after </think> when the model reasoned)
    reasoning: str | None  # what stood between <think> and </think>, or None
    finish_reason: str  # "stop" (end of turn or a stop string), "length" (max_tokens) or "error" (sampling failed)
    usage: dict[str, int]  # prompt_tokens, completion_tokens, total_tokens
    raw_text: str = ""  # the completion as generated (what the stream's deltas add up to)
    token_ids: list[int] = field(default_factory=list)  # generated ids, end-of-turn token included
    error: str | None = None  # why, when finish_reason is "error"


def held_back(text: str, patterns: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is a proper beginning of one of `patterns`: it may still grow into
    that pattern, so it must not be sent yet."""
    best = 0
    for s in patterns:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the earliest stop string begins in text[start:], or None. A match cannot begin before `start` (the text
    already sent), since a possible beginning is always held back."""
    hits = [k for k in (text.find(s, start) for s in stops) if k >= 0]
    return min(hits) if hits else None


def split_reasoning(text: str) -> tuple[str | None, str]:
    """'<think> r </think> answer' -> ('r', 'answer'). A template may open <think> itself, so a lone '</think>'
    also splits; an unclosed '<think>' (cut by max_tokens) is all reasoning."""
    if THINK_CLOSE in text:
        head, answer = text.split(THINK_CLOSE, 1)
        head = head.strip()
        return (head[len(THINK_OPEN):] if head.startswith(THINK_OPEN) else head).strip(), answer.strip()
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        return stripped[len(THINK_OPEN):].strip(), ""
    return None, text


class TextStream:
    """One row's text: token ids in, deltas out whose concatenation is the completion, cut before the first stop
    string. `stopped` once a stop string was found; `close()` releases what is still held back."""

    def __init__(self, tokenizer: TextTokenizer, stop: tuple[str, ...] = ()):
        self.decoder = IncrementalDecoder(tokenizer)
        self.stop = tuple(stop)
        self.text, self.sent, self.stopped = "", 0, False

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent:upto], upto
        return delta

    def _cut(self) -> bool:
        at = find_stop(self.text, self.stop, self.sent) if self.stop else None
        if at is not None:
            self.text, self.stopped = self.text[:at], True
        return at is not None

    def push(self, token: int) -> str:
        """A generated (non end-of-turn) token -> the text that is now safe to send (nothing once stopped)."""
        if self.stopped:
            return ""
        self.text += self.decoder.push(token)
        if self._cut():
            return self._release(len(self.text))
        return self._release(len(self.text) - held_back(self.text, self.stop))

    def close(self) -> str:
        """The row is done: bytes still pending in the decoder belong to the answer unless a stop string already cut
        it (they may complete a stop string too)."""
        if not self.stopped:
            self.text += self.decoder.flush()
            self._cut()
        return self._release(len(self.text))


class ThinkSplitter:
    """Routes streamed text to `reasoning_content` until '</think>', then to `content`. `<think>` itself is dropped;
    a tag split over deltas is held back until it is complete (or turns out not to be a tag)."""

    def __init__(self, enabled: bool):
        self.in_reasoning, self.pending = enabled, ""
        self.strip = False  # right after '</think>': the blank lines before the answer are not content

    def push(self, text: str) -> list[tuple[str, str]]:
        if not self.in_reasoning:
            if self.strip:
                text = text.lstrip("\n")
                self.strip = not text
            return [("content", text)] if text else []
        buf = self.pending + text
        if THINK_CLOSE in buf:
            head, tail = buf.split(THINK_CLOSE, 1)
            self.in_reasoning, self.pending = False, ""
            head, tail = head.replace(THINK_OPEN, ""), tail.lstrip("\n")
            self.strip = not tail
            return ([("reasoning_content", head)] if head else []) + ([("content", tail)] if tail else [])
        keep = held_back(buf, (THINK_OPEN, THINK_CLOSE))
        self.pending = buf[len(buf) - keep:]
        head = buf[:len(buf) - keep].replace(THINK_OPEN, "")
        return [("reasoning_content", head)] if head else []

    def flush(self) -> list[tuple[str, str]]:
        out = [("reasoning_content" if self.in_reasoning else "content", self.pending)] if self.pending else []
        self.pending = ""
        return out
