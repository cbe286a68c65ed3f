"""POST /v1/prompts/upsample, the API path behind the playground's "Upsample" button: the reasoner, asked with the
instruction of Generator.upsample_prompt and greedy decoding, expands a short prompt; the answer's JSON object (or the
answer itself) comes back. Checked against the reasoner called directly from Python."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from serve_support import LiveServer, assert_error
from seeding import fresh_seed


@pytest.fixture(scope="module")
def server(models, checkpoint, media_dir, tmp_path_factory):
    """The shared server's limits, with room for the instruction: the tiny tokenizer spends about 530 tokens on it
    (its vocabulary is bytes and a few merges), a released checkpoint's about 120."""
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("upsample"), max_batch=4,
                          max_model_len=1024, max_prompt_tokens=900, default_max_tokens=16,
                          max_upload_bytes=2_000_000, max_input_pixels=256 * 256,
                          allowed_local_media_paths=[media_dir])
    with LiveServer(create_app(config, *models)) as live:
        yield live


def _png_uri(w: int, h: int, seed: int) -> str:
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _direct(server, prompt: str, max_tokens: int, image: str | None = None) -> str:
    from cosmos3.generator import UPSAMPLE_INSTRUCTION

    text = {"type": "text", "text": UPSAMPLE_INSTRUCTION.format(prompt=prompt)}
    content = [{"type": "image_url", "image_url": {"url": image}}, text] if image else [text]
    return server.state.reasoner.chat([{"role": "user", "content": content}], max_tokens=max_tokens,
                                      temperature=0.0).text


def test_upsample_answers_what_the_reasoner_says(server, client):
    rng = np.random.default_rng(fresh_seed())
    words = ["a", "red", "block", "slides", "left", "robot", "arm", "{", "}", "table", "<b>"]
    prompt = " ".join(rng.choice(words, size=int(rng.integers(2, 8))))
    n = int(rng.integers(4, 20))
    r = client.post("/v1/prompts/upsample", json={"prompt": prompt, "max_tokens": n})
    assert r.status_code == 200, r.text
    out = r.json()
    expected = _direct(server, prompt, n)
    assert out["object"] == "prompt.upsample" and out["model"] == server.state.model_name
    assert out["structured"] is False and out["prompt"] == expected, (out, expected)  # random weights: no JSON
    assert out["usage"]["completion_tokens"] <= n and out["finish_reason"] in ("stop", "length")
    image = _png_uri(40, 30, int(rng.integers(1 << 30)))
    with_image = client.post("/v1/prompts/upsample", json={"prompt": prompt, "max_tokens": n, "image_url": image})
    assert with_image.status_code == 200, with_image.text
    assert with_image.json()["prompt"] == _direct(server, prompt, n, image)
    assert with_image.json()["usage"]["prompt_tokens"] > out["usage"]["prompt_tokens"]  # the image went in


def test_without_max_tokens_it_decodes_up_to_the_context(server, client):
    out = client.post("/v1/prompts/upsample", json={"prompt": "a cup"}).json()
    room = server.state.config.max_model_len - out["usage"]["prompt_tokens"]
    # the server's default_max_tokens (16 here) does not cut an upsampled prompt short
    assert out["usage"]["completion_tokens"] == room or out["finish_reason"] == "stop", out
    assert out["usage"]["completion_tokens"] > server.state.config.default_max_tokens or \
        out["finish_reason"] == "stop", out


def test_a_json_object_in_the_answer_is_the_prompt(server, client, monkeypatch):
    import cosmos3.serve.app as app_module

    seen = []
    structured = {"subjects": [{"description": "a robot arm"}], "temporal_caption": "it stacks two blocks"}

    def found(text):
        seen.append(text)
        return structured

    monkeypatch.setattr(app_module, "first_json_object", found)
    out = client.post("/v1/prompts/upsample", json={"prompt": "stack blocks", "max_tokens": 5}).json()
    assert seen == [_direct(server, "stack blocks", 5)]  # the whole answer is searched for the object
    assert out["structured"] is True and json.loads(out["prompt"]) == structured


def test_upsample_errors_name_their_field(server, client):
    cfg = server.state.config
    assert_error(client.post("/v1/prompts/upsample", json={"prompt": ""}), 400, param="prompt")
    assert_error(client.post("/v1/prompts/upsample", json={}), 400, param="prompt")
    assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "seed": 1}), 400, param="seed")
    assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "max_tokens": 0}), 400,
                 param="max_tokens")
    e = assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "max_tokens": cfg.max_model_len}),
                     400, code="context_length_exceeded", param="max_tokens")
    assert str(cfg.max_model_len) in e["message"]
    e = assert_error(client.post("/v1/prompts/upsample", json={"prompt": "word " * 200_000}), 400,
                     param="prompt", code="prompt_too_long")
    assert e["message"].startswith("prompt:")
    broken = {"prompt": "x", "image_url": "data:image/png;base64,AAAA"}
    e = assert_error(client.post("/v1/prompts/upsample", json=broken), 400, param="image_url")
    assert "messages" not in e["message"]
    big = _png_uri(int(cfg.max_input_pixels ** 0.5) + 8, int(cfg.max_input_pixels ** 0.5) + 8, 1)
    if len(big) < cfg.max_upload_bytes:
        assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "image_url": big}), 413,
                     param="image_url", code="too_many_pixels")
    assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "image_url": "/etc/passwd"}), 403,
                 param="image_url")
    assert_error(client.post("/v1/prompts/upsample", json={"prompt": "x", "model": "other"}), 404, param="model")
    assert client.post("/v1/prompts/upsample", json={"prompt": "still fine", "max_tokens": 2}).status_code == 200
