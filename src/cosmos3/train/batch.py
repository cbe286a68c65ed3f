"""From items to losses: per-sample preparation (conditioning, caption dropout, noise, tokens), grouping into
micro-batches under a token budget, and the batched forward passes of the network.

Shapes:  B samples in a micro-batch   L text tokens (right-padded to the longest)   N generation tokens
         D hidden   V vocabulary

Micro-batches. Samples whose generation streams have the same shape (same latent size, sound length and action
count) run as one batch: their prompts are right-padded and masked (und keys of padding are hidden from every
query), their generation tokens stack without padding (gen queries attend to all gen keys of their row, so gen
padding would change results). Groups are filled in stream order until B * (L + N) would pass `batch_tokens`.

With `data.pack`, a micro-batch is instead one row: the samples' prompts end to end, then their generation tokens
end to end (any shapes together), each sample attending only to its own slices (model.mot.Packing), until the sum
of L + N would pass `batch_tokens`. Chat conversations pack the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model import Cosmos3Omni, GenInputs, GenOutputs
from ..model.mot import Packing
from ..model.rope import text_positions
from ..sequence import GenLayout, branch_inputs, prompt_text
from .data import GenItem, sample_generator
from .losses import (
    NoisedSample,
    action_masks,
    add_noise,
    choose,
    drop_caption,
    flow_matching_loss,
    sample_sigma,
    sft_loss,
    vision_noisy_mask,
)
from .recipe import LossConfig

# Parameter names of the generation pathway (everything else is the understanding pathway).
GEN_MARKERS = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "norm_added_", "_moe_gen", "k_norm_und_for_gen",
               "proj_in", "proj_out", "time_embedder", "action_", "audio_")


# The action heads: the release's action2llm / llm2action / action_modality_embed (cosmos-framework
# keys_to_skip_loading and lr_multipliers of the action post-training recipes).
ACTION_HEAD_MARKERS = ("action_proj_in.", "action_proj_out.", "action_modality_embed")


def is_gen_param(name: str) -> bool:
    return any(m in name for m in GEN_MARKERS)


def is_action_head(name: str) -> bool:
    return any(name.startswith(m) for m in ACTION_HEAD_MARKERS)


# ------------------------------------------------------------------------------------------------ samples


@dataclass
class GenSample:
    input_ids: torch.Tensor  # [L]
    text_positions: torch.Tensor  # [3, L]
    noised: NoisedSample
    gen_positions: torch.Tensor  # [3, N]
    mode: str  # t2v | i2v | v2v | policy | forward_dynamics | inverse_dynamics
    dropped: bool  # caption replaced by the negative prompt

    @property
    def shape_key(self) -> tuple:
        x = self.noised.inputs
        return (tuple(x.vision.shape), None if x.sound is None else x.sound.shape[1],
                None if x.actions is None else x.actions.shape[0])

    @property
    def tokens(self) -> int:
        return self.input_ids.shape[0] + self.gen_positions.shape[1]


@dataclass
class ChatSample:
    input_ids: torch.Tensor  # [L]
    positions: torch.Tensor  # [3, L]
    labels: torch.Tensor  # [L] bool: assistant tokens (the loss is on predicting them)
    media: list  # VisualInput items (reasoner vision tower inputs), in order of appearance
    visual_mask: torch.Tensor  # [L] bool

    shape_key = ("chat",)

    @property
    def tokens(self) -> int:
        return self.input_ids.shape[0]


def prepare_gen(item: GenItem, position: int, seed: int, loss: LossConfig, tokenizer, model: Cosmos3Omni,
                use_system_prompt: bool = True) -> GenSample:
    """Everything random about one sample, drawn from its own generator in a fixed order: conditioning mode,
    caption dropout, sigma, then the noise (vision, sound, actions)."""
    cfg = model.config
    g = sample_generator(seed, position)
    T = item.vision.shape[1]
    actions = item.padded_actions(cfg.action_dim) if item.actions is not None else None
    action_noisy = None
    if actions is not None:
        if not cfg.action_gen:
            raise ValueError("this checkpoint has no action heads; it cannot train on action data")
        mode = choose({"policy": loss.policy, "forward_dynamics": loss.forward_dynamics,
                       "inverse_dynamics": loss.inverse_dynamics}, g)
        vision_noisy, action_noisy = action_masks(mode, T, actions.shape[0])
        if item.state is not None:  # the release's use_state: the state row leads, clean, at video frame 0
            row = torch.zeros(1, actions.shape[1])
            row[0, :item.state.numel()] = item.state
            actions = torch.cat([row, actions])  # [n + 1, width]
            action_noisy = torch.cat([torch.zeros(1, dtype=torch.bool), action_noisy])
    else:
        mode = choose({"t2v": loss.t2v, "i2v": loss.i2v, "v2v": loss.v2v}, g)
        vision_noisy = vision_noisy_mask(mode, T, loss.v2v_frames)
    text, dropped = drop_caption(item.prompt, loss, g)
    # the action modes read their negative prompt as it is, untemplated; plain captions come with their templates
    if item.templated and not (dropped and actions is not None):
        text = prompt_text(text, num_frames=item.num_frames, fps=item.fps, height=item.height, width=item.width,
                           negative=dropped)
    ids, positions = branch_inputs(tokenizer, cfg, text, is_image=item.num_frames == 1,
                                   use_system_prompt=use_system_prompt)
    sigma = sample_sigma(loss, g)[0]
    sound_noisy = None if item.sound is None else torch.ones(item.sound.shape[1], dtype=torch.bool)
    clean = GenInputs(vision=item.vision.float(), vision_noisy=vision_noisy, timestep=torch.tensor(0.0),
                      sound=item.sound, sound_noisy=sound_noisy, actions=actions, action_noisy=action_noisy,
                      domain_id=item.domain_id)
    noised = add_noise(clean, sigma, g, item.raw_action_dim)
    layout = GenLayout(latent_shape=tuple(item.vision.shape), vision_noisy=vision_noisy, fps=item.fps,
                       sound_latents=0 if item.sound is None else item.sound.shape[1], sound_fps=cfg.sound_latent_fps,
                       action_steps=0 if actions is None else actions.shape[0], action_noisy=action_noisy,
                       domain_id=item.domain_id, action_first_frame=0 if item.state is not None else 1)
    return GenSample(ids, positions, noised, layout.positions(cfg, ids.shape[0]), mode, dropped)


def prepare_chat(messages: list[dict], reasoner, max_tokens: int) -> ChatSample:
    """Tokenize a conversation with the reasoner's chat template and media expansion; label the assistant turns
    (their content and the closing <|im_end|>), nothing else."""
    from ..reasoner import DEFAULT_SYSTEM_PROMPT

    prompt = reasoner.build_prompt(messages, system_prompt=DEFAULT_SYSTEM_PROMPT)
    tok = reasoner.tokenizer
    ids = prompt.input_ids.tolist()
    header = tok.encode("<|im_start|>assistant\n")
    if ids[-len(header):] == header:  # the template's trailing generation prompt: not part of the conversation
        ids = ids[:-len(header)]
    L = len(ids)
    labels = torch.zeros(L, dtype=torch.bool)
    i = 0
    while i <= L - len(header):
        if ids[i:i + len(header)] == header:
            start = i + len(header)
            end = start
            while end < L and ids[end] != tok.im_end_id:
                end += 1
            labels[start:min(end + 1, L)] = True  # content + <|im_end|>
            i = end
        i += 1
    if L > max_tokens:
        if bool(prompt.visual_mask[max_tokens:].any()):
            raise ValueError(f"conversation of {L} tokens has media past data.max_text_tokens={max_tokens}")
        L = max_tokens
    return ChatSample(torch.tensor(ids[:L]), prompt.positions[:, :L], labels[:L], prompt.media,
                      prompt.visual_mask[:L])


def group(samples: list, budget: int, pack: bool = False) -> list[list[int]]:
    """Indices of `samples` grouped into micro-batches: same shape key, B * (longest L + N) <= budget, or with
    `pack` any shapes together while the sum of the lengths stays <= budget (a sample over the budget alone).
    Deterministic: stream order within each shape (within the stream, packed)."""
    by_key: dict = {}
    for i, s in enumerate(samples):
        by_key.setdefault("packed" if pack else s.shape_key, []).append(i)
    groups = []
    for members in by_key.values():
        current: list[int] = []
        longest = used = 0
        for i in members:
            s = samples[i]
            text = s.input_ids.shape[0]
            gen = s.tokens - text
            width = used + s.tokens if pack else (len(current) + 1) * (max(longest, text) + gen)
            if current and width > budget:
                groups.append(current)
                current, longest, used = [], 0, 0
            current.append(i)
            longest, used = max(longest, text), used + s.tokens
        if current:
            groups.append(current)
    return groups


def _pad_text(samples: list, ids_of, pos_of) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Right-pad prompts: ids [B, L] (pad 0), positions [B, 3, L], mask [B, L] (None when no padding)."""
    lengths = [ids_of(s).shape[0] for s in samples]
    L = max(lengths)
    ids = torch.zeros(len(samples), L, dtype=torch.long)
    pos = text_positions(L).repeat(len(samples), 1, 1).float()
    for b, s in enumerate(samples):
        ids[b, :lengths[b]] = ids_of(s)
        pos[b, :, :lengths[b]] = pos_of(s)
    if len(set(lengths)) == 1:
        return ids, pos, None
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    return ids, pos, mask


