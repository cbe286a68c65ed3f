"""The FastAPI application (DESIGN 2.10): health, models, chat, prompt upsampling, images, sync and async videos.

    app = create_app(ServerConfig(checkpoint=..., storage=...))        # loads the models
    app = create_app(config, generator=gen, reasoner=rsn)              # or takes them ready-made (tests)

Routes live on module-level `APIRouter`s (system, chat, images, videos) and find the server's `ServerState` at
`request.app.state.cosmos3`. Heavy work never runs on the event loop: prompts and media are prepared in the thread
pool, chat decodes on the batcher thread, generation on the worker thread(s).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..generator import UPSAMPLE_INSTRUCTION, first_json_object
from .chat import completion_body, completion_id, prepare_chat, stream_chunks
from .config import ServerConfig
from .errors import APIError, CatchAll, from_value_error, install_error_handlers
from .generation import encode_image, image_kwargs
from .media_policy import Guardrail, refuse_if
from .queues import ChatRequest, GenTask, QueueFull
from .schemas import ChatCompletionRequest, ImageGenerationRequest, PromptUpsampleRequest
from .state import (ServerState, await_task, error_responses, generation_error, no_unknown_query, server_state,
                    submit_task)
from .videos import videos

log = logging.getLogger("cosmos3.serve")


# ------------------------------------------------------------------------------------------------ middleware


class BodyLimit:
    """413 for request bodies above `limit` bytes: from Content-Length when sent, else while the body streams in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = APIError(413, f"request body is larger than this server's limit of {self.limit} bytes",
                         code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await error.response()(scope, receive, send)
        state = {"seen": 0, "over": False, "answered": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    raise error
            return message

        async def guarded_send(message):
            if not state["over"]:
                return await send(message)
            if message["type"] == "http.response.start" and not state["answered"]:
                state["answered"] = True
                await error.response()(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
            if not state["answered"]:
                state["answered"] = True
                await error.response()(scope, receive, send)


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


# ------------------------------------------------------------------------------------------------ system

system = APIRouter(tags=["system"])


@system.get("/health")
async def health(request: Request):
    state = server_state(request)
    return {"status": "ok", "model": state.model_name, "generator": state.generator is not None,
            "reasoner": state.reasoner is not None,
            "generation_waiting": state.gen_queue.waiting if state.gen_queue else 0,
            "chat_active": state.batcher.active if state.batcher else 0,
            "chat_decode_steps": state.batcher.steps if state.batcher else 0,
            "chat_decoded_tokens": state.batcher.batched_tokens if state.batcher else 0}


@system.get("/v1/models", responses=error_responses())
async def models(request: Request):
    state = server_state(request)
    return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": 0,
                                        "owned_by": "cosmos3", "root": str(state.config.checkpoint or ""),
                                        "max_model_len": state.config.max_model_len}]}


# ------------------------------------------------------------------------------------------------ chat

chat = APIRouter(tags=["chat"])

_CHAT_EXAMPLES = {"text": {"summary": "a short text chat", "value": {
    "messages": [{"role": "user", "content": "Which block moves first?"}], "max_tokens": 4, "seed": 1}}}


