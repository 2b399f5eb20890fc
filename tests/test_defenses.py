"""Aggregators: hand-computed cases, hypothesis properties, non-finite inputs."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from byzstress.threats import defenses
from byzstress.threats.defenses import build

# hand-computed values and properties in float32: rerun under other CPU kernels
pytestmark = pytest.mark.numerics


def col(*v):
    return torch.tensor(v, dtype=torch.float32)[:, None]


# ------------------------------------------------------------------ hand-computed cases


@pytest.mark.parametrize(
    ("spec", "x", "f", "expected"),
    [
        ("mean", col(1, 2, 6), 1, [3.0]),
        ("cm", col(1, 2, 6), 1, [2.0]),
        ("cm", col(1, 2, 4, 10), 1, [3.0]),  # even n: mean of the middle two
        ("trmean", col(1, 2, 3, 100, -50), 1, [2.0]),
        ("krum", col(0, 1, 2, 10, 11), 1, [1.0]),  # scores 5, 2, 5, 65, 82
        ("multikrum", col(0, 1, 2, 10, 11), 1, [3.25]),  # lowest four: 1, 0, 2, 10
        ("rfa", col(0, 1, 10), 1, [1.0]),  # 1-D geometric median = median
        ("mda", col(0, 1, 2, 10), 1, [1.0]),
        ("mda", col(0, 1, 2), 1, [1.0]),  # {0, 1} and {1, 2} tie: means 0.5 and 1.5 averaged
        ("meamed", col(0, 1, 2, 10, 11), 1, [3.25]),  # 4 closest to the median 2
        ("meamed", col(0, 100, 50, 50, 50), 1, [50.0]),  # 0 and 100 tie for the 4th place
        ("monna", col(0, 1, 2, 10, 11), 1, [3.25]),  # 4 nearest to the pivot 0
        ("mean(nnm)", col(0, 1, 2, 10), 1, [(1 + 1 + 1 + 13 / 3) / 4]),
        ("mean(arc)", col(1, 2, 3, 4, 10), 1, [(1 + 2 + 3 + 4 + 4) / 5]),  # k = 1
        ("mean(clip[c=2])", col(1, -3, 5), 1, [(1 - 2 + 2) / 3]),
    ],
)
def test_known_cases(spec, x, f, expected):
    out = build(spec, x.shape[0], f)(x)
    assert torch.allclose(out, torch.tensor(expected), atol=1e-5), (spec, out)


def test_geometric_median_of_a_square_is_its_centre():
    x = torch.tensor([[0.0, 0], [1, 0], [0, 1], [1, 1]])
    agg = build("rfa", 4, 1)
    assert torch.allclose(agg(x), torch.tensor([0.5, 0.5]), atol=1e-5)
    assert agg.info["iterations"] >= 8 and agg.info["residual"] < 1e-5


def test_cclip_clips_around_a_carried_centre():
    agg = build("cclip[tau=1,iters=1]", 2, 0)
    x = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    first = agg(x)  # centre 0: (3,4) clipped to (0.6,0.8); (0,0.5) kept
    assert torch.allclose(first, torch.tensor([0.3, 0.65]))
    second = agg(x)  # centre carried: v + mean(clip(x_i - v))
    u = x - first
    step = (u * torch.clamp(1 / u.norm(dim=1, keepdim=True), max=1)).mean(0)
    assert torch.allclose(second, first + step)
    probe = agg.clone()
    probe(x * 100)
    assert torch.equal(agg.rule.center, second)  # a clone never moves the original


def test_bucketing_averages_groups_and_keeps_the_mean():
    x = torch.arange(12, dtype=torch.float32).view(6, 2)
    pre = defenses.Bucketing(6, 1, s=2)
    out = pre(x, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2)
    assert torch.allclose(out.mean(0), x.mean(0))
    five = pre.__class__(5, 1, s=2)(x[:5], torch.Generator().manual_seed(0))
    assert five.shape == (3, 2)


def test_paper_labels_build():
    for spec in (
        "RFA(buck)",
        "CM",
        "CCLIP",
        "trMean(NNM)",
        "rfa(buck[s=2])",
        "cclip[tau=10,iters=3]",
        "cm(nnm,buck)",
    ):
        agg = build(spec, 17, 3)
        assert agg(torch.randn(17, 50)).shape == (50,)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nope", "unknown aggregation rule 'nope'; valid: .*cclip.*trmean"),
        ("cm(zzz)", "unknown pre-aggregator 'zzz'; valid: .*nnm"),
        ("cclip[nope=1]", "unknown parameter.*allowed: iters, tau"),
        ("trmean", "needs n > 2f"),
    ],
)
def test_bad_specs_name_the_valid_choices(spec, match):
    n, f = (6, 3) if spec == "trmean" else (17, 3)
    with pytest.raises(ValueError, match=match):
        build(spec, n, f)


# ------------------------------------------------------------------ properties

ROBUST = [
    "cm",
    "trmean",
    "rfa",
    "krum",
    "multikrum",
    "mda",
    "meamed",
    "monna",
    "trmean(nnm)",
    "cm(nnm)",
    "krum(nnm)",
    "rfa(nnm)",
]
EQUIVARIANT = ["mean", *ROBUST]
ALL = [*EQUIVARIANT, "cclip", "mean(arc)", "rfa(buck)", "trmean(buck)"]
DETERMINISTIC = [s for s in ALL if "buck" not in s]


@st.composite
def problems(draw, min_n=5):
    n = draw(st.integers(min_n, 11))
    f = draw(st.integers(1, (n - 3) // 2))  # leaves n > 2f + 2 for Krum
    d = draw(st.integers(1, 5))
    x = draw(arrays(np.float32, (n, d), elements=st.floats(-100, 100, width=32)))
    return n, f, torch.from_numpy(x)


def make(spec, n, f):
    """Build, discarding draws that are invalid configurations (e.g. bucketing leaves too
    few vectors for the rule's f)."""
    try:
        return build(spec, n, f)
    except ValueError as err:
        assume("needs n >" not in str(err))
        raise


def _straddles(x: torch.Tensor, score: torch.Tensor, keep: int) -> bool:
    """Whether keeping the ``keep`` lowest scores depends on how near-ties are broken:
    rows scored (nearly) like the boundary fall on both sides and are not all equal."""
    order = score.sort().values
    if keep >= len(order):
        return False
    near = torch.isclose(score, order[keep - 1], rtol=1e-3, atol=1e-6)
    if not bool(torch.isclose(order[keep - 1], order[keep], rtol=1e-3, atol=1e-6)):
        return False
    rows = x[near]
    return not bool(torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-6))


