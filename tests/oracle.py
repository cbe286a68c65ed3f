"""Independent references for parity tests: diffusers' Cosmos3OmniTransformer at tiny random configurations.

Every call draws a fresh configuration and fresh weights from the given generator, so each test run checks a new
point. Norm weights and modality embeddings are randomized too: their defaults (1 and 0) would hide mistakes.
"""

from __future__ import annotations

import random

import torch

from cosmos3.config import Cosmos3Config
from cosmos3.model import GenInputs
from cosmos3.model.heads import patch_grid
from cosmos3.model.rope import action_positions, modality_offset, sound_positions, text_positions, vision_positions


def random_config(style: str, rng: random.Random, sound: bool = True, action: bool = True) -> Cosmos3Config:
    """A small random config of the Qwen-style ("qwen") or Nemotron/Edge-style ("edge") network."""
    kv_heads = rng.choice([1, 2])
    heads = kv_heads * rng.choice([1, 2, 4])
    head_dim = rng.choice([16, 32])
    channels = rng.choice([4, 8])
    kwargs = dict(
        hidden_size=rng.choice([64, 96, 128]), num_hidden_layers=rng.choice([2, 3]),
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        intermediate_size=rng.choice([96, 160, 256]), vocab_size=rng.randint(200, 600),
        latent_channel=channels, patch_latent_dim=4 * channels,
        rope_theta=rng.choice([10_000.0, 5e6, 1e8]), rms_norm_eps=rng.choice([1e-6, 1e-5]),
        attention_bias=rng.random() < 0.3,
        sound_gen=sound, sound_dim=rng.choice([8, 16]) if sound else None,
        action_gen=action, action_dim=rng.choice([16, 32]) if action else None,
        num_embodiment_domains=rng.choice([8, 32]),
    )
    if style == "edge":
        kwargs.update(hidden_act="relu2", qk_norm_for_text=False, use_und_k_norm_for_gen=True)
    return Cosmos3Config(**kwargs)


def diffusers_kwargs(cfg: Cosmos3Config) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if not k.startswith("_")}


@torch.no_grad()
def build_reference(cfg: Cosmos3Config, gen: torch.Generator):
    """diffusers' transformer with every parameter drawn at random (small scale keeps activations sane)."""
    from diffusers import Cosmos3OmniTransformer

    model = Cosmos3OmniTransformer(**diffusers_kwargs(cfg)).eval()
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen))
        elif name.endswith("modality_embed"):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(torch.randn(p.shape, generator=gen) / max(p.shape[-1], 1) ** 0.5)
    return model


def random_case(cfg: Cosmos3Config, gen: torch.Generator, rng: random.Random, *, sound: bool = True,
                action: bool = True) -> dict:
    """Random text, latents (odd sizes, some clean frames), sound and actions, with their positions."""
    L = rng.randint(3, 24)
    T, H, W = rng.randint(1, 4), rng.randint(2, 7), rng.randint(2, 7)
    fps = rng.choice([10.0, 16.0, 24.0, 30.0])
    noisy = torch.rand(T, generator=gen) < 0.6
    noisy[-1] = True  # at least one noisy frame
    inputs = GenInputs(
        vision=torch.randn(cfg.latent_channel, T, H, W, generator=gen),
        vision_noisy=noisy,
        timestep=torch.tensor(float(rng.randint(1, 999))),
    )
    offset = modality_offset(L, cfg.unified_3d_mrope_temporal_modality_margin)
    rows, cols = patch_grid(H, W, cfg.latent_patch_size)
    pos = [vision_positions(T, rows, cols, offset, fps, cfg.base_fps)]
    if sound and cfg.sound_gen:
        Ts = rng.randint(1, 9)
        inputs.sound = torch.randn(cfg.sound_dim, Ts, generator=gen)
        inputs.sound_noisy = torch.ones(Ts, dtype=torch.bool)
        pos.append(sound_positions(Ts, offset, cfg.sound_latent_fps, cfg.base_fps))
    if action and cfg.action_gen:
        n = rng.randint(1, 8)
        raw = rng.randint(1, cfg.action_dim)
        actions = torch.zeros(n, cfg.action_dim)
        actions[:, :raw] = torch.randn(n, raw, generator=gen)
        inputs.actions = actions
        inputs.action_noisy = torch.rand(n, generator=gen) < 0.7
        inputs.domain_id = rng.randrange(cfg.num_embodiment_domains)
        pos.append(action_positions(n, offset, fps, cfg.base_fps))
    return dict(input_ids=torch.randint(0, cfg.vocab_size, (L,), generator=gen), text_positions=text_positions(L),
                inputs=inputs, gen_positions=torch.cat(pos, dim=1), fps=fps)


