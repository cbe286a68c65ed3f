"""Losses, sigma rules, conditioning masks and label masks against expectations derived independently (plain
Python loops and closed forms), not against the code under test."""

import math
import random

import pytest
import torch

from cosmos3.model import GenInputs, GenOutputs
from cosmos3.train.losses import (action_masks, add_noise, drop_caption, flow_matching_loss, sample_sigma,
                                  shift_sigma, sft_loss, vision_noisy_mask, waver_sigma)
from cosmos3.train.recipe import LossConfig


def test_waver_rule_values():
    for u in [0.0, 0.1, 0.25, 0.5, 0.8, 1.0, random.random()]:
        expected = 1 - u - 1.29 * (math.cos(math.pi * u / 2) ** 2 - 1 + u)
        assert float(waver_sigma(torch.tensor(u, dtype=torch.float64))) == pytest.approx(expected, abs=1e-12)
    assert float(waver_sigma(torch.tensor(0.0))) == pytest.approx(1.0)
    assert float(waver_sigma(torch.tensor(1.0))) == pytest.approx(0.0, abs=1e-7)
    assert float(waver_sigma(torch.tensor(0.5))) == pytest.approx(0.5, abs=1e-7)  # cos^2(pi/4) = 1/2 cancels


def test_shift_and_sampling_rules(gen):
    s = torch.linspace(0, 1, 11)
    for shift in (1.0, 3.0, 10.0):
        expected = [shift * x / (1 + (shift - 1) * x) for x in s.tolist()]
        assert shift_sigma(s, shift).tolist() == pytest.approx(expected, abs=1e-6)
    # waver sampling = the rule applied to U(0,1) draws, then shifted: same generator state, same numbers
    cfg = LossConfig(sigma_sampling="waver", shift=3.0)
    state = gen.get_state()
    got = sample_sigma(cfg, gen, 5)
    gen.set_state(state)
    u = torch.rand(5, generator=gen).tolist()
    want = []
    for x in u:
        t = min(max(1 - x - 1.29 * (math.cos(math.pi * x / 2) ** 2 - 1 + x), 0.0), 1.0)
        want.append(3 * t / (1 + 2 * t))
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # logit-normal: median 0.5 at mean 0; uniform in [0, 1]; clamping to [sigma_min, sigma_max]
    ln = sample_sigma(LossConfig(sigma_sampling="logit_normal"), gen, 4000)
    assert abs(float(ln.median()) - 0.5) < 0.05 and float(ln.min()) > 0 and float(ln.max()) < 1
    un = sample_sigma(LossConfig(sigma_sampling="uniform", sigma_min=0.2, sigma_max=0.9), gen, 4000)
    assert float(un.min()) >= 0.2 and float(un.max()) <= 0.9


def test_noising_targets_and_timestep(gen):
    x0 = torch.randn(4, 3, 2, 2, generator=gen)
    noisy = torch.tensor([False, True, True])
    clean = GenInputs(vision=x0, vision_noisy=noisy, timestep=torch.tensor(0.0))
    state = gen.get_state()
    s = add_noise(clean, torch.tensor(0.3), gen)
    gen.set_state(state)
    noise = torch.randn(4, 3, 2, 2, generator=gen)
    assert float(s.inputs.timestep) == pytest.approx(300.0)
    assert torch.equal(s.inputs.vision[:, 0], x0[:, 0])  # clean frame untouched
    assert torch.allclose(s.inputs.vision[:, 1:], 0.3 * noise[:, 1:] + 0.7 * x0[:, 1:], atol=1e-6)
    assert torch.allclose(s.target.vision, noise - x0, atol=1e-6)


def _loss_by_hand(pred, target, noisy_frames, actions_pred, actions_target, noisy_steps, raw, w_v, w_a):
    """Plain loops: mean over noisy frames x all channels; mean over noisy steps x raw dims."""
    C, T, H, W = pred.shape
    total, n = 0.0, 0
    for c in range(C):
        for t in range(T):
            if not noisy_frames[t]:
                continue
            for h in range(H):
                for w in range(W):
                    total += (float(pred[c, t, h, w]) - float(target[c, t, h, w])) ** 2
                    n += 1
    vision = total / n
    total, n = 0.0, 0
    for i in range(actions_pred.shape[0]):
        if not noisy_steps[i]:
            continue
        for d in range(raw):
            total += (float(actions_pred[i, d]) - float(actions_target[i, d])) ** 2
            n += 1
    return w_v * vision + w_a * total / n


