"""Attacks: hand-computed vectors, Min-Max/Min-Sum constraints, knowledge modes, auto."""

import math

import pytest
import torch

from byzstress.threats import attacks
from byzstress.threats.attacks import AttackContext, alie_default_z, build
from byzstress.threats.defenses import build as build_defense

# hand-computed values and properties in float32: rerun under other CPU kernels
pytestmark = pytest.mark.numerics

HONEST = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
MU = HONEST.mean(0)
SIGMA = HONEST.std(0)  # ddof = 1


def ctx(**kw):
    return AttackContext(honest=HONEST, f=2, **kw)


def test_alie_default_z_both_rules():
    # s = floor(17/2 + 1) - 3 = 6
    # karimireddy: Phi^-1((17 - 3 - 6) / 14) = Phi^-1(0.5714) = 0.1800
    assert alie_default_z(17, 3) == pytest.approx(0.1800, abs=1e-4)
    assert alie_default_z(50, 10) == pytest.approx(0.2533, abs=1e-3)
    # baruch: Phi^-1((17 - 6) / 17) = Phi^-1(0.6471) = 0.3774
    assert alie_default_z(17, 3, "baruch") == pytest.approx(0.3774, abs=1e-4)
    # n = 20, f = 4: s = 7; Phi^-1(9/16) = 0.1573 and Phi^-1(13/20) = 0.3853
    assert alie_default_z(20, 4) == pytest.approx(0.1573, abs=1e-4)
    assert alie_default_z(20, 4, "baruch") == pytest.approx(0.3853, abs=1e-4)
    baruch = build("alie[zrule=baruch]")
    assert baruch.resolved_strength(20, 4) == pytest.approx(0.3853, abs=1e-4)
    baruch(AttackContext(honest=torch.randn(16, 3), f=4))
    assert baruch.last_strength == pytest.approx(0.3853, abs=1e-4)
    with pytest.raises(ValueError, match=r"zrule 'median' invalid.*karimireddy, baruch"):
        build("alie[zrule=median]")
    with pytest.raises(ValueError, match="sign 2 invalid"):
        build("alie[sign=2]")


def test_minsum_gamma_under_both_bounds_by_hand():
    # 1-d, honest g = 0, 1, 5: mu = 2, e = g - mu = (-2, -1, 3), sum e^2 = 14, sigma^2 = 7,
    # p = -sigma: sum_i ||mu + gamma p - g_i||^2 = 14 + 3 * 7 * gamma^2.
    # Row sums of squared distances: g=0: 1 + 25 = 26, g=1: 1 + 16 = 17, g=5: 25 + 16 = 41.
    honest = torch.tensor([[0.0], [1.0], [5.0]])
    c = AttackContext(honest=honest, f=1)
    paper = build("minsum")  # bound=max: 14 + 21 gamma^2 <= 41 -> gamma = sqrt(9/7)
    paper(c)
    assert paper.last_strength == pytest.approx(math.sqrt(9 / 7), abs=1e-4)
    notebooks = build("minsum[bound=min]")  # 14 + 21 gamma^2 <= 17 -> gamma = sqrt(1/7)
    out = notebooks(c)
    assert notebooks.last_strength == pytest.approx(math.sqrt(1 / 7), abs=1e-4)
    assert out[0, 0] == pytest.approx(2.0 - math.sqrt(1 / 7) * math.sqrt(7), abs=1e-3)
    with pytest.raises(ValueError, match="bound 'mean' invalid for 'minsum'; valid: max, min"):
        build("minsum[bound=mean]")
    with pytest.raises(ValueError, match=r"unknown parameter.*bound"):
        build("minmax[bound=min]")  # Min-Max has one bound only


def test_no_attack_baselines():
    everyone = build("none")
    assert not everyone.honest_only and everyone.uses_own_vectors
    alone = build("none[senders=honest]")
    assert alone.honest_only and not alone.uses_own_vectors
    assert not build("alie").honest_only
    with pytest.raises(ValueError, match="senders 'some' invalid for 'none'; valid: all, honest"):
        build("none[senders=some]")


def test_alie_sign_and_strength():
    out = build("alie", strength=2)(ctx())
    assert out.shape == (2, 2)
    assert torch.allclose(out[0], MU - 2 * SIGMA) and torch.equal(out[0], out[1])
    plus = build("alie[sign=1]", strength=2)(ctx())
    assert torch.allclose(plus[0], MU + 2 * SIGMA)
    dflt = build("alie")
    dflt(AttackContext(honest=torch.randn(14, 3), f=3))
    assert dflt.last_strength == pytest.approx(alie_default_z(17, 3))


