"""The server judges generation requests with the Generator's own resolver: on a generated grid of requests (valid
and invalid) it accepts exactly what `Generator.resolve` accepts (within its limits) and queues the resolved request;
`seconds` counts at the fps the clip is written with; `--max-job-seconds` refuses what would run too long."""

from __future__ import annotations

import itertools
import random
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from serve_support import assert_error, wait_for
from cosmos3.media import probe_video, write_video
from cosmos3.serve.errors import APIError
from cosmos3.serve.generation import PARAMS, CostModel, frames_for_seconds, video_request
from cosmos3.serve.schemas import VideoRequest


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(folder / "in.png")
    write_video(folder / "in.mp4", np.random.default_rng(1).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 16)
    return {"image": ("image", folder / "in.png"), "video": ("video", folder / "in.mp4"), None: None}


def _state(models, tmp_path, **limits):
    from cosmos3.serve import ServerConfig
    from cosmos3.serve.state import ServerState

    config = dict(max_pixels=10**9, max_frames=10**6, max_steps=1000, max_prompt_tokens=4096)
    config.update(limits)
    return ServerState(ServerConfig(storage=tmp_path / "storage", **config), models[0], None)


def _generate_args(body: dict, ref) -> dict:
    """What the API's fields mean as Generator arguments (the API's documented mapping)."""
    kw = dict(prompt=body.get("prompt", ""), fps=body.get("fps"), num_inference_steps=body.get("num_inference_steps"),
              guidance_scale=body.get("guidance_scale"), seed=body["seed"])
    extra = body.get("extra_params") or {}
    if extra.get("action_mode"):
        kw.update(action_mode=extra["action_mode"], embodiment=extra["domain_name"],
                  action_chunk_size=extra.get("action_chunk_size"), resolution=body.get("size"))
        if extra.get("action") is not None:
            kw["actions"] = np.asarray(extra["action"], np.float64)
    else:
        size = body.get("size")
        width, height = (int(x) for x in size.split("x")) if size else (None, None)
        kw.update(width=width, height=height, num_frames=body.get("num_frames"),
                  enable_sound=body.get("generate_sound", False),
                  condition_frame_indexes=extra.get("condition_frame_indexes_vision"))
    if ref is not None:
        kw[ref[0]] = str(ref[1])
    return {k: v for k, v in kw.items() if v is not None}


VIDEO_GRID = dict(size=[None, "64x64", "70x64", "320x192", "96x64", "64x4096"], num_frames=[None, 1, 3, 5, 9],
                  fps=[None, 12.0, 16.0, 24.0], num_inference_steps=[None, 2], guidance_scale=[None, 0.0, 8.0],
                  generate_sound=[False, True], ref=[None, "image", "video"], prompt=["a red block", "", "  "],
                  indexes=[None, [0], [0, 9]])
ACTION_GRID = dict(mode=["policy", "forward_dynamics", "inverse_dynamics"], domain=["umi", "droid_lerobot", "av"],
                   chunk=[None, 4, 6], size=[None, "256p", "480p"], ref=[None, "image", "video"],
                   fps=[None, 16.0, 7.0], action=[None, "fit", "wide"], prompt=["pick up the cup", ""])


def _grid(space: dict, n: int, rng: random.Random) -> list[dict]:
    every = list(itertools.product(*space.values()))
    return [dict(zip(space, values)) for values in rng.sample(every, min(n, len(every)))]


def _bodies(seed: int) -> list[tuple[dict, object]]:
    rng = random.Random(seed)
    out = []
    for g in _grid(VIDEO_GRID, 700, rng):
        body = {k: g[k] for k in ("size", "num_frames", "fps", "num_inference_steps", "guidance_scale",
                                  "generate_sound", "prompt") if g[k] is not None}
        if g["indexes"] is not None and g["ref"] == "video":
            body["extra_params"] = {"condition_frame_indexes_vision": g["indexes"]}
        out.append((dict(body, seed=7), g["ref"]))
    for g in _grid(ACTION_GRID, 300, rng):
        from cosmos3.actions import get_embodiment

        extra = {"action_mode": g["mode"], "domain_name": g["domain"]}
        if g["chunk"] is not None:
            extra["action_chunk_size"] = g["chunk"]
        if g["action"] is not None:
            width = get_embodiment(g["domain"]).raw_dim + (g["action"] == "wide")
            extra["action"] = np.linspace(-1, 1, 6 * width).reshape(6, width).tolist()
        body = {"prompt": g["prompt"], "extra_params": extra, "seed": 7, "num_inference_steps": 2}
        for key in ("size", "fps"):
            if g[key] is not None:
                body[key] = g[key]
        out.append((body, g["ref"]))
    return out


