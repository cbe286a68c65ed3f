"""Synthetic stand-ins for the release's fixture files, written when the real ones are not at hand.

`write_fixtures(root)` writes a tree with the layout, file names, formats and shapes that the release's
`shared/fixtures/README.md` documents; `synthetic_fixtures()` writes it once per process into a temporary folder
(removed at exit) and returns that folder. Nothing here comes from the release: the pictures are smooth
procedural patterns, the trajectories are generated from simple motion models, the prompts are written here.

What is kept from the release, because tests and readers depend on it:
- images: av_0.jpg 832x480, umi.png 256x256, robot_153.jpg 1280x720, humanoid_robot.jpg 1672x941 (RGB);
- videos (H.264, yuv420p, MP4, no audio): av_0 832x480 10 fps 61 frames, umi 256x256 20 fps 33 frames,
  robotics_next_action 644x476, physical_plausibility 280x280 (26 frames each), assisted_task_next_action 896x504
  (10 frames), all three at 4 fps; av_0.jpg and umi.png are the first frames of av_0.mp4 and umi.mp4;
- actions (JSON lists of rows): the three AV files [60, 9] = translation(3, metres x 1.35) + rot6d(6, columns 0
  and 1 of the step's rotation), frame to frame at 10 fps, camera axes x right, y down, z forward, each driving
  the way its name says; umi.json [32, 10] = translation(3) + rot6d(6) + gripper(1), two 16-step chunks;
- droid_lerobot_example: a LeRobot v3.0 dataset of one 722-frame episode at 15 fps with DROID's columns
  (cartesian state = xyz + extrinsic xyz Euler angles, whose roll wraps around +-pi as DROID's does), one camera
  MP4 (640x360 H.264 while meta/info.json says av1) and two cameras listed in info.json without their files;
- prompts: structured JSON prompts (t2v, i2v, t2i) and a negative prompt, with the release's top-level fields.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

AV_TRANSLATION_SCALE = 1.35  # the release's AV files store metres x 1.35 (DESIGN 2.8)

# name -> (width, height, fps, frames)
VIDEOS = {
    "av_0.mp4": (832, 480, 10, 61),
    "umi.mp4": (256, 256, 20, 33),
    "robotics_next_action.mp4": (644, 476, 4, 26),
    "physical_plausibility.mp4": (280, 280, 4, 26),
    "assisted_task_next_action.mp4": (896, 504, 4, 10),
}
IMAGES = {"robot_153.jpg": (1280, 720), "humanoid_robot.jpg": (1672, 941)}  # besides av_0.jpg and umi.png
DROID_FRAMES, DROID_FPS, DROID_SIZE = 722, 15, (640, 360)
DROID_CAMERAS = ["observation.image.wrist_image_left", "observation.image.exterior_image_1_left",
                 "observation.image.exterior_image_2_left"]
DROID_PRESENT = "observation.image.exterior_image_2_left"  # the only camera whose MP4 is there

README = """# Synthetic stand-ins for the release's fixtures

Written by tests/synthetic_fixtures.py because the public release's sample files were not found
(set COSMOS3_FIXTURES, or put them at ../shared/fixtures beside the repository). Same layout, names, formats and
shapes as the release's files; procedural content.
"""


# ---------------------------------------------------------------------------------------------------------------
# pictures


def _pattern(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colourful pattern [h, w, 3] in 0..255 (float32): a vertical gradient plus low-frequency waves."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(1.0, 4.0, 2)
        phase = rng.uniform(0.0, 2 * math.pi)
        base = rng.uniform(0.3, 0.7)
        ax, by = 2 * math.pi * fx * x + phase, 2 * math.pi * 0.3 * fy * y
        # sin(ax + by) as a sum of outer products (one pass over the picture instead of a full-size sin)
        wave = np.sin(ax) * np.cos(by) + np.cos(ax) * np.sin(by)
        out[..., c] = 255 * (base + 0.25 * wave + 0.15 * np.cos(2 * math.pi * fy * y + phase) + 0.1 * (y - 0.5))
    return out


def _scene(w: int, h: int, seed: int, frames: int, pan: tuple[float, float], box: tuple[float, float]):
    """Frames of one scene, made lazily: a wide pattern seen through a panning window, plus a moving box.

    pan: window motion in pixels per frame (x, y); box: the box's motion in frame widths / heights per frame.
    """
    rng = np.random.default_rng(seed)
    dx, dy = pan
    mx, my = int(math.ceil(abs(dx) * frames)) + 1, int(math.ceil(abs(dy) * frames)) + 1
    canvas = np.clip(_pattern(h + my, w + mx, rng), 0, 255).astype(np.uint8)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    bw, bh = max(4, w // 6), max(4, h // 5)
    for i in range(frames):
        x0 = int(round(i * dx)) if dx >= 0 else mx - 1 + int(round(i * dx))
        y0 = int(round(i * dy)) if dy >= 0 else my - 1 + int(round(i * dy))
        frame = canvas[y0:y0 + h, x0:x0 + w].copy()
        bx = int((0.2 + 0.6 * _triangle(box[0] * i)) * w)  # back and forth, no jumps
        by = int((0.3 + 0.4 * _triangle(box[1] * i)) * h)
        frame[by:by + bh, bx:bx + bw] = colour
        yield frame


def _triangle(t: float) -> float:
    """0 -> 1 -> 0 over each unit of t."""
    return 1.0 - abs((2 * t) % 2 - 1.0)


def _write_mp4(path: Path, frames, width: int, height: int, fps: int) -> None:
    """H.264 (yuv420p) in MP4, no audio, at a constant `fps`."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "26"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, "RGB")
    if path.suffix == ".png":
        image.save(path)
    else:
        image.save(path, quality=90)