@chat.post("/v1/chat/completions", responses=error_responses(404, 413, 429))
async def chat_completions(request: Request,
                           body: ChatCompletionRequest = Body(openapi_examples=_CHAT_EXAMPLES)):
    state = server_state(request)
    no_unknown_query(request)
    prompt, params, think = await run_in_threadpool(prepare_chat, state, body)
    req = _submit(state, ChatRequest(prompt, params))
    cid = completion_id()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(stream_chunks(req, cid, state.model_name, think, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return completion_body(cid, state.model_name, await _answer(req, "generation"))


def _submit(state, req: ChatRequest) -> ChatRequest:
    """Queue a chat request on the batcher: a full queue is a 429 to retry, a request it cannot take a 400."""
    try:
        state.batcher.submit(req)
    except QueueFull:
        raise APIError(429, "too many chat requests waiting; retry later", code="queue_full",
                       headers={"Retry-After": "1"}) from None
    except ValueError as e:
        raise from_value_error(e, "max_tokens") from None
    return req


async def _answer(req: ChatRequest, what: str):
    """Wait for a queued request's whole answer; the request is cancelled however this ends (a client gone)."""
    try:
        while True:
            kind, value = await req.events.get()
            if kind == "done":
                return value
            if kind == "error":
                raise APIError(500, f"{what} failed: {value}", code="internal_error")
    finally:
        req.cancelled.set()


# ------------------------------------------------------------------------------------------------ prompts

prompts = APIRouter(tags=["prompts"])

UPSAMPLE_MAX_TOKENS = 1024  # as Generator.upsample_prompt; capped by the room --max-model-len leaves
_UPSAMPLE_EXAMPLES = {"short": {"summary": "a short prompt", "value": {
    "prompt": "a robot arm stacks two blocks", "max_tokens": 4}}}


def _upsample_param(e: APIError, has_image: bool) -> APIError:
    """prepare_chat names the chat message it was given; name this request's own fields instead."""
    where = "messages[0].content[0]"
    if has_image and e.param and e.param.startswith(where):
        e.message, e.param = e.message.replace(where, "image_url"), "image_url"
    elif e.param and e.param.startswith("messages"):
        e.message, e.param = e.message.replace(e.param, "prompt"), "prompt"
    return e


@prompts.post("/v1/prompts/upsample", responses=error_responses(404, 413, 429))
async def prompts_upsample(request: Request,
                           body: PromptUpsampleRequest = Body(openapi_examples=_UPSAMPLE_EXAMPLES)):
    """The reasoner expands a short prompt into the release's structured JSON prompt: the instruction and greedy
    decoding of `Generator.upsample_prompt`, with the image (when given) before it. `prompt` is the JSON object
    found in the answer (`structured: true`), else the answer as it came (`structured: false`)."""
    state = server_state(request)
    no_unknown_query(request)
    state.check_prompt_chars(len(body.prompt), "prompt")
    content = [{"type": "image_url", "image_url": {"url": body.image_url}}] if body.image_url else []
    content.append({"type": "text", "text": UPSAMPLE_INSTRUCTION.format(prompt=body.prompt)})
    chat_body = ChatCompletionRequest(model=body.model, messages=[{"role": "user", "content": content}],
                                      max_tokens=body.max_tokens, temperature=0.0)
    try:
        prompt, params, _ = await run_in_threadpool(prepare_chat, state, chat_body)
    except APIError as e:
        raise _upsample_param(e, bool(body.image_url)) from None
    if body.max_tokens is None:
        room = state.config.max_model_len - int(prompt.input_ids.shape[0])
        params = params.replace(max_tokens=min(UPSAMPLE_MAX_TOKENS, room))
    value = await _answer(_submit(state, ChatRequest(prompt, params)), "upsampling")
    structured = first_json_object(value.text)
    return {"object": "prompt.upsample", "model": state.model_name,
            "prompt": json.dumps(structured) if structured is not None else value.text,
            "structured": structured is not None, "finish_reason": value.finish_reason, "usage": value.usage}


# ------------------------------------------------------------------------------------------------ images

images = APIRouter(tags=["images"])

_IMAGE_EXAMPLES = {"small": {"summary": "one small image", "value": {
    "prompt": "a red cube on a table", "size": "64x64", "num_inference_steps": 2, "seed": 3}}}


@images.post("/v1/images/generations", responses=error_responses(404, 413, 429))
async def images_generations(request: Request,
                             body: ImageGenerationRequest = Body(openapi_examples=_IMAGE_EXAMPLES)):
    state = server_state(request)
    no_unknown_query(request)
    state.check_prompt_chars(len(body.prompt), "prompt")
    state.check_prompt_chars(len(body.negative_prompt or ""), "negative_prompt")
    calls = await run_in_threadpool(image_kwargs, state, body)
    if state.gen_queue.waiting + len(calls) > state.config.max_queue:
        raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                       headers={"Retry-After": str(state.gen_queue.retry_after())})

    guard = state.request_guardrail(body.extra_args.guardrails if body.extra_args else None, "extra_args.guardrails")

    def finish(result):
        if guard is not None:  # face blur
            refuse_if(guard.check_output(result, "image"))
        return encode_image(result, body.output_format)

    tasks, data = [], []
    try:
        for kw in calls:
            tasks.append(submit_task(state, GenTask(f"img_{uuid.uuid4().hex}", kw, finish=finish)))
        for task in tasks:
            data.append({"b64_json": await await_task(request, task, state.gen_queue)})
    except BaseException as e:
        for task in tasks:
            state.gen_queue.cancel(task.id)
        raise generation_error(e) from None
    return {"created": int(time.time()), "data": data}


# ------------------------------------------------------------------------------------------------ app


def _openapi(app: FastAPI):
    """FastAPI's document without its 422 responses: this server answers validation failures with 400."""
    def build() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(config: ServerConfig, generator=None, reasoner=None, guardrail: Guardrail | None = None) -> FastAPI:
    if generator is None and reasoner is None:
        from .runtime import load_models

        generator, reasoner = load_models(config.checkpoint, config.device, config.weights)
    state = ServerState(config, generator, reasoner, guardrail)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        state.stop()

    app = FastAPI(title="cosmos3", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API for the Cosmos 3 reasoner and generator. Every error answers "
                              "{\"error\": {\"message\", \"type\", \"param\", \"code\"}}; validation failures are "
                              "400 (never 422).")
    app.state.cosmos3 = state
    install_error_handlers(app)

    @app.middleware("http")
    async def api_key(request: Request, call_next):
        if config.api_key and request.url.path.startswith("/v1") and not _authorized(request, config.api_key):
            return APIError(401, "missing or incorrect API key (send 'Authorization: Bearer <key>')",
                            code="invalid_api_key").response()
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.add_middleware(CatchAll)  # added last: the outermost of ours
    for router in (system, chat, prompts, images, videos):
        app.include_router(router)
    from .robot import robot  # the openpi robot-policy websocket (docs/ROBOTS.md)
    app.include_router(robot)
    from .playground import playground  # the page at / (docs/SERVING.md, "Playground")
    app.include_router(playground)
    app.openapi = _openapi(app)
    return app
