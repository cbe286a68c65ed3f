"""Reading and writing images, video and sound (DESIGN 2.5, 2.7).

Pillow handles still images, PyAV (FFmpeg) handles video and audio. Every failure that comes from the file itself
(missing, truncated, not media, unsupported format) is raised as :class:`MediaError`, a ``ValueError`` whose
message names the file, so the CLI and the server can answer with one line instead of an FFmpeg traceback.

Conventions: frames are uint8 RGB, ``[T, H, W, 3]`` for video and ``[H, W, 3]`` for one image; sound is float32
``[channels, samples]`` in [-1, 1].
"""

from __future__ import annotations

import functools
import io
import math
import numbers
import os
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Union

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation
from PIL import Image, ImageOps

from .fileio import atomic_path

__all__ = [
    "H264_ENCODERS",
    "IMAGE_READ_FORMATS",
    "IMAGE_WRITE_EXTENSIONS",
    "SOUND_CHANNELS",
    "SOUND_SAMPLE_RATE",
    "MediaError",
    "probe_video",
    "read_audio",
    "read_image",
    "read_video",
    "write_image",
    "write_video",
]

PathLike = Union[str, os.PathLike]

# Pillow format names we accept as input (DESIGN 2.7: JPG/JPEG/PNG/WEBP). MPO is what Pillow calls the
# multi-picture JPEGs many phone cameras write; to users they are plain .jpg files.
IMAGE_READ_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
IMAGE_WRITE_EXTENSIONS: dict[str, str] = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}

# Output sound is AAC 48 kHz stereo (DESIGN 2.5): the audio tokenizer works at that rate.
SOUND_SAMPLE_RATE = 48000
SOUND_CHANNELS = 2

# Tried in order. libx264 gives the best quality per bit and honours crf; the others are there so that an FFmpeg
# build without GPL parts (no x264) still writes a playable H.264 file.
H264_ENCODERS: tuple[str, ...] = ("libx264", "libopenh264", "h264_videotoolbox", "h264_mf", "h264_nvenc", "h264_qsv")

# swscale's default YUV -> RGB path rounds fast and shifts colours by about one level; accurate rounding with
# full-resolution chroma interpolation removes that bias for a small extra cost (measured ~2 ms per 480p frame).
_TO_RGB_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

# FFmpeg enum values (AVColorSpace SMPTE170M, AVColorRange MPEG).
_BT601_MATRIX = 6
_LIMITED_RANGE = 1

DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
# Used for encoders without a constant-quality mode; generous, since generated clips are short.
_FALLBACK_BITS_PER_PIXEL = 0.3


