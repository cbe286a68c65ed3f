"""A small, deterministic 2D rigid-body simulator for the tabletop: blocks, a rim, and a kinematic gripper.

What it models, and why it is enough:
- Blocks are squares, circles and triangles (exact convex shapes, no approximation), with mass, rotation, Coulomb
  friction against the table (so pushed blocks slow down and stop) and against each other.
- Contacts come from SAT for polygons plus closest-point tests for circles, with one or two contact points.
  Velocities are solved with sequential impulses (restitution + friction), then penetration is removed by a
  position pass. Contacts within a small margin are solved speculatively, so fast pushes never tunnel.
- The table rim is four static walls: blocks bounce off it and never leave the table.
- The gripper is kinematic (the robot is much heavier than a block): palm + two fingers, moved toward the policy's
  target with speed limits. If a block is jammed between the gripper and something that cannot move, the gripper
  stops for that step instead of driving through it, so nothing ever interpenetrates.
- Grasping: when the fingers close and both touch the same block, the block is attached to the gripper (it moves
  rigidly with it) until the fingers open again. This is the usual "friction grasp" idealization.
Pure Python floats on purpose: with at most 3 blocks and 3 gripper parts, per-object numpy calls would cost more
than the arithmetic, and plain floats keep runs bit-for-bit reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .collision import Body, collide, wall_contacts
from .geometry import Table, box_vertices, shape_area, shape_inertia, shape_vertices, wrap_angle


@dataclass
class PhysicsConfig:
    substeps: int = 8  # simulation steps per video frame: 7.8 ms at 16 fps, the gripper moves 2.3 mm per step
    velocity_iterations: int = 8  # sequential-impulse sweeps per step
    position_iterations: int = 4  # penetration-removal sweeps per step
    table_friction: float = 0.35  # Coulomb coefficient block/table: a block pushed at 0.3 m/s stops within ~1.3 cm
    contact_friction: float = 0.5  # block/block and block/gripper
    restitution: float = 0.2  # a little bounce on impacts
    restitution_threshold: float = 0.05  # m/s; slower impacts do not bounce (keeps resting contacts quiet)
    gravity: float = 9.81
    areal_density: float = 15.0  # kg/m^2 -> blocks weigh ~45 g
    margin: float = 0.006  # m; contacts closer than this are solved speculatively (max closing speed * dt)
    slop: float = 2e-4  # m of tolerated overlap; the position pass removes anything deeper
    touch_tolerance: float = 5e-4  # m; closer than this counts as touching (for events, grasps and captions)
    blocked_tolerance: float = 4e-4  # m; deeper overlap left after the position pass means a jam: the gripper stalls


@dataclass
class GripperConfig:
    finger_length: float = 0.05  # along the gripper's forward axis
    finger_width: float = 0.012
    palm_depth: float = 0.014  # palm thickness along the forward axis, behind the fingers
    max_opening: float = 0.10  # gap between the fingers when open: wider than any block (the square's diagonal)
    max_speed: float = 0.3  # m/s
    max_yaw_rate: float = 3.0  # rad/s
    finger_speed: float = 0.4  # m/s of opening change: a full close takes 0.25 s

    @property
    def half_extent(self) -> float:
        """Radius of a circle that contains the whole gripper (used for workspace limits)."""
        half_w = self.max_opening / 2 + self.finger_width
        back = self.finger_length / 2 + self.palm_depth
        return math.hypot(half_w, back)


# ---- the world -------------------------------------------------------------------------------------------------


@dataclass
class BlockSpec:
    color: str  # one of geometry.BLOCK_COLORS
    shape: str  # one of geometry.SHAPES
    size: float  # side (square, triangle) or radius (circle), meters

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class ContactEvent:
    """The start of a touch between two things: a new contact, with the impulse of its impact."""

    time: float  # seconds from the episode start
    frame: int  # first video frame that shows the contact
    a: str  # "gripper", "rim" or a block color
    b: str
    impulse: float  # N*s, normal impulse of the first substeps of the contact
    x: float  # contact point, meters (table frame)
    y: float


@dataclass
class GripperState:
    x: float
    y: float
    yaw: float
    opening: float  # gap between the fingers, meters


class World:
    """Blocks on a table with a rim, and a kinematic gripper. step() advances one video frame."""

    def __init__(self, blocks: list[BlockSpec], poses: list[tuple[float, float, float]], gripper: GripperState,
                 table: Table | None = None, physics: PhysicsConfig | None = None,
                 gripper_cfg: GripperConfig | None = None, fps: int = 16):
        self.table = table or Table()
        self.cfg = physics or PhysicsConfig()
        self.gcfg = gripper_cfg or GripperConfig()
        self.fps = fps
        self.dt = 1.0 / (fps * self.cfg.substeps)
        self.specs = list(blocks)
        self.blocks: list[Body] = []
        for spec, (x, y, a) in zip(blocks, poses):
            mass = self.cfg.areal_density * shape_area(spec.shape, spec.size)
            local = shape_vertices(spec.shape, spec.size)
            self.blocks.append(Body(spec.color, "block", local, spec.size if local is None else 0.0, x, y, a,
                                    mass, shape_inertia(spec.shape, spec.size, mass)))
        self.gripper = GripperState(gripper.x, gripper.y, gripper.yaw, gripper.opening)
        g = self.gcfg
        self.fingers = [Body("gripper", "finger", box_vertices(g.finger_length, g.finger_width), 0.0, 0, 0, 0)
                        for _ in range(2)]
        self.palm = Body("gripper", "palm", box_vertices(g.palm_depth, g.max_opening + 2 * g.finger_width),
                         0.0, 0, 0, 0)
        self.parts = [self.palm, *self.fingers]
        self.attached: int | None = None  # index of the grasped block
        self._attach_rel = (0.0, 0.0, 0.0)  # grasped block's pose in the gripper frame
        self._place_gripper()
        self.substep_count = 0
        self.events: list[ContactEvent] = []
        self.touched: set[tuple[str, str]] = set()  # every pair that touched at some point (sorted names)
        self._touching: set[tuple[str, str]] = set()
        self._open_events: dict[tuple[str, str], tuple[ContactEvent, int]] = {}

    # -- gripper kinematics -----------------------------------------------------------------------------------

    def _part_poses(self, gs: GripperState):
        g = self.gcfg
        c, s = math.cos(gs.yaw), math.sin(gs.yaw)
        off = gs.opening / 2 + g.finger_width / 2
        back = -(g.finger_length / 2 + g.palm_depth / 2)
        return [(gs.x + c * back, gs.y + s * back), (gs.x - s * off, gs.y + c * off),
                (gs.x + s * off, gs.y - c * off)]

    def _attached_pose(self) -> tuple[float, float, float]:
        gs, (rx, ry, ra) = self.gripper, self._attach_rel
        c, s = math.cos(gs.yaw), math.sin(gs.yaw)
        return gs.x + c * rx - s * ry, gs.y + s * rx + c * ry, gs.yaw + ra

    def _gripper_bodies(self):
        """(body, target pose) for the palm, the fingers and a grasped block, at the current gripper state."""
        out = [(part, (px, py, self.gripper.yaw)) for part, (px, py) in
               zip(self.parts, self._part_poses(self.gripper))]
        if self.attached is not None:
            out.append((self.blocks[self.attached], self._attached_pose()))
        return out

    def _set_gripper_velocities(self, dt: float) -> None:
        """Kinematic velocities that carry the gripper bodies from where they are to the current gripper state."""
        for body, (x, y, a) in self._gripper_bodies():
            body.vx, body.vy, body.w = (x - body.x) / dt, (y - body.y) / dt, wrap_angle(a - body.a) / dt

    def _place_gripper(self) -> None:
        """Move the gripper bodies to the current gripper state."""
        for body, (x, y, a) in self._gripper_bodies():
            body.x, body.y, body.a = x, y, a
            body.update()

    def workspace(self) -> tuple[float, float, float, float]:
        """Where the gripper origin may go: the whole gripper stays inside the image."""
        e = self.gcfg.half_extent + 0.002
        return (e, e, self.table.width - e, self.table.height - e)

    def _drive_gripper(self, target, close: bool) -> None:
        g, gs, dt = self.gcfg, self.gripper, self.dt
        x0, y0, x1, y1 = self.workspace()
        tx, ty = min(max(target[0], x0), x1), min(max(target[1], y0), y1)
        dx, dy = tx - gs.x, ty - gs.y
        d = math.hypot(dx, dy)
        if d > 0:
            k = min(1.0, g.max_speed * dt / d)
            gs.x, gs.y = gs.x + k * dx, gs.y + k * dy
        dyaw = wrap_angle(target[2] - gs.yaw)
        gs.yaw = wrap_angle(gs.yaw + max(-g.max_yaw_rate * dt, min(g.max_yaw_rate * dt, dyaw)))
        if not close and self.attached is not None:
            self._release()
        if self.attached is None:
            step = g.finger_speed * dt
            gs.opening = max(0.0, gs.opening - step) if close else min(g.max_opening, gs.opening + step)

    def _release(self) -> None:
        b = self.blocks[self.attached]
        spec = self.specs[self.attached]
        mass = self.cfg.areal_density * shape_area(spec.shape, spec.size)
        b.inv_m, b.inv_i = 1.0 / mass, 1.0 / shape_inertia(spec.shape, spec.size, mass)
        b.vx = b.vy = b.w = 0.0  # the fingers open slowly: the block is set down, not thrown
        self.attached = None

    def _try_grasp(self, contacts) -> None:
        """Attach a block that touches both fingers while they close."""
        touching = {}
        for A, B, _nx, _ny, pts in contacts:
            if A is not None and A.kind == "finger" and min(p[2] for p in pts) <= self.cfg.touch_tolerance:
                touching.setdefault(B, set()).add(id(A))
        for bi, b in enumerate(self.blocks):
            if len(touching.get(b, ())) == 2:
                gs = self.gripper
                c, s = math.cos(gs.yaw), math.sin(gs.yaw)
                dx, dy = b.x - gs.x, b.y - gs.y
                self._attach_rel = (c * dx + s * dy, -s * dx + c * dy, wrap_angle(b.a - gs.yaw))
                self.attached = bi
                b.inv_m = b.inv_i = 0.0
                b.vx = b.vy = b.w = 0.0
                # The closing fingers may have pressed into the block by up to the slop: open them just enough
                # that the grasp holds the block without overlapping it.
                depth = 0.0
                for f in self.fingers:
                    m = collide(f, b, 0.0)
                    if m is not None:
                        depth = max(depth, -min(p[2] for p in m[2]))
                if depth > 0.0:
                    gs.opening += 2.0 * depth
                    self._place_gripper()
                return

    # -- contacts ----------------------------------------------------------------------------------------------

    def _contacts(self, margin: float):
        """All contact manifolds as (A, B, nx, ny, pts); walls appear as A=None."""
        out = []
        blocks, bounds = self.blocks, self.table.bounds
        for i, A in enumerate(blocks):
            for B in blocks[i + 1:]:
                m = collide(A, B, margin)
                if m is not None:
                    out.append((A, B, *m))
            for part in self.parts:  # (the grasped block against the fingers too: both kinematic, the solver
                m = collide(part, A, margin)  # skips them, but the touch is real and gets recorded)
                if m is not None:
                    out.append((part, A, *m))
            for nx, ny, pts in wall_contacts(A, bounds, margin):
                out.append((None, A, nx, ny, pts))
        return out

    def _solve_velocities(self, contacts) -> list[float]:
        cfg, dt = self.cfg, self.dt
        rows = []  # per contact point: [A, B, nx, ny, rax, ray, rbx, rby, kn, kt, target, Pn, Pt, contact index]
        for ci, (A, B, nx, ny, pts) in enumerate(contacts):
            ima, iia = (A.inv_m, A.inv_i) if A is not None else (0.0, 0.0)
            imb, iib = B.inv_m, B.inv_i
            if ima + imb == 0.0:
                continue
            for px, py, sep in pts:
                rax, ray = (px - A.x, py - A.y) if A is not None else (0.0, 0.0)
                rbx, rby = px - B.x, py - B.y
                rna, rnb = rax * ny - ray * nx, rbx * ny - rby * nx
                kn = ima + imb + iia * rna * rna + iib * rnb * rnb
                rta, rtb = rax * nx + ray * ny, rbx * nx + rby * ny  # cross(r, t) with t = (-ny, nx)
                kt = ima + imb + iia * rta * rta + iib * rtb * rtb
                vn = self._rel_velocity(A, B, rax, ray, rbx, rby, nx, ny)
                if sep > 0:
                    target = -sep / dt  # speculative: may close the gap, no more
                elif vn < -cfg.restitution_threshold:
                    target = -cfg.restitution * vn
                else:
                    target = 0.0
                rows.append([A, B, nx, ny, rax, ray, rbx, rby, kn, kt, target, 0.0, 0.0, ci, sep])
        for _ in range(cfg.velocity_iterations):
            for row in rows:
                A, B, nx, ny, rax, ray, rbx, rby, kn, kt, target, pn, pt, _ci, sep = row
                vn = self._rel_velocity(A, B, rax, ray, rbx, rby, nx, ny)
                new_pn = max(0.0, pn + (target - vn) / kn)
                d = new_pn - pn
                row[11] = new_pn
                if d != 0.0:
                    self._apply(A, B, rax, ray, rbx, rby, nx * d, ny * d)
                if sep > cfg.touch_tolerance:  # friction only between surfaces that really touch
                    continue
                tx, ty = -ny, nx
                vt = self._rel_velocity(A, B, rax, ray, rbx, rby, tx, ty)
                limit = cfg.contact_friction * row[11]
                new_pt = max(-limit, min(limit, pt - vt / kt))
                d = new_pt - pt
                row[12] = new_pt
                if d != 0.0:
                    self._apply(A, B, rax, ray, rbx, rby, tx * d, ty * d)
        impulses = [0.0] * len(contacts)
        for row in rows:
            impulses[row[13]] += row[11]
        return impulses

    @staticmethod
    def _rel_velocity(A, B, rax, ray, rbx, rby, nx, ny) -> float:
        vbx, vby = B.vx - B.w * rby, B.vy + B.w * rbx
        if A is not None:
            vbx -= A.vx - A.w * ray
            vby -= A.vy + A.w * rax
        return vbx * nx + vby * ny

    @staticmethod
    def _apply(A, B, rax, ray, rbx, rby, jx, jy) -> None:
        B.vx += jx * B.inv_m
        B.vy += jy * B.inv_m
        B.w += B.inv_i * (rbx * jy - rby * jx)
        if A is not None:
            A.vx -= jx * A.inv_m
            A.vy -= jy * A.inv_m
            A.w -= A.inv_i * (rax * jy - ray * jx)

    def _remove_penetration(self, pairs) -> float:
        """Push overlapping bodies apart (linear only); returns the deepest overlap left."""
        cfg, bounds = self.cfg, self.table.bounds
        for _ in range(cfg.position_iterations):
            moved = False
            for A, B in pairs:
                ms = wall_contacts(B, bounds) if A is None else [collide(A, B, 0.0)]
                for m in ms:
                    if m is None:
                        continue
                    nx, ny, pts = m
                    depth = -min(p[2] for p in pts)
                    ima = A.inv_m if A is not None else 0.0
                    total = ima + B.inv_m
                    if depth <= cfg.slop or total == 0.0:
                        continue
                    c = 0.8 * (depth - cfg.slop) / total
                    B.x += nx * c * B.inv_m
                    B.y += ny * c * B.inv_m
                    B.update()
                    if ima:
                        A.x -= nx * c * ima
                        A.y -= ny * c * ima
                        A.update()
                    moved = True
            if not moved:
                break
        # Only the gripper drives anything, so overlap that survives the pass means a jam against it: a block (or a
        # chain of blocks) pinned between the gripper and the rim, or between both fingers.
        worst = 0.0
        for A, B in pairs:
            for m in (wall_contacts(B, bounds) if A is None else [collide(A, B, 0.0)]):
                if m is not None:
                    worst = max(worst, -min(p[2] for p in m[2]))
        return worst

    # -- stepping ----------------------------------------------------------------------------------------------

    def _table_friction(self) -> None:
        cfg, dt = self.cfg, self.dt
        dv = cfg.table_friction * cfg.gravity * dt
        for b in self.blocks:
            if b.inv_m == 0.0:
                continue
            sp = math.hypot(b.vx, b.vy)
            if sp <= dv:
                b.vx = b.vy = 0.0
            else:
                b.vx -= b.vx / sp * dv
                b.vy -= b.vy / sp * dv
            # Friction torque of a uniform footprint ~ (2/3) mu m g R against I ~ m R^2 / 2.
            dw = dv * 4.0 / (3.0 * b.bound)
            b.w = 0.0 if abs(b.w) <= dw else b.w - math.copysign(dw, b.w)

    def _snapshot(self):
        blocks = [(b.x, b.y, b.a, b.vx, b.vy, b.w, b.inv_m, b.inv_i) for b in self.blocks]
        gs = self.gripper
        return blocks, (gs.x, gs.y, gs.yaw, gs.opening), self.attached, self._attach_rel

    def _restore(self, snap) -> None:
        blocks, (gx, gy, gyaw, gop), self.attached, self._attach_rel = snap
        for b, (b.x, b.y, b.a, b.vx, b.vy, b.w, b.inv_m, b.inv_i) in zip(self.blocks, blocks):
            b.update()
        self.gripper = GripperState(gx, gy, gyaw, gop)
        self._place_gripper()

    def _advance(self, target, close: bool, move_gripper: bool):
        """One substep; returns (contacts, impulses, deepest overlap left against the gripper)."""
        cfg, dt = self.cfg, self.dt
        self._table_friction()
        # Kinematic bodies move like dynamic ones: velocities first, contacts and impulses at the current poses,
        # then everything integrates. (Moving the gripper before the solve would turn every push into an impact.)
        if move_gripper:
            self._drive_gripper(target, close)
        self._set_gripper_velocities(dt)
        contacts = self._contacts(cfg.margin)
        impulses = self._solve_velocities(contacts)
        for b in self.blocks:
            if b.inv_m > 0.0:
                b.x += b.vx * dt
                b.y += b.vy * dt
                b.a = wrap_angle(b.a + b.w * dt)
                b.update()
        self._place_gripper()
        worst = self._remove_penetration([(A, B) for A, B, *_ in contacts])
        return contacts, impulses, worst

    def _substep(self, target, close: bool, frame: int, sub: int) -> None:
        snap = self._snapshot()
        contacts, impulses, worst = self._advance(target, close, True)
        if close and self.attached is None:
            # Fingers squeezing a block from both sides is a grasp, not a jam: latch it before judging.
            self._try_grasp(self._contacts(self.cfg.touch_tolerance))
            if self.attached is not None:
                worst = self.max_penetration()
        if worst > self.cfg.blocked_tolerance:
            # A block is jammed between the gripper and something that cannot give way (the rim, the grasped
            # block): redo this step with the gripper holding still, as a real arm would stall.
            self._restore(snap)
            contacts, impulses, worst = self._advance(target, close, False)
        touching = self._contacts(self.cfg.touch_tolerance)
        if close and self.attached is None:
            self._try_grasp(touching)
        self._record_touches(contacts, impulses, touching, frame, sub)
        self.substep_count += 1

    @staticmethod
    def _pair(A, B) -> tuple[str, str]:
        return tuple(sorted(("rim" if A is None else A.name, B.name)))

    def _record_touches(self, solved, impulses, contacts, frame: int, sub: int) -> None:
        """Log the start of every touch, with the normal impulse the solver applied to that pair."""
        impulse_by_pair: dict[tuple[str, str], float] = {}
        for (A, B, *_), imp in zip(solved, impulses):
            key = self._pair(A, B)
            impulse_by_pair[key] = impulse_by_pair.get(key, 0.0) + imp
        now: dict[tuple[str, str], tuple[float, float]] = {}
        for A, B, _nx, _ny, pts in contacts:
            if min(p[2] for p in pts) <= self.cfg.touch_tolerance:
                now[self._pair(A, B)] = (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))
        t = (frame + (sub + 1) / self.cfg.substeps) / self.fps
        for key, (x, y) in sorted(now.items()):
            imp = impulse_by_pair.get(key, 0.0)
            if key not in self._touching:
                ev = ContactEvent(t, frame + 1, key[0], key[1], imp, x, y)
                self.events.append(ev)
                self._open_events[key] = (ev, 2)  # an impact spreads over a couple of substeps
            elif key in self._open_events:
                ev, left = self._open_events[key]
                ev.impulse = max(ev.impulse, imp)
                if left <= 1:
                    del self._open_events[key]
                else:
                    self._open_events[key] = (ev, left - 1)
        for key in [k for k in self._open_events if k not in now]:
            del self._open_events[key]
        self._touching = set(now)
        self.touched |= self._touching

    def step(self, target: tuple[float, float, float], close: bool, frame: int) -> None:
        """Advance one video frame: the gripper heads for target (x, y, yaw); close=True closes the fingers."""
        for sub in range(self.cfg.substeps):
            self._substep(target, close, frame, sub)

    # -- state ------------------------------------------------------------------------------------------------

    def block_poses(self) -> list[tuple[float, float, float]]:
        return [(b.x, b.y, b.a) for b in self.blocks]

    def max_penetration(self) -> float:
        """Deepest overlap between any two bodies (blocks, gripper parts, rim); 0 when nothing overlaps."""
        worst = 0.0
        for A, B, _nx, _ny, pts in self._contacts(0.0):
            worst = max(worst, -min(p[2] for p in pts))
        return worst


def _overlap(A: Body, B: Body, clearance: float) -> bool:
    m = collide(A, B, clearance)
    return m is not None and min(p[2] for p in m[2]) < clearance


def gripper_overlaps(world: World, gs: GripperState, clearance: float = 0.0) -> bool:
    """Would a gripper at state gs come closer than clearance to a block? Used to sample start poses."""
    probes = [Body("probe", "part", p.local, 0.0, x, y, gs.yaw)
              for p, (x, y) in zip(world.parts, world._part_poses(gs))]
    return any(_overlap(p, b, clearance) for p in probes for b in world.blocks)


def blocks_overlap(specs: list[BlockSpec], poses, clearance: float = 0.0) -> bool:
    """Do any two blocks at these poses come closer than clearance?"""
    bodies = [Body(s.color, "block", shape_vertices(s.shape, s.size), s.size, x, y, a)
              for s, (x, y, a) in zip(specs, poses)]
    return any(_overlap(A, B, clearance) for i, A in enumerate(bodies) for B in bodies[i + 1:])