def tied(spec, x, f):
    """Whether a selection in the spec sits on a (near) tie between different vectors,
    which float error or the order of the inputs may break either way."""
    n = x.shape[0]
    x64 = x.double()
    k = n - f
    if "nnm" in spec:
        d2 = defenses.pairwise_sq_dists(x64)
        if any(_straddles(x64, d2[i], k) for i in range(n)):
            return True
        x64 = defenses.NNM(n, f)(x64)  # the rule then sees the mixed vectors
    if spec.startswith("monna") and _straddles(x64, ((x64 - x64[0]) ** 2).sum(1), k):
        return True
    if spec.startswith(("krum", "multikrum")):
        keep = 1 if spec.startswith("krum") else k
        if _straddles(x64, defenses.krum_scores(x64, f), keep):
            return True
    if spec.startswith("mda"):
        # the rule averages subsets tied up to float rounding; a diameter a little above the
        # smallest one may fall on either side of that tolerance
        d2 = defenses.pairwise_sq_dists_direct(x64)
        diam = torch.stack(
            [d2[list(c)][:, list(c)].max() for c in itertools.combinations(range(n), k)]
        )
        if _in_near_band(diam, diam.min()):
            return True
    if spec.startswith("meamed"):
        dist = (x64 - defenses.coordinate_median(x64)).abs()
        if _in_near_band(dist, dist.kthvalue(k, dim=0).values):
            return True
    return False


