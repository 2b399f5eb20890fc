"""Bad input, fuzzed: every wrong value is refused with its key named, before any job.

Property-based (hypothesis) over :class:`RunSpec`, the ``train`` command line and a study
of ``config.yaml``: wrong types, out-of-range and non-finite numbers and malformed spec
strings for every key. Each must raise :class:`SpecError` / exit with status 2 /
raise a workflow error naming the key: never a traceback, never a silently dropped value,
never a training run started. Each test prints how many bad inputs it tried.
"""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byzstress.cli import main
from byzstress.runs import runner
from byzstress.runs.study import StudyError, check_finite, expand_study
from byzstress.sim.spec import RunSpec, SpecError

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf, float("1e400")])
TEXT = st.text(min_size=0, max_size=8)
JUNK = st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.dictionaries(TEXT, TEXT))

INT_KEYS = {  # key: smallest valid value
    "n": 1,
    "f": 0,
    "steps": 1,
    "eval_every": 1,
    "min_samples": 1,
    "eval_batch_size": 1,
    "seed": 0,
    "checkpoint_every": 0,
    "batch_size": 1,
}
FLOAT_KEYS = {  # key: (bad numbers outside the valid range)
    "lr": st.floats(max_value=0.0, allow_nan=False),
    "lr_gamma": st.floats(max_value=0.0, allow_nan=False),
    "momentum": st.one_of(
        st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1.0, allow_nan=False)
    ),
    "weight_decay": st.floats(max_value=-1e-12, allow_nan=False),
    "beta": st.floats(max_value=0.0, allow_nan=False),
}
CHOICE_KEYS = ("dataset", "model", "momentum_form", "defense_units", "knowledge", "device")
BOOL_KEYS = ("download", "deterministic", "augment")
BAD_SPECS = {
    "split": st.one_of(
        st.sampled_from(
            [
                "",
                "dirichlet[beta=0.5]",
                "shards[k=0]",
                "shards[k=2.5]",
                "shards[n=2]",
                "classes[k=-1]",
                "gamma[gamma=nan]",
                "gamma[gamma=1e400]",
                "gamma[gamma=yes]",
                "quantity[alpha=1]",
                "shards(",
                "shards(iid)",
            ]
        ),
        st.integers(),
        NONFINITE,
        TEXT.filter(lambda t: t.strip().lower().split("[")[0] not in _split_names()),
    ),
    "attack": st.one_of(
        st.sampled_from(
            [
                "",
                "alee",
                "alie[",
                "alie[z=1]",
                "alie[zrule=median]",
                "alie[sign=2]",
                "alie[auto_lo=inf]",
                "ipm(nnm)",
                "minsum[bound=mean]",
                "minmax[gamma0=-1]",
                "minmax[dir=up]",
                "none[senders=some]",
                "gaussian[mean=nan]",
                "mimic[target=-1]",
                "ipm]",
                "[ipm]",
                "alie[sign=1,sign=-1]",
            ]
        ),
        TEXT.filter(lambda t: t.strip().lower() not in _attack_names()),
    ),
    "defense": st.one_of(
        st.sampled_from(
            [
                "",
                "trMean(NMM)",
                "cclip[tau=inf]",
                "cclip[tau=-1]",
                "cclip[tau=abc]",
                "cclip[iters=2.5]",
                "rfa[nu=nan]",
                "rfa[nu=1e400]",
                "rfa(buck[s=0])",
                "rfa(buck[s=2.0])",
                "cm(",
                "cm)",
                "krum[m=3]",
                "multikrum[m=0]",
                "monna[pivot=16]",
                "clip[c=0]",
                "cm(nnm(buck))",
                "trmean[f=2]",
            ]
        ),
        TEXT.filter(lambda t: t.strip().lower() not in _rule_names()),
    ),
}


def _split_names() -> set[str]:
    from byzstress.sim.splits import SPLITS

    return set(SPLITS)


def _attack_names() -> set[str]:
    from byzstress.threats.attacks import ATTACKS

    return set(ATTACKS)


def _rule_names() -> set[str]:
    from byzstress.threats.defenses import RULES

    return set(RULES)


def bad_value(key: str) -> st.SearchStrategy:
    """Values that must be refused for ``key``."""
    if key in INT_KEYS:
        low = INT_KEYS[key]
        return st.one_of(
            st.integers(max_value=low - 1),
            st.floats(allow_nan=True),
            NONFINITE,
            TEXT,
            st.booleans(),
            st.lists(st.integers(), min_size=1, max_size=2),
        )
    if key in FLOAT_KEYS:
        extra = [st.sampled_from(["uniform", "1e-3"])] if key == "beta" else [TEXT]
        return st.one_of(FLOAT_KEYS[key], NONFINITE, st.booleans(), *extra)
    if key == "strength":
        return st.one_of(
            NONFINITE, TEXT.filter(lambda t: t.lower() != "auto"), st.booleans(), st.lists(TEXT)
        )
    if key in CHOICE_KEYS:
        return st.one_of(TEXT.map(lambda t: t + "?"), st.integers(), NONFINITE)
    if key in BOOL_KEYS:
        return st.one_of(st.integers(), TEXT, NONFINITE)
    if key == "lr_milestones":
        return st.one_of(
            st.lists(st.one_of(NONFINITE, st.floats(min_value=1.0), st.just(0.0)), min_size=1),
            TEXT,
            st.integers(),
        )
    if key == "plugins":
        return st.one_of(TEXT, st.integers(), st.just(["no/such/plugin.py"]))
    return BAD_SPECS[key]


