"""Continuous batching for chat: every active request owns one row of a shared static KV cache, and one forward
pass decodes the next token of all of them.

Loop (one background thread):
  1. admit waiting requests into free rows: prefill them together, a few thousand prompt tokens per forward (vision
     tower + prompts, right-padded), into a scratch cache copied into their rows; sample each one's first token. If
     a group's prefill fails, its requests are retried one by one, so only the broken one fails;
  2. one decode step for every active row together: tokens [n, 1], positions [n, 3, 1] (slot + the row's rope delta),
     keys/values written at each row's own slot, attention over the slots each row has filled;
  3. sample per row (each request keeps its own sampler and seed), stream text deltas, free finished rows.
A request joins or leaves between any two steps. Rows of different lengths are exact: a row only sees its own slots
0..slot, so what other rows (or earlier requests in the same row) left behind is never read. The attention span is
trimmed to the longest active row, so short requests do not pay for the cache's full capacity.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

import torch

from ...model import KVCache
from ...reasoner import ChatOutput, Prompt, _find_stop, _pending_stop_prefix, split_reasoning
from ...sampling import Sampler, SamplingParams
from ...tokenizers import IncrementalDecoder
from .worker import QueueFull

log = logging.getLogger("cosmos3.serve")


class ChatRequest:
    """One chat request's handle: events ("delta", str) ... then ("done", ChatOutput) or ("error", Exception) arrive
    on `events` (an asyncio queue of the caller's loop)."""

    def __init__(self, prompt: Prompt, params: SamplingParams, loop: asyncio.AbstractEventLoop | None = None):
        self.prompt, self.params = prompt, params
        self.loop = loop or asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def emit(self, kind: str, value) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the caller's loop is gone
            self.cancelled.set()


@dataclass
class _Row:
    req: ChatRequest
    sampler: Sampler
    decoder: IncrementalDecoder
    length: int  # prompt tokens
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    slot: int = 0  # where the next decode step writes (its token is tokens[-1])


class ChatBatcher:
    PREFILL_TOKENS = 4096  # padded prompt tokens per prefill forward: bounds its activations

    def __init__(self, reasoner, max_batch: int = 8, max_model_len: int = 4096, max_waiting: int = 64):
        self.reasoner = reasoner
        self.model = reasoner.model
        self.max_batch, self.max_model_len, self.max_waiting = max_batch, max_model_len, max_waiting
        self.cache = KVCache.allocate(self.model.config, max_batch, max_model_len, self.model.dtype,
                                      self.model.device)
        self.eos = set(reasoner.tokenizer.eos_ids)
        self.rows: list[_Row | None] = [None] * max_batch
        self.waiting: deque[ChatRequest] = deque()
        self.cond = threading.Condition()
        self.steps = 0  # decode steps run (for tests and benchmarks)
        self.batched_tokens = 0  # tokens decoded in those steps
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="cosmos3-chat", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self._thread.join(timeout)

    def submit(self, req: ChatRequest) -> None:
        L = req.prompt.input_ids.shape[0]
        if L + req.params.max_tokens > self.max_model_len:
            raise ValueError(f"prompt ({L} tokens) + max_tokens ({req.params.max_tokens}) is more than the "
                             f"server's context of {self.max_model_len} tokens")
        with self.cond:
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(1)
            self.waiting.append(req)
            self.cond.notify()

    @property
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    # -------------------------------------------------------------------------------------------- loop

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self._stop and not self.waiting and self.active == 0:
                    self.cond.wait()
                if self._stop:
                    break
                admitted = []
                for i in range(self.max_batch):
                    if self.rows[i] is None and self.waiting:
                        admitted.append((i, self.waiting.popleft()))
            try:
                with torch.inference_mode():
                    self._admit(admitted)
                    for i, row in enumerate(self.rows):
                        if row is not None and row.req.cancelled.is_set():
                            self.rows[i] = None
                    if self.active:
                        self._step()
            except Exception as e:  # a broken step fails the requests in it, never the server
                log.exception("chat decode step failed")
                for i, row in enumerate(self.rows):
                    if row is not None:
                        row.req.emit("error", e)
                        self.rows[i] = None
        for row in self.rows:
            if row is not None:
                row.req.emit("error", RuntimeError("server shutting down"))
        for req in self.waiting:
            req.emit("error", RuntimeError("server shutting down"))

    def _admit(self, admitted: list[tuple[int, ChatRequest]]) -> None:
        admitted = [(i, req) for i, req in admitted if not req.cancelled.is_set()]
        group: list[tuple[int, ChatRequest]] = []
        for i, req in sorted(admitted, key=lambda a: a[1].prompt.input_ids.shape[0]):
            longest = req.prompt.input_ids.shape[0]  # sorted: the newcomer is the group's longest
            if group and (len(group) + 1) * longest > self.PREFILL_TOKENS:
                self._prefill(group)
                group = []
            group.append((i, req))
        if group:
            self._prefill(group)

    def _prefill(self, group: list[tuple[int, ChatRequest]]) -> None:
        prompts = [req.prompt for _, req in group]
        longest = max(p.input_ids.shape[0] for p in prompts)
        scratch = KVCache.allocate(self.model.config, len(group), longest, self.model.dtype, self.model.device)
        try:
            logits = self.reasoner.prefill_batch(prompts, scratch)  # [n, V]
        except Exception as e:
            if len(group) > 1:  # find the request that breaks it; the others still start
                for one in group:
                    self._prefill([one])
                return
            log.exception("chat prefill failed")
            group[0][1].emit("error", e)
            return
        for n, (i, req) in enumerate(group):
            L = req.prompt.input_ids.shape[0]
            for dst, src in zip(self.cache.keys + self.cache.values, scratch.keys + scratch.values):
                dst[i, :, :L] = src[n, :, :L]
            self.rows[i] = _Row(req, Sampler(req.params, self.model.config.vocab_size, req.prompt.input_ids,
                                             self.model.device), IncrementalDecoder(self.reasoner.tokenizer), L)
            self._accept(i, logits[n])

    def _step(self) -> None:
        n = max(i for i, r in enumerate(self.rows) if r is not None) + 1
        rows = self.rows[:n]
        # Free rows inside the span decode a dummy token at slot 0 (their slot 0 is rewritten on the next prefill).
        tokens = [[r.tokens[-1] if r else 0] for r in rows]
        slots = [r.slot if r else 0 for r in rows]
        deltas = [r.req.prompt.rope_delta if r else 0 for r in rows]
        span = max(slots) + 1
        device = self.model.device
        cache = KVCache([k[:n, :, :span] for k in self.cache.keys], [v[:n, :, :span] for v in self.cache.values])
        embeds = self.model.embed_tokens(torch.tensor(tokens, device=device))  # [n, 1, D]
        positions = torch.tensor([float(s + d) for s, d in zip(slots, deltas)]).view(n, 1, 1).expand(n, 3, 1)
        write_at = torch.tensor(slots, device=device).view(n, 1)
        hidden = self.model.und_forward(embeds, positions, cache, write_at)
        logits = self.model.logits(hidden[:, -1])  # [n, V]
        self.steps += 1
        self.batched_tokens += sum(r is not None for r in rows)
        for i, r in enumerate(rows):
            if r is not None:
                self._accept(i, logits[i])

    def _accept(self, i: int, logits: torch.Tensor) -> None:
        """Sample row i's next token from `logits` and stream what it adds; finish the row when it is done."""
        row = self.rows[i]
        params = row.req.params
        token = row.sampler(logits)
        row.tokens.append(token)
        row.sampler.update(token)
        if token in self.eos and not getattr(params, "ignore_eos", False):
            return self._finish(i, "stop", cut=False)
        row.text += row.decoder.push(token)
        if (cut := _find_stop(row.text, params.stop, row.emitted)) is not None:
            row.text = row.text[:cut]
            return self._finish(i, "stop", cut=True)
        safe = len(row.text) - _pending_stop_prefix(row.text, params.stop)
        if safe > row.emitted:
            row.req.emit("delta", row.text[row.emitted:safe])
            row.emitted = safe
        if len(row.tokens) >= params.max_tokens:
            return self._finish(i, "length", cut=False)
        row.slot = row.length + len(row.tokens) - 1

    def _finish(self, i: int, finish: str, cut: bool) -> None:
        row = self.rows[i]
        self.rows[i] = None
        if not cut:  # bytes still pending in the decoder belong to the answer, unless a stop string cut it
            row.text += row.decoder.flush()
            if (at := _find_stop(row.text, row.req.params.stop, row.emitted)) is not None:
                row.text, finish = row.text[:at], "stop"
        if len(row.text) > row.emitted:
            row.req.emit("delta", row.text[row.emitted:])
        reasoning, answer = split_reasoning(row.text)
        n = len(row.tokens)
        usage = {"prompt_tokens": row.length, "completion_tokens": n, "total_tokens": row.length + n}
        row.req.emit("done", ChatOutput(answer, reasoning, finish, usage, row.text, list(row.tokens)))