@torch.no_grad()
def reference_forward(model, cfg: Cosmos3Config, case: dict) -> tuple:
    """Run diffusers' forward on a case -> (vision [C, T, H, W], sound or None, actions or None)."""
    inputs: GenInputs = case["inputs"]
    ids = case["input_ids"]
    L = ids.shape[0]
    C, T, H, W = inputs.vision.shape
    rows, cols = patch_grid(H, W, cfg.latent_patch_size)
    per_frame = rows * cols
    n_vision = T * per_frame
    noisy_frames = torch.nonzero(inputs.vision_noisy).flatten()
    vision_noisy_tokens = torch.cat([torch.arange(f * per_frame, (f + 1) * per_frame) for f in noisy_frames.tolist()])
    t = float(inputs.timestep)
    kw = dict(
        input_ids=ids, text_indexes=torch.arange(L), und_len=L,
        position_ids=torch.cat([case["text_positions"], case["gen_positions"]], dim=1),
        vision_tokens=[inputs.vision.unsqueeze(0)], vision_token_shapes=[(T, rows, cols)],
        vision_sequence_indexes=torch.arange(L, L + n_vision),
        vision_mse_loss_indexes=L + vision_noisy_tokens,
        vision_timesteps=torch.full((vision_noisy_tokens.numel(),), t),
        vision_noisy_frame_indexes=[noisy_frames],
    )
    cursor = L + n_vision
    if inputs.sound is not None:
        Ts = inputs.sound.shape[1]
        idx = torch.arange(cursor, cursor + Ts)
        kw.update(sound_tokens=[inputs.sound], sound_token_shapes=[(Ts, 1, 1)], sound_sequence_indexes=idx,
                  sound_mse_loss_indexes=idx, sound_timesteps=torch.full((Ts,), t),
                  sound_noisy_frame_indexes=[torch.arange(Ts)])
        cursor += Ts
    if inputs.actions is not None:
        n = inputs.actions.shape[0]
        idx = torch.arange(cursor, cursor + n)
        noisy = torch.nonzero(inputs.action_noisy).flatten()
        kw.update(action_tokens=[inputs.actions], action_token_shapes=[(n, 1, 1)], action_sequence_indexes=idx,
                  action_mse_loss_indexes=idx[noisy], action_timesteps=torch.full((noisy.numel(),), t),
                  action_noisy_frame_indexes=[noisy], action_domain_ids=[torch.tensor(inputs.domain_id)])
        cursor += n
    kw["sequence_length"] = cursor
    out = model(**kw)
    return (out.sample[0][0], None if out.sound is None else out.sound[0],
            None if out.action is None else out.action[0])


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-12))


# ------------------------------------------------------------------------------------------ whole pipeline

QWEN_SPECIAL_TOKENS = [  # the 26 Qwen3 special tokens, in Qwen's id order
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
]
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer (one token per byte, no merges) with the Qwen special tokens and a ChatML
    template: 282 ids, no hub needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=QWEN_SPECIAL_TOKENS)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def random_wan_vae(channels: int, gen: torch.Generator, dim: int = 8):
    """A tiny Wan-2.2-layout AutoencoderKLWan (16x spatial, 4x temporal, patch 2) with random weights and latent
    statistics, in eval mode."""
    from diffusers import AutoencoderKLWan

    C = channels
    vae = AutoencoderKLWan(base_dim=dim, decoder_base_dim=dim, z_dim=C, dim_mult=[1, 2, 2, 2],
                           num_res_blocks=1, temperal_downsample=[False, True, True], is_residual=True,
                           in_channels=12, out_channels=12, patch_size=2, scale_factor_temporal=4,
                           scale_factor_spatial=16,
                           latents_mean=(0.3 * torch.randn(C, generator=gen)).tolist(),
                           latents_std=(0.5 + torch.rand(C, generator=gen)).tolist()).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p[0].numel()) ** 0.5) if p.ndim > 1
                    else 1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    return vae