def _server_outcome(state, body, ref):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return video_request(state, VideoRequest(**body), ref), None
    except APIError as e:
        return None, e


def _resolver_outcome(generator, body, ref):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return generator.resolve(**_generate_args(body, ref)), None
    except ValueError as e:
        return None, e


def test_server_accepts_exactly_what_the_resolver_accepts(models, refs, tmp_path, seed):
    generator = models[0]
    state = _state(models, tmp_path)
    accepted = refused = 0
    for body, ref_kind in _bodies(seed):
        ref = refs[ref_kind]
        served, api_error = _server_outcome(state, body, ref)
        resolved, error = _resolver_outcome(generator, body, ref)
        assert (served is None) == (resolved is None), (body, ref_kind, api_error and api_error.message,
                                                         error and str(error))
        if resolved is not None:
            accepted += 1
            kwargs, expected = video_request(state, VideoRequest(**body), ref).as_kwargs(), resolved.as_kwargs()
            assert np.array_equal(kwargs.pop("actions", []), expected.pop("actions", []))
            assert kwargs == expected, body  # the server queues the resolved request itself
        else:
            refused += 1
            field = getattr(error, "field", None)
            expected = {**PARAMS, "actions": "extra_params.action"}.get(field, field)
            assert api_error.status == 400 and api_error.param == expected, (body, api_error.message, str(error))
    assert accepted >= 40 and refused >= 200  # the grid covers both sides


def test_server_limits_apply_to_the_resolved_request(models, refs, tmp_path, seed):
    generator = models[0]
    state = _state(models, tmp_path, max_pixels=96 * 64, max_frames=9, max_steps=20)
    for body, ref_kind in _bodies(seed)[:400]:
        ref = refs[ref_kind]
        served, api_error = _server_outcome(state, body, ref)
        resolved, _ = _resolver_outcome(generator, body, ref)
        within = resolved is not None and resolved.total_frames <= 9 and resolved.steps <= 20 and (
            resolved.width * resolved.height <= 96 * 64 if not resolved.is_action else False)
        assert (served is not None) == within, (body, ref_kind, api_error and api_error.message)


# ------------------------------------------------------------------------------------------------ seconds


def test_seconds_count_at_the_fps_the_clip_is_written_with(models, tmp_path, monkeypatch):
    generator = models[0]
    state = _state(models, tmp_path)
    assert frames_for_seconds(2, 16) == 33 and frames_for_seconds(2, 24) == 49 and frames_for_seconds(0.1, 16) == 5
    for native, fps, seconds in [({}, None, 2.0), ({"fps": 16}, None, 2.0), ({"fps": 16}, 24.0, 2.0),
                                 ({"fps": 10}, None, 3.3), ({"fps": 30}, None, 1.0)]:
        monkeypatch.setattr(generator, "defaults", native)
        body = {"prompt": "a red block", "size": "64x64", "seconds": seconds, "seed": 1}
        if fps is not None:
            body["fps"] = fps
        kw = video_request(state, VideoRequest(**body), None).as_kwargs()
        written = kw["fps"]
        assert written == (fps or native.get("fps", 24))
        assert seconds <= kw["num_frames"] / written < seconds + 4 / written, (native, fps, kw)


