"""MP4 files for the world: H.264 video with lossless FLAC sound, written byte-for-byte reproducibly.

Why these choices:
- H.264 (libx264, yuv420p) plays everywhere and is what LeRobot datasets and the release use.
- Sound is muxed into the same MP4 as FLAC: lossless, so the impact sounds read back exactly (sample for sample),
  mostly-silent tracks compress to almost nothing, and there is no AAC priming delay to undo. PyAV and ffmpeg
  read it like any other audio stream.
- Determinism: one encoder thread, the muxer's and codec's `bitexact` flags (no library version strings or
  creation times), fixed x264 settings. The same frames and samples then give the same bytes on the same
  libraries. (Different ffmpeg/x264 builds may encode differently; decoded frames stay equal within the codec's
  own determinism.)
- Several episodes may share one file (LeRobot v3 concatenates them): each episode starts on a keyframe so a
  reader can seek straight to it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..media import MediaError, read_video

CRF = 18  # visually lossless for flat synthetic colors; keeps tracking on decoded video within ~1 px
PRESET = "veryfast"


class Mp4Writer:
    """Append episodes (frames + optional stereo sound) to one MP4 file."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int, sample_rate: int | None = 48000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.sample_rate = sample_rate
        self.container = av.open(str(self.path), "w", format="mp4", options={"fflags": "+bitexact"})
        self.v = self.container.add_stream("libx264", rate=fps)
        self.v.width, self.v.height, self.v.pix_fmt = width, height, "yuv420p"
        cc = self.v.codec_context
        cc.thread_count = 1
        cc.options = {"crf": str(CRF), "preset": PRESET, "threads": "1", "flags": "+bitexact"}
        self.a = None
        if sample_rate:
            self.a = self.container.add_stream("flac", rate=sample_rate, layout="stereo")
            self.a.codec_context.options = {"flags": "+bitexact"}
        self.frames_written = 0
        self.samples_written = 0

    def add(self, frames: np.ndarray, sound: np.ndarray | None = None) -> float:
        """Append an episode; returns its start time in seconds within the file."""
        start = self.frames_written / self.fps
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = self.frames_written
            if i == 0:
                vf.pict_type = av.video.frame.PictureType.I  # seekable episode start
            for packet in self.v.encode(vf):
                self.container.mux(packet)
            self.frames_written += 1
        if self.a is not None:
            if sound is None:
                sound = np.zeros((2, int(round(len(frames) * self.sample_rate / self.fps))), np.float32)
            s16 = np.round(np.clip(sound, -1.0, 1.0) * 32767.0).astype(np.int16)
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(s16.T.reshape(1, -1)), format="s16",
                                            layout="stereo")
            af.sample_rate = self.sample_rate
            af.pts = self.samples_written
            for packet in self.a.encode(af):
                self.container.mux(packet)
            self.samples_written += s16.shape[1]
        return start

    def close(self) -> None:
        for packet in self.v.encode(None):
            self.container.mux(packet)
        if self.a is not None:
            for packet in self.a.encode(None):
                self.container.mux(packet)
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, sound: np.ndarray | None = None) -> Path:
    """One clip to one file. sound: [2, N] float32 at 48 kHz, or None for a silent video without audio track."""
    T, H, W, _ = frames.shape
    with Mp4Writer(path, W, H, fps, 48000 if sound is not None else None) as w:
        w.add(frames, sound)
    return Path(path)


def read_frames(path: str | Path, start_s: float = 0.0, count: int | None = None) -> np.ndarray:
    """Decode frames [count, H, W, 3] uint8 starting at the frame whose timestamp is start_s (to within half a
    frame). count=None reads to the end of the file."""
    try:
        frames, _ = read_video(path, max_frames=count, start=start_s)
    except MediaError as e:
        raise ValueError(f"{path}: no frames at {start_s:.3f} s ({e})") from None
    return frames.numpy()


def read_sound(path: str | Path, start_s: float = 0.0, duration_s: float | None = None) -> np.ndarray:
    """Decode the audio track as float32 [channels, N] in [-1, 1], sliced to [start_s, start_s + duration_s)."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            raise ValueError(f"{path} has no audio track")
        a = c.streams.audio[0]
        sr = a.codec_context.sample_rate
        chunks = [f.to_ndarray() for f in c.decode(a)]
    planar = np.concatenate(chunks, axis=-1)
    channels = a.codec_context.channels if hasattr(a.codec_context, "channels") else 2
    if planar.shape[0] == 1 and channels > 1:  # packed (interleaved) samples
        planar = planar.reshape(-1, channels).T
    x = planar.astype(np.float32)
    if np.issubdtype(planar.dtype, np.integer):
        x /= float(np.iinfo(planar.dtype).max + 1)
    i0 = int(round(start_s * sr))
    i1 = None if duration_s is None else i0 + int(round(duration_s * sr))
    return x[:, i0:i1]
