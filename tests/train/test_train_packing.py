"""Sequence packing for chat SFT: conversations end to end in one row (block-diagonal causal attention, their own
positions) give the losses and gradients of the same conversations padded into a batch, and the grouping packs
them under the token budget."""

import json
import random

import pytest
import torch

from cosmos3.reasoner import Reasoner
from cosmos3.train.batch import TrainModule, group, pack_chat, prepare_chat
from cosmos3.train.data import ChatSource
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

    ids, pos, mask, spans = pack_chat(samples)
    assert ids.shape == (1, sum(lengths)) and mask.shape == (1, 1, sum(lengths), sum(lengths))
    assert [L for _, _, L in spans] == lengths and int(mask.sum()) == sum(L * L for L in lengths)

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