def test_ipm_sf_mimic_inf_gaussian():
    assert torch.allclose(build("ipm", strength=2.5)(ctx())[0], -2.5 * MU)
    assert build("ipm").resolved_strength(17, 3) == 0.1
    assert torch.allclose(build("sf")(ctx())[1], -MU)
    assert torch.equal(build("mimic[target=2]")(ctx())[0], HONEST[2])
    assert bool(torch.isinf(build("inf")(ctx())).all())
    g = build("gaussian", strength=3.0)(
        AttackContext(honest=torch.zeros(3, 20000), f=2, generator=torch.Generator())
    )
    assert g.std().item() == pytest.approx(3.0, rel=0.02)


def test_local_knowledge_uses_only_own_vectors():
    own = torch.tensor([[10.0, 10.0], [12.0, 14.0]])
    out = build("ipm", strength=1, knowledge="local")(ctx(knowledge="local", byz_own=own))
    assert torch.allclose(out[0], -own.mean(0))
    assert build("alie", knowledge="local").uses_own_vectors
    assert not build("alie").uses_own_vectors
    assert build("lf").flip_labels and build("none").needs_byz_grads


def _minmax_ok(m, g):
    d = torch.cdist(g.double(), g.double()).max()
    return bool((g.double() - m.double()).norm(dim=1).max() <= d)


def _minsum_ok(m, g):
    d2 = torch.cdist(g.double(), g.double()) ** 2
    return bool(((g.double() - m.double()) ** 2).sum() <= d2.sum(1).max())


@pytest.mark.parametrize(("name", "ok"), [("minmax", _minmax_ok), ("minsum", _minsum_ok)])
@pytest.mark.parametrize("direction", ["std", "unit", "sign"])
def test_shejwalkar_gamma_is_maximal(name, ok, direction):
    torch.manual_seed(0)
    g = torch.randn(12, 40) + 0.5
    atk = build(f"{name}[dir={direction}]")
    m = atk(AttackContext(honest=g, f=3))[0]
    gamma = atk.last_strength
    assert gamma > 0
    assert ok(m, g)  # the chosen γ satisfies the constraint ...
    p = atk.direction(g)
    assert not ok(g.mean(0) + (gamma * 1.001 + 1e-4) * p, g)  # ... a slightly larger one not


def test_unknown_attack_and_bad_params_name_valid_choices():
    with pytest.raises(ValueError, match=r"unknown attack 'zzz'; valid: .*alie.*ipm"):
        build("zzz")
    with pytest.raises(ValueError, match="allowed"):
        build("sf", strength=3)
    with pytest.raises(ValueError, match="'auto'"):
        build("alie", strength="big")
    with pytest.raises(ValueError, match="omniscient"):
        build("alie", strength="auto", knowledge="local")


def test_auto_maximises_damage_against_the_defense():
    torch.manual_seed(1)
    honest = torch.randn(14, 30) + 1.0
    mean_def = build_defense("mean", 17, 3)
    atk = build("ipm", strength="auto")
    atk(AttackContext(honest=honest, f=3, defense=mean_def))
    # against the mean the damage grows with ε: the search ends at the top of its range
    assert atk.last_strength == pytest.approx(100.0, rel=1e-6)

    cm = build_defense("cm", 17, 3)
    atk = build("alie", strength="auto")
    byz = atk(AttackContext(honest=honest, f=3, defense=cm))
    chosen = float((cm(torch.cat([honest, byz])) - honest.mean(0)).norm())
    for z in torch.logspace(-1, 2, 12):
        other = build("alie", strength=float(z))(AttackContext(honest=honest, f=3))
        dmg = float((cm(torch.cat([honest, other])) - honest.mean(0)).norm())
        assert chosen >= dmg - 1e-6


def test_auto_probes_a_copy_of_stateful_defenses():
    torch.manual_seed(2)
    honest = torch.randn(14, 10)
    cclip = build_defense("cclip", 17, 3)
    cclip(torch.randn(17, 10))
    before = cclip.rule.center.clone()
    build("alie", strength="auto")(AttackContext(honest=honest, f=3, defense=cclip))
    assert torch.equal(cclip.rule.center, before)


def test_registry_lists_every_attack():
    assert {
        "none",
        "alie",
        "ipm",
        "sf",
        "lf",
        "minmax",
        "minsum",
        "mimic",
        "gaussian",
        "inf",
    } <= set(attacks.ATTACKS)
    assert math.isfinite(build("alie").resolved_strength(17, 3))
