"""Control maps computed from RGB frames: Canny edges with the release's preset thresholds (checked on step edges whose
gradient is known by hand) and the release's blur."""

import numpy as np
import pytest

from cosmos3.control import BLUR_PRESETS, EDGE_PRESETS, blur_map, edge_map, extract, fit
from cosmos3.media import MediaError


def _step(low: int, jump: int, size: int = 32, frames: int = 2) -> np.ndarray:
    """Grey frames, left half `low`, right half `low + jump`: a vertical step edge."""
    f = np.full((frames, size, size, 3), low, dtype=np.uint8)
    f[:, :, size // 2:] = low + jump
    return f


# OpenCV's Canny (aperture 3, L1 norm): a step of height d has gradient |Sobel_x| = (1 + 2 + 1) * d = 4d beside it.
# 4d above the high threshold: an edge; between the thresholds with no strong pixel to connect to: none.
@pytest.mark.parametrize("jump, found", [
    (30, {"very_low": True, "low": True, "medium": False, "high": False}),  # 120
    (60, {"low": True, "medium": True, "high": False, "very_high": False}),  # 240
    (90, {"medium": True, "high": True, "very_high": False}),  # 360
])
def test_edge_presets_are_the_release_thresholds(jump, found):
    frames = _step(60, jump)
    for preset, edge in found.items():
        out = edge_map(frames, preset)
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
        assert set(np.unique(out)) <= {0, 255}
        if edge:  # one edge pixel per row, on the step
            assert (out[..., 0] == 255).sum(axis=-1).tolist() == [[1] * 32] * 2, preset
            assert set(np.nonzero(out[..., 0])[2]) <= {15, 16}
        else:
            assert not out.any(), preset


def test_edge_thresholds_table():
    assert EDGE_PRESETS["medium"] == (100, 200) and EDGE_PRESETS["very_high"] == (300, 400)


@pytest.mark.parametrize("preset", sorted(BLUR_PRESETS))
def test_blur_keeps_flat_frames_and_shapes(preset):
    flat = np.full((2, 48, 64, 3), 97, dtype=np.uint8)
    out = blur_map(flat, preset)
    assert out.shape == flat.shape and out.dtype == np.uint8
    assert (out == 97).all()


def test_blur_removes_fine_detail_and_none_keeps_it():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(blur_map(noise, "none"), noise)
    spread = {p: float(blur_map(noise, p).astype(float).std()) for p in ("low", "medium", "very_high")}
    assert spread["medium"] < noise.std() / 3 and spread["very_high"] < noise.std() / 3
    assert abs(blur_map(noise, "medium").mean() - noise.mean()) < 10  # smoothed, not darkened or brightened


def test_only_edge_and_blur_are_computed():
    with pytest.raises(ValueError, match="only edge and blur"):
        extract("depth", _step(0, 10))


def test_fit_scales_crops_and_refuses_other_aspects():
    frames = _step(0, 200, size=32)
    assert fit(frames, 32, 32, "x") is frames
    big = fit(frames, 64, 64, "x")
    assert big.shape == (2, 64, 64, 3) and big[:, :, :28].max() == 0 and big[:, :, 36:].min() == 200
    assert fit(np.zeros((1, 36, 64, 3), np.uint8), 352, 640, "x").shape == (1, 352, 640, 3)  # 16:9 into 640x352
    with pytest.raises(MediaError, match="aspect ratios differ"):
        fit(np.zeros((1, 32, 64, 3), np.uint8), 64, 64, "x")
