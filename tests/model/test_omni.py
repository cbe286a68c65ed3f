"""Parity of our network with diffusers' Cosmos3OmniTransformer, and the und-cache / batched-CFG invariants."""

import pytest
import torch

from cosmos3.model import Cosmos3Omni, GenInputs, UndCache
from cosmos3.model.rope import text_positions
from oracle import build_reference, random_case, random_config, reference_forward, relative_error

MODALITIES = {"vision": (False, False), "vision+sound": (True, False), "vision+action": (False, True),
              "all": (True, True)}


def _pair(style, rng, gen, sound=True, action=True):
    cfg = random_config(style, rng, sound=sound, action=action)
    ref = build_reference(cfg, gen)
    ours = Cosmos3Omni(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return cfg, ref, ours


@pytest.mark.parametrize("style", ["qwen", "edge"])
@pytest.mark.parametrize("modalities", sorted(MODALITIES))
def test_velocities_match_diffusers(style, modalities, rng, gen):
    sound, action = MODALITIES[modalities]
    cfg, ref, ours = _pair(style, rng, gen, sound, action)
    case = random_case(cfg, gen, rng, sound=sound, action=action)
    ref_vision, ref_sound, ref_action = reference_forward(ref, cfg, case)
    with torch.no_grad():
        out, _ = ours(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
    assert relative_error(out.vision, ref_vision) < 1e-5
    clean = ~case["inputs"].vision_noisy
    assert out.vision[:, clean].abs().sum() == 0  # clean frames keep zero velocity
    if sound:
        assert relative_error(out.sound, ref_sound) < 1e-5
    if action:
        noisy = case["inputs"].action_noisy
        if noisy.any():
            assert relative_error(out.actions, ref_action) < 1e-5
        assert out.actions[~noisy].abs().sum() == 0


@pytest.mark.parametrize("style", ["qwen", "edge"])
def test_cached_und_path_equals_joint_forward(style, rng, gen):
    cfg, _, model = _pair(style, rng, gen)
    case = random_case(cfg, gen, rng)
    with torch.no_grad():
        joint, und_hidden = model(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
        cache = model.encode_und(case["input_ids"], case["text_positions"])
        hidden = model.run_gen(model.embed_gen(case["inputs"]), case["gen_positions"], cache)
        split = model.decode_gen(hidden[0], case["inputs"])
    assert len(cache.keys) == cfg.num_hidden_layers and cache.length == case["input_ids"].shape[0]
    torch.testing.assert_close(split.vision, joint.vision, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(split.sound, joint.sound, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(split.actions, joint.actions, rtol=1e-6, atol=1e-6)
    assert und_hidden.shape == (case["input_ids"].shape[0], cfg.hidden_size)


@pytest.mark.parametrize("style", ["qwen", "edge"])
def test_batched_branches_with_different_prompt_lengths(style, rng, gen):
    """CFG: two prompts of different lengths in one padded gen batch give each prompt's own result."""
    cfg, ref, model = _pair(style, rng, gen)
    case = random_case(cfg, gen, rng)
    short = case["input_ids"][: max(1, case["input_ids"].shape[0] // 2)]
    prompts = [case["input_ids"], short]
    caches = [model.encode_und(p, text_positions(p.shape[0])) for p in prompts]
    # the gen positions depend on the prompt length through the modality offset
    shift = case["input_ids"].shape[0] - short.shape[0]
    gen_pos = torch.stack([case["gen_positions"], case["gen_positions"] - torch.tensor([[shift], [0], [0]])])
    with torch.no_grad():
        tokens = model.embed_gen(case["inputs"])
        batched = model.run_gen(tokens.expand(2, -1, -1), gen_pos, UndCache.stack(caches))
        for i in range(2):
            alone = model.run_gen(tokens, gen_pos[i], caches[i])[0]
            torch.testing.assert_close(batched[i], alone, rtol=1e-5, atol=1e-5)
        # and the shorter branch agrees with the reference run on that prompt alone
        short_case = dict(case, input_ids=short, text_positions=text_positions(short.shape[0]),
                          gen_positions=gen_pos[1])
        ref_vision, _, _ = reference_forward(ref, cfg, short_case)
        assert relative_error(model.decode_gen(batched[1], case["inputs"]).vision, ref_vision) < 1e-5


def test_per_token_timesteps_equal_a_scalar_timestep(rng, gen):
    cfg, _, model = _pair("qwen", rng, gen)
    inputs: GenInputs = random_case(cfg, gen, rng)["inputs"]
    n_noisy = int(inputs.vision_noisy.sum())
    rows, cols = (inputs.vision.shape[2] + 1) // 2, (inputs.vision.shape[3] + 1) // 2
    count = n_noisy * rows * cols + int(inputs.sound_noisy.sum()) + int(inputs.action_noisy.sum())
    with torch.no_grad():
        scalar = model.embed_gen(inputs)
        inputs.timestep = inputs.timestep.expand(count).clone()
        torch.testing.assert_close(model.embed_gen(inputs), scalar)
        inputs.timestep = inputs.timestep[:-1]
        with pytest.raises(ValueError, match=f"timestep: expected 1 or {count} values"):
            model.embed_gen(inputs)


def test_bad_generation_inputs_are_named(rng, gen):
    cfg = random_config("qwen", rng, sound=False, action=True)
    model = Cosmos3Omni(cfg)
    case = random_case(cfg, gen, rng, sound=False)
    inputs: GenInputs = case["inputs"]
    C, T, H, W = inputs.vision.shape
    bad = [
        (dict(vision=torch.zeros(C + 1, T, H, W)), "vision: expected"),
        (dict(vision_noisy=torch.ones(T + 1, dtype=torch.bool)), "vision_noisy: expected"),
        (dict(sound=torch.zeros(4, 3), sound_noisy=torch.ones(3, dtype=torch.bool)), "sound: expected no sound"),
        (dict(actions=torch.zeros(2, cfg.action_dim + 1), action_noisy=torch.ones(2, dtype=torch.bool)),
         "actions: expected"),
        (dict(domain_id=None), "domain_id: expected"),
        (dict(domain_id=cfg.num_embodiment_domains), "domain id out of range"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            model.embed_gen(GenInputs(**{**inputs.__dict__, **change}))


def test_consuming_stack_equals_copying_stack(rng, gen):
    cfg = random_config("qwen", rng)
    model = Cosmos3Omni(cfg).eval()
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=gen) for n in (7, 4)]
    with torch.no_grad():
        copied = UndCache.stack([model.encode_und(p, text_positions(len(p))) for p in prompts])
        inputs = [model.encode_und(p, text_positions(len(p))) for p in prompts]
        consumed = UndCache.stack(inputs, consume=True)
    assert all(k is None for c in inputs for k in c.keys)  # the per-prompt copies were released
    assert torch.equal(copied.mask, consumed.mask)
    for a, b in zip(copied.keys + copied.values, consumed.keys + consumed.values):
        assert torch.equal(a, b)
