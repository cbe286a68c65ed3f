import pytest
import torch

from cosmos3.model.heads import DomainAwareLinear, TimestepEmbedder, patchify, timestep_features, unpatchify


@pytest.mark.parametrize("H, W", [(4, 6), (5, 7), (1, 1), (3, 8)])
def test_patchify_layout_and_round_trip(H, W, gen):
    C, T, p = 3, 2, 2
    latent = torch.randn(C, T, H, W, generator=gen)
    tokens = patchify(latent, p)
    rows, cols = -(-H // p), -(-W // p)
    assert tokens.shape == (T * rows * cols, p * p * C)
    # DESIGN 2.4: per-token layout (p_row, p_col, C), C fastest; padding is zero.
    t, r, c = T - 1, rows - 1, 0
    token = tokens[t * rows * cols + r * cols + c].view(p, p, C)
    for dr in range(p):
        for dc in range(p):
            y, x = r * p + dr, c * p + dc
            expected = latent[:, t, y, x] if (y < H and x < W) else torch.zeros(C)
            assert torch.equal(token[dr, dc], expected)
    assert torch.equal(unpatchify(tokens, T, H, W, p), latent)


def test_timestep_features_match_reference(gen):
    from diffusers.models.embeddings import Timesteps

    t = torch.rand(6, generator=gen) * 1000
    ref = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(t)
    torch.testing.assert_close(timestep_features(t), ref, rtol=0, atol=0)
    emb = TimestepEmbedder(32, 0.001)
    assert emb(torch.tensor(500.0)).shape == (1, 32)


def test_domain_aware_linear_selects_per_domain_weights(gen):
    layer = DomainAwareLinear(5, 3, num_domains=4)
    x = torch.randn(6, 5, generator=gen)
    ids = torch.tensor([0, 1, 2, 3, 1, 0])
    out = layer(x, ids)
    for i, d in enumerate(ids.tolist()):
        w = layer.fc.weight[d].view(5, 3)
        torch.testing.assert_close(out[i], x[i] @ w + layer.bias.weight[d])
    torch.testing.assert_close(layer(x, 2), layer(x, torch.full((6,), 2)))
    with pytest.raises(ValueError, match="domain ids: expected 1 or 6"):
        layer(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        layer(x, -1)
