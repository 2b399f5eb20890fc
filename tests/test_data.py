"""Datasets: the Debian Fashion-MNIST, a CIFAR-10 tree in torchvision's format, tensors."""

import os
import pickle

import numpy as np
import pytest
import torch

from byzstress.sim import data


def test_fashion_mnist_from_the_debian_package(fmnist_root):
    train = data.load("fmnist", fmnist_root, train=True)
    test = data.load("fmnist", fmnist_root, train=False)
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.uint8
    assert test.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train.y), torch.full((10,), 6000))
    z = train.normalize(train.x[:2000])
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


def _write_cifar_tree(root, per_batch=20):
    """A tiny CIFAR-10 in torchvision's on-disk format (cifar-10-batches-py pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        imgs = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": imgs, "labels": labels}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return imgs, labels


def test_cifar10_reads_torchvision_tree(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    # the tiny files cannot match the md5 sums of the real batches: check existence only
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    imgs, labels = _write_cifar_tree(tmp_path)
    train = data.load("cifar10", tmp_path, train=True)
    test = data.load("cifar10", tmp_path, train=False)
    assert train.x.shape == (100, 3, 32, 32) and test.x.shape == (20, 3, 32, 32)
    # channel-first layout of the HWC pickles
    expect = torch.from_numpy(imgs[0].reshape(3, 32, 32))
    assert torch.equal(test.x[0], expect)
    assert test.y.tolist() == labels


def test_missing_dataset_names_root_and_fix(tmp_path):
    with pytest.raises(data.DataNotFoundError, match=str(tmp_path) + ".*byzstress download"):
        data.load("cifar10", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="valid: fmnist, cifar10"):
        data.load("mnist", tmp_path)


def test_crop_flip_augmentation_on_tensors():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    g = torch.Generator().manual_seed(0)
    out = data.augment_crop_flip(x, g, pad=2)
    assert out.shape == x.shape
    # each output image is a shifted (and maybe mirrored) window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        found = any(
            torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1))
            for dy in range(5)
            for dx in range(5)
            for w in [padded[i, :, dy : dy + 8, dx : dx + 8]]
        )
        assert found
    again = data.augment_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)


def _cache_file(root, name="fmnist", split="test"):
    return root / data.CACHE_DIR / f"{name}-{split}.pt"


def _stage_copy(fmnist_root, tmp_path):
    """A private data root holding the staged Fashion-MNIST files (the cache tests edit it)."""
    import shutil

    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(fmnist_root / "FashionMNIST" / "raw", raw)
    return tmp_path


def test_tensor_cache_is_written_once_and_then_read_without_torchvision(
    fmnist_root, tmp_path, monkeypatch
):
    root = _stage_copy(fmnist_root, tmp_path)
    first = data.load("fmnist", root, train=False)
    assert _cache_file(root).exists()

    def must_not_run(*_):
        raise AssertionError("the cache should have been read")

    monkeypatch.setitem(data.DATASETS, "fmnist", must_not_run)
    again = data.load("fmnist", root, train=False)
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)
    assert torch.equal(again.mean, first.mean) and torch.equal(again.std, first.std)
    assert again.x.dtype == torch.uint8 and again.num_classes == 10


def test_tensor_cache_follows_its_source_files(fmnist_root, tmp_path):
    root = _stage_copy(fmnist_root, tmp_path)
    data.load("fmnist", root, train=False)
    labels = root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8] = (raw[8] + 1) % 10  # the first test label, changed in place (same size)
    labels.write_bytes(bytes(raw))
    os.utime(labels, ns=(1, 1))  # and a different modification time
    changed = data.load("fmnist", root, train=False)
    assert int(changed.y[0]) == raw[8]


def test_a_broken_cache_is_rebuilt_and_an_unwritable_root_gets_none(
    fmnist_root, tmp_path, monkeypatch
):
    root = _stage_copy(fmnist_root, tmp_path)
    good = data.load("fmnist", root, train=False)
    _cache_file(root).write_bytes(b"not a tensor file")
    assert torch.equal(data.load("fmnist", root, train=False).x, good.x)
    assert _cache_file(root).stat().st_size > 1000  # rewritten

    def no_space(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    _cache_file(root).unlink()
    monkeypatch.setattr(data.torch, "save", no_space)
    assert torch.equal(data.load("fmnist", root, train=False).y, good.y)
    assert not _cache_file(root).exists()
    assert not list((root / data.CACHE_DIR).glob(".*tmp*"))
