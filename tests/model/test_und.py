"""The und pathway alone equals transformers' Qwen3-VL text decoder, and the static KV cache decodes exactly."""

import pytest
import torch

from cosmos3.model import Cosmos3Omni, KVCache
from cosmos3.model.rope import text_positions
from oracle import random_config


def to_qwen3vl(model: Cosmos3Omni):
    """transformers' Qwen3-VL text model carrying our und weights (renamed as DESIGN 1.4 says)."""
    from transformers import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

    cfg = model.config
    tcfg = Qwen3VLTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps,
        attention_bias=cfg.attention_bias,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta,
                         "mrope_section": cfg.rope_axes_dim, "mrope_interleaved": True})
    tcfg._attn_implementation = "sdpa"
    ref = Qwen3VLTextModel(tcfg).eval()
    names = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "o_proj", "norm_q": "q_norm",
             "norm_k": "k_norm"}
    state = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if key.startswith("layers.") and ("moe_gen" in key or parts[3].startswith(("add_", "norm_added", "to_add"))):
            continue
        if key.startswith("layers.") and parts[2] == "self_attn":
            parts[3] = names[parts[3]]
        if key.startswith(("layers.", "embed_tokens.")) or key == "norm.weight":
            state[".".join(parts)] = value
    ref.load_state_dict(state, strict=True)
    return ref


def _random_model(rng, gen):
    cfg = random_config("qwen", rng)
    model = Cosmos3Omni(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 + 0.5 * torch.randn(p.shape, generator=gen)) if "norm" in name
                    else torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
    return model


def test_und_pathway_equals_qwen3vl_with_deepstack(rng, gen):
    model = _random_model(rng, gen)
    ref = to_qwen3vl(model)
    B, S, D = 2, rng.randint(6, 20), model.config.hidden_size
    embeds = torch.randn(B, S, D, generator=gen)
    positions = torch.stack([torch.randint(0, 40, (3, S), generator=gen).sort(dim=1).values for _ in range(B)])
    visual = torch.rand(B, S, generator=gen) < 0.3
    visual[0, 1] = True
    n_vis = int(visual.sum())
    features = [torch.randn(n_vis, D, generator=gen) for _ in range(min(3, model.config.num_hidden_layers))]
    with torch.no_grad():
        ours = model.und_forward(embeds, positions, deepstack=(visual, features))
        theirs = ref(inputs_embeds=embeds, position_ids=positions.permute(1, 0, 2), visual_pos_masks=visual,
                     deepstack_visual_embeds=features, use_cache=False).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("style", ["qwen", "edge"])
def test_static_cache_prefill_then_decode_equals_full_pass(style, rng, gen):
    cfg = random_config(style, rng)
    model = Cosmos3Omni(cfg).eval()
    L, steps = rng.randint(3, 10), 4
    ids = torch.randint(0, cfg.vocab_size, (1, L + steps), generator=gen)
    pos = text_positions(L + steps)
    with torch.no_grad():
        full = model.und_forward(model.embed_tokens(ids), pos)
        cache = KVCache.allocate(cfg, 1, L + steps + 3, torch.float32)
        parts = [model.und_forward(model.embed_tokens(ids[:, :L]), pos[:, :L], cache, torch.arange(L))]
        for i in range(L, L + steps):
            parts.append(model.und_forward(model.embed_tokens(ids[:, i:i + 1]), pos[:, i:i + 1], cache,
                                           torch.tensor([i])))
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_rows_at_different_lengths_decode_together(rng, gen):
    """Continuous batching: two sequences at different lengths share one decode step, each exact."""
    cfg = random_config("qwen", rng)
    model = Cosmos3Omni(cfg).eval()
    lengths = [3, 7]
    seqs = [torch.randint(0, cfg.vocab_size, (1, n + 1), generator=gen) for n in lengths]
    with torch.no_grad():
        alone = [model.und_forward(model.embed_tokens(s), text_positions(s.shape[1]))[0, -1] for s in seqs]
        cache = KVCache.allocate(cfg, 2, 16, torch.float32)
        for row, (s, n) in enumerate(zip(seqs, lengths)):  # prefill each row into its own cache row
            row_cache = KVCache([k[row:row + 1] for k in cache.keys], [v[row:row + 1] for v in cache.values])
            model.und_forward(model.embed_tokens(s[:, :n]), text_positions(n), row_cache, torch.arange(n))
        last = torch.cat([s[:, -1:] for s in seqs])  # [2, 1]
        write_at = torch.tensor([[n] for n in lengths])
        positions = torch.stack([text_positions(1, float(n)) for n in lengths])
        out = model.und_forward(model.embed_tokens(last), positions, cache, write_at)
    for row in range(2):
        torch.testing.assert_close(out[row, 0], alone[row], rtol=1e-5, atol=1e-5)
