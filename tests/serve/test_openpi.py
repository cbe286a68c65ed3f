"""The openpi robot-policy protocol (cosmos3.policy_server, serve/robot.py), driven by the real client from PyPI
(openpi-client's WebsocketClientPolicy) against live servers on 127.0.0.1: pico with the generic layout, and a tiny
random checkpoint with the Policy-DROID layout (three cameras composed as concat_view, joint state, gripper flip)."""

from __future__ import annotations

import random
from dataclasses import replace
import warnings

import numpy as np
import pytest
import torch
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from cosmos3.generator import Generator
from cosmos3.policy_server import (ROUTE, PolicyEngine, PolicyService, PolicySettings, compose_concat_view, packb,
                                   parse_observation, LAYOUTS, start_app_in_thread, start_policy_server, unpackb)
from oracle import build_reference_pipeline, random_config
from seeding import fresh_seed

PROMPT = "push the red block to the left"


def _client(port: int, path: str = "") -> WebsocketClientPolicy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WebsocketClientPolicy(f"ws://127.0.0.1:{port}{path}")


@pytest.fixture(scope="module")
def pico():
    return Generator.from_pretrained("pico", device="cpu")


@pytest.fixture(scope="module")
def pico_server(pico):
    engine = PolicyEngine(pico, "generic", PolicySettings(steps=2, answer_steps=8))
    handle = start_policy_server(engine)
    yield handle
    handle.stop()


def _pico_obs(seed: int = 0, prompt: str = PROMPT) -> dict:
    rng = np.random.default_rng(seed)
    return {"observation/image": rng.integers(0, 256, (192, 320, 3), dtype=np.uint8), "prompt": prompt}


def test_codec_matches_openpi_client(rng):
    values = {"a": np.arange(12, dtype=rng.choice(["<f4", "<f8", "<i8", "|u1", "<i2"])).reshape(3, 4),
              "nested": {"b": np.float32(rng.random()), "c": [1, "x", np.int64(7)]}, "prompt": "hi", "flag": True}
    ours = unpackb(msgpack_numpy.packb(values))
    theirs = msgpack_numpy.unpackb(packb(values))
    for got in (ours, theirs):
        assert np.array_equal(got["a"], values["a"]) and got["a"].dtype == values["a"].dtype
        assert got["nested"]["b"] == values["nested"]["b"] and isinstance(got["nested"]["b"], np.float32)
        assert got["nested"]["c"][2] == 7 and got["prompt"] == "hi" and got["flag"] is True
    with pytest.raises(ValueError, match="dtype"):
        packb({"x": np.array([object()])})


def test_pico_over_the_real_client_caches_the_chunk(pico_server, pico):
    client = _client(pico_server.port)
    meta = client.get_server_metadata()
    chunk = pico.defaults["action_chunk_size"]  # the shipped pico's native chunk (a multiple of 8)
    assert meta["protocol"] == "openpi" and meta["embodiment"] == "umi" and meta["action_chunk"] == chunk
    assert meta["image_keys"] == ["observation/image"] and meta["answer_steps"] == 8 and meta["action_dim"] == 10
    per_chunk = chunk // 8
    answers = [client.infer(_pico_obs()) for _ in range(per_chunk + 1)]
    for a in answers:
        assert a["actions"].shape == (8, 10) and a["actions"].dtype == np.float32
        assert np.isfinite(a["actions"]).all()
    assert [a["server_timing"]["cached"] for a in answers] == [False] + [True] * (per_chunk - 1) + [False]
    assert [a["chunk_step"] for a in answers] == list(range(0, chunk, 8)) + [0]
    assert [a["chunk_index"] for a in answers] == [0] * per_chunk + [1]
    first = answers[0]["server_timing"]
    assert first["denoise_ms"] > 0 and first["infer_ms"] >= first["denoise_ms"] and first["decode_ms"] < 50
    assert answers[1]["server_timing"]["infer_ms"] == 0 and answers[1]["server_timing"]["prev_total_ms"] > 0
    # the cached steps are the rest of one chunk: the model's own chunk of actions for this observation and seed
    engine = PolicyEngine(pico, "generic", PolicySettings(steps=2))
    whole, _ = engine.infer(engine.parse(_pico_obs()), seed=0)
    assert np.allclose(np.concatenate([a["actions"] for a in answers[:per_chunk]]), whole, atol=1e-5)
    # a new prompt drops the cache
    changed = client.infer(_pico_obs(prompt="pick up the green circle"))
    assert changed["server_timing"]["cached"] is False


