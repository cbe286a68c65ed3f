"""The FastAPI application (DESIGN 2.10): health, models, chat, images, sync and async videos.

    app = create_app(ServerConfig(checkpoint=..., storage=...))        # loads the models
    app = create_app(config, generator=gen, reasoner=rsn)              # or takes them ready-made (tests)

Heavy work never runs on the event loop: prompts and media are prepared in the thread pool, chat decodes on the
batcher thread, generation on the worker thread(s).
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

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..diffusion import Cancelled
from .chat import completion_body, completion_id, prepare_chat, stream_chunks
from .config import ServerConfig
from .errors import APIError, from_value_error, install_error_handlers
from .generation import encode_image, image_kwargs, save_outputs, save_reference, video_kwargs
from .jobs import JobStore
from .media_policy import Guardrail, MediaPolicy, refuse_if
from .queues import ChatBatcher, ChatRequest, GenerationScheduler, GenTask, QueueFull
from .schemas import ChatCompletionRequest, ImageGenerationRequest, VideoRequest, parse_model

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
        self.scheduler = GenerationScheduler(generator, config.max_queue, config.generation_workers) \
            if generator is not None else None
        self.batcher = ChatBatcher(reasoner, config.max_batch, config.max_model_len, config.max_chat_waiting) \
            if reasoner is not None else None

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_name:
            raise APIError(404, f"model {model!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    def start(self) -> None:
        interrupted = self.store.recover()
        if interrupted:
            log.warning("marked %d interrupted job(s) failed", len(interrupted))
        if self.scheduler:
            self.scheduler.start()
        if self.batcher:
            self.batcher.start()

    def stop(self) -> None:
        if self.scheduler:
            self.scheduler.stop()
        if self.batcher:
            self.batcher.stop()
        self.store.close()


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


async def _await_task(request: Request, task: GenTask, scheduler: GenerationScheduler):
    """Wait for a generation task; a client that disconnects cancels it."""
    fut = asyncio.wrap_future(task.future)
    while True:
        done, _ = await asyncio.wait({fut}, timeout=0.5)
        if done:
            return fut.result()
        if await request.is_disconnected():
            scheduler.cancel(task.id)  # a running task stops at its next step


def _submit(state: ServerState, task: GenTask) -> GenTask:
    try:
        return state.scheduler.submit(task)
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
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object", code="invalid_json")
        return data, data.pop("input_reference", None)
    if not (ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded")):
        raise APIError(415, "send multipart/form-data (or application/json)", code="unsupported_media_type")
    try:
        form = await request.form(max_files=2, max_fields=64, max_part_size=state.config.max_upload_bytes)
    except APIError:
        raise
    except Exception as e:
        raise APIError(400, f"malformed form data ({e})", code="invalid_form") from None
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


async def _prepare_video(request: Request, state: ServerState, folder: Path) -> dict:
    data, reference = await _read_video_form(request, state)
    body = parse_model(VideoRequest, data)
    payload = await _reference_bytes(state, reference)
    ref = None
    if payload is not None:
        ref = await run_in_threadpool(save_reference, state, payload, folder)
    return body, await run_in_threadpool(video_kwargs, state, body, ref)


def job_body(row: dict) -> dict:
    req, res = row["request"] or {}, row["result"] or {}
    width, height = res.get("width") or req.get("width"), res.get("height") or req.get("height")
    frames, fps = res.get("num_frames") or req.get("num_frames"), res.get("fps") or req.get("fps")
    out = {"id": row["id"], "object": "video", "created_at": row["created_at"], "completed_at": row["completed_at"],
           "expires_at": None, "status": row["status"], "progress": row["progress"], "model": row["model"],
           "prompt": req.get("prompt"), "size": f"{width}x{height}" if width and height else None,
           "seconds": f"{frames / fps:.2f}" if frames and fps else None, "num_frames": frames, "fps": fps,
           "seed": req.get("seed"), "error": row["error"], "remixed_from_video_id": None}
    if res.get("action") is not None:
        out["action"] = res["action"]
    return out


# ------------------------------------------------------------------------------------------------ app


def create_app(config: ServerConfig, generator=None, reasoner=None, guardrail: Guardrail | None = None) -> FastAPI:
    if generator is None and reasoner is None:
        from .runtime import load_models

        generator, reasoner = load_models(config.checkpoint, config.device)
    state = ServerState(config, generator, reasoner, guardrail)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        state.stop()

    app = FastAPI(title="cosmos3", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API for the Cosmos 3 reasoner and generator")
    app.state.cosmos3 = state
    install_error_handlers(app)

    @app.middleware("http")
    async def api_key(request: Request, call_next):
        if config.api_key and request.url.path.startswith("/v1") and not _authorized(request, config.api_key):
            return APIError(401, "missing or incorrect API key (send 'Authorization: Bearer <key>')",
                            code="invalid_api_key").response()
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": state.model_name, "generator": generator is not None,
                "reasoner": reasoner is not None,
                "generation_waiting": state.scheduler.waiting if state.scheduler else 0,
                "chat_active": state.batcher.active if state.batcher else 0,
                "chat_decode_steps": state.batcher.steps if state.batcher else 0,
                "chat_decoded_tokens": state.batcher.batched_tokens if state.batcher else 0}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": 0,
                                            "owned_by": "cosmos3", "root": str(config.checkpoint or ""),
                                            "max_model_len": config.max_model_len}]}

    # -------------------------------------------------------------------------------------------- chat

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
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

    # -------------------------------------------------------------------------------------------- images

    @app.post("/v1/images/generations")
    async def images(body: ImageGenerationRequest, request: Request):
        _no_unknown_query(request)
        calls = await run_in_threadpool(image_kwargs, state, body)
        if state.scheduler.waiting + len(calls) > config.max_queue:
            raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                           headers={"Retry-After": str(state.scheduler.retry_after())})
        def finish(result):
            refuse_if(state.guardrail.check_output(result, "image"))
            return encode_image(result, body.output_format)

        tasks, data = [], []
        try:
            for kw in calls:
                tasks.append(_submit(state, GenTask(f"img_{uuid.uuid4().hex}", kw, finish=finish)))
            for task in tasks:
                data.append({"b64_json": await _await_task(request, task, state.scheduler)})
        except BaseException as e:
            for task in tasks:
                state.scheduler.cancel(task.id)
            raise _generation_error(e) from None
        return {"created": int(time.time()), "data": data}

    # -------------------------------------------------------------------------------------------- videos

    video_form_doc = {"requestBody": {"content": {"multipart/form-data": {"schema": _video_form_schema()}},
                                      "required": True}}

    @app.post("/v1/videos/sync", openapi_extra=video_form_doc,
              responses={200: {"content": {"video/mp4": {}}, "description": "the MP4 (JSON for inverse dynamics)"}})
    async def videos_sync(request: Request):
        _no_unknown_query(request)
        folder = state.tmp / uuid.uuid4().hex
        try:
            _, kwargs = await _prepare_video(request, state, folder)
            task = _submit(state, GenTask(f"sync_{uuid.uuid4().hex}", kwargs,
                                          finish=lambda r: save_outputs(state, r, kwargs, folder)))
            try:
                result = await _await_task(request, task, state.scheduler)
            except BaseException as e:
                state.scheduler.cancel(task.id)
                raise _generation_error(e) from None
            if result["video"] is None:
                return JSONResponse({"action": result.get("action"), "num_frames": result["num_frames"]})
            data = (folder / result["video"]).read_bytes()
            return Response(data, media_type="video/mp4")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/v1/videos", openapi_extra=video_form_doc)
    async def videos_create(request: Request):
        _no_unknown_query(request)
        job_id = state.store.new_id()
        folder = state.store.job_dir(job_id)
        try:
            body, kwargs = await _prepare_video(request, state, folder)
            if state.scheduler.waiting >= config.max_queue:
                raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                               headers={"Retry-After": str(state.scheduler.retry_after())})
            record = {k: v for k, v in kwargs.items() if k not in ("actions",)}
            row = state.store.create(job_id, record, state.model_name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        task = GenTask(job_id, kwargs, finish=lambda r: save_outputs(state, r, kwargs, folder),
                       on_start=lambda: state.store.set_running(job_id),
                       on_progress=lambda p: state.store.set_progress(job_id, p))

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

    @app.get("/v1/videos")
    async def videos_list(request: Request, limit: int = 20, after: str | None = None, order: str = "desc"):
        _no_unknown_query(request, ("limit", "after", "order"))
        if not 1 <= limit <= 100:
            raise APIError(400, "limit: expected 1 to 100", param="limit")
        if order not in ("asc", "desc"):
            raise APIError(400, "order: expected 'asc' or 'desc'", param="order")
        rows, more = state.store.list(limit, after, order)
        data = [job_body(r) for r in rows]
        return {"object": "list", "data": data, "has_more": more,
                "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}

    def _job(job_id: str) -> dict:
        row = state.store.get(job_id)
        if row is None:
            raise APIError(404, f"no video job {job_id!r}", param="video_id", code="not_found")
        return row

    @app.get("/v1/videos/{video_id}")
    async def videos_get(video_id: str, request: Request):
        _no_unknown_query(request)
        return job_body(_job(video_id))

    @app.get("/v1/videos/{video_id}/content", response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}}})
    async def videos_content(video_id: str, request: Request, variant: str = "video"):
        _no_unknown_query(request, ("variant",))
        if variant != "video":
            raise APIError(400, f"variant={variant!r}: only 'video' is available", param="variant")
        row = _job(video_id)
        if row["status"] != "completed":
            raise APIError(409, f"video {video_id!r} is {row['status']}, not completed", code="video_not_ready")
        name = (row["result"] or {}).get("video")
        if not name:
            raise APIError(404, "this job produced actions, not a video (see its 'action')", code="no_video")
        return FileResponse(state.store.job_dir(video_id) / name, media_type="video/mp4")

    async def _cancel(video_id: str, wait_s: float = 10.0) -> dict:
        row = _job(video_id)
        if row["status"] in ("queued", "in_progress"):
            state.store.finish(video_id, "cancelled")
            task = state.scheduler.cancel(video_id)
            deadline = time.monotonic() + wait_s
            while task is not None and task.state == "in_progress" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the sampler stops at the next step boundary
        return _job(video_id)

    @app.post("/v1/videos/{video_id}/cancel")
    async def videos_cancel(video_id: str, request: Request):
        _no_unknown_query(request)
        return job_body(await _cancel(video_id))

    @app.delete("/v1/videos/{video_id}")
    async def videos_delete(video_id: str, request: Request):
        _no_unknown_query(request)
        await _cancel(video_id)
        state.store.delete(video_id)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    return app


def _video_form_schema() -> dict:
    props = {
        "model": {"type": "string"}, "prompt": {"type": "string"}, "negative_prompt": {"type": "string"},
        "size": {"type": "string", "example": "832x480"}, "seconds": {"type": "number"},
        "num_frames": {"type": "integer", "minimum": 1}, "fps": {"type": "number"},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 1000},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20},
        "flow_shift": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "seed": {"type": "integer", "minimum": 0}, "max_sequence_length": {"type": "integer", "minimum": 1},
        "generate_sound": {"type": "boolean"},
        "extra_params": {"type": "string", "description": "JSON object: action_mode, domain_name, raw_action_dim, "
                         "action_chunk_size, action, action_path, condition_frame_indexes_vision, "
                         "condition_video_keep, use_resolution_template, use_duration_template, use_system_prompt, "
                         "guardrails"},
        "input_reference": {"type": "string", "format": "binary", "description": "image or MP4 file"},
    }
    return {"type": "object", "properties": props, "additionalProperties": False}
