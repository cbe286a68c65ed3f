"""The decode engine: rows over one static KV cache, a token-only core with the streaming text layer on top.

    engine = DecodeEngine(reasoner, batch=8, capacity=4096)
    row = engine.row(prompt, params)        # sampling state (seeded generator, penalties) + its TextStream
    engine.prefill([row, ...])              # into free cache rows, one forward; each row gets its first token
    while engine.active: engine.step()      # one forward for every active row; each samples its next token
    row.delta, row.done, row.output         # text added by the last call; finished? the ChatOutput

Every active row owns one row of the cache. Row i's token at cache slot s sits at position s + its prompt's rope
delta and attends over its own slots 0..s only, so rows of different lengths, joining and leaving between any two
calls, decode exactly as they would alone; the attention span is trimmed to the longest active row.

A row ends with "stop" (an end-of-turn id, or a stop string), "length" (max_tokens) or "error": its sampling failed
(non-finite scores from NaN logits or from a bad parameter such as temperature 1e-300). An error ends that row
alone; the other rows decode on. A forward that raises belongs to no row: it propagates to the caller.

The engine takes the network as `net`: `net.model` (config, dtype, device), `net.tokenizer`, `net.end_of_turn`,
`net.prefill_batch(prompts, cache) -> [n, V]` and `net.decode_batch(tokens, slots, rope_deltas, cache) -> [n, V]`
(the Reasoner).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..model import KVCache
from ..prompt import Prompt
from ..sampling import Sampler, SamplingParams
from .text import ChatOutput, TextStream, split_reasoning


def end_of_turn_ids(root: Path | None, fallback: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """The ids that end a turn: `eos_token_id` of the checkpoint's generation_config.json (at the root, or beside the
    tokenizer or the transformer) when it has one, else `fallback` (the tokenizer's <|im_end|> and <|endoftext|>)."""
    for folder in ([root, root / "text_tokenizer", root / "transformer"] if root is not None else []):
        path = folder / "generation_config.json"
        if not path.is_file():
            continue
        try:
            eos = json.loads(path.read_text()).get("eos_token_id")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{path}: not a JSON object ({e})") from None
        ids = [eos] if isinstance(eos, int) else eos
        if ids is None:
            continue
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and 0 <= i < vocab_size for i in ids):
            raise ValueError(f"{path}: eos_token_id {eos!r} is not a token id or a list of them (vocabulary "
                             f"{vocab_size})")
        return tuple(ids)
    return tuple(fallback)


@dataclass(eq=False)
class Row:
    """One sequence in the engine: its prompt, sampling state, text stream and what it produced so far."""

    prompt: Prompt
    params: SamplingParams
    sampler: Sampler
    text: TextStream
    tokens: list[int] = field(default_factory=list)  # generated ids, end-of-turn included
    index: int = -1  # its cache row while active
    delta: str = ""  # text the last prefill / step released
    output: ChatOutput | None = None  # once finished
    error: Exception | None = None  # why, when finish_reason is "error"

    @property
    def length(self) -> int:  # prompt tokens
        return self.prompt.input_ids.shape[0]

    @property
    def slot(self) -> int:  # where the next step writes its last token
        return self.length + len(self.tokens) - 1

    @property
    def done(self) -> bool:
        return self.output is not None


# ------------------------------------------------------------------------------------------ hot-loop helpers


def step_inputs(rows: list[Row | None]) -> tuple[list[int], list[int], list[int]]:
    """(tokens, slots, rope deltas) of one decode step over cache rows 0..len(rows)-1. A free row inside the span
    decodes a dummy token at its slot 0, which the next prefill of that row rewrites before anything reads it."""
    tokens = [r.tokens[-1] if r is not None else 0 for r in rows]
    slots = [r.slot if r is not None else 0 for r in rows]
    deltas = [r.prompt.rope_delta if r is not None else 0 for r in rows]
    return tokens, slots, deltas


def token_finish(token: int, count: int, params: SamplingParams, end_of_turn: frozenset[int]) -> str | None:
    """Whether the token just sampled (the count-th) ends the row by id alone: "stop" on end of turn, "length" at
    max_tokens (a stop string, found in the text, ends it too)."""
    if token in end_of_turn and not params.ignore_eos:
        return "stop"
    return "length" if count >= params.max_tokens else None


def _rows_view(cache: KVCache, start: int, n: int, span: int) -> KVCache:
    """Rows start..start+n-1, slots 0..span-1, as views (writes land in `cache`)."""
    return KVCache([k[start:start + n, :, :span] for k in cache.keys],
                   [v[start:start + n, :, :span] for v in cache.values])


# ------------------------------------------------------------------------------------------------ engine


