"""Offload (issue #18, rung 3): weights that live in host memory and visit the device only while they are used.

    offload="layers"      both towers stream layer by layer. Before layer i's und (or gen) half runs, its weights
                          are on the device and layer i+1's half is on its way; after it runs they leave. On CUDA the
                          host copies are pinned and the next layer is copied on a side stream, so the copy overlaps
                          the current layer's compute. Embeddings, final norms, lm_head and the gen heads stay on the
                          device; the VAE and the sound tokenizer visit it only for their encode / decode calls.
    offload="components"  whole components take turns on the device: the und tower (the und halves of the layers,
                          final norm, lm_head), the gen tower (the gen halves, gen norm and heads), the VAE, the sound
                          tokenizer, the vision tower. One is resident at a time (two in the joint training-style
                          `forward`); the embeddings stay (they say where the model is: `model.device`).

A weight that is away holds an `Away` placeholder (shape and dtype, no data), so a computation that reached a weight
not brought in fails loudly, naming it; the full copy lives in `Group.home` (host memory). Parameters are
replaced by new Parameter objects as they come and go: offload is for inference (no optimizer holds them).

Numbers: the weights are the same tensors copied, and the computation the same, so outputs are bit-identical to a
run without offload (tests/test_offload.py). On the CPU the "device" is the host itself: the copies are still made
(one layer at a time), which is what the tests count; the speed of a real GPU's transfers is not measured here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import nn

MODES = ("none", "components", "layers")
# The gen half of a MoT layer (mot.py's names); everything else in a layer belongs to the und half.
GEN_PARTS = frozenset({"add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "norm_added_q", "norm_added_k",
                       "mlp_moe_gen", "input_layernorm_moe_gen", "post_attention_layernorm_moe_gen"})
# Gen-tower modules of Cosmos3Omni outside the layers.
GEN_HEADS = ("norm_moe_gen", "proj_in", "proj_out", "time_embedder", "action_proj_in", "action_proj_out",
             "audio_proj_in", "audio_proj_out")
GEN_PARAMS = ("action_modality_embed", "audio_modality_embed")

Slot = tuple[nn.Module, str, bool]  # (module, attribute, is a parameter)


@dataclass
class Stats:
    """What moved and what was on the device at most (groups, bytes of the offloaded weights)."""

    transfers: int = 0
    bytes_moved: int = 0
    resident_groups: int = 0
    peak_groups: int = 0
    resident_bytes: int = 0
    peak_bytes: int = 0
    history: list[str] = field(default_factory=list)  # group names in the order they were brought in


class Away(torch.Tensor):
    """What an offloaded weight holds while it is not on the device: its shape and dtype, no data; any computation
    that reaches it raises, naming its group (a plain meta tensor is not enough: CPU kernels read it as garbage)."""

    @staticmethod
    def __new__(cls, like: torch.Tensor, group: str):
        t = torch.Tensor._make_wrapper_subclass(cls, like.shape, dtype=like.dtype, device="meta")
        t.group = group
        return t

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        group = next((a.group for a in args if isinstance(a, Away)), "?")
        raise RuntimeError(f"offload: {func} reached a weight of group {group!r} that is not on the device")

    def __repr__(self) -> str:
        return f"Away({list(self.shape)}, {self.dtype}, group={self.group!r})"


class Group:
    """Tensors that come and go together: host copies (pinned on CUDA), device copies while fetched."""

    def __init__(self, name: str, slots: list[Slot], device: torch.device):
        self.name, self.slots, self.device = name, slots, device
        self.home = []
        for module, attr, is_param in slots:
            t = (module._parameters if is_param else module._buffers)[attr].detach().cpu()
            self.home.append(t.pin_memory() if device.type == "cuda" else t)
        self.nbytes = sum(h.numel() * h.element_size() for h in self.home)
        self.copies: list[torch.Tensor] | None = None  # fetched (in flight or resident)
        self.ready: torch.cuda.Event | None = None
        self.resident = False
        self._place([Away(h, self.name) for h in self.home])

    def _place(self, tensors: list[torch.Tensor]) -> None:
        for (module, attr, is_param), t in zip(self.slots, tensors):
            if is_param:
                module._parameters[attr] = t if isinstance(t, Away) else nn.Parameter(t, requires_grad=False)
            else:
                module._buffers[attr] = t

    def fetch(self, stream) -> None:
        """Start copying to the device (on `stream` when given: a CUDA side stream)."""
        if self.copies is not None:
            return
        if stream is None:
            self.copies = [h.to(self.device, copy=True) for h in self.home]
            return
        with torch.cuda.stream(stream):
            self.copies = [h.to(self.device, non_blocking=True) for h in self.home]
            self.ready = torch.cuda.Event()
            self.ready.record(stream)

    def attach(self) -> None:
        """Make the fetched copies the module's tensors (the compute stream waits for their copy first)."""
        if self.ready is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(self.ready)
            for t in self.copies:  # freed later only once the compute stream is done with them
                t.record_stream(compute)
            self.ready = None
        self._place(self.copies)
        self.resident = True

    def release(self) -> None:
        self.copies, self.ready = None, None
        self.resident = False
        self._place([Away(h, self.name) for h in self.home])


