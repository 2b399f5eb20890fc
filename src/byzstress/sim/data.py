"""Datasets as device-resident tensors, and augmentation on tensors.

Images are kept as ``uint8`` ``[N, C, H, W]`` on the run's device (60k Fashion-MNIST images
take 47 MB) and normalised per batch, so sampling a step's batches is one gather.

Sources:

* Fashion-MNIST through ``torchvision.datasets.FashionMNIST``. When the Debian package
  ``dataset-fashion-mnist`` is installed its IDX files are decompressed into
  ``<root>/FashionMNIST/raw/`` first (their gzip bytes differ from upstream, so torchvision's
  own downloader would reject them on md5; the decompressed IDX files are the same data).
* CIFAR-10 through ``torchvision.datasets.CIFAR10`` (``cifar-10-batches-py`` under the root).

Each split read through torchvision is also written to a tensor cache,
``<root>/byzstress-cache/<name>-<split>.pt`` (uint8 images, int64 labels), keyed by the name,
size and modification time of the source files. Later loads read that file alone: a
training job then never imports torchvision nor decodes the source format (about 1 s of a
short run's start-up; CIFAR-10's md5 checks besides). A stale, foreign or unreadable cache
is ignored and rewritten; a data root that cannot be written to simply gets no cache.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CACHE_DIR",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "SOURCE_FILES",
    "DataNotFoundError",
    "TensorData",
    "augment_crop_flip",
    "default_root",
    "load",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says how to get it."""


