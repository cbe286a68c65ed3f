"""Int8 weights (quant.py) against the float32 model of the same fresh random weights.

The layer: int8 per-channel weights within half a step of the float ones, the fbgemm product within 2% of the float
product. The reasoner: logits relative error and greedy-token agreement (teacher-forced, every position of a random
sequence) against float32. The generator: latent PSNR against float32 for the same seed. Each bound is one that a
broken quantizer (a flipped scale sign, a wrong scale) fails; `test_bounds_catch_a_broken_quantizer` checks so.
"""

import math
import random

import pytest
import torch
from torch import nn

from cosmos3 import quant
from cosmos3.checkpoint import save_transformer
from cosmos3.model import Cosmos3Omni
from cosmos3.quant import Int8Linear, apply_weights, quantize_int8, quantize_weight, weight_bytes
from cosmos3.cli import reason_main
from cosmos3.reasoner import Reasoner
from cosmos3.tokenizers import byte_level_tokenizer

from oracle import build_reference_pipeline, random_config
from reasoner_oracle import randomize_weights
from seeding import fresh_seed

# Bounds for tiny random models (hidden 64-128), where int8 costs more than at real widths: a correct quantizer gives
# 3-7% logits error, 81-95% agreement and 27-33 dB latent PSNR there (fbgemm quantizes activations per tensor too;
# weights alone give 2-3%); a flipped scale sign gives under 10 dB,
# ~200% logits error and chance agreement, a halved scale ~50%.
LOGITS_BOUND = 0.15  # ||int8 - float|| / ||float|| over every position's logits
AGREEMENT_BOUND = 0.6  # greedy tokens agreeing, teacher-forced
PSNR_BOUND = 20.0  # dB, generator latents against float32


