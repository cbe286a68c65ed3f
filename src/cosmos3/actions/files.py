"""Action files: bare JSON arrays ``[[a_0, ..., a_{D-1}], ...]`` (shape ``[T, D]``) or ``.npy`` arrays, read with
every problem named (source and exact place) and written so that they read back to the same float32 values.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write
from .embodiments import ActionError, Embodiment, get_embodiment

def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _describe(x: Any) -> str:
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, str):
        return f"a string ({x!r})" if len(x) <= 20 else "a string"
    if x is None:
        return "null"
    if _is_number(x):
        return f"a number ({x!r})"
    if isinstance(x, (list, tuple)):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    return f"a {type(x).__name__}"


def _rows_from_nested(data: Any, src: str) -> np.ndarray:
    """Validate a nested list structure as a 2D array of numbers and return it as float64."""
    if not isinstance(data, (list, tuple)):
        raise ActionError(f"{src}: expected a 2D array [T, D] of numbers, got {_describe(data)}")
    if len(data) == 0:
        raise ActionError(f"{src}: empty action array (no rows)")
    width = None
    for i, row in enumerate(data):
        if not isinstance(row, (list, tuple)):
            raise ActionError(
                f"{src}: expected a 2D array [T, D] of numbers, but row {i} is {_describe(row)}, not a list"
            )
        if len(row) == 0:
            raise ActionError(f"{src}: row {i} is empty")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ActionError(f"{src}: ragged rows: row {i} has {len(row)} values, row 0 has {width}")
        for j, v in enumerate(row):
            if not _is_number(v):
                if isinstance(v, (list, tuple)):
                    raise ActionError(
                        f"{src}: expected a 2D array [T, D] of numbers, but row {i} column {j} is a list "
                        "(nested deeper than 2D)"
                    )
                raise ActionError(f"{src}: row {i} column {j} is {_describe(v)}, expected a number")
    try:
        return np.array(data, dtype=np.float64)
    except OverflowError as exc:  # integers too large for a float
        raise ActionError(f"{src}: a value is too large to be a number of the action array ({exc})") from None


def _check_array(arr: np.ndarray, src: str, embodiment: Embodiment | None) -> np.ndarray:
    """Shape, dtype, finiteness and width checks; returns a float32 copy."""
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ActionError(f"{src}: expected an array of numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ActionError(f"{src}: expected a 2D array [T, D], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ActionError(f"{src}: empty action array (no rows)")
    if arr.shape[1] == 0:
        raise ActionError(f"{src}: rows are empty (shape {tuple(arr.shape)})")
    a64 = arr.astype(np.float64)
    bad = ~np.isfinite(a64)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        kind = "NaN" if math.isnan(a64[i, j]) else "infinite"
        raise ActionError(f"{src}: value at row {i} column {j} is {kind} ({a64[i, j]!r})")
    with np.errstate(over="ignore"):
        out = a64.astype(np.float32)
    over = ~np.isfinite(out)
    if over.any():
        i, j = (int(k) for k in np.argwhere(over)[0])
        raise ActionError(f"{src}: value at row {i} column {j} ({a64[i, j]!r}) is outside the float32 range")
    if embodiment is not None and arr.shape[1] != embodiment.raw_dim:
        raise ActionError(
            f"{src}: width mismatch for embodiment {embodiment.name!r}: expected {embodiment.raw_dim} values "
            f"per row, got {arr.shape[1]}"
        )
    return out


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ActionError(f"{path}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ActionError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except RecursionError:
        raise ActionError(f"{path}: not valid JSON: nested too deeply") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ActionError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise ActionError(f"{path}: expected one array in the .npy file, got {type(arr).__name__}")
    return arr


def load_actions(source: Any, embodiment: str | int | Embodiment | None) -> np.ndarray:
    """Read actions as a float32 array ``[T, D]``.

    ``source`` is a path to a bare JSON array or an ``.npy`` file, or the actions themselves (nested lists, a
    numpy array or a torch tensor). With an embodiment, ``D`` must equal its ``raw_dim``; ``None`` skips that
    check. Raises :class:`ActionError` naming the source and the problem (missing file, invalid JSON with its
    position, not a 2D array of numbers, ragged row, NaN / infinite value with its row and column, wrong width).
    """
    emb = get_embodiment(embodiment) if embodiment is not None else None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        src = str(path)
        if not path.exists():
            raise ActionError(f"{src}: action file not found")
        if path.is_dir():
            raise ActionError(f"{src}: is a directory, not an action file")
        if path.suffix.lower() == ".npy":
            return _check_array(_read_npy(path), src, emb)
        return _check_array(_rows_from_nested(_read_json(path), src), src, emb)
    src = "actions"
    if isinstance(source, np.ndarray):
        return _check_array(source, src, emb)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(source, torch.Tensor):
        if source.is_complex() or source.dtype == torch.bool:
            raise ActionError(f"{src}: expected a tensor of real numbers, got dtype {source.dtype}")
        return _check_array(source.detach().to("cpu", torch.float64).numpy(), src, emb)
    if isinstance(source, (list, tuple)):
        return _check_array(_rows_from_nested(source, src), src, emb)
    raise ActionError(f"{src}: expected a path, nested lists, an ndarray or a tensor, got {_describe(source)}")


def _format_row(row: np.ndarray) -> str:
    # str() of a numpy float32 is the shortest text that reads back to the same float32; repr() of a Python float
    # does the same for float64. Either way the file round-trips exactly.
    if row.dtype == np.float32:
        return "[" + ", ".join(str(v) for v in row) + "]"
    return "[" + ", ".join(repr(float(v)) for v in row) + "]"


def save_actions(path: str | os.PathLike, actions: Any) -> Path:
    """Write ``[T, D]`` actions as a bare JSON array (``.npy`` when the name ends so), atomically.

    float32 input is written with the shortest decimal text that reads back to the same float32, wider input with
    full float64 precision, so :func:`load_actions` returns exactly the saved float32 values.
    """
    path = Path(path)
    arr = actions
    try:
        import torch

        if isinstance(arr, torch.Tensor):
            arr = arr.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(arr, (list, tuple)):
        arr = _rows_from_nested(arr, "actions")
    arr = np.asarray(arr)
    _check_array(arr, "actions", None)  # same rules as loading: 2D, numbers, finite, non-empty
    if arr.dtype.kind in "iu" or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if path.suffix.lower() == ".npy":
        atomic_write(path, lambda f: np.save(f, arr.astype(np.float32), allow_pickle=False))
        return path
    text = "[\n" + ",\n".join("  " + _format_row(r) for r in arr) + "\n]\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path
