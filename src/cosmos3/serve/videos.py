"""/v1/videos: synchronous and asynchronous (durable job) video generation, the job list, progress events, content,
cancel and delete. Forms (multipart or URL-encoded, with an optional `input_reference` upload) and JSON bodies are
read here; every rule of the request itself is the Generator's (`generation.video_request`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..diffusion import Cancelled
from .errors import APIError, short
from .generation import save_outputs, save_reference, screen_video, video_guardrail, video_request
from .queues import GenTask
from .schemas import MAX_JSON_DEPTH, VideoRequest, parse_model
from .state import (ServerState, await_task, error_responses, generation_error, no_unknown_query, server_state,
                    submit_task)

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
    await run_in_threadpool(screen_video, state, body)  # a blocked prompt: nothing saved, no job
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
                        **error_responses(404, 413, 415, 429)})
async def videos_sync(request: Request):
    state = server_state(request)
    no_unknown_query(request)
    folder = state.tmp / uuid.uuid4().hex
    try:
        body, kwargs, _ = await _prepare_video(request, state, folder)
        guard = video_guardrail(state, body)
        task = submit_task(state, GenTask(f"sync_{uuid.uuid4().hex}", kwargs,
                                      finish=lambda r: save_outputs(state, r, kwargs, folder, guard)))
        try:
            result = await await_task(request, task, state.gen_queue)
        except BaseException as e:
            state.gen_queue.cancel(task.id)
            raise generation_error(e) from None
        if result["video"] is None:
            return JSONResponse({"action": result.get("action"), "num_frames": result["num_frames"]})
        data = (folder / result["video"]).read_bytes()
        return Response(data, media_type="video/mp4")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@videos.post("/v1/videos", openapi_extra=_video_form_doc(), responses=error_responses(404, 413, 415, 429))
async def videos_create(request: Request):
    state = server_state(request)
    no_unknown_query(request)
    job_id = state.store.new_id()
    folder = state.store.job_dir(job_id)
    try:
        body, kwargs, runs = await _prepare_video(request, state, folder)
        if state.gen_queue.waiting >= state.config.max_queue:
            raise APIError(429, "the generation queue is full; retry later", code="queue_full",
                           headers={"Retry-After": str(state.gen_queue.retry_after())})
        record = {k: v for k, v in kwargs.items() if k not in ("actions", "controls")}
        if "controls" in kwargs:  # the job row is JSON: the controls as their fields
            record["controls"] = [c.as_dict() for c in kwargs["controls"]]
        row = state.store.create(job_id, record, state.model_name, steps=kwargs["num_inference_steps"] * runs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    guard = video_guardrail(state, body)
    task = GenTask(job_id, kwargs, finish=lambda r: save_outputs(state, r, kwargs, folder, guard),
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
            err = generation_error(exc)
            state.store.finish(job_id, "failed", error={"code": err.code, "message": err.message})

    task.future.add_done_callback(done)
    try:
        submit_task(state, task)
    except APIError:
        state.store.delete(job_id)
        raise
    return job_body(row)


@videos.get("/v1/videos", responses=error_responses())
async def videos_list(request: Request, limit: int = Query(20, ge=1, le=100), after: str | None = None,
                      order: Literal["asc", "desc"] = "desc"):
    state = server_state(request)
    no_unknown_query(request, ("limit", "after", "order"))
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


@videos.get("/v1/videos/{video_id}", responses=error_responses(404))
async def videos_get(video_id: str, request: Request):
    no_unknown_query(request)
    state = server_state(request)
    return job_body(_job(state, video_id), _live_task(state, video_id))


EVENTS_POLL_S = 0.2  # how often the stream looks at the job (in memory while it runs; one SQLite read)
EVENTS_KEEPALIVE_S = 15.0  # an SSE comment when nothing changed for this long (proxies close silent streams)
EVENTS_MAX_S = 3600.0  # one stream's lifetime; a client that still wants events opens another


def _sse_event(event: str, data: dict) -> str:
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
                       **error_responses(404)})
async def videos_events(video_id: str, request: Request):
    state = server_state(request)
    no_unknown_query(request)
    _job(state, video_id)  # 404 before the stream starts
    return StreamingResponse(_job_events(state, video_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@videos.get("/v1/videos/{video_id}/content", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, **error_responses(404, 409)})
async def videos_content(video_id: str, request: Request, variant: Literal["video"] = Query("video", json_schema_extra={"enum": ["video"]})):
    state = server_state(request)
    no_unknown_query(request, ("variant",))
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


@videos.post("/v1/videos/{video_id}/cancel", responses=error_responses(404))
async def videos_cancel(video_id: str, request: Request):
    no_unknown_query(request)
    return job_body(await _cancel(server_state(request), video_id))


@videos.delete("/v1/videos/{video_id}", responses=error_responses(404))
async def videos_delete(video_id: str, request: Request):
    state = server_state(request)
    no_unknown_query(request)
    await _cancel(state, video_id)
    state.store.delete(video_id)
    return {"id": video_id, "object": "video.deleted", "deleted": True}
