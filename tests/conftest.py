"""Shared fixtures. Fashion-MNIST comes from the Debian package dataset-fashion-mnist
(installed by .ci/run); tests stage it once per session into a temporary data root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from byzstress.sim import data

    root = tmp_path_factory.mktemp("data")
    data.load("fmnist", root, train=False)  # stages the Debian files or fails loudly
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
