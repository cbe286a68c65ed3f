"""The reasoner's image and video preprocessing against transformers' Qwen3-VL processors, pixel for pixel.

The parity tests of the reasoner feed OUR pixels to transformers, so preprocessing is compared nowhere else. Here the
processors are transformers', loaded from the same preprocessor_config.json / video_preprocessor_config.json as
ours (random mean, std and pixel bounds, in either config style):
  - images: `Qwen2VLImageProcessorPil` (the image processor transformers runs without torchvision);
  - videos: `Qwen3VLVideoProcessor`. Without torchvision it cannot run whole, so its own parts are run in its order:
    `sample_frames` (through transformers' PyAV `load_video` for files), `smart_resize` for the size, torchvision's
    resize of a uint8 CPU tensor (torchvision calls `interpolate(..., "bicubic", antialias=True)` natively on uint8
    there; the call is written out below), its fused `rescale_and_normalize` (with torchvision's documented
    `normalize`, (x - mean) / std per channel, standing in for `tvF.normalize`), its `patchify` (which pads an odd
    clip with the last frame), and Qwen3VLProcessor's `_calculate_timestamps`.
Test media are random frames made here, odd frame counts and odd sizes, and mp4 files written with PyAV.
"""

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.model.vision import VisionProcessor, video_resize

EPS = 1e-5  # normalized pixels: one 8-bit level is >= 2 / 255 / std, so this is float rounding only


def _configs(rng: random.Random, tmp_path):
    """Random processor configs on disk; ours and transformers' both read them from there."""
    mean = [round(rng.uniform(0.3, 0.6), 3) for _ in range(3)]
    std = [round(rng.uniform(0.2, 0.4), 3) for _ in range(3)]
    low = rng.choice([1024, 4096, 16384])
    image = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": mean, "image_std": std}
    if rng.random() < 0.5:
        image["size"] = {"shortest_edge": low, "longest_edge": rng.choice([16384, 65536, 147456])}
    else:  # the older Qwen-VL style
        image["min_pixels"], image["max_pixels"] = low, rng.choice([16384, 65536, 147456])
    video = {"size": {"shortest_edge": low, "longest_edge": rng.choice([32768, 131072, 524288])},
             "fps": rng.choice([1, 2, 3]), "min_frames": rng.choice([2, 4]), "max_frames": rng.choice([8, 16, 24]),
             "image_mean": mean, "image_std": std, "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(image))
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(video))
    return tmp_path


def _reference_video_processor(folder):
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    return Qwen3VLVideoProcessor.from_pretrained(folder)


def _tv_normalize(image, mean, std, inplace=False):
    """torchvision.transforms.v2.functional.normalize: (x - mean) / std over the channel axis (-3)."""
    mean = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return image.sub_(mean).div_(std) if inplace else image.sub(mean).div(std)


