"""Offload (offload.py) on the CPU, where the "device" is the host itself: the weights still come and go one group
at a time (an away weight is an empty meta tensor, so touching one fails), and the outputs must be bit-identical to
the same model without offload, on fresh random weights and inputs."""

import copy

import pytest
import torch
from torch import nn

from cosmos3.model import Cosmos3Omni
from cosmos3.offload import Away, offload_model
from cosmos3.quant import quantize_int8

from oracle import random_case, random_config, relative_error
from reasoner_oracle import randomize_weights


def _model(rng, gen, with_gen=True):
    cfg = random_config(rng.choice(["qwen", "edge"]), rng)
    model = Cosmos3Omni(cfg, with_gen=with_gen).eval()
    randomize_weights(model, gen, norm_spread=0.3)
    return cfg, model


def _split(model, case):
    """The generator's path: und cache once, a gen pass, velocities; then the reasoner's: und_forward and logits."""
    with torch.no_grad():
        cache = model.encode_und(case["input_ids"], case["text_positions"])
        hidden = model.run_gen(model.embed_gen(case["inputs"]), case["gen_positions"], cache)
        out = model.decode_gen(hidden[0], case["inputs"])
        logits = model.logits(model.und_forward(model.embed_tokens(case["input_ids"][None]), case["text_positions"]))
    return [t for t in (*cache.keys, out.vision, out.sound, out.actions, logits) if t is not None]


def _joint(model, case):
    with torch.no_grad():
        out, und = model(case["input_ids"], case["text_positions"], case["inputs"], case["gen_positions"])
    return [t for t in (out.vision, out.sound, out.actions, und) if t is not None]


def _layer_bytes(model, half):
    gen_names = ("add_", "to_add_out", "norm_added", "moe_gen")
    sizes = []
    for layer in model.layers:
        sizes.append(sum(p.numel() * p.element_size() for n, p in layer.named_parameters()
                         if any(g in n for g in gen_names) == (half == "gen")))
    return sizes


def test_layers_stream_one_ahead_with_identical_outputs(rng, gen):
    cfg, model = _model(rng, gen)
    case = random_case(cfg, gen, rng)
    want_split, want_joint = _split(model, case), _joint(model, case)
    und_bytes, gen_bytes = _layer_bytes(model, "und"), _layer_bytes(model, "gen")
    streamed = copy.deepcopy(model)
    off = offload_model(streamed, "cpu", "layers")
    n = cfg.num_hidden_layers
    # every layer's weights are away until used; the embeddings and heads stay
    assert all(isinstance(p, Away) for layer in streamed.layers for p in layer.parameters())
    assert not isinstance(streamed.embed_tokens.weight, Away) and not isinstance(streamed.proj_in.weight, Away)
    for got, want in zip(_split(streamed, case), want_split, strict=True):
        assert torch.equal(got, want)
    history = off.stats.history
    assert history[:2 * n] == [f"und.{i}" for i in range(n)] + [f"gen.{i}" for i in range(n)]
    # the layer running and the next one: never more on the device
    assert off.stats.peak_groups == 2
    pairs = [a + b for sizes in (und_bytes, gen_bytes) for a, b in zip(sizes, sizes[1:] + sizes[:1])]
    assert off.stats.peak_bytes == max(pairs) < sum(und_bytes) + sum(gen_bytes)
    # after the calls at most the one fetched ahead remains
    resident = [i for i, layer in enumerate(streamed.layers)
                if not all(isinstance(p, Away) for p in layer.parameters())]
    assert len(resident) <= 1
    # the joint pass (training-style, und and gen interleaved) gives the same numbers too
    for got, want in zip(_joint(streamed, case), want_joint, strict=True):
        assert torch.equal(got, want)
    assert off.stats.peak_groups == 2
    # a weight that is away holds no value: using one by mistake is an error naming its group
    with pytest.raises(RuntimeError, match=f"group 'gen.{n - 1}' that is not on the device"):
        streamed.layers[n - 1].mlp_moe_gen.up_proj(torch.randn(2, cfg.hidden_size))


def test_components_take_turns_with_identical_outputs(rng, gen):
    cfg, model = _model(rng, gen)
    case = random_case(cfg, gen, rng)
    want = _split(model, case)
    swapped = copy.deepcopy(model)
    off = offload_model(swapped, "cpu", "components")
    assert isinstance(swapped.lm_head.weight, Away) and isinstance(swapped.proj_out.weight, Away)
    for got, w in zip(_split(swapped, case), want, strict=True):
        assert torch.equal(got, w)
    assert off.stats.peak_groups == 1  # one tower at a time on this path
    assert off.stats.history == ["und", "gen", "und"]
    total = sum(g.nbytes for g in off.groups.values())
    assert off.stats.peak_bytes == max(g.nbytes for g in off.groups.values()) < total
    for got, w in zip(_joint(swapped, case), _joint(model, case), strict=True):
        assert torch.equal(got, w)


