"""Loading and saving the network in the official diffusers layout (safetensors only, never pickle).

    <root>/transformer/config.json
    <root>/transformer/diffusion_pytorch_model.safetensors                       one file, or
    <root>/transformer/diffusion_pytorch_model-0000i-of-0000n.safetensors        shards
    <root>/transformer/diffusion_pytorch_model.safetensors.index.json           + {"weight_map": {key: shard}}

Loading is strict: a missing key, an unexpected key, a wrong shape, a missing shard or a truncated / corrupt file
is an error that names the file and the key. The model is built on the meta device and every tensor is read from
the memory-mapped file straight into its final dtype and device, so peak memory stays near one copy of the weights.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import Cosmos3Config
from .fileio import atomic_path, atomic_write
from .model import Cosmos3Omni
from .model.rope import MRoPE

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = WEIGHTS_NAME + ".index.json"
# Modules kept in float32 whatever the load dtype (as the reference does): tiny and sensitive to rounding.
FP32_MODULES = ("time_embedder.",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as it is; the message names the file and, where known, the key."""


# The embedded model: `pico`, trained by this project on its synthetic world (cosmos3.train.pico), shipped inside the
# package in the official layout.
EMBEDDED = {"pico": Path(__file__).parent / "weights" / "pico"}


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint argument -> its directory: an embedded model's name ("pico") unless a local folder of that name
    exists, else the path as given."""
    name = str(path)
    if name in EMBEDDED and not Path(name).is_dir():
        folder = EMBEDDED[name]
        if not (folder / "transformer" / "config.json").is_file():
            raise CheckpointError(f"the embedded {name!r} weights are missing from this installation ({folder}); "
                                  f"train them with `cosmos3 train --recipe {name}` or pass --checkpoint DIR")
        return folder
    return Path(path)


def default_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU (bf16 matmuls are several times slower on CPUs without AMX), bfloat16 on accelerators."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def transformer_dir(path: str | os.PathLike) -> Path:
    """Accept the checkpoint root (holding `transformer/`) or the transformer folder itself."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    if (path / "transformer" / "config.json").is_file():
        return path / "transformer"
    if (path / "config.json").is_file():  # the weights themselves are checked when read
        return path
    raise CheckpointError(f"{path}: expected an official-layout checkpoint (transformer/config.json and "
                          f"transformer/{WEIGHTS_NAME} or its index)")


def _weight_files(folder: Path) -> dict[str, Path | None]:
    """{key: file} from the shard index, or {"": single file} when unsharded (keys read later)."""
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid shard index ({e})") from None
        files = {}
        for key, name in weight_map.items():
            shard = folder / name
            if not shard.is_file():
                raise CheckpointError(f"{shard}: shard listed in {index.name} for key {key!r} is missing")
            files[key] = shard
        return files
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return {"": single}
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    hint = f" (found {pickles}: pickle files are never loaded; convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"{folder}: no {WEIGHTS_NAME} and no {INDEX_NAME}{hint}")


