"""Device and dtype hygiene (issue #24 part 3): the network, the denoising loop, the generator and the reasoner's
cached decode run on a device and in a dtype that differ from the defaults, with nothing made on the wrong one.

  - the meta device stands in for a GPU: an op that mixes a host tensor (other than a scalar) with a meta tensor
    raises, and so does reading a device value on the host (`.item()`, `bool(t)`, `int(t)`: a device sync on a GPU).
    The small per-frame masks are made on the host on purpose and index device tensors from there (no sync).
  - float64 stands in for bf16: every module output of a float64 network must be float64 (a tensor made in the
    default float32 would show up as a float32 output somewhere downstream).
"""

import random

import pytest
import torch

from cosmos3 import generator as generator_module
from cosmos3.config import get_preset
from cosmos3.diffusion import Latents, default_scheduler_config, denoise_step, encode_branches, make_scheduler, \
    sample, set_schedule
from cosmos3.model import Cosmos3Omni, GenInputs, KVCache
from cosmos3.model.rope import text_positions
from cosmos3.sequence import GenLayout

META = torch.device("meta")


def _meta_model(preset: str) -> Cosmos3Omni:
    with META:
        return Cosmos3Omni(get_preset(preset)).eval()


def _layout(cfg, T=3, H=6, W=10, actions=4, sound=5) -> GenLayout:
    noisy = torch.tensor([False] + [True] * (T - 1))  # frame 0 clean: i2v-like
    action_noisy = torch.tensor([True] * (actions - 1) + [False])
    return GenLayout(latent_shape=(cfg.latent_channel, T, H, W), vision_noisy=noisy, fps=16.0, sound_latents=sound,
                     sound_fps=cfg.sound_latent_fps, action_steps=actions, action_noisy=action_noisy, domain_id=3)


def _prompts(cfg, lengths=(7, 5)):
    gen = torch.Generator().manual_seed(0)
    return [(torch.randint(0, cfg.vocab_size, (n,), generator=gen), text_positions(n)) for n in lengths]


def _state(cfg, layout, device) -> Latents:
    C, T, H, W = layout.latent_shape
    return Latents(vision=torch.randn(C, T, H, W, device=device), sound=torch.randn(cfg.sound_dim, 5, device=device),
                   actions=torch.randn(layout.action_steps, cfg.action_dim, device=device))


@pytest.mark.parametrize("preset", ["tiny", "tiny-edge"])
def test_denoising_loop_runs_on_the_meta_device(preset):
    model = _meta_model(preset)
    cfg = model.config
    layout = _layout(cfg)
    branches = encode_branches(model, layout, _prompts(cfg))
    assert all(k.device == META for k in branches.cache.keys) and branches.cache.mask is not None  # padded prompts
    latents = _state(cfg, layout, META)
    velocity = denoise_step(model, layout, latents, torch.tensor(700.0), branches, 6.0, raw_action_dim=10)
    for name in ("vision", "sound", "actions"):
        v = getattr(velocity, name)
        assert v.device == META and v.dtype == torch.float32 and v.shape == getattr(latents, name).shape, name
    scheduler = make_scheduler(default_scheduler_config(), flow_shift=5.0)
    timesteps = set_schedule(scheduler, 3)
    out = sample(model, layout, latents, _state(cfg, layout, META), branches, scheduler, timesteps, 6.0,
                 guidance_interval=(0.0, 0.9), raw_action_dim=10, progress=False)
    assert out.vision.device == META and out.actions.device == META and out.sound.device == META


def test_joint_forward_runs_on_the_meta_device():
    model = _meta_model("tiny")
    cfg = model.config
    ids, pos = _prompts(cfg, (9,))[0]
    layout = _layout(cfg, sound=0)
    inputs = GenInputs(vision=torch.randn(cfg.latent_channel, 3, 6, 10), vision_noisy=layout.vision_noisy,
                       timestep=torch.tensor(500.0), actions=torch.randn(4, cfg.action_dim),
                       action_noisy=layout.action_noisy, domain_id=torch.tensor(5))
    out, und = model(ids, pos, inputs, layout.positions(cfg, 9))
    assert out.vision.device == META and out.actions.device == META and und.device == META


def test_cached_decode_runs_on_the_meta_device():
    """The reasoner's path: a batched prefill, then one-token steps with rows at different slots (host slots)."""
    with META:
        model = Cosmos3Omni(get_preset("tiny"), with_gen=False).eval()
    cfg = model.config
    cache = KVCache.allocate(cfg, 2, 16, model.dtype, model.device)
    embeds = model.embed_tokens(torch.randint(0, cfg.vocab_size, (2, 6)).to(META))
    hidden = model.und_forward(embeds, torch.arange(6.0).expand(2, 3, 6), cache, torch.arange(6))
    assert hidden.device == META and hidden.shape == (2, 6, cfg.hidden_size)
    slots = torch.tensor([[6], [3]])
    step = model.und_forward(model.embed_tokens(torch.tensor([[1], [2]]).to(META)),
                             slots.float().view(2, 1, 1).expand(2, 3, 1), cache, slots)
    assert step.device == META and step.shape == (2, 1, cfg.hidden_size)


