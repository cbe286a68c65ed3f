"""/v1/chat/completions: request -> reasoner prompt and sampling parameters; results -> OpenAI response bodies and
server-sent-event chunks."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import AsyncIterator

from ..decode import ThinkSplitter
from ..media import MediaError
from ..reasoner import DEFAULT_SYSTEM_PROMPT, ChatOutput
from ..sampling import PLAIN, REASONING
from .errors import APIError, from_value_error
from .media_policy import refuse_if
from .queues import ChatRequest
from .schemas import ChatCompletionRequest

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "presence_penalty", "repetition_penalty", "max_tokens",
                    "seed", "stop")


def prepare_chat(state, body: ChatCompletionRequest):
    """Validate and build (prompt, sampling params, think). Runs in a worker thread: media are decoded here."""
    if (err := body.unsupported()) is not None:
        raise err
    state.check_model(body.model)
    if state.reasoner is None:
        raise APIError(400, "this checkpoint has no reasoner", code="unsupported")
    chars = sum(len(m.content) if isinstance(m.content, str) else
                sum(len(part.text) for part in m.content if part.type == "text") for m in body.messages)
    state.check_prompt_chars(chars, "messages")  # before any tokenizing: an 8 MB prompt is refused at once
    messages = []
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            refuse_if(state.guardrail.check_prompt(m.content, "chat"), f"messages[{i}].content")
            messages.append({"role": m.role, "content": m.content})
            continue
        parts = []
        for j, part in enumerate(m.content):
            where = f"messages[{i}].content[{j}]"
            if part.type == "text":
                refuse_if(state.guardrail.check_prompt(part.text, "chat"), where)
                parts.append({"type": "text", "text": part.text})
            else:
                kind = part.type[:-4]  # image / video
                url = getattr(part, part.type).url
                resolved = state.policy.resolve_url(url, where, kind)
                state.policy.check_chat_media(resolved, where, kind)  # kind and pixels, before any decoding
                parts.append({"type": part.type, part.type: {"url": resolved}})
        messages.append({"role": m.role, "content": parts})
    think = bool(body.chat_template_kwargs and body.chat_template_kwargs.enable_thinking)
    video = body.media_io_kwargs.video if body.media_io_kwargs and body.media_io_kwargs.video else None
    max_tokens = body.max_tokens or body.max_completion_tokens
    fields = {k: getattr(body, k) for k in _SAMPLING_FIELDS if k != "max_tokens"}
    try:
        params = (REASONING if think else PLAIN).replace(**fields)
    except ValueError as e:
        raise from_value_error(e, str(e).split("=", 1)[0] if "=" in str(e) else None) from None
    try:
        prompt = state.reasoner.build_prompt(messages, video.fps if video else None,
                                             video.num_frames if video else None, DEFAULT_SYSTEM_PROMPT, think)
    except (MediaError, ValueError) as e:
        raise from_value_error(e, "messages") from None
    cfg = state.config
    L = int(prompt.input_ids.shape[0])
    if L > cfg.max_prompt_tokens:
        raise APIError(400, f"the prompt has {L} tokens, more than this server's limit of {cfg.max_prompt_tokens}",
                       param="messages", code="prompt_too_long")
    room = cfg.max_model_len - L
    if max_tokens is None:
        max_tokens = min(cfg.default_max_tokens, room)
    if max_tokens > room or room < 1:
        raise APIError(400, f"prompt ({L} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                            f"{cfg.max_model_len} tokens", param="max_tokens", code="context_length_exceeded")
    params = params.replace(max_tokens=max_tokens)
    if body.ignore_eos:
        if "ignore_eos" not in type(params).__dataclass_fields__:
            raise APIError(400, "ignore_eos is not supported by this version", param="ignore_eos",
                           code="unsupported")
        params = dataclasses.replace(params, ignore_eos=True)
    return prompt, params, think


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def completion_body(cid: str, model: str, out: ChatOutput) -> dict:
    message = {"role": "assistant", "content": out.text}
    if out.reasoning is not None:
        message["reasoning_content"] = out.reasoning
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": out.finish_reason, "logprobs": None}],
            "usage": out.usage}


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def stream_chunks(req: ChatRequest, cid: str, model: str, think: bool,
                        include_usage: bool) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    split = ThinkSplitter(think)
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await req.events.get()
            if kind == "delta":
                for key, text in split.push(value):
                    yield chunk({key: text})
            elif kind == "done":
                for key, text in split.flush():
                    yield chunk({key: text})
                yield chunk({}, value.finish_reason)
                if include_usage:
                    yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [], "usage": value.usage})
                break
            else:
                yield _sse(APIError(500, f"generation failed: {value}", code="internal_error").body())
                break
        yield _sse("[DONE]")
    finally:
        req.cancelled.set()  # a client that went away frees its batch row at the next step