class Offloader:
    """Groups of weights, and which are on the device. `enter(group)` brings one in (and, with `then`, starts
    fetching the next); `leave(group)` sends it away; `swap_to(names)` keeps only those resident."""

    def __init__(self, device: torch.device):
        self.device = device
        self.groups: dict[str, Group] = {}
        self.stats = Stats()
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._ahead: Group | None = None  # fetched ahead of its use

    def add(self, name: str, slots: list[Slot]) -> Group:
        group = self.groups[name] = Group(name, slots, self.device)
        return group

    def _fetch(self, group: Group, stream) -> None:
        if group.copies is None:
            self.stats.transfers += 1
            self.stats.bytes_moved += group.nbytes
            group.fetch(stream)
            self._count(group.nbytes)

    def _count(self, delta: int) -> None:
        s = self.stats
        s.resident_groups += 1 if delta > 0 else -1
        s.resident_bytes += delta
        s.peak_groups, s.peak_bytes = max(s.peak_groups, s.resident_groups), max(s.peak_bytes, s.resident_bytes)

    def enter(self, group: Group, then: Group | None = None) -> None:
        if self._ahead is not None and self._ahead is not group:  # fetched for a call that did not come
            self.leave(self._ahead)
        self._ahead = None
        self._fetch(group, None)
        group.attach()
        self.stats.history.append(group.name)
        if then is not None and then is not group:
            self._fetch(then, self.stream)
            self._ahead = then

    def leave(self, group: Group) -> None:
        if group.copies is not None:
            group.release()
            self._count(-group.nbytes)
        if self._ahead is group:
            self._ahead = None

    def swap_to(self, names: tuple[str, ...]) -> None:
        if all(self.groups[name].resident for name in names):  # also a call inside one that brought them (forward)
            return
        for name, group in self.groups.items():
            if name not in names:
                self.leave(group)
        for name in names:
            if not self.groups[name].resident:
                self.enter(self.groups[name])


def _slots(module: nn.Module, skip=lambda name: False) -> list[Slot]:
    """Every parameter and buffer of `module` (a name for which `skip(dotted module name)` holds is left out)."""
    out = []
    for name, m in module.named_modules():
        if skip(name):
            continue
        out += [(m, a, True) for a, t in m._parameters.items() if t is not None]
        out += [(m, a, False) for a, t in m._buffers.items() if t is not None]
    return out


def _move_rest(model: nn.Module, device: torch.device) -> None:
    """Move what is not offloaded (every tensor but the `Away` placeholders) to `device`."""
    for m in model.modules():
        for a, t in m._parameters.items():
            if t is not None and not isinstance(t, Away) and t.device != device:
                m._parameters[a] = nn.Parameter(t.detach().to(device), requires_grad=t.requires_grad)
        for a, t in m._buffers.items():
            if t is not None and not isinstance(t, Away) and t.device != device:
                m._buffers[a] = t.to(device)


def _is_gen(name: str) -> bool:
    return bool(GEN_PARTS & set(name.split(".")))


def _wrap(obj, method: str, before, after=None) -> None:
    """Replace obj.method (on the instance) by one that runs `before()` first and `after()` last."""
    original = getattr(obj, method)

    @functools.wraps(original)
    def call(*args, **kwargs):
        before()
        try:
            return original(*args, **kwargs)
        finally:
            if after is not None:
                after()

    setattr(obj, method, call)


