"""Video endpoints with httpx against a live server: sync MP4, the async job lifecycle, progress, cancellation, the
bounded queue (429), upload limits (413), malformed inputs (400 and friends) and the action modes."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from serve_support import assert_error, wait_for
from cosmos3.media import probe_video, write_video

SMALL = {"prompt": "a red block slides left", "size": "64x64", "num_frames": "5", "num_inference_steps": "2",
         "guidance_scale": "3"}


def _png(w=64, h=64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = np.random.default_rng(2).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    write_video(path, frames, 15)
    return path.read_bytes()


def _probe(data: bytes, tmp_path) -> dict:
    path = tmp_path / "out.mp4"
    path.write_bytes(data)
    return probe_video(path)


def test_sync_text_and_image_to_video(client, tmp_path):
    r = client.post("/v1/videos/sync", data=SMALL)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text
    info = _probe(r.content, tmp_path)
    assert (info["frames"], info["width"], info["height"]) == (5, 64, 64)
    r = client.post("/v1/videos/sync", data=SMALL, files={"input_reference": ("ref.png", _png(), "image/png")})
    assert r.status_code == 200, r.text
    assert _probe(r.content, tmp_path)["frames"] == 5


def test_async_lifecycle(client, tmp_path):
    created = client.post("/v1/videos", data={**SMALL, "seed": "11"})
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["object"] == "video" and job["status"] in ("queued", "in_progress") and job["seed"] == 11
    done = wait_for(client, job["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["progress"] == 100 and done["error"] is None, done
    assert done["size"] == "64x64" and done["num_frames"] == 5
    content = client.get(f"/v1/videos/{job['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    assert _probe(content.content, tmp_path)["frames"] == 5
    listed = client.get("/v1/videos", params={"limit": 100}).json()
    assert job["id"] in [v["id"] for v in listed["data"]] and listed["object"] == "list"
    deleted = client.delete(f"/v1/videos/{job['id']}").json()
    assert deleted == {"id": job["id"], "object": "video.deleted", "deleted": True}
    assert_error(client.get(f"/v1/videos/{job['id']}"), 404)
    assert_error(client.get(f"/v1/videos/{job['id']}/content"), 404)
    assert_error(client.get("/v1/videos", params={"limit": 0}), 400, param="limit")
    assert_error(client.get("/v1/videos", params={"colour": "red"}), 400, "unknown_field")


def test_progress_cancel_and_queue_full(server, client):
    long = {**SMALL, "num_inference_steps": "1000"}
    running = client.post("/v1/videos", data=long).json()
    job = wait_for(client, running["id"], ("in_progress",))
    queued = [client.post("/v1/videos", data=long).json() for _ in range(server.state.config.max_queue)]
    assert all(q["status"] == "queued" for q in queued)
    full = client.post("/v1/videos", data=long)
    assert_error(full, 429, "queue_full")
    assert int(full.headers["Retry-After"]) >= 1
    assert_error(client.post("/v1/videos/sync", data=SMALL), 429)
    assert_error(client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"}), 429)
    deadline = time.monotonic() + 30
    while (job := client.get(f"/v1/videos/{running['id']}").json())["progress"] < 1:
        assert time.monotonic() < deadline and job["status"] == "in_progress", job
        time.sleep(0.1)
    assert 0 < job["progress"] < 100
    started = time.monotonic()
    cancelled = client.post(f"/v1/videos/{running['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    task_gone = lambda: server.state.gen_queue.get(running["id"]) is None  # noqa: E731
    while not task_gone():  # the worker stops at the next step boundary
        assert time.monotonic() - started < 10
        time.sleep(0.05)
    for q in queued:  # delete = cancel (they never start), then remove
        assert client.delete(f"/v1/videos/{q['id']}").json()["deleted"] is True
    assert client.get(f"/v1/videos/{running['id']}").json()["status"] == "cancelled"
    assert_error(client.get(f"/v1/videos/{running['id']}/content"), 409, "video_not_ready")
    r = client.post("/v1/videos/sync", data=SMALL)  # the worker is free again
    assert r.status_code == 200, r.text


def test_upload_limits_and_corrupt_files(server, client):
    big = b"\x89PNG" + b"0" * (server.state.config.max_upload_bytes + 10)
    r = client.post("/v1/videos", data=SMALL, files={"input_reference": ("big.png", big, "image/png")})
    assert_error(r, 413, "request_too_large")

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b'{"prompt": "'
        for _ in range(300):
            yield b"x" * 10_000
        yield b'"}'

    r = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "request_too_large")
    corrupt = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    r = client.post("/v1/videos", data=SMALL, files={"input_reference": ("bad.png", corrupt, "image/png")})
    assert_error(r, 400, "invalid_media", "input_reference")
    truncated_mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200
    r = client.post("/v1/videos/sync", data=SMALL, files={"input_reference": ("bad.mp4", truncated_mp4, "video/mp4")})
    assert_error(r, 400, "invalid_media", "input_reference")
    r = client.post("/v1/videos", data=SMALL, files={"input_reference": ("a.txt", b"hello there", "text/plain")})
    assert_error(r, 400, "invalid_media")
    assert client.get("/health").json()["status"] == "ok"


BAD_FORMS = [
    ({"colour": "red"}, 400, "unknown_field", "colour"),
    ({"size": "64"}, 400, "invalid_value", "size"),
    ({"size": "70x64"}, 400, "invalid_value", "width"),
    ({"size": "4096x4096"}, 400, "too_many_pixels", "size"),
    ({"num_frames": "33"}, 400, "too_many_frames", "num_frames"),
    ({"num_frames": "3"}, 400, "invalid_value", "num_frames"),
    ({"num_frames": "five"}, 400, "invalid_value", "num_frames"),
    ({"fps": "13"}, 400, "invalid_value", "fps"),
    ({"num_inference_steps": "0"}, 400, "invalid_value", "num_inference_steps"),
    ({"guidance_scale": "50"}, 400, "invalid_value", "guidance_scale"),
    ({"seed": "-1"}, 400, "invalid_value", "seed"),
    ({"seconds": "1", "num_frames": "5"}, 400, "invalid_value", "seconds"),
    ({"generate_sound": "true"}, 400, "unsupported", "generate_sound"),
    ({"model": "other"}, 404, "model_not_found", "model"),
    ({"extra_params": "{not json"}, 400, "invalid_value", "extra_params"),
    ({"extra_params": "[1, 2]"}, 400, "invalid_value", "extra_params"),
    ({"extra_params": '{"magic": 1}'}, 400, "unknown_field", "extra_params.magic"),
    ({"extra_params": '{"action_mode": "dance"}'}, 400, "invalid_value", "extra_params.action_mode"),
    ({"extra_params": '{"action": [[1, 2]]}'}, 400, "invalid_value", "extra_params.action"),
    ({"extra_params": '{"condition_video_keep": "last"}'}, 400, "invalid_value",
     "extra_params.condition_video_keep"),
    ({"extra_params": '{"action_mode": "policy", "domain_name": "no_such_robot"}'}, 400, "invalid_value",
     "extra_params.domain_name"),
    ({"extra_params": '{"action_mode": "forward_dynamics", "domain_name": "droid_lerobot", '
                      '"action_path": "/etc/passwd"}'}, 403, "path_not_allowed", "extra_params.action_path"),
    ({"extra_params": '{"action_mode": "forward_dynamics", "domain_name": "droid_lerobot", '
                      '"raw_action_dim": 7}'}, 400, "invalid_value", "extra_params.raw_action_dim"),
]


@pytest.mark.parametrize("change,status,code,param", BAD_FORMS, ids=[str(i) for i in range(len(BAD_FORMS))])
def test_malformed_video_requests(client, change, status, code, param):
    r = client.post("/v1/videos", data={**SMALL, **change})
    assert_error(r, status, code, param)


def test_malformed_transport(client, media_dir, tmp_path):
    assert_error(client.post("/v1/videos", content=b"prompt=x", headers={"content-type": "text/plain"}), 415)
    r = client.post("/v1/videos", content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data; "
                                                                                       "boundary=xx"})
    assert 400 <= r.status_code < 500
    assert_error(client.post("/v1/videos", content=b"{", headers={"content-type": "application/json"}), 400)
    r = client.post("/v1/videos", files=[("prompt", (None, "a")), ("prompt", (None, "b"))])
    assert_error(r, 400, "duplicate_field", "prompt")
    (tmp_path / "outside.png").write_bytes(_png())
    (media_dir / "escape.png").symlink_to(tmp_path / "outside.png")
    for ref in (str(media_dir / "escape.png"), str(media_dir / ".." / tmp_path.name / "outside.png")):
        assert_error(client.post("/v1/videos", data={**SMALL, "input_reference": ref}), 403, "path_not_allowed")
    (media_dir / "inside.png").write_bytes(_png())
    job = client.post("/v1/videos", json={**SMALL, "input_reference": str(media_dir / "inside.png")})
    assert job.status_code == 200, job.text  # JSON bodies and allowed local paths work too
    assert wait_for(client, job.json()["id"], ("completed", "failed"))["status"] == "completed"


# ------------------------------------------------------------------------------------------------ action modes


@pytest.fixture(scope="module")
def action_modes(models):
    return True


def test_action_modes(action_modes, client, media_dir, mp4):
    extra = {"action_mode": "policy", "domain_name": "droid_lerobot", "action_chunk_size": 4, "raw_action_dim": 10}
    form = {"prompt": "pick up the cup", "size": "256p", "num_inference_steps": "2", "extra_params": json.dumps(extra)}
    job = client.post("/v1/videos", data=form, files={"input_reference": ("f.png", _png(), "image/png")})
    assert job.status_code == 200, job.text
    done = wait_for(client, job.json()["id"], ("completed", "failed"), timeout=120)
    assert done["status"] == "completed", done["error"]
    action = done["action"]
    assert action["shape"] == [4, 10] and action["dtype"] == "float32"
    assert action["raw_action_dim"] == 10 and action["domain_id"] == 8
    assert np.isfinite(np.asarray(action["data"], dtype=np.float32)).all()
    assert client.get(f"/v1/videos/{done['id']}/content").status_code == 200
    # inverse dynamics: video in, actions out (JSON from the sync endpoint)
    extra = {"action_mode": "inverse_dynamics", "domain_name": "droid_lerobot", "action_chunk_size": 4}
    r = client.post("/v1/videos/sync", data={"size": "256p", "num_inference_steps": "2",
                                             "extra_params": json.dumps(extra)},
                    files={"input_reference": ("c.mp4", mp4, "video/mp4")})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert r.json()["action"]["shape"] == [4, 10]
    # forward dynamics from an allowed action file: MP4 of chunk + 1 frames
    (media_dir / "actions.json").write_text(json.dumps(np.zeros((4, 10)).tolist()))
    extra = {"action_mode": "forward_dynamics", "domain_name": "droid_lerobot", "action_chunk_size": 4,
             "action_path": str(media_dir / "actions.json")}
    r = client.post("/v1/videos/sync", data={"size": "256p", "num_inference_steps": "2",
                                             "extra_params": json.dumps(extra)},
                    files={"input_reference": ("f.png", _png(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text
    extra["action"] = [[float("nan")] * 10] * 4
    del extra["action_path"]
    r = client.post("/v1/videos", data={"extra_params": json.dumps(extra)},
                    files={"input_reference": ("f.png", _png(), "image/png")})
    assert_error(r, 400, "invalid_value", "extra_params.action.0")  # NaN: refused by the schema