FUZZED = [*INT_KEYS, *FLOAT_KEYS, "strength", *CHOICE_KEYS, *BOOL_KEYS]
FUZZED += ["lr_milestones", "plugins", "attack", "defense", "split"]
COUNT: dict[str, int] = {}


def test_every_field_is_fuzzed():
    assert set(FUZZED) == {f.name for f in fields(RunSpec)} - {"data_root"}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    start = time.perf_counter()
    yield
    print(
        f"\nfuzz: {sum(COUNT.values())} bad inputs tried ({COUNT}) in "
        f"{time.perf_counter() - start:.1f} s"
    )


def _base(key: str) -> dict:
    # keys that the bad value of another key would need (f < n/2 with a bad n, ...)
    return {"attack": "alie", "strength": 2.0} if key == "strength" else {}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_runspec_refuses_every_bad_value_naming_its_key(data):
    key = data.draw(st.sampled_from(FUZZED))
    value = data.draw(bad_value(key))
    COUNT["runspec"] = COUNT.get("runspec", 0) + 1
    with pytest.raises(SpecError) as err:
        RunSpec.from_dict({**_base(key), key: value})
    message = str(err.value)
    assert message.startswith(f"{key}:"), (key, value, message)


def _cli_text(value) -> str:
    if isinstance(value, bool):
        return "maybe"  # the CLI parses true/false itself
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "[]"
    return str(value)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_train_cli_exits_2_naming_the_key_and_starts_nothing(data, monkeypatch_module, capfd):
    key = data.draw(st.sampled_from([k for k in FUZZED if k != "plugins"]))
    value = data.draw(bad_value(key))
    text = _cli_text(value)
    argv = ["train", f"--{key.replace('_', '-')}={text}"]
    if key == "strength":
        argv += ["--attack", "alie"]
    try:
        RunSpec.from_dict({**_base(key), key: _cli_value(key, text)})
    except SpecError:
        pass
    else:  # the text spelling of this value happens to be valid (e.g. "1e-3" -> 0.001)
        return
    COUNT["cli"] = COUNT.get("cli", 0) + 1
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    assert f"byzstress train: error: {key}:" in err, (argv, err)
    assert "Traceback" not in err


def _cli_value(key: str, text: str):
    from byzstress.cli import _convert

    return _convert(key, text)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()

    def started(*args, **kwargs):
        raise AssertionError("a training run started on bad input")

    mp.setattr(runner, "run", started)
    yield mp
    mp.undo()


STUDY = {
    "dataset": "fmnist",
    "train": {"n": 7, "f": 1, "steps": 6, "eval_every": 3},
    "betas": [0.5],
    "seeds": [0],
    "defenses": ["CM"],
    "attacks": [{"name": "none"}, {"name": "alie", "strengths": [8]}],
}
STUDY_KEYS = {
    ("train", "n"): bad_value("n"),
    ("train", "f"): bad_value("f"),
    ("train", "steps"): bad_value("steps"),
    ("train", "lr"): bad_value("lr"),
    ("train", "momentum"): bad_value("momentum"),
    ("train", "weight_decay"): bad_value("weight_decay"),
    ("train", "delta"): st.one_of(NONFINITE, st.floats(min_value=0.5), TEXT),
    ("train", "momentum_form"): bad_value("momentum_form"),
    ("train", "defense_units"): bad_value("defense_units"),
    ("betas",): st.lists(bad_value("beta"), min_size=1, max_size=2),
    ("seeds",): st.lists(st.one_of(st.integers(max_value=-1), NONFINITE, TEXT), min_size=1),
    ("defenses",): st.lists(BAD_SPECS["defense"], min_size=1, max_size=1),
    ("attacks",): st.one_of(
        st.lists(st.builds(dict, name=BAD_SPECS["attack"]), min_size=1, max_size=1),
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.just("alie"),
                    "strengths": st.lists(
                        st.one_of(NONFINITE, TEXT.filter(lambda t: t not in ("default", "auto"))),
                        min_size=1,
                        max_size=1,
                    ),
                }
            ),
            min_size=1,
            max_size=1,
        ),
    ),
    ("axes",): st.one_of(
        st.dictionaries(
            st.sampled_from(["momentum", "lr", "n"]), st.lists(NONFINITE, min_size=1), min_size=1
        ),
        st.just({"colour": [1]}),
        st.just({"momentum": [2.0]}),
    ),
    ("report", "breaking_fraction"): st.one_of(NONFINITE, st.floats(min_value=1.01)),
}


