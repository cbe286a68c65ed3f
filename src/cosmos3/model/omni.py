"""The whole Cosmos 3 network: token embeddings, the MoT stack, lm_head and the generation heads.

Shapes:
    L text tokens   N gen tokens (vision, then sound, then actions)   D hidden   B batch (e.g. CFG branches)
    input_ids [L]                      text_positions [3, L]
    GenInputs: vision [C, T, H, W], sound [Cs, Ts], actions [n, A]   gen_positions [3, N] or [B, 3, N]

The system runs in two parts (DESIGN 2.2):
    cache = model.encode_und(input_ids, text_positions)        once per prompt: und keys/values of every layer
    hidden = model.run_gen(tokens, gen_positions, cache)       per denoising step, any batch of gen streams
`forward` runs both pathways layer by layer in one pass, as the reference does (training, parity tests); it gives
the same result as the split path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Cosmos3Config
from .heads import DomainAwareLinear, TimestepEmbedder, patch_grid, patchify, unpatchify
from .mot import KVCache, MoTLayer, RMSNorm, UndCache, cache_causal_mask
from .rope import MRoPE


@dataclass
class GenInputs:
    """One sample's generation tokens at one noise level.

    Boolean `*_noisy` vectors mark the frames / steps being generated: they get the timestep embedding and a
    predicted velocity; the others are clean conditioning (zero velocity). `timestep` is the sampler's t in
    [0, 1000] (a scalar, or one value per noisy token of every modality in order vision, sound, actions).
    """

    vision: torch.Tensor  # [C, T, H, W]
    vision_noisy: torch.Tensor  # [T] bool
    timestep: torch.Tensor
    sound: torch.Tensor | None = None  # [Cs, Ts]
    sound_noisy: torch.Tensor | None = None  # [Ts] bool (all true in the release)
    actions: torch.Tensor | None = None  # [n, A], zero-padded to the model's action width
    action_noisy: torch.Tensor | None = None  # [n] bool
    domain_id: int | None = None  # embodiment domain of the actions

    @property
    def vision_shape(self) -> tuple[int, int, int]:
        return tuple(self.vision.shape[1:])  # (T, H, W)

    def token_counts(self, patch: int) -> tuple[int, int, int]:
        T, H, W = self.vision_shape
        rows, cols = patch_grid(H, W, patch)
        sound = 0 if self.sound is None else self.sound.shape[1]
        actions = 0 if self.actions is None else self.actions.shape[0]
        return T * rows * cols, sound, actions


@dataclass
class GenOutputs:
    """Velocities per modality, zero at clean frames / steps."""

    vision: torch.Tensor  # [C, T, H, W]
    sound: torch.Tensor | None = None  # [Cs, Ts]
    actions: torch.Tensor | None = None  # [n, A]


class Cosmos3Omni(nn.Module):
    """`with_gen=False` builds the understanding pathway alone (embeddings, und layers, norm, lm_head): a reasoner
    that needs half the weights of the whole model."""

    def __init__(self, cfg: Cosmos3Config, with_gen: bool = True):
        super().__init__()
        self.config = cfg
        self.with_gen = with_gen
        D = cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, D)
        self.layers = nn.ModuleList(MoTLayer(cfg, with_gen) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(D, cfg.rms_norm_eps, cfg.is_edge_style)
        self.rotary = MRoPE(cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim)
        self.lm_head = nn.Linear(D, cfg.vocab_size, bias=False)
        self.attention_backend = "sdpa"
        if not with_gen:
            return
        self.norm_moe_gen = RMSNorm(D, cfg.rms_norm_eps, cfg.is_edge_style)
        self.proj_in = nn.Linear(cfg.patch_latent_dim, D)
        self.proj_out = nn.Linear(D, cfg.patch_latent_dim)
        self.time_embedder = TimestepEmbedder(D, cfg.timestep_scale)
        if cfg.action_gen:
            self.action_proj_in = DomainAwareLinear(cfg.action_dim, D, cfg.num_embodiment_domains)
            self.action_proj_out = DomainAwareLinear(D, cfg.action_dim, cfg.num_embodiment_domains)
            self.action_modality_embed = nn.Parameter(torch.zeros(D))
        if cfg.sound_gen:
            self.audio_proj_in = nn.Linear(cfg.sound_dim, D)
            self.audio_proj_out = nn.Linear(D, cfg.sound_dim)
            self.audio_modality_embed = nn.Parameter(torch.zeros(D))

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[3, S] or [B, 3, S] positions -> cos, sin [S, Dh] or [B, S, Dh] in the model dtype."""
        if positions.ndim == 3:
            tables = [self.rotary(p.to(self.device), self.dtype) for p in positions]
            return torch.stack([c for c, _ in tables]), torch.stack([s for _, s in tables])
        return self.rotary(positions.to(self.device), self.dtype)

    # ------------------------------------------------------------------------------------------ und pathway

    def encode_und(self, input_ids: torch.Tensor, positions: torch.Tensor) -> UndCache:
        """Run the und stream of one prompt ([L] ids, [3, L] positions) through every layer; keep what gen needs."""
        x = self.embed_tokens(input_ids.to(self.device).reshape(1, -1))  # [1, L, D]
        rope = self.rope(positions)
        keys, values = [], []
        for layer in self.layers:
            x, k, v = layer.und(x, rope, backend=self.attention_backend)
            keys.append(k)
            values.append(v)
        return UndCache(keys, values)

    def und_forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                    write_at: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                    deepstack: tuple[torch.Tensor, list[torch.Tensor]] | None = None) -> torch.Tensor:
        """The und stream alone (the reasoner's text decoder) -> final-normed hidden [B, S, D].

        embeds [B, S, D] (text embeddings with visual features already merged in); positions [3, S] or [B, 3, S].
        With a static `cache`, new keys/values go to slots `write_at` ([S] or [B, S]) and attention spans the buffer
        (mask [B, 1, S, capacity], default causal by slot). `deepstack` = (visual_mask [B, S] bool, one [n_visual, D]
        feature tensor per early layer) adds vision-tower features after those layers, as Qwen3-VL does.
        """
        x = embeds.to(self.device, self.dtype)
        rope = self.rope(positions)
        if cache is not None and mask is None and write_at is not None:
            # Work out the attention span once per forward, not in every layer: reading write_at.max() is a device
            # sync (none when write_at is on the host), and one per layer stalls the queue of every decode step.
            host = write_at.cpu()
            span = int(host.max()) + 1
            if span == x.shape[1] and write_at.ndim == 1:
                write_at = host  # a prefill (plain causal attention, fused): the layers read its span on the host
            else:
                write_at = write_at.to(self.device)
                cache = KVCache([k[:, :, :span] for k in cache.keys], [v[:, :, :span] for v in cache.values])
                mask = cache_causal_mask(write_at, span, x.shape[0])
        for i, layer in enumerate(self.layers):
            x, _, _ = layer.und(x, rope, mask, self.attention_backend, cache, i, write_at)
            if deepstack is not None and i < len(deepstack[1]):
                visual_mask, features = deepstack
                x = x.index_put((visual_mask,), x[visual_mask] + features[i].to(x.dtype))
        return self.norm(x)

    # ------------------------------------------------------------------------------------------ gen pathway

    def _add_timestep(self, tokens: torch.Tensor, per_frame: int, noisy: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
        """Add the timestep embedding to the tokens of noisy frames ([F * per_frame, D] tokens, [F] noisy)."""
        # The frame masks stay where the caller made them (the host): a host bool mask indexes a device tensor with
        # no device sync (torch turns it into indices on the host), where a mask on the device makes every check
        # and every boolean index wait for the device.
        if not bool(noisy.any()):
            return tokens
        emb = self.time_embedder(t.to(self.device)).to(tokens.dtype)  # [1, D], or one row per noisy token
        frames = tokens.view(noisy.shape[0], per_frame, -1)  # [F, per_frame, D]
        if emb.shape[0] > 1:
            emb = emb.view(-1, per_frame, frames.shape[-1])
        return frames.index_put((noisy,), frames[noisy] + emb).view(tokens.shape)

    def _check_inputs(self, inputs: GenInputs) -> None:
        cfg = self.config

        def need(ok: bool, field: str, expected: str, got: object) -> None:
            if not ok:
                raise ValueError(f"{field}: expected {expected}, got {got}")

        v = inputs.vision
        need(v.ndim == 4 and v.shape[0] == cfg.latent_channel, "vision", f"[{cfg.latent_channel}, T, H, W]",
             tuple(v.shape))
        need(tuple(inputs.vision_noisy.shape) == (v.shape[1],) and inputs.vision_noisy.dtype == torch.bool,
             "vision_noisy", f"bool [{v.shape[1]}]", f"{inputs.vision_noisy.dtype} {tuple(inputs.vision_noisy.shape)}")
        if inputs.sound is not None:
            need(cfg.sound_gen, "sound", "no sound (this checkpoint has no sound heads)", "sound latents")
            s = inputs.sound
            need(s.ndim == 2 and s.shape[0] == cfg.sound_dim, "sound", f"[{cfg.sound_dim}, Ts]", tuple(s.shape))
            need(inputs.sound_noisy is not None and tuple(inputs.sound_noisy.shape) == (s.shape[1],),
                 "sound_noisy", f"bool [{s.shape[1]}]", inputs.sound_noisy)
        if inputs.actions is not None:
            need(cfg.action_gen, "actions", "no actions (this checkpoint has no action heads)", "actions")
            a = inputs.actions
            need(a.ndim == 2 and a.shape[1] == cfg.action_dim, "actions", f"[n, {cfg.action_dim}] (zero-padded)",
                 tuple(a.shape))
            need(inputs.action_noisy is not None and tuple(inputs.action_noisy.shape) == (a.shape[0],),
                 "action_noisy", f"bool [{a.shape[0]}]", inputs.action_noisy)
            need(inputs.domain_id is not None, "domain_id", "the embodiment's domain id", None)

    def _split_timesteps(self, inputs: GenInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(inputs.timestep, dtype=torch.float32).reshape(-1)
        if t.numel() == 1:
            return t, t, t
        rows, cols = patch_grid(inputs.vision.shape[2], inputs.vision.shape[3], self.config.latent_patch_size)
        n_vision = int(inputs.vision_noisy.sum()) * rows * cols
        n_sound = 0 if inputs.sound is None else int(inputs.sound_noisy.sum())
        n_action = 0 if inputs.actions is None else int(inputs.action_noisy.sum())
        if t.numel() != n_vision + n_sound + n_action:
            raise ValueError(f"timestep: expected 1 or {n_vision + n_sound + n_action} values (one per noisy token)"
                             f", got {t.numel()}")
        return t[:n_vision], t[n_vision:n_vision + n_sound], t[n_vision + n_sound:]

    def embed_gen(self, inputs: GenInputs) -> torch.Tensor:
        """One sample's generation tokens -> [N, D] (vision, then sound, then actions)."""
        cfg = self.config
        self._check_inputs(inputs)
        dtype, device = self.dtype, self.device
        t_vision, t_sound, t_action = self._split_timesteps(inputs)
        T, H, W = inputs.vision_shape
        rows, cols = patch_grid(H, W, cfg.latent_patch_size)
        vision = self.proj_in(patchify(inputs.vision.to(device, dtype), cfg.latent_patch_size))
        parts = [self._add_timestep(vision, rows * cols, inputs.vision_noisy, t_vision)]
        if inputs.sound is not None:
            sound = self.audio_proj_in(inputs.sound.to(device, dtype).transpose(0, 1)) + self.audio_modality_embed
            parts.append(self._add_timestep(sound, 1, inputs.sound_noisy, t_sound))
        if inputs.actions is not None:
            actions = self.action_proj_in(inputs.actions.to(device, dtype), inputs.domain_id)
            actions = actions + self.action_modality_embed
            parts.append(self._add_timestep(actions, 1, inputs.action_noisy, t_action))
        return torch.cat(parts)

    def run_gen(self, tokens: torch.Tensor, positions: torch.Tensor, cache: UndCache,
                parallel=None) -> torch.Tensor:
        """Gen streams [B, N, D] (or [N, D]) against cached und keys/values -> final-normed hidden [B, N, D].
        `parallel`: a sequence-parallel share of the tokens (parallel.ulysses.SequenceParallel.run_gen)."""
        x = tokens.unsqueeze(0) if tokens.ndim == 2 else tokens
        if x.shape[0] != cache.batch_size:
            if cache.batch_size != 1:
                raise ValueError(f"gen batch {x.shape[0]} does not match und cache batch {cache.batch_size}")
            cache = UndCache([k.expand(x.shape[0], -1, -1, -1) for k in cache.keys],
                             [v.expand(x.shape[0], -1, -1, -1) for v in cache.values], cache.mask)
        rope = self.rope(positions)
        for layer, k, v in zip(self.layers, cache.keys, cache.values):
            x = layer.gen(x, rope, k, v, cache.mask, backend=self.attention_backend, parallel=parallel)
        return self.norm_moe_gen(x)

    def decode_gen(self, hidden: torch.Tensor, inputs: GenInputs) -> GenOutputs:
        """One sample's final gen hidden [N, D] -> velocities, predicted only where tokens are noisy."""
        cfg = self.config
        p, C = cfg.latent_patch_size, cfg.latent_channel
        T, H, W = inputs.vision_shape
        rows, cols = patch_grid(H, W, p)
        n_vision, n_sound, _ = inputs.token_counts(p)
        vision_noisy = inputs.vision_noisy  # host masks: boolean indexing without a device sync (_add_timestep)
        vision = hidden[:n_vision].view(T, rows * cols, -1)[vision_noisy]  # [T_noisy, h*w, D]
        out_vision = hidden.new_zeros(C, T, H, W)
        if vision.shape[0]:
            pred = self.proj_out(vision.reshape(-1, vision.shape[-1]))
            out_vision[:, vision_noisy] = unpatchify(pred, vision.shape[0], H, W, p).to(out_vision.dtype)
        out = GenOutputs(out_vision)
        if inputs.sound is not None:
            noisy = inputs.sound_noisy
            sound = hidden[n_vision:n_vision + n_sound]
            out.sound = hidden.new_zeros(inputs.sound.shape)
            out.sound[:, noisy] = self.audio_proj_out(sound[noisy]).transpose(0, 1).to(out.sound.dtype)
        if inputs.actions is not None:
            noisy = inputs.action_noisy
            actions = hidden[n_vision + n_sound:]
            out.actions = hidden.new_zeros(inputs.actions.shape)
            out.actions[noisy] = self.action_proj_out(actions[noisy], inputs.domain_id).to(out.actions.dtype)
        return out

    # ------------------------------------------------------------------------------------------ joint pass

    def forward(self, input_ids: torch.Tensor, text_positions: torch.Tensor, inputs: GenInputs,
                gen_positions: torch.Tensor) -> tuple[GenOutputs, torch.Tensor]:
        """Both pathways of one sample, layer by layer -> (velocities, final-normed und hidden [L, D])."""
        und = self.embed_tokens(input_ids.to(self.device).reshape(1, -1))
        gen = self.embed_gen(inputs).unsqueeze(0)
        und_rope, gen_rope = self.rope(text_positions), self.rope(gen_positions)
        for layer in self.layers:
            new_und, k, v = layer.und(und, und_rope, backend=self.attention_backend)
            gen = layer.gen(gen, gen_rope, k, v, backend=self.attention_backend)
            und = new_und
        return self.decode_gen(self.norm_moe_gen(gen)[0], inputs), self.norm(und)[0]

    def logits(self, und_hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(und_hidden)
