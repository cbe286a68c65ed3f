"""The OpenAI-compatible surface against a live server: the official `openai` client for models, chat (plain,
streaming, image as a data URI) and images; error shapes for malformed requests; the API key."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from serve_support import LiveServer, assert_error


@pytest.fixture
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _png_data_uri(w=40, h=30) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_health_models_openapi(server, client, oai):
    assert client.get("/health").json()["status"] == "ok"
    models = oai.models.list().data
    assert [m.id for m in models] == [server.state.model_name]
    spec = client.get("/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/images/generations", "/v1/videos", "/v1/videos/sync",
                 "/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/models", "/health"):
        assert path in spec["paths"], path


def test_chat_plain_and_streaming_agree(server, oai):
    messages = [{"role": "user", "content": "Which block moves first?"}]
    plain = oai.chat.completions.create(model=server.state.model_name, messages=messages, max_tokens=8,
                                        temperature=0, seed=3)
    choice = plain.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert plain.usage.completion_tokens >= 1
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    chunks = list(oai.chat.completions.create(model=server.state.model_name, messages=messages, max_tokens=8,
                                              temperature=0, seed=3, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content  # greedy: the stream adds up to the same answer
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_image_data_uri_and_sampling_fields(server, oai):
    content = [{"type": "image_url", "image_url": {"url": _png_data_uri()}}, {"type": "text", "text": "What?"}]
    out = oai.chat.completions.create(model=server.state.model_name, messages=[{"role": "user", "content": content}],
                                      max_tokens=4, temperature=0.7, top_p=0.9, presence_penalty=0.5, seed=1,
                                      stop=["zz"], extra_body={"top_k": 5, "repetition_penalty": 1.1})
    text_only = oai.chat.completions.create(model=server.state.model_name,
                                            messages=[{"role": "user", "content": "What?"}], max_tokens=4)
    assert out.usage.prompt_tokens > text_only.usage.prompt_tokens  # the image's tokens are in the prompt


def test_chat_errors(server, client, oai, media_dir, tmp_path):
    name = server.state.model_name
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    bad = [
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 2}}, "unknown_field", "logit_bias"),
        ({"messages": [{"role": "user", "content": "x", "nick": "a"}]}, "unknown_field", "messages.0.nick"),
        ({"messages": []}, None, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, "invalid_value", "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "unsupported", "n"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000}, "context_length_exceeded", None),
        ({"messages": [{"role": "user", "content": "x" * 400}]}, "prompt_too_long", "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,AAAA"}}]}]}, "invalid_media", "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "https://example.com/a.png"}}]}]}, "remote_media_disabled", None),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "file:///etc/passwd"}}]}]}, "path_not_allowed", None),
    ]
    for body, code, param in bad:
        r = client.post("/v1/chat/completions", json={"model": name, **body})
        assert 400 <= r.status_code < 500, (body, r.text)
        assert_error(r, r.status_code, code, param)
    r = client.post("/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_json")
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.put("/v1/models"), 405)
    # an allowed local image works; a symlink pointing out of the allowed folder does not
    (media_dir / "ok.png").write_bytes(base64.b64decode(_png_data_uri().split(",")[1]))
    ok = {"type": "image_url", "image_url": {"url": str(media_dir / "ok.png")}}
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [ok]}], "max_tokens": 2})
    assert r.status_code == 200, r.text
    (tmp_path / "secret.png").write_bytes(b"x")
    (media_dir / "link.png").symlink_to(tmp_path / "secret.png")
    for url in (str(media_dir / "link.png"), str(media_dir / ".." / tmp_path.name / "secret.png")):
        part = {"type": "image_url", "image_url": {"url": url}}
        r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [part]}]})
        assert_error(r, 403, "path_not_allowed")
    assert client.get("/health").status_code == 200  # still serving


def test_images_generate(server, oai, client):
    out = oai.images.generate(model=server.state.model_name, prompt="a red block", size="64x64", n=2,
                              response_format="b64_json",
                              extra_body={"num_inference_steps": 2, "guidance_scale": 3.0, "seed": 7})
    assert len(out.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in out.data]
    assert all(im.size == (64, 64) for im in images)
    again = oai.images.generate(prompt="a red block", size="64x64", n=1, response_format="b64_json",
                                extra_body={"num_inference_steps": 2, "guidance_scale": 3.0, "seed": 7})
    assert again.data[0].b64_json == out.data[0].b64_json  # same seed, same picture
    for body, code, param in [
        ({"prompt": "x", "size": "64x64", "style": "vivid"}, "unknown_field", "style"),
        ({"prompt": "x", "size": "sixty"}, "invalid_value", "size"),
        ({"prompt": "x", "size": "65x64"}, "invalid_value", "width"),
        ({"prompt": "x", "size": "1024x1024"}, "too_many_pixels", "size"),
        ({"prompt": "x", "size": "64x64", "response_format": "url"}, None, "response_format"),
        ({"prompt": "x", "size": "64x64", "guidance_scale": 99}, None, "guidance_scale"),
        ({"prompt": "x", "size": "64x64", "extra_args": {"magic": 1}}, "unknown_field", "extra_args.magic"),
    ]:
        assert_error(client.post("/v1/images/generations", json=body), 400, code, param)


def test_guardrail_refusal_is_400(models, checkpoint, tmp_path):
    from cosmos3.serve import ServerConfig, create_app
    from cosmos3.serve.media_policy import Guardrail

    class NoCats(Guardrail):
        def check_prompt(self, text, surface):
            return "cats are not allowed" if "cat" in text else None

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path, max_pixels=128 * 128)
    with LiveServer(create_app(config, *models, guardrail=NoCats())) as live, \
            httpx.Client(base_url=live.url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a cat"}]})
        assert_error(r, 400, "content_blocked")
        r = c.post("/v1/images/generations", json={"prompt": "a cat", "size": "64x64"})
        assert_error(r, 400, "content_blocked", "prompt")
        r = c.post("/v1/videos", data={"prompt": "a cat", "size": "64x64", "num_frames": "5"})
        assert_error(r, 400, "content_blocked", "prompt")
        assert r.json()["error"]["check"] == "guardrail"  # a subclass's reason text: the check is the guardrail's


def test_api_key(models, checkpoint, tmp_path):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path, api_key="s3cret", default_max_tokens=2)
    with LiveServer(create_app(config, *models)) as live:
        assert httpx.get(live.url + "/health").status_code == 200  # health stays open for probes
        assert_error(httpx.get(live.url + "/v1/models"), 401, "invalid_api_key")
        assert_error(httpx.get(live.url + "/v1/models", headers={"Authorization": "Bearer nope"}), 401)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=live.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=live.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.models.list().data[0].id == live.state.model_name
        assert good.chat.completions.create(model=live.state.model_name,
                                            messages=[{"role": "user", "content": "hi"}]).usage.completion_tokens
