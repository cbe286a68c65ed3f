import math

import pytest
import torch

from cosmos3.model.rope import (MRoPE, action_positions, apply_rope, modality_offset, slot_axes, sound_positions,
                                text_positions, vision_positions)


def test_slot_axes_follow_the_interleaving_rule():
    axes = slot_axes(128, [24, 20, 20])
    for i, a in enumerate(axes.tolist()):
        expected = 1 if (i % 3 == 1 and i < 60) else 2 if (i % 3 == 2 and i < 60) else 0
        assert a == expected, i
    assert axes.bincount().tolist() == [24, 20, 20]


@pytest.mark.parametrize("head_dim, axes, theta", [(128, [24, 20, 20], 5e6), (32, [6, 5, 5], 1e8), (16, [4, 2, 2], 1e4)])
def test_tables_match_the_reference(head_dim, axes, theta, gen):
    from diffusers.models.transformers.transformer_cosmos3 import Cosmos3VLTextRotaryEmbedding

    positions = torch.rand(3, 50, generator=gen) * 20000
    ref = Cosmos3VLTextRotaryEmbedding(head_dim, theta, axes)
    ref_cos, ref_sin = ref(positions.unsqueeze(1), positions.device, torch.float32)
    cos, sin = MRoPE(head_dim, theta, axes)(positions)
    torch.testing.assert_close(cos, ref_cos[0], rtol=0, atol=0)
    torch.testing.assert_close(sin, ref_sin[0], rtol=0, atol=0)


def test_rotation_preserves_norm_and_relative_angles(gen):
    rope = MRoPE(32, 1e4, [6, 5, 5])
    q, k = torch.randn(2, 1, 32, generator=gen), torch.randn(2, 1, 32, generator=gen)
    p = torch.tensor([[3.0, 10.0]]).expand(3, 2)
    cos, sin = rope(p)
    qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))
    # Shifting both positions by the same amount keeps q.k unchanged (relative encoding).
    cos2, sin2 = rope(p + 7.0)
    torch.testing.assert_close((apply_rope(q, cos2, sin2)[0] * apply_rope(k, cos2, sin2)[1]).sum(),
                               (qr[0] * kr[1]).sum(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frames, rows, cols, fps", [(1, 3, 5, 24.0), (6, 2, 3, 24.0), (4, 4, 2, 16.0),
                                                     (3, 1, 1, 30.0), (5, 2, 2, 10.0)])
def test_vision_positions_match_reference_and_design(frames, rows, cols, fps, rng):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import get_3d_mrope_ids_vae_tokens

    L = rng.randint(1, 500)
    offset = modality_offset(L)
    ours = vision_positions(frames, rows, cols, offset, fps)
    ref, _ = get_3d_mrope_ids_vae_tokens(frames, rows, cols, L + 15000, fps=fps, base_fps=24.0)
    assert torch.equal(ours, ref.float())
    # DESIGN 2.3: T = O + j * 24 / fps (one frame: floor(O)); spatial ids restart at 0.
    t = ours[0].view(frames, rows * cols)
    expected = [math.floor(offset)] if frames == 1 else [offset + j * 24 / fps for j in range(frames)]
    torch.testing.assert_close(t[:, 0], torch.tensor(expected, dtype=torch.float32))
    assert ours[1].view(frames, rows, cols)[0, :, 0].tolist() == list(range(rows))
    assert ours[2].view(frames, rows, cols)[0, 0, :].tolist() == list(range(cols))


@pytest.mark.parametrize("count", [1, 2, 17])
def test_sound_and_action_positions_match_reference(count, rng):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import get_3d_mrope_ids_vae_tokens

    offset = modality_offset(rng.randint(1, 300))
    fps = rng.choice([10.0, 15.0, 24.0, 30.0])
    ref_sound, _ = get_3d_mrope_ids_vae_tokens(count, 1, 1, offset, fps=25.0, base_fps=24.0,
                                               temporal_compression_factor=1)
    assert torch.equal(sound_positions(count, offset, 25.0), ref_sound.float())
    ref_action, _ = get_3d_mrope_ids_vae_tokens(count, 1, 1, offset, fps=fps, base_fps=24.0,
                                                temporal_compression_factor=1, base_temporal_compression_factor=4,
                                                start_frame_offset=1)
    ours = action_positions(count, offset, fps)
    assert torch.equal(ours, ref_action.float())
    if count > 1:  # DESIGN 2.3: O + (i + 1) * 6 / fps
        torch.testing.assert_close(ours[0], torch.tensor([offset + (i + 1) * 6 / fps for i in range(count)]))
    assert ours[1:].abs().sum() == 0


def test_text_positions_and_offset():
    p = text_positions(5)
    assert p.shape == (3, 5) and p[0].tolist() == p[2].tolist() == [0, 1, 2, 3, 4]
    assert modality_offset(5) == 15005
