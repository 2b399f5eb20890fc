"""Published run records: the record itself (byzstress.runs.record), the archive round trip
(byzstress.runs.archive) and retraining a record to check it (byzstress.runs.verify)."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from byzstress.runs import archive, verify
from byzstress.runs.record import KEYS, SCHEMA, RecordError, RunRecord
from byzstress.runs.runner import run
from byzstress.sim.spec import RunSpec


def _records(tmp_path):
    runs = tmp_path / "runs"
    for i, name in enumerate(
        [
            "beta~0.1/alie~8/cm/seed~0",
            "beta~0.1/alie~8/cm/seed~1",
            "beta~iid/none~default/rfa-buck/seed~0",
        ]
    ):
        p = runs / f"{name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"max_acc": 0.5 + i / 10, "curve": {"step": [1]}}))
    (runs / "beta~0.1/alie~8/cm/seed~2.json.ckpt").write_bytes(b"not a record")
    (runs / "beta~0.1/alie~8/cm/.seed~2.json.x.tmp").write_bytes(b"partial")
    return runs


ROOT = Path(__file__).resolve().parents[1]


def test_pack_restore_round_trip_is_exact_and_deterministic(tmp_path):
    runs = _records(tmp_path)
    manifest = archive.pack(runs, tmp_path / "a.tar.xz")
    assert sorted(manifest["records"]) == [
        "beta~0.1/alie~8/cm/seed~0.json",
        "beta~0.1/alie~8/cm/seed~1.json",
        "beta~iid/none~default/rfa-buck/seed~0.json",
    ]  # no checkpoint, no temporary file
    archive.pack(runs, tmp_path / "b.tar.xz")
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    out = tmp_path / "restored"
    assert archive.restore(tmp_path / "a.tar.xz", out) == {
        "restored": 3,
        "unchanged": 0,
        "replaced": 0,
    }
    for name in manifest["records"]:
        assert (out / name).read_bytes() == (runs / name).read_bytes()
    mtime = (out / "beta~0.1/alie~8/cm/seed~0.json").stat().st_mtime_ns
    assert archive.restore(tmp_path / "a.tar.xz", out)["unchanged"] == 3
    assert (out / "beta~0.1/alie~8/cm/seed~0.json").stat().st_mtime_ns == mtime


def test_restored_records_get_the_mode_open_would_give(tmp_path):
    runs = _records(tmp_path)
    archive.pack(runs, tmp_path / "a.tar.xz")
    old = os.umask(0o027)
    try:
        archive.restore(tmp_path / "a.tar.xz", tmp_path / "out")
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "out").rglob("*.json")}
    assert modes == {0o640}  # not mkstemp's 0600


def test_restore_refuses_to_overwrite_a_different_record(tmp_path):
    runs = _records(tmp_path)
    archive.pack(runs, tmp_path / "a.tar.xz")
    (runs / "beta~0.1/alie~8/cm/seed~0.json").write_text('{"max_acc": 0.9}')
    (runs / "beta~iid/none~default/rfa-buck/seed~0.json").unlink()  # sorts after the conflict
    with pytest.raises(archive.ArchiveError, match=r"exists with other content.*--overwrite"):
        archive.restore(tmp_path / "a.tar.xz", runs)
    assert not (runs / "beta~iid/none~default/rfa-buck/seed~0.json").exists()  # nothing written
    counts = archive.restore(tmp_path / "a.tar.xz", runs, overwrite=True)
    assert counts == {"restored": 1, "unchanged": 1, "replaced": 1}
    assert json.loads((runs / "beta~0.1/alie~8/cm/seed~0.json").read_text())["max_acc"] == 0.5


def test_pack_only_some_records_of_a_shared_runs_folder(tmp_path):
    runs = _records(tmp_path)
    only = [runs / "beta~0.1/alie~8/cm/seed~1.json", runs / "beta~0.1/alie~8/cm/seed~9.json"]
    manifest = archive.pack(runs, tmp_path / "a.tar.xz", only=only)
    assert list(manifest["records"]) == ["beta~0.1/alie~8/cm/seed~1.json"]  # ~9 not trained
    with pytest.raises(archive.ArchiveError, match="not below"):
        archive.pack(runs, tmp_path / "b.tar.xz", only=[tmp_path / "elsewhere.json"])
    # a whole study packed from the wrong folder: counted, three named, not 240
    many = [tmp_path / f"elsewhere{i}.json" for i in range(5)]
    with pytest.raises(archive.ArchiveError, match="5 of the 5 records") as err:
        archive.pack(runs, tmp_path / "b.tar.xz", only=many)
    assert str(err.value).count("elsewhere") == 3 and "--runs-dir" in str(err.value)
    with pytest.raises(archive.ArchiveError, match="among the 1 records asked for"):
        archive.pack(runs, tmp_path / "b.tar.xz", only=[runs / "beta~0.1/none/seed~0.json"])


def test_pack_cli_packs_one_studys_records(tmp_path):
    """Two studies share one runs folder (runs_of): --study packs only the first's."""
    config = tmp_path / "config.yaml"
    study = (
        "dataset: fmnist\n    train: {{n: 10, steps: 4}}\n    betas: [0.1]\n"
        "    seeds: [0]\n    defenses: [CM]\n    attacks: [{{name: alie, strengths: [{z}]}}]"
    )
    config.write_text(
        f"results: {tmp_path / 'results'}\ndefinitions:\n"
        f"  a:\n    {study.format(z=8)}\n"
        f"  b:\n    runs_of: a\n    {study.format(z=2)}\n"
    )
    cli = [sys.executable, "-m", "byzstress"]
    paths = {}
    for name in ("a", "b"):
        r = subprocess.run(
            [*cli, "runs", name, "--config", str(config)], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        (paths[name],) = r.stdout.split()
        (tmp_path / paths[name]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / paths[name]).write_text('{"max_acc": 0.5}')
    runs = tmp_path / "results/a/runs"
    pack = ["pack", str(runs), "--out", str(tmp_path / "b.tar.xz"), "--study", "b"]
    r = subprocess.run(
        [*cli, *pack, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "packed 1 run records of the 1 of study 'b'" in r.stdout
    (name,) = archive.read_records(tmp_path / "b.tar.xz")
    assert (runs / name).resolve() == (tmp_path / paths["b"]).resolve()
    assert "alie~2" in name


def _write_tar(path, entries):
    import lzma

    with lzma.open(path, "wb") as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_tampered_or_unsafe_archive_is_refused(tmp_path):
    runs = _records(tmp_path)
    manifest = archive.pack(runs, tmp_path / "a.tar.xz")
    records = dict(archive.members(tmp_path / "a.tar.xz"))
    head = json.dumps(manifest).encode()
    name = "beta~0.1/alie~8/cm/seed~0.json"
    changed = [(archive.MANIFEST, head)] + [
        (f"runs/{k}", b'{"max_acc": 1.0}' if k == name else v) for k, v in records.items()
    ]
    _write_tar(tmp_path / "tampered.tar.xz", changed)
    with pytest.raises(archive.ArchiveError, match="does not match its manifest"):
        archive.restore(tmp_path / "tampered.tar.xz", tmp_path / "out")
    _write_tar(
        tmp_path / "unsafe.tar.xz", [(archive.MANIFEST, head), ("runs/../../evil.json", b"{}")]
    )
    with pytest.raises(archive.ArchiveError, match="unsafe member"):
        archive.restore(tmp_path / "unsafe.tar.xz", tmp_path / "out")
    missing = [(archive.MANIFEST, head)] + [
        (f"runs/{k}", v) for k, v in records.items() if k != name
    ]
    _write_tar(tmp_path / "missing.tar.xz", missing)
    with pytest.raises(archive.ArchiveError, match="records missing"):
        list(archive.members(tmp_path / "missing.tar.xz"))
    with pytest.raises(archive.ArchiveError, match="records missing"):
        archive.restore(tmp_path / "missing.tar.xz", tmp_path / "partial")
    assert not (tmp_path / "partial").exists()  # the good records were not written either
    with pytest.raises(archive.ArchiveError, match="does not exist"):
        archive.pack(tmp_path / "nowhere", tmp_path / "c.tar.xz")
    (tmp_path / "junk.tar.xz").write_bytes(b"junk")
    with pytest.raises(archive.ArchiveError, match="not a readable"):
        archive.read_records(tmp_path / "junk.tar.xz")


# --------------------------------------------------------------------------- verify


def _spec(root, **kw):
    base = {
        "steps": 4,
        "eval_every": 2,
        "data_root": str(root),
        "device": "cpu",
        "attack": "alie",
        "strength": 2.0,
        "defense": "rfa(buck)",
        "beta": 0.5,
    }
    return RunSpec.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def record_file(fmnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "run.json"
    run(_spec(fmnist_root), out=out)
    return out


@pytest.fixture(scope="module")
def record(record_file):
    return json.loads(record_file.read_text())


def test_verify_retrains_a_record_bit_identically(record):
    rep = verify.compare(record, verify.retrain(record))
    assert rep["identical"], [k for k, q in rep["quantities"].items() if not q["identical"]]
    assert {"curve.test_acc", "curve.test_loss", "max_acc", "diagnostics.rel_err"} <= set(
        rep["quantities"]
    )
    for side in ("recorded_on", "retrained_on"):
        env = rep[side]
        assert env["device"] == "cpu" and env["torch"] and env["threads"] >= 1
        assert env["cpu_capability"]  # which kernel set ran


def test_verify_names_the_quantity_that_differs(record):
    changed = copy.deepcopy(record)
    changed["curve"]["test_acc"][1] += 0.0125
    changed["max_acc"] = max(changed["curve"]["test_acc"])
    changed["diagnostics"]["cos"][0] *= 1.5
    rep = verify.compare(changed, verify.retrain(record))
    assert not rep["identical"]
    q = rep["quantities"]
    assert q["curve.test_acc"]["identical"] is False
    assert q["curve.test_acc"]["max_abs_diff"] == pytest.approx(0.0125)
    assert q["curve.test_acc"]["first_step"] == 4 and q["curve.test_acc"]["values_differing"] == 1
    assert q["diagnostics.cos"]["first_step"] == 2
    # the untouched quantities stay identical: the report points at what changed
    assert q["curve.test_loss"]["identical"] and q["final_acc"]["identical"]
    text = verify.report_markdown([rep])
    assert "differs" in text and "| curve.test_acc | no | 0.0125 | 4 |" in text


def test_verify_cli_on_an_archive_reports_seed_spread_and_strict_exit(record, tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in ((0, None), (1, 0.5)):
        r = copy.deepcopy(record)
        if acc is not None:  # a sibling seed: only its max accuracy is read
            r["max_acc"] = acc
        (runs / "cell").mkdir(parents=True, exist_ok=True)
        (runs / f"cell/seed~{seed}.json").write_text(json.dumps(r))
    archive.pack(runs, tmp_path / "runs.tar.xz")
    reports = verify.verify_archive(tmp_path / "runs.tar.xz", ["cell/seed~0.json"])
    assert reports[0]["identical"] and reports[0]["seed_spread"]["max_acc"]["seeds"] == 2
    (runs / "cell/seed~1.json").unlink()
    bad = copy.deepcopy(record)
    bad["final_acc"] = 0.0
    (runs / "cell/seed~0.json").write_text(json.dumps(bad))
    cmd = [sys.executable, "-m", "byzstress", "verify", str(runs / "cell/seed~0.json")]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "rep.json")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (
        json.loads((tmp_path / "rep.json").read_text())[0]["quantities"]["final_acc"]["recorded"]
        == 0.0
    )
    strict = subprocess.run([*cmd, "--strict"], capture_output=True, text=True)
    assert strict.returncode == 1 and "final_acc" in strict.stdout
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "byzstress",
            "verify",
            str(tmp_path / "runs.tar.xz"),
            "--run",
            "nope",
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no record 'nope'" in missing.stderr


def test_verify_compares_a_diverged_run_in_its_json_form():
    """A record stores NaN as null (JSON has no NaN); a retrained diverged run holds NaN."""
    nan = float("nan")
    base = {
        "curve": {
            "step": [2, 4],
            "test_acc": [0.5, 0.1],
            "test_loss": [1.0, nan],
            "train_loss": [1.0, nan],
        },
        "status": "diverged",
        "steps_done": 4,
        "max_acc": 0.5,
        "final_acc": 0.1,
        "diagnostics": {"step": [2], "cos": [nan]},
    }
    record = json.loads(json.dumps(base).replace("NaN", "null"))
    assert verify.compare(record, base)["identical"]
    moved = copy.deepcopy(base)
    moved["curve"]["test_loss"][1] = 2.0  # a finite value where the record has none
    rep = verify.compare(record, moved)
    assert not rep["identical"] and rep["quantities"]["curve.test_loss"]["first_step"] == 4


# --------------------------------------------------------------------------- the record

PUBLISHED = sorted(ROOT.glob("docs/*/*.tar.xz"))


def test_a_record_the_runner_writes_round_trips_byte_for_byte(
    record, record_file, fmnist_root, tmp_path
):
    """RunRecord.from_dict(d).to_dict() == d for a record the runner wrote, in its key
    order, and writing it again gives the runner's bytes."""
    rec = RunRecord.from_dict(record)
    assert rec.to_dict() == record and list(rec.to_dict()) == list(record) == list(KEYS)
    assert rec.schema == SCHEMA and not rec.extra and not rec.absent
    assert rec.spec_obj == _spec(fmnist_root) and rec.resolved_obj.model == "fmnist_cnn"
    assert rec.curve_of("test_acc") == list(
        zip(record["curve"]["step"], record["curve"]["test_acc"], strict=True)
    )
    again = tmp_path / "again.json"
    RunRecord.read(record_file).write(again)
    assert again.read_bytes() == record_file.read_bytes()


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_published_record_loads_and_round_trips(path):
    """Each record of each published archive reads as a RunRecord with a spec and a
    resolved spec, and gives its own JSON back (the keys older code did not write stay
    absent, none is unknown)."""
    n = 0
    for name, data in archive.members(path):
        d = json.loads(data)
        rec = RunRecord.from_dict(d)
        assert rec.to_dict() == d, name
        assert not rec.extra, name
        assert rec.absent <= {"heterogeneity"}, name  # the only key older records lack
        assert rec.spec_obj.seed == d["spec"]["seed"] and rec.resolved_obj.model, name
        assert rec.strength == d["resolved"]["strength"]
        n += 1
    assert n and len(archive.read_records(path)) == n


def test_a_record_missing_old_optional_keys_loads_with_none(record):
    """Keys that older code did not write load as None; the record writes them back
    absent; an unknown key is kept; a newer schema is refused."""
    old = {
        k: v
        for k, v in record.items()
        if k not in {"schema", "timings", "kernels", "grad_engine", "heterogeneity", "batch"}
    }
    old["spec"] = {k: v for k, v in record["spec"].items() if k != "split"}
    old["renamed_key"] = [1, 2]
    rec = RunRecord.from_dict(old)
    assert rec.schema is None and rec.timings is None and rec.kernels is None
    assert rec.grad_engine is None and rec.heterogeneity is None and rec.batch is None
    assert rec.cpu_model is None and rec.extra == {"renamed_key": [1, 2]}
    assert rec.spec_obj.split == "dirichlet"  # a knob missing from the record: its default
    assert rec.to_dict() == old and list(rec.to_dict())[-1] == "renamed_key"
    rec.kernels = {"cpu_model": "X"}  # a value set since is written
    assert rec.to_dict()["kernels"] == {"cpu_model": "X"}
    # a spec with a name RunSpec no longer knows still loads, unchecked
    renamed = {**record, "spec": {**record["spec"], "defense": "gone", "old_knob": 1}}
    assert RunRecord.from_dict(renamed).spec_obj.defense == "gone"
    with pytest.raises(RecordError, match="newer"):
        RunRecord.from_dict({**record, "schema": SCHEMA + 1})