def _diagnose(file: Path) -> str:
    """Why safetensors refused a file, in words: a header we cannot read, or the first key whose bytes are cut off."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return f"{file}: truncated ({size} bytes, no safetensors header)"
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > size - 8:
            return f"{file}: corrupt or truncated header (declares {header_len} bytes, file has {size})"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{file}: corrupt safetensors header (not JSON)"
    data = size - 8 - header_len
    for key, info in header.items():
        if key != "__metadata__" and isinstance(info, dict) and info.get("data_offsets", [0, 0])[1] > data:
            return f"{file}: truncated: tensor {key!r} ends at byte {info['data_offsets'][1]} of a {data}-byte body"
    return f"{file}: corrupt safetensors file"


def _open(file: Path, device: torch.device):
    try:
        return safe_open(str(file), framework="pt", device=str(device) if device.type != "cpu" else "cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{_diagnose(file)} [{e}]") from None


class WeightIndex:
    """Where each tensor of a checkpoint's `transformer/` lives, checked against a model built from its config: every
    key present, none unexpected, every shape right. `read` then takes one tensor, or a range of its rows, from the
    memory-mapped file."""

    def __init__(self, path: str | os.PathLike, with_gen: bool = True):
        folder = transformer_dir(path)
        self.config = cfg = Cosmos3Config.from_json(folder / "config.json")
        self.with_gen = with_gen
        with torch.device("meta"):
            model = Cosmos3Omni(cfg, with_gen=with_gen)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}

        files = _weight_files(folder)
        if "" in files:  # unsharded: every key comes from the one file
            single = files.pop("")
            with _open(single, torch.device("cpu")) as f:
                files = {key: single for key in f.keys()}
        from . import fp8  # fp8.py imports this module

        fp8_weights = fp8.split_scales(folder, files)  # the fp8 weights' scales leave `files` (checked there)
        missing = sorted(set(expected) - set(files))
        if not with_gen:  # keys of the full model that the und-only model leaves out are skipped, not refused
            with torch.device("meta"):
                full = set(Cosmos3Omni(cfg).state_dict())
            files = {k: f for k, f in files.items() if k in expected or k not in full}
        unexpected = sorted(set(files) - set(expected))
        if missing:
            where = sorted({str(p) for p in files.values()}) or [str(folder)]
            raise CheckpointError(f"{', '.join(where)}: missing {len(missing)} key(s) the config needs, "
                                  f"first {missing[:5]}")
        if unexpected:
            key = unexpected[0]
            raise CheckpointError(f"{files[key]}: unexpected key {key!r} (and {len(unexpected) - 1} more) that this "
                                  f"config ({folder / 'config.json'}) does not define")
        self.files = files
        self.fp8 = {key: w for key, w in fp8_weights.items() if key in files}  # {weight key: fp8.Fp8Weight}
        for file, keys in self.by_file().items():
            with _open(file, torch.device("cpu")) as f:
                for key in keys:
                    shape = tuple(f.get_slice(key).get_shape())
                    if shape != expected[key]:
                        raise CheckpointError(f"{file}: key {key!r} has shape {list(shape)}, the config expects "
                                              f"{list(expected[key])}")

    def build(self) -> Cosmos3Omni:
        """The network on the meta device (no memory), to be filled by `read`."""
        with torch.device("meta"):
            return Cosmos3Omni(self.config, with_gen=self.with_gen)

    def by_file(self) -> dict[Path, list[str]]:
        out: dict[Path, list[str]] = {}
        for key, file in self.files.items():
            out.setdefault(file, []).append(key)
        return out

    @staticmethod
    def read(f, key: str, dtype: torch.dtype, device: torch.device, rows: tuple[int, int] | None = None,
             file: Path | None = None) -> torch.Tensor:
        """Tensor `key` of the open file `f` (rows [start, end) of it with `rows`) in `dtype`, except the float32
        modules and integer tensors, which keep their own."""
        try:
            tensor = f.get_tensor(key) if rows is None else f.get_slice(key)[rows[0]:rows[1]]
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{file}: cannot read key {key!r} ({e})") from None
        keep_fp32 = key.startswith(FP32_MODULES) or not tensor.is_floating_point()
        return tensor.to(device=device, dtype=torch.float32 if keep_fp32 else dtype)


def rebuild_buffers(model: Cosmos3Omni, device: torch.device) -> None:
    """Non-persistent buffers (the rotary frequencies) of a model built on meta or materialized empty."""
    cfg = model.config
    model.rotary = MRoPE(cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim).to(device)


def load_transformer(path: str | os.PathLike, dtype: torch.dtype | None = None,
                     device: str | torch.device | None = None, with_gen: bool = True,
                     fp8: str = "auto") -> Cosmos3Omni:
    """Read `transformer/` of an official-layout checkpoint into our network (eval mode).

    `with_gen=False` loads the understanding pathway alone; the generation weights in the files are skipped
    unread (they are neither missing nor unexpected). An FP8 checkpoint (the release's `fp8` revision) is read by
    fp8.py: `fp8="dequantize"` makes it float, "keep" keeps its linears fp8, "auto" keeps them on CUDA only."""
    index = WeightIndex(path, with_gen)
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or default_dtype(device)
    model = index.build()
    state: dict[str, torch.Tensor] = {}
    for file, keys in index.by_file().items():
        with _open(file, device) as f:
            for key in keys:
                if key not in index.fp8:
                    state[key] = index.read(f, key, dtype, device, file=file)
    if index.fp8 or fp8 != "auto":
        from . import fp8 as fp8_module

        fp8_module.read(model, index.fp8, state, dtype, device, fp8)
    model.load_state_dict(state, strict=True, assign=True)
    rebuild_buffers(model, device)
    return model.eval()


def save_transformer(model: Cosmos3Omni, path: str | os.PathLike, max_shard_bytes: int = 5 * 1024**3) -> Path:
    """Write config.json + safetensors (sharded past `max_shard_bytes`) into `path` (the transformer folder).

    Each file is written under a temporary name and renamed into place, so an interrupted save never leaves a
    half-written file under a final name."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes

    def write(tensors: dict[str, torch.Tensor], name: str) -> None:
        with atomic_path(folder / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})

    for stale in [folder / WEIGHTS_NAME, folder / INDEX_NAME, *folder.glob("diffusion_pytorch_model-*.safetensors")]:
        stale.unlink(missing_ok=True)
    if len(shards) == 1:
        write(shards[0], WEIGHTS_NAME)
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
            write(shard, name)
            weight_map.update({key: name for key in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        atomic_write(folder / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    model.config.save_json(folder / "config.json")
    return folder
