import json

import pytest
import torch
from safetensors.torch import save_file

from cosmos3.checkpoint import CheckpointError, load_transformer, save_transformer
from cosmos3.model import Cosmos3Omni
from oracle import build_reference, random_case, random_config, reference_forward, relative_error


@pytest.fixture
def reference_dir(tmp_path, rng, gen):
    """An official-layout checkpoint written by diffusers itself (sharded or not, at random)."""
    cfg = random_config(rng.choice(["qwen", "edge"]), rng)
    ref = build_reference(cfg, gen)
    shard = rng.choice([None, "40KB"])
    ref.save_pretrained(tmp_path / "ckpt" / "transformer", **({"max_shard_size": shard} if shard else {}))
    return tmp_path / "ckpt", ref, cfg


def test_loads_diffusers_checkpoint_exactly(reference_dir, rng, gen):
    root, ref, cfg = reference_dir
    model = load_transformer(root)
    ref_state = ref.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    case = random_case(cfg, gen, rng)
    with torch.no_grad():
        out, _ = model(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
    assert relative_error(out.vision, reference_forward(ref, cfg, case)[0]) < 1e-5
    # also from the transformer folder itself
    assert torch.equal(load_transformer(root / "transformer").proj_in.weight, ref.proj_in.weight)


@pytest.mark.parametrize("shard_bytes", [None, 30_000])
def test_our_save_loads_in_diffusers_bit_identically(tmp_path, rng, gen, shard_bytes):
    from diffusers import Cosmos3OmniTransformer

    cfg = random_config(rng.choice(["qwen", "edge"]), rng)
    ours = Cosmos3Omni(cfg)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    folder = save_transformer(ours, tmp_path / "transformer", **({"max_shard_bytes": shard_bytes} if shard_bytes else {}))
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").exists() == bool(shard_bytes)
    theirs = Cosmos3OmniTransformer.from_pretrained(folder).state_dict()
    mine = ours.state_dict()
    assert set(theirs) == set(mine)
    for key in mine:
        assert theirs[key].dtype == mine[key].dtype and torch.equal(theirs[key], mine[key]), key
    again = load_transformer(tmp_path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in mine.items())


def test_bfloat16_load_keeps_timestep_embedder_in_float32(reference_dir):
    model = load_transformer(reference_dir[0], dtype=torch.bfloat16)
    assert model.proj_in.weight.dtype == torch.bfloat16
    assert model.layers[0].self_attn.to_q.weight.dtype == torch.bfloat16
    assert model.time_embedder.linear_1.weight.dtype == torch.float32


def _single_file(root):
    """Turn the reference checkpoint into one unsharded file; return its path."""
    folder = root / "transformer"
    state = load_transformer(root).state_dict()
    for f in folder.glob("*.safetensors*"):
        f.unlink()
    path = folder / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path, state


def test_missing_key(reference_dir):
    path, state = _single_file(reference_dir[0])
    state.pop("layers.0.mlp.up_proj.weight")
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="missing 1 key") as err:
        load_transformer(reference_dir[0])
    assert "layers.0.mlp.up_proj.weight" in str(err.value) and str(path) in str(err.value)


def test_unexpected_key(reference_dir):
    path, state = _single_file(reference_dir[0])
    state["layers.0.self_attn.extra_proj.weight"] = torch.zeros(2, 2)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="unexpected key 'layers.0.self_attn.extra_proj.weight'") as err:
        load_transformer(reference_dir[0])
    assert str(path) in str(err.value)


def test_wrong_shape(reference_dir):
    path, state = _single_file(reference_dir[0])
    state["proj_out.bias"] = torch.zeros(state["proj_out.bias"].shape[0] + 1)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"key 'proj_out.bias' has shape \[\d+\], the config expects") as err:
        load_transformer(reference_dir[0])
    assert str(path) in str(err.value)


def test_truncated_file_names_the_first_cut_key(reference_dir):
    path, state = _single_file(reference_dir[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated: tensor '") as err:
        load_transformer(reference_dir[0])
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\x00" * 5, b"garbage-garbage-garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}....."])
def test_corrupt_file(reference_dir, content):
    path, _ = _single_file(reference_dir[0])
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_transformer(reference_dir[0])
    assert str(path) in str(err.value)


def test_missing_shard(tmp_path, rng, gen):
    cfg = random_config("qwen", rng)
    save_transformer(Cosmos3Omni(cfg), tmp_path / "transformer", max_shard_bytes=20_000)
    index = json.loads((tmp_path / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[1]
    (tmp_path / "transformer" / victim).unlink()
    with pytest.raises(CheckpointError, match=f"{victim}: shard listed in .* for key '"):
        load_transformer(tmp_path)


def test_pickle_only_and_missing_dirs(tmp_path, rng):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_transformer(tmp_path / "nope")
    cfg = random_config("qwen", rng)
    folder = tmp_path / "transformer"
    cfg.save_json(folder)
    torch.save({}, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        load_transformer(folder)


def test_und_only_load_skips_generation_weights(reference_dir, gen):
    root, ref, cfg = reference_dir
    full = load_transformer(root)
    und = load_transformer(root, with_gen=False)
    assert not hasattr(und, "proj_in") and not hasattr(und.layers[0], "mlp_moe_gen")
    assert sum(p.numel() for p in und.parameters()) < 0.75 * sum(p.numel() for p in full.parameters())
    embeds = torch.randn(1, 5, cfg.hidden_size, generator=gen)
    positions = torch.arange(5.0).expand(3, 5)
    with torch.no_grad():
        torch.testing.assert_close(und.und_forward(embeds, positions), full.und_forward(embeds, positions))
