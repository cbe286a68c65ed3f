"""The one request resolver: `generate(...) == run(resolve(...))` in every mode, a resolved request is complete
(its explicit arguments resolve to itself), native settings from cosmos3_defaults.json, one-time warnings for what a
checkpoint was not trained for, the no-input error, and one action caption for inference and training."""

import json
import random
import warnings
from dataclasses import fields

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.actions import ActionStats, get_embodiment
from cosmos3.generator import Generator
from cosmos3.request import DEFAULTS_FILE, GenRequest, read_native_defaults
from oracle import build_reference_pipeline, random_config

from fixture_paths import FIXTURES
from seeding import fresh_seed

IMAGE = FIXTURES / "images" / "umi.png"
VIDEO = FIXTURES / "videos" / "umi.mp4"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    seed = fresh_seed("test_resolve.py::checkpoint")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config("qwen", rng).replace(vocab_size=300, action_dim=64, num_embodiment_domains=32)
    root = tmp_path_factory.mktemp("ckpt")
    build_reference_pipeline(root, cfg, gen, flow_shift=5.0, vae_dim=4)
    return root


@pytest.fixture(scope="module")
def generator(checkpoint):
    return Generator.from_pretrained(checkpoint)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


SMALL = dict(num_frames=5, height=64, width=64, fps=16, num_inference_steps=2, progress=False)
MODES = {
    "t2i": dict(num_frames=1, height=64, width=64, num_inference_steps=2, progress=False),
    "t2v": SMALL,
    "t2v-sound": dict(SMALL, num_frames=9, enable_sound=True),
    "i2v": dict(SMALL, image=IMAGE),
    "v2v": dict(SMALL, num_frames=9, video=VIDEO, condition_frame_indexes=[0]),
    "policy": dict(action_mode="policy", embodiment="umi", action_chunk_size=4, resolution="256p", image=IMAGE,
                   num_inference_steps=2, progress=False),
    "forward_dynamics": dict(action_mode="forward_dynamics", embodiment="umi", action_chunk_size=4,
                             resolution="256p", image=IMAGE, num_inference_steps=2, progress=False,
                             actions=np.linspace(-1, 1, 10 * 10).reshape(10, 10)),  # 3 chunks: a rollout
    "inverse_dynamics": dict(action_mode="inverse_dynamics", embodiment="umi", action_chunk_size=4,
                             resolution="256p", video=VIDEO, num_inference_steps=2, guidance_scale=2.0,
                             progress=False),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_generate_is_run_of_resolve(generator, mode, seed):
    kw = MODES[mode]
    req = _quiet(generator.resolve, "pick up the cup", seed=seed, **kw)
    assert isinstance(req, GenRequest) and req.mode == mode.split("-")[0]
    direct = _quiet(generator.generate, "pick up the cup", seed=seed, **kw)
    staged = _quiet(generator.run, req)
    assert torch.equal(direct.latents, staged.latents) and torch.equal(direct.frames, staged.frames)
    assert (direct.sound is None) == (staged.sound is None) and (direct.actions is None) == (staged.actions is None)
    if direct.sound is not None:
        assert torch.equal(direct.sound, staged.sound)
    if direct.actions is not None:
        assert torch.equal(direct.actions, staged.actions)
    assert direct.frames.shape[0] == req.total_frames and direct.fps == req.fps and direct.mode == req.mode
    # the request's explicit arguments resolve to the same request (what a server queues after validating)
    again = _quiet(generator.resolve, **req.as_kwargs(), progress=False)
    for f in fields(GenRequest):
        if f.name not in ("action", "actions_arg", "image", "video"):
            assert getattr(again, f.name) == getattr(req, f.name), f.name


def test_resolve_draws_the_seed_so_runs_repeat(generator):
    req = _quiet(generator.resolve, "a red block", **SMALL)
    assert isinstance(req.seed, int)
    assert torch.equal(generator.run(req).latents, generator.run(req).latents)


@pytest.mark.parametrize("kwargs", [dict(), dict(prompt=""), dict(prompt="   \n"), dict(negative_prompt="blurry")])
def test_no_prompt_and_no_conditioning_is_an_error(generator, kwargs):
    with pytest.raises(ValueError, match="prompt: empty, with no image, video or actions") as err:
        generator.generate(**kwargs, **SMALL)
    assert err.value.field == "prompt"
    assert _quiet(generator.resolve, "", image=IMAGE, **SMALL).mode == "i2v"  # conditioning alone is a request


def test_refusals_name_their_field(generator):
    cases = [(dict(num_inference_steps=0), "num_inference_steps"), (dict(guidance_scale=21), "guidance_scale"),
             (dict(flow_shift=0), "flow_shift"), (dict(seed=-1), "seed"), (dict(num_frames=3), "num_frames"),
             (dict(image=IMAGE, video=VIDEO), "image"), (dict(image="/nonexistent.png"), "image"),
             (dict(sampler="ddim"), "sampler"), (dict(guidance_interval=(0.5, 0.1)), "guidance_interval"),
             (dict(action_mode="policy", embodiment="umi", image=IMAGE, num_frames=9), "num_frames"),
             (dict(embodiment="umi"), "action_mode")]
    for change, field in cases:
        with pytest.raises(ValueError) as err:
            base = {} if "embodiment" in change else SMALL  # action modes take no size
            _quiet(generator.resolve, "x", **{**base, **change})
        assert err.value.field == field, (change, str(err.value))


def test_native_settings_file_and_the_old_key(tmp_path, checkpoint):
    native = {"resolution": "256p", "num_frames": 17, "fps": 16, "num_inference_steps": 3}
    assert read_native_defaults(checkpoint) == {}
    old = tmp_path / "old"
    old.mkdir()
    (old / "model_index.json").write_text(json.dumps({"_class_name": "Cosmos3OmniPipeline",
                                                      "cosmos3_defaults": native}))
    assert read_native_defaults(old) == native  # older folders keep them in model_index.json
    new = tmp_path / "new"
    new.mkdir()
    (new / "model_index.json").write_text(json.dumps({"_class_name": "Cosmos3OmniPipeline"}))
    (new / DEFAULTS_FILE).write_text(json.dumps(native))
    assert read_native_defaults(new) == native


def test_native_settings_fill_what_a_call_leaves_out(generator, monkeypatch):
    monkeypatch.setattr(generator, "defaults", {"resolution": "256p", "aspect_ratio": "16:9", "num_frames": 17,
                                                "fps": 16, "num_inference_steps": 3, "guidance_scale": 2.0,
                                                "flow_shift": 3.0, "action_chunk_size": 8})
    video = _quiet(generator.resolve, "x")
    assert (video.width, video.height, video.num_frames, video.fps, video.steps, video.guidance, video.shift) == (
        320, 192, 17, 16.0, 3, 2.0, 3.0)
    image = _quiet(generator.resolve, "x", num_frames=1)
    assert (image.width, image.height) == (256, 256) and image.steps == 3  # text-to-image stays square
    policy = _quiet(generator.resolve, "x", action_mode="policy", embodiment="umi", image=IMAGE)
    assert (policy.tier, policy.action.chunk, policy.fps, policy.steps, policy.shift) == (256, 8, 16.0, 30, 3.0)


def test_untrained_settings_warn_once(generator, monkeypatch):
    monkeypatch.setattr(generator, "defaults", {"resolution": "256p"})
    monkeypatch.setattr(generator, "action_stats", {"umi": ActionStats.from_dict({
        "mean": [0.0] * 10, "std": [1.0] * 10, "q01": [-1.0] * 10, "q99": [1.0] * 10})})
    monkeypatch.setattr(generator, "_warned", set())
    policy = dict(action_mode="policy", image=IMAGE, resolution="256p")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generator.resolve("x", embodiment="umi", **policy)  # trained: quiet
        assert [str(w.message) for w in caught] == []
        generator.resolve("x", embodiment="droid_lerobot", **policy)
        generator.resolve("x", embodiment="droid_lerobot", **policy)
        generator.resolve("x", resolution="480p", num_frames=5)
        generator.resolve("x", resolution="480p", num_frames=5)
        monkeypatch.setattr(generator, "defaults", {"modes": ["t2v", "policy"]})
        generator.resolve("x", num_frames=5, height=64, width=64)
        generator.resolve("x", num_frames=5, height=64, width=64, image=IMAGE)
        generator.resolve("x", num_frames=5, height=64, width=64, image=IMAGE)
    messages = [str(w.message) for w in caught if "published resolutions" not in str(w.message)]
    assert len(messages) == 3, messages  # each once
    assert "no action statistics for embodiment droid_lerobot" in messages[0]
    assert "trained at 256p" in messages[1]
    assert "not trained for i2v (it learnt t2v, policy)" in messages[2]
    assert all("\n" not in m for m in messages)


# ------------------------------------------------------------------------------------------------ one caption


def _inference_caption(generator, monkeypatch, **kw) -> str:
    """The positive branch's text the Generator's action path reads (captured at tokenization)."""
    import cosmos3.generator as module

    seen = []

    class Stop(Exception):
        pass

    def capture(tokenizer, cfg, text, **_):
        seen.append(text)
        raise Stop

    monkeypatch.setattr(module, "branch_inputs", capture)
    with pytest.raises(Stop):
        _quiet(generator.generate, **kw)
    monkeypatch.undo()
    return seen[0]


def _training_caption(generator, monkeypatch, *, task, embodiment, frames, fps, height, width, mode) -> str:
    """The text training reads for the same clip: a LeRobot sample's caption (train/data.py) through prepare_gen's
    prompt templates (train/batch.py)."""
    import cosmos3.train.batch as batch
    from cosmos3.train.batch import prepare_gen
    from cosmos3.train.data import GenItem, action_caption
    from cosmos3.train.recipe import LossConfig

    seen = []

    class Stop(Exception):
        pass

    def capture(tokenizer, cfg, text, **_):
        seen.append(text)
        raise Stop

    emb = get_embodiment(embodiment)
    item = GenItem(vision=torch.zeros(4, 1 + (frames - 1) // 4, height // 16, width // 16),
                   prompt=action_caption(task, emb.viewpoint, frames, fps), fps=float(fps), num_frames=frames,
                   height=height, width=width, actions=torch.zeros(frames - 1, emb.raw_dim), domain_id=emb.domain_id)
    loss = LossConfig(caption_dropout=0.0, t2v=0.0, i2v=0.0, v2v=0.0, policy=float(mode == "policy"),
                      forward_dynamics=float(mode == "forward_dynamics"),
                      inverse_dynamics=float(mode == "inverse_dynamics"))
    monkeypatch.setattr(batch, "branch_inputs", capture)
    with pytest.raises(Stop):
        prepare_gen(item, 0, 0, loss, generator.tokenizer, generator.model)
    monkeypatch.undo()
    return seen[0]


CAPTIONS = [("umi", 16, "policy", 4), ("umi", 15.0, "forward_dynamics", 8), ("droid_lerobot", 15, "inverse_dynamics", 4),
            ("av", 10, "policy", 8), ("camera_pose", 30, "forward_dynamics", 4), ("droid_lerobot", 7.5, "policy", 4),
            ("umi", 24.0, "inverse_dynamics", 8)]


@pytest.mark.parametrize("embodiment, fps, mode, chunk", CAPTIONS)
def test_action_caption_is_byte_identical_in_inference_and_training(generator, monkeypatch, embodiment, fps, mode,
                                                                     chunk):
    # a 256x320 input fills the 256p tier's 4:5 canvas exactly: the caption states that size in both paths
    image = Image.fromarray(np.full((256, 320, 3), 120, np.uint8))
    condition = {"video": [image] * (chunk + 1)} if mode == "inverse_dynamics" else {"image": image}
    emb = get_embodiment(embodiment)
    kw = dict(prompt="Pick up the cup", action_mode=mode, embodiment=embodiment, fps=fps, action_chunk_size=chunk,
              resolution="256p", num_inference_steps=1, progress=False, **condition)
    if mode == "forward_dynamics":
        kw["actions"] = np.zeros((chunk, emb.raw_dim))
    inference = _inference_caption(generator, monkeypatch, **kw)
    training = _training_caption(generator, monkeypatch, task="Pick up the cup", embodiment=embodiment,
                                 frames=chunk + 1, fps=fps, height=256, width=320, mode=mode)
    assert inference.encode() == training.encode()
    caption = json.loads(inference)
    assert caption["fps"] == float(fps) and isinstance(caption["fps"], float)  # the release writes 16.0
    assert caption["resolution"] == {"H": 256, "W": 320} and caption["actions"][0]["description"] == "Pick up the cup."
