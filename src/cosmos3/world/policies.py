"""Scripted and random gripper policies, each with the instruction a person would give for it.

A policy is a list of phases (move to a pose, close, open). Each phase carries a short text of what the gripper is
doing ("push the red square to the left"): the per-frame phase text is the ground truth for "what is the next
action?" questions. Targets may be computed lazily when a phase starts (e.g. where to carry a grasped block), so the
script adapts to where physics actually left things, like a simple closed-loop controller.

Policies:
- push: push one block in a direction (fingers open, the block rides against the palm);
- push_into: push one block until it bumps into another;
- pick_place: grasp one block, carry it (turning it a little) and set it down;
- random: random waypoints and random open/close, for coverage of the action space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .geometry import direction_word, toward, wrap_angle
from .collision import Body
from .physics import GripperState, World, gripper_overlaps

Pose = tuple[float, float, float]


@dataclass
class Phase:
    kind: str  # "move", "close" or "open"
    text: str  # what the gripper does during this phase, as an imperative ("close the gripper on the red square")
    target: Pose | Callable[[World], Pose] | None = None  # for "move": a pose, or a function of the world
    close: bool = False  # finger command while moving
    max_frames: int = 24  # give up on a phase that cannot finish (e.g. the gripper is blocked)


@dataclass
class Policy:
    name: str  # "push", "push_into", "pick_place" or "random"
    instruction: str  # the task given to the robot, the LeRobot "task" string
    phases: list[Phase]
    goal: dict = field(default_factory=dict)  # ground truth of the task (block, target, other block)
    start: GripperState | None = None  # where the gripper starts
    _i: int = 0
    _frames: int = 0
    _target: Pose | None = None
    _last: tuple | None = None
    _still: int = 0

    def act(self, world: World) -> tuple[Pose, bool, str]:
        """The gripper target (x, y, yaw), the finger command, and the phase text for the next frame."""
        while self._i < len(self.phases) and self._phase_done(world):
            self._i += 1
            self._frames, self._target, self._last, self._still = 0, None, None, 0
        gs = world.gripper
        if self._i >= len(self.phases):
            return (gs.x, gs.y, gs.yaw), world.attached is not None, "stay still"
        ph = self.phases[self._i]
        if self._target is None:
            self._target = ph.target(world) if callable(ph.target) else ph.target
            if self._target is None:  # close / open: stay where it is
                self._target = (gs.x, gs.y, gs.yaw)
            x0, y0, x1, y1 = world.workspace()
            # Plain floats: numpy scalars would leak into the simulation (slower, and into JSON).
            self._target = (float(min(max(self._target[0], x0), x1)), float(min(max(self._target[1], y0), y1)),
                            float(self._target[2]))
        self._frames += 1
        close = ph.close if ph.kind == "move" else ph.kind == "close"
        return self._target, close, ph.text

    def _phase_done(self, world: World) -> bool:
        if self._target is None:
            return False  # not started yet
        ph, gs, g = self.phases[self._i], world.gripper, world.gcfg
        if self._frames >= ph.max_frames:
            return True
        state = (round(gs.x, 5), round(gs.y, 5), round(gs.yaw, 4), round(gs.opening, 5))
        self._still = self._still + 1 if state == self._last else 0
        self._last = state
        if self._still >= 2:  # stalled (blocked by a jammed block, or nothing left to do)
            return True
        if ph.kind == "move":
            tx, ty, tyaw = self._target
            return math.hypot(tx - gs.x, ty - gs.y) < 1e-3 and abs(wrap_angle(tyaw - gs.yaw)) < 0.02
        if ph.kind == "close":
            return world.attached is not None or gs.opening <= 0.0
        return gs.opening >= g.max_opening  # "open"


# ---- helpers ---------------------------------------------------------------------------------------------------


def support(body: Body, dx: float, dy: float) -> float:
    """How far the body reaches from its center along the unit direction (dx, dy)."""
    if body.local is None:
        return body.radius
    return max((vx - body.x) * dx + (vy - body.y) * dy for vx, vy in body.verts)


def _in_box(p, box, pad: float = 0.0) -> bool:
    return box[0] + pad <= p[0] <= box[2] - pad and box[1] + pad <= p[1] <= box[3] - pad


def _push_geometry(world: World, bi: int, heading: float):
    """Gripper poses behind a block and touching it, to push it along heading."""
    b, g = world.blocks[bi], world.gcfg
    dx, dy = math.cos(heading), math.sin(heading)
    back = support(b, -dx, -dy)
    # The palm's front face is at -finger_length / 2 in the gripper frame: the block rides there while pushed.
    contact = back - g.finger_length / 2
    pre = (b.x - dx * (back + g.finger_length / 2 + 0.012), b.y - dy * (back + g.finger_length / 2 + 0.012), heading)
    return pre, contact, back


def _final_block_ok(world: World, bi: int, target, pad: float = 0.005) -> bool:
    b = world.blocks[bi]
    return _in_box(target, world.table.bounds, b.bound + pad)


# ---- policies --------------------------------------------------------------------------------------------------


def make_push(world: World, rng: np.random.Generator, bi: int, into: int | None = None) -> Policy | None:
    """Push block bi in a random direction (or into block `into`); None when no feasible push was found."""
    b = world.blocks[bi]
    name = world.specs[bi].name
    for _ in range(30):
        if into is None:
            heading = rng.integers(8) * math.pi / 4 + rng.uniform(-0.15, 0.15)
            dist = rng.uniform(0.06, 0.13)
        else:
            o = world.blocks[into]
            heading = math.atan2(o.y - b.y, o.x - b.x)
            hx, hy = math.cos(heading), math.sin(heading)
            reach = support(b, hx, hy) + support(o, -hx, -hy)
            dist = math.hypot(o.x - b.x, o.y - b.y) - reach + 0.015  # bump it and nudge it a little
        dx, dy = math.cos(heading), math.sin(heading)
        target = (b.x + dx * dist, b.y + dy * dist)
        pre, contact, _back = _push_geometry(world, bi, heading)
        end = (target[0] - dx * contact, target[1] - dy * contact, heading)
        ws = world.workspace()
        if into is None and not _final_block_ok(world, bi, target):
            continue
        if not (_in_box(pre, ws) and _in_box(end, ws)):
            continue
        if into is None:
            word = direction_word(dx, dy)
            instruction = f"Push the {name} {toward(word)}."
            push_text = f"push the {name} {toward(word)}"
            goal = {"block": world.specs[bi].color, "target": [float(target[0]), float(target[1])],
                    "direction": word}
        else:
            other = world.specs[into].name
            instruction = f"Push the {name} into the {other}."
            push_text = f"push the {name} into the {other}"
            goal = {"block": world.specs[bi].color, "other": world.specs[into].color,
                    "direction": direction_word(dx, dy)}
        back = (end[0] - dx * 0.04, end[1] - dy * 0.04, heading)
        phases = [
            Phase("move", f"move the gripper behind the {name}", pre),
            Phase("move", push_text, end, max_frames=40),
            Phase("move", f"pull the gripper back from the {name}", back),
        ]
        pol = Policy("push" if into is None else "push_into", instruction, phases, goal)
        pol.start = _start_near(world, rng, pre)
        if pol.start is not None:
            return pol
    return None


def make_pick_place(world: World, rng: np.random.Generator, bi: int) -> Policy | None:
    """Grasp block bi, carry it somewhere nearby while turning it, and set it down."""
    b, g = world.blocks[bi], world.gcfg
    spec = world.specs[bi]
    name = spec.name
    for _ in range(30):
        heading = rng.integers(8) * math.pi / 4 + rng.uniform(-0.15, 0.15)
        if spec.shape == "square":  # approach square-on, like a sensible robot would
            face = b.a + round((heading - b.a) / (math.pi / 2)) * math.pi / 2
            heading = wrap_angle(face)
        dx, dy = math.cos(heading), math.sin(heading)
        back = support(b, -dx, -dy)
        grasp_x = max(0.0, back - g.finger_length / 2 + 0.002)  # block center in the gripper frame at grasp
        grasp = (b.x - dx * grasp_x, b.y - dy * grasp_x, heading)
        pre = (grasp[0] - dx * (g.finger_length + 0.012), grasp[1] - dy * (g.finger_length + 0.012), heading)
        move = rng.integers(8) * math.pi / 4 + rng.uniform(-0.15, 0.15)
        dist = rng.uniform(0.07, 0.14)
        target = (b.x + math.cos(move) * dist, b.y + math.sin(move) * dist)
        turn = float(rng.uniform(-0.8, 0.8))
        end_yaw = heading + turn
        place = (target[0] - math.cos(end_yaw) * grasp_x, target[1] - math.sin(end_yaw) * grasp_x, end_yaw)
        ws = world.workspace()
        if not (_final_block_ok(world, bi, target, 0.01) and _in_box(pre, ws) and _in_box(grasp, ws)
                and _in_box(place, ws)):
            continue
        word = direction_word(math.cos(move), math.sin(move))

        def carry(w: World, target=target, end_yaw=end_yaw) -> Pose:
            # Put the block, wherever it sits in the fingers, at the target.
            if w.attached is None:
                return (w.gripper.x, w.gripper.y, w.gripper.yaw)
            rx, ry, _ = w._attach_rel
            c, s = math.cos(end_yaw), math.sin(end_yaw)
            return (target[0] - c * rx + s * ry, target[1] - s * rx - c * ry, end_yaw)

        def retreat(w: World) -> Pose:
            gs = w.gripper
            return (gs.x - math.cos(gs.yaw) * 0.05, gs.y - math.sin(gs.yaw) * 0.05, gs.yaw)

        phases = [
            Phase("move", f"move the open gripper behind the {name}", pre),
            Phase("move", f"slide the open fingers around the {name}", grasp),
            Phase("close", f"close the gripper on the {name}"),
            Phase("move", f"carry the {name} {toward(word)}", carry, close=True, max_frames=40),
            Phase("open", f"open the gripper to release the {name}"),
            Phase("move", f"move the gripper back, away from the {name}", retreat),
        ]
        instruction = f"Pick up the {name} and move it {toward(word)}."
        goal = {"block": spec.color, "target": [float(target[0]), float(target[1])], "direction": word,
                "turn": turn}
        pol = Policy("pick_place", instruction, phases, goal)
        pol.start = _start_near(world, rng, pre)
        if pol.start is not None:
            return pol
    return None


def make_random(world: World, rng: np.random.Generator, frames: int) -> Policy:
    """Random waypoints with random yaw, and random open/close in between."""
    x0, y0, x1, y1 = world.workspace()
    phases: list[Phase] = []
    closed = False
    x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
    yaw = float(rng.uniform(-math.pi, math.pi))
    for _ in range(max(2, frames // 6)):
        if rng.random() < 0.3:
            closed = not closed
            phases.append(Phase("close" if closed else "open", "close the gripper" if closed else "open the gripper",
                                max_frames=6))
            continue
        nx = float(np.clip(x + rng.uniform(-0.15, 0.15), x0, x1))
        ny = float(np.clip(y + rng.uniform(-0.12, 0.12), y0, y1))
        nyaw = yaw + float(rng.uniform(-1.0, 1.0))
        text = "move the gripper " + toward(direction_word(nx - x, ny - y)) if math.hypot(nx - x, ny - y) > 0.02 \
            else "turn the gripper"
        phases.append(Phase("move", text, (nx, ny, nyaw), close=closed, max_frames=12))
        x, y, yaw = nx, ny, nyaw
    pol = Policy("random", "Move the gripper around the table.", phases, {})
    for _ in range(50):
        gs = GripperState(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(-math.pi, math.pi)),
                          world.gcfg.max_opening)
        if not _overlaps(world, gs):
            pol.start = gs
            break
    return pol


def _overlaps(world: World, gs: GripperState) -> bool:
    return gripper_overlaps(world, gs, clearance=0.005)


def _start_near(world: World, rng: np.random.Generator, pose: Pose) -> GripperState | None:
    """A start pose a little behind and around the first target, clear of every block."""
    x0, y0, x1, y1 = world.workspace()
    for _ in range(30):
        ang = pose[2] + math.pi + rng.uniform(-1.0, 1.0)
        d = rng.uniform(0.02, 0.07)
        gs = GripperState(float(pose[0] + math.cos(ang) * d), float(pose[1] + math.sin(ang) * d),
                          float(wrap_angle(pose[2] + rng.uniform(-0.5, 0.5))), world.gcfg.max_opening)
        if x0 <= gs.x <= x1 and y0 <= gs.y <= y1 and not _overlaps(world, gs):
            return gs
    return None
