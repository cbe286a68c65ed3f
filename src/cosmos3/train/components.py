"""Training the small tokenizers a model of its own world needs: a BPE text tokenizer, a Wan-2.2-layout video VAE
and an audio tokenizer of the release's class. All three are saved in the classes and folders of the official
layout (`text_tokenizer/`, `vae/`, `sound_tokenizer/`), so diffusers' pipeline loads them as it loads the release.

Shapes:  B clips   T pixel frames (1 or 4k + 1)   H, W pixels   C latent channels   N audio samples (48 kHz)

    train_text_tokenizer(texts, out, vocab_size=2048)
    train_video_vae(clips, out, steps=..., base_dim=...)        clips: uint8 [n, T, H, W, 3]
    train_audio_tokenizer(waves, out, steps=..., dim=...)       waves: float32 [n, 2, N]

Each trainer is deterministic for its seed, shows a progress bar, and returns a dict of its final figures.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..fileio import atomic_write
from ..tokenizers import CHATML_TEMPLATE, END_OF_TEXT, IM_END, QWEN_SPECIAL_TOKENS

# ------------------------------------------------------------------------------------------------ text


def train_text_tokenizer(texts: list[str], out: str | Path, vocab_size: int = 2048):
    """Byte-level BPE over `texts` (every byte stays encodable), then the 26 Qwen3 special tokens in Qwen order and
    ChatML with Qwen3-VL's media placeholders. Returns the transformers tokenizer (also saved to `out`)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(QWEN_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    core.train_from_iterator(texts, trainer=trainer)
    core.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=END_OF_TEXT)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                                          for t, s in QWEN_SPECIAL_TOKENS if s]})
    tok.chat_template = CHATML_TEMPLATE
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    return tok


# ------------------------------------------------------------------------------------------------ video VAE


