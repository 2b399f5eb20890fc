"""Atomic writes leave either nothing or a complete file, and their leftovers are found."""

import errno

import pytest

from byzstress.runs import storage


def test_a_failed_write_leaves_neither_target_nor_temp(tmp_path):
    target = tmp_path / "r.json"

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        storage.atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_a_real_temp_name_is_recognised(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    made = []
    real_replace = storage.os.replace

    def killed(src, dst):  # the process "dies" between writing and renaming
        made.append(src)
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.os, "replace", killed)
    monkeypatch.setattr(storage.Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(KeyboardInterrupt):
        storage.write_json(target, {"a": 1})
    monkeypatch.undo()
    assert storage.os.replace is real_replace
    assert [p.name for p in storage.remove_stale_temps(target)] == [storage.Path(made[0]).name]
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_one_target_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "r.json"
    storage.write_json(target, {"a": 1})
    mine = [tmp_path / ".r.json.k1x2ab_9.tmp", tmp_path / ".r.json.zzzzzzzz.tmp"]
    others = [
        tmp_path / ".r.json.ckpt.k1x2ab_9.tmp",  # a temp of r.json.ckpt, another target
        tmp_path / ".s.json.k1x2ab_9.tmp",
        tmp_path / ".r.json.k1x2ab_9",  # not a temp file
    ]
    for p in mine + others:
        p.write_bytes(b"x")
    assert sorted(storage.remove_stale_temps(target)) == sorted(mine)
    assert not any(p.exists() for p in mine)
    assert all(p.exists() for p in others)
    assert storage.remove_stale_temps(tmp_path / "missing" / "x.json") == []
    assert target.exists()


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_unwritable_folder_is_a_clear_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.tempfile, "mkstemp", _no_space)
    with pytest.raises(storage.WriteError, match=r"cannot write '.*r\.json': No space left"):
        storage.write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(storage.WriteError, match="No space left"):
        storage.check_writable(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_a_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "state.ckpt"
    storage.save_checkpoint(target, {"step": 2})
    monkeypatch.setattr(storage.torch, "save", _no_space)
    with pytest.raises(storage.WriteError, match=r"state\.ckpt"):
        storage.save_checkpoint(target, {"step": 4})
    assert storage.load_checkpoint(target) == {"step": 2}  # not corrupted, not replaced
    assert [p.name for p in tmp_path.iterdir()] == ["state.ckpt"]  # no temp file left


def test_the_train_command_fails_before_training_when_it_cannot_write(
    tmp_path, monkeypatch, capsys, fmnist_root
):
    from byzstress.cli import main
    from byzstress.runs import runner

    monkeypatch.setattr(storage.tempfile, "mkstemp", _no_space)
    monkeypatch.setattr(
        runner.SimulatorBatch, "step", lambda *a, **k: pytest.fail("training started")
    )
    out = tmp_path / "runs" / "r.json"
    code = main(["train", "--steps", "2", "--data-root", str(fmnist_root), "--out", str(out)])
    assert code == 4
    err = capsys.readouterr().err
    assert "byzstress train: error: cannot write" in err and "No space left" in err
    assert not out.exists()


def test_a_run_whose_checkpoint_write_fails_resumes_to_the_same_numbers(
    tmp_path, monkeypatch, fmnist_root
):
    from byzstress.runs import runner
    from byzstress.sim.spec import RunSpec

    spec = RunSpec(
        steps=6,
        eval_every=2,
        checkpoint_every=2,
        data_root=str(fmnist_root),
        device="cpu",
        attack="alie",
        strength=2.0,
        defense="trmean(nnm)",
    )
    ref = runner.run(spec, out=tmp_path / "ref.json")
    out, ckpt = tmp_path / "r.json", tmp_path / "r.json.ckpt"
    real_save, calls = storage.torch.save, []

    def fail_second(obj, fh):
        calls.append(obj["step"])
        if len(calls) == 2:  # the checkpoint at step 4: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, fh)

    monkeypatch.setattr(storage.torch, "save", fail_second)
    with pytest.raises(storage.WriteError, match=r"r\.json\.ckpt"):
        runner.run(spec, out=out, checkpoint=ckpt)
    assert not out.exists() and storage.load_checkpoint(ckpt)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json.ckpt", "ref.json"]
    monkeypatch.setattr(storage.torch, "save", real_save)  # the fault is fixed
    res = runner.run(spec, out=out, checkpoint=ckpt)
    assert res["resumed_from_step"] == 2
    for key in ("curve", "diagnostics", "max_acc", "final_acc", "status"):
        assert res[key] == ref[key], key
    assert not ckpt.exists()
