"""A robot policy behind the openpi websocket protocol (docs/ROBOTS.md, DESIGN 2.8).

    engine = PolicyEngine(Generator.from_pretrained("pico"), layout="generic")     # or layout="droid"
    handle = start_policy_server(engine, port=0)                                    # a live server in a thread
    # any openpi client: WebsocketClientPolicy("127.0.0.1", handle.port).infer(observation)

The protocol (what openpi-client's WebsocketClientPolicy speaks): one websocket per robot; every message is
msgpack with numpy arrays packed as maps {"__ndarray__": True, "data": raw bytes, "dtype": numpy's dtype string,
"shape": [...]} (scalars {"__npgeneric__": True, "data", "dtype"}), keys as bytes; the server's first message is its
metadata; each request is an observation dict and each answer a dict with `actions` [steps, action_dim] and
`server_timing` (milliseconds). A refused observation is answered with a text message (the client raises it) and the
connection stays open.

Per connection the server keeps the last predicted chunk: with `answer_steps` = k below the chunk, a request takes
the next k steps of the cached chunk without running the model, until fewer than k are left (or the prompt changes,
or the observation carries `reset`: true).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
from fastapi import FastAPI, WebSocket  # module level: FastAPI reads the endpoints' annotations

from .policy_observation import (LAYOUTS, Observation, ObservationError, ObservationLayout, compose_concat_view,
                                 parse_observation)

# The observation names live in policy_observation.py and stay importable from here (train/data.py, the tests).
__all__ = ["DROID_SETTINGS", "LAYOUTS", "ROUTE", "Observation", "ObservationError", "ObservationLayout", "PolicyClient",
           "PolicyEngine", "PolicyService", "PolicySettings", "ServerHandle", "Session", "build_parser",
           "compose_concat_view", "create_policy_app", "engine_from_args", "latency_summary", "packb",
           "parse_observation", "parse_size", "serve_policy_main", "serve_websocket", "start_app_in_thread",
           "start_policy_server", "unpackb"]

log = logging.getLogger("cosmos3.policy")

ROUTE = "/v1/realtime/robot/openpi"

# ------------------------------------------------------------------------------------------------ wire format

_ND, _NG = b"__ndarray__", b"__npgeneric__"


def _encode(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "VOc":
            raise ValueError(f"cannot send a numpy array of dtype {obj.dtype}")
        return {_ND: True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        if obj.dtype.kind in "VOc":
            raise ValueError(f"cannot send a numpy scalar of dtype {obj.dtype}")
        return {_NG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__}")


def _decode(obj: dict):
    if _ND in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in "VOc":
            raise ValueError(f"array of dtype {dtype} refused")
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
    if _NG in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj) -> bytes:
    """msgpack bytes with numpy arrays and scalars in openpi's layout."""
    import msgpack

    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes):
    import msgpack

    return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)


# ------------------------------------------------------------------------------------------------ engine


# Policy-DROID server defaults (DESIGN 2.8): steps, guidance, shift, fps, chunk.
DROID_SETTINGS = dict(steps=4, guidance=3.0, shift=5.0, fps=15.0, chunk=32, resolution="480p")


@dataclass
class PolicySettings:
    steps: int | None = None  # None: the checkpoint's action settings
    guidance: float | None = None
    shift: float | None = None
    fps: float | None = None
    chunk: int | None = None
    resolution: str | None = None
    answer_steps: int | None = None  # actions per answer; None: the whole chunk (no caching)
    seed: int = 0
    max_concurrency: int = 1  # inferences at once (more wait: `queue_ms`)
    max_connections: int = 16  # more are closed with code 1013 (try again later)
    resize_images: bool = False  # resize camera images of another size instead of refusing them
    caption_format: str | None = None  # the action caption: json | plain; None: the checkpoint's, else json


