"""Atomic writes leave either nothing or a complete file, and their leftovers are found."""

import pytest

from byzstress import storage


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
