"""The kinds of split (byzstress.sim.splits): hand-computed cases, properties over their
parameters, the measured heterogeneity, and the default split's unchanged numbers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzstress.sim.partition import client_shares
from byzstress.sim.spec import RunSpec, SpecError
from byzstress.sim.splits import SPLITS, check_split, heterogeneity, split_indices

ROOT = Path(__file__).resolve().parents[1]
LABELS = np.repeat(np.arange(4), 6)  # 24 samples, 4 classes of 6


def classes_of(shares):
    return [sorted(set(LABELS[s].tolist())) for s in shares]


def assert_partition(shares, n_items=None, complete=True):
    n_items = len(LABELS) if n_items is None else n_items
    allidx = np.concatenate(shares)
    assert len(np.unique(allidx)) == len(allidx)  # no sample used twice
    assert allidx.min() >= 0 and allidx.max() < n_items
    if complete:
        assert len(allidx) == n_items


def test_shards_cut_sorted_labels_into_equal_single_class_shards():
    shares = split_indices(LABELS, 4, "shards[k=2]", 0.5, seed=0, min_samples=1)
    assert_partition(shares)
    assert [len(s) for s in shares] == [6, 6, 6, 6]  # 8 shards of 3, 2 per client
    for s in shares:  # each client's 6 samples are two shards: at most two classes
        assert 1 <= len(set(LABELS[s].tolist())) <= 2
        assert all(np.bincount(LABELS[s], minlength=4)[k] in (0, 3, 6) for k in range(4))


def test_classes_gives_every_client_exactly_k_classes():
    shares = split_indices(LABELS, 4, "classes[k=2]", 0.5, seed=1, min_samples=1)
    assert_partition(shares)
    assert all(len(c) == 2 for c in classes_of(shares))
    # each class is held by 2 of the 4 clients and cut evenly between them
    assert [len(s) for s in shares] == [6, 6, 6, 6]
    three = split_indices(LABELS, 2, "classes[k=1]", 0.5, seed=0, min_samples=1)
    assert_partition(three, complete=False)  # 2 clients x 1 class: two classes unused
    assert [len(c) for c in classes_of(three)] == [1, 1] and sum(len(s) for s in three) == 12
    with pytest.raises(ValueError, match=r"split: classes\[k=5\] needs k <= the 4 classes"):
        split_indices(LABELS, 2, "classes[k=5]", 0.5, seed=0, min_samples=1)


def test_quantity_keeps_labels_iid_and_skews_sizes():
    labels = np.repeat(np.arange(10), 100)
    power = split_indices(labels, 5, "quantity[power=1]", 0.5, seed=2, min_samples=20)
    assert_partition(power, len(labels))
    sizes = sorted(len(s) for s in power)
    # min + (1000 - 5*20) * w_i with w ∝ 1, 1/2, ..., 1/5 (sum 2.2833): 409, 217, ...
    spare, w = 900, np.array([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    want = sorted(20 + np.floor(spare * w / w.sum()).astype(int))
    want[-1] += 1000 - sum(want)
    assert sizes == want
    dirichlet = split_indices(labels, 5, "quantity[beta=0.3]", 0.5, seed=2, min_samples=20)
    assert_partition(dirichlet, len(labels))
    assert min(len(s) for s in dirichlet) >= 20 and len({len(s) for s in dirichlet}) > 1
    h = heterogeneity(labels, dirichlet, 10)
    assert h["label_tv_mean"] < 0.25 and h["size_cv"] > 0.3  # IID labels, skewed sizes
    assert check_split("quantity") == ("quantity", {"beta": None, "power": None})
    with pytest.raises(ValueError, match=r"beta .* or power, not both"):
        split_indices(labels, 5, "quantity[beta=1,power=1]", 0.5, seed=0)


def test_gamma_is_iid_at_one_and_sorted_at_zero():
    sorted_ = split_indices(LABELS, 4, "gamma[gamma=0]", 0.5, seed=3, min_samples=1)
    assert_partition(sorted_)
    # contiguous chunks of the label-sorted samples: client i's labels all <= client i+1's
    for a, b in itertools.pairwise(sorted_):
        assert LABELS[a].max() <= LABELS[b].min()
    iid = split_indices(np.repeat(np.arange(4), 250), 4, "gamma[gamma=1]", 0.5, 3, 1)
    assert [len(s) for s in iid] == [250] * 4
    assert heterogeneity(np.repeat(np.arange(4), 250), iid, 4)["label_tv_mean"] < 0.1
    half = split_indices(LABELS, 4, "gamma[gamma=0.5]", 0.5, seed=3, min_samples=1)
    assert_partition(half) and [len(s) for s in half] == [6, 6, 6, 6]  # 3 IID + 3 sorted


def test_iid_is_the_dirichlet_split_at_beta_iid():
    a = split_indices(LABELS, 4, "iid", 0.3, seed=4, min_samples=1)
    b = split_indices(LABELS, 4, "dirichlet", "iid", seed=4, min_samples=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("split", ["dirichlet", "iid", "shards", "classes", "quantity", "gamma"])
def test_every_split_is_deterministic_per_seed(split):
    labels = np.repeat(np.arange(10), 60)
    run = lambda seed: split_indices(labels, 6, split, 0.5, seed, min_samples=5)  # noqa: E731
    a, b, c = run(7), run(7), run(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_too_few_samples_and_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"split: 'classes\[k=1\]' gives client \d+ 6 samples"):
        split_indices(LABELS, 3, "classes[k=1]", 0.5, seed=0, min_samples=7)
    with pytest.raises(ValueError, match="split: unknown split 'bogus'; valid: dirichlet, iid"):
        check_split("bogus")
    with pytest.raises(ValueError, match="split: shards has no parameter 's'; valid: k"):
        check_split("shards[s=2]")
    with pytest.raises(ValueError, match=r"split: shards\[k\] must be >= 1, got 0"):
        check_split("shards[k=0]")
    with pytest.raises(ValueError, match=r"split: gamma\[gamma\] must be in \[0, 1\]"):
        split_indices(LABELS, 2, "gamma[gamma=2]", 0.5, seed=0, min_samples=1)
    with pytest.raises(ValueError, match=r"split: gamma\[gamma\] must be a number"):
        check_split("gamma[gamma=half]")
    with pytest.raises(SpecError, match="split: unknown split 'pathological'"):
        RunSpec.from_dict({"split": "pathological"})
    assert RunSpec.from_dict({"split": "Shards[k=3]"}).split == "Shards[k=3]"


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(SPLITS)),
    clients=st.integers(1, 12),
    k=st.integers(1, 6),
    gamma=st.floats(0, 1),
    beta=st.floats(0.05, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_parameters_give_a_partition_or_a_named_error(name, clients, k, gamma, beta, seed):
    labels = np.repeat(np.arange(5), 40)
    params = {
        "shards": f"[k={k}]",
        "classes": f"[k={k}]",
        "gamma": f"[gamma={gamma!r}]",
        "quantity": f"[beta={beta!r}]",
    }.get(name, "")
    try:
        shares = split_indices(labels, clients, name + params, beta, seed, min_samples=2)
    except ValueError as err:
        assert str(err).startswith(("split:", "min_samples")), err
        return
    assert len(shares) == clients and min(len(s) for s in shares) >= 2
    assert_partition(shares, len(labels), complete=name != "classes")


def test_heterogeneity_by_hand():
    one_class_each = [np.flatnonzero(LABELS == 0), np.flatnonzero(LABELS == 1)]
    h = heterogeneity(LABELS[:12], one_class_each, 4)
    # global over the 12 samples: half 0, half 1; each client holds one class: TV = 0.5
    assert h["label_tv_mean"] == pytest.approx(0.5) and h["label_tv_max"] == pytest.approx(0.5)
    assert h["classes_mean"] == 1 and h["size_cv"] == 0 and h["size_min"] == h["size_max"] == 6
    halves = [np.arange(0, 24, 2), np.arange(1, 24, 2)]  # each holds 3 of every class
    assert heterogeneity(LABELS, halves, 4)["label_tv_mean"] == pytest.approx(0.0)


def test_the_default_split_gives_the_published_demo_records_their_shares(fmnist_root):
    """The split knob changes no existing run: the demo's published records' share sizes
    are what the default split gives now."""
    from byzstress.runs import archive
    from byzstress.sim import data

    labels = data.load("fmnist", fmnist_root, True).y.numpy()
    records = archive.read_records(ROOT / "docs/demo/runs.tar.xz")
    for name in sorted(records)[::20]:  # three records, one per seed block
        r = records[name]
        s = r.spec_obj
        honest, byz = client_shares(labels, s.n, s.f, s.beta, s.seed, 10)
        assert [len(x) for x in honest] == r.share_sizes["honest"], name
        if r.share_sizes["byzantine"]:
            assert [len(x) for x in byz] == r.share_sizes["byzantine"], name


def test_a_run_records_its_split_and_heterogeneity(fmnist_root):
    from byzstress.runs.runner import run

    spec = {
        "steps": 2,
        "eval_every": 2,
        "data_root": str(fmnist_root),
        "device": "cpu",
        "n": 10,
        "f": 2,
        "defense": "cm",
        "attack": "none",
    }
    shards = run(RunSpec.from_dict({**spec, "split": "shards[k=1]"}))
    iid = run(RunSpec.from_dict({**spec, "split": "iid"}))
    assert shards["spec"]["split"] == "shards[k=1]" and json.dumps(shards["heterogeneity"])
    # one label-sorted shard per client: about one class each, far from the global mix
    assert shards["heterogeneity"]["classes_mean"] <= 3
    assert (
        shards["heterogeneity"]["label_tv_mean"] > 0.6 > 0.1 > iid["heterogeneity"]["label_tv_mean"]
    )