class PolicyEngine:
    """A Generator in policy mode behind an observation layout. `infer` is thread-safe (one model call at a time per
    `max_concurrency` slot is enforced by the server)."""

    def __init__(self, generator, layout: str | ObservationLayout = "generic", settings: PolicySettings | None = None,
                 embodiment: str | None = None, camera_size: tuple[int, int] | None | str = "layout"):
        from .actions import get_embodiment

        self.generator = generator
        layout = LAYOUTS[layout] if isinstance(layout, str) else layout
        if embodiment is not None:
            layout = replace(layout, embodiment=embodiment)
        if camera_size != "layout":
            layout = replace(layout, camera_size=camera_size)
        self.layout = layout
        self.embodiment = get_embodiment(layout.embodiment)
        s = settings or PolicySettings()
        if layout.name == "droid":  # the Policy-DROID server's defaults for what is not given
            s = replace(s, **{k: v for k, v in DROID_SETTINGS.items() if getattr(s, k) is None})
        self.settings = s
        if s.caption_format is not None:  # refused at start, by name
            from .actions.embodiments import check_caption_format

            check_caption_format(s.caption_format)
        self.chunk = s.chunk or generator.defaults.get("action_chunk_size") or self.embodiment.chunk_size
        if s.answer_steps is not None and not 1 <= s.answer_steps <= self.chunk:
            raise ValueError(f"answer_steps: expected 1..{self.chunk} (the chunk), got {s.answer_steps}")
        self.answer_steps = s.answer_steps or self.chunk
        # Check the settings once now (no model work): a bad one fails at start, not on the first robot.
        self._resolve(self._placeholder(), 0)

    def _placeholder(self) -> Observation:
        from .actions.embodiments import STATE_DIMS

        width = STATE_DIMS.get(self.embodiment.name)
        return Observation(np.zeros((*(self.layout.image_size or (64, 64)), 3), np.uint8),
                           None if width is None else np.zeros(width, np.float32), "check")

    def _resolve(self, obs: Observation, seed: int):
        from PIL import Image

        from .actions.embodiments import STATE_DIMS

        s = self.settings
        kwargs = dict(action_mode="policy", embodiment=self.embodiment.name, image=Image.fromarray(obs.image),
                      num_inference_steps=s.steps, guidance_scale=s.guidance, flow_shift=s.shift, fps=s.fps,
                      action_chunk_size=self.chunk, resolution=s.resolution, seed=seed, progress=False)
        if self.embodiment.name in STATE_DIMS:
            kwargs["state"] = obs.state
        req = self.generator.resolve(obs.prompt, **kwargs)
        req.decode = False  # the actions are the answer: no VAE decode
        req.caption_format = s.caption_format
        return req

    def metadata(self) -> dict:
        lay, s = self.layout, self.settings
        req = self._resolve(self._placeholder(), 0)
        return {"server": "cosmos3", "protocol": "openpi", "model": self.generator.name, "layout": lay.name,
                "embodiment": self.embodiment.name, "image_keys": list(lay.image_keys),
                "camera_size": list(lay.camera_size) if lay.camera_size else None,
                "image_size": list(lay.image_size) if lay.image_size else None, "compose": lay.compose,
                "state_keys": [k for k, _ in lay.state], "state_required": lay.state_required,
                "prompt_key": lay.prompt_key, "action_chunk": self.chunk, "answer_steps": self.answer_steps,
                "action_dim": self.embodiment.raw_dim, "fps": req.fps, "num_inference_steps": req.steps,
                "guidance_scale": req.guidance, "flow_shift": req.shift,
                "gripper_flipped": lay.flip_gripper is not None,
                "max_concurrency": s.max_concurrency,
                "caption_format": s.caption_format or self.generator.defaults.get("caption_format") or "json"}

    def parse(self, raw) -> Observation:
        return parse_observation(raw, self.layout, self.settings.resize_images)

    def infer(self, obs: Observation, seed: int) -> tuple[np.ndarray, dict]:
        """One chunk: float32 [chunk, action_dim] and the timings (ms)."""
        started = time.perf_counter()
        try:
            req = self._resolve(obs, seed)
        except ValueError as e:
            raise ObservationError(str(e)) from None
        result = self.generator.run(req)
        actions = result.actions.numpy().astype(np.float32)
        if self.layout.flip_gripper is not None and actions.shape[1] > self.layout.flip_gripper:
            actions[:, self.layout.flip_gripper] = 1.0 - actions[:, self.layout.flip_gripper]
        t = result.timings
        return actions, {"infer_ms": 1000 * (time.perf_counter() - started), "prepare_ms": 1000 * t["prepare_s"],
                         "denoise_ms": 1000 * t["denoise_s"], "decode_ms": 1000 * t["decode_s"]}


@dataclass
class Session:
    """One connection's state: the cached chunk and where the next answer starts in it."""

    chunk: np.ndarray | None = None
    next_step: int = 0
    chunk_index: int = -1
    prompt: str | None = None
    requests: int = 0
    inferences: int = 0
    prev_total_ms: float | None = None
    history: list = field(default_factory=list)