def _in_near_band(score: torch.Tensor, boundary: torch.Tensor) -> bool:
    """Some score is near the boundary (relative 1e-9 to 1e-3) without being equal to it:
    float32 rounding may put it on either side of a rule's tie tolerance."""
    gap = (score - boundary).abs()
    scale = boundary.abs().clamp_min(1e-12)
    return bool(((gap > 1e-9 * scale) & (gap <= 1e-3 * scale)).any())


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("spec", DETERMINISTIC)
@SETTINGS
@given(p=problems(), seed=st.integers(0, 10_000))
def test_permutation_invariance(spec, p, seed):
    n, f, x = p
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if spec in ("monna",):  # the pivot is a trusted client: keep it in place
        perm = torch.cat([torch.tensor([0]), perm[perm != 0]])
    assume(not tied(spec, x, f))
    a = make(spec, n, f)(x)
    b = make(spec, n, f)(x[perm])
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), (spec, a, b)


@pytest.mark.parametrize("spec", ALL)
@SETTINGS
@given(p=problems())
def test_equal_inputs_give_the_common_vector(spec, p):
    n, f, x = p
    same = x[:1].expand(n, -1).contiguous()
    out = make(spec, n, f)(same)
    if spec == "cclip":  # from a zero centre, clipping moves at most iters * tau
        v = x[0]
        expect = v if float(v.norm()) <= 10 else None
        if expect is None:
            assert float(out.norm()) <= 30 + 1e-3
            return
    assert torch.allclose(out, x[0], atol=1e-4, rtol=1e-5), (spec, out, x[0])


@pytest.mark.parametrize("spec", EQUIVARIANT)
@SETTINGS
@given(p=problems(), shift=arrays(np.float32, 5, elements=st.floats(-50, 50, width=32)))
def test_translation_equivariance(spec, p, shift):
    n, f, x = p
    c = torch.from_numpy(shift[: x.shape[1]])
    assume(not tied(spec, x, f))
    a = make(spec, n, f)(x) + c
    b = make(spec, n, f)(x + c)
    assert torch.allclose(a, b, atol=5e-3, rtol=1e-4), (spec, a, b)


# rules whose output stays in the honest vectors' coordinate box (RFA obeys a norm bound
# instead, tested below)
BOXED = [s for s in ROBUST if not s.startswith("rfa")] + ["meamed(nnm)"]


