"""Published run records: a study's run JSONs as one compressed archive, and back.

A study's outputs (tables, figures, verdicts) are functions of its run JSONs. Packing the
JSONs of ``results/<study>/runs/`` into ``docs/<study>/runs.tar.xz`` lets a reader rebuild
every output without training (restore, then ``snakemake``: the plan has no ``train``
job), spot-check a single run (``byzstress verify``), and continue a study that is too
long for one sitting: restore it, and only the runs still missing train.

The archive is deterministic — members sorted by path, mtimes, owners and modes fixed —
so packing the same records twice gives the same bytes, and git stores a changed study as
a changed file. It holds ``MANIFEST.json`` first: each record's path below ``runs/`` and
the SHA-256 of its bytes, checked on restore. Checkpoints (``*.ckpt``) and the temporary
files of interrupted writes are never packed.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .record import RunRecord
from .storage import atomic_write

__all__ = ["MANIFEST", "ArchiveError", "members", "pack", "read_records", "restore"]

MANIFEST = "MANIFEST.json"


class ArchiveError(ValueError):
    """A bad archive or runs folder; the message names the file."""


def _records(runs: Path) -> list[Path]:
    """The finished run JSONs below ``runs`` (no checkpoints, no temporary files)."""
    if not runs.is_dir():
        raise ArchiveError(f"runs folder {str(runs)!r} does not exist")
    return sorted(
        p
        for p in runs.rglob("*.json")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(runs).parts)
    )


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(
    runs: str | Path, out: str | Path, only: Iterable[str | Path] | None = None
) -> dict[str, Any]:
    """Pack every run JSON below ``runs`` into the ``.tar.xz`` archive ``out`` (written
    atomically); returns the manifest. Each JSON is checked to parse.

    ``only`` restricts the archive to those record paths (the ones that exist): studies
    that share a runs folder (``runs_of``) each publish their own records."""
    runs, out = Path(runs), Path(out)
    files = _records(runs)
    if only is not None:
        wanted = {Path(p).resolve() for p in only}
        outside = sorted(str(p) for p in wanted if not p.is_relative_to(runs.resolve()))
        if outside:
            shown = ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
            raise ArchiveError(
                f"{len(outside)} of the {len(wanted)} records asked for are not below "
                f"{str(runs)!r} ({shown}); a study's records are under its runs folder "
                "(`byzstress runs STUDY --runs-dir`, relative to the repository root)"
            )
        files = [p for p in files if p.resolve() in wanted]
    if not files:
        which = "" if only is None else f" among the {len(wanted)} records asked for"
        raise ArchiveError(f"no run JSONs below {str(runs)!r}{which}")
    blobs: dict[str, bytes] = {}
    for p in files:
        data = p.read_bytes()
        try:
            json.loads(data)
        except ValueError as err:
            raise ArchiveError(f"{str(p)!r} is not valid JSON: {err}") from err
        blobs[p.relative_to(runs).as_posix()] = data
    manifest = {
        "schema": 1,
        "records": {k: hashlib.sha256(v).hexdigest() for k, v in blobs.items()},
    }
    head = json.dumps(manifest, indent=1, sort_keys=True).encode()

    def write(fh: Any) -> None:
        # xz preset 9: run JSONs are repetitive text (about 15x smaller)
        with (
            lzma.open(fh, "wb", preset=9) as xz,
            tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(_info(MANIFEST, len(head)), io.BytesIO(head))
            for name, data in blobs.items():
                tar.addfile(_info(f"runs/{name}", len(data)), io.BytesIO(data))

    atomic_write(out, write)
    return manifest


def _safe_name(name: str, archive: Path) -> str:
    """A member's path below ``runs/``; refuses absolute paths and ``..``."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != ("runs",):
        raise ArchiveError(f"{str(archive)!r}: unsafe member {name!r}")
    return PurePosixPath(*path.parts[1:]).as_posix()


def members(archive: str | Path) -> Iterator[tuple[str, bytes]]:
    """``(path below runs/, bytes)`` of every record, each checked against the manifest."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, mode="r:xz") as tar:
            manifest: dict[str, Any] | None = None
            seen: set[str] = set()
            for info in tar:
                if info.name == MANIFEST:
                    manifest = json.loads(tar.extractfile(info).read())  # type: ignore[union-attr]
                    continue
                if not info.isfile():
                    raise ArchiveError(f"{str(archive)!r}: {info.name!r} is not a file")
                if manifest is None:
                    raise ArchiveError(f"{str(archive)!r}: {MANIFEST} must come first")
                name = _safe_name(info.name, archive)
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                want = manifest["records"].get(name)
                if want != hashlib.sha256(data).hexdigest():
                    raise ArchiveError(
                        f"{str(archive)!r}: {name} does not match its manifest checksum"
                    )
                seen.add(name)
                yield name, data
            if manifest is None:
                raise ArchiveError(f"{str(archive)!r}: no {MANIFEST}")
            missing = sorted(set(manifest["records"]) - seen)
            if missing:
                raise ArchiveError(f"{str(archive)!r}: records missing: {', '.join(missing)}")
    except (tarfile.TarError, lzma.LZMAError, EOFError) as err:
        raise ArchiveError(f"{str(archive)!r} is not a readable .tar.xz: {err}") from err
    except FileNotFoundError as err:
        raise ArchiveError(f"archive {str(archive)!r} does not exist") from err


def read_records(archive: str | Path) -> dict[str, RunRecord]:
    """Every record of ``archive`` read (:meth:`.record.RunRecord.from_dict`), by its path
    below ``runs/``."""
    return {name: RunRecord.from_dict(json.loads(data)) for name, data in members(archive)}


def restore(archive: str | Path, runs: str | Path, overwrite: bool = False) -> dict[str, int]:
    """Write the archive's records into ``runs`` (atomically, one by one). A record that
    is already there with the same bytes is left alone (its mtime too, so Snakemake sees
    nothing new); one with other bytes is an error unless ``overwrite``. Returns the counts
    ``{"restored": ..., "unchanged": ..., "replaced": ...}``. An archive that fails its
    checks (a tampered or missing record, a conflict) writes nothing."""
    runs = Path(runs)
    counts = {"restored": 0, "unchanged": 0, "replaced": 0}
    # read and check the whole archive, and every conflict, first: a refused restore
    # writes nothing
    todo = []
    for name, data in list(members(archive)):
        target = runs / name
        if target.exists():
            if target.read_bytes() == data:
                counts["unchanged"] += 1
                continue
            if not overwrite:
                raise ArchiveError(
                    f"{str(target)!r} exists with other content than the archive's; "
                    "pass --overwrite to replace it"
                )
            counts["replaced"] += 1
        else:
            counts["restored"] += 1
        todo.append((target, data))
    for target, data in todo:
        atomic_write(target, lambda fh, d=data: fh.write(d))
    return counts