def test_loss_ignores_clean_tokens_and_padded_action_dims(gen):
    C, T, H, W, n, A, raw = 3, 4, 2, 3, 5, 16, 7
    vision_noisy = torch.tensor([False, True, False, True])
    action_noisy = torch.tensor([True, True, False, True, False])
    actions = torch.zeros(n, A)
    actions[:, :raw] = torch.randn(n, raw, generator=gen)
    clean = GenInputs(vision=torch.randn(C, T, H, W, generator=gen), vision_noisy=vision_noisy,
                      timestep=torch.tensor(0.0), actions=actions, action_noisy=action_noisy, domain_id=3)
    sample = add_noise(clean, torch.tensor(0.6), gen, raw_action_dim=raw)
    assert torch.all(sample.inputs.actions[:, raw:] == 0) and torch.all(sample.target.actions[:, raw:] == 0)
    pred = GenOutputs(vision=torch.randn(C, T, H, W, generator=gen), actions=torch.randn(n, A, generator=gen))
    cfg = LossConfig(vision_weight=0.7, action_weight=2.5)
    loss, parts = flow_matching_loss(pred, sample, cfg)
    want = _loss_by_hand(pred.vision, sample.target.vision, vision_noisy.tolist(), pred.actions,
                         sample.target.actions, action_noisy.tolist(), raw, 0.7, 2.5)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert set(parts) == {"vision", "actions"}
    # garbage at clean frames, clean steps and padded dims changes nothing
    pred.vision[:, ~vision_noisy] = 1e6
    pred.actions[~action_noisy] = -1e6
    pred.actions[:, raw:] = 1e6
    assert float(flow_matching_loss(pred, sample, cfg)[0]) == pytest.approx(want, rel=1e-5)


def test_conditioning_masks():
    assert vision_noisy_mask("t2v", 5).tolist() == [True] * 5
    assert vision_noisy_mask("i2v", 5).tolist() == [False, True, True, True, True]
    assert vision_noisy_mask("v2v", 5, 2).tolist() == [False, False, True, True, True]
    assert vision_noisy_mask("v2v", 2, 2).tolist() == [False, True]  # one frame always stays noisy
    assert vision_noisy_mask("i2v", 1).tolist() == [True]  # an image has nothing to condition on
    v, a = action_masks("policy", 3, 4)
    assert v.tolist() == [False, True, True] and a.tolist() == [True] * 4
    v, a = action_masks("forward_dynamics", 3, 4)
    assert v.tolist() == [False, True, True] and a.tolist() == [False] * 4
    v, a = action_masks("inverse_dynamics", 3, 4)
    assert v.tolist() == [False] * 3 and a.tolist() == [True] * 4


def test_caption_dropout_rate(gen):
    cfg = LossConfig(caption_dropout=0.3, negative_prompt="")
    dropped = sum(drop_caption("a cat", cfg, gen)[1] for _ in range(4000))
    assert abs(dropped / 4000 - 0.3) < 0.03
    assert drop_caption("a cat", LossConfig(caption_dropout=0.0), gen) == ("a cat", False)
    assert drop_caption("a cat", LossConfig(caption_dropout=1.0, negative_prompt="ugly"), gen) == ("ugly", True)


def test_sft_loss_counts_labelled_tokens_only(gen):
    L, D, V = 9, 8, 11
    hidden = torch.randn(L, D, generator=gen)
    head = torch.nn.Linear(D, V, bias=False)
    ids = torch.randint(0, V, (L,), generator=gen)
    labels = torch.zeros(L, dtype=torch.bool)
    labels[[4, 5, 8]] = True
    logits = head(hidden).detach()
    want = 0.0
    for t in (4, 5, 8):  # token t is predicted from position t - 1
        row = logits[t - 1].double()
        want += float(torch.logsumexp(row, 0) - row[ids[t]])
    assert float(sft_loss(hidden, head, ids, labels).detach()) == pytest.approx(want / 3, rel=1e-5)
    assert sft_loss(hidden, head, ids, torch.zeros(L, dtype=torch.bool)) is None