BAD = [
    (lambda o: o.pop("observation/image"), "observation/image: missing"),
    (lambda o: o.update({"observation/image": o["observation/image"].astype(np.float32)}),
     "observation/image: expected dtype uint8, got float32"),
    (lambda o: o.update({"observation/image": np.zeros((224, 224, 3), np.uint8)}),
     "observation/image: expected an image of 192x320 \\(HxW\\), got 224x224"),
    (lambda o: o.update({"observation/image": np.zeros((192, 320), np.uint8)}),
     "observation/image: expected shape \\[H, W, 3\\]"),
    (lambda o: o.update({"observation/state": np.array([np.nan, 1.0])}), "observation/state: holds NaN"),
    (lambda o: o.update({"prompt": 3}), "prompt: expected a string"),
]


@pytest.mark.parametrize("break_it, message", BAD, ids=[m[:30] for _, m in BAD])
def test_malformed_observations_are_named_and_the_connection_stays(pico_server, break_it, message):
    client = _client(pico_server.port)
    obs = _pico_obs()
    break_it(obs)
    with pytest.raises(RuntimeError, match=message):
        client.infer(obs)
    assert client.infer(_pico_obs())["actions"].shape == (8, 10)  # same connection, still served


def test_chw_images_are_accepted():
    obs = _pico_obs()
    hwc = parse_observation(obs, LAYOUTS["generic"]).image
    obs["observation/image"] = np.ascontiguousarray(obs["observation/image"].transpose(2, 0, 1))
    assert np.array_equal(parse_observation(obs, LAYOUTS["generic"]).image, hwc)


def test_connection_limit(pico):
    engine = PolicyEngine(pico, "generic", PolicySettings(steps=1, max_connections=1))
    handle = start_policy_server(engine)
    try:
        first = _client(handle.port)
        with pytest.raises(Exception):  # closed with 1013 before the metadata
            _client(handle.port)
        first._ws.close()
        import time

        import httpx

        deadline = time.monotonic() + 10  # bounded wait for the server to count the closed connection out
        while httpx.get(f"http://127.0.0.1:{handle.port}/healthz", timeout=5).json()["connections"]:
            assert time.monotonic() < deadline, "the closed connection still holds its slot"
            time.sleep(0.02)
        assert _client(handle.port).get_server_metadata()["protocol"] == "openpi"  # a freed slot is reusable
    finally:
        handle.stop()


