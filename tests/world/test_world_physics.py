import math

import numpy as np
import pytest

from cosmos3.world.collision import Body, collide
from cosmos3.world.episode import simulate_tabletop
from cosmos3.world.geometry import BLOCK_SIZES, Table, box_vertices, shape_vertices, transform
from cosmos3.world.physics import BlockSpec, GripperState, World

SEEDS = range(24)


@pytest.fixture(scope="module")
def episodes():
    return [simulate_tabletop(s) for s in SEEDS]


def square_world(x=0.3, y=0.24, angle=0.0, gripper=(0.15, 0.24, 0.0, 0.1)):
    spec = BlockSpec("red", "square", BLOCK_SIZES["square"])
    return World([spec], [(x, y, angle)], GripperState(*gripper))


def test_same_seed_same_episode_and_different_seed_differs():
    a, b, c = simulate_tabletop(5), simulate_tabletop(5), simulate_tabletop(6)
    assert np.array_equal(a.block_poses, b.block_poses) and np.array_equal(a.gripper, b.gripper)
    assert a.events == b.events and a.phases == b.phases and a.instruction == b.instruction
    assert not (a.block_poses.shape == c.block_poses.shape and np.array_equal(a.block_poses, c.block_poses))


def test_no_interpenetration(episodes):
    # Blocks, gripper parts and rim never overlap by more than the solver's slop (0.2 mm) plus a margin.
    worst = max(ep.max_penetration.max() for ep in episodes)
    assert worst < 5e-4, f"deepest overlap {worst * 1000:.3f} mm"


def test_blocks_stay_on_the_table(episodes):
    x0, y0, x1, y1 = Table().bounds
    for ep in episodes:
        for i, b in enumerate(ep.blocks):
            for x, y, a in ep.block_poses[:, i]:
                if b.shape == "circle":
                    pts = [(x - b.size, y - b.size), (x + b.size, y + b.size)]
                else:
                    pts = transform(shape_vertices(b.shape, b.size), x, y, a)
                for px, py in pts:
                    assert x0 - 5e-4 <= px <= x1 + 5e-4 and y0 - 5e-4 <= py <= y1 + 5e-4


def test_untouched_blocks_never_move_and_every_moving_block_was_touched(episodes):
    checked = 0
    for ep in episodes:
        for i, b in enumerate(ep.blocks):
            touched = any(b.color in pair for pair in ep.touched)
            still = bool((ep.block_poses[:, i] == ep.block_poses[0, i]).all())
            assert touched or still, f"seed {ep.seed}: the {b.name} moved without a contact"
            checked += not touched
    assert checked > 5  # the property was exercised


def test_resting_blocks_stay_at_rest_and_pushed_blocks_come_to_rest():
    w = square_world()
    for f in range(10):  # gripper away from the block: nothing happens at all
        w.step((0.12, 0.3, 0.5), False, f)
    assert w.block_poses() == [(0.3, 0.24, 0.0)] and not w.events
    for f in range(10, 22):  # push to the right, then stop
        w.step((0.36, 0.24, 0.0), False, f)
    pushed = w.block_poses()[0]
    assert pushed[0] > 0.33 and abs(pushed[1] - 0.24) < 0.01
    for f in range(22, 40):  # gripper holds still: friction stops the block, and then it stays exactly still
        w.step((w.gripper.x, w.gripper.y, w.gripper.yaw), False, f)
    b = w.blocks[0]
    assert b.vx == b.vy == b.w == 0.0
    rest = w.block_poses()
    for f in range(40, 50):
        w.step((w.gripper.x, w.gripper.y, w.gripper.yaw), False, f)
    assert w.block_poses() == rest


def test_push_records_an_impact_with_impulse():
    w = square_world()
    for f in range(20):
        w.step((0.4, 0.24, 0.0), False, f)
    first = w.events[0]
    assert (first.a, first.b) == ("gripper", "red") and first.impulse > 1e-3
    # Contact happens when the palm face (finger_length / 2 behind the gripper origin) reaches the block's back.
    t_expected = (0.3 - BLOCK_SIZES["square"] / 2 + w.gcfg.finger_length / 2 - 0.15) / w.gcfg.max_speed
    assert abs(first.time - t_expected) < 2.0 / w.fps


