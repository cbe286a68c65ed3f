"""Qwen3-VL pixel processing (image via transformers, video by hand) and the vision tower adapter."""

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.model.vision import VisionProcessor, VisionTower, video_resize

CONFIG = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
          "image_std": [0.5] * 3, "size": {"shortest_edge": 1024, "longest_edge": 64 * 64 * 4}}


def test_two_equal_frames_patchify_like_the_image(rng):
    """Videos are patchified by hand in the video processor's layout; an image is a two-frame still in Qwen, so the
    two must give the same patches when both resize to the same size."""
    proc = VisionProcessor(CONFIG, {"size": {"shortest_edge": 1024, "longest_edge": 2 * 64 * 64 * 4}})
    h, w = rng.choice([32, 64, 96]), rng.choice([32, 64, 128])
    frame = np.random.randint(0, 256, (h, w, 3), dtype=np.uint8)
    image = proc.image(Image.fromarray(frame))
    video = proc.video(torch.from_numpy(np.stack([frame, frame])), [0.0, 0.5])
    assert image.grid == video.grid == (1, h // 16, w // 16)
    torch.testing.assert_close(video.pixels, image.pixels, rtol=0, atol=1e-6)
    assert video.timestamps == [0.25]


def test_video_padding_timestamps_and_resize_rules():
    proc = VisionProcessor(CONFIG, {"size": {"shortest_edge": 1024, "longest_edge": 8 * 32 * 32}})
    frames = torch.randint(0, 256, (5, 50, 70, 3), dtype=torch.uint8)
    video = proc.video(frames, [0.0, 0.5, 1.0, 1.5, 2.0])
    t, h, w = video.grid
    assert t == 3 and video.timestamps == [0.25, 1.25, 2.0]  # the 5th frame is repeated to fill its patch
    assert t * 2 * h * w * 256 <= 8 * 32 * 32 * 4 and h % 2 == 0 and w % 2 == 0
    assert video.pixels.shape == (t * h * w, 3 * 2 * 16 * 16)
    assert video_resize(4, 10, 10, 32, 2, 1024, 10**6) == (32, 32)  # tiny frames are scaled up to one factor
    with pytest.raises(ValueError):
        video_resize(4, 2, 1000, 32, 2, 1024, 10**6)


def test_frame_sampling_follows_qwen3vl():
    proc = VisionProcessor({}, {})
    assert proc.sample_indices(40, 4.0) == np.linspace(0, 39, 20).round().astype(int).tolist()  # 2 fps of 10 s
    assert len(proc.sample_indices(10, 30.0)) == 4  # at least min_frames
    assert len(proc.sample_indices(3, 30.0)) == 3  # but never more than exist
    assert proc.sample_indices(100, 25.0, num_frames=5) == [0, 25, 50, 74, 99]
    assert len(proc.sample_indices(100, 25.0, fps=4)) == 16
    with pytest.raises(ValueError):
        proc.sample_indices(100, 25.0, fps=2, num_frames=4)


def test_tower_loaded_from_state_dict_equals_transformers(gen):
    tower = VisionTower.from_config(dict(depth=2, hidden_size=32, intermediate_size=48, num_heads=2,
                                         out_hidden_size=40, num_position_embeddings=16,
                                         deepstack_visual_indexes=[0, 1]))
    with torch.no_grad():
        for p in tower.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    config = tower.model.config.to_dict()
    loaded = VisionTower.from_state_dict(config, tower.model.state_dict(), torch.float32, torch.device("cpu"))
    proc = VisionProcessor(CONFIG)
    items = [proc.image(Image.fromarray(np.random.randint(0, 256, (48, 80, 3), dtype=np.uint8))),
             proc.video(torch.randint(0, 256, (3, 32, 64, 3), dtype=torch.uint8), [0, 1, 2])]
    ours, deep = loaded(items)
    ref, ref_deep = tower(items)
    n = sum(it.num_tokens(2) for it in items)
    assert ours.shape == (n, 40) and len(deep) == 2
    torch.testing.assert_close(ours, ref)
    for a, b in zip(deep, ref_deep):
        torch.testing.assert_close(a, b)