def video_vae(z_dim: int = 48, base_dim: int = 16, num_res_blocks: int = 1):
    """A Wan 2.2-layout AutoencoderKLWan (patch 2, residual, 16x spatial, 4x temporal) at a small width."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=base_dim, decoder_base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 2, 2, 2],
                            num_res_blocks=num_res_blocks, temperal_downsample=[False, True, True], is_residual=True,
                            in_channels=12, out_channels=12, patch_size=2, scale_factor_temporal=4,
                            scale_factor_spatial=16, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)


def _to_pixels(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> [B, 3, T, H, W] in [-1, 1]."""
    return clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def _optimize(opt, loss: torch.Tensor, clip: float, running: float | None, bar) -> float:
    """One AdamW step on `loss` with gradient clipping; returns the running (EMA 0.9) loss shown on the bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()
    value = loss.detach().item() if running is None else 0.9 * running + 0.1 * loss.detach().item()
    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    return value


def _lr_at(step: int, steps: int, lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def train_video_vae(clips: torch.Tensor, out: str | Path, *, steps: int = 1000, batch_size: int = 4,
                    frames: int = 5, crop: int = 96, base_dim: int = 16, z_dim: int = 48, lr: float = 1e-3,
                    latent_penalty: float = 1e-4, seed: int = 0, progress: bool = True) -> dict:
    """Train the VAE as a deterministic autoencoder (the distribution's mode, as encoding uses) on random crops of
    `frames`-frame windows, L1 + MSE on pixels plus a small L2 pull on the latents; then set latents_mean/std from
    whole-frame encodings and save. clips: uint8 [n, T, H, W, 3] with T >= frames."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = video_vae(z_dim, base_dim).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    n, T, H, W, _ = clips.shape
    if T < frames or H < crop or W < crop:
        raise ValueError(f"clips of {T}x{H}x{W} are smaller than a {frames}x{crop}x{crop} training window")
    started, bar = time.perf_counter(), tqdm(range(steps), desc="video VAE", unit="step", disable=not progress)
    loss_value = float("nan")
    for step in bar:
        idx = torch.randint(n, (batch_size,), generator=g)
        t0 = torch.randint(T - frames + 1, (1,), generator=g).item()
        y0 = torch.randint(0, (H - crop) // 16 + 1, (1,), generator=g).item() * 16
        x0 = torch.randint(0, (W - crop) // 16 + 1, (1,), generator=g).item() * 16
        x = _to_pixels(clips[idx, t0:t0 + frames, y0:y0 + crop, x0:x0 + crop])
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        z = vae.encode(x).latent_dist.mode()
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + latent_penalty * z.pow(2).mean()
        loss_value = _optimize(opt, loss, 1.0, loss_value if step else None, bar)
    vae.eval()
    with torch.no_grad():  # per-channel statistics of whole-frame latents: the normalization the pipeline applies
        sample = _to_pixels(clips[torch.randperm(n, generator=g)[:min(n, 8)], :frames])
        zs = torch.cat([vae.encode(sample[i:i + 1]).latent_dist.mode() for i in range(sample.shape[0])])
        mean = zs.mean(dim=(0, 2, 3, 4))
        std = zs.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
        rec = vae.decode(zs).sample.clamp(-1, 1)
        psnr = float(10 * torch.log10(4.0 / F.mse_loss(rec, sample)))
    vae.register_to_config(latents_mean=[round(float(v), 6) for v in mean],
                           latents_std=[round(float(v), 6) for v in std])
    vae.save_pretrained(str(out))
    return {"steps": steps, "loss": loss_value, "psnr_db": psnr, "seconds": time.perf_counter() - started,
            "parameters": sum(p.numel() for p in vae.parameters())}


# ------------------------------------------------------------------------------------------------ audio


def audio_tokenizer(latent_dim: int = 16, dim: int = 8):
    """The release's Cosmos3AVAEAudioTokenizer class (48 kHz stereo, hop 1920 = 4*5*6 strides x STFT hop 16) at a
    small width. Volume normalization is off: in this world loudness carries information (how hard things hit)."""
    from diffusers import Cosmos3AVAEAudioTokenizer

    return Cosmos3AVAEAudioTokenizer(vocoder_input_dim=latent_dim, enc_latent_dim=2 * latent_dim, dec_dim=dim,
                                     enc_dim=dim, enc_num_blocks=1, normalize_volume=False)


def _stft_loss(rec: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Multi-resolution log-magnitude L1 (the usual audio-codec spectral loss), over [B, C, N] waveforms."""
    total = rec.new_zeros(())
    for n_fft in (256, 1024, 4096):
        win = torch.hann_window(n_fft)

        def mag(x):
            s = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, n_fft // 4, window=win, return_complex=True)
            return s.abs().clamp_min(1e-5)

        a, b = mag(rec), mag(ref)
        total = total + F.l1_loss(a.log(), b.log()) + F.l1_loss(a, b)
    return total / 3


def train_audio_tokenizer(waves: torch.Tensor, out: str | Path, *, steps: int = 400, batch_size: int = 4,
                          seconds: float = 0.8, latent_dim: int = 16, dim: int = 8, lr: float = 1e-3,
                          seed: int = 0, progress: bool = True) -> dict:
    """Train the audio tokenizer on random windows of `waves` (float32 [n, 2, N] at 48 kHz): waveform L1 plus the
    multi-resolution spectral loss on the decoded posterior mean, and a small pull on the latents."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = audio_tokenizer(latent_dim, dim).train()
    with torch.no_grad():  # start near silence, which most of a world's sound is, instead of loud random noise
        last = model.decoder.conv2
        scale = getattr(last, "weight_g", None)
        (scale if scale is not None else last.weight).mul_(0.05)
    hop = model._hop_size
    length = max(1, int(seconds * 48000) // hop) * hop
    n, _, N = waves.shape
    if N < length:
        raise ValueError(f"sounds of {N} samples are shorter than a {length}-sample training window")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    started, bar = time.perf_counter(), tqdm(range(steps), desc="audio tokenizer", unit="step",
                                             disable=not progress)
    loss_value = float("nan")
    # Sounds in a world of impacts are short bursts in silence: most windows are taken around the loudest sample of
    # a clip (at a random place in the window), or a training set of near-silence teaches the codec to say nothing.
    loudest = waves.abs().amax(1).argmax(-1)  # [n]
    loud = waves.abs().amax(dim=(1, 2)) > 0
    for step in bar:
        idx = torch.randint(n, (batch_size,), generator=g)
        starts = torch.randint(N - length + 1, (batch_size,), generator=g)
        around = (loudest[idx] - torch.randint(length, (batch_size,), generator=g)).clamp(0, N - length)
        pick = loud[idx] & (torch.rand(batch_size, generator=g) < 0.85)
        starts = torch.where(pick, around, starts)
        x = torch.stack([waves[i, :, s:s + length] for i, s in zip(idx.tolist(), starts.tolist())])
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        z = model.encode(x).latent_dist.mean
        rec = model.decode(z)[..., :length]
        loss = (10 * F.l1_loss(rec, x) + _stft_loss(rec, x) + 0.1 * _envelope_loss(rec, x, hop)
                + 1e-4 * z.pow(2).mean())
        # the codec's gradient norms run at 30-70: a clip at 1 (as for the VAE) would freeze it (measured: no
        # learning in 300 steps); 200 only guards against spikes
        loss_value = _optimize(opt, loss, 200.0, loss_value if step else None, bar)
    model.eval()
    with torch.no_grad():
        x = waves[loud][:8] if bool(loud.any()) else waves[:8]
        rec = model.decode(model.encode(x).latent_dist.mode())[..., :N]
        snr = float(10 * torch.log10(x.pow(2).mean() / (rec - x).pow(2).mean().clamp_min(1e-12)))
        envelope = _envelope_correlation(rec, x, hop)
    model.save_pretrained(str(out))
    return {"steps": steps, "loss": loss_value, "snr_db": snr, "envelope_correlation": envelope,
            "seconds": time.perf_counter() - started, "parameters": sum(p.numel() for p in model.parameters())}


def _envelope(x: torch.Tensor, hop: int) -> torch.Tensor:
    """[B, C, N] -> per-hop energy [B, N // hop] (mean square over channels and the hop)."""
    m = x.shape[-1] // hop * hop
    return x[..., :m].pow(2).mean(1).reshape(x.shape[0], -1, hop).mean(-1)


def _envelope_loss(rec: torch.Tensor, ref: torch.Tensor, hop: int) -> torch.Tensor:
    """L1 between log energy envelopes at the latent rate: when a sound starts and how loud it is."""
    return F.l1_loss(torch.log(_envelope(rec, hop) + 1e-7), torch.log(_envelope(ref, hop) + 1e-7))


def _envelope_correlation(a: torch.Tensor, b: torch.Tensor, hop: int) -> float:
    """Correlation of per-latent-frame energy envelopes: what timing of sound events needs to survive coding."""
    ea, eb = _envelope(a, hop).flatten(), _envelope(b, hop).flatten()
    ea, eb = ea - ea.mean(), eb - eb.mean()
    return float((ea * eb).sum() / (ea.norm() * eb.norm()).clamp_min(1e-12))


def save_json(path: str | Path, data: dict) -> None:
    """Atomically: a stage's markers are read by the other pico processes of the same run folder while written."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")
