"""Media I/O: round trips through the real encoders, the release's fixture files, and every failure mode."""

from __future__ import annotations

import io
import os
import pickle
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3 import media
from cosmos3.media import MediaError

from fixture_paths import FIXTURES
VIDEOS = FIXTURES / "videos"
IMAGES = FIXTURES / "images"


def smooth_video(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random but smooth frames: a few low-frequency sinusoids per channel drifting over time.

    H.264 at low crf reproduces such content closely; white noise would need a bitrate test, not a round trip.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    out = np.empty((t, h, w, 3), np.float64)
    for c in range(3):
        fx, fy, speed, phase = rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7), rng.uniform(0.02, 0.1), rng.uniform(0, 6)
        for i in range(t):
            out[i, :, :, c] = 0.5 + 0.4 * np.sin(2 * np.pi * (fx * x + fy * y + speed * i) + phase)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 2) -> np.ndarray:
    n = int(round(seconds * rate))
    wave = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    return np.repeat(wave[None], channels, axis=0).astype(np.float32)


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(signal.shape[-1], 1 / rate)[int(np.argmax(spectrum))])


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


# ---------------------------------------------------------------------------------------------------------------
# video round trips


@pytest.mark.parametrize("fps", [24, 16, 10, 30])
def test_video_round_trip(tmp_path: Path, fps: int) -> None:
    frames = smooth_video(13, 48, 64, seed=fps)
    out = media.write_video(tmp_path / "clip.mp4", torch.from_numpy(frames), fps, crf=8)
    assert out == tmp_path / "clip.mp4" and out.is_file()
    video, got_fps = media.read_video(out)
    assert video.dtype == torch.uint8
    assert tuple(video.shape) == frames.shape
    assert got_fps == fps
    err = (video.numpy().astype(np.int16) - frames.astype(np.int16)).__abs__()
    assert err.mean() < 2.5, err.mean()
    info = media.probe_video(out)
    assert info == {
        "frames": 13,
        "width": 64,
        "height": 48,
        "fps": float(fps),
        "has_audio": False,
        "audio_channels": None,
        "audio_sample_rate": None,
        "codec": "h264",
    }
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == Fraction(fps)
    assert no_temp_files(tmp_path)


def test_video_accepts_numpy_and_fractional_fps(tmp_path: Path) -> None:
    frames = smooth_video(6, 32, 32)
    media.write_video(tmp_path / "ntsc.mp4", frames, 30000 / 1001)
    _, fps = media.read_video(tmp_path / "ntsc.mp4")
    assert fps == pytest.approx(30000 / 1001, rel=1e-3)
    # numpy scalars (as they come out of arrays and configs) are numbers too.
    media.write_video(tmp_path / "np.mp4", frames, np.int64(16))
    assert media.read_video(tmp_path / "np.mp4")[1] == 16


def test_higher_crf_means_larger_error(tmp_path: Path) -> None:
    frames = smooth_video(9, 64, 64, seed=3)
    errors = []
    for crf in (4, 40):
        media.write_video(tmp_path / f"q{crf}.mp4", frames, 24, crf=crf, preset="veryfast")
        got, _ = media.read_video(tmp_path / f"q{crf}.mp4")
        errors.append(np.abs(got.numpy().astype(np.int16) - frames).mean())
    assert errors[0] < errors[1]


@pytest.mark.parametrize(("h", "w"), [(45, 67), (48, 67), (45, 64), (1, 1)])
def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path, h: int, w: int) -> None:
    frames = smooth_video(5, h, w, seed=1)
    media.write_video(tmp_path / "odd.mp4", frames, 24, crf=4)
    video, _ = media.read_video(tmp_path / "odd.mp4")
    eh, ew = h + h % 2, w + w % 2
    assert tuple(video.shape) == (5, eh, ew, 3)
    got = video.numpy().astype(np.int16)
    if h * w > 1:
        assert np.abs(got[:, :h, :w] - frames).mean() < 3
    # The padding repeats the last real row / column.
    if w % 2:
        assert np.abs(got[:, :h, -1] - got[:, :h, -2]).mean() < 4
    if h % 2:
        assert np.abs(got[:, -1, :w] - got[:, -2, :w]).mean() < 4