class MediaError(ValueError):
    """A media file is missing, corrupt or unsupported. The message names the file and the problem."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def _check_readable(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "file is empty")
    return p


def _to_numpy(array: Any, name: str, path: PathLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise MediaError(path, f"{name} must be a torch tensor or numpy array, got {type(array).__name__}")
    return array


# ---------------------------------------------------------------------------------------------------------------
# images


def _flatten_alpha(im: Image.Image) -> Image.Image:
    # Transparent pixels carry arbitrary colours (often black); a white matte is what viewers show and what the
    # Qwen-VL preprocessing uses, so the model sees the picture the user sees.
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return _flatten_alpha(im)
    if mode.startswith("I;16") or mode == "I":
        # 16-bit greyscale (PNG): Pillow's own I -> RGB conversion clips at 255 instead of scaling.
        arr = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def read_image(source: PathLike | Image.Image | bytes | IO[bytes]) -> Image.Image:
    """Open a JPG/JPEG/PNG/WEBP image (path, bytes, file object, or an already opened PIL image) as RGB.

    The EXIF orientation is applied, so portrait phone photos come out upright; alpha is composited on white;
    palette, greyscale, 16-bit and CMYK images are converted to 8-bit RGB. The result owns its pixels (no open file).
    """
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        try:
            return _to_rgb(ImageOps.exif_transpose(source))
        except (OSError, ValueError, SyntaxError) as exc:
            raise MediaError(name, f"cannot convert image: {exc}") from exc

    if isinstance(source, (bytes, bytearray, memoryview)):
        name, handle = "<bytes>", io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        name, handle = str(getattr(source, "name", "<stream>")), source
    else:
        path = _check_readable(source)
        name, handle = str(path), path

    try:
        with Image.open(handle) as im:
            fmt = im.format
            if fmt not in IMAGE_READ_FORMATS:
                raise MediaError(name, f"unsupported image format {fmt}; allowed: JPG/JPEG, PNG, WEBP")
            # load() forces the full decode here, so truncation is reported now rather than on first use.
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(name, f"image too large: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports unknown data as UnidentifiedImageError (OSError), truncation as OSError, and some
        # corrupt PNG chunks as SyntaxError.
        raise MediaError(name, f"cannot decode image: {exc}") from exc


def write_image(path: PathLike, frame: Any, quality: int = 95) -> Path:
    """Write one uint8 RGB frame ``[H, W, 3]`` (or ``[1, H, W, 3]``, or a PIL image) as .jpg/.jpeg/.png."""
    target = Path(path)
    fmt = IMAGE_WRITE_EXTENSIONS.get(target.suffix.lower())
    if fmt is None:
        allowed = ", ".join(IMAGE_WRITE_EXTENSIONS)
        raise MediaError(target, f"unsupported image extension {target.suffix!r}; allowed: {allowed}")
    if isinstance(frame, Image.Image):
        im = _to_rgb(frame)
    else:
        arr = _to_numpy(frame, "frame", target)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise MediaError(target, f"frame must be uint8 [H, W, 3], got {arr.dtype} {list(arr.shape)}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise MediaError(target, "frame is empty")
        im = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    options: dict[str, Any] = {"quality": quality} if fmt == "JPEG" else {}
    with atomic_path(target) as tmp:
        im.save(tmp, format=fmt, **options)
    return target


# ---------------------------------------------------------------------------------------------------------------
# video and audio input


@contextmanager
def _open_input(path: PathLike) -> Iterator[tuple[Path, Any]]:
    p = _check_readable(path)
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(p, f"not a readable video/audio file ({exc})") from exc
    try:
        _check_not_truncated(p, container)
        yield p, container
    except av.FFmpegError as exc:
        # Raised mid-stream by the demuxer or decoder: truncated or damaged data.
        raise MediaError(p, f"corrupt or truncated media data ({exc})") from exc
    finally:
        container.close()


def _check_not_truncated(path: Path, container: Any) -> None:
    # A cut MP4 whose index survived (index at the front, as faststart writes it) demuxes "successfully" up to the
    # cut and then just stops, so the decoder alone cannot tell a short clip from a damaged one. The index knows
    # where every sample lives; data promised past the end of the file means the file was cut.
    size = path.stat().st_size
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries) == 0:
            continue
        end = max(entry.pos + entry.size for entry in entries)
        if end > size:
            raise MediaError(path, f"truncated: the index refers to {end} bytes but the file has only {size}")


def _refuse_still_image(path: Path, container: Any) -> None:
    # FFmpeg opens a PNG or JPEG as a one-frame "video" (image2 / *_pipe demuxers); a caller who asked for a video
    # and got one frame would silently condition on a still. Animated GIF has a demuxer of its own and passes.
    name = container.format.name
    if name == "image2" or name.endswith("_pipe"):
        raise MediaError(path, f"is a still image ({name.removesuffix('_pipe')}), not a video: pass it as an image")


def _rate_of(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _rotation_turns(frame: Any) -> int:
    # frame.rotation is the display matrix angle, counter-clockwise in degrees (FFmpeg's convention); phones
    # store portrait clips as landscape frames plus this angle. Returned as quarter turns for np.rot90.
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle / 90.0)) % 4


def read_video(path: PathLike, max_frames: int | None = None, *, start: float = 0.0,
               indices: Sequence[int] | None = None) -> tuple[torch.Tensor, float]:
    """Decode a video (MP4 or anything FFmpeg reads) to uint8 RGB frames ``[T, H, W, 3]`` and its fps.

    Sizes are kept as they are (odd widths and heights included); display rotation metadata is applied.
    ``max_frames`` stops decoding early, to bound memory on long inputs. ``start`` (seconds) seeks to the frame
    shown at that time (to within half a frame): episodes concatenated in one file are read this way. ``indices``
    keeps only those frames (counted from ``start``), so memory holds the sampled frames alone.
    """
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if not (isinstance(start, numbers.Real) and math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start!r}")
    wanted = sorted({int(i) for i in indices}) if indices is not None else None
    if wanted is not None and (not wanted or wanted[0] < 0):
        raise ValueError(f"indices must be non-empty and >= 0, got {indices!r}")
    keep = set(wanted or ())
    frames: list[np.ndarray] = []
    times: list[float] = []
    with _open_input(path) as (p, container):
        if not container.streams.video:
            raise MediaError(p, "no video stream")
        _refuse_still_image(p, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _rate_of(stream)
        half_frame = 0.5 / (fps or 30.0)
        if start > half_frame and stream.time_base is not None:
            container.seek(int((start - half_frame) / stream.time_base), stream=stream, backward=True)
        size: tuple[int, int] | None = None
        index = -1
        for frame in container.decode(stream):
            if start and frame.time is not None and frame.time < start - half_frame:
                continue  # the seek lands on the key frame before `start`
            index += 1
            if wanted is not None and index not in keep:
                if index > wanted[-1]:
                    break
                continue
            # A stream may change resolution mid-way; scale later frames to the first one so they stack.
            if size is None:
                size = (frame.width, frame.height)
            arr = frame.to_ndarray(
                width=size[0],
                height=size[1],
                format="rgb24",
                interpolation=_TO_RGB_FLAGS,
                src_color_range=frame.color_range,
            )
            turns = _rotation_turns(frame)
            if turns:
                arr = np.ascontiguousarray(np.rot90(arr, k=turns, axes=(0, 1)))
            frames.append(arr)
            if frame.time is not None:
                times.append(float(frame.time))
            if max_frames is not None and len(frames) >= max_frames:
                break
            if wanted is not None and index >= wanted[-1]:
                break
    if not frames:
        raise MediaError(p, "no decodable video frames")
    if fps is None:
        if len(times) >= 2 and times[-1] > times[0]:
            fps = (len(times) - 1) / (times[-1] - times[0])
        else:
            raise MediaError(p, "cannot determine the frame rate")
    return torch.from_numpy(np.stack(frames)), fps



def video_frames(video: Any) -> list[Image.Image]:
    """A conditioning clip as RGB PIL frames: a file path, a list of frames (PIL images, uint8 arrays, paths), or
    uint8 frames [T, H, W, 3] (array or tensor)."""
    if isinstance(video, (str, os.PathLike)):
        video, _ = read_video(video)
    if isinstance(video, (torch.Tensor, np.ndarray)):
        array = np.asarray(video)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"video: expected uint8 frames [T, H, W, 3], got {array.dtype} {tuple(array.shape)}")
        return [Image.fromarray(f) for f in array]
    if isinstance(video, (list, tuple)) and video:
        return [Image.fromarray(np.asarray(f)) if isinstance(f, (np.ndarray, torch.Tensor)) else read_image(f)
                for f in video]
    raise ValueError("video: expected a path, a list of frames, or uint8 frames [T, H, W, 3]")

def read_audio(path: PathLike) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of a media file to float32 ``[channels, samples]`` and its sample rate."""
    chunks: list[np.ndarray] = []
    with _open_input(path) as (p, container):
        if not container.streams.audio:
            raise MediaError(p, "no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        # Planar float keeps every channel and the native rate; only the sample format is normalised.
        resampler = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            rate = rate or int(frame.sample_rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or rate <= 0:
        raise MediaError(p, "no decodable audio samples")
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(samples)), rate


def probe_video(path: PathLike) -> dict[str, Any]:
    """Describe a video without decoding all of it.

    Returns ``frames, width, height, fps, has_audio, audio_channels, audio_sample_rate, codec``; width and height
    are as :func:`read_video` returns them (after display rotation). Audio fields are None without audio.
    """
    with _open_input(path) as (p, container):
        if not container.streams.video:
            raise MediaError(p, "no video stream")
        _refuse_still_image(p, container)
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = _rate_of(stream)
        count = int(stream.frames or 0)
        # One decoded frame gives the rotation and proves the stream decodes at all.
        first = next(iter(container.decode(stream)), None)
        if first is None:
            raise MediaError(p, "no decodable video frames")
        if _rotation_turns(first) % 2:
            width, height = height, width
        if count <= 0:
            # Containers without a frame count (some MKV/WebM): count packets, which needs no decoding.
            container.seek(0)
            count = sum(1 for pkt in container.demux(stream) if pkt.size)
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "frames": count,
            "width": int(width),
            "height": int(height),
            "fps": fps,
            "has_audio": audio is not None,
            "audio_channels": int(audio.codec_context.channels) if audio is not None else None,
            "audio_sample_rate": int(audio.codec_context.sample_rate) if audio is not None else None,
            "codec": codec,
        }
    return info