class PolicyService:
    """The protocol, independent of the web framework: `metadata()`, then `handle(session, bytes)` per message."""

    def __init__(self, engine: PolicyEngine):
        self.engine = engine
        self.slots = threading.BoundedSemaphore(engine.settings.max_concurrency)
        self.connections = 0
        self._lock = threading.Lock()
        self._metadata = engine.metadata()

    def metadata(self) -> dict:
        return dict(self._metadata)

    def open(self) -> bool:
        with self._lock:
            if self.connections >= self.engine.settings.max_connections:
                return False
            self.connections += 1
            return True

    def close(self) -> None:
        with self._lock:
            self.connections -= 1

    def handle(self, session: Session, data) -> bytes | str:
        """One request -> the packed answer, or a text error message (the connection stays open)."""
        started = time.perf_counter()
        session.requests += 1
        if isinstance(data, str):
            return "request: expected a binary msgpack message, got text"
        try:
            raw = unpackb(data)
        except Exception as e:  # noqa: BLE001 - any decoding failure is the client's
            return f"request: not a valid msgpack message ({type(e).__name__}: {e})"
        try:
            obs = self.engine.parse(raw)
        except ObservationError as e:
            return str(e)
        k = self.engine.answer_steps
        if obs.reset or obs.prompt != session.prompt:
            session.chunk = None
        timing = {"queue_ms": 0.0, "infer_ms": 0.0, "prepare_ms": 0.0, "denoise_ms": 0.0, "decode_ms": 0.0}
        cached = session.chunk is not None and session.chunk.shape[0] - session.next_step >= k
        if not cached:
            waiting = time.perf_counter()
            with self.slots:
                timing["queue_ms"] = 1000 * (time.perf_counter() - waiting)
                try:
                    chunk, t = self.engine.infer(obs, self.engine.settings.seed + session.inferences)
                except ObservationError as e:
                    return str(e)
                except Exception as e:  # noqa: BLE001 - report, keep the connection
                    log.exception("policy inference failed")
                    return f"inference failed: {type(e).__name__}: {e}"
            timing.update(t)
            session.chunk, session.next_step, session.prompt = chunk, 0, obs.prompt
            session.inferences += 1
            session.chunk_index += 1
        actions = session.chunk[session.next_step: session.next_step + k]
        step = session.next_step
        session.next_step += k
        timing["total_ms"] = 1000 * (time.perf_counter() - started)
        if session.prev_total_ms is not None:
            timing["prev_total_ms"] = session.prev_total_ms
        session.prev_total_ms = timing["total_ms"]
        timing["cached"] = bool(cached)
        session.history.append(timing)
        return packb({"actions": np.ascontiguousarray(actions, dtype=np.float32), "server_timing": timing,
                      "chunk_index": session.chunk_index, "chunk_step": step})


async def serve_websocket(websocket, service: PolicyService) -> None:
    """The openpi protocol on a Starlette/FastAPI WebSocket."""
    from starlette.websockets import WebSocketDisconnect

    await websocket.accept()
    if not service.open():
        await websocket.close(code=1013, reason=f"server busy: {service.engine.settings.max_connections} "
                                                f"connections already")
        return
    session = Session()
    try:
        await websocket.send_bytes(packb(service.metadata()))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                data = message.get("text", "")
            answer = await asyncio.to_thread(service.handle, session, data)
            if isinstance(answer, str):
                await websocket.send_text(answer)
            else:
                await websocket.send_bytes(answer)
    except WebSocketDisconnect:
        pass
    finally:
        service.close()


def create_policy_app(service: PolicyService):
    """A FastAPI app serving the protocol at `/` (where openpi clients connect by default) and at ROUTE."""
    app = FastAPI(title="cosmos3 policy server")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "connections": service.connections}

    @app.websocket("/")
    async def root(websocket: WebSocket):
        await serve_websocket(websocket, service)

    @app.websocket(ROUTE)
    async def route(websocket: WebSocket):
        await serve_websocket(websocket, service)

    return app


@dataclass
class ServerHandle:
    server: object
    thread: threading.Thread
    host: str
    port: int

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_app_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Run an ASGI app with uvicorn on a background thread; port 0 takes a free port (`handle.port`)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", ws_max_size=64 * 2**20, ws_ping_interval=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("the policy server did not start")
    return ServerHandle(server, thread, host, sock.getsockname()[1])


