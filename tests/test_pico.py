"""The embedded pico model as shipped (src/cosmos3/weights/pico): the default of every surface, loadable by diffusers'
pipeline with the same results, and `cosmos3 demo` writes what it says."""

import json
import random

import numpy as np

from cosmos3.checkpoint import EMBEDDED, resolve_checkpoint
from cosmos3.media import probe_video
from cosmos3.request import read_native_defaults
from cosmos3.train.pico_design import DESIGNS, SHIPPED_DESIGN
from oracle import folder_parity_error
from seeding import fresh_seed

PICO = EMBEDDED["pico"]
NATIVE = DESIGNS[SHIPPED_DESIGN].native  # what the recipe that made the shipped weights sets


def test_shipped_folder_is_small_and_complete():
    size = sum(f.stat().st_size for f in PICO.rglob("*") if f.is_file())
    assert size < 40 * 2**20
    for part in ("transformer", "vae", "scheduler", "text_tokenizer", "sound_tokenizer", "vision_encoder"):
        assert (PICO / part).is_dir(), part
    assert resolve_checkpoint("pico") == PICO
    index = json.loads((PICO / "model_index.json").read_text())
    # the native settings live beside model_index.json, where diffusers does not warn about an unknown key
    assert index["_class_name"] == "Cosmos3OmniPipeline" and "cosmos3_defaults" not in index
    assert json.loads((PICO / "cosmos3_defaults.json").read_text()) == read_native_defaults(PICO) == NATIVE
    from cosmos3.actions import ACTION_STATS_FILE, load_stats_file

    assert set(load_stats_file(PICO / ACTION_STATS_FILE)) == {"umi", "camera_pose"}  # actions learnt normalized


def test_pico_matches_the_reference_pipeline_on_its_own_folder():
    seed = fresh_seed("test_pico.py::test_pico_matches_the_reference_pipeline_on_its_own_folder")
    prompt = random.choice(["A robot gripper pushes the red square to the left.",
                            "A robot gripper picks up the blue circle and moves it up."])
    err = folder_parity_error(PICO, prompt, seed, num_frames=9, height=192, width=320, fps=16.0,
                              num_inference_steps=3, guidance_scale=3.0, flow_shift=3.0, enable_sound=True)
    assert err < 1e-4


def test_demo_writes_every_file(tmp_path):
    from cosmos3.cli import main

    assert main(["demo", "--out", str(tmp_path), "--steps", "2", "--quiet"]) == 0
    rollout = probe_video(tmp_path / "rollout.mp4")
    actions = json.loads((PICO / "demo" / "actions.json").read_text())
    assert len(actions) == 2 * NATIVE["action_chunk_size"]
    assert rollout["frames"] == len(actions) + 1  # two chunks stitched: frame 0 and one frame per action
    clip = probe_video(tmp_path / "t2v.mp4")
    assert (clip["frames"], clip["width"], clip["height"], clip["fps"]) == (NATIVE["num_frames"], 320, 192,
                                                                            NATIVE["fps"])
    assert clip["audio_channels"] == 2 and clip["audio_sample_rate"] == 48000
    policy = np.asarray(json.loads((tmp_path / "policy.json").read_text()))
    assert policy.shape == (NATIVE["action_chunk_size"], 10) and np.isfinite(policy).all()
    answers = (tmp_path / "answers.txt").read_text()
    assert answers.count("Q: ") == 2 and answers.count("A: ") == 2


def test_cli_commands_default_to_pico(capsys):
    from cosmos3.cli import reason_main

    status = reason_main(["--max-tokens", "4", "How many blocks are on the table?"])
    assert status == 0 and capsys.readouterr().out.strip() != ""