def test_und_only_model_streams_its_layers(rng, gen):
    cfg, model = _model(rng, gen, with_gen=False)
    ids = torch.randint(0, cfg.vocab_size, (rng.randint(5, 30),), generator=gen)
    positions = torch.arange(ids.shape[0], dtype=torch.float32).expand(3, -1)
    with torch.no_grad():
        want = model.logits(model.und_forward(model.embed_tokens(ids[None]), positions))
        off = offload_model(model, "cpu", "layers")
        got = model.logits(model.und_forward(model.embed_tokens(ids[None]), positions))
    assert torch.equal(got, want) and off.stats.peak_groups == 2 and set(off.groups) == {
        f"und.{i}" for i in range(cfg.num_hidden_layers)}


def test_bad_modes_are_refused(rng, gen):
    _, model = _model(rng, gen)
    with pytest.raises(ValueError, match=r"offload: expected one of \('none', 'components', 'layers'\), got 'disk'"):
        offload_model(model, "cpu", "disk")
    with pytest.raises(ValueError, match="offload: int8 weights"):
        offload_model(quantize_int8(model), "cpu", "layers")
    assert offload_model(nn.Module(), "cpu", "none") is None


# ------------------------------------------------------------------------------------------------ the surfaces


def test_generator_outputs_match_without_offload(tmp_path, rng, gen, seed):
    from cosmos3.generator import Generator

    from oracle import build_reference_pipeline

    cfg = random_config(rng.choice(["qwen", "edge"]), rng).replace(vocab_size=rng.randint(300, 400))
    build_reference_pipeline(tmp_path, cfg, gen, sound=True)
    kw = dict(num_frames=5, height=64, width=64, fps=16, num_inference_steps=3, seed=seed, progress=False,
              enable_sound=True)
    results = {}
    for mode in ("none", "layers", "components"):
        g = Generator.from_pretrained(tmp_path, device="cpu", offload=mode)
        with pytest.warns(UserWarning):
            results[mode] = g.generate("A red block slides left.", **kw)
        if mode != "none":
            history = g.offloader.stats.history
            assert "vae" in history and "sound" in history
            assert isinstance(g.vae.vae.decoder.conv_in.weight, Away)  # the VAE left after its call
            assert g.offloader.stats.peak_groups <= 2
    # The same weights and the same arithmetic; only where the weights sit in memory changes. On some CPUs (measured
    # on an AVX2 machine, 2026-12-02) the float kernels' results depend on the data's alignment by an ulp, so the
    # comparison allows rounding: 1e-5 relative for the latents and sound, one level in a frame.
    for mode in ("layers", "components"):
        for field in ("latents", "sound"):
            assert relative_error(getattr(results[mode], field), getattr(results["none"], field)) < 1e-5, (mode, field)
        diff = (results[mode].frames.int() - results["none"].frames.int()).abs()
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3, mode
    with pytest.raises(ValueError, match="offload: expected one of"):
        Generator.from_pretrained(tmp_path, device="cpu", offload="disk")


def test_reason_command_takes_offload(tmp_path, rng, gen, capsys):
    from cosmos3.checkpoint import save_transformer
    from cosmos3.cli import reason_main
    from cosmos3.tokenizers import byte_level_tokenizer

    tok = byte_level_tokenizer()
    for _ in range(6):  # a random model may end its turn at once: draw until the plain answer has text to compare
        cfg = random_config(rng.choice(["qwen", "edge"]), rng).replace(vocab_size=len(tok) + rng.randint(0, 50))
        model = Cosmos3Omni(cfg)
        randomize_weights(model, gen, norm_spread=0.3)
        save_transformer(model, tmp_path / "transformer")
        tok.save_pretrained(tmp_path / "text_tokenizer")
        assert reason_main(["Hello?", "--checkpoint", str(tmp_path), "--max-tokens", "8", "--temperature", "0"]) == 0
        if capsys.readouterr().out.strip():
            break
    answers = []
    for mode in ("none", "layers", "components"):
        assert reason_main(["Hello?", "--checkpoint", str(tmp_path), "--offload", mode, "--max-tokens", "8",
                            "--temperature", "0"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[1] == answers[0] == answers[2] and answers[0].strip()
    assert reason_main(["Hello?", "--checkpoint", str(tmp_path), "--offload", "disk"]) == 2


def test_reasoner_with_vision_tower_answers_the_same_with_offload(tmp_path, rng, gen):
    """A Qwen3-VL directory (vision tower + und tower): the vision tower is offloaded too, the answer unchanged."""
    import numpy as np

    from cosmos3.reasoner import Reasoner
    from cosmos3.tokenizers import byte_level_tokenizer

    from reasoner_oracle import random_qwen3vl, save_qwen3vl

    tok = byte_level_tokenizer()
    folder = save_qwen3vl(random_qwen3vl(rng, gen, tok, layers=2), tok, tmp_path / "qwen3vl")
    pixels = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (rng.randint(40, 90), 64, 3), np.uint8)
    messages = [{"role": "user", "content": [{"type": "image", "image": pixels},
                                             {"type": "text", "text": "What is here?"}]}]
    answers = {}
    for mode in ("none", "layers", "components"):
        r = Reasoner.from_pretrained(folder, offload=mode)
        answers[mode] = r.chat(messages, temperature=0, presence_penalty=0.0, max_tokens=8).token_ids
        if mode != "none":
            assert "vision" in r.offloader.stats.history
            assert isinstance(next(r.vision.parameters()), Away)  # the tower left after its call
    assert answers["layers"] == answers["none"] == answers["components"] and answers["none"]
