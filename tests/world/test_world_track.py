import numpy as np
import pytest

from cosmos3.world.episode import simulate_tabletop
from cosmos3.world.geometry import BLOCK_COLORS, shape_area
from cosmos3.world.render import render_tabletop
from cosmos3.world.track import Truth, score_tabletop, track_blocks, track_gripper
from cosmos3.world.video import read_frames, write_mp4
from cosmos3.world.violations import make_violation

SEEDS = (0, 2, 3, 7, 9, 13)


@pytest.fixture(scope="module")
def rendered():
    out = []
    for s in SEEDS:
        ep = simulate_tabletop(s)
        out.append((ep, render_tabletop(ep)))
    return out


def test_render_draws_blocks_with_their_color_and_area(rendered):
    ep, frames = rendered[0]
    ppm = ep.table.px_per_m
    for i, b in enumerate(ep.blocks):
        x, y, _ = ep.block_poses[0, i]
        assert tuple(frames[0, int(y * ppm), int(x * ppm)]) == BLOCK_COLORS[b.color]  # solid at its center
        exact = np.all(frames[0] == np.array(BLOCK_COLORS[b.color], np.uint8), -1).sum()
        area = shape_area(b.shape, b.size) * ppm * ppm
        assert 0.85 * area < exact <= area  # solid pixels: the area minus an anti-aliased rim


def test_trackers_recover_true_positions_within_2px(rendered):
    worst_block = worst_grip = worst_yaw = worst_open = 0.0
    for ep, frames in rendered:
        truth = Truth.from_episode(ep)
        tracks = track_blocks(frames, truth.colors)
        for i, color in enumerate(truth.colors):
            worst_block = max(worst_block, np.hypot(*(tracks[color] - truth.blocks_px[:, i]).T).max())
        g = track_gripper(frames)
        worst_grip = max(worst_grip, np.hypot(*(g["position"] - truth.gripper_px).T).max())
        yaw_err = np.abs((g["yaw"] - ep.gripper[:, 2] + np.pi) % (2 * np.pi) - np.pi)
        worst_yaw = max(worst_yaw, yaw_err.max())
        worst_open = max(worst_open, np.abs(g["opening"] - ep.gripper[:, 3] * ep.table.px_per_m).max())
    assert worst_block < 2.0 and worst_grip < 2.0
    assert worst_block < 0.5  # in practice a fraction of a pixel
    assert worst_yaw < 0.05 and worst_open < 2.5


def test_trackers_on_decoded_mp4_within_2px(rendered, tmp_path):
    ep, frames = rendered[1]
    path = write_mp4(tmp_path / "clip.mp4", frames, ep.fps)
    decoded = read_frames(path)
    assert decoded.shape == frames.shape
    score = score_tabletop(decoded, Truth.from_episode(ep))
    for color, b in score["blocks"].items():
        assert b["max_error_px"] < 2.0, (color, b)
    assert score["gripper"]["max_error_px"] < 2.0


def test_score_matches_truth_on_directions_and_contact_timing(rendered):
    onsets = 0
    for ep, frames in rendered:
        score = score_tabletop(frames, Truth.from_episode(ep))
        for color, b in score["blocks"].items():
            assert b["direction_agrees"], (ep.seed, color, b)
            if b["moved_true"]:
                # A block starts to move in the frame that first shows its first contact (or the next one).
                assert b["onset_error_frames"] is not None and b["onset_error_frames"] <= 1, (ep.seed, color, b)
                onsets += 1
            else:
                assert b["motion_onset_frame_tracked"] is None or b["first_contact_frame_true"] is not None
    assert onsets >= 3
    assert score["summary"]["direction_accuracy"] == 1.0


def test_score_flags_a_violated_clip():
    ep = simulate_tabletop(2)
    rng = np.random.default_rng(0)
    seen = set()
    while seen != {"vanish", "teleport"}:
        v = make_violation(ep, rng)
        if v.kind in seen or v.kind == "moves_by_itself":
            continue
        seen.add(v.kind)
        frames = render_tabletop(ep, v.block_poses, v.visible)
        b = score_tabletop(frames, Truth.from_episode(ep))["blocks"][v.block]
        if v.kind == "vanish":
            assert b["visible_frames"] == v.frame
        else:
            assert b["max_error_px"] > 10  # the video disagrees with physics by centimeters