def _config_errors(cfg: dict) -> str:
    """What the Snakefile does before any job: schema, finiteness, study expansion."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from byzstress.runs.study import selected_studies

    try:
        validate(copy.deepcopy(cfg), "workflow/schemas/config.schema.yaml")
        check_finite(cfg)
        for name in selected_studies(cfg):
            expand_study(name, cfg["definitions"][name], cfg)
    except (WorkflowError, StudyError) as err:
        return str(err)
    return ""


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_bad_study_is_refused_before_any_job_naming_the_key(data, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    path = data.draw(st.sampled_from(sorted(STUDY_KEYS)))
    value = data.draw(STUDY_KEYS[path])
    study = copy.deepcopy(STUDY)
    node = study
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    if path == ("train", "delta"):
        del study["train"]["f"]  # else "give either f or delta" answers, whatever δ is
    cfg = {"studies": ["s"], "definitions": {"s": study}}
    assert _config_errors({"studies": ["s"], "definitions": {"s": STUDY}}) == ""
    COUNT["study"] = COUNT.get("study", 0) + 1
    message = _config_errors(cfg)
    assert message, (path, value)
    names = {path[-1], path[-1].rstrip("s")} | (set(value) if isinstance(value, dict) else set())
    assert any(name in message for name in names), (path, value, message)


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("lr", [0.0, 1e-9, -1.0, 5.0]),
        ("lr_gamma", [0.0, 0.5, -0.1]),
        ("momentum", [0.0, 0.999, 1.0, -0.01]),
        ("weight_decay", [0.0, -1e-9, 1.0]),
        ("steps", [0, 1, 100]),
        ("n", [0, 1, 3]),
        ("f", [0, -1]),
        ("eval_every", [0, 1]),
        ("min_samples", [0, 1]),
        ("eval_batch_size", [0, 1]),
        ("checkpoint_every", [0, -1]),
        ("batch_size", [0, 1]),
        ("momentum_form", ["ema", "heavy", "nesterov"]),
        ("split", ["iid", "shards[k=2]", "stripes"]),
    ],
)
def test_a_study_without_torch_refuses_what_the_run_spec_refuses(
    key, values, repo_root, monkeypatch
):
    """The run spec is the one place a knob's rules live: expanding a study where the
    registries (torch) cannot be imported still checks every field, as a job would."""
    from byzstress.runs import study as study_mod

    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(study_mod, "_registries_importable", lambda: False)
    for value in values:
        train = {"n": 7, "f": 0, key: value} if key in ("n", "f") else {key: value}
        cfg = {"studies": ["s"], "definitions": {"s": {**copy.deepcopy(STUDY), "train": train}}}
        expansion = _config_errors(cfg)
        try:
            RunSpec.from_dict(train)
            by_spec = ""
        except SpecError as err:
            by_spec = str(err)
        assert bool(expansion) == bool(by_spec), (key, value, expansion, by_spec)
        assert by_spec in expansion, (key, value, expansion, by_spec)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "0", "1.5", "half"])
def test_calibration_fraction_flag_refuses_bad_numbers(text, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["calibration", str(tmp_path / "runs.csv"), "--out-prefix", "x", "--fraction", text])
    assert err.value.code == 2
    assert "--fraction" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("train", "axes", "key"),
    [
        ({"delta": "abc"}, None, "train.delta"),
        ({"delta": "0.2"}, None, "train.delta"),  # a string is not a fraction
        ({"delta": 0.5}, None, "train.delta"),  # no honest majority
        ({"n": "x", "delta": 0.2}, None, "train.n"),
        ({"delta": 0.2}, {"delta": [0.1, 0.7]}, "axes.delta"),
        ({"split": {"k": 2}}, None, "split"),  # a mapping, not a split spec
        ({"model": {"a": 1}}, None, "model"),
    ],
)
def test_delta_and_mapping_values_are_refused_naming_the_key(train, axes, key, repo_root):
    """δ is not a run-spec field (the spec holds f = ⌊δ n⌋), so the study checks it; a
    mapping where a value belongs reaches the spec's checks instead of a TypeError."""
    study = {**copy.deepcopy(STUDY), "train": {"n": 7, "steps": 6, **train}}
    if axes:
        study["axes"] = axes
    with pytest.raises(StudyError, match=re.escape(key)):
        expand_study("s", study, {})
    ok = {**copy.deepcopy(STUDY), "train": {"n": 7, "delta": 0.2}}
    assert dict(expand_study("s", ok, {})[0].spec)["f"] == 1  # ⌊0.2 · 7⌋


def test_a_spec_built_in_python_is_checked_before_it_trains():
    """RunSpec(...) skips from_dict; the simulator still runs the field checks, so a typo'd
    momentum form is refused instead of training heavy-ball momentum."""
    from byzstress.sim.training import Simulator

    with pytest.raises(SpecError, match="momentum_form"):
        Simulator(RunSpec(momentum_form="nesterov"))