def reference_video(proc, frames: np.ndarray, monkeypatch) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 [T, H, W, 3] sampled frames -> (pixels, grid) by Qwen3VLVideoProcessor's steps (cap_pixels_per_frame
    off, as the released configs run it)."""
    import transformers.image_processing_backends as backends
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    monkeypatch.setattr(backends, "tvF", SimpleNamespace(normalize=_tv_normalize), raising=False)
    video = torch.from_numpy(frames).contiguous().permute(0, 3, 1, 2).contiguous()[None]  # [1, T, C, H, W]
    T, H, W = video.shape[1], video.shape[-2], video.shape[-1]
    factor = proc.patch_size * proc.merge_size
    h, w = smart_resize(num_frames=T, height=H, width=W, temporal_factor=proc.temporal_patch_size, factor=factor,
                        min_pixels=proc.size["shortest_edge"], max_pixels=proc.size["longest_edge"])
    if (h, w) != (H, W):  # torchvision resize_image on a uint8 CPU tensor, BICUBIC, antialias=True
        flat = torch.nn.functional.interpolate(video.reshape(-1, 3, H, W), size=[h, w], mode="bicubic",
                                               align_corners=False, antialias=True)
        video = flat.reshape(1, T, 3, h, w)
    video = proc.rescale_and_normalize(video, True, proc.rescale_factor, True, proc.image_mean, proc.image_std)
    patches, gt, gh, gw = proc.patchify(video, patch_size=proc.patch_size, merge_size=proc.merge_size,
                                        temporal_patch_size=proc.temporal_patch_size)
    return patches[0], (gt, gh, gw)


def reference_timestamps(indices, video_fps: float, temporal_patch_size: int) -> list[float]:
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    return Qwen3VLProcessor._calculate_timestamps(None, list(indices), video_fps, temporal_patch_size)


def _frames(rng: random.Random, T: int, H: int, W: int) -> np.ndarray:
    """Noise plus a smooth gradient: noise separates resampling kernels, the gradient keeps frames distinct."""
    nrng = np.random.default_rng(rng.randrange(2**31))
    base = nrng.integers(0, 256, (T, H, W, 3)).astype(np.float64)
    ramp = np.linspace(0, 60, W)[None, None, :, None] + 30 * np.arange(T)[:, None, None, None]
    return np.clip(0.7 * base + ramp, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ videos


@pytest.mark.parametrize("frames", [2, 3, 4, 5, 7, 9])
def test_video_pixels_match_qwen3vl_video_processor(frames, rng, tmp_path, monkeypatch):
    folder = _configs(rng, tmp_path)
    ours, ref = VisionProcessor.from_dirs(folder), _reference_video_processor(folder)
    for H, W in [(rng.randint(17, 301), rng.randint(17, 301)), (rng.choice([32, 64, 96]), rng.choice([64, 128]))]:
        clip = _frames(rng, frames, H, W)
        times = [i / 2.0 for i in range(frames)]
        got = ours.video(torch.from_numpy(clip), times)
        pixels, grid = reference_video(ref, clip, monkeypatch)
        assert got.grid == grid, (H, W, frames)
        assert got.pixels.shape == pixels.shape
        torch.testing.assert_close(got.pixels, pixels, rtol=0, atol=EPS)
        assert got.timestamps == pytest.approx(reference_timestamps(range(frames), 2.0, ref.temporal_patch_size))


def _write_mp4(path, clip: np.ndarray, fps: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = clip.shape[2], clip.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        for frame in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.parametrize("sampling", ["fps", "num_frames", "default"])
def test_video_file_sampling_and_pixels_match_transformers(sampling, rng, tmp_path, monkeypatch):
    from transformers.video_utils import load_video as hf_load_video

    from cosmos3.reasoner import load_video

    folder = _configs(rng, tmp_path)
    ours, ref = VisionProcessor.from_dirs(folder), _reference_video_processor(folder)
    total, rate = rng.randint(9, 61), rng.choice([5, 8, 10, 12, 24, 30])
    H, W = 2 * rng.randint(12, 90), 2 * rng.randint(12, 90)  # yuv420p needs even sides
    path = tmp_path / "clip.mp4"
    _write_mp4(path, _frames(rng, total, H, W), rate)
    kw = {"fps": rng.choice([1.0, 2.0, 3.0, 4.0])} if sampling == "fps" else (
        {"num_frames": rng.randint(3, total)} if sampling == "num_frames" else {})
    frames, times = load_video(str(path), ours, kw.get("fps"), kw.get("num_frames"))
    ref_frames, meta = hf_load_video(str(path), backend="pyav",
                                     sample_indices_fn=lambda metadata, **_: ref.sample_frames(metadata, **kw))
    indices = list(meta.frames_indices)
    assert len(indices) == frames.shape[0] and np.array_equal(frames.numpy(), ref_frames)
    assert times == pytest.approx([i / meta.fps for i in indices])
    got = ours.video(frames, times)
    if len(indices) >= ref.temporal_patch_size:  # transformers refuses a one-frame clip
        pixels, grid = reference_video(ref, ref_frames, monkeypatch)
        assert got.grid == grid and got.pixels.shape == pixels.shape
        torch.testing.assert_close(got.pixels, pixels, rtol=0, atol=EPS)
    assert got.timestamps == pytest.approx(reference_timestamps(indices, meta.fps, ref.temporal_patch_size))


def test_frame_sampling_and_target_size_rules_match(rng, tmp_path):
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize
    from transformers.video_utils import VideoMetadata

    folder = _configs(rng, tmp_path)
    ours, ref = VisionProcessor.from_dirs(folder), _reference_video_processor(folder)
    for _ in range(300):
        total, video_fps = rng.randint(1, 900), rng.choice([None, 7.5, 10.0, 23.976, 24.0, 25.0, 30.0, 60.0])
        choice = rng.random()
        kw = {"fps": rng.choice([0.5, 1.0, 2.0, 3.5])} if choice < 0.4 else (
            {"num_frames": rng.randint(1, total)} if choice < 0.7 else {})
        meta = VideoMetadata(total_num_frames=total, fps=video_fps)
        expected = ref.sample_frames(meta, **kw).tolist()
        assert ours.sample_indices(total, video_fps, kw.get("fps"), kw.get("num_frames")) == expected, (total,
                                                                                                       video_fps, kw)
    for _ in range(300):
        T, H, W = rng.randint(2, 64), rng.randint(8, 3000), rng.randint(8, 3000)
        if max(H, W) / min(H, W) > 150:
            continue
        low, high = rng.choice([1024, 4096, 65536]), rng.choice([131072, 524288, 25165824])
        assert video_resize(T, H, W, 32, 2, low, high) == smart_resize(T, H, W, temporal_factor=2, factor=32,
                                                                       min_pixels=low, max_pixels=high)


# ------------------------------------------------------------------------------------------------ images


def test_image_pixels_match_qwen2vl_image_processor(rng, tmp_path):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = _configs(rng, tmp_path)
    ours, ref = VisionProcessor.from_dirs(folder), Qwen2VLImageProcessorPil.from_pretrained(folder)
    sizes = [(rng.randint(17, 200), rng.randint(17, 200)) for _ in range(4)]
    sizes += [(rng.randint(5, 31), rng.randint(32, 90)), (rng.randint(500, 900), rng.randint(400, 700)), (64, 96)]
    for H, W in sizes:
        image = Image.fromarray(_frames(rng, 1, H, W)[0])
        got = ours.image(image)
        out = ref(images=[image], return_tensors="pt")
        assert got.grid == tuple(int(x) for x in out["image_grid_thw"][0]), (H, W)
        torch.testing.assert_close(got.pixels, out["pixel_values"].float(), rtol=0, atol=EPS)
