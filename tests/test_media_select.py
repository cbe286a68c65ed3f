"""read_video's selection: from a time (episodes concatenated in one file) and by frame index (sampled frames only),
checked by frames that carry their own index as their brightness."""

import numpy as np
import pytest

from cosmos3 import media
from seeding import fresh_seed

FPS = 10


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    n = int(np.random.default_rng(fresh_seed("test_media_select.py::numbered")).integers(18, 30))
    frames = np.stack([np.full((32, 48, 3), 8 * i, np.uint8) for i in range(n)])
    path = tmp_path_factory.mktemp("sel") / "numbered.mp4"
    media.write_video(path, frames, fps=FPS)
    return path, n


def frame_numbers(frames) -> list[int]:
    return [int(round(float(f.float().mean()) / 8)) for f in frames]


def test_start_seeks_to_the_frame_shown_then(numbered):
    path, n = numbered
    rng = np.random.default_rng(fresh_seed("test_media_select.py::test_start_seeks_to_the_frame_shown_then"))
    first = int(rng.integers(1, n - 4))
    frames, fps = media.read_video(path, max_frames=3, start=first / FPS)
    assert fps == pytest.approx(FPS) and frame_numbers(frames) == [first, first + 1, first + 2]


def test_indices_keep_only_the_sampled_frames(numbered):
    path, n = numbered
    rng = np.random.default_rng(fresh_seed("test_media_select.py::test_indices_keep_only_the_sampled_frames"))
    wanted = sorted(rng.choice(n, size=4, replace=False).tolist())
    frames, _ = media.read_video(path, indices=wanted)
    assert frame_numbers(frames) == wanted


def test_indices_count_from_start(numbered):
    path, n = numbered
    frames, _ = media.read_video(path, start=5 / FPS, indices=[0, 2])
    assert frame_numbers(frames) == [5, 7]


@pytest.mark.parametrize("kwargs, problem", [(dict(start=-1.0), "start"), (dict(start=float("nan")), "start"),
                                             (dict(indices=[]), "indices"), (dict(indices=[-2]), "indices")])
def test_bad_selection_is_refused(numbered, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        media.read_video(numbered[0], **kwargs)