def _all_logits(model: Cosmos3Omni, ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits at every position of one sequence [L] -> [L, V]."""
    positions = torch.arange(ids.shape[0], dtype=torch.float32).expand(3, -1)
    with torch.no_grad():
        return model.logits(model.und_forward(model.embed_tokens(ids[None]), positions))[0]


def _quality(exact: torch.Tensor, approx: torch.Tensor) -> tuple[float, float]:
    """(relative error, greedy agreement) of logits [L, V]."""
    error = float((approx - exact).norm() / exact.norm())
    agreement = float((approx.argmax(-1) == exact.argmax(-1)).float().mean())
    return error, agreement


def psnr(ref: torch.Tensor, x: torch.Tensor) -> float:
    """dB, peak = max |ref|."""
    mse = float((x.double() - ref.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(float(ref.abs().max()) ** 2 / mse)


@pytest.fixture(scope="module")
def und_checkpoint(tmp_path_factory):
    """An official-layout checkpoint (transformer/ + text_tokenizer/), fresh random shapes and weights each run."""
    seed = fresh_seed("test_quant.py::und_checkpoint")
    print(f"checkpoint seed {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    tok = byte_level_tokenizer()
    cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False, action=False).replace(
        vocab_size=len(tok) + rng.randint(0, 200))
    model = Cosmos3Omni(cfg)
    randomize_weights(model, gen, norm_spread=0.3)
    root = tmp_path_factory.mktemp("quant")
    save_transformer(model, root / "transformer")
    tok.save_pretrained(root / "text_tokenizer")
    return root, rng


# ------------------------------------------------------------------------------------------------ the layer


@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_matches_float_within_rounding(gen, bias):
    linear = nn.Linear(96, 160, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(160, 96, generator=gen) * torch.rand(160, 1, generator=gen))
        if bias:
            linear.bias.copy_(torch.randn(160, generator=gen))
    q, scale = quantize_weight(linear.weight)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    step = (linear.weight - q.float() * scale[:, None]).abs() / scale[:, None]
    assert float(step.detach().max()) <= 0.5 + 1e-4  # round to nearest: within half a step per channel
    layer = Int8Linear.from_linear(linear)
    w, b = layer.unpacked()
    assert torch.allclose(w, q.float() * scale[:, None], rtol=1e-6, atol=1e-7)
    x = torch.randn(3, 7, 96, generator=gen)
    with torch.no_grad():
        want, got = linear(x), layer(x)
    assert got.shape == (3, 7, 160) and got.dtype == torch.float32
    assert float((got - want).norm() / want.norm()) < 0.02
    assert layer(x.bfloat16()).dtype == torch.bfloat16
    assert layer.nbytes < 0.3 * linear.weight.numel() * 4 + (4 * 160 if bias else 0) + 4 * 160


def test_quantize_replaces_tower_linears_and_lm_head_only(und_checkpoint, rng):
    cfg = random_config(rng.choice(["qwen", "edge"]), rng)
    model = Cosmos3Omni(cfg)
    linears = sum(type(m) is nn.Linear for layer in model.layers for m in layer.modules()) + 1
    before = weight_bytes(model)
    quantize_int8(model)
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == linears
    assert isinstance(model.lm_head, Int8Linear) and isinstance(model.layers[0].mlp_moe_gen.up_proj, Int8Linear)
    # the gen heads stay float (small, precision-bound)
    assert type(model.proj_in) is nn.Linear and type(model.time_embedder.linear_1) is nn.Linear
    assert weight_bytes(model) < before
    with pytest.raises(ValueError, match="weights"):
        apply_weights(Cosmos3Omni(cfg), "int4")


# ------------------------------------------------------------------------------------------------ reasoner


def test_reasoner_int8_logits_and_greedy_agreement(und_checkpoint):
    root, rng = und_checkpoint
    exact = Reasoner.from_pretrained(root)
    small = Reasoner.from_pretrained(root, weights="int8")
    assert isinstance(small.model.lm_head, Int8Linear) and type(exact.model.lm_head) is nn.Linear
    ids = torch.tensor([rng.randrange(256) for _ in range(96)])
    error, agreement = _quality(_all_logits(exact.model, ids), _all_logits(small.model, ids))
    print(f"int8 logits relative error {error:.2e}, greedy agreement {agreement:.1%}")
    assert error < LOGITS_BOUND and agreement >= AGREEMENT_BOUND
    assert error > 0  # the int8 model really is another model
    # the whole surface runs on int8 weights: prompt, prefill, decode loop, detokenizer
    out = small.chat([{"role": "user", "content": "Say something."}], max_tokens=6, temperature=0.0)
    assert out.usage["completion_tokens"] >= 1 if isinstance(out.usage, dict) else True


def test_bounds_catch_a_broken_quantizer(und_checkpoint, monkeypatch):
    """A sign-flipped scale (or a scale off by a factor) must fail the bounds the tests above assert."""
    root, rng = und_checkpoint
    exact = Reasoner.from_pretrained(root)
    ids = torch.tensor([rng.randrange(256) for _ in range(64)])
    good = _all_logits(exact.model, ids)
    honest = quantize_weight
    for broken in (lambda w: (honest(w)[0], -honest(w)[1]), lambda w: (honest(w)[0], 0.5 * honest(w)[1])):
        monkeypatch.setattr(quant, "quantize_weight", broken)
        bad = Reasoner.from_pretrained(root, weights="int8")
        error, agreement = _quality(good, _all_logits(bad.model, ids))
        assert error > LOGITS_BOUND or agreement < AGREEMENT_BOUND


def test_reason_command_takes_weights_int8(und_checkpoint, capsys):
    root, _ = und_checkpoint
    assert reason_main(["Hello?", "--checkpoint", str(root), "--weights", "int8", "--max-tokens", "4",
                        "--temperature", "0"]) == 0
    assert reason_main(["Hello?", "--checkpoint", str(root), "--weights", "int4"]) == 2


# ------------------------------------------------------------------------------------------------ generator


def test_generator_int8_latent_psnr(tmp_path, rng, gen, seed):
    from cosmos3.cli import build_parser
    from cosmos3.generator import Generator

    cfg = random_config(rng.choice(["qwen", "edge"]), rng).replace(vocab_size=rng.randint(300, 400))
    build_reference_pipeline(tmp_path, cfg, gen, sound=False)
    kw = dict(num_frames=5, height=64, width=64, fps=16, num_inference_steps=4, seed=seed, progress=False)
    exact = Generator.from_pretrained(tmp_path, device="cpu")
    small = Generator.from_pretrained(tmp_path, device="cpu", weights="int8")
    assert isinstance(small.model.layers[0].self_attn.add_q_proj, Int8Linear)
    with pytest.warns(UserWarning):
        a = exact.generate("A red block slides left.", **kw)
    with pytest.warns(UserWarning):
        b = small.generate("A red block slides left.", **kw)
    value = psnr(a.latents, b.latents)
    print(f"int8 latent PSNR {value:.1f} dB")
    assert PSNR_BOUND < value < math.inf
    # a broken scale is far below the bound
    bad = Generator.from_pretrained(tmp_path, device="cpu")
    for m in list(bad.model.modules()):
        for name, child in list(m.named_children()):
            if type(child) is nn.Linear and child in set(x for l in bad.model.layers for x in l.modules()):
                q, s = quantize_weight(child.weight)
                setattr(m, name, Int8Linear(q, -s, child.bias))
    with pytest.warns(UserWarning):
        c = bad.generate("A red block slides left.", **kw)
    print(f"sign-flipped scales: PSNR {psnr(a.latents, c.latents):.1f} dB")
    assert psnr(a.latents, c.latents) < PSNR_BOUND
    args = build_parser().parse_args(["generate", "a prompt", "--weights", "int8"])
    assert args.weights == "int8"
