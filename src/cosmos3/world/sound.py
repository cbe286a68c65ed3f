"""Impact sounds for contacts: stereo float32 at 48 kHz, aligned sample-exactly with the video frames.

Each contact start (physics.ContactEvent) rings both bodies for a few tens of milliseconds: a short noise click plus
two damped modes per body (the pitch depends on what was hit: a small triangle rings higher than the wooden rim).
- Loudness grows with the impact's impulse and saturates: amplitude = peak * (1 - exp(-J / J_ref)); touches below
  a minimum impulse are silent.
- Pan follows the contact's horizontal position with a constant-power law: left gain cos(p * pi / 2), right gain
  sin(p * pi / 2), p = x / table width.
- Alignment: frame k's sound is samples [k * S, (k + 1) * S) with S = 48000 / fps (3000 at 16 fps, 2000 at 24 fps);
  an impact that happens at time t starts at sample round(t * 48000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 48000  # DESIGN 2.5: 48 kHz stereo

# Ring frequency (Hz) of each kind of body: first mode; a second mode rings at 2.76x (a free bar's ratio).
PITCH = {"gripper": 1250.0, "rim": 190.0, "square": 540.0, "circle": 680.0, "triangle": 820.0}


@dataclass
class SoundConfig:
    sample_rate: int = SAMPLE_RATE
    impulse_ref: float = 0.006  # N*s; a gripper hitting a block at 0.3 m/s gives ~0.01 (amplitude ~0.8 peak)
    min_impulse: float = 2e-4  # N*s; softer touches make no audible sound
    peak: float = 0.9  # amplitude for the hardest impacts (stays below clipping when two overlap)
    decay_s: float = 0.05  # ring time constant
    click_s: float = 0.003  # length of the noise click at the start of an impact


def samples_per_frame(fps: int, sample_rate: int = SAMPLE_RATE) -> int:
    if sample_rate % fps:
        raise ValueError(f"{sample_rate} Hz does not split into whole samples at {fps} fps")
    return sample_rate // fps


def impact_amplitude(impulse: float, cfg: SoundConfig | None = None) -> float:
    """Peak amplitude of an impact with this impulse (0 below the audible minimum)."""
    cfg = cfg or SoundConfig()
    if impulse < cfg.min_impulse:
        return 0.0
    return cfg.peak * (1.0 - math.exp(-impulse / cfg.impulse_ref))


def pan_gains(x: float, width: float) -> tuple[float, float]:
    """Constant-power (left, right) gains for a sound at horizontal position x on a table of this width."""
    p = min(max(x / width, 0.0), 1.0)
    return math.cos(p * math.pi / 2), math.sin(p * math.pi / 2)


def synthesize(events, num_frames: int, fps: int, table_width: float, seed: int, pitch_of=None,
               cfg: SoundConfig | None = None) -> np.ndarray:
    """Stereo sound [2, num_frames * 48000 / fps] float32 for a list of ContactEvents.

    pitch_of maps a body name from the events ("gripper", "rim", a block color) to its ring frequency; by default
    blocks ring at the square's pitch.
    """
    cfg = cfg or SoundConfig()
    sr = cfg.sample_rate
    n = num_frames * samples_per_frame(fps, sr)
    out = np.zeros((2, n), dtype=np.float64)
    rng = np.random.default_rng(seed)
    ring = int(cfg.decay_s * sr * 6)  # e^-6: inaudible after this
    t = np.arange(ring) / sr
    env = np.exp(-t / cfg.decay_s)
    click_n = int(cfg.click_s * sr)
    pitch_of = pitch_of or (lambda name: PITCH.get(name, PITCH["square"]))
    for ev in events:
        amp = impact_amplitude(ev.impulse, cfg)
        if amp == 0.0:
            continue
        start = int(round(ev.time * sr))
        if start >= n:
            continue
        wave = np.zeros(ring)
        for body in (ev.a, ev.b):
            f = pitch_of(body)
            phase = rng.uniform(0, 2 * math.pi, size=2)
            wave += np.sin(2 * math.pi * f * t + phase[0]) + 0.4 * np.sin(2 * math.pi * 2.76 * f * t + phase[1])
        wave *= env / 2.8  # two bodies with two modes each peak near 2.8
        wave[:click_n] += rng.uniform(-1.0, 1.0, size=click_n) * np.linspace(1.0, 0.0, click_n)
        wave *= amp / max(np.abs(wave).max(), 1e-9)
        gl, gr = pan_gains(ev.x, table_width)
        m = min(ring, n - start)
        out[0, start:start + m] += gl * wave[:m]
        out[1, start:start + m] += gr * wave[:m]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def episode_sound(ep, cfg: SoundConfig | None = None) -> np.ndarray:
    """The sound of a TabletopEpisode: its contact events rendered at its fps."""
    shapes = {b.color: b.shape for b in ep.blocks}
    return synthesize(ep.events, ep.num_frames, ep.fps, ep.table.width, ep.seed,
                      lambda name: PITCH.get(shapes.get(name, name), PITCH["square"]), cfg)


def onsets(sound: np.ndarray, threshold: float = 0.02, min_gap: int = 960) -> list[int]:
    """Sample indices where sound starts after silence (for checking alignment): any channel above threshold."""
    loud = np.abs(sound).max(0) > threshold
    idx = np.flatnonzero(loud)
    if idx.size == 0:
        return []
    starts = [int(idx[0])]
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a > min_gap:
            starts.append(int(b))
    return starts
