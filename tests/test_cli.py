"""The `cosmos3` command, run in-process: outputs, the summary line, and bad options (status 2, one line)."""

import random

import pytest
import torch

from cosmos3.cli import main
from cosmos3.config import PRESETS
from cosmos3.media import probe_video
from oracle import build_reference_pipeline, random_config
from seeding import fresh_seed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    seed = fresh_seed("test_cli.py::checkpoint")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config("qwen", rng).replace(vocab_size=300, num_embodiment_domains=32)
    root = tmp_path_factory.mktemp("ckpt")
    build_reference_pipeline(root, cfg, gen, vae_dim=4)
    return root


def test_info_lists_every_preset_with_its_size(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name, cfg in PRESETS.items():
        assert f"{cfg.param_count():,}" in out and name in out


def test_info_step_times_a_random_network(capsys):
    assert main(["info", "--step"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "velocity finite: True" in out


def test_generate_video_with_sound(checkpoint, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    code = main(["generate", "--checkpoint", str(checkpoint), "a red block slides left", "--num-frames", "9",
                 "--height", "64", "--width", "96", "--fps", "16", "--num-inference-steps", "2", "--seed", "7",
                 "--sound", "--quiet", "-o", str(out)])
    assert code == 0
    info = probe_video(out)
    assert (info["frames"], info["width"], info["height"], info["has_audio"]) == (9, 96, 64, True)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("t2v: 96x64, 9 frames at 16 fps, 2 steps, seed 7") and "peak memory" in summary


def test_generate_policy_writes_actions(checkpoint, tmp_path):
    from cosmos3.actions import load_actions

    from fixture_paths import FIXTURES as fixtures
    out = tmp_path / "p.mp4"
    code = main(["generate", "--checkpoint", str(checkpoint), "grasp the cup", "--action-mode", "policy",
                 "--embodiment", "umi", "--action-chunk-size", "4", "--resolution", "256p",
                 "--image", str(fixtures / "images" / "umi.png"), "--num-inference-steps", "1", "--quiet",
                 "-o", str(out)])
    assert code == 0
    assert probe_video(out)["frames"] == 5
    assert load_actions(out.with_suffix(".json"), "umi").shape == (4, 10)


@pytest.mark.parametrize("argv, message", [
    (["--num-frames", "3"], "num_frames=3"),
    (["--fps", "12"], "fps"),
    (["--guidance-scale", "30"], "guidance_scale"),
    (["--image", "/nonexistent.png"], "--image: no such file"),
    (["-o", "out.gif"], "--output: out.gif must end in"),
    (["--condition-frame-indexes", "a,b"], "expected comma-separated integers"),
    (["--prompt", "x"], "give the prompt once"),
])
def test_bad_options_exit_2_with_one_line(checkpoint, tmp_path, capsys, argv, message):
    base = ["generate", "--checkpoint", str(checkpoint), "prompt", "--quiet"]
    if not any(a in ("-o",) for a in argv):
        base += ["-o", str(tmp_path / "x.mp4")]
    try:
        code = main(base + argv)
    except SystemExit as e:  # argparse's own refusals exit 2 as well
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "none"), "x", "-o", str(tmp_path / "a.mp4")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["generate", "train", "serve", "reason", "world", "demo"])
def test_every_subcommand_has_help(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as e:  # argparse's help exits; some entry points turn that into a return value
        code = e.code
    assert code == 0
    assert "usage:" in capsys.readouterr().out


def test_demo_bad_checkpoint_exits_2(tmp_path, capsys):
    assert main(["demo", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "demo inputs" in capsys.readouterr().err
