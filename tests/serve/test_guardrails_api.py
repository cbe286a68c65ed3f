"""Guardrails in the server: on by default; a blocked prompt answers 400 `content_blocked` naming the check, and no
job, no file and no generation follow; a request's `guardrails: false` only where the server allows it; the frame
filters run on what is returned."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from serve_support import LiveServer, assert_error, wait_for
from cosmos3.guardrails import Guardrail

BLOCKED = "a documentary about child p0rn rings"  # an entry of the shipped blocklist, one look-alike digit
SMALL = {"prompt": "a red block slides left", "size": "64x64", "num_frames": "5", "num_inference_steps": "2"}


def _files(root) -> set:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "tmp" not in p.parts}


def _blocked(r: httpx.Response, param: str, check: str = "blocklist") -> None:
    err = assert_error(r, 400, "content_blocked", param)
    assert r.json()["error"]["check"] == check
    assert err["message"].startswith(f"{param} blocked by the {check} check: ")


def test_blocked_requests_answer_400_and_generate_nothing(server, client, monkeypatch):
    state = server.state
    for job in client.get("/v1/videos", params={"limit": 100}).json()["data"]:  # another test's job still running
        if job["status"] in ("queued", "in_progress"):  # would write files while this one looks
            client.post(f"/v1/videos/{job['id']}/cancel")
            wait_for(client, job["id"], ("completed", "failed", "cancelled"))
    calls = []
    monkeypatch.setattr(state.generator, "generate", lambda *a, **k: calls.append(k) or pytest.fail("generated"))
    assert [c.name for c in state.guardrail.prompt_checks] == ["blocklist"]  # on by default
    jobs = client.get("/v1/videos", params={"limit": 100}).json()["data"]
    files = _files(state.config.storage)
    _blocked(client.post("/v1/videos", data={**SMALL, "prompt": BLOCKED}), "prompt")
    _blocked(client.post("/v1/videos", data={**SMALL, "negative_prompt": BLOCKED},
                         files={"input_reference": ("ref.png", b"not read", "image/png")}), "negative_prompt")
    _blocked(client.post("/v1/videos/sync", data={**SMALL, "prompt": BLOCKED}), "prompt")
    _blocked(client.post("/v1/images/generations", json={"prompt": BLOCKED, "size": "64x64"}), "prompt")
    _blocked(client.post("/v1/images/generations", json={"prompt": "a cup", "negative_prompt": BLOCKED,
                                                         "size": "64x64"}), "negative_prompt")
    _blocked(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": BLOCKED}]}),
             "messages[0].content")
    assert client.get("/v1/videos", params={"limit": 100}).json()["data"] == jobs  # no job was created
    assert _files(state.config.storage) == files  # nothing written: no upload, no output
    assert calls == []  # nothing reached the generator


def test_turning_guardrails_off_needs_the_server_to_allow_it(client):
    for path, body in (("/v1/videos", {**SMALL, "extra_params": '{"guardrails": false}'}),
                       ("/v1/videos/sync", {**SMALL, "extra_params": '{"guardrails": false}'})):
        err = assert_error(client.post(path, data=body), 400, "guardrails_required", "extra_params.guardrails")
        assert "--allow-guardrails-off" in err["message"]
    r = client.post("/v1/images/generations", json={"prompt": "a cup", "size": "64x64",
                                                     "extra_args": {"guardrails": False}})
    assert_error(r, 400, "guardrails_required", "extra_args.guardrails")


class Paint:
    """A frame filter painting every frame one grey level: visible in any MP4 the server returns."""

    name = "paint"

    def apply(self, frames):
        return np.full_like(frames, 200)


def _mean(data: bytes, tmp_path) -> float:
    from cosmos3.media import read_video

    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    return float(np.asarray(read_video(path)[0], dtype=np.float32).mean())


def test_allowed_request_turns_guardrails_off_and_filters_run(models, checkpoint, tmp_path):
    from cosmos3.guardrails.blocklist import Blocklist
    from cosmos3.serve import ServerConfig, create_app

    guard = Guardrail([Blocklist.from_file()], [Paint()])
    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path / "s", max_pixels=128 * 128,
                          allow_guardrails_off=True)
    with LiveServer(create_app(config, *models, guardrail=guard)) as live, \
            httpx.Client(base_url=live.url, timeout=120) as c:
        guarded = c.post("/v1/videos/sync", data=SMALL)
        assert guarded.status_code == 200, guarded.text
        assert abs(_mean(guarded.content, tmp_path) - 200) < 3  # the frame filter ran on the output
        off = c.post("/v1/videos/sync", data={**SMALL, "prompt": BLOCKED, "extra_params": '{"guardrails": false}'})
        assert off.status_code == 200, off.text  # not screened, and not painted
        assert abs(_mean(off.content, tmp_path) - 200) > 3
        _blocked(c.post("/v1/videos/sync", data={**SMALL, "prompt": BLOCKED}), "prompt")


def test_server_without_guardrails(models, checkpoint, tmp_path):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path / "s", max_pixels=128 * 128,
                          guardrails=False)
    with LiveServer(create_app(config, *models)) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        assert not live.state.guardrail.active
        r = c.post("/v1/images/generations", json={"prompt": BLOCKED, "size": "64x64", "num_inference_steps": 1})
        assert r.status_code == 200, r.text
        r = c.post("/v1/videos", data={**SMALL, "extra_params": '{"guardrails": true}'})
        assert_error(r, 400, "guardrails_unavailable", "extra_params.guardrails")


def test_serve_flags():
    from cosmos3.serve import build_parser

    args = build_parser().parse_args(["--no-guardrails"])
    assert args.no_guardrails and not args.allow_guardrails_off and args.blocklist is None
    args = build_parser().parse_args(["--allow-guardrails-off", "--blocklist", "l.txt", "--guard-model", "g/"])
    assert (args.allow_guardrails_off, args.blocklist, args.guard_model) == (True, "l.txt", "g/")


@pytest.mark.parametrize("flags, message", [
    (["--blocklist", "missing-list.txt"], "missing-list.txt: cannot read it"),
    (["--guard-model", "no-such-folder"], "not a model folder"),
])
def test_serve_refuses_bad_guardrail_files(flags, message, capsys, monkeypatch, tmp_path):
    from cosmos3.serve import runtime, serve_main

    monkeypatch.setattr(runtime, "load_models", lambda *a, **k: (object(), None))
    assert serve_main(["--storage", str(tmp_path / "s")] + flags) == 2
    assert message in capsys.readouterr().err
