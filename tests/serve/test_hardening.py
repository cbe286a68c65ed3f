"""Bad inputs that used to answer 500 (or cost gigabytes / seconds before being refused) answer a clear 4xx naming
the field; an unexpected failure answers a JSON 500 and leaves the keep-alive connection usable; the OpenAPI
document states the status codes and bounds the server enforces."""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from serve_support import LiveServer, assert_error
from cosmos3.media import write_video

TINY_INPUT_PIXELS = 48 * 48  # the tight server refuses a 64x64 input image or video frame
SMALL = {"prompt": "a red block slides left", "size": "64x64", "num_frames": "5", "num_inference_steps": "2"}


class Boom:
    """A guardrail that fails unexpectedly on one prompt: the server's catch-all must answer for it."""

    def check_prompt(self, text, surface):
        if text == "boom":
            raise RuntimeError("guardrail exploded")
        return None

    def check_output(self, result, surface):
        return None


@pytest.fixture(scope="module")
def tight(models, checkpoint, media_dir, tmp_path_factory):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("tight"), max_queue=2,
                          max_model_len=256, max_prompt_tokens=64, default_max_tokens=2, max_pixels=64 * 64,
                          max_frames=9, max_steps=2, max_upload_bytes=12_000_000,
                          max_input_pixels=TINY_INPUT_PIXELS, allowed_local_media_paths=[media_dir])
    with LiveServer(create_app(config, *models, guardrail=Boom())) as live:
        yield live


@pytest.fixture
def tc(tight):
    with httpx.Client(base_url=tight.url, timeout=60) as c:
        yield c


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _declared_png(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h but which carries almost no pixel data: decoding it would fail (or
    allocate w*h*3 bytes first), so a 413 proves the size was read from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("hardening_clip") / "clip.mp4"
    write_video(path, np.random.default_rng(2).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 15)
    return path.read_bytes()


def _chat(content) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 2}


def _part(kind: str, url: str) -> list[dict]:
    return [{"type": kind, kind: {"url": url}}, {"type": "text", "text": "what?"}]


def _raw_json(text: str) -> dict:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


DEEP = "[" * 100_000 + "]" * 100_000


