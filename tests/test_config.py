import json

import pytest

from cosmos3.config import PRESETS, Cosmos3Config, get_preset
from cosmos3.model import Cosmos3Omni
from oracle import diffusers_kwargs, random_config

# DESIGN 2.1: hidden, layers, q heads, kv heads, head_dim, FFN, vocab, act, eps, theta
PUBLISHED = {
    "nano": (4096, 36, 32, 8, 128, 12288, 151936, "silu", 1e-6, 5e6),
    "super": (5120, 64, 64, 8, 128, 25600, 151936, "silu", 1e-6, 5e6),
    "edge": (2048, 28, 16, 8, 128, 9216, 131072, "relu2", 1e-5, 1e8),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_presets(name):
    c = get_preset(name)
    got = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
           c.intermediate_size, c.vocab_size, c.hidden_act, c.rms_norm_eps, c.rope_theta)
    assert got == PUBLISHED[name]
    assert c.rope_axes_dim == [24, 20, 20]
    assert c.patch_latent_dim == 192 and c.latent_channel == 48
    assert c.qk_norm_for_text == (name != "edge")
    assert c.use_und_k_norm_for_gen == (name == "edge")


def test_nano_is_about_16b():
    # "Cosmos3-Nano (16B)": two 8B towers.
    assert 15e9 < get_preset("nano").param_count() < 18e9
    assert 60e9 < get_preset("super").param_count() < 70e9


def test_get_preset_returns_a_copy():
    c = get_preset("tiny")
    c.hidden_size = 7
    assert PRESETS["tiny"].hidden_size != 7
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")


@pytest.mark.parametrize("style", ["qwen", "edge"])
@pytest.mark.parametrize("heads", [(True, True), (False, False), (True, False)])
def test_param_count_matches_the_reference_model(style, heads, rng):
    from diffusers import Cosmos3OmniTransformer

    cfg = random_config(style, rng, sound=heads[0], action=heads[1])
    ref = Cosmos3OmniTransformer(**diffusers_kwargs(cfg))
    assert cfg.param_count() == sum(p.numel() for p in ref.parameters())
    assert cfg.param_count() == sum(p.numel() for p in Cosmos3Omni(cfg).parameters())


def test_config_json_round_trip_keeps_every_field(tmp_path, rng):
    from diffusers import Cosmos3OmniTransformer

    cfg = random_config("edge", rng)
    Cosmos3OmniTransformer(**diffusers_kwargs(cfg)).save_config(tmp_path)
    original = json.loads((tmp_path / "config.json").read_text())
    original["some_future_field"] = {"nested": [1, 2]}
    (tmp_path / "config.json").write_text(json.dumps(original))

    loaded = Cosmos3Config.from_json(tmp_path)
    assert loaded.hidden_act == "relu2" and loaded.use_und_k_norm_for_gen and not loaded.qk_norm_for_text
    loaded.save_json(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == original


def test_rope_sections_come_from_rope_scaling():
    c = Cosmos3Config(rope_scaling={"mrope_section": [22, 21, 21], "rope_type": "default"})
    assert c.rope_axes_dim == [22, 21, 21]
    assert Cosmos3Config(head_dim=64, num_attention_heads=4, num_key_value_heads=2).rope_axes_dim == [12, 10, 10]


@pytest.mark.parametrize("change, field", [
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(num_attention_heads=6, num_key_value_heads=4), "num_attention_heads"),
    (dict(rope_axes_dim=[24, 20, 21]), "rope_axes_dim"),
    (dict(rope_axes_dim=[4, 30, 30]), "rope_axes_dim"),
    (dict(sound_gen=True, sound_dim=None), "sound_dim"),
    (dict(action_gen=True, action_dim=None), "action_dim"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(patch_latent_dim=100), "patch_latent_dim"),
])
def test_invalid_configs_name_the_field(change, field):
    with pytest.raises(ValueError, match=f"Cosmos3Config.{field}="):
        Cosmos3Config(**change)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"hidden_act": "tanh"}', "hidden_act"),
    ('{"hidden_size": "big"}', "hidden_size"),
])
def test_bad_config_files(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        Cosmos3Config.from_json(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Cosmos3Config.from_json(tmp_path)