def test_grasp_carries_block_rigidly_and_releases_it():
    # Gripper around the square with open fingers, facing +x.
    w = square_world(x=0.3, y=0.24, gripper=(0.3, 0.24, 0.0, 0.1))
    f = 0
    while w.attached is None and f < 12:
        w.step((0.3, 0.24, 0.0), True, f)
        f += 1
    assert w.attached == 0, "closing fingers on a block grasps it"
    rel = np.array(w._attach_rel)
    for g in range(f, f + 10):  # carry it up and turn
        w.step((0.3, 0.14, 0.5), True, g)
    gx, gy, gyaw = w.gripper.x, w.gripper.y, w.gripper.yaw
    bx, by, ba = w.block_poses()[0]
    c, s = math.cos(gyaw), math.sin(gyaw)
    assert np.allclose([c * (bx - gx) + s * (by - gy), -s * (bx - gx) + c * (by - gy)], rel[:2], atol=1e-9)
    assert by < 0.2, "the block came along"
    for g in range(f + 10, f + 20):
        w.step((gx, gy, gyaw), False, g)
    assert w.attached is None and w.gripper.opening == pytest.approx(w.gcfg.max_opening)
    assert w.block_poses()[0] == pytest.approx((bx, by, ba), abs=1e-6)  # set down, not thrown
    assert w.max_penetration() < 5e-4


def test_block_jammed_against_rim_stops_the_gripper():
    # Gripper turned sideways (fingers pointing down): its left finger sweeps the square into the left rim.
    x0, side = Table().bounds[0], BLOCK_SIZES["square"]
    w = square_world(x=x0 + 0.06, y=0.24, gripper=(0.25, 0.24, math.pi / 2, 0.1))
    for f in range(40):  # aim far beyond the rim
        w.step((0.0, 0.24, math.pi / 2), False, f)
        assert w.max_penetration() < 5e-4
    assert w.block_poses()[0][0] == pytest.approx(x0 + side / 2, abs=1e-3)
    outer = w.gripper.opening / 2 + w.gcfg.finger_width  # gripper origin to the finger's outer face
    assert w.gripper.x == pytest.approx(x0 + side + outer, abs=1.5e-3), "the gripper stalls against the block"
    assert ("red", "rim") in w.touched


def test_collide_normals_and_depths():
    sq = box_vertices(0.1, 0.1)
    a = Body("a", "block", sq, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
    b = Body("b", "block", sq, 0.0, 0.09, 0.0, 0.0, 1.0, 1.0)  # overlaps a by 1 cm along +x
    nx, ny, pts = collide(a, b)
    assert (nx, ny) == pytest.approx((1.0, 0.0)) and len(pts) == 2
    assert min(p[2] for p in pts) == pytest.approx(-0.01)
    c = Body("c", "block", None, 0.05, 0.0, 0.14, 0.0, 1.0, 1.0)  # circle 4 cm below the square's bottom face
    assert collide(a, c) is None and collide(a, c, margin=0.05) is not None
    d = Body("d", "block", None, 0.05, 0.0, 0.09, 0.0, 1.0, 1.0)  # circle overlapping the bottom face by 1 cm
    nx, ny, pts = collide(a, d)
    assert (nx, ny) == pytest.approx((0.0, 1.0)) and pts[0][2] == pytest.approx(-0.01)
    nx, ny, pts = collide(d, a)  # swapped: normal flips
    assert (nx, ny) == pytest.approx((0.0, -1.0))
    e = Body("e", "block", None, 0.03, 0.05, 0.09, 0.0, 1.0, 1.0)  # circles 5 cm apart, radii 5 + 3 cm
    nx, ny, pts = collide(d, e)
    assert (nx, ny) == pytest.approx((1.0, 0.0)) and pts[0][2] == pytest.approx(-0.03)
