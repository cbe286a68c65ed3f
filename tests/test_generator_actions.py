"""Action modes of the Generator against diffusers' Cosmos3OmniPipeline (CosmosActionCondition), on the release's
action files and images, plus long rollouts and the action-specific validation."""

import json
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.actions import get_embodiment
from cosmos3.generator import Generator
from cosmos3.media import read_video
from oracle import build_reference_pipeline, random_config, relative_error

from fixture_paths import FIXTURES
from seeding import fresh_seed
UMI_ACTIONS = np.array(json.loads((FIXTURES / "actions" / "umi.json").read_text()), dtype=np.float32)
CHUNK = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    seed = fresh_seed("test_generator_actions.py::checkpoint")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False).replace(vocab_size=300, action_dim=64,
                                                                                 num_embodiment_domains=32)
    root = tmp_path_factory.mktemp("ckpt")
    pipe = build_reference_pipeline(root, cfg, gen, flow_shift=5.0, sound=False, vae_dim=4)
    return pipe, Generator.from_pretrained(root)


def _conditioning(mode, chunk):
    if mode == "inverse_dynamics":
        frames, _ = read_video(FIXTURES / "videos" / "umi.mp4", max_frames=chunk + 1)
        return {"video": [Image.fromarray(f.numpy()) for f in frames]}
    return {"image": Image.open(FIXTURES / "images" / "umi.png").convert("RGB")}


def _reference_embodiments():
    """Embodiments the reference pipeline can run (a known width and one of its viewpoint labels)."""
    from diffusers.pipelines.cosmos import pipeline_cosmos3_omni as ref

    from cosmos3.actions import REFERENCE_VIEWPOINTS, get_embodiment

    names = sorted(set(ref._EMBODIMENT_TO_RAW_ACTION_DIM) & set(ref._EMBODIMENT_TO_DOMAIN_ID))
    return [n for n in names if get_embodiment(n).viewpoint in REFERENCE_VIEWPOINTS]


