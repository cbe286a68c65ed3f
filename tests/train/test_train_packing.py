"""Sequence packing for chat SFT: conversations end to end in one row (block-diagonal causal attention, their own
positions) give the losses and gradients of the same conversations padded into a batch, and the grouping packs
them under the token budget."""

import json
import random

import pytest
import torch

from cosmos3.reasoner import Reasoner
from cosmos3.train.batch import TrainModule, group, pack_chat, prepare_chat
from cosmos3.train.chat import ChatSource
from cosmos3.train.recipe import LossConfig
from train_helpers import media_chat_file, vl_checkpoint


def _samples(reasoner, rng):
    convs = list(ChatSource(media_chat_file()).records)  # two image conversations
    convs += [[{"role": "user", "content": [{"type": "text", "text": "Why " * rng.randint(1, 9) + "?"}]},
               {"role": "assistant", "content": "Because " * rng.randint(1, 6)}],
              [{"role": "user", "content": [{"type": "text", "text": "Count."}]},
               {"role": "assistant", "content": "One."},
               {"role": "user", "content": [{"type": "text", "text": "Again?"}]},
               {"role": "assistant", "content": "Two, " * rng.randint(1, 4)}]]
    rng.shuffle(convs)
    return [prepare_chat(json.loads(json.dumps(c)), reasoner, 4096) for c in convs]


def _loss_and_grads(module, samples):
    module.zero_grad(set_to_none=True)
    vision = module.vision[0]
    vision.zero_grad(set_to_none=True)
    total, parts = module.chat_loss(samples)
    total.backward()
    named = list(module.model.named_parameters()) + [("vision." + n, p) for n, p in vision.named_parameters()]
    return total.detach(), parts, {n: p.grad.clone() for n, p in named if p.grad is not None}


def test_packed_row_equals_padded_batch():
    rng = random.Random()
    reasoner = Reasoner.from_pretrained(vl_checkpoint())
    reasoner.vision.requires_grad_(True)
    samples = _samples(reasoner, rng)
    lengths = [s.input_ids.shape[0] for s in samples]
    assert len(set(lengths)) > 1 and any(s.media for s in samples)

    ids, pos, packing = pack_chat(samples)
    assert ids.shape == (1, sum(lengths)) and pos.shape == (1, 3, sum(lengths))
    assert [L for _, L in packing.und] == lengths and packing.und[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(packing.und, packing.und[1:]))

    model = reasoner.model.float()
    padded = _loss_and_grads(TrainModule(model, LossConfig(), vision=reasoner.vision), samples)
    packed = _loss_and_grads(TrainModule(model, LossConfig(), vision=reasoner.vision, pack=True), samples)
    assert torch.allclose(packed[0], padded[0], rtol=1e-5, atol=1e-6)
    assert [p.get("text") for p in packed[1]] == [
        None if p.get("text") is None else pytest.approx(p["text"], rel=1e-5, abs=1e-6) for p in padded[1]]
    assert packed[2].keys() == padded[2].keys() and any(k.startswith("vision.") for k in packed[2])
    for name, g in padded[2].items():
        scale = float(g.abs().max()) + 1e-12
        assert float((packed[2][name] - g).abs().max()) / scale < 1e-4, name


def test_grouping_packs_lengths_under_the_budget():
    from types import SimpleNamespace

    rng = random.Random()
    samples = [SimpleNamespace(input_ids=torch.zeros(L), tokens=L, shape_key=("chat",))
               for L in [rng.randint(5, 60) for _ in range(30)] + [150]]
    packed, padded = group(samples, budget=100, pack=True), group(samples, budget=100)
    assert sorted(i for g in packed for i in g) == list(range(len(samples)))
    for g in packed:
        assert len(g) == 1 or sum(samples[i].tokens for i in g) <= 100
    assert [len(samples) - 1] in packed  # over budget alone
    assert len(packed) <= len(padded)


def _mixed_gen_samples(seed):
    """Generation samples of four different shapes: an action window, the same video without actions, a single image,
    and a video twice as long; prompts of different lengths."""
    from dataclasses import replace

    from cosmos3.checkpoint import load_transformer
    from cosmos3.tokenizers import TextTokenizer
    from cosmos3.train.batch import prepare_gen
    from cosmos3.train.data import LatentSource
    from train_helpers import latents_folder, tiny_checkpoint

    model = load_transformer(tiny_checkpoint(), dtype=torch.float32).train()
    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer").backend
    loss = LossConfig(caption_dropout=0.3, policy=1, forward_dynamics=1, inverse_dynamics=1, t2v=1, i2v=1)
    source = LatentSource(latents_folder())
    base = [source[i] for i in range(len(source))]
    rng = random.Random(seed)
    items = [base[0], replace(base[1], actions=None, domain_id=None, prompt="A gripper " * rng.randint(1, 6)),
             replace(base[2], vision=base[2].vision[:, :1], num_frames=1, actions=None, domain_id=None),
             replace(base[3], vision=torch.cat([base[3].vision, base[0].vision], dim=1), num_frames=13, actions=None,
                     domain_id=None)]
    samples = [prepare_gen(it, seed + i, seed, loss, tok, model, use_system_prompt=False) for i, it in enumerate(items)]
    return model, loss, samples


def test_packed_generation_row_equals_separate_samples():
    seed = random.randrange(10**6)
    model, loss, samples = _mixed_gen_samples(seed)
    assert len({s.shape_key for s in samples}) == len(samples)  # nothing here could share a padded batch
    assert len({s.input_ids.shape[0] for s in samples}) > 1
    assert group(samples, budget=10**6) != [[0, 1, 2, 3]] and group(samples, budget=10**6, pack=True) == [[0, 1, 2, 3]]

    def loss_and_grads(module, batches):
        module.zero_grad(set_to_none=True)
        total, parts = 0.0, []
        for b in batches:
            t, p = module("gen", b)
            total, parts = total + t, parts + p
        total.backward()
        return total.detach(), parts, {n: p.grad.clone() for n, p in module.model.named_parameters()
                                       if p.grad is not None}

    for train in ("full", "gen"):
        from cosmos3.train.loop import set_trainable

        set_trainable(model, train)
        alone = loss_and_grads(TrainModule(model, loss), [[s] for s in samples])
        packed = loss_and_grads(TrainModule(model, loss, pack=True), [samples])
        assert torch.allclose(packed[0], alone[0], rtol=1e-5, atol=1e-6), train
        for a, b in zip(packed[1], alone[1]):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)
        assert packed[2].keys() == alone[2].keys()
        for name, g in alone[2].items():
            scale = float(g.abs().max()) + 1e-12
            assert float((packed[2][name] - g).abs().max()) / scale < 1e-4, (train, name)
