"""The fixture set-up: where the release's files are looked for, and the synthetic stand-ins written without them.

The stand-ins are checked against the shapes the release's README documents (always), and against the release's
own files when those are present (needs_release), so that the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fixture_paths
from fixture_paths import needs_release
from synthetic_fixtures import synthetic_fixtures

# From the release's README (shared/fixtures/README.md) and its files: name -> (width, height, fps, frames).
VIDEOS = {
    "videos/av_0.mp4": (832, 480, 10, 61),
    "videos/umi.mp4": (256, 256, 20, 33),
    "videos/robotics_next_action.mp4": (644, 476, 4, 26),
    "videos/physical_plausibility.mp4": (280, 280, 4, 26),
    "videos/assisted_task_next_action.mp4": (896, 504, 4, 10),
    "droid_lerobot_example/videos/observation.image.exterior_image_2_left/chunk-000/file-000.mp4": (640, 360, 15, 722),
}
IMAGES = {"images/av_0.jpg": (832, 480), "images/umi.png": (256, 256), "images/robot_153.jpg": (1280, 720),
          "images/humanoid_robot.jpg": (1672, 941)}
ACTIONS = {"actions/av_traj_forward.json": (60, 9), "actions/av_traj_left.json": (60, 9),
           "actions/av_traj_right.json": (60, 9), "actions/umi.json": (32, 10)}
PROMPTS = ["prompts/t2v_robot_kitchen.json", "prompts/i2v_humanoid_robot.json", "prompts/t2i_robot_draping.json",
           "prompts/negative_prompt.json"]
DROID = Path("droid_lerobot_example")
DROID_META = [DROID / "meta/info.json", DROID / "meta/tasks.parquet",
              DROID / "meta/episodes/chunk-000/file-000.parquet", DROID / "data/chunk-000/file-000.parquet"]


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def video_facts(path: Path) -> tuple:
    """(codec, width, height, fps, frames (the container's count), has audio, pixel std of the first frame)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        first = next(c.decode(s)).to_ndarray(format="rgb24")
        return (s.codec_context.name, s.codec_context.width, s.codec_context.height, float(s.average_rate),
                s.frames, bool(c.streams.audio), float(first.std()))


def rotations(r6: np.ndarray) -> np.ndarray:
    """rot6d (columns 0 and 1) -> matrices by Gram-Schmidt, written here independently of cosmos3.actions."""
    a, b = r6[:, :3], r6[:, 3:]
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b - (a * b).sum(1, keepdims=True) * a
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.stack([a, b, np.cross(a, b)], axis=-1)


@pytest.fixture(scope="module")
def stand_ins() -> Path:
    return synthetic_fixtures()


def test_stand_ins_have_the_documented_files(stand_ins):
    expected = {"README.md", *VIDEOS, *IMAGES, *ACTIONS, *PROMPTS, *map(str, DROID_META)}
    assert files(stand_ins) == expected
    # Read-only like the release's files, so that code writing beside its inputs fails in tests.
    assert all(not (p.stat().st_mode & 0o222) for p in stand_ins.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_stand_in_videos(stand_ins, name):
    width, height, fps, frames = VIDEOS[name]
    codec, w, h, rate, n, audio, std = video_facts(stand_ins / name)
    assert (codec, w, h, rate, n, audio) == ("h264", width, height, fps, frames, False)
    assert std > 10  # a picture, not a blank frame


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_stand_in_images(stand_ins, name):
    with Image.open(stand_ins / name) as im:
        assert (im.size, im.mode, im.format) == (IMAGES[name], "RGB", "PNG" if name.endswith(".png") else "JPEG")
        assert float(np.asarray(im).std()) > 10


def test_conditioning_images_are_the_videos_first_frames(stand_ins):
    for image, video in [("images/av_0.jpg", "videos/av_0.mp4"), ("images/umi.png", "videos/umi.mp4")]:
        with av.open(str(stand_ins / video)) as c:
            first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        assert np.abs(np.asarray(Image.open(stand_ins / image)).astype(int) - first).mean() < 6


def test_stand_in_actions(stand_ins):
    for name, shape in ACTIONS.items():
        raw = json.loads((stand_ins / name).read_text())
        a = np.asarray(raw, dtype=np.float64)
        assert a.shape == shape and np.isfinite(a).all()
        assert np.array_equal(a.astype(np.float32).astype(np.float64), a)  # float32 values, as released
        R = rotations(a[:, 3:9])
        # Stored rotations are already orthonormal (to float32 precision) and proper.
        np.testing.assert_allclose(np.concatenate([R[:, :, 0], R[:, :, 1]], 1), a[:, 3:9], atol=1e-6)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
        # Smooth: consecutive steps differ far less than the steps themselves vary over the file.
        jumps = np.abs(np.diff(a[:, :9], axis=0)).max(0)
        assert (jumps <= 0.35 * (a[:, :9].max(0) - a[:, :9].min(0)) + 2e-3).all(), (name, jumps)
    umi = np.asarray(json.loads((stand_ins / "actions/umi.json").read_text()))
    assert np.abs(umi[:, 9] + 0.14).max() < 0.02  # a nearly constant gripper value, like the release's


def test_stand_in_av_files_drive_the_way_their_names_say(stand_ins):
    # Chain frame-to-frame steps (P_{i+1} = P_i @ T_i, metres = file / 1.35), camera x right, z forward.
    ends = {}
    for name in ("forward", "left", "right"):
        a = np.asarray(json.loads((stand_ins / f"actions/av_traj_{name}.json").read_text()))
        P = np.eye(4)
        for row, R in zip(a, rotations(a[:, 3:9])):
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R, row[:3] / 1.35
            P = P @ T
        ends[name] = (P[0, 3], P[2, 3], math.degrees(math.atan2(P[0, 2], P[2, 2])))
    x, z, heading = ends["forward"]
    assert z > 5 and abs(x) < 0.1 * z and abs(heading) < 10
    x, z, heading = ends["left"]
    assert x < -10 and z > 5 and heading < -60
    x, z, heading = ends["right"]
    assert x > 10 and z > 5 and heading > 60


def test_stand_in_droid_episode_keeps_the_release_quirks(stand_ins):
    root = stand_ins / DROID
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["codebase_version"], info["fps"], info["total_frames"]) == ("v3.0", 15, 722)
    cameras = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    assert len(cameras) == 3
    present = [c for c in cameras if (root / info["video_path"].format(video_key=c, episode_chunk=0,
                                                                       episode_file=0)).is_file()]
    assert present == ["observation.image.exterior_image_2_left"]  # two cameras listed but missing
    assert {info["features"][c]["info"]["video.codec"] for c in cameras} == {"av1"}  # while the file is H.264
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    assert data["index"] == list(range(722)) and set(data["episode_index"]) == {0}
    np.testing.assert_allclose(data["timestamp"], np.arange(722) / 15)
    state = np.asarray(data["observation.state.cartesian_position"])
    assert state.shape == (722, 6)
    assert np.abs(np.diff(state[:, :3], axis=0)).max() < 0.01  # millimetres per frame
    roll_steps = np.abs(np.diff(state[:, 3]))
    assert roll_steps.max() > 6 and np.sort(roll_steps)[-10] < 0.1  # roll wraps around +-pi, smooth otherwise
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["length"], e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(722, 0, 722)]
    assert pq.read_table(root / "meta/tasks.parquet").to_pylist() == [{"task_index": 0, "task": " |  | "}]


def test_stand_in_prompts_are_structured_json(stand_ins):
    for name in PROMPTS:
        prompt = json.loads((stand_ins / name).read_text())
        assert isinstance(prompt, dict) and prompt["subjects"] and prompt["lighting"] and prompt["cinematography"]
    assert "resolution" in json.loads((stand_ins / PROMPTS[0]).read_text())
    assert "comprehensive_t2i_caption" in json.loads((stand_ins / PROMPTS[2]).read_text())


def test_where_the_release_files_are_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMOS3_FIXTURES", "synthetic")
    assert fixture_paths.find_release() is None
    monkeypatch.setenv("COSMOS3_FIXTURES", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="COSMOS3_FIXTURES"):
        fixture_paths.find_release()
    (tmp_path / "README.md").write_text("x")
    assert fixture_paths.find_release() == tmp_path
    monkeypatch.delenv("COSMOS3_FIXTURES")
    beside = fixture_paths.REPO.parent / "shared" / "fixtures"
    assert fixture_paths.find_release() == (beside if (beside / "README.md").is_file() else None)
    assert "COSMOS3_FIXTURES" in fixture_paths.describe() or fixture_paths.RELEASE
    assert fixture_paths.FIXTURES == (fixture_paths.RELEASE_FIXTURES or synthetic_fixtures())


# ---------------------------------------------------------------------------------------------------------------
# against the release's own files


@needs_release
def test_stand_ins_mirror_the_release(stand_ins):
    real = fixture_paths.RELEASE_FIXTURES
    assert files(stand_ins) == files(real)
    for name in VIDEOS:  # the facts tests rely on: codec, size, rate, frame count, no audio
        assert video_facts(stand_ins / name)[:6] == video_facts(real / name)[:6], name
    for name in IMAGES:
        with Image.open(stand_ins / name) as a, Image.open(real / name) as b:
            assert (a.size, a.mode, a.format) == (b.size, b.mode, b.format), name
    for name in ACTIONS:
        a, b = (np.asarray(json.loads((r / name).read_text())) for r in (stand_ins, real))
        assert a.shape == b.shape, name
        # Steps of the same size: mean translation within a factor 3, largest turn per step within 2x + 2 degrees.
        step_a, step_b = (np.linalg.norm(x[:, :3], axis=1).mean() for x in (a, b))
        assert 1 / 3 < step_a / step_b < 3, (name, step_a, step_b)
        turn_a, turn_b = (np.degrees(np.arccos(np.clip((np.trace(rotations(x[:, 3:9]), axis1=1, axis2=2) - 1) / 2,
                                                       -1, 1))).max() for x in (a, b))
        assert turn_a < 2 * turn_b + 2 and turn_b < 2 * turn_a + 2, (name, turn_a, turn_b)
    for name in DROID_META[1:]:
        assert pq.read_schema(stand_ins / name).names == pq.read_schema(real / name).names, name
        assert pq.read_schema(stand_ins / name).types == pq.read_schema(real / name).types, name
        assert pq.read_metadata(stand_ins / name).num_rows == pq.read_metadata(real / name).num_rows, name
    ours, theirs = (json.loads((r / DROID / "meta/info.json").read_text()) for r in (stand_ins, real))
    assert ours["features"] == theirs["features"]
    keys = ["codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "fps", "splits",
            "data_path", "video_path", "total_videos", "chunks_size"]
    assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}
    for name in PROMPTS:
        a, b = (json.loads((r / name).read_text()) for r in (stand_ins, real))
        assert list(a) == list(b), name
