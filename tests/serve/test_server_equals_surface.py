"""The server is the Python surface: for the same seed and parameters, /v1/images/generations, /v1/videos/sync, an
async video job and the three action modes give what `Generator.generate` gives called directly (decoded pixels and
actions equal), and /v1/chat/completions gives what `Reasoner.chat` gives. Every parameter checked here is also shown
to change the surface's own result (a case built to make it differ), so a server that drops the field fails.

What the server's worker got from the Generator is recorded (a proxy around the shared Generator) and compared
exactly with the direct call: latents, frames and actions. PNGs are lossless: the image endpoint's pixels equal the
direct frames. MP4s are compared after the same writer within the encoder's own spread: libx264 here does not give
the same bytes for the same frames twice (measured: two encodes of one clip differ by up to 0.16 grey levels on
average), and on random weights that spread is as large as the effect of guidance_scale on the frames, so the
exact comparison is on what the Generator returned."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.media import read_video
from serve_support import wait_for

VIDEO = dict(prompt="a red block slides left", width=64, height=64, num_frames=5, num_inference_steps=2)
FORM = {"prompt": VIDEO["prompt"], "size": "64x64", "num_frames": "5", "num_inference_steps": "2"}


class Recorder:
    """Stands in for the server's Generator: the real one does the work, each result is kept."""

    def __init__(self, generator):
        self.generator, self.results = generator, []

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def generate(self, **kwargs):
        result = self.generator.generate(**kwargs)
        self.results.append(result)
        return result


@pytest.fixture
def served(server, monkeypatch) -> Recorder:
    recorder = Recorder(server.state.gen_queue.generator)
    monkeypatch.setattr(server.state.gen_queue, "generator", recorder)
    return recorder


def assert_same_result(got, ref) -> None:
    """What the server generated == what the direct call generated, exactly."""
    assert torch.equal(got.latents, ref.latents)
    assert torch.equal(got.frames, ref.frames)
    assert (got.actions is None) == (ref.actions is None)
    if ref.actions is not None:
        assert torch.equal(got.actions, ref.actions)


def assert_same_video(served_pixels: np.ndarray, direct_pixels: np.ndarray) -> None:
    """Two decodes of the same frames through the writer: same shape, equal within the encoder's spread."""
    assert served_pixels.shape == direct_pixels.shape
    diff = np.abs(served_pixels.astype(np.int16) - direct_pixels.astype(np.int16))
    # libx264 here does not encode the same frames to the same bytes twice: measured up to 0.57 levels mean, 13 max
    # (2026-12-02); the exact comparison is of the Generator's own results, above
    assert diff.mean() < 1.5 and diff.max() <= 48, (diff.mean(), diff.max())


def _direct(generator, **kwargs):
    with torch.inference_mode():
        return generator.generate(**kwargs, progress=False)


def _pixels_of_mp4(data: bytes, path) -> np.ndarray:
    path.write_bytes(data)
    frames, _ = read_video(path)
    return frames.numpy()


def _pixels_via_writer(result, path) -> np.ndarray:
    """The direct result through the server's writer, decoded."""
    result.save(path)
    frames, _ = read_video(path)
    return frames.numpy()


