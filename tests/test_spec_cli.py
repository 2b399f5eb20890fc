"""Bad configuration values fail before training with a message naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from byzstress.sim.spec import RunSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ({"dataset": "mnist"}, "dataset: 'mnist' is not valid; valid choices: fmnist, cifar10"),
    ({"attack": "zzz"}, "attack: unknown attack 'zzz'; valid: .*alie"),
    ({"defense": "zzz"}, "defense: unknown aggregation rule 'zzz'; valid: .*trmean"),
    ({"defense": "trmean(zzz)"}, "defense: unknown pre-aggregator 'zzz'; valid: .*nnm"),
    ({"beta": 0}, "beta: must be > 0"),
    ({"beta": -0.5}, "beta: must be > 0"),
    ({"beta": "uniform"}, "beta: must be a number > 0 or 'iid'"),
    ({"f": 9}, "f: need f < n/2"),
    ({"n": 17, "f": -1}, "f: must be >= 0"),
    ({"steps": -5}, "steps: must be >= 1"),
    ({"steps": 1.5}, "steps: must be an integer"),
    ({"lr": "1e-3"}, "lr: must be a number, got the string '1e-3' .*write 1.0e-3"),
    ({"attack": "alie", "strength": "big"}, "strength: must be a number, 'auto' or empty"),
    ({"attack": "alie", "strength": "8"}, "strength: .*YAML reads 1e-3 as a string"),
    ({"attack": "sf", "strength": 2.0}, "attack: unknown parameter.*strength|strength: attack"),
    ({"attack": "alie", "strength": "auto", "knowledge": "local"}, "attack: .*omniscient"),
    ({"knowledge": "psychic"}, "knowledge: 'psychic' is not valid; valid choices: omniscient"),
    ({"momentum": 1.0}, "momentum: must be >= 0 and < 1"),
    ({"momentum_form": "nesterov"}, "momentum_form: .*valid choices: ema, heavy"),
    ({"model": "vgg"}, "model: 'vgg' is not valid; valid choices: fmnist_cnn"),
    ({"lr_milestones": [1.5]}, "lr_milestones: must be > 0 and < 1"),
    ({"device": "tpu"}, "device: 'tpu' is not valid; valid choices: auto, cpu, cuda"),
    ({"colour": "red"}, "unknown key.*'colour'.*valid keys: dataset"),
    ({"augment": "yes"}, "augment: must be true or false"),
]


@pytest.mark.parametrize(("values", "message"), BAD)
def test_bad_config_names_the_key(values, message):
    with pytest.raises(SpecError, match=message):
        RunSpec.from_dict(values)


def test_good_config_resolves_dataset_defaults():
    s = RunSpec.from_dict({"dataset": "cifar10", "beta": "iid", "strength": None}).resolved()
    assert (s.model, s.batch_size, s.lr_milestones, s.augment) == ("cifar_cnn", 32, [0.75], True)
    f = RunSpec.from_dict({"attack": "alie", "strength": 8}).resolved()
    assert (f.model, f.batch_size, f.lr_milestones, f.augment) == ("fmnist_cnn", 25, [], False)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "byzstress", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "abc"], "lr: must be a number, got the string 'abc'"),
        (["--dataset", "mnist"], "dataset: 'mnist' is not valid; valid choices: fmnist"),
        (["--defense", "cm(zzz)"], "unknown pre-aggregator 'zzz'"),
        (["--n", "4", "--f", "2"], "f: need f < n/2"),
        (["--attack", "alie", "--strength", "strong"], "strength: must be a number"),
        (["--steps", "-3"], "steps: must be >= 1"),
        (["--beta", "0"], "beta: must be > 0"),
        (["--bogus", "1"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_bad_values_exit_nonzero_with_message(args, message):
    r = _cli("train", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_help_documents_every_knob():
    r = _cli("train", "--help")
    assert r.returncode == 0
    for key in RunSpec.keys():  # noqa: SIM118 (a classmethod, not a dict)
        assert "--" + key.replace("_", "-") in r.stdout, key


def test_cli_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dataset: fmnist\nbeta: 0\n")
    r = _cli("train", "--config", str(cfg))
    assert r.returncode == 2 and "beta: must be > 0" in r.stderr
    # the flag overrides the file: the error is now about lr, not beta
    r = _cli("train", "--config", str(cfg), "--beta", "0.5", "--lr", "x")
    assert r.returncode == 2 and "lr:" in r.stderr and "beta" not in r.stderr
    cfg.write_text("dataset: fmnist\nlr: 1e-3\n")  # YAML 1.1 reads this as a string
    r = _cli("train", "--config", str(cfg))
    assert r.returncode == 2 and "write 1.0e-3" in r.stderr


def test_every_job_of_every_study_runs_the_spec_its_study_built(monkeypatch):
    """The spec a study builds travels to its job as one JSON object: for every run of every
    study in config.yaml, what `byzstress train --spec` hands the simulator equals the spec
    the expansion built and validated (no lossy round trip through flags)."""
    import yaml

    from byzstress import cli
    from byzstress.runs import runner
    from byzstress.runs.study import expand_study

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    got: list[RunSpec] = []
    monkeypatch.setattr(runner, "run", lambda spec, **kw: got.append(spec) or _fake_result())
    count = 0
    for name, study in config["definitions"].items():
        for run in expand_study(name, study, config):
            built = RunSpec(**dict(run.spec))
            assert cli.main(["train", "--spec", run.json]) == 0
            assert got[-1] == built, (name, run.key)
            assert got[-1].to_dict() == RunSpec.from_json(run.json).to_dict()
            count += 1
    assert count == len(got) > 1000  # every study, not a sample


def test_the_workflow_hands_each_job_its_runs_json(tmp_path):
    """What Snakemake puts on a train job's command line is Run.json, verbatim."""
    import json
    import shlex

    import yaml

    from byzstress.runs.study import expand_study

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    runs = {
        run.path("results"): run
        for run in expand_study("demo", config["definitions"]["demo"], config)
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "--forceall",
            "--config",
            "studies=[demo]",
            "--",
            *runs,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    seen = 0
    for line in r.stdout.splitlines():
        if " train --spec " not in line:
            continue
        words = shlex.split(line.split("OMP_NUM_THREADS=", 1)[1].split(" > ", 1)[0])
        spec = words[words.index("--spec") + 1]
        out = words[words.index("--out") + 1]
        assert spec == runs[out].json
        assert RunSpec.from_json(spec) == RunSpec(**dict(runs[out].spec))
        assert json.loads(spec)["seed"] == int(out.rsplit("seed~", 1)[1].removesuffix(".json"))
        seen += 1
    assert seen == len(runs)


def _fake_result() -> dict:
    return {
        "status": "ok",
        "max_acc": 0.5,
        "final_acc": 0.5,
        "steps_done": 1,
        "steps_per_sec": 1.0,
        "device": "cpu",
    }
