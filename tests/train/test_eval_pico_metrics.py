"""The metric functions of benchmarks/eval_pico.py (benchmarks/pico_metrics.py) on real world data built here: a
tiny generated dataset (decoded H.264 frames, FLAC sound, captions, chat records) and freshly simulated + rendered
episodes, from a new seed per run.

Each metric must agree with the simulator's truth on true data, and must reject a corrupted version of it
(repeated frames, reversed videos, delayed sound, zero actions)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from cosmos3.world import (episode_sound, generate_dataset, load_chat, render_tabletop, simulate_tabletop,
                           tabletop_captions, track_blocks, track_gripper)
from cosmos3.world.geometry import direction_word, toward
from cosmos3.world.sound import impact_amplitude
from seeding import fresh_seed



def _load(name: str):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E = _load("eval_pico")  # the tasks and the world reader
M = _load("pico_metrics")  # the pure metrics


@pytest.fixture(scope="module")
def base_seed() -> int:
    value = fresh_seed("train/test_eval_pico_metrics.py::base_seed")
    print(f"random seed: {value}")
    return value


@pytest.fixture(scope="module")
def episodes(base_seed):
    """24 simulated episodes with their rendered frames and sound."""
    out = []
    for k in range(24):
        ep = simulate_tabletop(base_seed * 31 + k)
        out.append((ep, render_tabletop(ep), episode_sound(ep)))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, base_seed):
    root = generate_dataset(tmp_path_factory.mktemp("eval_world"), episodes=3, seed=base_seed, progress=False)
    return E.EvalWorld(root)


def test_psnr_identical_repeated_and_decoded(world):
    assert math.isinf(M.psnr(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4, 3), np.uint8)))
    assert M.psnr(np.zeros((1, 2, 2, 3), np.uint8), np.full((1, 2, 2, 3), 255, np.uint8)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        M.psnr(np.zeros((2, 4, 4, 3)), np.zeros((3, 4, 4, 3)))
    for i in range(len(world)):
        decoded, ep = world.item(i)["frames"], world.episode(i)
        rendered = render_tabletop(ep)
        codec = M.psnr(decoded[1:], rendered[1:])  # the H.264 round trip: close to the truth
        repeat = M.psnr(np.repeat(rendered[:1], 32, 0), rendered[1:])  # a frozen frame: the gripper moves away
        assert codec > 30.0, (i, codec)
        assert repeat < codec - 3.0, (i, repeat, codec)


def test_block_error_truth_vs_frozen(episodes):
    moved = 0
    for ep, frames, _ in episodes:
        colors = [b.color for b in ep.blocks]
        truth = ep.block_poses[:, :, :2] * ep.table.px_per_m
        tr = track_blocks(frames, colors)
        tracked = np.stack([tr[c] for c in colors], 1)
        assert M.block_error_px(tracked, truth) < 1.0
        frozen = np.repeat(tracked[:1], len(tracked), 0)
        shift = np.hypot(*(truth - truth[:1]).transpose(2, 0, 1))  # distance from the start, per frame and block
        shift = float(np.mean(np.minimum(shift, M.BLOCK_ERROR_CAP_PX)))
        if shift > 3:  # blocks moved: the frozen frame must be worse, by about how far they moved
            moved += 1
            assert M.block_error_px(frozen, truth) > max(0.8 * shift, M.block_error_px(tracked, truth) + 1.0)
    assert moved >= 3, "too few episodes with a moving block to test the frozen baseline"
    nan = np.full((5, 1, 2), np.nan)
    assert M.block_error_px(nan, np.zeros((5, 1, 2))) == M.BLOCK_ERROR_CAP_PX
    assert M.block_error_px(np.full((5, 1, 2), 1e4), np.zeros((5, 1, 2))) == M.BLOCK_ERROR_CAP_PX


def test_caption_direction_vocabulary():
    for word in M.DIRECTION_WORDS:
        for verb in ("pushes", "knocks"):
            assert M.caption_direction(f"A robot gripper {verb} the red triangle {toward(word)}.") == \
                ("red", "triangle", word)
        assert M.caption_direction(f"A robot gripper picks up the blue circle and moves it {toward(word)}.") == \
            ("blue", "circle", word)
    assert M.caption_direction("A robot gripper moves over the table without moving any block.") is None
    assert M.caption_direction("A robot gripper grasps the green square but does not move it.") is None
    assert set(M.DIRECTION_WORDS) == {direction_word(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4}
    with pytest.raises(ValueError):
        M.direction_matches(np.zeros((3, 2)), "sideways")


def _near_sector_edge(ep, color: str, degrees: float = 4.0) -> bool:
    """Is the block's true net displacement within `degrees` of a boundary between two direction words?"""
    i = ep.block_index(color)
    dx, dy = ep.block_poses[-1, i, :2] - ep.block_poses[0, i, :2]
    ang = math.degrees(math.atan2(-dy, dx)) % 45.0
    return abs(ang - 22.5) < degrees


