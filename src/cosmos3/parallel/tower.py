"""Tower split: the und tower on rank 0, the gen tower on rank 1, each rank holding only its own tower's weights.

The und stream never depends on gen tokens (model/mot.py), so the split costs one hand-over per request: the gen
rank (which runs the Generator: tokenizer, VAE, sampling) sends each prompt's token ids and positions, the und rank
runs them through its layers and sends back every layer's keys and values; the denoising steps then run on the gen
rank alone. The und rank waits in `serve_und` until the gen rank sends the stop message (`stop`).

Prompt upsampling runs on the und rank too: the reasoner is the und tower (generator.upsample_with, greedy, text
only, so the und rank adds the text tokenizer and no vision tower), and the gen rank never holds und weights. The
gen rank sends the prompt text (`request_upsample`) and gets the upsampled text back, then asks for its keys and
values as for any prompt.

Which weights go where: the und tower is what the reasoner loads (embeddings, und layers, norm, lm_head) plus
Edge's `k_norm_und_for_gen` (it shapes the keys the und tower hands over); the gen tower is everything else. Both
ranks build the whole network on the meta device and read only their own tensors from the files; the other tower's
parameters stay on meta (no memory) and are never run.

Messages (rank 1 -> 0): header int64 [3] = (number of prompts, length of each; 0 prompts = stop), then the ids
int64 [sum L] and positions float32 [3, sum L]. Back (0 -> 1): per prompt, per layer, keys then values
[1, Hkv, L, Dh] in the model's dtype. An upsampling request is header (-1, B, seed or -1) then the prompt's UTF-8
bytes uint8 [B]; back: int64 [1] = B' (-1: the und rank failed, its log says why), then uint8 [B'].
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import WeightIndex, _open, default_dtype, rebuild_buffers, resolve_checkpoint
from ..diffusion import Branches
from ..generator import upsample_with
from ..model import Cosmos3Omni, UndCache
from ..sequence import GenLayout

UND_RANK, GEN_RANK = 0, 1
UPSAMPLE = -1  # the header's first field for an upsampling request (else the number of prompts; 0: stop)


def tower_keys(index: WeightIndex, tower: str) -> list[str]:
    """The checkpoint keys `tower` ("und" or "gen") holds."""
    with torch.device("meta"):
        und = set(Cosmos3Omni(index.config, with_gen=False).state_dict())
    und |= {k for k in index.files if ".k_norm_und_for_gen." in k}
    return sorted(k for k in index.files if (k in und) == (tower == "und"))


def load_tower(path, tower: str, dtype: torch.dtype | None = None,
               device: str | torch.device | None = None) -> Cosmos3Omni:
    """The network with only `tower`'s weights read (the rest left on meta)."""
    if tower not in ("und", "gen"):
        raise ValueError(f"tower: expected 'und' or 'gen', got {tower!r}")
    index = WeightIndex(resolve_checkpoint(path))
    if getattr(index, "fp8", None):
        raise ValueError(f"{path}: an fp8 checkpoint cannot be split into towers yet (float weights only)")
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or default_dtype(device)
    keep = set(tower_keys(index, tower))
    model = index.build()
    state = {}
    for file, keys in index.by_file().items():
        with _open(file, device) as f:
            for key in keys:
                if key in keep:
                    state[key] = index.read(f, key, dtype, device, file=file)
    model.load_state_dict(state, strict=False, assign=True)
    if tower == "gen":  # an empty table in place of the vocabulary: model.dtype / .device read it
        model.embed_tokens = nn.Embedding(0, index.config.hidden_size, device=device, dtype=dtype)
    rebuild_buffers(model, device)
    return model.eval()


