"""Action statistics and quantile normalization: ``q01 -> -1`` and ``q99 -> +1`` per dimension. A checkpoint trained
on normalized actions carries them in ``action_stats.json`` (one entry per embodiment); the generator normalizes the
actions it is given and denormalizes the ones it predicts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write
from .embodiments import ActionError, get_embodiment
from .files import _describe, _read_json, load_actions

_MIN_RANGE = 1e-8


def _vector(value: Any, name: str, src: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ActionError(f"{src}: {name} must be a list of numbers") from None
    if v.ndim != 1 or v.size == 0:
        raise ActionError(f"{src}: {name} must be a non-empty 1D list of numbers, got shape {tuple(v.shape)}")
    if not np.isfinite(v).all():
        raise ActionError(f"{src}: {name} contains NaN or infinite values")
    return v


def _validated_stats(q01: Any, q99: Any, mean: Any, std: Any, src: str) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {}
    for name, value in (("q01", q01), ("q99", q99), ("mean", mean), ("std", std)):
        if value is None:
            if name in ("q01", "q99"):
                raise ActionError(f"{src}: {name} is required")
            out[name] = None
            continue
        v = _vector(value, name, src)
        if name != "q01" and v.size != out["q01"].size:
            raise ActionError(f"{src}: {name} has {v.size} values, q01 has {out['q01'].size}")
        out[name] = v
    lo, hi = out["q01"], out["q99"]
    if (hi < lo).any():
        j = int(np.argmax(hi < lo))
        raise ActionError(f"{src}: q99 < q01 in dimension {j} ({hi[j]!r} < {lo[j]!r})")
    if out["std"] is not None and (out["std"] < 0).any():
        raise ActionError(f"{src}: std is negative in dimension {int(np.argmax(out['std'] < 0))}")
    return out


@dataclass(frozen=True, eq=False)
class ActionStats:
    """Per-dimension action statistics: 1st and 99th percentiles (required), mean and std (optional).

    Stored as JSON ``{"q01": [...], "q99": [...], "mean": [...], "std": [...]}`` (the release ships q01/q99-only
    files, which load with ``mean = std = None``; a ``{"global": {...}}`` wrapper is accepted too).
    """

    q01: np.ndarray
    q99: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, value in _validated_stats(self.q01, self.q99, self.mean, self.std, "action stats").items():
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.q01.size)

    def to_dict(self) -> dict[str, list[float]]:
        out = {"q01": self.q01.tolist(), "q99": self.q99.tolist()}
        if self.mean is not None:
            out["mean"] = self.mean.tolist()
        if self.std is not None:
            out["std"] = self.std.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], src: str = "action stats") -> ActionStats:
        if not isinstance(data, Mapping):
            raise ActionError(f"{src}: expected a JSON object with q01 and q99, got {_describe(data)}")
        if "q01" not in data and isinstance(data.get("global"), Mapping):
            data = data["global"]
        missing = [k for k in ("q01", "q99") if data.get(k) is None]
        if missing:
            raise ActionError(f"{src}: missing {', '.join(missing)}")
        return cls(**_validated_stats(data["q01"], data["q99"], data.get("mean"), data.get("std"), src))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActionStats:
        path = Path(path)
        if not path.is_file():
            raise ActionError(f"{path}: statistics file not found")
        return cls.from_dict(_read_json(path), str(path))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path


def compute_stats(arrays: np.ndarray | Iterable[Any]) -> ActionStats:
    """Statistics over all rows of one ``[T, D]`` array or several (stacked along T).

    q01 / q99 are numpy's default (linear-interpolation) 1st and 99th percentiles; std is the population std.
    """
    if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
        parts = [arrays]
    else:
        parts = list(arrays)
    if not parts:
        raise ActionError("compute_stats: no arrays given")
    mats = []
    for k, part in enumerate(parts):
        m = load_actions(part, None).astype(np.float64) if not isinstance(part, np.ndarray) else part
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] == 0:
            raise ActionError(f"compute_stats: array {k} must be a non-empty [T, D] array, got {tuple(m.shape)}")
        if mats and m.shape[1] != mats[0].shape[1]:
            raise ActionError(f"compute_stats: array {k} has {m.shape[1]} columns, array 0 has {mats[0].shape[1]}")
        mats.append(m)
    a = np.concatenate(mats, axis=0)
    if not np.isfinite(a).all():
        raise ActionError("compute_stats: the arrays contain NaN or infinite values")
    q01, q99 = np.quantile(a, [0.01, 0.99], axis=0)
    return ActionStats(q01=q01, q99=q99, mean=a.mean(axis=0), std=a.std(axis=0))


def _stats_inputs(a: Any, stats: ActionStats) -> tuple[np.ndarray, np.dtype]:
    x = np.asarray(a)
    if x.ndim < 1 or x.shape[-1] != stats.dim:
        raise ActionError(f"actions have {x.shape[-1] if x.ndim else 0} channels, the statistics have {stats.dim}")
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    return x.astype(np.float64), np.dtype(out_dtype)


def normalize(a: Any, stats: ActionStats) -> np.ndarray:
    """Quantile normalization per dimension: ``2 * (a - q01) / (q99 - q01) - 1`` (q01 -> -1, q99 -> +1).

    Values outside the quantiles map outside [-1, 1] (no clipping). Dimensions whose range ``q99 - q01`` is below
    1e-8 carry no information and would divide by zero; they are set to 0 instead.
    """
    x, dtype = _stats_inputs(a, stats)
    span = stats.q99 - stats.q01
    flat = span < _MIN_RANGE
    y = 2.0 * (x - stats.q01) / np.where(flat, 1.0, span) - 1.0
    y = np.where(flat, 0.0, y)
    return y.astype(dtype)


def denormalize(a: Any, stats: ActionStats) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(a + 1) / 2 * (q99 - q01) + q01``; constant dimensions return their value."""
    x, dtype = _stats_inputs(a, stats)
    span = stats.q99 - stats.q01
    flat = span < _MIN_RANGE
    y = (x + 1.0) * 0.5 * span + stats.q01
    y = np.where(flat, 0.5 * (stats.q01 + stats.q99), y)
    return y.astype(dtype)


# The statistics a checkpoint (or a folder of precomputed latents) was trained with, one entry per embodiment.
ACTION_STATS_FILE = "action_stats.json"


def load_stats_file(path: str | os.PathLike) -> dict[str, ActionStats]:
    """``{embodiment name: ActionStats}`` from an action_stats.json; a missing file means no normalization ({})."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise ActionError(f"{path}: expected a JSON object {{embodiment name: {{q01, q99, ...}}}}, "
                          f"got {_describe(data)}")
    out = {}
    for name, entry in data.items():
        try:
            emb = get_embodiment(name)
        except ValueError as e:
            raise ActionError(f"{path}: {e}") from None
        stats = ActionStats.from_dict(entry, f"{path}: {name}")
        if stats.dim != emb.raw_dim:
            raise ActionError(f"{path}: {name} has {stats.dim} statistics per step, the embodiment has "
                              f"{emb.raw_dim} action dimensions")
        out[emb.name] = stats
    return out


def save_stats_file(path: str | os.PathLike, stats: Mapping[str, ActionStats]) -> Path:
    path = Path(path)
    text = json.dumps({name: s.to_dict() for name, s in sorted(stats.items())}, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path