def test_bad_inputs_answer_4xx_naming_the_field(tight, tc, media_dir, mp4):
    long_path = str(media_dir) + "/" + "a" * 100_000
    unclosed = (b"--XX\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhello\r\n"
                b"--XX\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n64x64")
    cases = [
        # (name, method, path, request kwargs, status, code, param, word the message must contain)
        ("lone surrogate, string content", "POST", "/v1/chat/completions",
         _raw_json('{"messages": [{"role": "user", "content": "a\\ud800b"}]}'),
         400, "invalid_value", "messages.0.content", "surrogate"),
        ("lone surrogate, text part", "POST", "/v1/chat/completions",
         _raw_json('{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}'),
         400, "invalid_value", "messages.0.content.0.text", "surrogate"),
        ("lone surrogate, image prompt", "POST", "/v1/images/generations", _raw_json('{"prompt": "\\ud83d"}'),
         400, "invalid_value", "prompt", "surrogate"),
        ("NUL in image_url", "POST", "/v1/chat/completions", {"json": _chat(_part("image_url", "/a\x00b.png"))},
         400, "invalid_value", "messages.0.content.0.image_url.url", "NUL"),
        ("100,000-character image path", "POST", "/v1/chat/completions",
         {"json": _chat(_part("image_url", long_path))}, 400, "invalid_path", "messages[0].content[0]", "too long"),
        ("100,000-character video path", "POST", "/v1/chat/completions",
         {"json": _chat(_part("video_url", "file://" + long_path))}, 400, "invalid_path", "messages[0].content[0]",
         "too long"),
        ("NUL in input_reference", "POST", "/v1/videos", {"data": {**SMALL, "input_reference": "/x\x00y.png"}},
         400, "invalid_path", "input_reference", "NUL"),
        ("100,000-character input_reference", "POST", "/v1/videos",
         {"data": {**SMALL, "input_reference": long_path}}, 400, "invalid_path", "input_reference", "too long"),
        ("fps=inf with seconds", "POST", "/v1/videos", {"data": {"prompt": "x", "fps": "inf", "seconds": "1"}},
         400, "invalid_value", "fps", "finite"),
        ("fps=1e308 with seconds", "POST", "/v1/videos", {"data": {"prompt": "x", "fps": "1e308", "seconds": "1"}},
         400, "invalid_value", "fps", "120"),
        ("fps=nan", "POST", "/v1/videos/sync", {"data": {"prompt": "x", "fps": "nan"}},
         400, "invalid_value", "fps", "finite"),
        ("repetition_penalty=1e-300 (overflows every logit)", "POST", "/v1/chat/completions",
         {"json": {"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 1e-300}},
         400, "invalid_value", "repetition_penalty", "0.01"),
        ("temperature=NaN (JSON extension)", "POST", "/v1/chat/completions",
         _raw_json('{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}'),
         400, "invalid_value", "temperature", "finite"),
        ("extra_params nested 100,000 deep", "POST", "/v1/videos",
         {"data": {"prompt": "x", "extra_params": '{"action": ' + DEEP + "}"}},
         400, "invalid_value", "extra_params", "nested"),
        ("extra_params nested 40 deep", "POST", "/v1/videos/sync",
         {"data": {"prompt": "x", "extra_params": '{"action": ' + "[" * 40 + "]" * 40 + "}"}},
         400, "invalid_value", "extra_params", "nested"),
        ("JSON video body nested 100,000 deep", "POST", "/v1/videos", _raw_json('{"extra_params": ' + DEEP + "}"),
         400, "invalid_json", None, "nested"),
        ("JSON chat body nested 100,000 deep", "POST", "/v1/chat/completions", _raw_json('{"messages": ' + DEEP + "}"),
         400, None, None, "nested"),
        ("n x seed overflows", "POST", "/v1/images/generations",
         {"json": {"prompt": "x", "size": "64x64", "n": 2, "seed": 2**63 - 1}}, 400, "invalid_value", "seed", "seed"),
        ("seed above int64", "POST", "/v1/chat/completions", {"json": {**_chat("x"), "seed": 2**63}},
         400, "invalid_value", "seed", "seed"),
        ("10000x10000 PNG header in chat", "POST", "/v1/chat/completions",
         {"json": _chat(_part("image_url", _uri(_declared_png(10_000, 10_000), "image/png")))},
         413, "too_many_pixels", "messages[0].content[0]", "10000x10000"),
        ("30000x30000 PNG header in chat (above Pillow's own bomb limit)", "POST", "/v1/chat/completions",
         {"json": _chat(_part("image_url", _uri(_declared_png(30_000, 30_000), "image/png")))},
         413, "too_many_pixels", "messages[0].content[0]", "--max-input-pixels"),
        ("64x64 PNG above --max-input-pixels in chat", "POST", "/v1/chat/completions",
         {"json": _chat(_part("image_url", _uri(_png(64, 64), "image/png")))},
         413, "too_many_pixels", "messages[0].content[0]", "--max-input-pixels"),
        ("64x64 video above --max-input-pixels in chat", "POST", "/v1/chat/completions",
         {"json": _chat(_part("video_url", _uri(mp4, "video/mp4")))},
         413, "too_many_pixels", "messages[0].content[0]", "video frame"),
        ("10000x10000 PNG header as input_reference", "POST", "/v1/videos", {
            "data": SMALL, "files": {"input_reference": ("r.png", _declared_png(10_000, 10_000), "image/png")}},
         413, "too_many_pixels", "input_reference", "10000x10000"),
        ("64x64 video above --max-input-pixels as input_reference", "POST", "/v1/videos/sync", {
            "data": SMALL, "files": {"input_reference": ("r.mp4", mp4, "video/mp4")}},
         413, "too_many_pixels", "input_reference", "video frame"),
        ("video_url holding an image", "POST", "/v1/chat/completions",
         {"json": _chat(_part("video_url", _uri(_png(16, 16), "video/mp4")))},
         400, "invalid_media", "messages[0].content[0]", "image"),
        ("image_url holding a video", "POST", "/v1/chat/completions",
         {"json": _chat(_part("image_url", _uri(mp4, "image/png")))},
         400, "invalid_media", "messages[0].content[0]", "video"),
        ("multipart without its closing boundary", "POST", "/v1/videos",
         {"content": unclosed, "headers": {"content-type": "multipart/form-data; boundary=XX"}},
         400, "invalid_form", None, "closing boundary"),
        ("limit=0", "GET", "/v1/videos?limit=0", {}, 400, "invalid_value", "limit", "limit"),
        ("limit=101", "GET", "/v1/videos?limit=101", {}, 400, "invalid_value", "limit", "limit"),
        ("order=up", "GET", "/v1/videos?order=up", {}, 400, "invalid_value", "order", "order"),
        ("variant=thumbnail", "GET", "/v1/videos/video_x/content?variant=thumbnail", {},
         400, "invalid_value", "variant", "variant"),
    ]
    submitted = []
    gen_queue = tight.state.gen_queue
    original = gen_queue.submit
    gen_queue.submit = lambda task: submitted.append(task) or original(task)
    try:
        for name, method, path, kwargs, status, code, param, word in cases:
            r = tc.request(method, path, **kwargs)
            err = assert_error(r, status, code, param)
            assert word.lower() in err["message"].lower(), (name, err)
            if param is not None:
                field = param.split(".")[0].split("[")[0]
                assert field in err["message"], (name, err)
            assert len(err["message"]) < 400, (name, err)  # a 100,000-character path is not echoed back
    finally:
        gen_queue.submit = original
    assert submitted == []  # every one of them was refused before any model work


def test_long_prompts_are_refused_before_tokenizing(tight, tc):
    prompt = "word " * 1_600_000  # 8 MB
    limit = tight.state.config.max_prompt_tokens * tight.state.max_token_chars * 4
    for path, body, param in [("/v1/chat/completions", _chat(prompt), "messages"),
                              ("/v1/chat/completions", _chat([{"type": "text", "text": prompt}]), "messages"),
                              ("/v1/images/generations", {"prompt": prompt}, "prompt"),
                              ("/v1/images/generations", {"prompt": "x", "negative_prompt": prompt},
                               "negative_prompt")]:
        start = time.perf_counter()
        err = assert_error(tc.post(path, json=body), 400, "prompt_too_long", param)
        assert time.perf_counter() - start < 5.0, path
        assert str(limit) in err["message"]
    start = time.perf_counter()
    assert_error(tc.post("/v1/videos", data={**SMALL, "prompt": prompt}), 400, "prompt_too_long", "prompt")
    assert time.perf_counter() - start < 5.0
    # just under the character bound the tokenizer still decides (and refuses on tokens)
    err = assert_error(tc.post("/v1/images/generations", json={"prompt": "word " * 200, "size": "64x64"}), 400,
                       "prompt_too_long", "prompt")
    assert "tokens" in err["message"]


def test_unexpected_error_keeps_the_connection(tight):
    """A JSON 500 from the catch-all, then the same TCP connection answers the next requests."""
    conn = http.client.HTTPConnection("127.0.0.1", tight.port, timeout=60)
    try:
        conn.request("GET", "/health")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        sock = conn.sock
        for _ in range(2):
            body = json.dumps(_chat("boom"))
            conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            err = json.loads(r.read())["error"]
            assert r.status == 500 and err["code"] == "internal_error" and "RuntimeError" in err["message"]
            assert (r.getheader("connection") or "").lower() != "close"
            conn.request("GET", "/v1/models")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["object"] == "list"
            assert conn.sock is sock  # never reconnected: the server kept the connection open
    finally:
        conn.close()
    # httpx reusing one pooled connection sees the same
    with httpx.Client(base_url=tight.url, timeout=60, limits=httpx.Limits(max_connections=1)) as c:
        assert c.post("/v1/chat/completions", json=_chat("boom")).status_code == 500
        assert c.post("/v1/chat/completions", json=_chat("fine")).status_code == 200


def test_405_lists_every_method(tc):
    r = tc.put("/v1/videos/video_abc")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, DELETE"
    assert tc.patch("/v1/videos").headers["allow"] == "GET, POST"
    assert tc.get("/v1/videos/video_abc/cancel").headers["allow"] == "POST"


def test_openapi_states_codes_and_bounds(tc):
    spec = tc.get("/openapi.json").json()
    codes = {code for path in spec["paths"].values() for op in path.values() for code in op["responses"]}
    assert {"400", "404", "409", "413", "415", "429", "500"} <= codes and "422" not in codes
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})
    create = spec["paths"]["/v1/videos"]["post"]
    assert {"400", "413", "415", "429"} <= set(create["responses"])
    form = create["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["seconds"]["maximum"] == 60 and form["seconds"]["exclusiveMinimum"] == 0
    assert form["fps"]["maximum"] == 120 and form["num_inference_steps"]["maximum"] == 1000
    assert form["input_reference"]["format"] == "binary"
    params = {p["name"]: p["schema"] for p in spec["paths"]["/v1/videos"]["get"]["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 100)
    assert params["order"]["enum"] == ["asc", "desc"]
    content = spec["paths"]["/v1/videos/{video_id}/content"]["get"]
    assert {p["name"]: p["schema"] for p in content["parameters"]}["variant"]["enum"] == ["video"]
    assert "409" in content["responses"]
    assert "delete" in spec["paths"]["/v1/videos/{video_id}"]
    assert tc.get("/docs").status_code == 200  # Swagger UI
