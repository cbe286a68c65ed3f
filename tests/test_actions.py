"""Actions against DESIGN 2.8, the release's action files and the diffusers reference tables.

Expected values are transcribed from the spec or the reference, or derived by hand; none is copied from the
code under test.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos3 import actions as A
from cosmos3.actions import ActionError, ActionStats

from fixture_paths import FIXTURES as _ROOT
from seeding import fresh_seed

FIXTURES = _ROOT / "actions"

# DESIGN 2.8: domain_name -> (id, dim).
DESIGN_TABLE = {
    "av": (1, 9),
    "camera_pose": (2, 9),
    "hand_pose": (3, 57),
    "pusht": (4, 2),
    "libero": (5, 10),
    "umi": (6, 10),
    "bridge_orig_lerobot": (7, 10),
    "droid_lerobot": (8, 10),
    "embodiment_b": (9, 30),
    "robomind-franka-dual": (12, 20),
    "robomind-ur": (13, 10),
    "agibotworld": (15, 29),
    "xdof_yam": (16, 20),
    "robotwin": (17, 14),
    "fractal": (20, 10),
    "drawanything": (21, 3),
    "behavior1k_lerobot": (22, 23),
    "maniparena": (23, 20),
}

# DESIGN 2.8: "Chunk sizes used by the release: DROID 16 steps at 15 fps, UMI 16 at 20 fps, AV 60 at 10 fps."
RELEASE_CHUNKS = {"droid_lerobot": (16, 15), "umi": (16, 20), "av": (60, 10)}


def _reference_tables() -> dict[str, object]:
    """The literal tables of the diffusers reference pipeline, read from its source without importing diffusers."""
    spec = importlib.util.find_spec("diffusers")
    assert spec is not None and spec.origin is not None
    src = Path(spec.origin).parent / "pipelines" / "cosmos" / "pipeline_cosmos3_omni.py"
    tree = ast.parse(src.read_text(encoding="utf-8"))
    wanted = {"_ACTION_VIEWPOINT_TEMPLATES", "_EMBODIMENT_TO_DOMAIN_ID", "_EMBODIMENT_TO_RAW_ACTION_DIM"}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in wanted:
                out[node.targets[0].id] = ast.literal_eval(node.value)
    assert set(out) == wanted
    return out


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform-ish random proper rotations via QR of Gaussian matrices (independent of the code under test)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    flip = np.linalg.det(q) < 0
    q[flip, :, 0] *= -1
    return q


def _assert_rotation(R: np.ndarray, atol: float = 1e-9) -> None:
    eye = np.broadcast_to(np.eye(3), R.shape)
    np.testing.assert_allclose(np.swapaxes(R, -1, -2) @ R, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=atol)


@pytest.fixture
def nrng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


def test_registry_has_exactly_the_design_rows():
    assert set(A.EMBODIMENTS) == set(DESIGN_TABLE)
    assert A.embodiment_names() == sorted(DESIGN_TABLE, key=lambda n: DESIGN_TABLE[n][0])
    assert A.ACTION_DIM == 64
    assert A.NO_ACTION_DOMAIN_ID == 0


@pytest.mark.parametrize("name", sorted(DESIGN_TABLE))
def test_registry_row_matches_design(name):
    domain_id, dim = DESIGN_TABLE[name]
    e = A.get_embodiment(name)
    assert (e.name, e.domain_id, e.raw_dim) == (name, domain_id, dim)
    assert A.get_embodiment(domain_id) is e
    assert A.get_embodiment(name.upper()) is e
    assert A.get_embodiment(f"  {name} ") is e
    assert A.get_embodiment(e) is e
    assert isinstance(e.chunk_size, int) and e.chunk_size >= 1
    assert e.fps > 0
    assert e.num_frames == e.chunk_size + 1
    assert e.viewpoint_sentence == A.VIEWPOINT_SENTENCES[e.viewpoint]
    assert e.raw_dim <= A.ACTION_DIM
    with pytest.raises(AttributeError):
        e.raw_dim = 1  # frozen


@pytest.mark.parametrize("name", sorted(RELEASE_CHUNKS))
def test_release_chunk_sizes_and_fps(name):
    e = A.get_embodiment(name)
    assert (e.chunk_size, e.fps) == RELEASE_CHUNKS[name]


def test_registry_agrees_with_the_reference_tables():
    ref = _reference_tables()
    ref_ids, ref_dims, templates = (
        ref["_EMBODIMENT_TO_DOMAIN_ID"],
        ref["_EMBODIMENT_TO_RAW_ACTION_DIM"],
        ref["_ACTION_VIEWPOINT_TEMPLATES"],
    )
    # Every reference name that is not "no_action" resolves to an embodiment with the same id and width.
    for name, domain_id in ref_ids.items():
        if name == "no_action":
            assert domain_id == A.NO_ACTION_DOMAIN_ID
            continue
        e = A.get_embodiment(name)
        assert e.domain_id == domain_id, name
        if name in ref_dims:
            assert e.raw_dim == ref_dims[name], name
    # The viewpoint sentences the model was trained with are byte-identical to the reference's.
    for label, sentence in templates.items():
        assert A.VIEWPOINT_SENTENCES[label] == sentence
    assert set(templates) == set(A.REFERENCE_VIEWPOINTS)


def test_viewpoints_of_release_embodiments():
    # The cookbooks run AV, camera pose and UMI with view_point="ego_view"; DROID tiles three cameras.
    for name in ("av", "camera_pose", "umi"):
        assert A.get_embodiment(name).viewpoint == "ego_view"
    assert A.get_embodiment("droid_lerobot").viewpoint == "concat_view"
    assert A.get_embodiment("av").viewpoint_sentence == (
        "This video is captured from a first-person perspective looking at the scene."
    )


@pytest.mark.parametrize("bad", ["droidd", "", "no_action", 0, 10, 99, -1, True, 3.0, None])
def test_unknown_embodiment_is_refused_with_the_valid_names(bad):
    with pytest.raises(ActionError) as info:  # an ActionError is a ValueError
        A.get_embodiment(bad)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    if isinstance(bad, int) and not isinstance(bad, bool):
        assert f"id {bad}" in msg and "8" in msg
    else:
        assert "valid names" in msg and "droid_lerobot" in msg and "maniparena" in msg


def test_aliases_resolve_to_same_domain():
    assert A.get_embodiment("galbot").name == "embodiment_b"
    assert A.get_embodiment("robomind-franka").domain_id == 8
    assert A.get_embodiment("agibot_gear_gripper_ext").raw_dim == 29


# ---------------------------------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------------------------------


def test_pad_and_unpad_numpy_and_torch(nrng):
    a = nrng.standard_normal((5, 10)).astype(np.float32)
    p = A.pad_actions(a)
    assert p.shape == (5, 64) and p.dtype == np.float32
    assert np.array_equal(p[:, :10], a) and not p[:, 10:].any()
    assert np.array_equal(A.unpad_actions(p, 10), a)
    t = torch.from_numpy(a)[None]
    pt = A.pad_actions(t, 16)
    assert tuple(pt.shape) == (1, 5, 16) and torch.equal(pt[..., :10], t) and not pt[..., 10:].any()
    assert torch.equal(A.unpad_actions(pt, 10), t)
    with pytest.raises(ValueError, match="65"):
        A.pad_actions(np.zeros((2, 65)))
    with pytest.raises(ValueError):
        A.unpad_actions(p, 65)
    with pytest.raises(ValueError):
        A.unpad_actions(p, 0)


# ---------------------------------------------------------------------------------------------------------------
# The release's action files
# ---------------------------------------------------------------------------------------------------------------

AV_FILES = ["av_traj_forward.json", "av_traj_left.json", "av_traj_right.json"]


@pytest.mark.parametrize(
    "fname,embodiment,shape", [(f, "av", (60, 9)) for f in AV_FILES] + [("umi.json", "umi", (32, 10))]
)
def test_release_files_load(fname, embodiment, shape):
    path = FIXTURES / fname
    a = A.load_actions(path, embodiment)
    assert a.shape == shape and a.dtype == np.float32
    raw = json.loads(path.read_text())
    assert np.array_equal(a, np.asarray(raw, dtype=np.float64).astype(np.float32))
    assert np.array_equal(A.load_actions(str(path), A.get_embodiment(embodiment).domain_id), a)
    # Their rot6d blocks are proper rotations once orthonormalized.
    R = A.rot6d_to_matrix(a[:, 3:9])
    assert R.shape == (shape[0], 3, 3)
    _assert_rotation(R)
    # Gram-Schmidt keeps the direction of column 0 and the plane of columns 0-1.
    c0 = a[:, 3:6].astype(np.float64)
    np.testing.assert_allclose(R[:, :, 0], c0 / np.linalg.norm(c0, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(np.einsum("ni,ni->n", R[:, :, 2], a[:, 6:9]), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "fname,wrong,expected,got",
    [("av_traj_left.json", "umi", 10, 9), ("umi.json", "av", 9, 10), ("umi.json", "hand_pose", 57, 10)],
)
def test_release_files_refused_under_wrong_embodiment(fname, wrong, expected, got):
    with pytest.raises(ValueError) as info:
        A.load_actions(FIXTURES / fname, wrong)
    msg = str(info.value)
    assert fname in msg and wrong in msg
    assert f"expected {expected}" in msg and f"got {got}" in msg


def test_av_rot6d_is_nearly_orthonormal_already():
    # The AV files are exact rotations stored in float32, so orthonormalizing barely moves them.
    for fname in AV_FILES:
        a = A.load_actions(FIXTURES / fname, "av").astype(np.float64)
        np.testing.assert_allclose(A.matrix_to_rot6d(A.rot6d_to_matrix(a[:, 3:9])), a[:, 3:9], atol=1e-6)


def test_av_trajectories_turn_the_way_their_names_say():
    # Camera axes: x right, y down, z forward. Chaining the files must drive forward, and the "left" / "right"
    # files must end up on that side with the heading turned that way. Flipping the rot6d layout (rows instead of
    # columns) or the step direction would mirror the turns.
    ends = {}
    for fname in AV_FILES:
        a = A.load_actions(FIXTURES / fname, "av")
        P = A.relative_to_absolute(a, translation_scale=A.AV_TRANSLATION_SCALE)
        assert P.shape == (61, 4, 4)
        _assert_rotation(P[:, :3, :3], atol=1e-6)
        x, z = P[-1, 0, 3], P[-1, 2, 3]
        heading = math.degrees(math.atan2(P[-1, 0, 2], P[-1, 2, 2]))  # forward axis in the start frame
        ends[fname] = (x, z, heading)
    x, z, heading = ends["av_traj_forward.json"]
    assert z > 5 and abs(heading) < 15 and abs(x) < 0.2 * z
    x, z, heading = ends["av_traj_left.json"]
    assert x < -10 and heading < -45
    x, z, heading = ends["av_traj_right.json"]
    assert x > 10 and heading > 45


def test_av_round_trip_relative_absolute_relative():
    for fname in AV_FILES:
        a = A.load_actions(FIXTURES / fname, "av").astype(np.float64)
        P = A.relative_to_absolute(a, translation_scale=A.AV_TRANSLATION_SCALE)
        # The first step's translation, in metres, is the file's translation divided by the AV scale.
        np.testing.assert_allclose(P[1, :3, 3], a[0, :3] / 1.35, rtol=1e-12)
        back = A.absolute_to_relative(P, translation_scale=A.AV_TRANSLATION_SCALE)
        assert back.shape == (60, 9)
        np.testing.assert_allclose(back[:, :3], a[:, :3], atol=1e-9)
        np.testing.assert_allclose(back[:, 3:], a[:, 3:], atol=1e-6)


def test_umi_round_trip_uses_pose_block_and_ignores_gripper():
    a = A.load_actions(FIXTURES / "umi.json", "umi").astype(np.float64)
    P = A.relative_to_absolute(a)  # 10 columns: the gripper is ignored
    assert P.shape == (33, 4, 4)
    back = A.absolute_to_relative(P)
    np.testing.assert_allclose(back[:, :3], a[:, :3], atol=1e-9)
    R_in = A.rot6d_to_matrix(a[:, 3:9])
    np.testing.assert_allclose(back[:, 3:], np.concatenate([R_in[:, :, 0], R_in[:, :, 1]], axis=1), atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# load_actions error cases
# ---------------------------------------------------------------------------------------------------------------

BAD_JSON = [
    ("ragged", "[[1, 2, 3], [4, 5]]", ["row 1", "2 values", "3"]),
    ("nan", "[[1, 2, 3], [4, NaN, 6]]", ["row 1 column 1", "NaN"]),
    ("inf", "[[1, 2, 3], [4, 5, Infinity]]", ["row 1 column 2", "infinite"]),
    ("neg_inf", "[[-Infinity, 2, 3]]", ["row 0 column 0", "infinite"]),
    ("overflow", "[[1e400, 2, 3]]", ["row 0 column 0", "infinite"]),
    ("float32_overflow", "[[1, 1e39, 3]]", ["row 0 column 1", "float32"]),
    ("invalid", "[[1, 2, 3],\n [3, x, 4]]", ["not valid JSON", "line 2 column 6"]),
    ("truncated", "[[1, 2, 3], [4, 5", ["not valid JSON", "line 1"]),
    ("empty_file", "", ["not valid JSON", "line 1 column 1"]),
    ("string", '[[1, "2", 3]]', ["row 0 column 1", "string"]),
    ("bool", "[[1, 2, true]]", ["row 0 column 2", "boolean"]),
    ("null", "[[null, 2, 3]]", ["row 0 column 0", "null"]),
    ("deeper", "[[[1, 2, 3]], [[4, 5, 6]]]", ["row 0 column 0", "nested deeper"]),
    ("flat", "[1, 2, 3]", ["row 0", "not a list", "2D"]),
    ("object", '{"actions": [[1, 2, 3]]}', ["2D array", "object"]),
    ("scalar", "3", ["2D array", "number"]),
    ("empty_array", "[]", ["empty"]),
    ("empty_row", "[[]]", ["row 0 is empty"]),
]


@pytest.mark.parametrize("case,text,needles", BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_json_files_are_refused_with_a_precise_message(tmp_path, case, text, needles):
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        A.load_actions(path, None)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_width_mismatch_names_expected_and_got(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[[1, 2, 3], [4, 5, 6]]")
    assert A.load_actions(path, "drawanything").shape == (2, 3)
    with pytest.raises(ValueError) as info:
        A.load_actions(path, "pusht")
    msg = str(info.value)
    assert "a.json" in msg and "pusht" in msg and "expected 2" in msg and "got 3" in msg


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json.*not found"):
        A.load_actions(missing, "av")
    with pytest.raises(ValueError, match="directory"):
        A.load_actions(tmp_path, "av")


def test_unknown_embodiment_in_load_actions():
    with pytest.raises(ValueError, match="valid names"):
        A.load_actions([[1.0, 2.0]], "robot9000")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe[[1]]")
    with pytest.raises(ValueError, match="bin.json.*not valid JSON"):
        A.load_actions(path, None)


def test_in_memory_inputs(nrng):
    a = nrng.standard_normal((4, 9))
    for src in (a, a.tolist(), torch.from_numpy(a), tuple(map(tuple, a.tolist()))):
        out = A.load_actions(src, "av")
        assert out.dtype == np.float32 and np.array_equal(out, a.astype(np.float32))
    b = a.copy()
    b[2, 7] = np.inf
    with pytest.raises(ValueError, match="row 2 column 7 is infinite"):
        A.load_actions(b, "av")
    b[2, 7] = np.nan
    with pytest.raises(ValueError, match="row 2 column 7 is NaN"):
        A.load_actions(torch.from_numpy(b), "av")
    with pytest.raises(ValueError, match=r"shape \(2, 4, 9\)"):
        A.load_actions(np.zeros((2, 4, 9)), "av")
    with pytest.raises(ValueError, match="dtype"):
        A.load_actions(np.array([["a", "b"]]), None)
    with pytest.raises(ValueError, match="dtype"):
        A.load_actions(torch.zeros(2, 9, dtype=torch.bool), "av")
    with pytest.raises(ValueError, match="empty"):
        A.load_actions(np.zeros((0, 9)), "av")
    with pytest.raises(ValueError):
        A.load_actions(42, "av")
    # Integers are numbers too.
    assert A.load_actions([[1, 2]], "pusht").tolist() == [[1.0, 2.0]]


def test_npy_files(tmp_path, nrng):
    a = nrng.standard_normal((6, 10)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(A.load_actions(tmp_path / "a.npy", "umi"), a)
    np.save(tmp_path / "flat.npy", a[0])
    with pytest.raises(ValueError, match="flat.npy.*2D"):
        A.load_actions(tmp_path / "flat.npy", "umi")
    np.save(tmp_path / "wide.npy", a[:, :9])
    with pytest.raises(ValueError, match="wide.npy.*expected 10.*got 9"):
        A.load_actions(tmp_path / "wide.npy", "umi")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="junk.npy.*npy"):
        A.load_actions(tmp_path / "junk.npy", "umi")
    np.save(tmp_path / "obj.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        A.load_actions(tmp_path / "obj.npy", None)


# ---------------------------------------------------------------------------------------------------------------
# save_actions
# ---------------------------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_exact_for_float32(tmp_path, nrng):
    a = (nrng.standard_normal((7, 10)) * 10.0 ** nrng.integers(-30, 30, size=(7, 10))).astype(np.float32)
    a[0, :4] = [0.1, -0.0, np.float32(1e-45), np.finfo(np.float32).max]
    path = A.save_actions(tmp_path / "out.json", a)
    raw = json.loads(Path(path).read_text())  # a bare JSON array of rows
    assert isinstance(raw, list) and len(raw) == 7 and all(isinstance(r, list) and len(r) == 10 for r in raw)
    back = A.load_actions(path, "umi")
    assert back.dtype == np.float32
    assert np.array_equal(back.view(np.uint32), a.view(np.uint32))


def test_save_float64_and_torch_and_npy(tmp_path, nrng):
    a = nrng.standard_normal((3, 9))
    A.save_actions(tmp_path / "d.json", a)
    assert np.array_equal(A.load_actions(tmp_path / "d.json", "av"), a.astype(np.float32))
    # float64 values are kept at full precision in the file.
    assert np.array_equal(np.asarray(json.loads((tmp_path / "d.json").read_text())), a)
    t = torch.from_numpy(a.astype(np.float32))
    A.save_actions(tmp_path / "t.json", t)
    assert np.array_equal(A.load_actions(tmp_path / "t.json", "av"), t.numpy())
    A.save_actions(tmp_path / "n.npy", a)
    assert np.array_equal(A.load_actions(tmp_path / "n.npy", "av"), a.astype(np.float32))


def test_save_round_trips_a_release_file(tmp_path):
    a = A.load_actions(FIXTURES / "umi.json", "umi")
    A.save_actions(tmp_path / "umi.json", a)
    assert np.array_equal(A.load_actions(tmp_path / "umi.json", "umi"), a)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    A.save_actions(path, [[1.0, 2.0]])
    before = path.read_bytes()
    # Invalid input is refused before anything is written.
    with pytest.raises(ValueError, match="NaN"):
        A.save_actions(path, [[1.0, float("nan")]])
    assert path.read_bytes() == before
    # A failure at the final rename leaves the old file and no temporary behind.
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        A.save_actions(path, [[3.0, 4.0]])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]
    A.save_actions(path, [[3.0, 4.0]])
    assert A.load_actions(path, "pusht").tolist() == [[3.0, 4.0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]


# ---------------------------------------------------------------------------------------------------------------
# Rotations
# ---------------------------------------------------------------------------------------------------------------


def test_rot6d_layout_is_first_two_columns():
    assert A.matrix_to_rot6d(np.eye(3)).tolist() == [1, 0, 0, 0, 1, 0]
    np.testing.assert_array_equal(A.rot6d_to_matrix([1, 0, 0, 0, 1, 0]), np.eye(3))
    # 90 degrees about z: x -> y, y -> -x. Columns are the images of the axes: (0, 1, 0) and (-1, 0, 0).
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert A.matrix_to_rot6d(Rz).tolist() == [0, 1, 0, -1, 0, 0]
    np.testing.assert_allclose(A.rot6d_to_matrix([0, 1, 0, -1, 0, 0]), Rz, atol=1e-15)


def test_rot6d_matrix_round_trip_on_random_rotations(nrng):
    R = _random_rotations(nrng, 64)
    r6 = A.matrix_to_rot6d(R)
    assert r6.shape == (64, 6)
    np.testing.assert_array_equal(r6[:, :3], R[:, :, 0])
    np.testing.assert_array_equal(r6[:, 3:], R[:, :, 1])
    back = A.rot6d_to_matrix(r6)
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, R, atol=1e-12)
    # Batched leading shapes are kept.
    assert A.rot6d_to_matrix(r6.reshape(4, 16, 6)).shape == (4, 16, 3, 3)


def test_gram_schmidt_repairs_non_orthonormal_input(nrng):
    R = _random_rotations(nrng, 16)
    c0, c1 = R[:, :, 0], R[:, :, 1]
    scale0 = nrng.uniform(0.2, 5.0, size=(16, 1))
    scale1 = nrng.uniform(0.2, 5.0, size=(16, 1))
    shear = nrng.uniform(-2.0, 2.0, size=(16, 1))
    messy = np.concatenate([c0 * scale0, c1 * scale1 + shear * c0], axis=1)
    fixed = A.rot6d_to_matrix(messy)
    _assert_rotation(fixed)
    np.testing.assert_allclose(fixed, R, atol=1e-10)


@pytest.mark.parametrize("bad", [[0, 0, 0, 0, 1, 0], [1, 0, 0, 2, 0, 0], [1, 0, 0, np.nan, 1, 0]])
def test_degenerate_rot6d_is_refused(bad):
    with pytest.raises(ValueError, match="rotation"):
        A.rot6d_to_matrix(bad)
    with pytest.raises(ValueError):
        A.rot6d_to_matrix(np.zeros((2, 5)))


# ---------------------------------------------------------------------------------------------------------------
# Pose chains
# ---------------------------------------------------------------------------------------------------------------


def _pose(R: np.ndarray, t) -> np.ndarray:
    P = np.eye(4)
    P[:3, :3] = R
    P[:3, 3] = t
    return P


def test_relative_step_is_expressed_in_the_previous_frame():
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    P0 = np.eye(4)
    P1 = _pose(Rz, [1.0, 0.0, 0.0])
    P2 = _pose(Rz, [1.0, 1.0, 0.0])  # one unit along frame 1's own x axis, which points along world y
    rel = A.absolute_to_relative(np.stack([P0, P1, P2]))
    np.testing.assert_allclose(rel[0], [1, 0, 0, 0, 1, 0, -1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(rel[1], [1, 0, 0, 1, 0, 0, 0, 1, 0], atol=1e-15)
    P = A.relative_to_absolute(rel)
    np.testing.assert_allclose(P, np.stack([P0, P1, P2]), atol=1e-15)


def test_relative_absolute_round_trip_on_random_chains(nrng):
    n = 12
    R = _random_rotations(nrng, n)
    poses = np.stack([_pose(R[i], nrng.uniform(-3, 3, size=3)) for i in range(n)])
    rel = A.absolute_to_relative(poses)
    assert rel.shape == (n - 1, 9)
    # Step i, computed directly: inv(P_i) @ P_{i+1}.
    direct = np.linalg.inv(poses[3]) @ poses[4]
    np.testing.assert_allclose(rel[3, :3], direct[:3, 3], atol=1e-12)
    np.testing.assert_allclose(rel[3, 3:], np.concatenate([direct[:3, 0], direct[:3, 1]]), atol=1e-12)
    back = A.relative_to_absolute(rel, start_pose=poses[0])
    assert back.shape == (n, 4, 4)
    np.testing.assert_allclose(back, poses, atol=1e-10)
    # And the other way round, with a translation scale and an extra gripper column.
    scale = 1.35
    rel_scaled = A.absolute_to_relative(poses, translation_scale=scale)
    np.testing.assert_allclose(rel_scaled[:, :3], rel[:, :3] * scale, atol=1e-12)
    with_gripper = np.concatenate([rel_scaled, nrng.uniform(0, 1, size=(n - 1, 1))], axis=1)
    chain = A.relative_to_absolute(with_gripper, poses[0], translation_scale=scale)
    np.testing.assert_allclose(chain, poses, atol=1e-10)
    np.testing.assert_allclose(A.absolute_to_relative(chain, translation_scale=scale), rel_scaled, atol=1e-10)


def test_pose_block_offset_for_multi_arm_actions(nrng):
    R = _random_rotations(nrng, 5)
    poses = np.stack([_pose(R[i], nrng.uniform(-1, 1, size=3)) for i in range(5)])
    rel = A.absolute_to_relative(poses)
    row = np.concatenate([np.zeros((4, 10)), rel, np.ones((4, 1))], axis=1)  # 20D: left arm + right arm
    row[:, 3] = 1.0
    row[:, 7] = 1.0  # left block is an identity rotation so it stays valid
    np.testing.assert_allclose(A.relative_to_absolute(row, poses[0], offset=10), poses, atol=1e-10)


def test_pose_chain_errors():
    with pytest.raises(ValueError, match="shape"):
        A.relative_to_absolute(np.zeros((3, 8)))
    with pytest.raises(ValueError, match="4x4"):
        A.relative_to_absolute([[0, 0, 0, 1, 0, 0, 0, 1, 0]], start_pose=np.eye(3))
    with pytest.raises(ValueError, match="translation_scale"):
        A.relative_to_absolute([[0, 0, 0, 1, 0, 0, 0, 1, 0]], translation_scale=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        A.absolute_to_relative(np.eye(4)[None])
    with pytest.raises(ValueError, match="NaN"):
        A.relative_to_absolute([[np.nan, 0, 0, 1, 0, 0, 0, 1, 0]])


# ---------------------------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------------------------


def test_quantiles_map_to_minus_one_and_one():
    # Column 0 is 0, 1, ..., 100: its 1st and 99th percentiles are 1 and 99 and its midpoint 50.
    # Column 1 is constant (zero range); column 2 is 0..100 scaled by -2 (range from -198 to -2).
    col = np.arange(101, dtype=np.float64)
    data = np.stack([col, np.full(101, 7.0), -2.0 * col], axis=1)
    stats = A.compute_stats(data)
    np.testing.assert_allclose(stats.q01, [1.0, 7.0, -198.0], atol=1e-12)
    np.testing.assert_allclose(stats.q99, [99.0, 7.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(stats.mean, [50.0, 7.0, -100.0], atol=1e-12)
    np.testing.assert_allclose(stats.std, [math.sqrt(850.0), 0.0, 2 * math.sqrt(850.0)], atol=1e-9)
    x = np.array([[1.0, 7.0, -198.0], [99.0, 7.0, -2.0], [50.0, 7.0, -100.0], [0.0, 7.0, 0.0]])
    y = A.normalize(x, stats)
    np.testing.assert_allclose(y[0], [-1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(y[1], [1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(y[2], [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(y[3], [-1.0 - 2.0 / 98.0, 0.0, 1.0 + 2.0 / 98.0], atol=1e-12)  # no clipping
    assert np.isfinite(y).all()
    np.testing.assert_allclose(A.denormalize(y, stats), x, atol=1e-12)
    # Every value between the quantiles lands in [-1, 1].
    inside = A.normalize(data[1:100], stats)
    assert inside.min() >= -1.0 - 1e-12 and inside.max() <= 1.0 + 1e-12


def test_normalization_round_trip(nrng):
    arrays = [nrng.standard_normal((int(nrng.integers(5, 30)), 6)) * nrng.uniform(0.01, 10, size=6) for _ in range(3)]
    stats = A.compute_stats(arrays)
    joined = A.compute_stats(np.concatenate(arrays))
    np.testing.assert_array_equal(stats.q01, joined.q01)
    np.testing.assert_array_equal(stats.q99, joined.q99)
    x = arrays[1]
    np.testing.assert_allclose(A.denormalize(A.normalize(x, stats), stats), x, rtol=1e-12, atol=1e-12)
    x32 = x.astype(np.float32)
    y32 = A.normalize(x32, stats)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(A.denormalize(y32, stats), x32, rtol=1e-5, atol=1e-5)
    # Works over any leading shape.
    assert A.normalize(np.stack([x, x]), stats).shape == (2,) + x.shape
    with pytest.raises(ValueError, match="6"):
        A.normalize(np.zeros((2, 5)), stats)


def test_stats_files_round_trip(tmp_path, nrng):
    stats = A.compute_stats(nrng.standard_normal((40, 4)))
    path = stats.save(tmp_path / "stats.json")
    raw = json.loads(path.read_text())
    assert set(raw) == {"q01", "q99", "mean", "std"} and len(raw["q01"]) == 4
    back = ActionStats.load(path)
    for name in ("q01", "q99", "mean", "std"):
        np.testing.assert_array_equal(getattr(back, name), getattr(stats, name))
    # The release ships q01/q99-only files (also accepted under a "global" key).
    (tmp_path / "release.json").write_text(json.dumps({"q01": [-0.5, 0.0], "q99": [0.5, 1.0]}))
    r = ActionStats.load(tmp_path / "release.json")
    assert r.mean is None and r.std is None and r.dim == 2
    np.testing.assert_allclose(A.normalize([[0.0, 0.25]], r), [[0.0, -0.5]])
    (tmp_path / "nested.json").write_text(json.dumps({"global": {"q01": [0.0], "q99": [2.0]}}))
    assert ActionStats.load(tmp_path / "nested.json").q99.tolist() == [2.0]


@pytest.mark.parametrize(
    "content,needle",
    [
        ({"q01": [0.0, 1.0]}, "missing q99"),
        ({"q01": [0.0, 1.0], "q99": [1.0]}, "q99 has 1 values"),
        ({"q01": [0.0, 1.0], "q99": [1.0, 0.5]}, "dimension 1"),
        ({"q01": [0.0], "q99": [1.0], "std": [-1.0]}, "std is negative"),
        ({"q01": ["a"], "q99": [1.0]}, "q01"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_stats_files(tmp_path, content, needle):
    path = tmp_path / "bad_stats.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as info:
        ActionStats.load(path)
    assert needle in str(info.value) and "bad_stats.json" in str(info.value)
    with pytest.raises(ValueError, match="not found"):
        ActionStats.load(tmp_path / "absent.json")


def test_lerobot_reader_is_reachable_from_actions():
    from cosmos3 import actions
    from cosmos3.lerobot import LeRobotDataset

    assert actions.LeRobotDataset is LeRobotDataset
    root = _ROOT / "droid_lerobot_example"
    ds = actions.LeRobotDataset(root, chunk_size=16)
    item = ds[0]
    assert item["frames"].shape == (17, 360, 640, 3) and item["actions"].shape == (16, 10)
    with pytest.raises(ValueError, match="observation.image.wrist_image_left"):
        actions.LeRobotDataset(root, camera="observation.image.wrist_image_left")
    with pytest.raises(AttributeError):
        actions.NoSuchThing


def test_stats_file_round_trip_and_errors(tmp_path, rng):
    s = A.ActionStats(q01=np.array([rng.uniform(-1, 0) for _ in range(10)]),
                      q99=np.array([rng.uniform(0, 1) for _ in range(10)]))
    path = A.save_stats_file(tmp_path / A.ACTION_STATS_FILE, {"umi": s, "camera_pose": A.ActionStats(
        q01=np.zeros(9), q99=np.ones(9))})
    back = A.load_stats_file(path)
    assert set(back) == {"umi", "camera_pose"}
    np.testing.assert_array_equal(back["umi"].q01, s.q01)
    np.testing.assert_array_equal(back["umi"].q99, s.q99)
    assert A.load_stats_file(tmp_path / "absent.json") == {}  # no file: the checkpoint learnt raw actions
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"galbot": {"q01": [0.0] * 30, "q99": [1.0] * 30}}))  # an alias: canonical name
    assert set(A.load_stats_file(bad)) == {"embodiment_b"}
    bad.write_text(json.dumps({"umi": {"q01": [0.0] * 9, "q99": [1.0] * 9}}))
    with pytest.raises(A.ActionError, match=r"bad.json: umi has 9 statistics per step, the embodiment has 10"):
        A.load_stats_file(bad)
    bad.write_text(json.dumps({"robot9000": s.to_dict()}))
    with pytest.raises(A.ActionError, match=r"bad.json: unknown embodiment 'robot9000'"):
        A.load_stats_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(A.ActionError, match=r"bad.json: expected a JSON object"):
        A.load_stats_file(bad)


def test_compute_stats_takes_nested_lists_like_arrays():
    rng = np.random.default_rng(fresh_seed("test_actions.py::test_compute_stats_takes_nested_lists_like_arrays"))
    chunks = [rng.normal(size=(int(rng.integers(2, 9)), 3)) for _ in range(3)]
    from_arrays = A.compute_stats(chunks)
    from_lists = A.compute_stats([c.tolist() for c in chunks])
    for key in ("q01", "q99", "mean", "std"):
        np.testing.assert_allclose(getattr(from_lists, key), getattr(from_arrays, key), rtol=1e-6)
    with pytest.raises(ActionError, match="array 1"):
        A.compute_stats([chunks[0].tolist(), [[1.0, 2.0]]])
