"""One tabletop episode: sample a scene and a task, run the policy in the simulator, keep the ground truth.

Everything an episode produces (video, sound, actions, captions, answers, scores) derives from the
`TabletopEpisode` record returned by `simulate_tabletop`, and the record derives from the seed alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .geometry import (BLOCK_COLORS, BLOCK_SIZES, GRIPPER_DOMAIN, SHAPES, Table, bounding_radius, rot6d, rot_z,
                       relative_pose_actions)
from .physics import BlockSpec, ContactEvent, GripperConfig, GripperState, PhysicsConfig, World, blocks_overlap
from .policies import Policy, make_pick_place, make_push, make_random


@dataclass
class TabletopConfig:
    fps: int = 16  # 16 or 24 (DESIGN 2.7)
    duration_s: float = 2.0  # 33 frames at 16 fps, 49 at 24 fps: both 4k+1 as the video VAE wants
    min_blocks: int = 1
    max_blocks: int = 3  # at most one block per shape, so 3
    gripper_speed: tuple = (0.16, 0.3)  # m/s, drawn per episode: varied motion, and tasks fill most of the 2 s
    # Mix of policies (probabilities, normalized): purposeful pushes and pick-and-place, plus random motion.
    policy_weights: dict = field(default_factory=lambda: {"push": 0.3, "push_into": 0.15, "pick_place": 0.3,
                                                          "random": 0.25})
    table: Table = field(default_factory=Table)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)

    @property
    def num_frames(self) -> int:
        return 1 + int(round(self.duration_s * self.fps))


@dataclass
class TabletopEpisode:
    seed: int
    fps: int
    table: Table
    gripper_cfg: GripperConfig
    blocks: list[BlockSpec]
    block_poses: np.ndarray  # [T, n, 3] x, y (m), angle (rad) per frame
    gripper: np.ndarray  # [T, 4] x, y (m), yaw (rad), opening (m) per frame
    grasped: np.ndarray  # [T] index of the grasped block, -1 when none
    phases: list[str]  # [T] what the gripper does from frame t to t+1 (the last is "stay still")
    events: list[ContactEvent]  # starts of touches, in time order
    touched: set  # sorted name pairs that touched at some point: ("blue", "red"), ("gripper", "red"), ("red", "rim")
    policy: str
    instruction: str
    goal: dict
    max_penetration: np.ndarray  # [T] deepest overlap between any two bodies, meters (for invariant checks)
    success: bool = False

    domain = GRIPPER_DOMAIN
    kind = "tabletop"

    @property
    def num_frames(self) -> int:
        return self.block_poses.shape[0]

    def gripper_value(self) -> np.ndarray:
        """[T] in [0, 1]: 0 fully open, 1 fully closed (the DROID convention)."""
        return 1.0 - self.gripper[:, 3] / self.gripper_cfg.max_opening

    def state(self) -> np.ndarray:
        """[T, 10] absolute gripper pose in the table frame: position(3) + rot6d(6) + gripper value."""
        T = self.num_frames
        pos = np.zeros((T, 3))
        pos[:, :2] = self.gripper[:, :2]
        return np.concatenate([pos, rot6d(rot_z(self.gripper[:, 2])), self.gripper_value()[:, None]], 1)

    def actions(self) -> np.ndarray:
        """[T, 10] single-arm actions: row t moves the gripper from frame t to t+1, in the frame of the gripper at t
        (translation(3) + rot6d(6)), and its last column is the gripper value reached at t+1. The last row is the
        identity motion (LeRobot gives every frame an action; windows never use it)."""
        T = self.num_frames
        pos = np.zeros((T, 3))
        pos[:, :2] = self.gripper[:, :2]
        pose = relative_pose_actions(pos, rot_z(self.gripper[:, 2]))
        g = self.gripper_value()
        grip = np.concatenate([g[1:], g[-1:]])[:, None]
        return np.concatenate([pose, grip], 1)

    def block_index(self, color: str) -> int:
        return [b.color for b in self.blocks].index(color)

    def first_touch_frame(self, a: str, b: str) -> int | None:
        key = tuple(sorted((a, b)))
        for e in self.events:
            if (e.a, e.b) == key:
                return e.frame
        return None


def sample_scene(rng: np.random.Generator, cfg: TabletopConfig) -> tuple[list[BlockSpec], list[tuple]]:
    """1-3 blocks of distinct shapes and distinct colors, at random non-touching poses on the table."""
    n = int(rng.integers(cfg.min_blocks, cfg.max_blocks + 1))
    colors = list(BLOCK_COLORS)
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:n]]
    cols = [colors[i] for i in rng.permutation(len(colors))[:n]]
    specs = [BlockSpec(c, s, BLOCK_SIZES[s]) for c, s in zip(cols, shapes)]
    x0, y0, x1, y1 = cfg.table.bounds
    for _ in range(200):
        poses = []
        for s in specs:
            # Keep a gripper's width from the rim, so that every block can be reached from every side.
            pad = bounding_radius(s.shape, s.size) + 0.03
            poses.append((float(rng.uniform(x0 + pad, x1 - pad)), float(rng.uniform(y0 + pad, y1 - pad)),
                          0.0 if s.shape == "circle" else float(rng.uniform(-math.pi, math.pi))))
        if not blocks_overlap(specs, poses, clearance=0.02):
            return specs, poses
    return specs[:1], poses[:1]  # a crowded draw: one block always fits


def choose_policy(world: World, rng: np.random.Generator, cfg: TabletopConfig, frames: int) -> Policy:
    names = list(cfg.policy_weights)
    p = np.array([cfg.policy_weights[k] for k in names], dtype=np.float64)
    name = names[int(rng.choice(len(names), p=p / p.sum()))]
    n = len(world.blocks)
    bi = int(rng.integers(n))
    pol = None
    if name == "push":
        pol = make_push(world, rng, bi)
    elif name == "push_into" and n >= 2:
        pol = make_push(world, rng, bi, into=int((bi + 1 + rng.integers(n - 1)) % n))
    elif name == "pick_place":
        pol = make_pick_place(world, rng, bi)
    return pol if pol is not None else make_random(world, rng, frames)


def simulate_tabletop(seed: int, cfg: TabletopConfig | None = None) -> TabletopEpisode:
    """Simulate one seeded episode. The same seed and config always give the same episode, bit for bit."""
    cfg = cfg or TabletopConfig()
    rng = np.random.default_rng(seed)
    specs, poses = sample_scene(rng, cfg)
    T = cfg.num_frames
    gcfg = replace(cfg.gripper, max_speed=float(rng.uniform(*cfg.gripper_speed)))
    park = GripperState(-1.0, -1.0, 0.0, gcfg.max_opening)  # off the table while the task is planned
    world = World(specs, poses, park, cfg.table, cfg.physics, gcfg, cfg.fps)
    policy = choose_policy(world, rng, cfg, T)
    if policy.start is None:  # no free spot for the gripper (very rare): start at the workspace center
        x0, y0, x1, y1 = world.workspace()
        policy.start = GripperState((x0 + x1) / 2, (y0 + y1) / 2, 0.0, gcfg.max_opening)
    world.gripper = policy.start
    world._place_gripper()
    n = len(specs)
    block_poses = np.zeros((T, n, 3))
    gripper = np.zeros((T, 4))
    grasped = np.full(T, -1, dtype=np.int64)
    pen = np.zeros(T)
    phases: list[str] = []

    def record(t: int) -> None:
        block_poses[t] = world.block_poses()
        gs = world.gripper
        gripper[t] = (gs.x, gs.y, gs.yaw, gs.opening)
        grasped[t] = -1 if world.attached is None else world.attached
        pen[t] = world.max_penetration()

    record(0)
    for t in range(T - 1):
        target, close, text = policy.act(world)
        phases.append(text)
        world.step(target, close, t)
        record(t + 1)
    phases.append("stay still")
    ep = TabletopEpisode(seed, cfg.fps, cfg.table, gcfg, specs, block_poses, gripper, grasped, phases,
                         list(world.events), set(world.touched), policy.name, policy.instruction, policy.goal, pen)
    ep.success = _success(ep)
    return ep


def _success(ep: TabletopEpisode) -> bool:
    """Did the task get done? (pushes / placements within 2 cm of the target, bumps that happened)."""
    goal = ep.goal
    if ep.policy == "random" or not goal:
        return True
    bi = ep.block_index(goal["block"])
    if ep.policy == "push_into":
        return tuple(sorted((goal["block"], goal["other"]))) in ep.touched
    final = ep.block_poses[-1, bi, :2]
    ok = float(np.hypot(*(final - np.asarray(goal["target"])))) < 0.02
    if ep.policy == "pick_place":
        ok = ok and ep.grasped[-1] == -1
    return ok