def _png(seed: int, w: int = 64, h: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ images


def test_images_equal_generate(client, models, served, seed):
    generator = models[0]
    s = seed % 2**30
    r = client.post("/v1/images/generations", json={
        "prompt": "a red block", "size": "64x64", "n": 2, "num_inference_steps": 2, "guidance_scale": 4.0,
        "seed": s, "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    got = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))).convert("RGB")) for d in r.json()["data"]]
    assert len(served.results) == 2
    refs = []
    for i, image in enumerate(got):  # image i is seed + i
        ref = _direct(generator, prompt="a red block", num_frames=1, width=64, height=64, num_inference_steps=2,
                      guidance_scale=4.0, seed=s + i)
        assert_same_result(served.results[i], ref)
        np.testing.assert_array_equal(image, ref.frames[0].numpy())
        refs.append(ref)
    assert not torch.equal(refs[0].latents, refs[1].latents)  # the seeds differ: the comparison is not vacuous


# ------------------------------------------------------------------------------------------------ videos


def test_sync_video_and_guidance_scale_equal_generate(client, models, served, seed, tmp_path):
    """/v1/videos/sync at two guidance scales equals the surface at each; the two differ (so a server that drops
    guidance_scale, and runs the checkpoint's default, fails at least one of them)."""
    generator = models[0]
    s = seed % 2**30
    direct = {}
    for g in (1.0, 6.0):
        direct[g] = _direct(generator, **VIDEO, guidance_scale=g, seed=s)
        r = client.post("/v1/videos/sync", data={**FORM, "guidance_scale": str(g), "seed": str(s)})
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text
        assert_same_result(served.results[-1], direct[g])
        assert_same_video(_pixels_of_mp4(r.content, tmp_path / f"served_{g}.mp4"),
                          _pixels_via_writer(direct[g], tmp_path / f"direct_{g}.mp4"))
    assert not torch.equal(direct[1.0].latents, direct[6.0].latents)  # guidance changes the generation
    # the default (no guidance_scale sent) is the surface's default too
    r = client.post("/v1/videos/sync", data={**FORM, "seed": str(s)})
    assert r.status_code == 200, r.text
    assert_same_result(served.results[-1], _direct(generator, **VIDEO, seed=s))
    assert len(served.results) == 3


def test_sync_image_to_video_equals_generate(client, models, served, seed, tmp_path):
    generator = models[0]
    s = seed % 2**30
    png = _png(seed)
    (tmp_path / "ref.png").write_bytes(png)
    r = client.post("/v1/videos/sync", data={**FORM, "guidance_scale": "3", "seed": str(s)},
                    files={"input_reference": ("ref.png", png, "image/png")})
    assert r.status_code == 200, r.text
    ref = _direct(generator, **VIDEO, guidance_scale=3.0, seed=s, image=str(tmp_path / "ref.png"))
    assert ref.mode == "i2v" and served.results[-1].mode == "i2v"
    assert_same_result(served.results[-1], ref)
    assert_same_video(_pixels_of_mp4(r.content, tmp_path / "served.mp4"),
                      _pixels_via_writer(ref, tmp_path / "direct.mp4"))


def test_async_job_equals_generate(client, models, served, seed, tmp_path):
    generator = models[0]
    s = seed % 2**30 + 1
    created = client.post("/v1/videos", data={**FORM, "guidance_scale": "5", "seed": str(s)})
    assert created.status_code == 200, created.text
    done = wait_for(client, created.json()["id"], ("completed", "failed", "cancelled"), timeout=120)
    assert done["status"] == "completed", done
    content = client.get(f"/v1/videos/{done['id']}/content")
    assert content.status_code == 200, content.text
    ref = _direct(generator, **VIDEO, guidance_scale=5.0, seed=s)
    assert_same_result(served.results[-1], ref)
    assert_same_video(_pixels_of_mp4(content.content, tmp_path / "served.mp4"),
                      _pixels_via_writer(ref, tmp_path / "direct.mp4"))
    other = _direct(generator, **VIDEO, guidance_scale=5.0, seed=s + 1)
    assert not torch.equal(ref.latents, other.latents)  # the seed matters: a server that drops it fails
    assert done["seed"] == s and done["num_frames"] == 5 and done["size"] == "64x64"


# ------------------------------------------------------------------------------------------------ action modes

ACTION = dict(embodiment="droid_lerobot", action_chunk_size=4, resolution="256p", num_inference_steps=2)


def _extra(mode: str, **more) -> str:
    return json.dumps({"action_mode": mode, "domain_name": "droid_lerobot", "action_chunk_size": 4, **more})


def _served_actions(body: dict) -> np.ndarray:
    action = body["action"]
    assert action["dtype"] == "float32"
    return np.asarray(action["data"], dtype=np.float32).reshape(action["shape"])


def test_action_modes_equal_generate(client, models, served, seed, tmp_path):
    """policy (async job: actions and video), inverse dynamics (sync: JSON actions) and forward dynamics (sync: MP4
    from given actions) equal the surface; each result depends on the seed (policy, inverse) or on the actions given
    (forward), so a server that drops them fails."""
    from cosmos3.media import write_video

    generator = models[0]
    s = seed % 2**30
    png = _png(seed + 1)
    (tmp_path / "frame.png").write_bytes(png)
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(seed + 2).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 15)

    # policy: image in, actions and video out
    job = client.post("/v1/videos", data={"prompt": "pick up the cup", "size": "256p", "num_inference_steps": "2",
                                          "seed": str(s), "extra_params": _extra("policy")},
                      files={"input_reference": ("f.png", png, "image/png")})
    assert job.status_code == 200, job.text
    done = wait_for(client, job.json()["id"], ("completed", "failed", "cancelled"), timeout=180)
    assert done["status"] == "completed", done
    ref = _direct(generator, prompt="pick up the cup", image=str(tmp_path / "frame.png"), action_mode="policy",
                  seed=s, **ACTION)
    assert_same_result(served.results[-1], ref)
    np.testing.assert_array_equal(_served_actions(done), ref.actions.float().numpy())
    content = client.get(f"/v1/videos/{done['id']}/content")
    assert content.status_code == 200
    assert_same_video(_pixels_of_mp4(content.content, tmp_path / "policy_served.mp4"),
                      _pixels_via_writer(ref, tmp_path / "policy_direct.mp4"))
    other = _direct(generator, prompt="pick up the cup", image=str(tmp_path / "frame.png"), action_mode="policy",
                    seed=s + 1, **ACTION)
    assert not torch.equal(ref.actions, other.actions)

    # inverse dynamics: video in, actions out
    r = client.post("/v1/videos/sync", data={"size": "256p", "num_inference_steps": "2", "seed": str(s),
                                             "extra_params": _extra("inverse_dynamics")},
                    files={"input_reference": ("c.mp4", clip.read_bytes(), "video/mp4")})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    ref = _direct(generator, video=str(clip), action_mode="inverse_dynamics", seed=s, **ACTION)
    assert_same_result(served.results[-1], ref)
    np.testing.assert_array_equal(_served_actions(r.json()), ref.actions.float().numpy())
    other = _direct(generator, video=str(clip), action_mode="inverse_dynamics", seed=s + 1, **ACTION)
    assert not torch.equal(ref.actions, other.actions)

    # forward dynamics: image and actions in, video out
    actions = np.random.default_rng(seed + 3).uniform(-1, 1, (4, 10)).round(3)
    r = client.post("/v1/videos/sync", data={"size": "256p", "num_inference_steps": "2", "seed": str(s),
                                             "extra_params": _extra("forward_dynamics", action=actions.tolist())},
                    files={"input_reference": ("f.png", png, "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text
    kwargs = dict(image=str(tmp_path / "frame.png"), action_mode="forward_dynamics", seed=s, **ACTION)
    ref = _direct(generator, actions=actions, **kwargs)
    assert_same_result(served.results[-1], ref)
    assert_same_video(_pixels_of_mp4(r.content, tmp_path / "fd_served.mp4"),
                      _pixels_via_writer(ref, tmp_path / "fd_direct.mp4"))
    # the actions steer the generation (on random weights the difference may not survive decoding and encoding)
    assert not torch.equal(ref.latents, _direct(generator, actions=np.zeros((4, 10)), **kwargs).latents)
    assert len(served.results) == 3


# ------------------------------------------------------------------------------------------------ chat

QUESTIONS = ["Describe the scene.", "What moves first?", "Count the blocks, please.", "Why?", "Where is the cup?",
             "Tell me more about the robot arm and the table.", "What colour is the block on the left?",
             "Is anything falling?", "List every object you see, one per line.", "What happens next, and why?"]


def _served_chat(client, question: str, **fields) -> dict:
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}], **fields})
    assert r.status_code == 200, r.text
    body = r.json()
    return {"text": body["choices"][0]["message"]["content"], "finish_reason": body["choices"][0]["finish_reason"],
            "usage": body["usage"]}


def _surface_chat(reasoner, question: str, **fields) -> dict:
    out = reasoner.chat([{"role": "user", "content": question}], **fields)
    return {"text": out.text, "finish_reason": out.finish_reason, "usage": out.usage}


def test_chat_greedy_equals_reasoner_chat(client, models):
    reasoner = models[1]
    for q in QUESTIONS[:3]:
        assert _served_chat(client, q, max_tokens=12, temperature=0) == \
            _surface_chat(reasoner, q, max_tokens=12, temperature=0)


# (field, value, the fields both runs share): greedy for the penalties, a hot sampled draw for the truncations.
HOT = {"temperature": 1.5, "seed": 5}
FIELD_CASES = [
    # without the preset's presence penalty (1.5), which already keeps repeats away from a greedy answer
    ("repetition_penalty", 2.0, {"temperature": 0, "presence_penalty": 0.0}),
    ("repetition_penalty", 0.5, {"temperature": 0, "presence_penalty": 0.0}),
    ("presence_penalty", -2.0, {"temperature": 0}),  # the plain preset's default is +1.5
    ("top_k", 1, HOT),  # the plain preset's default is 20
    ("top_k", 200, HOT),
    ("top_p", 0.05, HOT),  # the plain preset's default is 0.8
    ("top_p", 1.0, HOT),
]


@pytest.mark.parametrize("field,value,shared", FIELD_CASES,
                         ids=[f"{f}={v}" for f, v, _ in FIELD_CASES])
def test_chat_sampling_field_changes_the_answer_as_on_the_surface(client, models, seed, field, value, shared):
    """server(field=x) == surface(field=x), for a question (among a few) where surface(field=x) differs from the
    surface without the field: a server that drops the field answers the default and fails."""
    reasoner = models[1]
    shared = {**shared, "max_tokens": 32}  # long enough for tokens to repeat
    if "seed" in shared:
        shared["seed"] = seed % 2**30
    tried = []
    for q in QUESTIONS:
        if "seed" in shared:  # a draw of its own per question
            shared["seed"] += 1
        with_field = _surface_chat(reasoner, q, **shared, **{field: value})
        without = _surface_chat(reasoner, q, **shared)
        if with_field["text"] != without["text"]:
            assert _served_chat(client, q, **shared, **{field: value}) == with_field
            return
        tried.append(q)
    pytest.fail(f"{field}={value} changed no answer of {tried}: the case does not test the field")


def test_chat_seed_changes_the_draw_as_on_the_surface(client, models, seed):
    reasoner = models[1]
    q = QUESTIONS[0]
    a, b = seed % 2**30, seed % 2**30 + 1
    first = _surface_chat(reasoner, q, max_tokens=16, temperature=1.5, seed=a)
    for other in range(b, b + 5):
        second = _surface_chat(reasoner, q, max_tokens=16, temperature=1.5, seed=other)
        if second["text"] != first["text"]:
            break
    else:
        pytest.fail("five seeds drew the same answer: the case does not test the seed")
    assert _served_chat(client, q, max_tokens=16, temperature=1.5, seed=a) == first
    assert _served_chat(client, q, max_tokens=16, temperature=1.5, seed=other) == second


def test_chat_stop_ends_the_answer_as_on_the_surface(client, models):
    """A stop string taken from the middle of the greedy answer cuts it there, on the surface and the server."""
    reasoner = models[1]
    for q in QUESTIONS:
        full = _surface_chat(reasoner, q, max_tokens=16, temperature=0)
        text = full["text"]
        cut = next((i for i in range(len(text) // 2, len(text)) if not text[i].isspace()), None)
        if cut is None or cut == 0:
            continue
        stop = text[cut]
        stopped = _surface_chat(reasoner, q, max_tokens=16, temperature=0, stop=[stop])
        assert stopped["text"] != text and stop not in stopped["text"], (stop, stopped, full)
        assert stopped["finish_reason"] == "stop"
        assert _served_chat(client, q, max_tokens=16, temperature=0, stop=[stop]) == stopped
        return
    pytest.fail("no greedy answer long enough to cut with a stop string")
