import numpy as np
import pytest

from cosmos3.world.episode import simulate_tabletop
from cosmos3.world.physics import ContactEvent
from cosmos3.world.sound import SAMPLE_RATE, episode_sound, impact_amplitude, onsets, synthesize

WIDTH = 0.8  # table width in meters


def one_impact(time=0.5, impulse=0.01, x=0.4, fps=16, frames=17):
    ev = ContactEvent(time, int(np.ceil(time * fps)), "gripper", "red", impulse, x, 0.2)
    return synthesize([ev], frames, fps, WIDTH, seed=0)


@pytest.mark.parametrize("fps,per_frame", [(16, 3000), (24, 2000)])
def test_shape_dtype_and_silence_without_contacts(fps, per_frame):
    s = synthesize([], 33, fps, WIDTH, seed=0)
    assert s.shape == (2, 33 * per_frame) and s.dtype == np.float32
    assert not s.any()


def test_impacts_start_at_their_sample_inside_their_frame():
    hits = 0
    for seed in range(8):
        ep = simulate_tabletop(seed)
        s = episode_sound(ep)
        spf = SAMPLE_RATE // ep.fps
        assert s.shape == (2, ep.num_frames * spf)
        loud = [e for e in ep.events if impact_amplitude(e.impulse) > 0.1]
        for e in loud:
            start = int(round(e.time * SAMPLE_RATE))
            assert np.abs(s[:, start:start + 48]).max() > 0.05  # sound begins right at the impact
            # ... which lies in the audio of the frame interval just before the first frame showing the contact.
            assert (e.frame - 1) * spf <= start <= e.frame * spf
            hits += 1
        for o in onsets(s):  # and every sound onset belongs to a contact
            assert any(abs(o - int(round(e.time * SAMPLE_RATE))) <= 2 for e in ep.events)
    assert hits >= 5


def test_loudness_grows_with_impulse_and_soft_touches_are_silent():
    peaks = [np.abs(one_impact(impulse=j)).max() for j in (0.001, 0.004, 0.01, 0.03)]
    assert all(a < b for a, b in zip(peaks, peaks[1:]))
    assert not one_impact(impulse=1e-5).any()


def test_pan_follows_horizontal_position():
    def balance(x):
        s = one_impact(x=x)
        return np.sqrt((s[1] ** 2).sum() / (s[0] ** 2).sum())  # right / left energy

    assert balance(0.05) < 0.2 and balance(0.75) > 5.0
    assert balance(0.4) == pytest.approx(1.0, rel=1e-3)
    assert balance(0.2) < balance(0.4) < balance(0.6)


def test_sound_is_deterministic():
    ep = simulate_tabletop(4)
    assert np.array_equal(episode_sound(ep), episode_sound(simulate_tabletop(4)))