@st.composite
def attacked(draw):
    n = draw(st.integers(7, 13))
    f = draw(st.integers(1, (n - 3) // 2))
    d = draw(st.integers(1, 5))
    honest = draw(arrays(np.float32, (n - f, d), elements=st.floats(-1, 1, width=32)))
    sign = draw(st.sampled_from([1.0, -1.0]))
    return n, f, torch.from_numpy(honest), sign


@pytest.mark.parametrize("spec", BOXED)
@SETTINGS
@given(p=attacked())
def test_outliers_stay_inside_the_honest_box(spec, p):
    n, f, honest, sign = p
    x = torch.cat([honest, torch.full((f, honest.shape[1]), sign * 1e6)])
    out = build(spec, n, f)(x)
    lo, hi = honest.min(0).values, honest.max(0).values
    assert bool(((out >= lo - 1e-4) & (out <= hi + 1e-4)).all()), (spec, out, lo, hi)


@SETTINGS
@given(p=attacked())
def test_geometric_median_obeys_its_breakdown_bound(p):
    """Minsker (2015) / Chen, Su & Xu (2017), Lemma 2: with a fraction α = f/n < 1/2 of
    arbitrary points, ||GM − z|| ≤ C_α max_{honest} ||x_i − z|| for any z, with
    C_α = (1 − α)/(1 − 2α). Smoothed Weiszfeld is approximate: 1% slack plus ν."""
    n, f, honest, sign = p
    x = torch.cat([honest, torch.full((f, honest.shape[1]), sign * 1e6)])
    out = build("rfa", n, f)(x)
    z = honest.mean(0)
    alpha = f / n
    bound = (1 - alpha) / (1 - 2 * alpha) * float((honest - z).norm(dim=1).max())
    assert float((out - z).norm()) <= 1.01 * bound + 0.1


@SETTINGS
@given(p=attacked())
def test_the_mean_breaks(p):
    n, f, honest, sign = p
    x = torch.cat([honest, torch.full((f, honest.shape[1]), sign * 1e6)])
    out = build("mean", n, f)(x)
    assert bool((out.abs() > 1e4).all())


# ------------------------------------------------------------------ non-finite inputs

SPECS_ALL = [
    *sorted(set(defenses.RULES)),
    "trmean(nnm)",
    "rfa(buck)",
    "cm(arc)",
    "mean(clip)",
    "krum(nnm)",
]


@pytest.mark.parametrize("spec", SPECS_ALL)
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_rows_never_raise(spec, bad):
    torch.manual_seed(0)
    honest = torch.randn(14, 30)
    x = torch.cat([honest, torch.full((3, 30), bad)])
    x[15, :5] = 1.0  # mixed rows too
    out = build(spec, 17, 3)(x)
    assert out.shape == (30,)
    if spec not in ("mean", "average", "avg"):
        assert bool(torch.isfinite(out).all()), spec
        assert float(out.abs().max()) < 10, spec  # robust rules ignore the bad rows


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16, 17, 40])
def test_shaker_order_statistics_match_sort(n):
    """The CPU fast path (cocktail-shaker rounds) equals torch.sort's order statistics."""
    torch.manual_seed(n)
    x = torch.randn(n, 257)
    x[:, :10] = torch.randint(0, 3, (n, 10)).float()  # ties
    s = x.sort(0).values
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    assert torch.allclose(defenses.coordinate_median(x), med)
    for f in range(0, (n - 1) // 2 + 1):
        expect = s[f : n - f].mean(0)
        assert torch.allclose(defenses.trimmed_mean(x, f), expect, atol=1e-6), f


@pytest.mark.parametrize("n", [1, 2, 5, 17, 40])
def test_kth_smallest_matches_kthvalue(n):
    """The CPU shaker path of the coordinate-wise k-th smallest equals ``kthvalue``."""
    torch.manual_seed(n)
    x = torch.randn(n, 301)
    x[:, :10] = torch.randint(0, 3, (n, 10)).float()  # ties
    for k in range(1, n + 1):
        assert torch.equal(defenses.kth_smallest(x, k), x.kthvalue(k, dim=0).values), k


# ------------------------------------------------------------------ diagnostics


def _traced(spec, x, f, byz_rows):
    d = build(spec, x.shape[0], f)
    d.tracing = True
    out = d(x)
    mask = torch.zeros(x.shape[0])
    mask[list(byz_rows)] = 1.0
    return out, d.diagnose(mask)


def test_trmean_counts_the_byzantine_values_that_survive_trimming():
    # coordinate 0 sorted: 1, 2, 2.5b, 2.6b, 3 -> kept 2, 2.5b, 2.6b: 2 Byzantine values;
    # coordinate 1 sorted: 0b, 10, 20, 30, 40b -> kept 10, 20, 30: none. Mean: 1 of 3 kept.
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [2.5, 0.0], [2.6, 40.0]])
    _, diag = _traced("trmean", x, 1, [3, 4])
    assert diag["byz_values_kept"] == pytest.approx(1.0)
    assert diag["rule_byz_share"] == pytest.approx(1 / 3)
    assert diag["byz_weight_rows"] == pytest.approx(2 / 5)
    assert diag["byz_weight_honest_rows"] == 0.0  # no pre-aggregator: honest rows are honest


def test_cm_reports_whether_the_median_is_byzantine():
    _, odd = _traced("cm", col(1, 2, 3, 2.5, 2.6), 1, [3, 4])
    assert odd["byz_values_kept"] == pytest.approx(1.0)  # median 2.5 is Byzantine
    _, even = _traced("cm", col(1, 2, 3, 2.5), 1, [3])
    assert even["byz_values_kept"] == pytest.approx(0.5)  # middle pair 2 and 2.5b


