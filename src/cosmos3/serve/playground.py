"""The playground: a page at `/` of `cosmos3 serve` (Chat, Generate, Jobs) that calls the same public API as any client.

    GET /                          the page (index.html), with a strict Content-Security-Policy
    GET /playground/static/<file>  its scripts (app.js, generate.js, jobs.js) and style sheet (no inline script:
                                   nothing a prompt holds can run)
    GET /playground/config         what the page needs to check a request before sending it: the served model, whether
                                   an API key is required, this server's limits, and the release's size table (tier x
                                   aspect ratio -> WxH) for the resolution and aspect selectors

The page sends the API key (when the server has one) in the Authorization header of its fetch calls, never in a URL,
and keeps it in sessionStorage. Everything a user or the model wrote is rendered with textContent.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .errors import APIError

playground = APIRouter(include_in_schema=False)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}
_JS = "text/javascript; charset=utf-8"
_FILES = {"app.js": _JS, "generate.js": _JS, "jobs.js": _JS, "style.css": "text/css; charset=utf-8"}


def _static(name: str) -> bytes:
    return resources.files("cosmos3.serve").joinpath("static", name).read_bytes()


@playground.get("/")
async def page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


@playground.get("/playground/static/{name}")
async def static_file(name: str) -> Response:
    if name not in _FILES:
        raise APIError(404, "no such playground file", code="not_found")
    return Response(_static(name), media_type=_FILES[name], headers=_HEADERS)


@playground.get("/playground/config")
async def config(request: Request) -> dict:
    from .. import spec
    from ..actions.embodiments import EMBODIMENTS, VARIANTS
    from .schemas import MAX_SEED

    state = request.app.state.cosmos3
    cfg = state.config
    embodiments = [{"name": e.name, "raw_dim": e.raw_dim, "chunk_size": e.chunk_size, "fps": e.fps}
                   for e in (*EMBODIMENTS.values(), *VARIANTS.values())]
    return {"model": state.model_name, "generator": state.generator is not None,
            "reasoner": state.reasoner is not None, "api_key_required": bool(cfg.api_key),
            "limits": {"max_pixels": cfg.max_pixels, "max_frames": cfg.max_frames, "max_steps": cfg.max_steps,
                       "max_upload_bytes": cfg.max_upload_bytes, "max_input_pixels": cfg.max_input_pixels,
                       "max_prompt_tokens": cfg.max_prompt_tokens, "max_model_len": cfg.max_model_len,
                       "max_job_seconds": cfg.max_job_seconds, "max_seed": MAX_SEED,
                       "guidance": [0.0, 20.0], "fps": [0.0, 120.0], "steps": [1, min(1000, cfg.max_steps)],
                       "size_multiple": spec.SIZE_MULTIPLE, "min_side": spec.MIN_CUSTOM_SIDE,
                       "max_side": spec.MAX_CUSTOM_SIDE, "min_frames": spec.MIN_FRAMES,
                       "sizes": sorted({f"{w}x{h}" for row in spec.RESOLUTIONS.values() for w, h in row.values()},
                                       key=lambda s: [int(x) for x in s.split("x")])},
            "resolutions": {tier: {aspect: f"{w}x{h}" for aspect, (w, h) in row.items()}
                            for tier, row in spec.RESOLUTIONS.items()},
            "aspect_ratios": list(spec.ASPECT_RATIOS),
            "embodiments": embodiments, "action_modes": ["policy", "forward_dynamics", "inverse_dynamics"]}
