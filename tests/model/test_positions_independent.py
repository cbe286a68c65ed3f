"""Position ids checked against sources that are not ours.

The network parity test in test_omni.py feeds the reference position ids made by our own rope functions, so a
wrong id (an action one step off, an offset one too far) changes both sides alike and passes. Here the reference's
ids come from diffusers' Cosmos3OmniPipeline segment builders (`oracle.pipeline_positions`), and the DESIGN 2.3
formulas are written out below in float64; our ids are made by the production path (`GenLayout.positions`,
`branch_inputs`'s text positions), and the network outputs of both are compared.
"""

import math

import pytest
import torch

from cosmos3.model import Cosmos3Omni, GenInputs
from cosmos3.model.rope import text_positions
from cosmos3.sequence import GenLayout
from oracle import build_reference, pipeline_positions, random_config, reference_forward, relative_error

# (enable_fps_modulation, unified_3d_mrope_reset_spatial_ids)
SETTINGS = {"release": (True, True), "no-fps-modulation": (False, True), "spatial-not-reset": (True, False)}


def _layout(cfg, rng, gen, *, sound: bool, action: bool) -> GenLayout:
    T = rng.choice([1, 2, 3, 5])
    H, W = rng.randint(2, 7), rng.randint(2, 7)
    noisy = torch.rand(T, generator=gen) < 0.6
    noisy[-1] = True
    n = rng.randint(1, 9) if action else 0
    return GenLayout(latent_shape=(cfg.latent_channel, T, H, W), vision_noisy=noisy,
                     fps=rng.choice([8.0, 10.0, 16.0, 24.0, 30.0]), sound_latents=rng.randint(1, 9) if sound else 0,
                     sound_fps=cfg.sound_latent_fps, action_steps=n,
                     action_noisy=(torch.rand(n, generator=gen) < 0.7) if action else None,
                     domain_id=rng.randrange(cfg.num_embodiment_domains) if action else None)


def _written_out(cfg, layout: GenLayout, L: int) -> torch.Tensor:
    """DESIGN 2.3 in float64: text 0..L-1; O = L + margin; vision T = O + j * base_fps / fps for latent frame j
    (floor(O) for one frame), H/W the patch row/column (plus floor(O) when not reset); sound T = O + k * base_fps /
    sound_fps (floor(O) for one latent), H = W = 0 (floor(O) when not reset, as for vision); action i:
    T = O + (i + 1) * (base_fps / 4) / fps (floor(O) + 1 for one step), H and W as sound's. Without fps modulation
    every T is floor(O) + index (+1 for actions)."""
    mod = cfg.enable_fps_modulation
    O = L + cfg.unified_3d_mrope_temporal_modality_margin
    _, T, H, W = layout.latent_shape
    rows, cols = math.ceil(H / cfg.latent_patch_size), math.ceil(W / cfg.latent_patch_size)
    spatial = 0 if cfg.unified_3d_mrope_reset_spatial_ids else math.floor(O)
    ids = []
    for j in range(T):
        t = O + j * cfg.base_fps / layout.fps if (mod and T > 1) else math.floor(O) + j
        ids += [(t, r + spatial, c + spatial) for r in range(rows) for c in range(cols)]
    for k in range(layout.sound_latents):
        ids.append((O + k * cfg.base_fps / layout.sound_fps if (mod and layout.sound_latents > 1)
                    else math.floor(O) + k, spatial, spatial))
    for i in range(layout.action_steps):
        ids.append((O + (i + 1) * (cfg.base_fps / 4) / layout.fps if (mod and layout.action_steps > 1)
                    else math.floor(O) + i + 1, spatial, spatial))
    return torch.tensor(ids, dtype=torch.float64).T


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_gen_positions_equal_the_pipelines_and_the_formulas(setting, rng, gen):
    modulation, reset = SETTINGS[setting]
    for _ in range(6):
        cfg = random_config("qwen", rng).replace(enable_fps_modulation=modulation,
                                                 unified_3d_mrope_reset_spatial_ids=reset)
        ref = build_reference(cfg, gen)
        layout = _layout(cfg, rng, gen, sound=rng.random() < 0.7, action=rng.random() < 0.7)
        L = rng.randint(1, 700)
        ref_text, ref_gen = pipeline_positions(ref, L, layout.latent_shape[1:], layout.fps, layout.sound_latents,
                                               layout.action_steps)
        ours = layout.positions(cfg, L)
        assert torch.equal(text_positions(L), ref_text)
        assert ours.shape == ref_gen.shape and torch.equal(ours.float(), ref_gen), (layout, L)
        torch.testing.assert_close(ours.double(), _written_out(cfg, layout, L), rtol=0, atol=2e-3)


def _inputs(cfg, layout: GenLayout, gen) -> GenInputs:
    C, T, H, W = layout.latent_shape
    inputs = GenInputs(vision=torch.randn(C, T, H, W, generator=gen), vision_noisy=layout.vision_noisy,
                       timestep=torch.tensor(float(torch.randint(1, 1000, (1,), generator=gen))))
    if layout.sound_latents:
        inputs.sound = torch.randn(cfg.sound_dim, layout.sound_latents, generator=gen)
        inputs.sound_noisy = torch.ones(layout.sound_latents, dtype=torch.bool)
    if layout.action_steps:
        inputs.actions = torch.randn(layout.action_steps, cfg.action_dim, generator=gen)
        inputs.action_noisy = layout.action_noisy
        inputs.domain_id = layout.domain_id
    return inputs


@pytest.mark.parametrize("style", ["qwen", "edge"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_velocities_match_diffusers_with_its_own_positions(style, setting, rng, gen):
    """Ours on the production position ids, the reference on the pipeline's: every modality present, at least two
    action steps and several frames so the T clock of each one matters."""
    modulation, reset = SETTINGS[setting]
    cfg = random_config(style, rng).replace(enable_fps_modulation=modulation,
                                            unified_3d_mrope_reset_spatial_ids=reset)
    ref = build_reference(cfg, gen)
    model = Cosmos3Omni(cfg).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    layout = _layout(cfg, rng, gen, sound=True, action=True)
    while layout.latent_shape[1] < 2 or layout.action_steps < 2 or not bool(layout.action_noisy.any()):
        layout = _layout(cfg, rng, gen, sound=True, action=True)
    L = rng.randint(3, 40)
    ids = torch.randint(0, cfg.vocab_size, (L,), generator=gen)
    inputs = _inputs(cfg, layout, gen)
    ref_text, ref_gen = pipeline_positions(ref, L, layout.latent_shape[1:], layout.fps, layout.sound_latents,
                                           layout.action_steps)
    ref_v, ref_s, ref_a = reference_forward(ref, cfg, dict(input_ids=ids, text_positions=ref_text, inputs=inputs,
                                                           gen_positions=ref_gen))
    with torch.no_grad():
        cache = model.encode_und(ids, text_positions(L))
        hidden = model.run_gen(model.embed_gen(inputs), layout.positions(cfg, L), cache)
        out = model.decode_gen(hidden[0], inputs)
    assert relative_error(out.vision, ref_v) < 1e-5
    assert relative_error(out.sound, ref_s) < 1e-5
    noisy = inputs.action_noisy
    assert relative_error(out.actions[noisy], ref_a[noisy]) < 1e-5