def _check(model: nn.Module, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"offload: expected one of {MODES}, got {mode!r}")
    from .quant import Int8Linear

    if mode != "none" and any(isinstance(m, Int8Linear) for m in model.modules()):
        raise ValueError("offload: int8 weights (fbgemm, a CPU kernel) cannot be offloaded; use --weights float or "
                         "fp8 with --offload")


def _gen_head_slots(model: nn.Module) -> list[Slot]:
    slots = []
    for name in GEN_HEADS:
        if getattr(model, name, None) is not None:
            slots += _slots(getattr(model, name))
    return slots + [(model, name, True) for name in GEN_PARAMS if getattr(model, name, None) is not None]


def offload_model(model: nn.Module, device: str | torch.device, mode: str,
                  extras: dict[str, tuple[object, nn.Module, tuple[str, ...]]] | None = None) -> Offloader | None:
    """Offload a Cosmos3Omni (on the host, as loaded) for running on `device`, in place. `extras`: other components
    {name: (object, its nn.Module, the object's methods that use it)}: the VAE, the sound tokenizer, the vision
    tower; their modules may be anywhere. What is not offloaded moves to `device`. Returns the Offloader (None for
    "none": the model is just moved)."""
    _check(model, mode)
    device = torch.device(device)
    extras = extras or {}
    if mode == "none":
        model.to(device)
        for _, module, _ in extras.values():
            module.to(device)
        return None
    off = Offloader(device)
    with_gen = getattr(model, "with_gen", True)
    if mode == "layers":
        n = len(model.layers)
        for i, layer in enumerate(model.layers):
            off.add(f"und.{i}", _slots(layer, _is_gen))
            if with_gen:
                off.add(f"gen.{i}", _slots(layer, lambda name: name != "" and not _is_gen(name)))
        for i, layer in enumerate(model.layers):
            for half in ("und", "gen") if with_gen else ("und",):
                group, after = off.groups[f"{half}.{i}"], off.groups[f"{half}.{(i + 1) % n}"]
                _wrap(layer, half, functools.partial(off.enter, group, after), functools.partial(off.leave, group))
    else:
        und_slots = [s for layer in model.layers for s in _slots(layer, _is_gen)]
        und_slots += _slots(model.norm) + _slots(model.lm_head)
        off.add("und", und_slots)
        if with_gen:
            gen_slots = [s for layer in model.layers for s in _slots(layer, lambda n: n != "" and not _is_gen(n))]
            off.add("gen", gen_slots + _gen_head_slots(model))
        for name, towers in (("encode_und", ("und",)), ("und_forward", ("und",)), ("logits", ("und",)),
                             ("embed_gen", ("gen",)), ("run_gen", ("gen",)), ("decode_gen", ("gen",)),
                             ("forward", ("und", "gen"))):
            if all(t in off.groups for t in towers):
                _wrap(model, name, functools.partial(off.swap_to, towers))
    _move_rest(model, device)
    for name, (obj, module, methods) in extras.items():
        group = off.add(name, _slots(module))
        for method in methods:
            if mode == "layers":  # the towers stream on their own: this one visits for the call
                _wrap(obj, method, functools.partial(off.enter, group), functools.partial(off.leave, group))
            else:
                _wrap(obj, method, functools.partial(off.swap_to, (name,)))
    return off


def offload_generator(gen, device: str | torch.device, mode: str) -> Offloader | None:
    """A Generator's transformer (loaded on the host) and its VAE and sound tokenizer, offloaded for `device`."""
    extras = {"vae": (gen.vae, gen.vae.vae, ("encode", "decode"))}
    if gen.sound is not None:
        extras["sound"] = (gen.sound, gen.sound.tokenizer, ("encode", "decode"))
    return offload_model(gen.model, device, mode, extras)


def offload_reasoner(reasoner, device: str | torch.device, mode: str) -> Offloader | None:
    """A Reasoner's und tower (loaded on the host) and its vision tower, offloaded for `device`."""
    extras = {} if reasoner.vision is None else {"vision": (reasoner.vision, reasoner.vision, ("forward",))}
    return offload_model(reasoner.model, device, mode, extras)