def test_same_protocol_on_cosmos3_serve(pico, tmp_path):
    from cosmos3.serve import ServerConfig, create_app

    app = create_app(ServerConfig(checkpoint="pico", storage=tmp_path, api_key="k3y"), generator=pico,
                     reasoner=None)
    handle = start_app_in_thread(app)
    try:
        with pytest.raises(Exception):  # no key
            _client(handle.port, ROUTE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = pico.defaults["action_chunk_size"] // 2  # two answers per chunk: the second comes from the cache
            client = WebsocketClientPolicy(f"ws://127.0.0.1:{handle.port}{ROUTE}?answer_steps={half}", api_key="k3y")
        assert client.get_server_metadata()["answer_steps"] == half
        answer = client.infer(_pico_obs())
        assert answer["actions"].shape == (half, 10) and answer["server_timing"]["cached"] is False
        assert client.infer(_pico_obs())["server_timing"]["cached"] is True
    finally:
        handle.stop()


# ------------------------------------------------------------------------------------------ Policy-DROID layout


@pytest.fixture(scope="module")
def droid_generator(tmp_path_factory):
    """A tiny random checkpoint saved as a Policy-DROID folder: fresh (re-initialized) action heads, native settings
    naming the policy_droid embodiment."""
    import json

    seed = fresh_seed("serve/test_openpi.py::droid_generator")
    print(f"droid checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config("qwen", rng, sound=False).replace(vocab_size=300, action_dim=32, num_embodiment_domains=32)
    root = tmp_path_factory.mktemp("droid")
    build_reference_pipeline(root, cfg, gen, sound=False, vae_dim=4)
    (root / "cosmos3_defaults.json").write_text(json.dumps({"embodiment": "policy_droid", "resolution": "256p"}))
    return Generator.from_pretrained(root, device="cpu")


CAM = (32, 64)


def _droid_obs(seed: int = 0, joints=None) -> dict:
    rng = np.random.default_rng(seed)
    cams = {k: rng.integers(0, 256, (*CAM, 3), dtype=np.uint8) for k in LAYOUTS["droid"].image_keys}
    joints = rng.normal(size=7) if joints is None else joints
    return {**cams, "observation/joint_position": np.asarray(joints, np.float64),
            "observation/gripper_position": np.array([0.25]), "prompt": "put the marker in the cup"}


def test_concat_view_composition():
    top = np.full((40, 80, 3), 10, np.uint8)
    a, b = np.full((40, 80, 3), 100, np.uint8), np.full((40, 80, 3), 200, np.uint8)
    out = compose_concat_view(top, [a, b])
    assert out.shape == (60, 80, 3)
    assert (out[:40] == 10).all() and (out[40:, :40] == 100).all() and (out[40:, 40:] == 200).all()
    assert LAYOUTS["droid"].image_size == (540, 640)


def test_droid_observation_follows_the_release():
    """Wrist camera on top, exterior 1 then 2 below; the state's gripper enters as 1 - g; the state token sits at
    video frame 0 (action_start_frame_offset 0 when there are as many action tokens as frames)."""
    from cosmos3.config import Cosmos3Config
    from cosmos3.sequence import GenLayout

    obs = _droid_obs()
    obs["observation/wrist_image_left"][:] = 7
    obs["observation/exterior_image_1_left"][:] = 77
    obs["observation/exterior_image_2_left"][:] = 177
    parsed = parse_observation(obs, replace(LAYOUTS["droid"], camera_size=CAM))
    assert parsed.image.shape == (48, 64, 3)
    assert (parsed.image[:32] == 7).all() and (parsed.image[32:, :32] == 77).all()
    assert (parsed.image[32:, 32:] == 177).all()
    assert np.allclose(parsed.state[:7], obs["observation/joint_position"]) and np.isclose(parsed.state[7], 0.75)
    cfg = Cosmos3Config()
    for first in (0, 1):
        layout = GenLayout(latent_shape=(4, 2, 2, 2), vision_noisy=torch.ones(2, dtype=torch.bool), fps=15.0,
                           action_steps=5 - (1 - first), action_noisy=torch.ones(5 - (1 - first), dtype=torch.bool),
                           domain_id=8, action_first_frame=first)
        pos = layout.positions(cfg, 10)
        vision_t0, action_t0 = pos[0, 0].item(), pos[0, -layout.action_steps].item()
        assert (action_t0 == vision_t0) == (first == 0)


def test_droid_layout_over_the_real_client(droid_generator):
    engine = PolicyEngine(droid_generator, "droid", PolicySettings(steps=2, resolution="256p"), camera_size=CAM)
    meta = engine.metadata()
    assert (meta["num_inference_steps"], meta["guidance_scale"], meta["flow_shift"], meta["fps"]) == (2, 3.0, 5.0, 15)
    assert meta["action_chunk"] == 32 and meta["action_dim"] == 8 and meta["gripper_flipped"]
    handle = start_policy_server(engine)
    try:
        client = _client(handle.port)
        assert client.get_server_metadata()["layout"] == "droid"
        answer = client.infer(_droid_obs())
        assert answer["actions"].shape == (32, 8)
        # the gripper channel comes back flipped: 1 - g of what the model predicted
        obs = engine.parse(_droid_obs())
        req = engine._resolve(obs, seed=0)
        raw = droid_generator.run(req).actions.numpy()
        assert np.allclose(answer["actions"][:, :7], raw[:, :7], atol=1e-5)
        assert np.allclose(answer["actions"][:, 7], 1.0 - raw[:, 7], atol=1e-5)
        # the state is an input: other joint positions, other actions (same seed, same cameras)
        moved, _ = engine.infer(engine.parse(_droid_obs(joints=np.full(7, 2.0))), seed=0)
        same, _ = engine.infer(engine.parse(_droid_obs()), seed=0)
        assert np.allclose(same, answer["actions"], atol=1e-5)
        assert not np.allclose(moved, answer["actions"], atol=1e-4)
        with pytest.raises(RuntimeError, match="observation/joint_position: expected 7 values"):
            client.infer({**_droid_obs(), "observation/joint_position": np.zeros(6)})
        missing = _droid_obs()
        missing.pop("observation/gripper_position")
        with pytest.raises(RuntimeError, match="observation/gripper_position: missing"):
            client.infer(missing)
        with pytest.raises(RuntimeError, match="observation/exterior_image_2_left: expected an image of 32x64"):
            client.infer({**_droid_obs(), "observation/exterior_image_2_left": np.zeros((64, 64, 3), np.uint8)})
    finally:
        handle.stop()


def test_concurrent_clients_share_the_inference_slot(droid_generator):
    import threading

    engine = PolicyEngine(droid_generator, "droid", PolicySettings(steps=1, resolution="256p", max_concurrency=1),
                          camera_size=CAM)
    service = PolicyService(engine)
    handle = start_app_in_thread(__import__("cosmos3.policy_server", fromlist=["x"]).create_policy_app(service))
    try:
        results = []

        def run(i):
            results.append(_client(handle.port).infer(_droid_obs(i))["server_timing"])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 3
        assert max(r["queue_ms"] for r in results) > 0.5 * min(r["infer_ms"] for r in results)  # one waited
    finally:
        handle.stop()


def test_serve_policy_command(tmp_path):
    """`cosmos3 serve-policy` as a user starts it, and the real client against it."""
    import os
    import re
    import subprocess
    import sys
    import time

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    log = tmp_path / "serve-policy.log"
    with open(log, "wb") as out:  # port 0: the OS picks a free port, read back from uvicorn's start-up line
        proc = subprocess.Popen([sys.executable, "-m", "cosmos3.cli", "serve-policy", "--checkpoint", "pico",
                                 "--host", "127.0.0.1", "--port", "0", "--steps", "1", "--device", "cpu",
                                 "--answer-steps", "4", "--log-level", "info"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_bytes())) is None:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "no server"
            time.sleep(0.1)
        client = _client(int(found.group(1)))
        assert client.get_server_metadata()["answer_steps"] == 4
        assert client.infer(_pico_obs())["actions"].shape == (4, 10)
    finally:
        proc.terminate()
        proc.wait(30)


def test_policy_droid_state_is_required_and_checked(droid_generator, pico):
    image = np.zeros((48, 64, 3), np.uint8)
    kw = dict(action_mode="policy", embodiment="policy_droid", image=image, resolution="256p", progress=False)
    with pytest.raises(ValueError, match="state: policy_droid needs the robot state"):
        droid_generator.resolve("x", **kw)
    with pytest.raises(ValueError, match="state: expected 8 finite numbers"):
        droid_generator.resolve("x", state=np.zeros(7), **kw)
    req = droid_generator.resolve("x", state=np.arange(8), **kw)
    assert req.state.tolist() == list(range(8)) and req.as_kwargs()["state"] is req.state
    with pytest.raises(ValueError, match="state: umi takes no robot state"):
        pico.resolve("x", action_mode="policy", embodiment="umi", image=image, state=np.zeros(8))


def test_our_client_speaks_the_same_protocol(pico_server):
    from cosmos3.policy_server import PolicyClient

    client = PolicyClient(f"ws://127.0.0.1:{pico_server.port}")
    assert client.metadata["protocol"] == "openpi"
    assert client.infer(_pico_obs())["actions"].shape == (8, 10)
    with pytest.raises(RuntimeError, match="observation/image: missing"):
        client.infer({"prompt": "x"})
    client.close()


def test_policy_droid_plain_caption_is_the_frameworks_sentences(droid_generator, monkeypatch):
    """What the framework's DROID policy dataset trains on (ViewpointTextInfo, DurationFPSTextTimeStamps with whole
    seconds, ResolutionTextInfo with the padded canvas), for 33 frames at 15 fps."""
    from cosmos3.actions import get_embodiment
    from PIL import Image

    from cosmos3.actions.embodiments import plain_action_caption

    emb = get_embodiment("policy_droid")
    expected = ("Put the marker in the cup. This video contains concatenated views from multiple camera perspectives. "
                "The top row is from the wrist-mounted camera. The bottom row contains two horizontally concatenated "
                "third-person perspective views of the scene from opposite sides, with the robot visible. The video "
                "is 2.0 seconds long and is of 15 FPS. This video is of 544x736 resolution.")
    assert plain_action_caption("Put the marker in the cup", emb, 33, 15.0, 544, 736) == expected
    assert plain_action_caption("Put the marker in the cup.", emb, 33, 15.0, 544, 736) == expected
    assert plain_action_caption("", emb, 33, 15.0, 544, 736) == ""
    # and the generator sends it when asked (the positive branch), with "" as the unconditional one; by default it
    # sends the JSON caption the release trains Policy-DROID on (tests/train/test_policy_droid_recipe.py)
    import cosmos3.generator as G

    seen = []
    real = G.branch_inputs
    monkeypatch.setattr(G, "branch_inputs",
                        lambda tok, cfg, text, **kw: seen.append(text) or real(tok, cfg, text, **kw))
    req = droid_generator.resolve("Put the marker in the cup", action_mode="policy", embodiment="policy_droid",
                                  image=Image.fromarray(np.zeros((48, 64, 3), np.uint8)), state=np.zeros(8),
                                  resolution="256p", num_inference_steps=1, guidance_scale=3.0, progress=False)
    req.caption_format = "plain"
    droid_generator.run(req)
    assert seen[0].startswith("Put the marker in the cup. This video contains concatenated views") and seen[1] == ""
    assert seen[0].endswith("The video is 2.0 seconds long and is of 15 FPS. This video is of 256x320 resolution.")
    seen.clear()
    req.caption_format = None
    droid_generator.run(req)
    assert seen[0].startswith('{"cinematography": {"framing": "This video contains concatenated views') and seen[1] == ""
    assert seen[0].endswith('"resolution": {"H": 256, "W": 320}, "aspect_ratio": "4,3"}')


def test_serve_policy_caption_format_flag(droid_generator, monkeypatch):
    """`serve-policy --caption-format plain` reaches the model's prompt; the default is the JSON caption; a bad
    value is refused before serving, by name."""
    from cosmos3.policy_server import PolicyEngine, PolicySettings, build_parser, engine_from_args
    import cosmos3.generator as G

    seen = []
    real = G.branch_inputs
    monkeypatch.setattr(G, "branch_inputs",
                        lambda tok, cfg, text, **kw: seen.append(text) or real(tok, cfg, text, **kw))
    common = ["--camera-size", "32x64", "--steps", "1", "--chunk", "4", "--resolution", "256p"]
    for flags, start, name in [([], '{"cinematography": ', "json"),
                               (["--caption-format", "plain"], "put the marker in the cup. This video", "plain")]:
        engine = engine_from_args(build_parser().parse_args(common + flags), droid_generator)
        assert engine.metadata()["caption_format"] == name
        seen.clear()
        engine.infer(engine.parse(_droid_obs()), 0)
        assert seen[0].startswith(start), seen[0]
    # a checkpoint trained on the sentences says so in cosmos3_defaults.json: served without the flag
    monkeypatch.setitem(droid_generator.defaults, "caption_format", "plain")
    engine = engine_from_args(build_parser().parse_args(common), droid_generator)
    seen.clear()
    engine.infer(engine.parse(_droid_obs()), 0)
    assert engine.metadata()["caption_format"] == "plain" and seen[0].startswith("put the marker in the cup. This")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--caption-format", "yaml"])
    with pytest.raises(ValueError, match="caption_format: expected one of"):
        PolicyEngine(droid_generator, "droid", PolicySettings(caption_format="yaml", chunk=4, resolution="256p"),
                     camera_size=(32, 64))