def _write_with_pyav(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fmt: str, fps: int = 24,
                     display_rotation: int | None = None) -> None:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if display_rotation is not None:
            s.set_display_rotation(display_rotation)
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "fmt", "name", "h", "w"),
    [
        ("libx264", "yuv444p", "mp4", "odd444.mp4", 45, 67),  # odd sides are legal without chroma subsampling
        ("mpeg4", "yuv420p", "mp4", "part2.mp4", 48, 64),
        ("mpeg4", "yuv420p", "avi", "old.avi", 32, 48),
    ],
)
def test_reads_other_encodings_and_keeps_odd_sizes(
    tmp_path: Path, codec: str, pix_fmt: str, fmt: str, name: str, h: int, w: int
) -> None:
    assert codec in av.codecs_available, f"PyAV's FFmpeg lacks {codec}, which this test needs"
    frames = smooth_video(7, h, w, seed=5)
    _write_with_pyav(tmp_path / name, frames, codec, pix_fmt, fmt, fps=16)
    video, fps = media.read_video(tmp_path / name)
    assert tuple(video.shape) == (7, h, w, 3)
    assert fps == 16
    assert np.abs(video.numpy().astype(np.int16) - frames).mean() < 8
    info = media.probe_video(tmp_path / name)
    assert (info["width"], info["height"], info["frames"]) == (w, h, 7)


def test_read_video_max_frames(tmp_path: Path) -> None:
    media.write_video(tmp_path / "v.mp4", smooth_video(9, 32, 32), 16)
    video, fps = media.read_video(tmp_path / "v.mp4", max_frames=4)
    assert video.shape[0] == 4 and fps == 16
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            media.read_video(tmp_path / "v.mp4", max_frames=bad)


# ---------------------------------------------------------------------------------------------------------------
# sound


