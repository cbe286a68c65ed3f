"""The openpi robot-policy protocol on `cosmos3 serve` (docs/ROBOTS.md): a websocket at /v1/realtime/robot/openpi,
the path vLLM-Omni uses, speaking what `cosmos3 serve-policy` speaks (cosmos3.policy_server).

    ws://HOST:PORT/v1/realtime/robot/openpi                     # the checkpoint's layout (generic, or droid)
    ws://HOST:PORT/v1/realtime/robot/openpi?layout=droid&answer_steps=8

Query parameters: layout, embodiment, answer_steps (one service per combination, built on first use, sharing the
server's Generator). With --api-key the client sends 'Authorization: Bearer KEY' (or openpi's 'Api-Key KEY').
"""

from __future__ import annotations

import hmac
import threading

from fastapi import APIRouter, WebSocket

from ..policy_server import LAYOUTS, ROUTE, PolicyEngine, PolicyService, PolicySettings, serve_websocket

robot = APIRouter(tags=["robot"])
_lock = threading.Lock()


def _authorized(websocket: WebSocket, key: str | None) -> bool:
    if not key:
        return True
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return scheme.lower() in ("bearer", "api-key") and hmac.compare_digest(token.strip().encode(), key.encode())


def _service(app, generator, layout: str | None, embodiment: str | None, answer_steps: int | None) -> PolicyService:
    services = getattr(app.state, "cosmos3_policy_services", None)
    if services is None:
        services = app.state.cosmos3_policy_services = {}
    if layout is None:
        layout = "droid" if generator.defaults.get("embodiment") == "policy_droid" else "generic"
    if layout == "generic" and embodiment is None:
        embodiment = generator.defaults.get("embodiment")
    key = (layout, embodiment, answer_steps)
    with _lock:
        if key not in services:
            services[key] = PolicyService(PolicyEngine(generator, layout, PolicySettings(answer_steps=answer_steps),
                                                       embodiment=embodiment))
        return services[key]


@robot.websocket(ROUTE)
async def openpi(websocket: WebSocket):
    state = websocket.app.state.cosmos3
    if not _authorized(websocket, state.config.api_key):
        await websocket.close(code=1008, reason="missing or incorrect API key")
        return
    if state.generator is None:
        await websocket.close(code=1011, reason="this server has no generator (a reasoner-only checkpoint)")
        return
    q = websocket.query_params
    layout, embodiment, steps = q.get("layout"), q.get("embodiment"), q.get("answer_steps")
    try:
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {sorted(LAYOUTS)}, got {layout!r}")
        if steps is not None and not steps.isdigit():
            raise ValueError(f"answer_steps: expected a positive integer, got {steps!r}")
        service = _service(websocket.app, state.generator, layout, embodiment, int(steps) if steps else None)
    except ValueError as e:
        await websocket.close(code=1008, reason=str(e)[:120])
        return
    await serve_websocket(websocket, service)