# ---------------------------------------------------------------------------------------------------------------
# actions


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c, -s], -1), np.stack([zero, s, c], -1)], -2)


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], -2)


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2)


def _smooth_noise(n: int, rng: np.random.Generator, scale: float, width: int = 6) -> np.ndarray:
    """Low-pass random values [n]: white noise through a moving average of `width`."""
    raw = rng.standard_normal(n + width)
    return scale * np.convolve(raw, np.ones(width) / math.sqrt(width), mode="valid")[:n]


def _rows(translation: np.ndarray, rotation: np.ndarray, *extra: np.ndarray) -> list[list[float]]:
    """[T, 3] + [T, 3, 3] (+ [T] columns) -> JSON rows of float32 values (the release stores float32 numbers)."""
    cols = [translation, rotation[:, :, 0], rotation[:, :, 1]] + [e[:, None] for e in extra]
    return np.concatenate(cols, axis=1).astype(np.float32).astype(np.float64).tolist()


def av_actions(turn_degrees: float, speed: float, seed: int, steps: int = 60, fps: int = 10) -> list[list[float]]:
    """A car driving for `steps` frames at about `speed` m/s and turning by `turn_degrees` (positive = right).

    Camera axes x right, y down, z forward. Each step turns about the vertical (y) axis by a smooth share of the
    total turn (a sin^2 profile: in, through and out of the bend), with a little pitch / roll jitter, and moves
    forward along the chord of that step's arc; translations are in metres times AV_TRANSLATION_SCALE.
    """
    rng = np.random.default_rng(seed)
    u = (np.arange(steps) + 0.5) / steps
    share = np.sin(math.pi * u) ** 2
    yaw = math.radians(turn_degrees) * share / share.sum() + _smooth_noise(steps, rng, 2e-4)
    dist = speed / fps * (1.0 + 0.1 * np.sin(2 * math.pi * u + rng.uniform(0, 6))) + _smooth_noise(steps, rng, 1e-3)
    pitch, roll = _smooth_noise(steps, rng, 5e-4), _smooth_noise(steps, rng, 5e-4)
    rotation = _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll)
    translation = np.stack([dist * np.sin(yaw / 2), _smooth_noise(steps, rng, 2e-3), dist * np.cos(yaw / 2)], 1)
    return _rows(translation * AV_TRANSLATION_SCALE, rotation)


def umi_actions(seed: int, chunks: int = 2, chunk: int = 16) -> list[list[float]]:
    """A hand-held gripper's smooth motion: [chunks * chunk, 10] = translation(3) + rot6d(6) + gripper(1).

    Per-step translations of a few centimetres to ~0.2 and rotations of a few to ~25 degrees, about the sizes of the
    release's file, varying smoothly; the gripper value drifts slowly around -0.14.
    """
    rng = np.random.default_rng(seed)
    n = chunks * chunk
    u = np.linspace(0.0, 1.0, n)
    forward = 0.14 + 0.07 * np.sin(math.pi * u + rng.uniform(-0.5, 0.5)) + _smooth_noise(n, rng, 0.01)
    side, up = 0.03 * np.sin(2 * math.pi * u + rng.uniform(0, 6)), 0.05 * np.sin(math.pi * u + rng.uniform(0, 6))
    translation = np.stack([forward, side + _smooth_noise(n, rng, 0.01), up + _smooth_noise(n, rng, 0.01)], 1)
    angles = [0.2 * np.sin(math.pi * u * k + rng.uniform(0, 6)) + _smooth_noise(n, rng, 0.02) for k in (1, 2, 3)]
    rotation = _rot_z(angles[2]) @ _rot_y(angles[1]) @ _rot_x(angles[0])
    gripper = -0.14 - 0.005 * u + _smooth_noise(n, rng, 5e-4)
    return _rows(translation, rotation, gripper)