class HostVAE:
    """A stand-in video VAE on the host (zeros), so the generator's own path runs with the network on meta."""

    def __init__(self, channels: int):
        self.channels, self.temporal, self.spatial = channels, 4, 16
        self.decoded_from = None

    def latent_shape(self, frames, height, width):
        return (self.channels, 1 + (frames - 1) // 4, height // 16, width // 16)

    def encode(self, pixels):
        _, _, t, h, w = pixels.shape
        return torch.zeros(self.channels, 1 + (t - 1) // 4, h // 16, w // 16)

    def decode(self, latents):
        self.decoded_from = latents.device
        C, T, H, W = latents.shape
        return torch.zeros(1 + (T - 1) * 4, H * 16, W * 16, 3, dtype=torch.uint8)


@pytest.mark.parametrize("mode", ["t2v", "policy"])
def test_generator_denoises_on_the_model_device(mode, monkeypatch):
    """Generator.generate draws its noise on the host (seeded) and must hand the sampler its state on the model's
    device: with the network on meta, a state left on the host fails at the first solver step."""
    from PIL import Image

    from oracle import build_tiny_tokenizer

    model = _meta_model("tiny")
    vae = HostVAE(model.config.latent_channel)
    gen = generator_module.Generator(model, vae, build_tiny_tokenizer(), default_scheduler_config())
    devices = []

    def spy(model, layout, latents, clean, *args, **kw):
        devices.extend({latents.vision.device, clean.vision.device}
                       | ({latents.actions.device, clean.actions.device} if latents.actions is not None else set()))
        out = sample(model, layout, latents, clean, *args, **kw)  # the real loop, on meta
        devices.append(out.vision.device)
        return out.map(lambda _, t: torch.zeros(t.shape))  # host values for the (stand-in) decode

    monkeypatch.setattr(generator_module, "sample", spy)
    kw = dict(num_inference_steps=2, seed=random.randrange(1000), progress=False)
    if mode == "t2v":
        res = gen.generate("a red block", num_frames=9, height=64, width=96, **kw)
    else:
        res = gen.generate("grasp", action_mode="policy", embodiment="droid_lerobot", action_chunk_size=4,
                           resolution="256p", image=Image.new("RGB", (64, 48)), guidance_scale=2.0, **kw)
        assert res.actions is not None and res.actions.device.type == "cpu"
    assert devices and set(devices) == {META}
    assert res.latents.device.type == "cpu"


def test_float64_network_keeps_float64_everywhere():
    """bf16 stand-in: every floating module output of a float64 network is float64, in the joint forward, the
    und / gen split used by sampling, and the cached decode."""
    torch.manual_seed(0)
    model = Cosmos3Omni(get_preset("tiny-edge")).to(torch.float64).eval()
    cfg = model.config
    wrong = []

    def hook(module, _inputs, output):
        for t in output if isinstance(output, tuple) else (output,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64:
                wrong.append((type(module).__name__, t.dtype))

    for m in model.modules():
        m.register_forward_hook(hook)
    layout = _layout(cfg)
    ids, pos = _prompts(cfg, (9,))[0]
    with torch.no_grad():
        branches = encode_branches(model, layout, _prompts(cfg))
        assert all(k.dtype == torch.float64 for k in branches.cache.keys + branches.cache.values)
        latents = _state(cfg, layout, "cpu")
        inputs = GenInputs(vision=latents.vision, vision_noisy=layout.vision_noisy, timestep=torch.tensor(300.0),
                           sound=latents.sound, sound_noisy=torch.ones(5, dtype=torch.bool),
                           actions=latents.actions, action_noisy=layout.action_noisy, domain_id=3)
        hidden = model.run_gen(model.embed_gen(inputs).expand(2, -1, -1), branches.positions, branches.cache)
        out = model.decode_gen(hidden[0], inputs)
        assert hidden.dtype == out.vision.dtype == out.sound.dtype == out.actions.dtype == torch.float64
        joint, und = model(ids, pos, inputs, layout.positions(cfg, 9))
        assert joint.vision.dtype == und.dtype == torch.float64
        cache = KVCache.allocate(cfg, 1, 12, model.dtype, model.device)
        model.und_forward(model.embed_tokens(ids[None]), pos, cache, torch.arange(9))
        step = model.und_forward(model.embed_tokens(ids[None, :1]), torch.full((3, 1), 9.0), cache,
                                 torch.tensor([9]))
        assert step.dtype == torch.float64
        # the sampler's velocities are float32 by contract (the state it integrates is float32)
        v = denoise_step(model, layout, latents, torch.tensor(300.0), branches, 4.0)
        assert v.vision.dtype == torch.float32
    assert not wrong, wrong[:5]


def test_masked_grouped_attention_off_the_cpu_repeats_kv_heads(monkeypatch):
    """On CUDA, SDPA has no fused kernel for GQA with a mask (it would fall back to the math kernel and hold every
    score): off the CPU a masked GQA call must reach SDPA with the kv heads repeated and enable_gqa off; on the CPU
    (measured as fast, no copy) and without a mask it keeps enable_gqa. Same result either way."""
    import torch.nn.functional as F

    from cosmos3.model import attention as attention_module

    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.device.type, k.shape[1], kw.get("enable_gqa"), kw.get("attn_mask") is not None))
        return real(q, k, v, **kw)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    q, k, v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    mask = torch.rand(2, 1, 5, 9) < 0.7
    mask[..., 0] = True
    on_cpu = attention_module.attention(q, k, v, mask=mask)
    on_meta = attention_module.attention(q.to(META), k.to(META), v.to(META), mask=mask.to(META))
    attention_module.attention(q.to(META), k.to(META), v.to(META))
    assert calls == [("cpu", 2, True, True), ("meta", 8, False, True), ("meta", 2, True, False)]
    assert on_meta.shape == on_cpu.shape
    expanded = real(q, attention_module._expand_kv(k, 4), attention_module._expand_kv(v, 4), attn_mask=mask)
    assert torch.allclose(on_cpu, expanded, atol=1e-6)
