"""Video transfer (control videos): one control against diffusers' own transfer pipeline (Cosmos3OmniModularPipeline,
diffusers 0.42) on a tiny random checkpoint; several controls against the release's definition of the weighted
passes, built here from single-control attention; positions; control guidance; weight 0; refusals."""

import json
import random
import shutil
import warnings

import numpy as np
import pytest
import torch

from cosmos3.control import EMPHASIS, Control, multi_control_layers, parse_spec
from cosmos3.diffusion import Latents, denoise_step, encode_branches
from cosmos3.generator import Generator
from cosmos3.media import MediaError, write_video
from cosmos3.model.rope import text_positions, vision_positions, modality_offset
from cosmos3.request import RequestError
from cosmos3.sequence import GenLayout
from oracle import relative_error, tiny_generator_checkpoint

SMALL = dict(num_frames=5, height=64, width=64, fps=16, num_inference_steps=3, progress=False)


def _entry(name: str, library: str, cls: str) -> list:
    return [library, cls, {"pretrained_model_name_or_path": "tiny", "subfolder": name, "type_hint": [library, cls]}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The shared tiny checkpoint, copied, with the modular index diffusers' transfer pipeline loads from."""
    root = tmp_path_factory.mktemp("transfer")
    shutil.copytree(tiny_generator_checkpoint(tmp_path_factory), root, dirs_exist_ok=True)
    (root / "modular_model_index.json").write_text(json.dumps(
        {"_class_name": "Cosmos3OmniModularPipeline", "_blocks_class_name": "Cosmos3OmniBlocks",
         "enable_safety_checker": False,
         "transformer": _entry("transformer", "diffusers", "Cosmos3OmniTransformer"),
         "vae": _entry("vae", "diffusers", "AutoencoderKLWan"),
         "scheduler": _entry("scheduler", "diffusers", "UniPCMultistepScheduler"),
         "text_tokenizer": _entry("text_tokenizer", "transformers", "AutoTokenizer")}))
    return root


@pytest.fixture(scope="module")
def gen(folder):
    return Generator.from_pretrained(folder, device="cpu")


def _clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ reference


def test_one_control_matches_diffusers_transfer_pipeline(folder, gen, seed):
    """Random kind, size, control guidance and text guidance; the control map given at the output size. diffusers
    tokenizes the prompt verbatim: we turn our templates off and hand it the sentence the release appends."""
    from diffusers.modular_pipelines import Cosmos3OmniModularPipeline
    from PIL import Image

    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    kind = rng.choice(["edge", "blur", "depth", "seg", "wsm"])
    size = dict(num_frames=rng.choice([5, 9]), height=16 * rng.randint(4, 6), width=16 * rng.randint(4, 6), fps=16)
    cg, guidance = round(rng.uniform(0.5, 3.0), 3), rng.choice([1.0, round(rng.uniform(2.0, 5.0), 3)])
    steps, prompt = rng.randint(2, 4), rng.choice(["a red cube", "robot arm on a table", "kitchen at dusk"])
    clip = _clip(nrng, size["num_frames"], size["height"], size["width"])
    shift = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["flow_shift"]  # theirs runs it
    print(f"{kind} {size} control_guidance {cg} guidance {guidance} steps {steps}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny sizes are off the published table
        ours = gen.generate(prompt, controls=[Control(kind, video=clip)], control_guidance=cg, seed=seed,
                            guidance_scale=guidance, num_inference_steps=steps, flow_shift=shift,
                            use_resolution_template=False,
                            use_duration_template=False, progress=False, **size)
        pipe = Cosmos3OmniModularPipeline.from_pretrained(str(folder))
        pipe.load_components(dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        theirs = pipe(prompt=f"{prompt} {EMPHASIS.format(names=kind)}", negative_prompt="",
                      control_videos={kind: [Image.fromarray(f) for f in clip]}, control_guidance=cg,
                      guidance_scale=guidance, num_inference_steps=steps, output="latents",
                      generator=torch.Generator().manual_seed(seed), **size)
    assert ours.latents.shape == theirs[0].shape
    assert relative_error(ours.latents, theirs[0]) < 1e-5


def _layer_inputs(model, seed: int, n_controls: int, padded: bool):
    """Random gen stream [2, (N + 1) * n, D], und keys / values of two prompts (the shorter padded), rope."""
    cfg, g = model.config, torch.Generator().manual_seed(seed)
    per, L = 6, 5
    x = torch.randn(2, (n_controls + 1) * per, cfg.hidden_size, generator=g)
    shape = (2, cfg.num_key_value_heads, L, cfg.head_dim)
    und_k, und_v = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    mask = torch.tensor([[True] * L, [True] * (L - 2) + [False] * 2]) if padded else None
    positions = torch.randn(2, 3, x.shape[1], generator=g) * 10
    return x, und_k, und_v, mask, positions, per


@pytest.mark.parametrize("n_controls", [2, 3])
def test_weighted_passes_equal_the_release_definition(gen, seed, n_controls):
    """Each layer: control i attends over [text | control i | target] (pass i); the target's attention output is
    sum_i w_i pass_i. Built here from the single-control attention (MoTAttention.gen on the stream
    [control i | target]) one layer at a time, with the layer's residual and MLP around it."""
    from cosmos3.model import UndCache

    model = gen.model
    x, und_k, und_v, mask, positions, per = _layer_inputs(model, seed, n_controls, padded=True)
    w = torch.rand(n_controls, generator=torch.Generator().manual_seed(seed)) + 0.1
    weights = (w / w.sum()).tolist()
    spans = [(i * per, (i + 1) * per) for i in range(n_controls)]
    target = (n_controls * per, (n_controls + 1) * per)
    layers = model.layers
    cache = UndCache([und_k] * len(layers), [und_v] * len(layers), mask)
    with torch.no_grad():
        ours = multi_control_layers(model, x, positions, cache, spans, target, weights)
        expected = x
        cos, sin = model.rope(positions)
        for layer in layers:
            normed = layer.input_layernorm_moe_gen(expected)
            attn = torch.zeros_like(expected)
            for (c0, c1), wi in zip(spans, weights):
                rows = torch.cat([normed[:, c0:c1], normed[:, target[0]:target[1]]], dim=1)
                rope = (torch.cat([cos[:, c0:c1], cos[:, target[0]:]], 1), torch.cat([sin[:, c0:c1], sin[:, target[0]:]], 1))
                out = layer.self_attn.gen(rows, rope, und_k, und_v, mask)
                attn[:, c0:c1] = out[:, : c1 - c0]
                attn[:, target[0]:] += wi * out[:, c1 - c0:]
            h = expected + attn
            expected = h + layer.mlp_moe_gen(layer.post_attention_layernorm_moe_gen(h))
    assert relative_error(ours, expected) < 1e-5


def test_zero_weight_pass_changes_nothing(gen, seed):
    """Weights (1, 0): the target's stream is exactly the single-control network's over [control 0 | target]."""
    from cosmos3.model import UndCache

    model = gen.model
    x, und_k, und_v, mask, positions, per = _layer_inputs(model, seed, 2, padded=False)
    cache = UndCache([und_k] * len(model.layers), [und_v] * len(model.layers), mask)
    keep = torch.cat([torch.arange(0, per), torch.arange(2 * per, 3 * per)])
    with torch.no_grad():
        ours = multi_control_layers(model, x, positions, cache, [(0, per), (per, 2 * per)], (2 * per, 3 * per),
                                    [1.0, 0.0])
        single = model.run_gen(x[:, keep], positions[:, :, keep], cache)
    assert relative_error(model.norm_moe_gen(ours)[:, keep], single) < 1e-5


def test_controls_share_the_target_positions(gen):
    """Every control clip gets the target's mRoPE ids (temporal and spatial), the target's are those of a run
    without controls."""
    cfg = gen.model.config
    C, T, H, W = cfg.latent_channel, 3, 4, 6
    plain = GenLayout(latent_shape=(C, T, H, W), vision_noisy=torch.ones(T, dtype=torch.bool), fps=16.0)
    two = GenLayout(latent_shape=(C, 3 * T, H, W), vision_noisy=torch.ones(3 * T, dtype=torch.bool), fps=16.0,
                    controls=2, control_weights=(0.5, 0.5))
    rows, cols = H // cfg.latent_patch_size, W // cfg.latent_patch_size
    expected = vision_positions(T, rows, cols, modality_offset(11, cfg.unified_3d_mrope_temporal_modality_margin),
                                16.0 if cfg.enable_fps_modulation else None, cfg.base_fps,
                                cfg.unified_3d_mrope_reset_spatial_ids)
    assert torch.equal(plain.positions(cfg, 11), expected)
    assert torch.equal(two.positions(cfg, 11), torch.cat([expected] * 3, dim=1))


def test_control_guidance_is_a_velocity_mix(gen, seed):
    """v = v_nc + g (v_full - v_nc) on the target (positive branch, before text CFG), v_nc from a forward over the
    target alone; control frames keep zero velocity. Two controls, text CFG on."""
    model, cfg = gen.model, gen.model.config
    g = torch.Generator().manual_seed(seed)
    C, T, H, W = cfg.latent_channel, 2, 4, 4
    noisy = torch.tensor([False, True])  # the target's first frame is conditioning
    full = torch.cat([torch.zeros(2 * T, dtype=torch.bool), noisy])
    ids = [torch.randint(0, cfg.vocab_size, (n,), generator=g) for n in (7, 5)]
    prompts = [(i, text_positions(i.shape[0])) for i in ids]
    vision = torch.randn(C, 3 * T, H, W, generator=g)
    t, guidance, cg = torch.tensor(600.0), 4.0, 2.5

    def velocity(layout, vision, prompts):
        with torch.no_grad():
            return denoise_step(model, layout, Latents(vision=vision), t, encode_branches(model, layout, prompts),
                                guidance).vision

    layout = GenLayout(latent_shape=(C, 3 * T, H, W), vision_noisy=full, fps=16.0, controls=2,
                       control_weights=(0.3, 0.7))
    bare = GenLayout(latent_shape=(C, T, H, W), vision_noisy=noisy, fps=16.0)
    pos_full, neg_full = (velocity(layout, vision, [p]) for p in prompts)
    pos_nc = velocity(bare, vision[:, 2 * T:], prompts[:1])
    mixed = velocity(GenLayout(**{**layout.__dict__, "control_guidance": cg}), vision, prompts)
    positive = pos_nc + cg * (pos_full[:, 2 * T:] - pos_nc)
    expected = neg_full[:, 2 * T:] + guidance * (positive - neg_full[:, 2 * T:])
    assert relative_error(mixed[:, 2 * T:], expected) < 1e-5
    assert not mixed[:, : 2 * T].any()
    # control_guidance_interval: timesteps strictly inside (low, high) only
    inside = velocity(GenLayout(**{**layout.__dict__, "control_guidance": cg,
                                   "control_guidance_interval": (500.0, 700.0)}), vision, prompts)
    outside = velocity(GenLayout(**{**layout.__dict__, "control_guidance": cg,
                                    "control_guidance_interval": (600.0, 900.0)}), vision, prompts)
    plain = velocity(layout, vision, prompts)
    assert torch.equal(inside, mixed) and torch.equal(outside, plain) and not torch.equal(plain, mixed)


# ------------------------------------------------------------------------------------------------ generate


def test_weight_zero_equals_no_control(gen, seed):
    clip = _clip(np.random.default_rng(seed), 5, 64, 64)
    plain = gen.generate("a red cube", seed=seed, **SMALL)
    zero = gen.generate("a red cube", seed=seed, controls=[Control("edge", video=clip, weight=0.0)], **SMALL)
    assert torch.equal(zero.latents, plain.latents)
    both = gen.generate("a red cube", seed=seed, controls=[Control("edge", video=clip, weight=0.0),
                                                           Control("depth", video=clip[::-1].copy(), weight=2.0)],
                        **SMALL)
    depth = gen.generate("a red cube", seed=seed, controls=[Control("depth", video=clip[::-1].copy())], **SMALL)
    assert torch.equal(both.latents, depth.latents)
    assert not torch.equal(depth.latents, plain.latents)


def test_controls_from_an_rgb_file(gen, seed, tmp_path):
    """source= computes the map from an RGB clip (resized to the output first); the same as handing the map."""
    from cosmos3.control import edge_map, fit

    rgb = _clip(np.random.default_rng(seed), 7, 48, 48)
    path = write_video(tmp_path / "rgb.mp4", torch.from_numpy(rgb), 16)
    from cosmos3.media import read_video

    decoded = read_video(path)[0].numpy()[:5]
    edges = edge_map(fit(decoded, 64, 64, "rgb"))
    a = gen.generate("a red cube", seed=seed, controls=[Control("edge", source=path)], **SMALL)
    b = gen.generate("a red cube", seed=seed, controls=[Control("edge", video=edges)], **SMALL)
    assert torch.equal(a.latents, b.latents)


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("controls, field, words", [
    ([Control("canny", video="x")], "controls", "unknown kind 'canny'"),
    ([Control("edge", video=np.zeros((5, 64, 64, 3), np.uint8), weight=-1)], "controls", "weight"),
    ([Control("edge", video=np.zeros((5, 64, 64, 3), np.uint8), weight=float("nan"))], "controls", "weight"),
    ([Control("edge", video=np.zeros((5, 64, 64, 3), np.uint8), weight=True)], "controls", "weight"),
    ([Control("edge", video=np.zeros((5, 64, 64, 3), np.uint8))] * 2, "controls", "twice"),
    ([Control("depth", source=np.zeros((5, 64, 64, 3), np.uint8))], "controls", "cannot be computed"),
    ([Control("edge")], "controls", "give the control video"),
    ([Control("blur", video=np.zeros((5, 64, 64, 3), np.uint8), preset="huge")], "controls", "preset 'huge'"),
    ([Control("seg", video="/no/such/seg.mp4")], "controls", "no such file"),
    ("edge.mp4", "controls", "expected a list"),
])
def test_bad_controls_are_refused(gen, controls, field, words):
    with pytest.raises(RequestError) as e:
        gen.resolve("a red cube", controls=controls, **SMALL)
    assert e.value.field == field and words in str(e.value)


def test_bad_combinations_are_refused(gen):
    clip = np.zeros((9, 64, 64, 3), np.uint8)
    one = [Control("edge", video=clip)]
    for kw, field in ((dict(control_guidance=11.0, controls=one), "control_guidance"),
                      (dict(control_guidance=1.5), "control_guidance"),
                      (dict(control_guidance_interval=(0, 500)), "control_guidance_interval"),
                      (dict(control_guidance_interval=(700, 100), controls=one), "control_guidance_interval"),
                      (dict(control_guidance_interval=(0, 1001), controls=one), "control_guidance_interval"),
                      (dict(controls=one, num_frames=1, height=64, width=64), "num_frames")):
        with pytest.raises(RequestError) as e:
            gen.resolve("a red cube", **{**dict(num_frames=5, height=64, width=64), **kw})
        assert e.value.field == field


def test_media_mismatches_are_refused(gen, tmp_path):
    short = write_video(tmp_path / "short.mp4", torch.zeros(3, 64, 64, 3, dtype=torch.uint8), 16)
    with pytest.raises(MediaError, match="has 3 frames; the output has 5"):
        gen.resolve("a red cube", controls=[Control("depth", video=short)], **SMALL)
    with pytest.raises(MediaError, match="has 4 frames; the output has 5"):
        gen.resolve("a red cube", controls=[Control("seg", video=np.zeros((4, 64, 64, 3), np.uint8))], **SMALL)
    with pytest.raises(MediaError, match="aspect ratios differ"):
        gen.resolve("a red cube", controls=[Control("edge", video=np.zeros((5, 64, 128, 3), np.uint8))], **SMALL)
    req = gen.resolve("a red cube", controls=[Control("edge", video=np.zeros((9, 128, 128, 3), np.uint8))], **SMALL)
    assert req.control_guidance == 1.5  # the release's edge default; same aspect, larger and longer: accepted


def test_default_control_guidance_follows_the_release():
    from cosmos3.control import check_controls

    clip = np.zeros((5, 8, 8, 3), np.uint8)
    for kind, g in (("edge", 1.5), ("blur", 1.5), ("depth", 1.5), ("seg", 2.0), ("wsm", 3.0)):
        assert check_controls([Control(kind, video=clip)], None)[1] == g
    assert check_controls([Control("seg", video=clip), Control("edge", video=clip)], None)[1] == 1.0
    ordered, _ = check_controls([Control("wsm", video=clip), Control("edge", video=clip, weight=3)], None)
    assert [c.kind for c in ordered] == ["edge", "wsm"]  # the release's order, whatever the caller's


def test_cli_spec_parsing():
    assert parse_spec("edge:clip.mp4") == Control("edge", video="clip.mp4")
    assert parse_spec("depth:d.mp4:0.5") == Control("depth", video="d.mp4", weight=0.5)
    assert parse_spec("edge") == Control("edge")
    assert parse_spec("blur::2") == Control("blur", weight=2.0)
    assert parse_spec("blur:0.25") == Control("blur", weight=0.25)


def test_one_control_takes_the_release_text_guidance(gen):
    clip = np.zeros((5, 64, 64, 3), np.uint8)
    plain = gen.resolve("a red cube", **SMALL).guidance
    assert gen.resolve("a red cube", controls=[Control("seg", video=clip)], **SMALL).guidance == 3.0
    assert gen.resolve("a red cube", controls=[Control("wsm", video=clip)], **SMALL).guidance == 1.0
    assert gen.resolve("a red cube", controls=[Control("wsm", video=clip)], guidance_scale=2.0, **SMALL).guidance == 2.0
    two = [Control("seg", video=clip), Control("edge", video=clip)]
    assert gen.resolve("a red cube", controls=two, **SMALL).guidance == plain