@dataclass
class TensorData:
    """One split as tensors: ``x`` uint8 ``[N, C, H, W]``, ``y`` int64 ``[N]``."""

    x: Tensor
    y: Tensor
    mean: Tensor  # [C, 1, 1], float
    std: Tensor
    num_classes: int
    # tensors computed once from this split and shared by its users (the evaluation's
    # normalised channels-last images); dropped by ``to``
    derived: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return self.y.shape[0]

    def normalize(self, xb: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """uint8 images (any leading shape) -> normalised ``dtype`` (float32 by default)."""
        return (xb.to(dtype).div_(255.0) - self.mean.to(dtype)) / self.std.to(dtype)

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(
            self.x.to(device),
            self.y.to(device),
            self.mean.to(device),
            self.std.to(device),
            self.num_classes,
        )


def default_root() -> Path:
    """``$BYZSTRESS_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("BYZSTRESS_DATA", "data"))


def _stage_debian_fmnist(root: Path) -> None:
    """Decompress the Debian package's IDX files into torchvision's raw folder (idempotent)."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in FMNIST_FILES):
        return
    src_dir = Path(os.environ.get("BYZSTRESS_FMNIST_DIR", DEBIAN_FASHION_MNIST))
    if not all((src_dir / f"{name}.gz").exists() for name in FMNIST_FILES):
        return
    raw.mkdir(parents=True, exist_ok=True)
    for name in FMNIST_FILES:
        tmp = raw / f".{name}.tmp{os.getpid()}"
        with gzip.open(src_dir / f"{name}.gz", "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, raw / name)  # atomic: concurrent jobs never see half a file


def _fmnist(root: Path, train: bool, download: bool) -> TensorData:
    from torchvision.datasets import FashionMNIST

    _stage_debian_fmnist(root)
    try:
        ds = FashionMNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise DataNotFoundError(
            f"Fashion-MNIST not found under data root {str(root)!r}. Install it with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or pass --download to "
            "fetch it with torchvision."
        ) from err
    x = ds.data.unsqueeze(1).contiguous()
    mean = torch.tensor([0.2860]).view(1, 1, 1)
    std = torch.tensor([0.3530]).view(1, 1, 1)
    return TensorData(x, ds.targets.long(), mean, std, 10)


def _cifar10(root: Path, train: bool, download: bool) -> TensorData:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:
        raise DataNotFoundError(
            f"CIFAR-10 not found under data root {str(root)!r} (expected "
            f"{str(root / 'cifar-10-batches-py')!r}). Fetch it once with "
            f"'byzstress download cifar10 --data-root {root}' on a machine with internet "
            "access, or copy torchvision's cifar-10-batches-py folder there."
        ) from err
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    return TensorData(x, torch.tensor(ds.targets, dtype=torch.long), mean, std, 10)


DATASETS: dict[str, Callable[[Path, bool, bool], TensorData]] = {
    "fmnist": _fmnist,
    "cifar10": _cifar10,
}


def _fmnist_files(root: Path, train: bool) -> list[Path]:
    _stage_debian_fmnist(root)
    prefix = "train" if train else "t10k"
    raw = root / "FashionMNIST" / "raw"
    return [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]


def _cifar10_files(root: Path, train: bool) -> list[Path]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return [root / "cifar-10-batches-py" / name for name in names]


# The files a split is read from (staged first where needed): the tensor cache's key. A
# dataset without an entry here is always read through its DATASETS loader.
SOURCE_FILES: dict[str, Callable[[Path, bool], list[Path]]] = {
    "fmnist": _fmnist_files,
    "cifar10": _cifar10_files,
}
CACHE_DIR = "byzstress-cache"
_CACHE_FORMAT = 1


def _fingerprint(files: list[Path]) -> list[list[Any]] | None:
    """``[name, size, mtime_ns]`` per source file, or ``None`` when one is missing."""
    try:
        return [[f.name, (st := f.stat()).st_size, st.st_mtime_ns] for f in files]
    except OSError:
        return None


def _read_cache(path: Path, key: dict[str, Any]) -> TensorData | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent, truncated or foreign: rebuilt from the sources
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return TensorData(blob["x"], blob["y"], blob["mean"], blob["std"], int(blob["num_classes"]))


def _write_cache(path: Path, key: dict[str, Any], split: TensorData) -> None:
    """Atomically (a temporary file, then a rename), so concurrent jobs never read half a
    file; a data root that cannot be written to gets no cache."""
    blob = {
        "key": key,
        "x": split.x,
        "y": split.y,
        "mean": split.mean,
        "std": split.std,
        "num_classes": split.num_classes,
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError):  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)


def _load_cpu(name: str, root: Path, train: bool, download: bool) -> TensorData:
    """One split on the CPU: from the tensor cache when it matches the source files, else
    through the dataset's loader (and then cached)."""
    files_of = SOURCE_FILES.get(name)
    if files_of is None:
        return DATASETS[name](root, train, download)
    split_name = "train" if train else "test"
    path = root / CACHE_DIR / f"{name}-{split_name}.pt"
    fingerprint = _fingerprint(files_of(root, train))
    key = {"format": _CACHE_FORMAT, "dataset": name, "split": split_name, "files": fingerprint}
    if fingerprint is not None and (hit := _read_cache(path, key)) is not None:
        return hit
    split = DATASETS[name](root, train, download)
    if key["files"] is None:  # a download may have created them
        key["files"] = _fingerprint(files_of(root, train))
    if key["files"] is not None:
        _write_cache(path, key, split)
    return split


def load(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    device: torch.device | str = "cpu",
    download: bool = False,
) -> TensorData:
    """Load one split of a dataset as tensors on ``device`` (from the tensor cache when it
    matches the source files; see the module's docstring)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}; valid: {', '.join(DATASETS)}")
    root = Path(root) if root is not None else default_root()
    return _load_cpu(name, root, train, download).to(device)


def augment_crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding ``pad`` and horizontal flip, per image, on tensors.

    ``x``: ``[B, C, H, W]``. Offsets and flips are drawn from ``generator`` (CPU), so the
    result is the same on every device.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    rows = off[0][:, None] + torch.arange(h, device=dev)[None]  # [B, H]
    cols = off[1][:, None] + torch.arange(w, device=dev)[None]  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