def test_nnm_keeps_far_byzantine_vectors_out_of_honest_neighbourhoods():
    # n = 6, f = 2: each row -> mean of its 4 nearest. Honest rows only see honest rows;
    # each Byzantine row sees both Byzantine rows and the two largest honest ones.
    x = col(0.0, 0.1, 0.2, 0.3, 100.0, 100.0)
    out, diag = _traced("trmean(nnm)", x, 2, [4, 5])
    assert diag["byz_weight_honest_rows"] == 0.0
    assert diag["byz_weight_rows_max"] == pytest.approx(0.5)
    assert diag["byz_weight_rows"] == pytest.approx(1 / 6)
    assert diag["byz_values_kept"] == 0.0  # trMean keeps two copies of the honest mean
    assert out.item() == pytest.approx(0.15)
    nnm = defenses.NNM(6, 2)
    mixed = nnm(x)
    assert torch.allclose(nnm.mix @ x, mixed)


def test_bucketing_mix_matrix_reproduces_its_output():
    torch.manual_seed(0)
    x = torch.randn(7, 5)
    buck = defenses.Bucketing(7, 1, s=2)
    out = buck(x, torch.Generator().manual_seed(3))
    assert buck.mix.shape == (4, 7)
    assert torch.allclose(buck.mix @ x, out, atol=1e-6)
    assert torch.allclose(buck.mix.sum(1), torch.ones(4))
    # every input in one bucket: six in buckets of two, one alone in the last
    assert torch.allclose(buck.mix.sum(0).sort().values, torch.tensor([0.5] * 6 + [1.0]))
    _, diag = _traced("cm(buck)", torch.randn(6, 3), 2, [4, 5])
    assert diag["byz_weight_rows"] == pytest.approx(2 / 6)  # buckets of 2 keep the total
    assert diag["byz_weight_honest_rows"] is None  # bucketing mixes rows: no honest rows


def test_rfa_and_cclip_byzantine_share_by_hand():
    x = col(0.0, 0.0, 0.0, 10.0)
    # Weiszfeld from the mean: honest weights 1/nu = 10 (distance < nu), the outlier's
    # 1/distance ~ 0.1003 -> share 0.1003 / 30.1003
    _, rfa = _traced("rfa", x, 1, [3])
    assert rfa["rule_byz_share"] == pytest.approx(0.10033 / 30.10033, rel=1e-3)
    # CClip tau=1 from 0: v = 0.25, 0.3125, 0.328125; the last iteration's clipped pulls are
    # 0.3125 (x3 honest) and 1 (the outlier): share 1 / 1.9375
    _, cc = _traced("cclip[tau=1]", x, 1, [3])
    assert cc["rule_byz_share"] == pytest.approx(1 / 1.9375, rel=1e-5)


def test_diagnose_needs_a_traced_call():
    d = build("trmean", 5, 1)
    d(col(1, 2, 3, 4, 5))
    with pytest.raises(RuntimeError, match="tracing"):
        d.diagnose(torch.zeros(5))


def test_radii_scale_to_the_momentum_form():
    from byzstress.sim.spec import RunSpec

    d = build("rfa(buck, clip[c=2])", 17, 3)
    d.scale_radii(0.1)
    assert d.rule.params["nu"] == pytest.approx(0.01)
    assert d.pre[1].params["c"] == pytest.approx(0.2)
    assert d.pre[0].params["s"] == 2  # not a radius
    cc = build("cclip[tau=10]", 17, 3)
    cc.scale_radii(0.1)
    assert cc.rule.params["tau"] == pytest.approx(1.0)
    assert RunSpec(defense_units="heavy").radius_scale() == pytest.approx(0.1)
    assert RunSpec(defense_units="heavy", momentum_form="heavy").radius_scale() == 1.0
    assert RunSpec(defense_units="heavy", momentum=0.0).radius_scale() == 1.0
    assert RunSpec().radius_scale() == 1.0
