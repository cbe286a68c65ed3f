"""`cosmos3 generate --help` and `cosmos3 info --checkpoint` state the defaults generate really uses; a request with
nothing to generate from exits 2 with one line; a plain run of pico prints no warning."""

import logging
import re
import warnings

import pytest

from cosmos3.checkpoint import EMBEDDED
from cosmos3.cli import main
from cosmos3.request import native_value, read_native_defaults
from cosmos3.train.pico_design import DESIGNS, SHIPPED_DESIGN

PICO = EMBEDDED["pico"]
FRAMES = DESIGNS[SHIPPED_DESIGN].native["num_frames"]  # the shipped pico's recipe


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_generate_help_shows_the_native_defaults(capsys):
    text = _help(capsys)
    native = read_native_defaults(PICO)
    for key in ("num_frames", "fps", "resolution", "aspect_ratio"):
        value = native_value(native, key)
        assert f"(pico: {value:g};" in text if isinstance(value, (int, float)) else f"(pico: {value};" in text, key
    steps = [native_value(native, k) for k in ("num_inference_steps", "image_num_inference_steps",
                                               "action_num_inference_steps")]
    assert f"(pico: {steps[0]}; images {steps[1]}; actions {steps[2]};" in text
    assert "checkpoints without one: 35; images 50; actions 30" in text
    assert "default 189" not in text and "default 24)" not in text  # the release's, stated as if they applied


def test_help_matches_what_generate_resolves(capsys):
    """The numbers --help prints are the ones the resolver fills in on pico (no model work)."""
    from cosmos3.generator import Generator

    text = _help(capsys)
    gen = Generator.__new__(Generator)  # the resolver's defaults need only the native settings
    gen.defaults = read_native_defaults(PICO)
    frames = int(re.search(r"--num-frames NUM_FRAMES .*?\(pico: (\d+);", text).group(1))
    fps = float(re.search(r"--fps FPS .*?\(pico: ([\d.]+);", text).group(1))
    from cosmos3.request import _native

    assert (_native(gen, None, "num_frames"), float(_native(gen, None, "fps"))) == (frames, fps)


def test_info_prints_the_checkpoint_native_settings(capsys):
    assert main(["info", "--checkpoint", "pico"]) == 0
    out = capsys.readouterr().out
    assert "native settings (cosmos3_defaults.json)" in out
    assert f"256p 16:9, {FRAMES} frames, 16 fps, 20 steps, guidance 3" in out
    assert "camera_pose, umi" in out


def test_info_of_a_missing_checkpoint_exits_2(tmp_path, capsys):
    assert main(["info", "--checkpoint", str(tmp_path / "none")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--prompt", "  "]])
def test_nothing_to_generate_from_exits_2_before_loading(tmp_path, capsys, argv, monkeypatch):
    from cosmos3 import generator

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(generator.Generator, "from_pretrained", no_load)
    assert main(["generate", *argv, "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt: empty, with no image, video or actions" in err[0]


def test_plain_pico_run_prints_no_warning(tmp_path, capsys, caplog):
    out = tmp_path / "x.mp4"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert main(["generate", "A robot gripper pushes the red square to the left.", "-o", str(out),
                     "--num-inference-steps", "1", "--quiet"]) == 0
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    captured = capsys.readouterr()
    assert "warn" not in captured.err.lower() and captured.out.startswith(f"t2v: 320x192, {FRAMES} frames at 16 fps")


def test_loading_without_accelerate_is_quiet(monkeypatch, capfd):
    """A plain install has no `accelerate`: diffusers would fall back to its ordinary load with a warning that reads
    like a broken setup; the loaders ask for that load outright."""
    import torch
    import diffusers.models.modeling_utils as modeling_utils
    import diffusers.utils

    from cosmos3.vae import SoundCodec, VideoVAE

    monkeypatch.setattr(modeling_utils, "is_accelerate_available", lambda: False)
    monkeypatch.setattr(diffusers.utils, "is_accelerate_available", lambda: False)
    VideoVAE.from_pretrained(PICO / "vae", torch.device("cpu"), torch.float32)
    SoundCodec.from_pretrained(PICO / "sound_tokenizer", torch.device("cpu"), torch.float32)
    captured = capfd.readouterr()
    assert "accelerate" not in captured.err + captured.out
