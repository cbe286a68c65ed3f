"""Prompt text and token ids of a request, checked against the reference pipeline's own tokenize_prompt."""

import json
import random

import pytest
import torch

from cosmos3.action_modes import action_caption
from cosmos3.actions import get_embodiment
from cosmos3.config import Cosmos3Config
from cosmos3.sequence import GenLayout, aspect_label, prompt_ids, prompt_text
from oracle import build_reference_pipeline, random_config


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    cfg = random_config("qwen", rng, sound=False, action=False).replace(vocab_size=300)
    return build_reference_pipeline(tmp_path_factory.mktemp("p"), cfg, gen, sound=False, vae_dim=4)


PROMPTS = ["A red block slides left.", "a cup...", "", "two sentences. here"]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("frames, fps", [(1, 24.0), (189, 24.0), (33, 16.0), (61, 10.0)])
@pytest.mark.parametrize("templates", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("system", [True, False])
def test_ids_match_reference_tokenize_prompt(pipe, prompt, frames, fps, templates, system, rng):
    res, dur = templates
    H, W = rng.choice([(480, 832), (256, 256), (720, 1280)])
    negative = rng.choice([None, "blurry", "low quality."])
    ref_pos, ref_neg = pipe.tokenize_prompt(prompt, negative, num_frames=frames, height=H, width=W, fps=fps,
                                            use_system_prompt=system, add_resolution_template=res,
                                            add_duration_template=dur)
    kw = dict(num_frames=frames, fps=fps, height=H, width=W, use_resolution_template=res, use_duration_template=dur)
    tok = pipe.text_tokenizer
    ours_pos = prompt_ids(tok, prompt_text(prompt, **kw), is_image=frames == 1, use_system_prompt=system)
    ours_neg = prompt_ids(tok, prompt_text(negative or "", negative=True, **kw), is_image=frames == 1,
                          use_system_prompt=system)
    assert ours_pos == ref_pos and ours_neg == ref_neg


def test_template_sentences():
    text = prompt_text("A robot waves.", num_frames=189, fps=24, height=480, width=832)
    assert text == ("A robot waves. The video is 7.9 seconds long and is of 24 FPS. "
                    "This video is of 480x832 resolution.")
    neg = prompt_text("", num_frames=1, fps=24, height=640, width=640, negative=True)
    assert neg == "This image is not of 640x640 resolution."


def test_json_prompts_get_metadata_keys():
    original = {"subjects": [{"description": "a robot"}], "fps": 99}
    text = prompt_text(json.dumps(original), num_frames=33, fps=16, height=192, width=320)
    data = json.loads(text)
    assert data["subjects"] == original["subjects"]
    assert data["duration"] == "2s" and data["fps"] == 16
    assert data["resolution"] == {"H": 192, "W": 320} and data["aspect_ratio"] == "16,9"
    raw = '{"a":  1}'
    assert prompt_text(raw, num_frames=33, fps=16, height=192, width=320, use_resolution_template=False,
                       use_duration_template=False) == raw  # nothing to add: the text is used byte for byte
    assert prompt_text(raw, num_frames=33, fps=16, height=192, width=320, negative=True) == raw
    image = json.loads(prompt_text("{}", num_frames=1, fps=24, height=640, width=640))
    assert "duration" not in image and image["resolution"] == {"H": 640, "W": 640}


@pytest.mark.parametrize("w, h, label", [(832, 480, "16,9"), (640, 640, "1,1"), (544, 736, "3,4"),
                                         (736, 544, "4,3"), (480, 832, "9,16")])
def test_aspect_labels(w, h, label):
    assert aspect_label(w, h) == label


@pytest.mark.parametrize("name, frames, fps", [("umi", 17, 20.0), ("droid_lerobot", 17, 15.0), ("av", 61, 10.0)])
def test_action_caption_matches_reference(name, frames, fps):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import Cosmos3OmniPipeline

    emb = get_embodiment(name)
    for instruction in ["pick up the cup", "Move left!", "  wipe the table  "]:
        ref = Cosmos3OmniPipeline._build_action_json_prompt(instruction, view_point=emb.viewpoint,
                                                            num_frames=frames, fps=fps, height=256, width=320)
        assert action_caption(instruction, emb, frames, fps, 256, 320) == ref


def test_layout_positions_follow_the_prompt_length():
    cfg = Cosmos3Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                        head_dim=32, intermediate_size=64, vocab_size=300, latent_channel=4, patch_latent_dim=16,
                        sound_gen=True, sound_dim=8)
    layout = GenLayout(latent_shape=(4, 3, 4, 6), vision_noisy=torch.ones(3, dtype=torch.bool), fps=24.0,
                       sound_latents=5)
    a, b = layout.positions(cfg, 10), layout.positions(cfg, 17)
    assert a.shape == (3, 3 * 2 * 3 + 5)
    torch.testing.assert_close(b[0] - a[0], torch.full_like(a[0], 7.0))  # only T moves with the prompt length
    assert torch.equal(a[1:], b[1:])
    assert a[0, 0] == 15010 and a[0, -5] == 15010  # sound starts with the video (O = L + 15000)