# ---------------------------------------------------------------------------------------------------------------
# the DROID LeRobot episode


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _droid_info() -> dict:
    video_info = {"video.height": DROID_SIZE[1], "video.width": DROID_SIZE[0], "video.codec": "av1",
                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": DROID_FPS,
                  "video.channels": 3, "has_audio": False}
    scalar = {"dtype": "float32", "shape": [], "names": None}
    features = {
        "observation.state.cartesian_position": {"dtype": "float32", "shape": [6], "names": None},
        "observation.state.joint_positions": dict(scalar),
        "observation.state.gripper_position": dict(scalar),
        "action.gripper_position": dict(scalar),
        "action.joint_position": dict(scalar),
    }
    for cam in DROID_CAMERAS:
        features[cam] = {"dtype": "video", "shape": [DROID_SIZE[1], DROID_SIZE[0], 3], "info": dict(video_info)}
    for name, dtype in [("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")]:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return {
        "codebase_version": "v3.0", "robot_type": "panda", "total_episodes": 1, "total_frames": DROID_FRAMES,
        "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "fps": DROID_FPS,
        "splits": {"train": "0:57639"},  # as in the release: the source dataset's split, not this slice's
        "data_path": "data/chunk-{episode_chunk:03d}/file-{episode_file:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{episode_chunk:03d}/file-{episode_file:03d}.mp4",
        "features": features,
        "repo_id": "local/droid_synthetic_episode",
        "total_videos": len(DROID_CAMERAS),
        "note": "Synthetic stand-in for the release's DROID slice: only one camera's MP4 is present.",
        "copied_video_files": {c: f"videos/{c}/chunk-000/file-000.mp4" for c in DROID_CAMERAS},
    }


