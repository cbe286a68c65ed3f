"""Network configuration: one dataclass that mirrors the official `transformer/config.json`, and named presets.

The official checkpoints store the arguments of diffusers' `Cosmos3OmniTransformer` in `transformer/config.json`.
`Cosmos3Config` has one field per argument, under the same name, so a checkpoint's file reads into it and writes back
out without renaming. Keys we do not model (bookkeeping such as `_diffusers_version`, or fields added by a newer
release) are kept in `extra` and written back unchanged, so a round trip never drops anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import atomic_write

DIFFUSERS_CLASS_NAME = "Cosmos3OmniTransformer"
DIFFUSERS_VERSION = "0.42.1"


@dataclass
class Cosmos3Config:
    """Shape and behaviour of the MoT network (both pathways). Defaults are Cosmos3-Nano's."""

    # --- backbone (each pathway is a copy of the same text-decoder shape) ---
    hidden_size: int = 4096  # D, the width of every token
    num_hidden_layers: int = 36
    num_attention_heads: int = 32  # query heads
    num_key_value_heads: int = 8  # GQA: each kv head serves num_attention_heads / num_key_value_heads query heads
    head_dim: int = 128
    intermediate_size: int = 12288  # MLP width
    hidden_act: str = "silu"  # "silu": SwiGLU MLP (Qwen3-VL); "relu2": relu(x)^2 MLP (Nemotron / Edge)
    attention_bias: bool = False
    attention_dropout: float = 0.0  # kept for the file format; inference never drops
    rms_norm_eps: float = 1e-6
    vocab_size: int = 151936
    qk_norm_for_text: bool = True  # per-head RMSNorm on und q/k (Qwen3-VL yes, Edge no)
    use_und_k_norm_for_gen: bool = False  # Edge: extra RMSNorm on und keys as seen by gen queries
    dtype: str | None = None  # training dtype hint some configs carry; None = not stated (then not written)

    # --- rotary position embedding (3D interleaved mRoPE) ---
    rope_theta: float = 5_000_000.0
    rope_scaling: dict | None = None  # Qwen3-VL style {"mrope_section": [t, h, w], ...}; read if rope_axes_dim unset
    rope_axes_dim: list[int] | None = None  # frequency slots per axis (T, H, W); sums to head_dim / 2
    base_fps: int = 24  # video T positions advance by base_fps / fps per frame
    enable_fps_modulation: bool = True
    unified_3d_mrope_reset_spatial_ids: bool = True  # H/W ids of vision tokens restart at 0
    unified_3d_mrope_temporal_modality_margin: int = 15000  # gap between the last text position and vision

    # --- vision latents ---
    latent_channel: int = 48  # Wan 2.2 VAE channels
    latent_patch_size: int = 2  # 2x2 spatial patches
    patch_latent_dim: int = 192  # latent_patch_size^2 * latent_channel
    timestep_scale: float = 0.001  # sampler timesteps (0..1000) are scaled to 0..1 before the sinusoid

    # --- sound ---
    sound_gen: bool = False
    sound_dim: int | None = None  # audio tokenizer latent channels (64 in the release)
    sound_latent_fps: float = 25.0

    # --- actions ---
    action_gen: bool = False
    action_dim: int | None = None  # padded action width (64 in the release)
    num_embodiment_domains: int = 32

    # Keys of config.json we do not model; written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rope_axes_dim is None:
            section = (self.rope_scaling or {}).get("mrope_section") or default_rope_axes(self.head_dim)
            self.rope_axes_dim = list(section)
        else:
            self.rope_axes_dim = list(self.rope_axes_dim)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"Cosmos3Config.{name}={getattr(self, name)!r}: {why}")

        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                     "intermediate_size", "vocab_size", "latent_channel", "latent_patch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(name, "expected a positive integer")
        if self.num_attention_heads % self.num_key_value_heads:
            raise bad("num_attention_heads", f"must be a multiple of num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise bad("head_dim", "must be even (rotary embedding pairs)")
        if self.hidden_act not in ("silu", "relu2"):
            raise bad("hidden_act", "expected 'silu' or 'relu2'")
        if len(self.rope_axes_dim) != 3 or sum(self.rope_axes_dim) != self.head_dim // 2:
            raise bad("rope_axes_dim", f"expected three slot counts summing to head_dim / 2 = {self.head_dim // 2}")
        # H takes slots 1, 4, 7, ... and W slots 2, 5, 8, ...: both must fit inside head_dim / 2 slots.
        if 3 * self.rope_axes_dim[1] - 2 >= self.head_dim // 2 or 3 * self.rope_axes_dim[2] - 1 >= self.head_dim // 2:
            raise bad("rope_axes_dim", "H/W sections too wide to interleave as T,H,W triples")
        if self.patch_latent_dim != self.latent_patch_size**2 * self.latent_channel:
            raise bad("patch_latent_dim", f"expected latent_patch_size^2 * latent_channel = "
                      f"{self.latent_patch_size**2 * self.latent_channel}")
        if self.sound_gen and not self.sound_dim:
            raise bad("sound_dim", "required when sound_gen is true")
        if self.action_gen and not self.action_dim:
            raise bad("action_dim", "required when action_gen is true")

    # ------------------------------------------------------------ derived facts
    @property
    def is_edge_style(self) -> bool:
        """Nemotron backbone: relu^2 MLP and its float32-weighted RMSNorm."""
        return self.hidden_act == "relu2"

    def param_count(self) -> int:
        """Exact parameter count, computed from shapes (no weights are built, so it works for Super too)."""
        D, F, Dh = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_attention_heads * Dh, self.num_key_value_heads * Dh
        bias = self.attention_bias
        attn = 2 * (D * q + (q if bias else 0) + 2 * (D * kv + (kv if bias else 0)) + q * D + (D if bias else 0))
        head_norms = 2 * Dh + (2 * Dh if self.qk_norm_for_text else 0)  # gen q/k always; und q/k when enabled
        if self.use_und_k_norm_for_gen and not self.qk_norm_for_text:
            head_norms += Dh
        mlp = 2 * ((3 if self.hidden_act == "silu" else 2) * D * F)
        layer = attn + head_norms + mlp + 4 * D  # input / post-attention norms, per pathway
        total = self.vocab_size * D * 2  # embed_tokens + lm_head (untied)
        total += self.num_hidden_layers * layer + 2 * D  # final norms of both pathways
        total += 2 * self.patch_latent_dim * D + self.patch_latent_dim + D  # proj_in / proj_out
        total += 256 * D + D + D * D + D  # time embedder
        if self.action_gen:
            a, n = self.action_dim, self.num_embodiment_domains
            total += n * (a * D + D) + n * (D * a + a) + D
        if self.sound_gen:
            s = self.sound_dim
            total += s * D + D + D * s + s + D
        return total

    # --------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        """The config.json content: diffusers' bookkeeping keys, our fields, then anything we carried through."""
        out: dict[str, Any] = {"_class_name": DIFFUSERS_CLASS_NAME, "_diffusers_version": DIFFUSERS_VERSION}
        out.update(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra" and not (f.name == "dtype" and self.dtype is None):
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cosmos3Config":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        cfg = cls(**kwargs)
        cfg.extra = extra
        return cfg

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Cosmos3Config":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no transformer config.json here") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    def save_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
            path = path / "config.json"
        return atomic_write(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    def replace(self, **changes: Any) -> "Cosmos3Config":
        """A copy with some fields changed; rope_axes_dim is re-derived when head_dim changes and it is not given."""
        if "head_dim" in changes and "rope_axes_dim" not in changes:
            changes["rope_axes_dim"] = None
            changes.setdefault("rope_scaling", None)
        new = dataclasses.replace(self, **changes)
        new.extra = dict(self.extra)
        return new


def default_rope_axes(head_dim: int) -> list[int]:
    """Slots per axis for a head size: the release's 24/20/20 at head_dim 128, scaled the same way otherwise."""
    half = head_dim // 2
    if half == 64:
        return [24, 20, 20]
    hw = (half * 20) // 64
    return [half - 2 * hw, hw, hw]


# Published shapes (DESIGN 2.1). Nano and Super generate sound and actions; Edge is the Nemotron-style variant.
_RELEASE_HEADS = dict(sound_gen=True, sound_dim=64, action_gen=True, action_dim=64)

PRESETS: dict[str, Cosmos3Config] = {
    "nano": Cosmos3Config(**_RELEASE_HEADS),
    "super": Cosmos3Config(hidden_size=5120, num_hidden_layers=64, num_attention_heads=64, num_key_value_heads=8,
                           intermediate_size=25600, **_RELEASE_HEADS),
    "edge": Cosmos3Config(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                          intermediate_size=9216, hidden_act="relu2", rms_norm_eps=1e-5, rope_theta=1e8,
                          vocab_size=131072, qk_norm_for_text=False, use_und_k_norm_for_gen=True, **_RELEASE_HEADS),
    # Tiny shapes for tests and the set-up demo: every code path, seconds on a CPU.
    "tiny": Cosmos3Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=32, intermediate_size=256, vocab_size=1024, latent_channel=8,
                          patch_latent_dim=32, **_RELEASE_HEADS),
    "tiny-edge": Cosmos3Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               head_dim=32, intermediate_size=256, vocab_size=1024, latent_channel=8,
                               patch_latent_dim=32, hidden_act="relu2", rms_norm_eps=1e-5, rope_theta=1e8,
                               qk_norm_for_text=False, use_und_k_norm_for_gen=True, **_RELEASE_HEADS),
}


def get_preset(name: str) -> Cosmos3Config:
    """A fresh copy of a named preset (callers may mutate it)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace()
