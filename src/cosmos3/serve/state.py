"""What every route of the server shares: the `ServerState` (configuration, models, queues, job store, media
policy), the helpers that submit and await generation tasks, and the documented error responses of the OpenAPI
schema."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from fastapi import Request
from pydantic import BaseModel

from ..diffusion import Cancelled
from .config import ServerConfig
from .errors import APIError, from_value_error
from .jobs import JobStore
from .media_policy import Guardrail, MediaPolicy
from .queues import ChatBatcher, GenerationQueue, GenTask, QueueFull

log = logging.getLogger("cosmos3.serve")


class ServerState:
    def __init__(self, config: ServerConfig, generator, reasoner, guardrail: Guardrail | None = None):
        self.config, self.generator, self.reasoner = config, generator, reasoner
        if guardrail is None:  # the built-in one unless --no-guardrails (docs/GUARDRAILS.md)
            guardrail = Guardrail.default(config.blocklist, config.guard_model, device=config.device) \
                if config.guardrails else Guardrail()
        self.guardrail = guardrail
        self.model_name = config.served_model_name or (Path(config.checkpoint).name if config.checkpoint
                                                       else "cosmos3")
        self.policy = MediaPolicy(config.allowed_local_media_paths, config.allow_remote_media,
                                  config.max_remote_bytes, config.remote_timeout_s, config.max_input_pixels,
                                  config.max_frames)
        config.storage.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(config.storage)
        self.tmp = config.storage / "tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.gen_queue = GenerationQueue(generator, config.max_queue, config.generation_workers) \
            if generator is not None else None
        self.batcher = ChatBatcher(reasoner, config.max_batch, config.max_model_len, config.max_chat_waiting) \
            if reasoner is not None else None
        self.max_token_chars = max_token_chars(reasoner, generator)

    def check_prompt_chars(self, chars: int, param: str) -> None:
        """Refuse text that cannot fit in max_prompt_tokens from its length alone, before tokenizing it (a token
        covers at most `max_token_chars` characters, and NFC normalization joins at most 4 code points into one)."""
        limit = self.config.max_prompt_tokens * self.max_token_chars * 4
        if chars > limit:
            raise APIError(400, f"{param}: {chars} characters cannot fit in this server's limit of "
                                f"{self.config.max_prompt_tokens} tokens (at most {limit} characters)",
                           param=param, code="prompt_too_long")

    def request_guardrail(self, asked: bool | None, param: str) -> Guardrail | None:
        """The guardrail for a request whose `guardrails` field is `asked` (None: not given): this server's, or None
        when the request turns it off, which only --allow-guardrails-off permits."""
        if asked is False:
            if getattr(self.guardrail, "active", True) and not self.config.allow_guardrails_off:
                raise APIError(400, f"{param}: this server does not let a request turn its guardrails off (it "
                                    "was started without --allow-guardrails-off)", param=param,
                               code="guardrails_required")
            return None
        if asked is True and not getattr(self.guardrail, "active", True):
            raise APIError(400, f"{param}: this server runs without guardrails (--no-guardrails)", param=param,
                           code="guardrails_unavailable")
        return self.guardrail

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_name:
            raise APIError(404, f"model {model!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    def start(self) -> None:
        interrupted = self.store.recover()
        if interrupted:
            log.warning("marked %d interrupted job(s) failed", len(interrupted))
        if self.gen_queue:
            self.gen_queue.start()
        if self.batcher:
            self.batcher.start()

    def stop(self) -> None:
        if self.gen_queue:
            self.gen_queue.stop()
        if self.batcher:
            self.batcher.stop()
        self.store.close()


def max_token_chars(reasoner, generator) -> int:
    """The longest token of the checkpoint's vocabulary, in characters (byte-level BPE: bytes), so that a text of
    N characters has at least N / this many tokens."""
    lengths = []
    for tok in (getattr(reasoner, "tokenizer", None), getattr(generator, "tokenizer", None)):
        backend = getattr(tok, "backend", tok)
        vocab = getattr(backend, "get_vocab", None)
        if vocab is not None:
            try:
                lengths.append(max(len(t) for t in vocab()))
            except (TypeError, ValueError):
                pass
    return max(lengths) if lengths else 256


# ------------------------------------------------------------------------------------------------ helpers


def no_unknown_query(request: Request, allowed: tuple[str, ...] = ()) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise APIError(400, f"unknown query parameter {name!r}", param=name, code="unknown_field")


async def await_task(request: Request, task: GenTask, queue: GenerationQueue):
    """Wait for a generation task; a client that disconnects cancels it."""
    fut = asyncio.wrap_future(task.future)
    while True:
        done, _ = await asyncio.wait({fut}, timeout=0.5)
        if done:
            return fut.result()
        if await request.is_disconnected():
            queue.cancel(task.id)  # a running task stops at its next step


def submit_task(state: ServerState, task: GenTask) -> GenTask:
    try:
        return state.gen_queue.submit(task)
    except QueueFull as e:
        raise APIError(429, f"the generation queue is full ({state.config.max_queue} waiting); retry later",
                       code="queue_full", headers={"Retry-After": str(e.retry_after)}) from None


def generation_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, Cancelled):
        return APIError(400, "the request was cancelled", code="cancelled")
    if isinstance(exc, ValueError):
        return from_value_error(exc)
    log.error("generation failed: %r", exc)
    return APIError(500, f"generation failed ({type(exc).__name__}: {exc})", code="generation_error")


# ------------------------------------------------------------------------------------------------ OpenAPI


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


_WHY = {400: "malformed request, unknown field, value out of range or above a server limit",
        401: "missing or wrong API key (when the server has one)",
        404: "unknown model, job or route", 409: "the video job is not completed",
        413: "request body above --max-upload-bytes, or an input image / video frame above --max-input-pixels",
        415: "neither multipart/form-data, a URL-encoded form nor JSON",
        429: "queue full; retry after the Retry-After header's seconds",
        500: "unexpected server failure (a bug); the connection stays usable"}


def error_responses(*codes: int) -> dict:
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in (400, 401, *codes, 500)}


def server_state(request: Request) -> ServerState:
    return request.app.state.cosmos3
