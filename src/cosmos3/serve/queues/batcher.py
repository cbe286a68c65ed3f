"""Continuous batching for chat: a thread, a bounded queue and admission around the decode engine (cosmos3.decode),
whose rows share one static KV cache and one forward per step.

Loop (one background thread):
  1. admit waiting requests into free rows: prefill them together, a few thousand padded prompt tokens per forward.
     If a group's prefill fails, its requests are retried one by one, so only the broken one fails;
  2. drop the rows whose client went away;
  3. one engine step for every active row; stream each row's text delta, and finish the rows that are done. A row
     whose sampling fails (non-finite scores) gets its own error; the others decode on.
A request joins or leaves between any two steps; the engine keeps rows of different lengths exact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

import torch

from ...decode import DecodeEngine, Row
from ...prompt import Prompt
from ...sampling import SamplingParams
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


def report(req: ChatRequest, row: Row) -> None:
    """Send what the engine's last call gave this row: its delta, then its end."""
    if row.delta:
        req.emit("delta", row.delta)
    if row.done:
        if row.error is not None:
            req.emit("error", row.error)
        else:
            req.emit("done", row.output)


class ChatBatcher:
    PREFILL_TOKENS = 4096  # padded prompt tokens per prefill forward: bounds its activations

    def __init__(self, reasoner, max_batch: int = 8, max_model_len: int = 4096, max_waiting: int = 64):
        self.reasoner = reasoner
        self.max_batch, self.max_model_len, self.max_waiting = max_batch, max_model_len, max_waiting
        self.engine = DecodeEngine(reasoner, max_batch, max_model_len)
        self.requests: dict[Row, ChatRequest] = {}  # while the row is in the engine
        self.waiting: deque[ChatRequest] = deque()
        self.cond = threading.Condition()
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
        return self.engine.active

    @property
    def steps(self) -> int:  # decode steps run (for tests, /metrics and benchmarks)
        return self.engine.steps

    @property
    def batched_tokens(self) -> int:  # tokens decoded in those steps
        return self.engine.decoded

    # -------------------------------------------------------------------------------------------- loop

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self._stop and not self.waiting and self.engine.active == 0:
                    self.cond.wait()
                if self._stop:
                    break
                admitted = [self.waiting.popleft() for _ in range(min(self.engine.free, len(self.waiting)))]
            try:
                with torch.inference_mode():
                    self._admit(admitted)
                    for row in list(self.engine.rows):
                        if row is not None and self.requests[row].cancelled.is_set():
                            self.engine.drop(row)
                            self.requests.pop(row)
                    self._report(self.engine.step())
            except Exception as e:  # a broken forward belongs to no one row: it fails the requests in it
                log.exception("chat decode step failed")
                for row in list(self.engine.rows):
                    if row is not None:
                        self.engine.drop(row)
                        self.requests.pop(row).emit("error", e)
        for req in list(self.requests.values()) + list(self.waiting):
            req.emit("error", RuntimeError("server shutting down"))

    def _report(self, rows: list[Row]) -> None:
        for row in rows:
            report(self.requests[row], row)
            if row.done:
                self.requests.pop(row)

    def _admit(self, admitted: list[ChatRequest]) -> None:
        group: list[ChatRequest] = []
        live = [r for r in admitted if not r.cancelled.is_set()]
        for req in sorted(live, key=lambda r: r.prompt.input_ids.shape[0]):
            longest = req.prompt.input_ids.shape[0]  # sorted: the newcomer is the group's longest
            if group and (len(group) + 1) * longest > self.PREFILL_TOKENS:
                self._prefill(group)
                group = []
            group.append(req)
        if group:
            self._prefill(group)

    def _prefill(self, group: list[ChatRequest]) -> None:
        rows: list[Row] = []
        try:
            for req in group:
                rows.append(self.engine.row(req.prompt, req.params))
                self.requests[rows[-1]] = req
            self.engine.prefill(rows)
        except Exception as e:
            for row in rows:
                self.requests.pop(row, None)
            if len(group) > 1:  # find the request that breaks it; the others still start
                for one in group:
                    self._prefill([one])
                return
            log.exception("chat prefill failed")
            group[0].emit("error", e)
            return
        self._report(rows)