def build_reference_pipeline(root, cfg: Cosmos3Config, gen: torch.Generator, *, flow_shift: float = 5.0,
                             sound: bool = True, vae_dim: int = 8):
    """A whole tiny Cosmos3OmniPipeline with random weights, saved in the official layout at `root`.
    `cfg.latent_channel` is the VAE's z_dim; cfg.vocab_size must be at least 282 (the tiny tokenizer)."""
    from diffusers import Cosmos3AVAEAudioTokenizer, Cosmos3OmniPipeline, UniPCMultistepScheduler

    transformer = build_reference(cfg, gen)
    vae = random_wan_vae(cfg.latent_channel, gen, vae_dim)
    sound_tokenizer = None
    if sound:
        sound_tokenizer = Cosmos3AVAEAudioTokenizer(vocoder_input_dim=cfg.sound_dim, dec_dim=4, enc_dim=4,
                                                     enc_latent_dim=2 * cfg.sound_dim).eval()
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                        flow_shift=flow_shift, solver_order=2, solver_type="bh2", predict_x0=True,
                                        lower_order_final=True, num_train_timesteps=1000)
    pipe = Cosmos3OmniPipeline(transformer=transformer, text_tokenizer=build_tiny_tokenizer(), vae=vae,
                               scheduler=scheduler, sound_tokenizer=sound_tokenizer, safety_checker=None,
                               enable_safety_checker=False)
    pipe.save_pretrained(root)
    return pipe


def folder_parity_error(folder, prompt: str, seed: int, flow_shift: float, **kw) -> float:
    """Relative error between our Generator's latents and Cosmos3OmniPipeline's, both loaded from one official-layout
    folder, for the same prompt, seed and settings; `flow_shift` must be the folder's scheduler shift (the reference
    always uses that one)."""
    import warnings

    from diffusers import Cosmos3OmniPipeline

    from cosmos3.generator import Generator

    ours = Generator.from_pretrained(folder).generate(prompt, seed=seed, flow_shift=flow_shift, progress=False, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Cosmos3OmniPipeline.from_pretrained(folder, safety_checker=None, enable_safety_checker=False)
    ref = pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type="latent", enable_safety_check=False,
               **kw)
    return relative_error(ours.latents, ref.video[0])


# ------------------------------------------------------------------------------------------ reference positions


def pipeline_positions(model, num_text: int, latent_thw: tuple[int, int, int], fps: float, sound_len: int = 0,
                       action_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(text [3, L], gen [3, N]) position ids, for a vision latent of (T, H, W) (before patching), as diffusers' Cosmos3OmniPipeline builds them, by its own segment
    builders run on `model` (a diffusers Cosmos3OmniTransformer), never from our rope / sequence functions.
    Sound ticks at the transformer's sound_latent_fps; actions at the video fps, as the pipeline passes them."""
    from types import SimpleNamespace

    from diffusers import Cosmos3OmniPipeline

    stub = SimpleNamespace(transformer=model, vae_scale_factor_temporal=4)
    text = Cosmos3OmniPipeline._prepare_text_segment(stub, list(range(num_text)), device="cpu")
    offset, curr = text["vision_start_temporal_offset"], num_text
    T, H, W = latent_thw
    vision = Cosmos3OmniPipeline._prepare_vision_segment(
        stub, torch.zeros(1, 1, T, H, W), has_image_condition=False, mrope_offset=offset, vision_fps=fps,
        curr=curr, device="cpu")
    parts = [vision["vision_mrope_ids"]]
    curr += vision["num_vision_tokens"]
    if sound_len:
        sound = Cosmos3OmniPipeline._prepare_sound_segment(
            stub, torch.zeros(1, sound_len), mrope_offset=offset,
            sound_fps=float(model.config.sound_latent_fps), curr=curr, device="cpu")
        parts.append(sound["sound_mrope_ids"])
        curr += sound_len
    if action_len:
        action = Cosmos3OmniPipeline._prepare_action_segment(
            stub, torch.zeros(action_len, 1), condition_frame_indexes=[], mrope_offset=offset, action_fps=fps,
            curr=curr, device="cpu")
        parts.append(action["action_mrope_ids"])
    return text["text_mrope_ids"].float(), torch.cat([p.float() for p in parts], dim=1)


# ------------------------------------------------------------------------------------------ shared tiny checkpoint

_TINY_GENERATOR: dict = {}


def tiny_generator_checkpoint(tmp_path_factory):
    """A tiny random official-layout generator checkpoint (no sound, no actions; vocabulary of 300-400 for the tiny
    tokenizer), built once per test session from seeding.seed_for (COSMOS3_TEST_SEED replays it). Shared: read it, or
    copy it (shutil.copytree) before changing anything in it."""
    if "root" not in _TINY_GENERATOR:
        from seeding import seed_for

        seed = seed_for("oracle.tiny_generator_checkpoint")
        print(f"tiny checkpoint seed {seed}")
        rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        cfg = random_config(rng.choice(["qwen", "edge"]), rng, sound=False, action=False).replace(
            vocab_size=rng.randint(300, 400))
        root = tmp_path_factory.mktemp("tiny_generator")
        build_reference_pipeline(root, cfg, gen, sound=False)
        _TINY_GENERATOR["root"] = root
    return _TINY_GENERATOR["root"]
