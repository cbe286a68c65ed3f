"""FP8 checkpoints (fp8.py): a checkpoint written here in the release's ModelOpt layout from fresh random weights,
loaded, and compared with (a) the float model of the dequantized weights, computed here from the raw file tensors:
exactly equal, dequantized on load or kept fp8; (b) the original float weights: within fp8 rounding. Malformed files
are refused naming the tensor."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cosmos3.checkpoint import CheckpointError, load_transformer, save_transformer
from cosmos3.fp8 import Fp8Linear
from cosmos3.model import Cosmos3Omni
from cosmos3.quant import weight_bytes

from oracle import random_case, random_config, relative_error
from reasoner_oracle import randomize_weights

E4M3_MAX = 448.0
# fp8 e4m3 keeps 3 mantissa bits: each weight within 1/16 relative; the outputs of a tiny random net land at 3-9%
# relative error (8 seeds). A scale off by 2x gives over 60%.
FP8_BOUND = 0.2


def _linear_names(model: Cosmos3Omni) -> list[str]:
    """What ModelOpt quantizes in the release: every linear of the MoT layers (und and gen); lm_head, the gen heads,
    embeddings and norms stay in high precision."""
    return [f"layers.{i}.{name}" for i, layer in enumerate(model.layers)
            for name, m in layer.named_modules() if type(m) is nn.Linear]


def write_fp8(root, model: Cosmos3Omni, gen: torch.Generator, per_channel: set[str] = frozenset()):
    """`model` saved at root/transformer in the fp8 layout: E4M3 weights, float32 weight_scale (amax / 448 per
    tensor, or per output row for names in `per_channel`) and input_scale; scales in a shard of their own (ModelOpt
    may place them apart from their weights), hf_quant_config.json at the root."""
    folder = root / "transformer"
    save_transformer(model, folder)
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    scales = {}
    for name in _linear_names(model):
        w = state[name + ".weight"].float()
        amax = w.abs().amax(dim=1, keepdim=True) if name in per_channel else w.abs().amax()
        scale = (amax / E4M3_MAX).clamp(min=1e-12)
        state[name + ".weight"] = (w / scale).to(torch.float8_e4m3fn)
        scales[name + ".weight_scale"] = scale.reshape(-1) if name in per_channel else scale.reshape(())
        scales[name + ".input_scale"] = torch.rand((), generator=gen) + 0.01
    save_file(state, str(folder / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file(scales, str(folder / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    weight_map = {**{k: "diffusion_pytorch_model-00001-of-00002.safetensors" for k in state},
                  **{k: "diffusion_pytorch_model-00002-of-00002.safetensors" for k in scales}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (root / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": None}}))
    return folder


def dequantized_state(folder) -> dict[str, torch.Tensor]:
    """The float32 state of an fp8 checkpoint, computed straight from its files: w8 * scale."""
    raw = {}
    for file in sorted(folder.glob("*.safetensors")):
        raw.update(load_file(file))
    state = {}
    for key, t in raw.items():
        if key.endswith((".weight_scale", ".input_scale")):
            continue
        if t.dtype == torch.float8_e4m3fn:
            s = raw[key[: -len("weight")] + "weight_scale"].double()
            t = (t.double() * (s if s.numel() == 1 else s.reshape(-1, 1))).float()
        state[key] = t
    return state


def _outputs(model: Cosmos3Omni, case) -> list[torch.Tensor]:
    with torch.no_grad():
        out, und = model(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
        return [t for t in (out.vision, out.sound, out.actions, model.logits(und)) if t is not None]


@pytest.fixture
def fp8_case(tmp_path, rng, gen):
    cfg = random_config(rng.choice(["qwen", "edge"]), rng)
    model = Cosmos3Omni(cfg).eval()
    randomize_weights(model, gen, norm_spread=0.3)
    names = _linear_names(model)
    per_channel = set(rng.sample(names, len(names) // 3))
    folder = write_fp8(tmp_path, model, gen, per_channel)
    return cfg, model, folder, random_case(cfg, gen, rng)


def test_dequantized_load_equals_float_model_of_the_dequantized_weights(fp8_case):
    cfg, original, folder, case = fp8_case
    loaded = load_transformer(folder.parent)  # CPU: dequantized on load
    assert not any(isinstance(m, Fp8Linear) for m in loaded.modules())
    reference = Cosmos3Omni(cfg).eval()
    reference.load_state_dict(dequantized_state(folder), strict=True)
    want_params = dict(reference.state_dict())
    assert all(torch.equal(p, want_params[n]) for n, p in loaded.state_dict().items())  # the very same weights
    for got, want in zip(_outputs(loaded, case), _outputs(reference, case), strict=True):
        # and so the same outputs, up to kernels whose rounding depends on the data's alignment (1e-6 measured on an
        # AVX2 machine with bit-equal weights)
        assert relative_error(got, want) < 1e-5
    # and within fp8 rounding of the weights it was made from, but not equal to them
    errors = [relative_error(got, want) for got, want in zip(_outputs(loaded, case), _outputs(original, case))]
    print(f"fp8 against the original float weights: relative errors {[f'{e:.3f}' for e in errors]}")
    assert FP8_BOUND > max(errors) > 0  # (an output can be all zeros: every action step clean)


def test_kept_fp8_gives_the_same_outputs_in_fewer_bytes(fp8_case):
    cfg, original, folder, case = fp8_case
    float_model = load_transformer(folder.parent, fp8="dequantize")
    kept = load_transformer(folder.parent, fp8="keep")
    layer = kept.layers[0].mlp_moe_gen.up_proj
    assert isinstance(layer, Fp8Linear) and layer.weight.dtype == torch.float8_e4m3fn
    assert type(kept.lm_head) is nn.Linear and type(kept.proj_in) is nn.Linear  # left float in the file
    assert sum(isinstance(m, Fp8Linear) for m in kept.modules()) == len(_linear_names(original))
    for got, want in zip(_outputs(kept, case), _outputs(float_model, case), strict=True):
        assert torch.equal(got, want)
    assert weight_bytes(kept) < 0.8 * weight_bytes(float_model)
    # bf16 compute: the weight is dequantized to the input's dtype per call
    x = torch.randn(3, cfg.hidden_size, dtype=torch.bfloat16)
    assert layer(x).dtype == torch.bfloat16


def test_a_wrong_scale_breaks_the_bound(fp8_case, tmp_path):
    """The error bound above catches a loader that misreads the scale (here: every scale doubled in the file)."""
    _, original, folder, case = fp8_case
    scales_file = folder / "diffusion_pytorch_model-00002-of-00002.safetensors"
    scales = load_file(scales_file)
    save_file({k: v * 2 if k.endswith("weight_scale") else v for k, v in scales.items()}, str(scales_file))
    bad = load_transformer(folder.parent)
    errors = [relative_error(got, want) for got, want in zip(_outputs(bad, case), _outputs(original, case))]
    print(f"doubled scales: relative errors {[f'{e:.3f}' for e in errors]}")
    assert max(errors) > FP8_BOUND


def test_reasoner_reads_an_fp8_checkpoint(fp8_case):
    """The und-only load skips the gen weights' scales with the gen weights."""
    cfg, _, folder, case = fp8_case
    und = load_transformer(folder.parent, with_gen=False)
    full = load_transformer(folder.parent)
    positions = case["text_positions"]
    with torch.no_grad():
        a = und.logits(und.und_forward(und.embed_tokens(case["input_ids"][None]), positions))
        b = full.logits(full.und_forward(full.embed_tokens(case["input_ids"][None]), positions))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ malformed files


