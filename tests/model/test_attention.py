import pytest
import torch

from cosmos3.model.attention import attention, causal_mask


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (8, 1)])
@pytest.mark.parametrize("mode", ["full", "causal", "causal_suffix", "mask", "causal_mask"])
def test_sdpa_agrees_with_math(heads, kv_heads, mode, gen):
    B, S, K, Dh = 2, 7, 7, 16
    if mode == "causal_suffix":
        S = 3  # the last 3 queries of 7 positions (decode with a cache)
    q = torch.randn(B, heads, S, Dh, generator=gen)
    k, v = torch.randn(B, kv_heads, K, Dh, generator=gen), torch.randn(B, kv_heads, K, Dh, generator=gen)
    mask = None
    if "mask" in mode:
        mask = torch.ones(B, 1, 1, K, dtype=torch.bool)
        mask[1, ..., 5:] = False
    causal = mode.startswith("causal")
    out = attention(q, k, v, causal=causal, mask=mask)
    ref = attention(q, k, v, causal=causal, mask=mask, backend="math")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # Independent check of the masking: a query never depends on a key it must not see.
    k2 = k.clone()
    k2[..., -1, :] += 100.0
    changed = (attention(q, k2, v, causal=causal, mask=mask) - out).abs().amax(dim=(1, 3)) > 1e-6  # [B, S]
    last_visible = torch.ones(B, S, dtype=torch.bool)
    if causal:
        last_visible &= causal_mask(S, K)[:, -1]
    if mask is not None:
        last_visible &= mask[:, 0, 0, -1:].expand(B, S)
    assert torch.equal(changed, last_visible)


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_errors():
    q, k = torch.randn(1, 3, 2, 8), torch.randn(1, 2, 2, 8)
    with pytest.raises(ValueError, match="not a multiple"):
        attention(q, k, k)
    with pytest.raises(ValueError, match="backend 'flash9' is unknown"):
        attention(k, k, k, backend="flash9")