def test_direction_matches_captions_on_true_frames(episodes, world):
    clips = [(tabletop_captions(ep)[0], frames, ep) for ep, frames, _ in episodes]
    clips += [(world.meta(i)["world/captions"][0], world.item(i)["frames"], world.episode(i))
              for i in range(len(world))]
    used = 0
    for caption, frames, ep in clips:
        parsed = M.caption_direction(caption)
        if parsed is None:
            continue
        color, _, word = parsed
        track = track_blocks(frames, [color])[color]
        assert not M.direction_matches(track[::-1], word), caption  # played backwards: the opposite direction
        assert not M.direction_matches(np.repeat(track[:1], len(track), 0), word)  # a still block
        if _near_sector_edge(ep, color):  # sub-pixel tracking may tip it into the neighbouring word
            continue
        used += 1
        assert M.direction_matches(track, word), (caption, M.net_direction(track))
    assert used >= 5, f"only {used} captions name a direction"


def test_onset_detector_finds_true_contact(episodes, world):
    sounds = [(ep, snd) for ep, _, snd in episodes]
    sounds += [(world.episode(i), world.item(i)["sound"]) for i in range(len(world))]
    used = 0
    for ep, snd in sounds:
        audible = [e for e in ep.events if impact_amplitude(e.impulse) > 0]
        if not audible:
            assert M.detect_onset(snd) is None
            continue
        used += 1
        contact = M.contact_latent_frame(audible[0].time)
        assert contact == int(round(audible[0].time * 48000)) // 1920
        onset = M.detect_onset(snd)
        assert M.onset_matches(onset, contact, tolerance=0), (onset, contact)
        late = np.concatenate([np.zeros((2, 5 * 1920), np.float32), snd], 1)  # 5 latent frames late
        assert not M.onset_matches(M.detect_onset(late), contact)
        noisy = snd + np.random.default_rng(0).normal(0, 1e-3, snd.shape).astype(np.float32)  # a noise floor
        assert M.onset_matches(M.detect_onset(noisy), contact, tolerance=1)
    assert used >= 5, f"only {used} episodes with an audible contact"
    assert M.detect_onset(np.zeros((2, 99000), np.float32)) is None
    assert not M.onset_matches(None, 3)


def test_answers_and_chance(world):
    assert M.normalize_answer("The red  square.") == "the red square"
    assert M.normalize_answer("It did not move.") == M.normalize_answer("it did not move")
    assert M.normalize_answer("Yes, the blue circle.") != M.normalize_answer("Yes.")
    recs = E.reason_questions(world.root, 1000)
    assert recs and {r["type"] for r in recs} <= set(M.REASON_TYPES)
    assert len(E.reason_questions(world.root, 2)) == 2
    by_type = {}
    for r in recs:
        by_type.setdefault(r["type"], []).append(r["messages"][1]["content"])
        assert M.normalize_answer(r["messages"][1]["content"]) == M.normalize_answer(r["messages"][1]["content"] + " ")
        video = r["messages"][0]["content"][0]["video_url"]["url"]
        assert Path(video).is_absolute() and Path(video).is_file()
    asked = [(r["type"], r["messages"][1]["content"]) for r in recs]
    chance = M.majority_chance(by_type, asked)
    assert 0.0 < chance <= 1.0
    assert M.majority_chance({"count": ["2", "2", "3"]}, [("count", "2"), ("count", "3")]) == 0.5
    all_chat = load_chat(world.root / "chat.jsonl")
    assert any(r["type"] == "touch" for r in all_chat) and not any(r["type"] == "touch" for r in recs)


