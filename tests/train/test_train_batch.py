"""The training forward pass against the network's own: a micro-batch with right-padded prompts gives each
sample the loss it gets alone, that loss equals flow matching on `Cosmos3Omni.forward`'s output, so do the velocity
predictions the batch returns (`gen_predictions`, what benchmarks sample with), and activation checkpointing changes
neither losses nor gradients."""

import pytest
import torch

from cosmos3.checkpoint import load_transformer
from cosmos3.tokenizers import TextTokenizer
from cosmos3.train.batch import TrainModule, prepare_gen
from cosmos3.train.data import LatentSource
from cosmos3.train.losses import flow_matching_loss
from cosmos3.train.recipe import LossConfig
from train_helpers import latents_folder, tiny_checkpoint


def _setup(seed):
    model = load_transformer(tiny_checkpoint(), dtype=torch.float32).train()
    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer").backend
    source = LatentSource(latents_folder())
    loss = LossConfig(caption_dropout=0.5, policy=1, forward_dynamics=1, inverse_dynamics=1)
    samples = []
    for pos in range(seed, seed + 50):  # two samples of one gen shape whose prompts differ in length
        s = prepare_gen(source[pos % len(source)], pos, seed, loss, tok, model, use_system_prompt=False)
        if not samples or (s.input_ids.shape[0] != samples[0].input_ids.shape[0]
                           and s.shape_key == samples[0].shape_key):
            samples.append(s)
        if len(samples) == 2:
            break
    assert len(samples) == 2
    return model, loss, samples


def _grads(module, samples):
    module.zero_grad(set_to_none=True)
    total, _ = module("gen", samples)
    total.backward()
    return float(total), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_padded_batch_matches_single_samples_and_the_network(seed):
    model, loss, samples = _setup(seed % 1000)
    module = TrainModule(model, loss)
    torch.set_grad_enabled(False)
    try:
        _compare(model, module, loss, samples)
    finally:
        torch.set_grad_enabled(True)


def _compare(model, module, loss, samples):
    batched, parts = module("gen", samples)
    alone = [module("gen", [s])[0] for s in samples]
    assert abs(float(batched) - float(sum(alone))) < 1e-5 * max(1.0, float(batched))
    for s, one in zip(samples, alone):
        out, _ = model(s.input_ids, s.text_positions, s.noised.inputs, s.gen_positions)
        ref, _ = flow_matching_loss(out, s.noised, loss)
        assert abs(float(ref) - float(one)) < 1e-5 * max(1.0, float(ref))
    assert len(parts) == 2 and all("vision" in p or "actions" in p for p in parts)
    for s, pred in zip(samples, module.gen_predictions(samples)):  # padded together, each as the network alone
        out, _ = model(s.input_ids, s.text_positions, s.noised.inputs, s.gen_positions)
        for name in ("vision", "sound", "actions"):
            got, want = getattr(pred, name), getattr(out, name)
            assert (got is None) == (want is None), name
            if want is not None:
                assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5), name


def test_activation_checkpointing_is_exact(seed):
    model, loss, samples = _setup(seed % 1000)
    for p in model.parameters():
        p.requires_grad_(True)
    plain, g_plain = _grads(TrainModule(model, loss, activation_checkpointing=False), samples)
    ckpt, g_ckpt = _grads(TrainModule(model, loss, activation_checkpointing=True), samples)
    assert abs(plain - ckpt) < 1e-6 * max(1.0, abs(plain))
    assert set(g_plain) == set(g_ckpt)
    for name in g_plain:
        assert torch.allclose(g_plain[name], g_ckpt[name], atol=1e-6, rtol=1e-5), name


def test_bf16_autocast_runs_every_head(seed):
    """GPU training runs under bf16 autocast; the CPU autocast takes the same dtype paths (vision, sound, actions)."""
    from cosmos3.train.data import LatentSource

    model, loss, _ = _setup(seed % 1000)
    loss.forward_dynamics = loss.inverse_dynamics = loss.caption_dropout = 0.0  # policy: video and actions noisy
    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer").backend
    item = LatentSource(latents_folder())[0]
    item.sound = torch.randn(model.config.sound_dim, 3)
    sample = prepare_gen(item, seed, seed, loss, tok, model, use_system_prompt=False)
    module = TrainModule(model, loss)
    full, _ = module("gen", [sample])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, parts = module("gen", [sample])
    low.backward()
    assert set(parts[0]) == {"vision", "actions", "sound"}
    assert torch.isfinite(low) and abs(float(low) - float(full)) < 0.1 * float(full)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("negative", ["", "blurry, static"])
def test_dropped_caption_reads_as_the_generator_unconditional_branch(seed, negative):
    """A dropped caption trains the branch that guidance subtracts at inference: for an action sample that is the
    negative prompt as it is (no duration / resolution sentences), for a video sample the templated negative."""
    from cosmos3.sequence import branch_inputs, prompt_text

    model = load_transformer(tiny_checkpoint(), dtype=torch.float32)
    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer").backend
    source = LatentSource(latents_folder())
    item = source[seed % len(source)]
    loss = LossConfig(caption_dropout=1.0, negative_prompt=negative, policy=1)
    sample = prepare_gen(item, seed, seed, loss, tok, model, use_system_prompt=False)
    assert sample.dropped
    expected, _ = branch_inputs(tok, model.config, negative, is_image=False, use_system_prompt=False)
    assert torch.equal(sample.input_ids, expected)

    item.actions = None  # the same sample as a plain video: its negative carries the "not" templates
    loss = LossConfig(caption_dropout=1.0, negative_prompt=negative, t2v=1)
    sample = prepare_gen(item, seed, seed, loss, tok, model, use_system_prompt=False)
    text = prompt_text(negative, num_frames=item.num_frames, fps=item.fps, height=item.height, width=item.width,
                       negative=True)
    expected, _ = branch_inputs(tok, model.config, text, is_image=False, use_system_prompt=False)
    assert torch.equal(sample.input_ids, expected)