def test_sound_is_muxed_as_aac_stereo_48k(tmp_path: Path) -> None:
    frames = smooth_video(48, 32, 48)  # 2 s at 24 fps
    media.write_video(tmp_path / "s.mp4", frames, 24, sound=torch.from_numpy(tone(2.0, 48000)))
    info = media.probe_video(tmp_path / "s.mp4")
    assert info["has_audio"] is True
    assert (info["audio_channels"], info["audio_sample_rate"]) == (2, 48000)
    assert info["frames"] == 48
    with av.open(str(tmp_path / "s.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    audio, rate = media.read_audio(tmp_path / "s.mp4")
    assert audio.dtype == torch.float32 and audio.shape[0] == 2 and rate == 48000
    assert abs(audio.shape[1] / rate - 48 / 24) < 0.05
    assert dominant_frequency(audio[0].numpy(), rate) == pytest.approx(440, abs=2)
    assert float(audio.abs().max()) == pytest.approx(0.5, abs=0.05)
    video, _ = media.read_video(tmp_path / "s.mp4")
    assert video.shape[0] == 48


def test_sound_other_rate_and_mono_become_48k_stereo(tmp_path: Path) -> None:
    mono = tone(1.0, 24000, freq=1000.0, channels=1)[0]
    media.write_video(tmp_path / "m.mp4", smooth_video(24, 32, 32), 24, sound=mono, sample_rate=24000)
    audio, rate = media.read_audio(tmp_path / "m.mp4")
    assert rate == 48000 and audio.shape[0] == 2
    assert abs(audio.shape[1] / rate - 1.0) < 0.05
    assert dominant_frequency(audio[1].numpy(), rate) == pytest.approx(1000, abs=3)
    # AAC codes the pair as mid/side, so the two channels match closely but not bit for bit.
    torch.testing.assert_close(audio[0], audio[1], atol=3e-3, rtol=0)


def test_loud_sound_is_clipped_not_wrapped(tmp_path: Path) -> None:
    loud = np.full((2, 48000), 3.0, np.float32)
    loud[:, ::2] = -3.0
    media.write_video(tmp_path / "loud.mp4", smooth_video(24, 32, 32), 24, sound=loud)
    audio, _ = media.read_audio(tmp_path / "loud.mp4")
    assert float(audio.abs().max()) < 1.5


def test_read_audio_without_audio_stream(tmp_path: Path) -> None:
    media.write_video(tmp_path / "silent.mp4", smooth_video(5, 32, 32), 24)
    with pytest.raises(MediaError, match="silent.mp4.*no audio stream"):
        media.read_audio(tmp_path / "silent.mp4")


@pytest.mark.parametrize(
    ("sound", "rate", "problem"),
    [
        (np.zeros((3, 100), np.float32), 48000, "sound must be"),
        (np.zeros((2, 0), np.float32), 48000, "sound must be"),
        (np.zeros((2, 100), np.int16), 48000, "floating point"),
        (np.full((2, 100), np.nan, np.float32), 48000, "NaN"),
        (np.zeros((2, 100), np.float32), 0, "sample_rate"),
        ([0.0, 0.1], 48000, "numpy array"),
    ],
)
def test_bad_sound_refused(tmp_path: Path, sound: object, rate: int, problem: str) -> None:
    with pytest.raises(MediaError, match=problem) as exc:
        media.write_video(tmp_path / "x.mp4", smooth_video(5, 16, 16), 24, sound=sound, sample_rate=rate)
    assert "x.mp4" in str(exc.value)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("frames", "fps", "problem"),
    [
        (np.zeros((5, 16, 16, 3), np.float32), 24, "uint8"),
        (np.zeros((16, 16, 3), np.uint8), 24, "uint8 \\[T, H, W, 3\\]"),
        (np.zeros((5, 16, 16, 4), np.uint8), 24, "uint8 \\[T, H, W, 3\\]"),
        (np.zeros((0, 16, 16, 3), np.uint8), 24, "empty"),
        (np.zeros((5, 16, 16, 3), np.uint8), 0, "fps"),
        (np.zeros((5, 16, 16, 3), np.uint8), float("nan"), "fps"),
        (np.zeros((5, 16, 16, 3), np.uint8), "24", "fps"),
    ],
)
def test_bad_frames_refused(tmp_path: Path, frames: np.ndarray, fps: object, problem: str) -> None:
    with pytest.raises(MediaError, match=problem):
        media.write_video(tmp_path / "x.mp4", frames, fps)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.mp4"
    media.write_video(target, smooth_video(5, 32, 32), 24)
    before = target.read_bytes()

    def boom(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("encoder died")

    monkeypatch.setattr(media, "_encode_sound", boom)
    with pytest.raises(RuntimeError, match="encoder died"):
        media.write_video(target, smooth_video(9, 32, 32), 24, sound=tone(0.5, 48000))
    assert target.read_bytes() == before
    assert no_temp_files(tmp_path)


def test_encoder_fallback_order() -> None:
    assert "libx264" in av.codecs_available
    assert media._pick_h264_encoder(("no_such_encoder", "libx264")) == "libx264"
    with pytest.raises(MediaError, match="no usable H.264 encoder"):
        media._pick_h264_encoder(("no_such_encoder", "another_missing_one"))


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    # A phone-style file: landscape pixels plus a display matrix saying "rotate 90 degrees counter-clockwise"
    # (FFmpeg's convention for -display_rotation).
    path = tmp_path / "rot.mp4"
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:8, :8] = 255  # bright block in the stored top-left corner
    _write_with_pyav(path, np.stack([pixels] * 3), "libx264", "yuv420p", "mp4", display_rotation=90)
    video, _ = media.read_video(path)
    assert tuple(video.shape) == (3, 48, 32, 3)
    first = video[0].float().mean(-1)
    # Counter-clockwise quarter turn moves the top-left corner to the bottom-left.
    assert first[-8:, :8].mean() > 200 and first[:8, :8].mean() < 60
    info = media.probe_video(path)
    assert (info["width"], info["height"]) == (32, 48)


# ---------------------------------------------------------------------------------------------------------------
# the release's fixture files (sizes and rates from shared/fixtures/README.md)


@pytest.mark.parametrize(
    ("name", "width", "height", "fps", "frames"),
    [
        ("av_0.mp4", 832, 480, 10, 61),
        ("umi.mp4", 256, 256, 20, 33),
        ("robotics_next_action.mp4", 644, 476, 4, None),
        ("physical_plausibility.mp4", 280, 280, 4, None),
        ("assisted_task_next_action.mp4", 896, 504, 4, None),
    ],
)
def test_fixture_videos(name: str, width: int, height: int, fps: int, frames: int | None) -> None:
    path = VIDEOS / name
    info = media.probe_video(path)
    assert (info["width"], info["height"], info["fps"], info["codec"]) == (width, height, fps, "h264")
    assert info["has_audio"] is False
    if frames is not None:
        assert info["frames"] == frames
    video, got_fps = media.read_video(path)
    assert tuple(video.shape) == (info["frames"], height, width, 3)
    assert got_fps == fps
    # Real footage, not a blank decode.
    assert float(video.float().std()) > 10


def test_fixture_droid_camera_video() -> None:
    path = FIXTURES / "droid_lerobot_example" / "videos" / "observation.image.exterior_image_2_left"
    path = path / "chunk-000" / "file-000.mp4"
    info = media.probe_video(path)
    assert (info["width"], info["height"], info["fps"], info["frames"], info["codec"]) == (640, 360, 15, 722, "h264")
    video, fps = media.read_video(path, max_frames=6)
    assert tuple(video.shape) == (6, 360, 640, 3) and fps == 15


@pytest.mark.parametrize(("name", "size"), [("av_0.jpg", (832, 480)), ("umi.png", (256, 256))])
def test_fixture_images(name: str, size: tuple[int, int]) -> None:
    im = media.read_image(IMAGES / name)
    assert im.mode == "RGB" and im.size == size
    assert float(np.asarray(im).std()) > 10


@pytest.mark.parametrize("name", ["robot_153.jpg", "humanoid_robot.jpg"])
def test_fixture_images_other(name: str) -> None:
    im = media.read_image(IMAGES / name)
    with Image.open(IMAGES / name) as raw:
        assert im.size == raw.size
    assert im.mode == "RGB"


def test_fixtures_untouched_by_reading() -> None:
    before = {p: p.stat().st_mtime_ns for p in VIDEOS.iterdir()}
    media.probe_video(VIDEOS / "umi.mp4")
    assert {p: p.stat().st_mtime_ns for p in VIDEOS.iterdir()} == before


# ---------------------------------------------------------------------------------------------------------------
# images


@pytest.mark.parametrize(("orientation", "turned"), [(1, False), (3, False), (6, True), (8, True)])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, turned: bool) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:6, :6] = (255, 0, 0)  # red mark at the stored top-left
    im = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = media.read_image(path)
    assert out.mode == "RGB"
    assert out.size == ((20, 40) if turned else (40, 20))
    arr = np.asarray(out).astype(int)
    w, h = out.size
    # Where the stored top-left corner must appear when displayed (EXIF spec: 3 = 180, 6 = 90 CW, 8 = 90 CCW).
    corner = {1: (0, 0), 3: (h - 6, w - 6), 6: (0, w - 6), 8: (h - 6, 0)}[orientation]
    block = arr[corner[0] : corner[0] + 6, corner[1] : corner[1] + 6]
    assert block[..., 0].mean() > 180 and block[..., 1].mean() < 80
    # The same rule applies to an already opened PIL image.
    with Image.open(path) as pil:
        assert media.read_image(pil).size == out.size


