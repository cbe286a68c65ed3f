"""`cosmos3 generate --control KIND[:PATH][:WEIGHT] --control-source RGB --control-guidance G`: a transfer run, and
bad controls refused with exit status 2 and one line naming the problem (before or without any model work)."""

import numpy as np
import pytest

from cosmos3.cli import main
from cosmos3.media import probe_video, write_video
from oracle import tiny_generator_checkpoint

RUN = ["--num-frames", "5", "--height", "64", "--width", "64", "--num-inference-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control_clips")
    rng = np.random.default_rng(4)
    return {name: write_video(folder / f"{name}.mp4", rng.integers(0, 255, (t, 64, w, 3), dtype=np.uint8), 16)
            for name, (t, w) in {"map": (5, 64), "rgb": (7, 64), "short": (3, 64), "wide": (5, 128)}.items()}


def test_transfer_run(tmp_path_factory, clips, tmp_path):
    ckpt = tiny_generator_checkpoint(tmp_path_factory)
    out = tmp_path / "out.mp4"
    code = main(["generate", "a red cube", "--checkpoint", str(ckpt), "-o", str(out), *RUN,
                 "--control", f"depth:{clips['map']}:0.5", "--control", "edge", "--control-source",
                 str(clips["rgb"]), "--control-guidance", "1.5", "--control-guidance-interval", "200,900"])
    assert code == 0 and probe_video(out)["frames"] == 5


@pytest.mark.parametrize("flags, words", [
    (["--control", "canny:{map}"], "unknown kind 'canny'"),
    (["--control", "edge"], "--control edge: no control video"),
    (["--control", "depth:{map}", "--control-source", "{rgb}"], "--control-source: no --control"),
    (["--control", "depth"], "--control depth: no control video"),
    (["--control", "depth", "--control-source", "{rgb}"], "a depth map cannot be computed"),
    (["--control", "depth:{map}:-1"], "weight must be a finite number >= 0"),
    (["--control", "depth:{short}"], "has 3 frames; the output has 5"),
    (["--control", "depth:{wide}"], "aspect ratios differ"),
    (["--control", "seg:{map}", "--control", "seg:{map}"], "seg given twice"),
    (["--control-guidance", "2"], "control_guidance: needs controls"),
    (["--control", "seg:{map}", "--control-guidance-interval", "900,100"], "control_guidance_interval: expected"),
    (["--control", "wsm:{map}", "--control-guidance", "12"], "control_guidance: expected a number in [0, 10]"),
])
def test_bad_controls_exit_2(tmp_path_factory, clips, tmp_path, capsys, flags, words):
    ckpt = tiny_generator_checkpoint(tmp_path_factory)
    flags = [f.format(**{k: str(v) for k, v in clips.items()}) for f in flags]
    code = main(["generate", "a red cube", "--checkpoint", str(ckpt), "-o", str(tmp_path / "o.mp4"), *RUN, *flags])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.mp4").exists()
