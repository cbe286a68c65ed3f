"""A tiny official-layout checkpoint (random weights, with a tiny Qwen3-VL vision tower) and live uvicorn servers on
127.0.0.1, started in a thread of the test process."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

import httpx
import pytest
import torch

from oracle import build_reference_pipeline, random_config
from seeding import ENV, SESSION_SEED, fresh_seed


def build_serve_checkpoint(root, seed: int) -> None:
    from transformers import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    from cosmos3.tokenizers import CHATML_TEMPLATE

    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config("qwen", rng, sound=False).replace(vocab_size=300, num_embodiment_domains=32)
    build_reference_pipeline(root, cfg, gen, sound=False)
    # The tiny tokenizer's template takes string contents only; the reasoner needs image / video parts.
    (root / "text_tokenizer" / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    torch.manual_seed(seed)
    vision = Qwen3VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                 out_hidden_size=cfg.hidden_size, patch_size=16, spatial_merge_size=2,
                                 temporal_patch_size=2, deepstack_visual_indexes=[0], num_position_embeddings=64)
    Qwen3VLVisionModel(vision).save_pretrained(root / "vision_encoder")
    # Small images stay small (a 32x32 picture is 4 tokens instead of Qwen's 64-token minimum).
    (root / "vision_encoder" / "preprocessor_config.json").write_text(
        json.dumps({"min_pixels": 1024, "max_pixels": 65536}))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    seed = fresh_seed("serve checkpoint")
    print(f"serve checkpoint seed {seed} ({ENV}={SESSION_SEED})")
    root = tmp_path_factory.mktemp("serve_ckpt")
    build_serve_checkpoint(root, seed)
    return root


@pytest.fixture(scope="session")
def models(checkpoint):
    from cosmos3.serve.runtime import load_models

    return load_models(checkpoint, "cpu")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """uvicorn serving `app` on a free 127.0.0.1 port in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def state(self):
        return self.app.state.cosmos3


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """The one folder servers let requests read local files from."""
    return tmp_path_factory.mktemp("allowed_media")


@pytest.fixture(scope="session")
def server(models, checkpoint, media_dir, tmp_path_factory):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("storage"), max_queue=2,
                          max_batch=4, max_model_len=512, max_prompt_tokens=256, default_max_tokens=16,
                          max_upload_bytes=2_000_000, max_pixels=320 * 256, max_frames=17, max_steps=1000,
                          allowed_local_media_paths=[media_dir])
    generator, reasoner = models
    with LiveServer(create_app(config, generator=generator, reasoner=reasoner)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    """The response has `status` and an OpenAI-shaped error body (with `code` / `param` when given)."""
    assert response.status_code == status, response.text
    body = response.json()
    # a guardrail's refusal (code content_blocked) also names the check that refused
    extra = {"check"} if body.get("error", {}).get("code") == "content_blocked" else set()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"} | extra, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def wait_for(client: httpx.Client, video_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/videos/{video_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stuck at {job}"
        time.sleep(0.1)