def write_droid(root: Path, seed: int = 48330) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n = DROID_FRAMES
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(_droid_info(), indent=2) + "\n")

    # End effector: a slow reach (a few mm per frame) with the gripper pointing down, so the roll sits near pi
    # and wraps between +pi and -pi as in DROID's recordings.
    u = np.linspace(0.0, 1.0, n)
    xyz = np.stack([0.37 + 0.2 * np.sin(0.5 * math.pi * u) ** 2,
                    0.19 - 0.55 * u + 0.05 * np.sin(3 * math.pi * u),
                    0.44 + 0.2 * np.sin(2 * math.pi * u + 0.3)], 1)
    roll = _wrap(math.pi - 0.2 + 0.35 * np.sin(4 * math.pi * u) + np.cumsum(_smooth_noise(n, rng, 2e-3)))
    pitch = -0.05 - 0.3 * np.sin(math.pi * u) ** 2
    yaw = -0.19 - 1.5 * u ** 2
    state = np.stack([xyz[:, 0], xyz[:, 1], xyz[:, 2], roll, pitch, yaw], 1)
    grip_cmd = (np.sin(2 * math.pi * 3 * u) > 0.3).astype(np.float64) * 0.99
    data = pa.table({
        "episode_index": pa.array(np.zeros(n, np.int64)),
        "frame_index": pa.array(np.arange(n, dtype=np.int64)),
        "timestamp": pa.array(np.arange(n) / DROID_FPS),  # float64 although info.json says float32, as released
        "index": pa.array(np.arange(n, dtype=np.int64)),
        "task_index": pa.array(np.zeros(n, np.int64)),
        "observation.state.cartesian_position": pa.array(state.tolist(), type=pa.list_(pa.float64())),
        "observation.state.joint_positions": pa.array(_smooth_noise(n, rng, 0.3)),
        "observation.state.gripper_position": pa.array(np.zeros(n)),
        "action.gripper_position": pa.array(grip_cmd),
        "action.joint_position": pa.array(_smooth_noise(n, rng, 0.3)),
    })
    pq.write_table(data, root / "data" / "chunk-000" / "file-000.parquet")
    episodes = pa.table({"episode_index": pa.array([0], pa.int64()), "tasks": pa.array([[" |  | "]]),
                         "length": pa.array([n], pa.int64()), "dataset_from_index": pa.array([0], pa.int64()),
                         "dataset_to_index": pa.array([n], pa.int64())})
    pq.write_table(episodes, root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    # The release's task text is empty fields joined by " | ".
    pq.write_table(pa.table({"task_index": pa.array([0], pa.int64()), "task": pa.array([" |  | "])}),
                   root / "meta" / "tasks.parquet")

    w, h = DROID_SIZE
    video = root / "videos" / DROID_PRESENT / "chunk-000" / "file-000.mp4"
    # A fixed exterior camera (as DROID's are): still background, one moving object; cheap to encode.
    _write_mp4(video, _scene(w, h, seed, n, pan=(0.0, 0.0), box=(0.004, 0.003)), w, h, DROID_FPS)


# ---------------------------------------------------------------------------------------------------------------
# prompts


def _subject(description: str, action: str = "", **counts: int) -> dict:
    out = {"description": description, "appearance_details": f"{description} Clean surfaces, fine detail.",
           "relationship": "Main subject of the scene", "location": "Center of frame",
           "relative_size": "Large within frame", "orientation": "Three-quarter view toward the camera",
           "pose": "Upright and steady"}
    if action:
        out.update(action=action, state_changes=f"Moves smoothly while it {action.lower()}")
    out.update(clothing="", expression="", gender="", age="", skin_tone_and_texture="", facial_features="",
               number_of_subjects=1, number_of_arms=counts.get("arms", 0), number_of_legs=counts.get("legs", 0))
    return out


def _common(scene: str, mood: str) -> dict:
    return {
        "background_setting": scene,
        "lighting": {"conditions": "Soft daylight", "direction": "From the left window",
                     "shadows": "Soft, short shadows", "illumination_effect": "Even, natural exposure"},
        "aesthetics": {"composition": "Balanced, subject slightly off center",
                       "color_scheme": "Neutral with warm accents", "mood_atmosphere": mood,
                       "patterns": "Tiles and wood grain"},
        "cinematography": {"camera_motion": "Static", "framing": "Medium shot", "camera_angle": "Eye level",
                           "depth_of_field": "Moderate", "focus": "On the main subject",
                           "lens_focal_length": "35mm"},
        "style_medium": "Photorealistic video", "artistic_style": "Realistic", "context": "Robotics demonstration",
    }


def _video_fields(actions: list[str], seconds: int, fps: int, w: int, h: int) -> dict:
    step = seconds / len(actions)
    return {
        "actions": [{"time": f"{i * step:.1f}s-{(i + 1) * step:.1f}s", "description": a}
                    for i, a in enumerate(actions)],
        "text_and_signage_elements": [],
        "segments": [{"segment_index": i, "time_range": f"{i * step:.1f}s-{(i + 1) * step:.1f}s", "description": a,
                      "key_changes": "The motion progresses", "camera": "Static"} for i, a in enumerate(actions)],
        "transitions": [], "temporal_caption": " Then ".join(actions),
        "resolution": {"W": w, "H": h}, "aspect_ratio": "16:9", "duration": f"{seconds}s", "fps": fps,
    }


def prompts() -> dict[str, dict]:
    t2v = {"subjects": [_subject("A grey robotic arm with a padded gripper holding a sponge.",
                                 "Wipes a plate in circles", arms=1),
                        _subject("A white ceramic plate with food stains.")],
           **_common("A bright home kitchen with a steel sink and tiled walls.", "Calm and tidy"),
           **_video_fields(["The arm lowers the sponge onto the plate.", "It wipes in slow circles.",
                            "It lifts the sponge away from the clean plate."], 5, 24, 1280, 720)}
    i2v = {"subjects": [_subject("A white humanoid robot with exposed joints and blue eyes.",
                                 "Crouches and jumps in place", arms=2, legs=2)],
           **_common("A living room with a beige rug and a sofa.", "Playful"),
           **_video_fields(["The robot stands still.", "It crouches.", "It jumps and lands softly.",
                            "It stands up again."], 5, 24, 1280, 720)}
    t2i = {"subjects": [dict(_subject("An industrial robot arm draping blue fabric.", arms=1),
                             number_of_hands=0, number_of_fingers=0),
                        dict(_subject("A dress mannequin on a metal stand."), number_of_hands=0, number_of_fingers=0)],
           "subject_details": {"fabric": "Deep blue satin", "pins": "Silver pins in a cushion",
                               "robot_gripper": "Two-finger gripper", "mannequin_stand": "Polished steel"},
           **_common("A tailor's studio with shelves of fabric.", "Focused and quiet"),
           "text_and_signage_elements": [],
           "quadrant_scan": {"top_left": "The arm's upper joints", "top_right": "Fabric shelves",
                             "bottom_left": "A worktable", "bottom_right": "The stand's base",
                             "absolute_center": "The gripper holding the fabric"},
           "comprehensive_t2i_caption": "A robot arm drapes blue satin over a mannequin in a tailor's studio.",
           "resolution": {"W": 1024, "H": 1024}, "aspect_ratio": "1:1"}
    t2i["cinematography"].pop("camera_motion")
    negative = {"subjects": [_subject("Blurry, malformed subjects with wrong proportions.",
                                      "Jerky, incoherent motion")] * 4,
                **_common("An incoherent, warped background with flickering textures.", "Artificial and dull"),
                "actions": [{"time": "0s-5s", "description": "Motion that stutters, jumps or breaks physics."}],
                "text_and_signage_elements": [],
                "segments": [{"segment_index": 0, "time_range": "0s-5s", "description": "Low quality throughout",
                              "key_changes": "Random flicker", "camera": "Shaky"}],
                "transitions": [], "temporal_caption": "Low quality, distorted, flickering video.",
                "audio_description": "Noise and distortion", "physical_realism": "Objects pass through each other"}
    return {"t2v_robot_kitchen.json": t2v, "i2v_humanoid_robot.json": i2v, "t2i_robot_draping.json": t2i,
            "negative_prompt.json": negative}


# ---------------------------------------------------------------------------------------------------------------
# the tree


def write_fixtures(root: str | Path, *, read_only: bool = True) -> Path:
    """Write the stand-in tree into `root` (created; must not hold a tree already). Files end up read-only."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README)

    for name, (w, h, fps, n) in VIDEOS.items():
        seed = sum(map(ord, name))
        pan = (1.5, 0.0) if name == "av_0.mp4" else (0.6, 0.3)
        frames = _scene(w, h, seed, n, pan=pan, box=(0.03, 0.02))
        if name in ("av_0.mp4", "umi.mp4"):  # the conditioning images are these videos' first frames
            first = next(frames)
            _write_image(root / "images" / name.replace(".mp4", ".jpg" if name == "av_0.mp4" else ".png"), first)
            frames = _chain(first, frames)
        _write_mp4(root / "videos" / name, frames, w, h, fps)
    for i, (name, (w, h)) in enumerate(IMAGES.items()):
        _write_image(root / "images" / name, next(_scene(w, h, 100 + i, 1, pan=(0, 0), box=(0, 0))))

    actions = root / "actions"
    actions.mkdir(exist_ok=True)
    for name, turn, speed, seed in [("forward", 4.0, 1.6, 1), ("left", -110.0, 8.0, 2), ("right", 90.0, 5.0, 3)]:
        (actions / f"av_traj_{name}.json").write_text(json.dumps(av_actions(turn, speed, seed)))
    (actions / "umi.json").write_text(json.dumps(umi_actions(4), indent=4))

    (root / "prompts").mkdir(exist_ok=True)
    for name, prompt in prompts().items():
        (root / "prompts" / name).write_text(json.dumps(prompt, indent=2) + "\n")

    write_droid(root / "droid_lerobot_example")
    if read_only:  # like the release's files: a reader that writes next to its input fails loudly
        for path in root.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
    return root


def _chain(first, rest):
    yield first
    yield from rest


_CACHE: dict[str, object] = {}


def synthetic_fixtures() -> Path:
    """The stand-in tree, written once per process into a temporary folder that is removed at exit."""
    if "root" not in _CACHE:
        folder = Path(tempfile.mkdtemp(prefix="cosmos3-fixtures-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        start = time.perf_counter()
        _CACHE["root"] = write_fixtures(folder / "fixtures")
        _CACHE["seconds"] = time.perf_counter() - start
    return _CACHE["root"]  # type: ignore[return-value]


def generation_seconds() -> float | None:
    """How long this process took to write the stand-ins (None when they were not written)."""
    return _CACHE.get("seconds")  # type: ignore[return-value]


if __name__ == "__main__":  # python tests/synthetic_fixtures.py OUT: write a tree to look at
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic_fixtures")
    t0 = time.perf_counter()
    write_fixtures(out, read_only=False)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s ({os.cpu_count()} CPUs)")