# ---------------------------------------------------------------------------------------------------------------
# video output


@functools.lru_cache(maxsize=None)
def _pick_h264_encoder(candidates: tuple[str, ...] = H264_ENCODERS) -> str:
    """First encoder in ``candidates`` that this FFmpeg build has and that actually opens.

    Opening a tiny context weeds out hardware encoders that are compiled in but have no device behind them.
    """
    for name in candidates:
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
            ctx.time_base = Fraction(1, 24)
            ctx.open()
        except (av.FFmpegError, ValueError, OSError):
            continue
        return name
    raise MediaError("<encoder>", f"no usable H.264 encoder in this FFmpeg build (tried {', '.join(candidates)})")


def _exact_rate(fps: Any, path: PathLike) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(float(fps)) or fps <= 0:
        raise MediaError(path, f"fps must be a positive number, got {fps!r}")
    exact = Fraction(int(fps)) if isinstance(fps, numbers.Integral) else Fraction(float(fps))
    # Integers stay exact (24 -> 24/1); NTSC-style floats land on their usual fraction (29.97 -> 2997/100).
    return exact.limit_denominator(1001)


def _prepare_frames(frames: Any, path: PathLike) -> np.ndarray:
    arr = _to_numpy(frames, "frames", path)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise MediaError(path, f"frames must be uint8 [T, H, W, 3], got {arr.dtype} {list(arr.shape)}")
    if min(arr.shape[:3]) == 0:
        raise MediaError(path, f"frames are empty: {list(arr.shape)}")
    # yuv420p stores chroma at half resolution, so H.264 needs even sides. Odd sizes are padded by one row/column
    # that repeats the edge (invisible at the border, no frame content lost) rather than cropped; a reader then
    # sees the size rounded up to even.
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _prepare_sound(sound: Any, sample_rate: Any, path: PathLike) -> np.ndarray:
    arr = _to_numpy(sound, "sound", path)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise MediaError(path, f"sample_rate must be a positive integer, got {sample_rate!r}")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] not in (1, SOUND_CHANNELS) or arr.shape[1] == 0:
        raise MediaError(path, f"sound must be float [2, N] (or mono [1, N] / [N]), got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MediaError(path, f"sound must be floating point in [-1, 1], got {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise MediaError(path, "sound contains NaN or infinite samples")
    if arr.shape[0] == 1:
        arr = np.repeat(arr, SOUND_CHANNELS, axis=0)
    # Generated audio can overshoot slightly; clip rather than let the encoder wrap or distort.
    return np.ascontiguousarray(np.clip(arr, -1.0, 1.0))


def _encode_sound(stream: Any, sound: np.ndarray, sample_rate: int) -> list[Any]:
    """Encode the whole track up front into AAC packets (small), so they can be interleaved with video."""
    frame = av.AudioFrame.from_ndarray(sound, format="fltp", layout="stereo")
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    # The resampler both converts the rate to 48 kHz and cuts the track into the encoder's 1024-sample frames.
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SOUND_SAMPLE_RATE, frame_size=1024)
    packets: list[Any] = []
    offset = 0
    for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
        chunk.pts = offset
        chunk.time_base = Fraction(1, SOUND_SAMPLE_RATE)
        offset += chunk.samples
        packets.extend(stream.encode(chunk))
    packets.extend(stream.encode(None))
    return packets


def _packet_time(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


def write_video(
    path: PathLike,
    frames: Any,
    fps: float,
    sound: Any = None,
    sample_rate: int = SOUND_SAMPLE_RATE,
    *,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> Path:
    """Write uint8 RGB frames ``[T, H, W, 3]`` as an H.264 (yuv420p) MP4 at exactly ``fps``.

    ``sound`` (float [2, N] in [-1, 1] at ``sample_rate``) is muxed as AAC 48 kHz stereo. ``crf``/``preset``
    apply to libx264 (lower crf = higher quality). Odd sizes are padded to even by edge replication. The file
    appears atomically: it is written beside the target and renamed when complete.
    """
    target = Path(path)
    rate = _exact_rate(fps, target)
    video = _prepare_frames(frames, target)
    audio = None if sound is None else _prepare_sound(sound, sample_rate, target)
    encoder = _pick_h264_encoder()
    _, height, width, _ = video.shape

    with atomic_path(target) as tmp:
        try:
            with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
                vstream = container.add_stream(encoder, rate=rate)
                vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
                vstream.codec_context.time_base = Fraction(rate.denominator, rate.numerator)
                # PyAV converts RGB with the BT.601 matrix into limited range; say so in the stream, since players
                # guess BT.709 for untagged HD video and would shift the colours.
                vstream.codec_context.colorspace = _BT601_MATRIX
                vstream.codec_context.color_range = _LIMITED_RANGE
                if encoder == "libx264":
                    vstream.options = {"crf": str(int(crf)), "preset": preset}
                else:
                    vstream.bit_rate = int(_FALLBACK_BITS_PER_PIXEL * width * height * float(rate))
                pending: deque[Any] = deque()
                if audio is not None:
                    astream = container.add_stream("aac", rate=SOUND_SAMPLE_RATE, layout="stereo")
                    astream.bit_rate = 192_000
                    pending = deque(_encode_sound(astream, audio, int(sample_rate)))

                def mux_video(packets: list[Any]) -> None:
                    # Interleave by time so players read audio and video from nearby file positions.
                    for packet in packets:
                        t = _packet_time(packet)
                        while pending and _packet_time(pending[0]) <= t:
                            container.mux(pending.popleft())
                        container.mux(packet)

                for i, pixels in enumerate(video):
                    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    frame.pts = i
                    mux_video(vstream.encode(frame))
                mux_video(vstream.encode(None))
                for packet in pending:
                    container.mux(packet)
        except av.FFmpegError as exc:
            raise MediaError(target, f"encoding failed ({exc})") from exc
    return target
