"""A still image given where a video is expected is refused by name, never read as a one-frame clip."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos3 import media
from cosmos3.cli import main
from cosmos3.media import MediaError
from seeding import fresh_seed


@pytest.fixture
def still(tmp_path: Path, request) -> Path:
    path = tmp_path / f"still.{request.param}"
    rng = np.random.default_rng(fresh_seed("test_media_still.py::still"))
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("still", ["png", "jpg", "webp", "bmp", "tiff"], indirect=True)
@pytest.mark.parametrize("reader", [media.probe_video, media.read_video], ids=["probe", "read"])
def test_still_image_is_not_a_video(still, reader):
    with pytest.raises(MediaError, match="still image"):
        reader(still)


def test_a_real_video_still_reads(tmp_path):
    path = tmp_path / "clip.mp4"
    media.write_video(path, np.zeros((5, 32, 48, 3), np.uint8), fps=8)
    assert media.probe_video(path)["frames"] == 5


@pytest.mark.parametrize("still", ["png"], indirect=True)
def test_reason_video_refuses_a_still_image(still, capsys):
    assert main(["reason", "--video", str(still), "what happens?"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "still image" in err and str(still) in err