def _edit_scales(folder, edit) -> None:
    file = folder / "diffusion_pytorch_model-00002-of-00002.safetensors"
    scales = load_file(file)
    edit(scales)
    save_file(scales, str(file))
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: v for k, v in data["weight_map"].items() if v != file.name}
    data["weight_map"].update({k: file.name for k in scales})
    index.write_text(json.dumps(data))


def test_missing_scale_is_refused_naming_the_tensor(fp8_case):
    _, model, folder, _ = fp8_case
    name = _linear_names(model)[-1]
    _edit_scales(folder, lambda s: s.pop(name + ".weight_scale"))
    with pytest.raises(CheckpointError, match=rf"fp8 weight '{name}\.weight' has no scale.*'{name}\.weight_scale'"):
        load_transformer(folder.parent)


def test_scale_of_the_wrong_shape_is_refused(fp8_case):
    _, model, folder, _ = fp8_case
    name = _linear_names(model)[0]
    _edit_scales(folder, lambda s: s.update({name + ".weight_scale": torch.ones(3, 2)}))
    with pytest.raises(CheckpointError, match=rf"'{name}\.weight_scale' has shape \[3, 2\]; expected one value"):
        load_transformer(folder.parent)


def test_scale_without_an_fp8_weight_and_bad_values_are_refused(fp8_case):
    _, model, folder, _ = fp8_case
    _edit_scales(folder, lambda s: s.update({"lm_head.weight_scale": torch.tensor(1.0)}))
    with pytest.raises(CheckpointError, match=r"scale 'lm_head\.weight_scale' belongs to no fp8 weight"):
        load_transformer(folder.parent)
    name = _linear_names(model)[1]
    _edit_scales(folder, lambda s: (s.pop("lm_head.weight_scale"), s.update({name + ".weight_scale":
                                                                             torch.tensor(-0.5)})))
    with pytest.raises(CheckpointError, match=rf"scale '{name}\.weight_scale' holds a non-positive"):
        load_transformer(folder.parent)


def test_other_quantization_formats_are_refused(fp8_case):
    _, model, folder, _ = fp8_case
    (folder.parent / "hf_quant_config.json").write_text(json.dumps({"quant_method": "modelopt",
                                                                     "quant_algo": "NVFP4"}))
    with pytest.raises(CheckpointError, match="'NVFP4' is not supported"):
        load_transformer(folder.parent)
    (folder.parent / "hf_quant_config.json").unlink()
    name = _linear_names(model)[0]
    _edit_scales(folder, lambda s: s.update({name + ".weight_scale_2": torch.tensor(1.0)}))
    with pytest.raises(CheckpointError, match=rf"'{name}\.weight_scale_2' belongs to a quantization format"):
        load_transformer(folder.parent)


def test_kept_fp8_layers_stream_with_offload(fp8_case):
    """fp8 weights and their scales come and go with their layer (offload.py) and give the same numbers."""
    from cosmos3.offload import Away, offload_model

    _, _, folder, case = fp8_case
    want = _outputs(load_transformer(folder.parent, fp8="keep"), case)
    streamed = load_transformer(folder.parent, fp8="keep")
    off = offload_model(streamed, "cpu", "layers")
    layer = streamed.layers[0].self_attn.add_q_proj
    assert isinstance(layer.weight, Away) and isinstance(layer.weight_scale, Away)
    for got, w in zip(_outputs(streamed, case), want, strict=True):
        assert torch.equal(got, w)
    assert off.stats.peak_groups == 2
