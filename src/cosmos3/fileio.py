"""Writing files so that a reader never sees half of one: every file this package writes (weights, configs, action
files, media, indexes) goes to a temporary file beside its target and replaces it with one `os.replace`. A crash or
an error midway leaves the previous file, or none, never a torn one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (safetensors, PyAV); on success it
    replaces `path`, on any error it is removed. The temporary name keeps the target's extension last, for writers
    that pick the format from it, and lives in the same folder so that the rename stays on one file system."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}")
    # O_EXCL with mode 0o666 leaves the permissions to the umask, as a plain open() would (mkstemp forces 0600).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], object]) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function that writes into a binary file object) to `path`
    atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)