def test_rgba_palette_greyscale_to_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(media.read_image(tmp_path / "rgba.png"))
    assert out.shape == (4, 4, 3)
    assert tuple(out[1, 1]) == (10, 200, 30)
    assert tuple(out[0, 0]) == (255, 255, 255)

    pal = Image.new("P", (4, 4))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pal.png")
    out = media.read_image(tmp_path / "pal.png")
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 1)) == (0, 0, 255)

    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal_t.png", transparency=0)
    out = media.read_image(tmp_path / "pal_t.png")
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 1)) == (0, 0, 255)

    Image.fromarray(np.full((3, 5), 77, np.uint8), "L").save(tmp_path / "grey.png")
    out = media.read_image(tmp_path / "grey.png")
    assert out.mode == "RGB" and out.size == (5, 3) and out.getpixel((2, 1)) == (77, 77, 77)

    Image.fromarray(np.full((3, 3), 257 * 100, np.uint16)).save(tmp_path / "grey16.png")
    out = media.read_image(tmp_path / "grey16.png")
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (100, 100, 100)

    la = Image.fromarray(np.stack([np.full((2, 2), 50, np.uint8), np.full((2, 2), 255, np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    assert media.read_image(tmp_path / "la.png").getpixel((0, 0)) == (50, 50, 50)


def test_webp_bytes_and_file_objects(tmp_path: Path) -> None:
    arr = smooth_video(1, 24, 32)[0]
    Image.fromarray(arr).save(tmp_path / "a.webp", lossless=True)
    data = (tmp_path / "a.webp").read_bytes()
    for source in (tmp_path / "a.webp", str(tmp_path / "a.webp"), data, io.BytesIO(data)):
        out = media.read_image(source)
        assert out.mode == "RGB" and out.size == (32, 24)
        assert np.array_equal(np.asarray(out), arr)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_image_format(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"pic.{fmt.lower()}"
    Image.new("RGB", (4, 4)).save(path, format=fmt)
    with pytest.raises(MediaError, match="unsupported image format") as exc:
        media.read_image(path)
    assert path.name in str(exc.value) and "PNG" in str(exc.value) and "WEBP" in str(exc.value)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".png", ".JPG"])
def test_write_image_round_trip(tmp_path: Path, ext: str) -> None:
    frame = smooth_video(1, 30, 41)[0]
    out = media.write_image(tmp_path / f"img{ext}", torch.from_numpy(frame))
    back = np.asarray(media.read_image(out)).astype(int)
    assert back.shape == frame.shape
    if ext.lower() == ".png":
        assert np.array_equal(back, frame)
    else:
        assert np.abs(back - frame).mean() < 3
    with Image.open(out) as im:
        assert im.format == ("PNG" if ext.lower() == ".png" else "JPEG")
    # A one-frame video tensor is accepted as an image.
    media.write_image(tmp_path / f"one{ext}", frame[None])
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("name", ["x.gif", "x.webp", "x.mp4", "x"])
def test_write_image_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(MediaError, match="unsupported image extension") as exc:
        media.write_image(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    assert name in str(exc.value) and ".png" in str(exc.value)


@pytest.mark.parametrize(
    "frame", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.uint8)]
)
def test_write_image_bad_frame(tmp_path: Path, frame: np.ndarray) -> None:
    with pytest.raises(MediaError, match=r"uint8 \[H, W, 3\]"):
        media.write_image(tmp_path / "x.png", frame)


# ---------------------------------------------------------------------------------------------------------------
# broken inputs


@pytest.fixture
def broken_files(tmp_path: Path) -> dict[str, Path]:
    media.write_video(tmp_path / "good.mp4", smooth_video(30, 48, 64), 24)
    data = (tmp_path / "good.mp4").read_bytes()
    files = {
        "truncated": tmp_path / "truncated.mp4",
        "text": tmp_path / "notes.mp4",
        "empty": tmp_path / "empty.mp4",
        "missing": tmp_path / "missing.mp4",
    }
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("this is not a video\n" * 50)
    files["empty"].write_bytes(b"")
    return files


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "missing"])
@pytest.mark.parametrize("reader", [media.read_video, media.read_audio, media.probe_video])
def test_broken_videos_raise_media_error(broken_files: dict[str, Path], kind: str, reader: object) -> None:
    path = broken_files[kind]
    with pytest.raises(MediaError) as exc:
        reader(path)  # type: ignore[operator]
    assert isinstance(exc.value, ValueError)
    assert path.name in str(exc.value)
    if kind == "missing":
        assert "not found" in str(exc.value)


