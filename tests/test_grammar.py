import pytest

from byzstress.threats.grammar import parse, slug


@pytest.mark.parametrize(
    ("text", "name", "params", "children"),
    [
        ("CM", "cm", {}, []),
        ("trMean(NNM)", "trmean", {}, ["nnm"]),
        ("rfa(buck[s=3])", "rfa", {}, ["buck[s=3]"]),
        ("cclip[tau=10,iters=3]", "cclip", {"tau": 10, "iters": 3}, []),
        ("cm(nnm, buck[s=2])", "cm", {}, ["nnm", "buck[s=2]"]),
        ("minmax[dir=sign]", "minmax", {"dir": "sign"}, []),
        ("gaussian[strength=1e-3,x=true]", "gaussian", {"strength": 0.001, "x": True}, []),
    ],
)
def test_parse(text, name, params, children):
    spec = parse(text)
    assert spec.name == name
    assert spec.params == params
    assert [str(c) for c in spec.children] == children
    assert parse(str(spec)) == spec  # round trip


@pytest.mark.parametrize("bad", ["", "cm(", "cm[tau]", "cm[tau=]", "cm)", "(cm)", "cm[a=1"])
def test_parse_errors(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_slug_is_path_safe_and_distinct():
    assert slug("trMean(NNM)") == "trmean-nnm"
    assert slug("RFA(buck)") == "rfa-buck"
    assert slug("rfa(buck[s=3])") != slug("rfa(buck)")
    assert "/" not in slug("a/b")