def test_seconds_and_size_echoed_and_written(server, client, tmp_path, monkeypatch):
    monkeypatch.setattr(server.state.generator, "defaults", {"fps": 16})  # a checkpoint that writes 16 fps
    created = client.post("/v1/videos", data={"prompt": "a red block", "size": "64x64", "seconds": "0.5",
                                              "num_inference_steps": "1"})
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["size"] == "64x64" and job["num_frames"] == 9 and job["fps"] == 16
    assert job["seconds"] == "0.56"  # 9 frames at 16 fps
    done = wait_for(client, job["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    path = tmp_path / "out.mp4"
    path.write_bytes(client.get(f"/v1/videos/{job['id']}/content").content)
    info = probe_video(path)
    assert (info["frames"], info["fps"]) == (9, 16)
    assert 0.5 <= info["frames"] / info["fps"] < 0.5 + 4 / 16


# ------------------------------------------------------------------------------------------------ compute limit


def test_cost_model_predicts_a_larger_run(models):
    generator = models[0]
    model = CostModel.for_generator(generator).calibrate(generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        req = generator.resolve("a red block", height=192, width=320, num_frames=17, num_inference_steps=4,
                                progress=False)
    started = time.perf_counter()
    generator.run(req)
    took = time.perf_counter() - started
    estimate = model.estimate(generator.workload(req))
    print(f"estimate {estimate:.2f} s, measured {took:.2f} s, {model}")
    assert took / 5 < estimate < took * 5


def test_max_job_seconds_refuses_up_front(server, client, monkeypatch):
    monkeypatch.setattr(server.state.config, "max_job_seconds", 1e9)  # a limit: the next request calibrates
    monkeypatch.setattr(server.state, "cost_model", None, raising=False)
    before = len(client.get("/v1/videos", params={"limit": 100}).json()["data"])
    small = client.post("/v1/videos", data={"prompt": "a red block", "size": "64x64", "num_frames": "5",
                                            "num_inference_steps": "1"})
    assert small.status_code == 200, small.text
    model = server.state.cost_model
    assert model is not None  # measured on this device, once
    # The limit sits between the two requests' estimates: a fixed 8 s was within the estimate of the largest request
    # a tiny model allows (1000 steps of a few ms) on a quiet machine, and the big job then ran.
    gen = server.state.generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small_s, big_s = (model.estimate(gen.workload(gen.resolve("a red block", height=h, width=w, num_frames=f,
                                                                  num_inference_steps=n)))
                          for h, w, f, n in ((64, 64, 5, 1), (256, 320, 17, 1000)))
    assert big_s > 10 * small_s  # 1000x the steps, 30x the pixels
    limit = float(f"{(small_s * big_s) ** 0.5:.3g}")
    monkeypatch.setattr(server.state.config, "max_job_seconds", limit)
    started = time.monotonic()
    big = client.post("/v1/videos", data={"prompt": "a red block", "size": "320x256", "num_frames": "17",
                                          "num_inference_steps": "1000"})
    error = assert_error(big, 400, "job_too_long")
    assert time.monotonic() - started < 5  # refused before it is queued, not after holding the worker
    assert f"above its limit of {limit:g} s" in error["message"] and "--max-job-seconds" in error["message"]
    estimate = float(error["message"].split("about ")[1].split(" s")[0].replace(",", ""))
    assert abs(estimate - big_s) <= 0.5  # the message gives the model's estimate
    sync = client.post("/v1/videos/sync", data={"prompt": "a red block", "size": "320x256", "num_frames": "17",
                                                "num_inference_steps": "1000"})
    assert_error(sync, 400, "job_too_long")
    monkeypatch.setattr(server.state.config, "max_job_seconds", 0.001)  # images pass the same estimate
    assert_error(client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"}), 400, "job_too_long")
    assert wait_for(client, small.json()["id"], ("completed", "failed"))["status"] == "completed"
    after = client.get("/v1/videos", params={"limit": 100}).json()["data"]
    assert len(after) == before + 1  # only the small job exists


def test_no_prompt_and_no_input_is_refused(client):
    for prompt in ("", "   "):
        assert_error(client.post("/v1/videos", data={"prompt": prompt, "size": "64x64", "num_frames": "5"}), 400,
                     "invalid_value", "prompt")
    assert_error(client.post("/v1/images/generations", json={"prompt": "", "size": "64x64"}), 400,
                 "invalid_value", "prompt")


@pytest.mark.parametrize("seconds", [1e-300, 1e-12, 1e-3])
def test_a_vanishing_duration_is_the_shortest_clip(seconds, rng):
    """Found by the fuzzer: seconds=1e-300 made 0 frames, which escaped as a 500; it is the shortest clip."""
    from cosmos3 import spec

    assert frames_for_seconds(seconds, rng.choice([10.0, 16.0, 24.0, 30.0])) == spec.MIN_FRAMES
