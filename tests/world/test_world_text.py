import math

import numpy as np
import pytest

from cosmos3.world.camera import render_camera, simulate_camera
from cosmos3.world.episode import simulate_tabletop
from cosmos3.actions import matrix_to_rot6d, relative_to_absolute
from cosmos3.world.geometry import direction_word, rot_z, toward
from cosmos3.world.text import (camera_captions, camera_questions, next_action_question, tabletop_captions,
                                tabletop_questions)
from cosmos3.world.violations import make_violation

SEEDS = range(16)


@pytest.fixture(scope="module")
def episodes():
    return [simulate_tabletop(s) for s in SEEDS]


def displacement(ep, i):
    return ep.block_poses[-1, i, :2] - ep.block_poses[0, i, :2]


def block_by_name(ep, text):
    found = [i for i, b in enumerate(ep.blocks) if b.name in text]
    assert len(found) >= 1, text
    return found


def test_answers_agree_with_the_simulator(episodes):
    kinds = set()
    for ep in episodes:
        rng = np.random.default_rng(ep.seed)
        dist = [float(np.hypot(*displacement(ep, i))) for i in range(len(ep.blocks))]
        for qa in tabletop_questions(ep, rng):
            kinds.add(qa.kind)
            q, a = qa.question, qa.answer
            if qa.kind == "which_moved":
                if max(dist) > 0.005:
                    assert ep.blocks[int(np.argmax(dist))].name in a
                else:
                    assert a == "None of the blocks moved."
            elif qa.kind == "count":
                assert a == str(len(ep.blocks))
            elif qa.kind == "count_moved":
                assert a == str(sum(d > 0.005 for d in dist))
            elif qa.kind == "direction":
                (i,) = block_by_name(ep, q)
                d = displacement(ep, i)
                expect = toward(direction_word(*d)) if dist[i] > 0.005 else "it did not move"
                assert a.lower().rstrip(".") == expect
            elif qa.kind == "touch":
                names = [n for n in ["gripper"] + [b.color for b in ep.blocks] if n in q]
                assert len(names) == 2
                assert (a == "Yes.") == (tuple(sorted(names)) in ep.touched)
            elif qa.kind == "grasp":
                held = [ep.blocks[i].name for i in range(len(ep.blocks)) if (ep.grasped == i).any()]
                assert a == (f"Yes, the {held[0]}." if held else "No.")
            elif qa.kind == "success":
                assert (a == "Yes.") == ep.success
            elif qa.kind == "color":
                shape = q.split("the ")[1].rstrip("?")
                assert a.lower().rstrip(".") == next(b.color for b in ep.blocks if b.shape == shape)
            elif qa.kind == "shape":
                color = q.split("the ")[1].split(" block")[0]
                assert a.lower().rstrip(".") == "a " + next(b.shape for b in ep.blocks if b.color == color)
    assert kinds >= {"which_moved", "count", "count_moved", "direction", "touch", "grasp", "success"}


def test_captions_agree_with_the_simulator(episodes):
    for ep in episodes:
        short, long = tabletop_captions(ep)
        for b in ep.blocks:
            assert b.name in long  # every block is described
        for i, b in enumerate(ep.blocks):
            d = displacement(ep, i)
            if np.hypot(*d) > 0.01:
                assert f"The {b.name} ends up" in long and toward(direction_word(*d)) in long
            elif not any(b.color in p for p in ep.touched):
                assert f"The {b.name} stays where it is." in long
        if (ep.grasped >= 0).any():
            held = ep.blocks[int(ep.grasped[ep.grasped >= 0][0])]
            assert held.name in short and f"the gripper closes on the {held.name}".capitalize() in long
        for pair in ep.touched:  # every contact pair is told
            if "gripper" in pair:
                other = next(b.name for b in ep.blocks if b.color in pair)
                assert f"The gripper touches the {other}." in long


def test_next_action_is_the_phase_that_follows_the_prefix(episodes):
    for ep in episodes:
        cut = next_action_question(ep, np.random.default_rng(0))
        if cut is None:
            continue
        n, qa = cut
        assert qa.answer.lower().rstrip(".") == ep.phases[n - 1] == ep.phases[n]
        assert qa.clip == "prefix" and ep.instruction in qa.question


def test_violations_break_physics_on_purpose(episodes):
    seen = set()
    for ep in episodes:
        v = make_violation(ep, np.random.default_rng(ep.seed))
        seen.add(v.kind)
        i = [b.color for b in ep.blocks].index(v.block)
        assert v.block in v.description.lower() or ep.blocks[i].name in v.description
        assert np.array_equal(v.block_poses[:v.frame], ep.block_poses[:v.frame])  # normal until it happens
        if v.kind == "vanish":
            assert not v.visible[v.frame:, i].any() and v.visible[:v.frame].all()
        else:
            jump = np.hypot(*(v.block_poses[:, i, :2] - ep.block_poses[:, i, :2]).T)
            assert jump[-1] > 0.01
        if v.kind == "moves_by_itself":  # the moving block was never touched in the real episode
            assert not any(v.block in pair for pair in ep.touched)
    assert seen == {"teleport", "vanish", "moves_by_itself"}