def _spans(lengths: list[int]) -> list[tuple[int, int]]:
    """(start, length) of pieces laid end to end."""
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return list(zip(starts, lengths))


def pack_text(ids: list[torch.Tensor], positions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor,
                                                                            list[tuple[int, int]]]:
    """Token sequences end to end in one row: ids [1, S], positions [1, 3, S] (each keeps its own), and the
    (start, length) of each."""
    return (torch.cat(ids)[None], torch.cat([p.float() for p in positions], dim=1)[None],
            _spans([t.shape[0] for t in ids]))


def pack_chat(samples: list[ChatSample]) -> tuple[torch.Tensor, torch.Tensor, Packing]:
    """Conversations end to end in one row: ids [1, S], positions [1, 3, S] (each its own, from 0) and the Packing
    that keeps each conversation's attention to itself. Same losses as padding them, without the padding."""
    ids, pos, spans = pack_text([s.input_ids for s in samples], [s.positions for s in samples])
    return ids, pos, Packing(spans)


# ------------------------------------------------------------------------------------------------ forward passes


class TrainModule(nn.Module):
    """The network plus the training forward passes; the FSDP2 root. `forward(kind, samples)` returns the sum of
    the samples' losses (a scalar) and one dict of loss parts per sample."""

    def __init__(self, model: Cosmos3Omni, loss: LossConfig, activation_checkpointing: bool = False, vision=None,
                 pack: bool = False):
        super().__init__()
        self.model = model
        self.pack = pack  # the micro-batch is one packed row (model.mot.Packing)
        self.loss_cfg = loss
        self.activation_checkpointing = activation_checkpointing
        self.vision = [vision]  # a list keeps the (frozen) vision tower out of this module's parameters

    def und_trainable(self) -> bool:
        return any(p.requires_grad for n, p in self.model.named_parameters() if not is_gen_param(n))

    def _maybe_checkpoint(self, fn, *args):
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, kind: str, samples: list) -> tuple[torch.Tensor, list[dict]]:
        if kind not in ("gen", "chat"):
            raise ValueError(f"unknown batch kind {kind!r}")
        total, parts = self.gen_loss(samples) if kind == "gen" else self.chat_loss(samples)
        # Heads a micro-batch may not use (e.g. proj_out when no frame is noisy, action heads without actions) get an
        # exact zero gradient instead of none: every process then reduces the same gradients under FSDP, and 1 or N
        # processes update the same parameters.
        touched = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("layers.")
                   and (is_gen_param(n) or n == "embed_tokens.weight") == (kind == "gen")]
        if touched:
            total = total + 0.0 * sum(p.sum() for p in touched)
        return total, parts

    def gen_loss(self, samples: list[GenSample]) -> tuple[torch.Tensor, list[dict]]:
        total, parts = torch.zeros((), dtype=torch.float32, device=self.model.device), []
        for pred, s in zip(self.gen_predictions(samples), samples):
            loss, part = flow_matching_loss(pred, s.noised, self.loss_cfg)
            total = total + loss
            parts.append(part)
        return total, parts

    def gen_predictions(self, samples: list[GenSample]) -> list[GenOutputs]:
        """The network's velocity predictions for a micro-batch of noised samples, one GenOutputs per sample (what
        the loss compares with the targets; benchmarks read them to run a sampler through the training forward)."""
        model = self.model
        device = model.device
        packing = None
        if self.pack and len(samples) > 1:  # one row: prompts end to end, then generation tokens end to end
            ids, text_pos, und_spans = pack_text([s.input_ids for s in samples], [s.text_positions for s in samples])
            gen_spans = _spans([s.gen_positions.shape[1] for s in samples])
            packing, mask = Packing(und_spans, gen_spans), None
            gen_pos = torch.cat([s.gen_positions.float() for s in samples], dim=1)[None]
            gen = torch.cat([model.embed_gen(s.noised.inputs) for s in samples])[None]  # [1, sum N, D]
        else:
            ids, text_pos, mask = _pad_text(samples, lambda s: s.input_ids, lambda s: s.text_positions)
            gen_pos = torch.stack([s.gen_positions for s in samples]).float()
            gen = torch.stack([model.embed_gen(s.noised.inputs) for s in samples])  # [B, N, D]
        ids, mask = ids.to(device), None if mask is None else mask.to(device)
        und_rope = model.rope(text_pos)
        gen_rope = model.rope(gen_pos)
        train_und = self.und_trainable()
        with torch.set_grad_enabled(train_und and torch.is_grad_enabled()):
            und = model.embed_tokens(ids)  # [B, L, D]

        for layer in model.layers:
            def und_step(x, layer=layer):
                return layer.und(x, und_rope, mask, model.attention_backend, None, 0, None, packing)

            def gen_step(x, k, v, layer=layer):
                return layer.gen(x, gen_rope, k, v, mask, model.attention_backend, packing)

            if train_und:
                und, k, v = self._maybe_checkpoint(und_step, und)
            else:  # frozen und: its activations need no graph (they never depend on gen tokens)
                with torch.no_grad():
                    und, k, v = und_step(und)
            gen = self._maybe_checkpoint(gen_step, gen, k, v)

        hidden = model.norm_moe_gen(gen)
        rows = [hidden[0, a:a + n] for a, n in packing.gen] if packing else list(hidden)  # [N, D] per sample
        preds = []
        for h, s in zip(rows, samples):
            # the heads run in float32 (they write into float32 buffers, which bf16 autocast outputs cannot fill)
            with torch.autocast(h.device.type, enabled=False):
                preds.append(model.decode_gen(h.float(), s.noised.inputs))
        return preds

    def chat_loss(self, samples: list[ChatSample]) -> tuple[torch.Tensor, list[dict]]:
        model = self.model
        device = model.device
        packing = mask = None
        if self.pack and len(samples) > 1:
            ids, pos, packing = pack_chat(samples)
            spans = [(0, start, L) for start, L in packing.und]
        else:
            ids, pos, mask = _pad_text(samples, lambda s: s.input_ids, lambda s: s.positions)
            spans = [(b, 0, s.input_ids.shape[0]) for b, s in enumerate(samples)]
        ids, mask = ids.to(device), None if mask is None else mask.to(device)
        x = model.embed_tokens(ids)  # [B, L, D]
        deepstack = None
        media = [m for s in samples for m in s.media]
        if media:
            vision = self.vision[0]
            if vision is None:
                raise ValueError("chat data with images or video needs a checkpoint with a vision_encoder/")
            train_vision = any(p.requires_grad for p in vision.parameters())
            with torch.set_grad_enabled(train_vision and torch.is_grad_enabled()):
                features, deep = vision.features(media)  # [n_visual, D], per early layer [n_visual, D]
            # a bool-mask write fills row-major: sample after sample in both layouts, as `media` is ordered
            visual = torch.zeros(ids.shape, dtype=torch.bool)
            for (b, start, L), s in zip(spans, samples):
                visual[b, start:start + L] = s.visual_mask
            visual = visual.to(device)
            x = x.index_put((visual,), features.to(x.dtype))
            deepstack = (visual, deep)
        rope = model.rope(pos)
        for i, layer in enumerate(model.layers):
            def und_step(h, layer=layer):
                return layer.und(h, rope, mask, model.attention_backend, None, 0, None, packing)[0]

            x = self._maybe_checkpoint(und_step, x)
            if deepstack is not None and i < len(deepstack[1]):
                x = x.index_put((deepstack[0],), x[deepstack[0]] + deepstack[1][i].to(x.dtype))
        hidden = model.norm(x)
        total, parts = hidden.new_zeros((), dtype=torch.float32), []
        for (b, start, L), s in zip(spans, samples):
            loss = sft_loss(hidden[b, start:start + L], model.lm_head, ids[b, start:start + L], s.labels)
            if loss is None:
                parts.append({})
                continue
            total = total + loss
            parts.append({"text": float(loss.detach())})
        return total, parts