def start_policy_server(engine: PolicyEngine, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    return start_app_in_thread(create_policy_app(PolicyService(engine)), host, port)


class PolicyClient:
    """A minimal openpi client (websockets + this module's codec), so `cosmos3 sim` needs no openpi-client:
    `PolicyClient(url).metadata`, `.infer(observation) -> answer`; a text answer (a refused observation) raises
    RuntimeError with the server's message."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 600.0):
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        # entered as a context manager would be (websockets >= 17 warns about a bare connect()); close() exits it
        self._ws = connect(url, compression=None, max_size=None, additional_headers=headers,
                           open_timeout=timeout).__enter__()
        self.timeout = timeout
        self.metadata = unpackb(self._ws.recv(timeout))

    def infer(self, observation: dict) -> dict:
        self._ws.send(packb(observation))
        answer = self._ws.recv(self.timeout)
        if isinstance(answer, str):
            raise RuntimeError(answer)
        return unpackb(answer)

    def close(self) -> None:
        self._ws.close()


def latency_summary(values_ms: list[float]) -> dict:
    v = sorted(values_ms)
    if not v:
        return {}
    pick = lambda q: v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]  # noqa: E731
    return {"n": len(v), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "mean_ms": sum(v) / len(v)}


# ------------------------------------------------------------------------------------------------ command


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="cosmos3 serve-policy",
                                description="A robot policy over the openpi websocket protocol (docs/ROBOTS.md).")
    p.add_argument("--checkpoint", default="pico", help="embedded model name (pico) or checkpoint folder")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--layout", choices=sorted(LAYOUTS), default=None,
                   help="observation keys: generic (one image + optional state; default) or droid (Policy-DROID)")
    p.add_argument("--embodiment", default=None, help="override the layout's embodiment (e.g. umi, policy_droid)")
    p.add_argument("--camera-size", default=None, metavar="HxW", help="camera image size to require ('any': no check)")
    p.add_argument("--resize-images", action="store_true", help="resize other sizes instead of refusing them")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--shift", type=float, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--chunk", type=int, default=None, help="actions predicted per inference")
    p.add_argument("--resolution", default=None, help="action canvas tier (256p, 480p, ...)")
    p.add_argument("--answer-steps", type=int, default=None,
                   help="actions per answer; below the chunk, the next requests are answered from the cached chunk")
    p.add_argument("--caption-format", choices=("json", "plain"), default=None,
                   help="the action caption: json (the release's Policy-DROID training; default) or plain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-concurrency", type=int, default=1, help="inferences at once")
    p.add_argument("--max-connections", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--log-level", default="info")
    return p


def parse_size(text: str | None):
    if text is None:
        return "layout"
    if text.lower() == "any":
        return None
    h, _, w = text.lower().partition("x")
    if not (h.isdigit() and w.isdigit()):
        raise ValueError(f"--camera-size: expected HxW (e.g. 360x640) or 'any', got {text!r}")
    return int(h), int(w)


def engine_from_args(args, generator=None) -> PolicyEngine:
    from .generator import Generator

    camera_size = parse_size(args.camera_size)  # bad flags fail before the checkpoint loads
    if generator is None:
        generator = Generator.from_pretrained(args.checkpoint, device=args.device)
    layout = args.layout or ("droid" if generator.defaults.get("embodiment") == "policy_droid" else "generic")
    embodiment = args.embodiment or generator.defaults.get("embodiment") if layout == "generic" else args.embodiment
    settings = PolicySettings(steps=args.steps, guidance=args.guidance, shift=args.shift, fps=args.fps,
                              chunk=args.chunk, resolution=args.resolution, answer_steps=args.answer_steps,
                              seed=args.seed, max_concurrency=args.max_concurrency,
                              max_connections=args.max_connections, resize_images=args.resize_images,
                              caption_format=args.caption_format)
    return PolicyEngine(generator, layout, settings, embodiment=embodiment, camera_size=camera_size)


def serve_policy_main(argv: list[str]) -> int:
    import sys

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        engine = engine_from_args(args)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    import uvicorn

    print(f"openpi policy server: ws://{args.host}:{args.port} (also {ROUTE}); {engine.metadata()}", flush=True)
    uvicorn.run(create_policy_app(PolicyService(engine)), host=args.host, port=args.port,
                log_level=args.log_level.lower(), ws_max_size=64 * 2**20, ws_ping_interval=None)
    return 0