class DecodeEngine:
    """`batch` rows of `capacity` slots each over `net`; single-threaded (the batcher's thread, or the caller's)."""

    def __init__(self, net, batch: int, capacity: int, end_of_turn: tuple[int, ...] | None = None):
        self.net = net
        model = net.model
        self.vocab_size = model.config.vocab_size
        self.cache = KVCache.allocate(model.config, batch, capacity, model.dtype, model.device)
        self.capacity = capacity
        self.rows: list[Row | None] = [None] * batch
        self.end_of_turn = frozenset(net.end_of_turn if end_of_turn is None else end_of_turn)
        self.steps = 0  # decode steps run (for tests and benchmarks)
        self.decoded = 0  # row-tokens decoded in those steps

    def row(self, prompt: Prompt, params: SamplingParams) -> Row:
        """A new row (not yet in the cache): ValueError when prompt + max_tokens does not fit a cache row."""
        L = prompt.input_ids.shape[0]
        if L + params.max_tokens > self.capacity:
            raise ValueError(f"prompt ({L} tokens) + max_tokens ({params.max_tokens}) is more than the context of "
                             f"{self.capacity} tokens")
        device = self.net.model.device
        return Row(prompt, params, Sampler(params, self.vocab_size, prompt.input_ids, device),
                   TextStream(self.net.tokenizer, params.stop))

    @property
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    @property
    def free(self) -> int:
        return len(self.rows) - self.active

    def drop(self, row: Row) -> None:
        """Stop decoding a row (its client went away); it gets no output."""
        if 0 <= row.index < len(self.rows) and self.rows[row.index] is row:
            self.rows[row.index] = None

    # ---------------------------------------------------------------------------------------- prefill / step

    def prefill(self, rows: list[Row]) -> list[Row]:
        """Run the rows' prompts in one forward into free cache rows; each samples its first token (`delta`, and
        `output` if that already ends it). If the forward raises, no row is placed and the exception propagates:
        the caller may retry the rows one by one to find the prompt that breaks it."""
        if not rows:
            return []
        free = [i for i, r in enumerate(self.rows) if r is None][:len(rows)]
        if len(free) < len(rows):
            raise ValueError(f"{len(rows)} rows to prefill, {len(free)} free")
        n, longest = len(rows), max(r.length for r in rows)
        prompts = [r.prompt for r in rows]
        direct = free == list(range(free[0], free[0] + n))  # contiguous rows: prefill in place, no copy
        try:
            if direct:
                logits = self.net.prefill_batch(prompts, _rows_view(self.cache, free[0], n, longest))
            else:
                model = self.net.model
                scratch = KVCache.allocate(model.config, n, longest, model.dtype, model.device)
                logits = self.net.prefill_batch(prompts, scratch)  # [n, V]
                for k, (i, r) in enumerate(zip(free, rows)):
                    for dst, src in zip(self.cache.keys + self.cache.values, scratch.keys + scratch.values):
                        dst[i, :, :r.length] = src[k, :, :r.length]
        except Exception:
            if direct:
                self._clear(free)
            raise
        for i, r in zip(free, rows):
            r.index = i
            self.rows[i] = r
        for k, r in enumerate(rows):
            self._advance(r, logits[k])
        return rows

    def step(self) -> list[Row]:
        """One decode step for every active row together -> those rows (each with its `delta`, done or not)."""
        live = [r for r in self.rows if r is not None]
        if not live:
            return []
        n = max(r.index for r in live) + 1
        tokens, slots, deltas = step_inputs(self.rows[:n])
        view = _rows_view(self.cache, 0, n, max(slots) + 1)
        logits = self.net.decode_batch(tokens, slots, deltas, view)  # [n, V]
        self.steps += 1
        self.decoded += len(live)
        for r in live:
            self._advance(r, logits[r.index])
        return live

    # ---------------------------------------------------------------------------------------- per row

    def _advance(self, row: Row, logits: torch.Tensor) -> None:
        """Sample row's next token from its logits [V] and release the text it adds; end the row when done."""
        row.delta = ""
        try:
            finish = self._next_token(row, logits)
        except Exception as e:  # SamplingError, or whatever a parameter that slipped through breaks: this row only
            return self._end(row, "error", e)
        if finish is not None:
            self._end(row, finish)

    def _next_token(self, row: Row, logits: torch.Tensor) -> str | None:
        token = row.sampler(logits)
        row.tokens.append(token)
        row.sampler.update(token)
        finish = token_finish(token, len(row.tokens), row.params, self.end_of_turn)
        if finish != "stop":  # an end-of-turn id adds no text
            row.delta = row.text.push(token)
            finish = "stop" if row.text.stopped else finish
        return finish

    def _end(self, row: Row, finish: str, error: Exception | None = None) -> None:
        self.rows[row.index] = None
        if error is None:
            row.delta += row.text.close()
            finish = "stop" if row.text.stopped else finish
        else:
            # Its keys/values may hold NaN; attention multiplies masked slots by zero, and 0 * NaN is NaN, so a
            # later request in this cache row would read them. Zero the row.
            self._clear([row.index])
        text = row.text.text
        reasoning, answer = split_reasoning(text)
        n = len(row.tokens)
        usage = {"prompt_tokens": row.length, "completion_tokens": n, "total_tokens": row.length + n}
        row.error = error
        row.output = ChatOutput(answer, reasoning, finish, usage, text, list(row.tokens),
                                None if error is None else str(error))

    def _clear(self, indices: list[int]) -> None:
        for t in self.cache.keys + self.cache.values:
            t[indices] = 0