def test_gripper_path_and_toward_block(episodes, world):
    hits, used = [], 0
    for ep, frames, _ in episodes:
        ppm = ep.table.px_per_m
        path = M.gripper_path_px(ep.gripper[0, :3], ep.actions()[:32], ppm)
        np.testing.assert_allclose(path, ep.gripper[:, :2] * ppm, atol=1e-6)  # actions integrate to the true path
        if "block" not in (ep.goal or {}):
            continue
        used += 1
        block = ep.block_poses[0, ep.block_index(ep.goal["block"]), :2] * ppm
        hits.append(M.gripper_toward_block(path, block))
        still = M.gripper_path_px(ep.gripper[0, :3], np.tile([0, 0, 0, 1, 0, 0, 0, 1, 0, 0], (32, 1)), ppm)
        assert not M.gripper_toward_block(still, block)
        away = path[0] + np.arange(33)[:, None] * 2.0 * (path[0] - block) / np.hypot(*(path[0] - block))
        assert not M.gripper_toward_block(away, block)  # straight away from the block, 2 px a frame
        if hits[-1]:  # the gripper tracked in the true video tells the same
            track = track_gripper(frames)["position"]
            assert M.gripper_toward_block(track[np.isfinite(track).all(1)], block)
    assert used >= 5, f"only {used} episodes with a target block"
    assert np.mean(hits) >= 0.8, hits
    assert not M.gripper_toward_block(np.array([[0.0, 0.0], [np.nan, 0.0]]), np.array([5.0, 0.0]))
    assert not M.gripper_toward_block(np.array([[0.0, 0.0]]), np.array([5.0, 0.0]))
    # garbage predictions (degenerate rot6d) must give a failing path, not an exception
    assert not M.gripper_toward_block(M.gripper_path_px(np.zeros(3), np.zeros((32, 10)), 400.0), np.ones(2))


def test_eval_world_truth_matches_dataset(world):
    for i in range(len(world)):
        it, ep, meta = world.item(i), world.episode(i), world.meta(i)
        assert it["frames"].shape == (33, 192, 320, 3) and it["actions"].shape == (32, 10)
        np.testing.assert_allclose(it["actions"], ep.actions()[:32], atol=1e-6)
        assert it["task"] == ep.instruction and meta["world/captions"][0] == tabletop_captions(ep)[0]
        assert it["sound"].shape[0] == 2
        mean = E.train_action_mean(world.root, world.chunk)  # stats.json of this world
        assert mean.shape == (10,) and abs(mean[3] - 1.0) < 0.1


@pytest.mark.parametrize("design, lengths", [("v1", (33, 32, 9)), ("v2", (17, 16, 5))])
def test_clip_lengths_follow_the_worlds_config(design, lengths):
    """pico v2's world has 17-frame episodes (16 actions, 5 video latent frames), v1's 33 (32, 9), as world.json
    records them."""
    import dataclasses
    import json

    from cosmos3.train.pico import DESIGNS

    recorded = json.loads(json.dumps(dataclasses.asdict(DESIGNS[design].world.config().tabletop)))
    assert E.clip_lengths(E.tabletop_config(recorded)) == lengths


def test_generator_tasks_ask_for_the_v2_worlds_lengths(tmp_path, seed, world):
    """Every generator task on a v2 world asks for 17 frames / 16 actions, and video-to-sound conditions 4 of the 5
    video latent frames (a stand-in generator records each request: no model runs)."""
    import functools
    from types import SimpleNamespace

    import torch

    from cosmos3.train.pico import DESIGNS

    assert (world.frames, world.chunk) == (33, 32)  # the module's world is v1's
    v2 = E.EvalWorld(generate_dataset(tmp_path, episodes=12, seed=seed, progress=False,
                                      config=DESIGNS["v2"].world.config()))
    v2.item = functools.lru_cache(None)(v2.item)  # each task decodes every episode again: once is enough here
    assert (v2.frames, v2.chunk) == (17, 16) and v2.item(0)["actions"].shape == (16, 10)
    hw, calls = v2.item(0)["frames"].shape[1:], []

    def generate(**kw):
        calls.append(kw)
        n = kw.get("num_frames") or kw["action_chunk_size"] + 1
        actions = torch.tensor([[0.0, 0, 0, 1, 0, 0, 0, 1, 0, 0]]).repeat(kw.get("action_chunk_size", 0), 1)
        return SimpleNamespace(frames=torch.zeros(n, *hw, dtype=torch.uint8), actions=actions,
                               sound=torch.zeros(2, 3000 * n))

    gen = SimpleNamespace(generate=generate, vae=SimpleNamespace(temporal=4))
    args = SimpleNamespace(steps=1, seed=0, strips=None, train_world=v2.root)
    for task in (E.task_fd, E.task_id, E.task_policy, E.task_t2v, E.task_sound):
        task(gen, v2, len(v2), args)
    modes = {kw.get("action_mode") or ("sound" if kw.get("enable_sound") else "t2v") for kw in calls}
    assert modes == {"forward_dynamics", "inverse_dynamics", "policy", "t2v", "sound"}, modes
    for kw in calls:
        assert kw.get("action_chunk_size", 16) == 16 and kw.get("num_frames", 17) == 17, kw
        if kw.get("enable_sound"):
            assert kw["condition_frame_indexes"] == [0, 1, 2, 3] and kw["video"].shape[0] == 17, kw


