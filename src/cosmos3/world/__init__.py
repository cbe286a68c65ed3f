"""The synthetic physical world: a seeded tabletop (blocks + gripper) and a moving camera, with sound and text.

It trains and tests `pico`, and scores any generated video against ground truth. Main entry points:

    from cosmos3.world import generate_dataset
    from cosmos3.lerobot import LeRobotDataset                       # the reader (a data-layer module)
    root = generate_dataset("out/world", episodes=1000, seed=0)      # LeRobot v3 datasets + chat.jsonl
    ds = LeRobotDataset(root / "tabletop", chunk_size=16)            # windows: frames, actions, fps, task

    from cosmos3.world import simulate_tabletop, render_tabletop, score_tabletop, Truth
    ep = simulate_tabletop(seed=3)                                   # ground truth of one episode
    frames = render_tabletop(ep)                                     # uint8 [33, 192, 320, 3]
    score_tabletop(frames, Truth.from_episode(ep))                   # tracking errors, directions, contacts

Modules (one concept each): geometry (frames, palette, rot6d), collision (contact geometry), physics (the
simulator: impulses, friction, the gripper), policies (scripted and random), episode (one simulated episode),
render, camera (second embodiment), sound, text (captions, Q/A), violations (implausible clips), video (MP4 I/O),
export (datasets), track (trackers and scoring). The LeRobot reader is cosmos3.lerobot.

Your own toy world: write a simulate function returning an episode object with `actions()`, `state()`,
`instruction`, `num_frames`, `fps`, `kind` and `domain` (see TabletopEpisode / CameraEpisode) plus a renderer, and
add its kind to export._make_file / export._describe; video.Mp4Writer, the LeRobot writer and reader, and the chat
format then work unchanged.
"""

from .camera import CameraConfig, CameraEpisode, render_camera, simulate_camera
from .episode import TabletopConfig, TabletopEpisode, simulate_tabletop
from .export import WorldConfig, generate_dataset, load_chat
from .physics import BlockSpec, GripperConfig, GripperState, PhysicsConfig, World
from .render import render_tabletop
from .sound import episode_sound
from .text import camera_captions, camera_questions, tabletop_captions, tabletop_questions
from .track import Truth, score_tabletop, track_blocks, track_gripper


__all__ = [
    "BlockSpec", "CameraConfig", "CameraEpisode", "GripperConfig", "GripperState", "PhysicsConfig",
    "TabletopConfig", "TabletopEpisode", "Truth", "World", "WorldConfig", "camera_captions", "camera_questions",
    "episode_sound", "generate_dataset", "load_chat", "render_camera", "render_tabletop", "score_tabletop",
    "simulate_camera", "simulate_tabletop", "tabletop_captions", "tabletop_questions", "track_blocks",
    "track_gripper",
]