def resident_bytes(model: nn.Module) -> int:
    """Bytes of the parameters this rank really holds (meta ones excluded)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type != "meta")


# -------------------------------------------------------------------------------------------- gen rank (1)


def request_branches(model: Cosmos3Omni, layout: GenLayout,
                     prompts: list[tuple[torch.Tensor, torch.Tensor]]) -> Branches:
    """`diffusion.encode_branches` with the und work done on the und rank."""
    device = model.device
    lengths = [ids.shape[0] for ids, _ in prompts]
    dist.send(torch.tensor([len(prompts), *lengths, *[0] * (2 - len(prompts))], device=device), UND_RANK)
    dist.send(torch.cat([ids for ids, _ in prompts]).to(device, torch.int64), UND_RANK)
    dist.send(torch.cat([pos for _, pos in prompts], dim=1).to(device, torch.float32).contiguous(), UND_RANK)
    cfg = model.config
    caches = []
    for n in lengths:
        shape = (1, cfg.num_key_value_heads, n, cfg.head_dim)
        keys, values = [], []
        for _ in range(cfg.num_hidden_layers):
            for out in (keys, values):
                out.append(torch.empty(shape, dtype=model.dtype, device=device))
                dist.recv(out[-1], UND_RANK)
        caches.append(UndCache(keys, values))
    positions = torch.stack([layout.positions(cfg, n) for n in lengths])
    return Branches(UndCache.stack(caches, consume=True), positions)


def stop(device: torch.device) -> None:
    dist.send(torch.zeros(3, dtype=torch.int64, device=device), UND_RANK)


def request_upsample(device: torch.device, prompt: str, seed: int | None) -> str:
    """`prompt` upsampled by the reasoner on the und rank."""
    _send_text(prompt, device, UND_RANK, header=(UPSAMPLE, -1 if seed is None else seed))
    size = torch.empty(1, dtype=torch.int64, device=device)
    dist.recv(size, UND_RANK)
    if size.item() < 0:
        raise RuntimeError("upsample_prompt: the und rank (rank 0) failed to upsample the prompt; its log says why")
    return _recv_text(int(size.item()), device, UND_RANK)


def _send_text(text: str, device: torch.device, rank: int, header: tuple[int, ...] = ()) -> None:
    """The header (if any) with the byte count in second place, then the UTF-8 bytes (none sent when empty)."""
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
    sizes = [header[0], data.numel(), *header[1:]] if header else [data.numel()]
    dist.send(torch.tensor(sizes, dtype=torch.int64, device=device), rank)
    if data.numel():
        dist.send(data.to(device), rank)


def _recv_text(size: int, device: torch.device, rank: int) -> str:
    if size == 0:
        return ""
    data = torch.empty(size, dtype=torch.uint8, device=device)
    dist.recv(data, rank)
    return bytes(data.cpu().tolist()).decode("utf-8")


# -------------------------------------------------------------------------------------------- und rank (0)


def serve_und(model: Cosmos3Omni, checkpoint=None) -> int:
    """Answer the gen rank's prompts with their und keys and values, and its upsampling requests (with the text
    tokenizer of `checkpoint`, read on the first one), until it says stop; returns how many key/value requests."""
    device, served, reasoner = model.device, 0, None
    while True:
        header = torch.empty(3, dtype=torch.int64, device=device)
        dist.recv(header, GEN_RANK)
        count, *lengths = header.tolist()
        if count == 0:
            return served
        if count == UPSAMPLE:
            prompt = _recv_text(lengths[0], device, GEN_RANK)
            try:
                reasoner = reasoner or _reasoner(model, checkpoint)
                upsampled = upsample_with(reasoner, prompt, None if lengths[1] < 0 else lengths[1])
            except Exception:
                dist.send(torch.tensor([-1], dtype=torch.int64, device=device), GEN_RANK)
                raise
            _send_text(upsampled, device, GEN_RANK)
            continue
        lengths = lengths[:count]
        ids = torch.empty(sum(lengths), dtype=torch.int64, device=device)
        positions = torch.empty(3, sum(lengths), dtype=torch.float32, device=device)
        dist.recv(ids, GEN_RANK)
        dist.recv(positions, GEN_RANK)
        start = 0
        for n in lengths:
            with torch.inference_mode():
                cache = model.encode_und(ids[start:start + n], positions[:, start:start + n])
            for k, v in zip(cache.keys, cache.values):
                dist.send(k.contiguous(), GEN_RANK)
                dist.send(v.contiguous(), GEN_RANK)
            start += n
        served += 1


def _reasoner(model: Cosmos3Omni, checkpoint):
    from ..reasoner import Reasoner

    if checkpoint is None:
        raise ValueError("upsample_prompt: serve_und needs the checkpoint (for the text tokenizer) to upsample")
    return Reasoner.sharing(model, resolve_checkpoint(checkpoint), vision=False)