def test_strip_places_evenly_spaced_frames_row_by_row(episodes):
    frames = episodes[0][1]
    other = frames[::-1].copy()
    img = E.strip_image([frames, other], picks=4, gap=2)
    T, H, W = frames.shape[:3]
    assert img.shape == (2 * H + 2, 4 * W + 6, 3)
    assert np.array_equal(img[:H, :W], frames[0]) and np.array_equal(img[:H, -W:], frames[T - 1])
    assert np.array_equal(img[H + 2:, :W], other[0]) and np.array_equal(img[H + 2:, -W:], frames[0])
    assert (img[H:H + 2] == 255).all()  # the white gap between rows


def test_demo_frames_found_needs_the_gripper_and_every_named_block(episodes):
    from cosmos3.world.geometry import BLOCK_COLORS, TABLE_COLOR

    ep, frames, _ = next(e for e in episodes if len(e[0].blocks) < len(BLOCK_COLORS))
    colors = [b.color for b in ep.blocks]
    assert E.demo_frames_found(frames, colors).all()  # the true video: everything is where the tracker finds it
    mush = frames.copy()
    mush[3:] = TABLE_COLOR  # from frame 3 on, an empty grey picture
    found = E.demo_frames_found(mush, colors)
    assert found[:3].all() and not found[3:].any()
    absent = next(c for c in BLOCK_COLORS if c not in colors)
    assert not E.demo_frames_found(frames, colors + [absent]).any()  # a block that is not there is never found
    assert E.visible_colors(frames[:1]) == sorted(colors) and E.visible_colors(mush[3:]) == []


def test_action_motion_cosine_is_the_cosine_of_the_frame_the_actions_are_written_in():
    """A straight path written as the world writes actions (translation in the gripper's frame): the cosine with the
    table motion is cos(yaw) at every moving step; a still step is left out; in the table frame it is 1."""
    from cosmos3.actions.poses import relative_pose_actions
    from cosmos3.world.geometry import rot_z

    g = np.random.default_rng(fresh_seed())
    yaw, heading = g.uniform(-math.pi, math.pi, 2)
    steps = np.r_[np.linspace(0.0, 0.2, 9), [0.2]]  # the last step stays put
    pos = np.zeros((steps.size, 3))
    pos[:, 0], pos[:, 1] = steps * math.cos(heading), steps * math.sin(heading)
    actions = relative_pose_actions(pos, rot_z(np.full(steps.size, yaw)))[:-1]
    cos = M.action_motion_cosines(actions, pos)
    assert cos.shape == (steps.size - 2,)
    assert np.allclose(cos, math.cos(yaw), atol=1e-9)
    assert np.allclose(M.action_motion_cosines(np.diff(pos, axis=0), pos), 1.0)


def test_pico_world_actions_do_not_say_the_screen_direction_until_turned_by_the_yaw():
    """benchmarks/pico_action_frame.py on v2's world: turned back by the gripper's yaw the actions point where it
    went; as written (the gripper's frame, yaw uniform at an episode's start) they average out."""
    bench = _load("pico_action_frame")
    cos = bench.frame_cosines("v2", episodes=24, seed=fresh_seed() % 10**6)
    assert cos["table frame"].size == cos["gripper frame"].size > 100
    assert np.allclose(cos["table frame"], 1.0, atol=1e-6)
    assert abs(float(cos["gripper frame"].mean())) < 0.5 and float(cos["gripper frame"].min()) < 0.0