@pytest.mark.parametrize("mode", ["policy", "forward_dynamics", "inverse_dynamics"])
def test_action_modes_match_reference(mode, checkpoint, seed, rng):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition

    from cosmos3.actions import get_embodiment

    pipe, generator = checkpoint
    name = rng.choice(_reference_embodiments())
    emb, chunk, fps = get_embodiment(name), rng.choice([4, 8]), rng.choice([10.0, 15.0, 20.0])
    print(f"embodiment {name}, chunk {chunk}, fps {fps}")
    cond = _conditioning(mode, chunk)
    fd = mode == "forward_dynamics"
    actions = torch.randn(chunk + 1, emb.raw_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    ref_cond = CosmosActionCondition(mode=mode, chunk_size=chunk, domain_name=name, resolution_tier=256,
                                     raw_actions=torch.from_numpy(actions[:chunk]) if fd else None,
                                     view_point=emb.viewpoint, **cond)
    common = dict(num_inference_steps=3, guidance_scale=2.0)
    ref = pipe("pick up the cup", negative_prompt="static", action=ref_cond, fps=fps, output_type="latent",
               generator=torch.Generator().manual_seed(seed), enable_safety_check=False, **common)
    res = generator.generate("pick up the cup", negative_prompt="static", action_mode=mode, embodiment=name,
                             actions=actions[:chunk] if fd else None, action_chunk_size=chunk, fps=fps,
                             resolution="256p", flow_shift=5.0, seed=seed, progress=False, **common, **cond)
    assert relative_error(res.latents, ref.video[0]) < 1e-4
    assert res.frames.shape == (chunk + 1, 256, 256, 3)
    if fd:
        assert res.actions is None and ref.action is None
    else:
        assert res.actions.shape == (chunk, emb.raw_dim)  # the embodiment's raw width, padding removed
        assert relative_error(res.actions, ref.action[0]) < 1e-4
    assert res.mode == mode


@pytest.mark.parametrize("mode", ["policy", "forward_dynamics", "inverse_dynamics"])
def test_checkpoint_action_stats_normalize_in_and_denormalize_out(mode, checkpoint, tmp_path, seed, rng):
    """A checkpoint with action_stats.json learnt normalized actions: the reference pipeline, which knows nothing of
    the file, fed normalize(actions) must give our latents for raw actions, and our predicted actions must be
    denormalize(its actions)."""
    import shutil

    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition

    from cosmos3.actions import ACTION_STATS_FILE, ActionStats, denormalize, normalize, save_stats_file

    pipe, base = checkpoint
    root = tmp_path / "ckpt"
    shutil.copytree(base.path, root)
    g = np.random.default_rng(seed)
    lo = g.normal(size=10) * rng.choice([0.01, 1.0, 5.0])
    hi = lo + g.uniform(0.02, 3.0, size=10)
    hi[5] = lo[5]  # a constant dimension: normalizes to 0 and comes back as its value
    stats = ActionStats(q01=lo, q99=hi)
    save_stats_file(root / ACTION_STATS_FILE, {"umi": stats})
    generator = Generator.from_pretrained(root)
    assert set(generator.action_stats) == {"umi"}
    fd = mode == "forward_dynamics"
    raw = (lo + (hi - lo) * g.uniform(-0.2, 1.2, size=(CHUNK, 10))).astype(np.float32)
    cond = _conditioning(mode, CHUNK)
    ref_cond = CosmosActionCondition(mode=mode, chunk_size=CHUNK, domain_name="umi", resolution_tier=256,
                                     raw_actions=torch.from_numpy(normalize(raw, stats)) if fd else None,
                                     view_point=get_embodiment("umi").viewpoint, **cond)
    common = dict(num_inference_steps=2, guidance_scale=1.0)
    ref = pipe("push", action=ref_cond, fps=20.0, output_type="latent", generator=torch.Generator().manual_seed(seed),
               enable_safety_check=False, **common)
    res = generator.generate("push", action_mode=mode, embodiment="umi", actions=raw if fd else None,
                             action_chunk_size=CHUNK, fps=20.0, resolution="256p", flow_shift=5.0, seed=seed,
                             progress=False, **common, **cond)
    assert relative_error(res.latents, ref.video[0]) < 1e-4
    if not fd:
        expected = denormalize(ref.action[0].float().numpy(), stats)
        np.testing.assert_allclose(res.actions.numpy(), expected, rtol=1e-4, atol=1e-4 * float(np.abs(hi).max()))
        assert np.all(res.actions.numpy()[:, 5] == np.float32(lo[5]))


def test_action_stats_are_keyed_by_embodiment_and_checked(checkpoint):
    from cosmos3.actions import ActionStats

    _, g = checkpoint
    parts = (g.model, g.vae, g.tokenizer, g.scheduler_config)
    stats = ActionStats(q01=np.zeros(10), q99=np.ones(10))
    assert set(Generator(*parts, action_stats={"UMI": stats}).action_stats) == {"umi"}  # canonical names
    with pytest.raises(ValueError, match=r"action_stats\['droid_lerobot'\]: expected ActionStats of 10"):
        Generator(*parts, action_stats={"droid_lerobot": ActionStats(q01=np.zeros(9), q99=np.ones(9))})
    with pytest.raises(ValueError, match="unknown embodiment 'robot9000'"):
        Generator(*parts, action_stats={"robot9000": stats})


def test_forward_dynamics_rolls_out_long_action_files(checkpoint, seed):
    _, generator = checkpoint
    steps = 2 * CHUNK + 2  # three chunks, the last one short
    res = generator.generate("push", action_mode="forward_dynamics", embodiment="umi", actions=UMI_ACTIONS[:steps],
                             action_chunk_size=CHUNK, resolution="256p", num_inference_steps=2, seed=seed,
                             progress=False, image=FIXTURES / "images" / "umi.png")
    assert res.frames.shape[0] == 3 * CHUNK + 1
    first = generator.generate("push", action_mode="forward_dynamics", embodiment="umi",
                               actions=UMI_ACTIONS[:CHUNK], action_chunk_size=CHUNK, resolution="256p",
                               num_inference_steps=2, seed=seed, progress=False,
                               image=FIXTURES / "images" / "umi.png")
    assert torch.equal(res.frames[: CHUNK + 1], first.frames)  # the first chunk is the same request


def test_policy_actions_save_as_json(checkpoint, tmp_path, seed):
    from cosmos3.actions import load_actions

    _, generator = checkpoint
    res = generator.generate("grasp", action_mode="policy", embodiment="droid_lerobot", action_chunk_size=CHUNK,
                             resolution="256p", num_inference_steps=1, seed=seed, progress=False,
                             image=FIXTURES / "images" / "robot_153.jpg")
    back = load_actions(res.save(tmp_path / "a.json"), "droid_lerobot")
    np.testing.assert_array_equal(back, res.actions.numpy())
    assert res.fps == 15.0  # DROID's rate by default


BAD = [
    (dict(action_mode="fly"), "action_mode: expected one of"),
    (dict(embodiment="umi"), "action_mode: embodiment / actions"),
    (dict(action_mode="policy"), "embodiment: required"),
    (dict(action_mode="policy", embodiment="robot9000"), "robot9000"),
    (dict(action_mode="forward_dynamics", embodiment="umi"), "actions: forward_dynamics needs"),
    (dict(action_mode="forward_dynamics", embodiment="umi", actions=np.zeros((4, 9))), "10"),
    (dict(action_mode="forward_dynamics", embodiment="umi", actions=FIXTURES / "actions" / "av_traj_left.json"),
     "av_traj_left.json"),
    (dict(action_mode="inverse_dynamics", embodiment="umi"), "video: inverse_dynamics needs"),
    (dict(action_mode="policy", embodiment="umi", actions=np.zeros((4, 10))), "actions: policy predicts"),
    (dict(action_mode="policy", embodiment="umi", num_frames=9), "num_frames: action modes"),
    (dict(action_mode="policy", embodiment="umi", action_chunk_size=0), "action_chunk_size"),
    (dict(action_mode="policy", embodiment="umi", action_chunk_size=6), "action_chunk_size: expected a multiple"),
    (dict(action_mode="policy", embodiment="umi", resolution="1080p"), "resolution: action modes take"),
    (dict(action_mode="policy", embodiment="umi", enable_sound=True), "enable_sound"),
]


def test_domain_outside_the_checkpoint_is_refused(tmp_path, rng, gen):
    cfg = random_config("qwen", rng, sound=False).replace(vocab_size=300, action_dim=64, num_embodiment_domains=8)
    build_reference_pipeline(tmp_path, cfg, gen, sound=False, vae_dim=4)
    with pytest.raises(ValueError, match="droid_lerobot has domain id 8, but this checkpoint has action heads for 8"):
        Generator.from_pretrained(tmp_path).generate("x", action_mode="policy", embodiment="droid_lerobot",
                                                     image=FIXTURES / "images" / "umi.png")


@pytest.mark.parametrize("change, message", BAD, ids=[m[:28] for _, m in BAD])
def test_bad_action_arguments(checkpoint, change, message):
    _, generator = checkpoint
    kwargs = dict(image=FIXTURES / "images" / "umi.png", progress=False)
    if change.get("action_mode") == "inverse_dynamics":
        kwargs.pop("image")
        kwargs["image"] = None
    with pytest.raises(ValueError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator.generate("x", **{**kwargs, **change})


@pytest.mark.parametrize("spatial", [8, 16])
def test_canvas_crop_keeps_the_content_cells_of_either_vae(spatial, rng):
    from cosmos3.action_modes import fit_canvas

    # a wide, short image: the 256p canvas (192x320) holds it at its own size with padding below
    width, height = 320, 16 * rng.randint(2, 11)
    canvas = fit_canvas([Image.fromarray(np.zeros((height, width, 3), np.uint8))], 5, 256)
    assert (canvas.height, canvas.width, canvas.content_height, canvas.content_width) == (192, 320, height, width)
    latents = torch.randn(48, 2, canvas.height // spatial, canvas.width // spatial)
    crop = canvas.crop_latents(latents, spatial)
    assert tuple(crop.shape) == (48, 2, height // spatial, width // spatial)
    assert torch.equal(crop, latents[:, :, :height // spatial])
