"""Atomic writes: a result or checkpoint file is either absent or complete.

Write to a temporary file in the same directory, flush and fsync it, rename it over the
target (atomic on POSIX), then fsync the directory so the rename survives a crash.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "WriteError",
    "atomic_write",
    "check_writable",
    "load_checkpoint",
    "remove_stale_temps",
    "save_checkpoint",
    "to_jsonable",
    "write_json",
]


class WriteError(OSError):
    """A result or checkpoint could not be written (read-only folder, full disk, ...); the
    message names the file. Nothing partial is left behind."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back, so a
    thread creating a file in that instant would get 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fileobj)`` on a temporary file and atomically move it to ``path``.

    Raises :class:`WriteError` (naming ``path``) when the folder cannot be created or
    written; the temporary file is removed and ``path`` keeps its previous content."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {str(path)!r}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask)
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(err.errno, f"cannot write {str(path)!r}: {err.strerror or err}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def check_writable(path: str | Path) -> None:
    """Fail early, before any training, when ``path``'s folder cannot take a new file:
    create and delete a temporary file there (raises :class:`WriteError`)."""
    atomic_write(Path(path).with_name(Path(path).name + ".probe"), lambda fh: None)
    Path(path).with_name(Path(path).name + ".probe").unlink(missing_ok=True)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files an :func:`atomic_write` to ``path`` left behind when its
    process was killed mid-write (SIGKILL cannot be caught); returns what was deleted.

    Call it only from the process that owns ``path`` (a run owns its result and checkpoint).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # mkstemp's names: prefix, 8 random characters, suffix (not another target's temps)
    name = re.compile(re.escape(_temp_prefix(path)) + r"[a-z0-9_]{8}\.tmp")
    stale = [p for p in path.parent.iterdir() if name.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def to_jsonable(obj: Any) -> Any:
    """Non-finite floats become ``None`` (JSON has no NaN); tuples become lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint (tensors, lists, numbers, strings only)."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling) on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)
