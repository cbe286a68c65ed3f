"""The FastAPI application (DESIGN 2.10): health, models, chat, images, sync and async videos.

    app = create_app(ServerConfig(checkpoint=..., storage=...))        # loads the models
    app = create_app(config, generator=gen, reasoner=rsn)              # or takes them ready-made (tests)

Routes live on module-level `APIRouter`s (system, chat, images, videos) and find the server's `ServerState` at
`request.app.state.cosmos3`. Heavy work never runs on the event loop: prompts and media are prepared in the thread
pool, chat decodes on the batcher thread, generation on the worker thread(s).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from typing import Literal

from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..diffusion import Cancelled
from .chat import completion_body, completion_id, prepare_chat, stream_chunks
from .config import ServerConfig
from .errors import APIError, CatchAll, from_value_error, install_error_handlers, short
from .generation import encode_image, image_kwargs, save_outputs, save_reference, video_request
from .jobs import JobStore
from .media_policy import Guardrail, MediaPolicy, refuse_if
from .queues import ChatBatcher, ChatRequest, GenerationQueue, GenTask, QueueFull
from .schemas import MAX_JSON_DEPTH, ChatCompletionRequest, ImageGenerationRequest, VideoRequest, parse_model

log = logging.getLogger("cosmos3.serve")


class ServerState:
    def __init__(self, config: ServerConfig, generator, reasoner, guardrail: Guardrail | None = None):
        self.config, self.generator, self.reasoner = config, generator, reasoner
        self.guardrail = guardrail or Guardrail()
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
        self.max_token_chars = _max_token_chars(reasoner, generator)

    def check_prompt_chars(self, chars: int, param: str) -> None:
        """Refuse text that cannot fit in max_prompt_tokens from its length alone, before tokenizing it (a token
        covers at most `max_token_chars` characters, and NFC normalization joins at most 4 code points into one)."""
        limit = self.config.max_prompt_tokens * self.max_token_chars * 4
        if chars > limit:
            raise APIError(400, f"{param}: {chars} characters cannot fit in this server's limit of "
                                f"{self.config.max_prompt_tokens} tokens (at most {limit} characters)",
                           param=param, code="prompt_too_long")

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


def _max_token_chars(reasoner, generator) -> int:
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


# ------------------------------------------------------------------------------------------------ helpers


def _no_unknown_query(request: Request, allowed: tuple[str, ...] = ()) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise APIError(400, f"unknown query parameter {name!r}", param=name, code="unknown_field")


async def _await_task(request: Request, task: GenTask, queue: GenerationQueue):
    """Wait for a generation task; a client that disconnects cancels it."""
    fut = asyncio.wrap_future(task.future)
    while True:
        done, _ = await asyncio.wait({fut}, timeout=0.5)
        if done:
            return fut.result()
        if await request.is_disconnected():
            queue.cancel(task.id)  # a running task stops at its next step


def _submit(state: ServerState, task: GenTask) -> GenTask:
    try:
        return state.gen_queue.submit(task)
    except QueueFull as e:
        raise APIError(429, f"the generation queue is full ({state.config.max_queue} waiting); retry later",
                       code="queue_full", headers={"Retry-After": str(e.retry_after)}) from None


def _generation_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, Cancelled):
        return APIError(400, "the request was cancelled", code="cancelled")
    if isinstance(exc, ValueError):
        return from_value_error(exc)
    log.error("generation failed: %r", exc)
    return APIError(500, f"generation failed ({type(exc).__name__}: {exc})", code="generation_error")


async def _read_video_form(request: Request, state: ServerState) -> tuple[dict, UploadFile | str | None]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise APIError(400, "request body is not valid JSON", code="invalid_json") from None
        except RecursionError:
            raise APIError(400, f"request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                           code="invalid_json") from None
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object", code="invalid_json")
        return data, data.pop("input_reference", None)
    if not (ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded")):
        raise APIError(415, "send multipart/form-data (or application/json)", code="unsupported_media_type")
    boundary = _boundary(ctype) if ctype.startswith("multipart/form-data") else None
    tail = bytearray()

    async def receive():  # keeps the body's last bytes: the closing boundary must be there
        message = await request.receive()
        if message["type"] == "http.request" and boundary:
            tail.extend(message.get("body", b""))
            del tail[:-(len(boundary) + 16)]
        return message

    try:
        form = await Request(request.scope, receive).form(max_files=2, max_fields=64,
                                                          max_part_size=state.config.max_upload_bytes)
    except APIError:
        raise
    except Exception as e:
        raise APIError(400, f"malformed form data ({e})", code="invalid_form") from None
    if boundary and not bytes(tail).rstrip(b"\r\n\t ").endswith(b"--" + boundary + b"--"):
        await form.close()
        raise APIError(400, "multipart body is incomplete: it does not end with its closing boundary "
                            "('--BOUNDARY--')", code="invalid_form")
    data, reference = {}, None
    for key in set(form.keys()):
        values = form.getlist(key)
        if len(values) > 1:
            raise APIError(400, f"field {key!r} given {len(values)} times", param=key, code="duplicate_field")
        if key == "input_reference":
            reference = values[0]
        elif isinstance(values[0], UploadFile):
            raise APIError(400, f"field {key!r} must not be a file", param=key)
        else:
            data[key] = values[0]
    return data, reference


def _boundary(ctype: str) -> bytes | None:
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip().strip('"').encode("latin-1", "replace")
    return None


async def _reference_bytes(state: ServerState, reference) -> bytes | None:
    if reference is None:
        return None
    if isinstance(reference, UploadFile):
        data = await reference.read()
    elif isinstance(reference, str) and reference:
        import base64

        url = await run_in_threadpool(state.policy.resolve_url, reference, "input_reference", "video")
        if url.startswith("data:"):
            try:
                data = base64.b64decode(url.split(",", 1)[1], validate=True)
            except (ValueError, IndexError):
                raise APIError(400, "input_reference: malformed data URI", param="input_reference") from None
        else:
            data = Path(url).read_bytes()
    else:
        raise APIError(400, "input_reference: expected a file upload, an allowed path or a data URI",
                       param="input_reference")
    if not data:
        raise APIError(400, "input_reference is empty", param="input_reference", code="invalid_media")
    return data


async def _prepare_video(request: Request, state: ServerState, folder: Path) -> tuple:
    """-> (the request body, explicit Generator.generate arguments, sampling runs)."""
    data, reference = await _read_video_form(request, state)
    body = parse_model(VideoRequest, data)
    state.check_prompt_chars(len(body.prompt), "prompt")
    state.check_prompt_chars(len(body.negative_prompt or ""), "negative_prompt")
    payload = await _reference_bytes(state, reference)
    ref = None
    if payload is not None:
        ref = await run_in_threadpool(save_reference, state, payload, folder)
    req = await run_in_threadpool(video_request, state, body, ref)
    return body, req.as_kwargs(), req.chunks


def job_body(row: dict, task: GenTask | None = None) -> dict:
    """A job row as the API shows it; `task`: its live generation task, whose step counts are newer than the row's
    (the row is written when the percentage changes)."""
    req, res = row["request"] or {}, row["result"] or {}
    width, height = res.get("width") or req.get("width"), res.get("height") or req.get("height")
    frames, fps = res.get("num_frames") or req.get("num_frames"), res.get("fps") or req.get("fps")
    out = {"id": row["id"], "object": "video", "created_at": row["created_at"], "completed_at": row["completed_at"],
           "expires_at": None, "status": row["status"], "progress": row["progress"], "model": row["model"],
           "step": row.get("step") or 0, "steps": row.get("steps"),
           "prompt": req.get("prompt"), "size": f"{width}x{height}" if width and height else None,
           "seconds": f"{frames / fps:.2f}" if frames and fps else None, "num_frames": frames, "fps": fps,
           "seed": req.get("seed"), "error": row["error"], "remixed_from_video_id": None}
    if task is not None and row["status"] == "in_progress" and task.steps:
        out.update(progress=max(out["progress"], min(task.progress, 99)), step=task.step, steps=task.steps)
    if res.get("action") is not None:
        out["action"] = res["action"]
    return out


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


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in (400, 401, *codes, 500)}


def _state(request: Request) -> ServerState:
    return request.app.state.cosmos3


# ------------------------------------------------------------------------------------------------ system

system = APIRouter(tags=["system"])


@system.get("/health")
async def health(request: Request):
    state = _state(request)
    return {"status": "ok", "model": state.model_name, "generator": state.generator is not None,
            "reasoner": state.reasoner is not None,
            "generation_waiting": state.gen_queue.waiting if state.gen_queue else 0,
            "chat_active": state.batcher.active if state.batcher else 0,
            "chat_decode_steps": state.batcher.steps if state.batcher else 0,
            "chat_decoded_tokens": state.batcher.batched_tokens if state.batcher else 0}


@system.get("/v1/models", responses=_errors())
async def models(request: Request):
    state = _state(request)
    return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": 0,
                                        "owned_by": "cosmos3", "root": str(state.config.checkpoint or ""),
                                        "max_model_len": state.config.max_model_len}]}


# ------------------------------------------------------------------------------------------------ chat

chat = APIRouter(tags=["chat"])

_CHAT_EXAMPLES = {"text": {"summary": "a short text chat", "value": {
    "messages": [{"role": "user", "content": "Which block moves first?"}], "max_tokens": 4, "seed": 1}}}


@chat.post("/v1/chat/completions", responses=_errors(404, 413, 429))
async def chat_completions(request: Request,
                           body: ChatCompletionRequest = Body(openapi_examples=_CHAT_EXAMPLES)):
    state = _state(request)
    _no_unknown_query(request)
    prompt, params, think = await run_in_threadpool(prepare_chat, state, body)
    req = ChatRequest(prompt, params)
    try:
        state.batcher.submit(req)
    except QueueFull:
        raise APIError(429, "too many chat requests waiting; retry later", code="queue_full",
                       headers={"Retry-After": "1"}) from None
    except ValueError as e:
        raise from_value_error(e, "max_tokens") from None
    cid = completion_id()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(stream_chunks(req, cid, state.model_name, think, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        while True:
            kind, value = await req.events.get()
            if kind == "done":
                return completion_body(cid, state.model_name, value)
            if kind == "error":
                raise APIError(500, f"generation failed: {value}", code="internal_error")
    finally:
        req.cancelled.set()


# ------------------------------------------------------------------------------------------------ images

images = APIRouter(tags=["images"])

_IMAGE_EXAMPLES = {"small": {"summary": "one small image", "value": {
    "prompt": "a red cube on a table", "size": "64x64", "num_inference_steps": 2, "seed": 3}}}


@images.post("/v1/images/generations", responses=_errors(404, 413, 429))
async def images_generations(request: Request,
                             body: ImageGenerationRequest = Body(openapi_examples=_IMAGE_EXAMPLES)):
    state = _state(request)
    _no_unknown_query(request)
    state.check_prompt_chars(len(body.prompt), "prompt")
    state.check_prompt_chars(len(body.negative_prompt or ""), "negative_prompt")
    calls = await run_in_threadpool(image_kwargs, state, body)
    if state.gen_queue.waiting + len(calls) > state.config.max_queue:
        raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                       headers={"Retry-After": str(state.gen_queue.retry_after())})

    def finish(result):
        refuse_if(state.guardrail.check_output(result, "image"))
        return encode_image(result, body.output_format)

    tasks, data = [], []
    try:
        for kw in calls:
            tasks.append(_submit(state, GenTask(f"img_{uuid.uuid4().hex}", kw, finish=finish)))
        for task in tasks:
            data.append({"b64_json": await _await_task(request, task, state.gen_queue)})
    except BaseException as e:
        for task in tasks:
            state.gen_queue.cancel(task.id)
        raise _generation_error(e) from None
    return {"created": int(time.time()), "data": data}


# ------------------------------------------------------------------------------------------------ videos

videos = APIRouter(tags=["videos"])


def _video_form_schema() -> dict:
    """The form fields of the video endpoints, from `VideoRequest` itself (bounds and enums included), so the
    document cannot drift from what is enforced; `extra_params` travels as JSON text, `input_reference` as a file."""
    schema = VideoRequest.model_json_schema()
    props = {}
    for name, prop in schema["properties"].items():
        options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
        field = dict(options[0]) if len(options) == 1 else {"anyOf": options}
        for key in ("description", "examples", "default"):
            if key in prop and prop[key] is not None:
                field[key] = prop[key]
        props[name] = field
    props["extra_params"] = {
        "type": "string", "description": "JSON object: action_mode (policy | forward_dynamics | inverse_dynamics), "
        "domain_name, raw_action_dim, action_chunk_size, action, action_path, condition_frame_indexes_vision, "
        "condition_video_keep (first | last), use_resolution_template, use_duration_template, use_system_prompt, "
        f"guardrails; nested at most {MAX_JSON_DEPTH} levels"}
    props["input_reference"] = {"type": "string", "format": "binary",
                                "description": "image (PNG / JPEG / WEBP) or MP4 file, or an allowed path / data URI "
                                               "as text"}
    return {"type": "object", "properties": props, "additionalProperties": False}


_VIDEO_EXAMPLE = {"prompt": "a red block slides left", "size": "64x64", "num_frames": 5, "num_inference_steps": 2,
                  "seed": 5}


def _video_form_doc() -> dict:
    schema = _video_form_schema()
    media = {"schema": schema, "examples": {"small": {"summary": "a short, small clip", "value": _VIDEO_EXAMPLE}}}
    return {"requestBody": {"content": {"multipart/form-data": media,
                                        "application/x-www-form-urlencoded": {"schema": schema}},
                            "required": True}}


@videos.post("/v1/videos/sync", openapi_extra=_video_form_doc(),
             responses={200: {"content": {"video/mp4": {}}, "description": "the MP4 (JSON for inverse dynamics)"},
                        **_errors(404, 413, 415, 429)})
async def videos_sync(request: Request):
    state = _state(request)
    _no_unknown_query(request)
    folder = state.tmp / uuid.uuid4().hex
    try:
        _, kwargs, _ = await _prepare_video(request, state, folder)
        task = _submit(state, GenTask(f"sync_{uuid.uuid4().hex}", kwargs,
                                      finish=lambda r: save_outputs(state, r, kwargs, folder)))
        try:
            result = await _await_task(request, task, state.gen_queue)
        except BaseException as e:
            state.gen_queue.cancel(task.id)
            raise _generation_error(e) from None
        if result["video"] is None:
            return JSONResponse({"action": result.get("action"), "num_frames": result["num_frames"]})
        data = (folder / result["video"]).read_bytes()
        return Response(data, media_type="video/mp4")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@videos.post("/v1/videos", openapi_extra=_video_form_doc(), responses=_errors(404, 413, 415, 429))
async def videos_create(request: Request):
    state = _state(request)
    _no_unknown_query(request)
    job_id = state.store.new_id()
    folder = state.store.job_dir(job_id)
    try:
        body, kwargs, runs = await _prepare_video(request, state, folder)
        if state.gen_queue.waiting >= state.config.max_queue:
            raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                           headers={"Retry-After": str(state.gen_queue.retry_after())})
        record = {k: v for k, v in kwargs.items() if k not in ("actions",)}
        row = state.store.create(job_id, record, state.model_name, steps=kwargs["num_inference_steps"] * runs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    task = GenTask(job_id, kwargs, finish=lambda r: save_outputs(state, r, kwargs, folder),
                   on_start=lambda: state.store.set_running(job_id),
                   on_progress=lambda p, k, n: state.store.set_progress(job_id, p, k, n), runs=runs)

    def done(fut):
        exc = fut.exception()
        if exc is None:
            if not state.store.finish(job_id, "completed", result=fut.result()) and \
                    state.store.get(job_id) is None:  # deleted while its outputs were being written
                shutil.rmtree(folder, ignore_errors=True)
        elif isinstance(exc, Cancelled):
            state.store.finish(job_id, "cancelled")
        else:
            err = _generation_error(exc)
            state.store.finish(job_id, "failed", error={"code": err.code, "message": err.message})

    task.future.add_done_callback(done)
    try:
        _submit(state, task)
    except APIError:
        state.store.delete(job_id)
        raise
    return job_body(row)


@videos.get("/v1/videos", responses=_errors())
async def videos_list(request: Request, limit: int = Query(20, ge=1, le=100), after: str | None = None,
                      order: Literal["asc", "desc"] = "desc"):
    state = _state(request)
    _no_unknown_query(request, ("limit", "after", "order"))
    rows, more = state.store.list(limit, after, order)
    data = [job_body(r, _live_task(state, r["id"])) for r in rows]
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def _job(state: ServerState, job_id: str) -> dict:
    row = state.store.get(job_id)
    if row is None:
        raise APIError(404, f"no video job {short(job_id)}", param="video_id", code="not_found")
    return row


def _live_task(state: ServerState, job_id: str) -> GenTask | None:
    return state.gen_queue.get(job_id) if state.gen_queue is not None else None


@videos.get("/v1/videos/{video_id}", responses=_errors(404))
async def videos_get(video_id: str, request: Request):
    _no_unknown_query(request)
    state = _state(request)
    return job_body(_job(state, video_id), _live_task(state, video_id))


EVENTS_POLL_S = 0.2  # how often the stream looks at the job (in memory while it runs; one SQLite read)
EVENTS_KEEPALIVE_S = 15.0  # an SSE comment when nothing changed for this long (proxies close silent streams)
EVENTS_MAX_S = 3600.0  # one stream's lifetime; a client that still wants events opens another


def _sse_event(event: str, data: dict) -> str:
    import json

    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _job_events(state: ServerState, video_id: str):
    """'progress' events (the job body) whenever its status, progress or step changes, then one 'done' event with
    the final body (completed, failed or cancelled) and the stream ends; 'error' if the job is deleted meanwhile."""
    last, quiet, started = None, time.monotonic(), time.monotonic()
    while True:
        row = await run_in_threadpool(state.store.get, video_id)
        if row is None:
            yield _sse_event("error", APIError(404, f"video job {short(video_id)} was deleted", param="video_id",
                                               code="not_found").body())
            return
        body = job_body(row, _live_task(state, video_id))
        if body["status"] not in ("queued", "in_progress"):
            yield _sse_event("done", body)
            return
        now = time.monotonic()
        key = (body["status"], body["progress"], body["step"], body["steps"])
        if key != last:
            last, quiet = key, now
            yield _sse_event("progress", body)
        elif now - quiet > EVENTS_KEEPALIVE_S:
            quiet = now
            yield ": keep-alive\n\n"
        if now - started > EVENTS_MAX_S:
            yield _sse_event("timeout", body)
            return
        await asyncio.sleep(EVENTS_POLL_S)


@videos.get("/v1/videos/{video_id}/events",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-sent events: 'progress' (the job, whenever its status, progress "
                                            "or step changes), then 'done' (the final job) and the stream ends"},
                       **_errors(404)})
async def videos_events(video_id: str, request: Request):
    state = _state(request)
    _no_unknown_query(request)
    _job(state, video_id)  # 404 before the stream starts
    return StreamingResponse(_job_events(state, video_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@videos.get("/v1/videos/{video_id}/content", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, **_errors(404, 409)})
async def videos_content(video_id: str, request: Request, variant: Literal["video"] = Query("video", json_schema_extra={"enum": ["video"]})):
    state = _state(request)
    _no_unknown_query(request, ("variant",))
    row = _job(state, video_id)
    if row["status"] != "completed":
        raise APIError(409, f"video {short(video_id)} is {row['status']}, not completed", code="video_not_ready")
    name = (row["result"] or {}).get("video")
    if not name:
        raise APIError(404, "this job produced actions, not a video (see its 'action')", code="no_video")
    return FileResponse(state.store.job_dir(video_id) / name, media_type="video/mp4")


async def _cancel(state: ServerState, video_id: str, wait_s: float = 10.0) -> dict:
    row = _job(state, video_id)
    if row["status"] in ("queued", "in_progress"):
        state.store.finish(video_id, "cancelled")
        task = state.gen_queue.cancel(video_id)
        deadline = time.monotonic() + wait_s
        while task is not None and task.state == "in_progress" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the sampler stops at the next step boundary
    return _job(state, video_id)


@videos.post("/v1/videos/{video_id}/cancel", responses=_errors(404))
async def videos_cancel(video_id: str, request: Request):
    _no_unknown_query(request)
    return job_body(await _cancel(_state(request), video_id))


@videos.delete("/v1/videos/{video_id}", responses=_errors(404))
async def videos_delete(video_id: str, request: Request):
    state = _state(request)
    _no_unknown_query(request)
    await _cancel(state, video_id)
    state.store.delete(video_id)
    return {"id": video_id, "object": "video.deleted", "deleted": True}


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
    for router in (system, chat, images, videos):
        app.include_router(router)
    from .robot import robot  # the openpi robot-policy websocket (docs/ROBOTS.md)
    app.include_router(robot)
    from .playground import playground  # the page at / (docs/SERVING.md, "Playground")
    app.include_router(playground)
    app.openapi = _openapi(app)
    return app