def test_tabletop_actions_integrate_back_to_the_trajectory(episodes):
    for ep in episodes[:4]:
        a, s = ep.actions(), ep.state()
        assert a.shape == (ep.num_frames, 10) and s.shape == (ep.num_frames, 10)
        assert np.allclose(a[-1, :9], [0, 0, 0, 1, 0, 0, 0, 1, 0])
        assert np.all((a[:, 9] >= 0) & (a[:, 9] <= 1))
        p0 = np.array([*ep.gripper[0, :2], 0.0])
        start = np.eye(4)
        start[:3, :3], start[:3, 3] = rot_z(ep.gripper[0, 2]), p0
        poses = relative_to_absolute(a[:-1], start)
        assert np.allclose(poses[:, :2, 3], ep.gripper[:, :2], atol=1e-9)
        assert np.allclose(matrix_to_rot6d(poses[:, :3, :3]), s[:, 3:9], atol=1e-9)
        assert np.allclose(a[:-1, 9], s[1:, 9])  # the gripper value reached at t+1


def test_camera_motion_text_and_actions():
    for seed in range(6):
        ep = simulate_camera(seed)
        a = ep.actions()
        assert a.shape == (ep.num_frames, 9)
        assert np.allclose(a[:, 3:9], [1, 0, 0, 0, 1, 0])  # the camera never turns
        # Translation is in the camera frame: x, y pan; z forward = toward the scene = zoom in (height drops).
        assert np.allclose(a[:-1, 0:2], np.diff(ep.poses[:, :2], axis=0))
        assert np.allclose(a[:-1, 2], -np.diff(ep.poses[:, 2]))
        pan, zoom = (qa.answer for qa in camera_questions(ep))
        d = ep.poses[-1] - ep.poses[0]
        if pan != "It does not pan.":
            assert pan.lower().rstrip(".") == toward(direction_word(d[0], d[1]))
            assert pan.lower().rstrip(".") in camera_captions(ep)[0]
        if zoom == "It zooms in.":
            assert d[2] < 0 and a[:-1, 2].sum() > 0
        elif zoom == "It zooms out.":
            assert d[2] > 0 and a[:-1, 2].sum() < 0
        if ep.motion in ("pan", "pan_zoom"):
            assert pan != "It does not pan."
        if ep.motion in ("zoom", "pan_zoom"):
            assert zoom != "Neither."


def test_camera_frames_shift_with_the_pan():
    ep = next(e for e in (simulate_camera(s) for s in range(20)) if e.motion == "pan")
    frames = render_camera(ep).astype(np.float32)
    assert frames.shape == (ep.num_frames, 192, 320, 3)
    # Between two frames the image moves opposite to the camera: by (dX, dY) * f / h pixels.
    t = ep.num_frames // 2
    dx, dy = (ep.poses[t + 1, :2] - ep.poses[t, :2]) * ep.cfg.focal_px / ep.poses[t, 2]
    sx, sy = int(round(dx)), int(round(dy))
    a, b = frames[t], frames[t + 1]
    m = 40
    shifted = b[m - sy:192 - m - sy, m - sx:320 - m - sx]
    unshifted = b[m:192 - m, m:320 - m]
    base = a[m:192 - m, m:320 - m]
    assert np.abs(shifted - base).mean() < 0.5 * np.abs(unshifted - base).mean()
    assert math.hypot(dx, dy) > 1.0


def test_actions_agree_with_the_package_pose_convention(episodes):
    # cosmos3.actions implements the release's relative-pose convention for every surface; the world must match it.
    from cosmos3.actions import absolute_to_relative, get_embodiment

    from cosmos3.world.geometry import CAMERA_DOMAIN, GRIPPER_DOMAIN

    for name, domain_id, dim in (GRIPPER_DOMAIN, CAMERA_DOMAIN):
        e = get_embodiment(name)
        assert (e.domain_id, e.raw_dim) == (domain_id, dim)
    for ep in [episodes[0], simulate_camera(1)]:
        s = ep.state()
        poses = np.tile(np.eye(4), (ep.num_frames, 1, 1))
        poses[:, :3, 3] = s[:, :3]
        poses[:, :3, :3] = np.stack([s[:, 3:6], s[:, 6:9], np.cross(s[:, 3:6], s[:, 6:9])], -1)
        assert np.allclose(ep.actions()[:-1, :9], absolute_to_relative(poses), atol=1e-12)