def test_truncated_mp4_with_header_at_the_end(tmp_path: Path) -> None:
    # Written without faststart, the index sits at the end, so a cut file has no index at all.
    path = tmp_path / "plain.mp4"
    _write_with_pyav(path, smooth_video(10, 32, 32), "libx264", "yuv420p", "mp4")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 200])
    with pytest.raises(MediaError, match="cut.mp4"):
        media.read_video(cut)


@pytest.mark.parametrize("kind", ["truncated_jpg", "text_png", "missing", "directory"])
def test_broken_images_raise_media_error(tmp_path: Path, kind: str) -> None:
    if kind == "truncated_jpg":
        Image.fromarray(smooth_video(1, 64, 64)[0]).save(tmp_path / "full.jpg", quality=95)
        data = (tmp_path / "full.jpg").read_bytes()
        path = tmp_path / "cut.jpg"
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text_png":
        path = tmp_path / "notes.png"
        path.write_text("hello")
    elif kind == "missing":
        path = tmp_path / "nope.jpg"
    else:
        path = tmp_path / "folder.png"
        path.mkdir()
    with pytest.raises(MediaError) as exc:
        media.read_image(path)
    assert path.name in str(exc.value)


def test_media_error_is_value_error_and_pickles() -> None:
    err = MediaError("/x/y.mp4", "file not found")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.problem, str(back)) == (err.path, err.problem, str(err)) == (
        "/x/y.mp4",
        "file not found",
        "/x/y.mp4: file not found",
    )


def test_written_file_permissions_follow_umask(tmp_path: Path) -> None:
    out = media.write_image(tmp_path / "p.png", np.zeros((2, 2, 3), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
