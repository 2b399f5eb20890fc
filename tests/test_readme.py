"""The README's numbers are generated from the committed study outputs (byzstress.readme),
and those outputs are the published run records'."""

from __future__ import annotations

from pathlib import Path

import pytest

from byzstress import archive, readme
from byzstress.reporting import collect

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", readme.FILES)
def test_every_generated_block_matches_the_outputs(name):
    text = (ROOT / name).read_text()
    assert readme.check(text, ROOT) == [], f"run `byzstress readme` and commit {name}"


def test_each_generator_has_its_block_in_one_of_the_files():
    names = [
        m.group("name") for f in readme.FILES for m in readme.BLOCK.finditer((ROOT / f).read_text())
    ]
    assert sorted(names) == sorted(readme.BLOCKS), "each block once, in one of readme.FILES"


def test_the_readme_command_checks_every_file_and_names_the_stale_one(tmp_path, capsys):
    import shutil

    from byzstress.cli import main

    for f in ("config.yaml", *readme.FILES):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    shutil.copy(ROOT / "docs/figure1cpu/runs.tar.xz", tmp_path / "docs/figure1cpu/runs.tar.xz")
    doc = tmp_path / "docs/figure1cpu/README.md"
    doc.write_text(doc.read_text().replace("| all | ", "| all | 1"))
    (tmp_path / "README.md").write_text("no blocks\n")
    assert main(["readme", "--root", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"{doc}: generated blocks out of date: figure1cpu-slices" in out
    assert "README.md: every generated block matches" in out
    assert main(["readme", "--root", str(tmp_path), "--readme", str(doc)]) == 0
    assert doc.read_text() == (ROOT / "docs/figure1cpu/README.md").read_text()


def test_an_edited_number_is_caught_with_its_block_named():
    text = (ROOT / "README.md").read_text()
    m = next(m for m in readme.BLOCK.finditer(text) if m.group("name") == "demo-table")
    body = m.group("body")
    i = next(i for i, ch in enumerate(body) if ch.isdigit())
    wrong = body[:i] + ("1" if body[i] != "1" else "2") + body[i + 1 :]
    edited = text[: m.start("body")] + wrong + text[m.end("body") :]
    assert readme.check(edited, ROOT) == ["demo-table"]
    assert readme.render(edited, ROOT) == text  # and `byzstress readme` puts it right


def test_an_unknown_block_is_an_error():
    with pytest.raises(ValueError, match="unknown generated block 'nope'; valid: verdicts"):
        readme.render("<!-- begin generated nope -->\nx\n<!-- end generated nope -->\n", ROOT)


@pytest.mark.parametrize(
    ("study", "runs", "name"),
    [
        ("demo", "demo", "runs"),
        ("demo", "demo", "runs-amd-epyc"),
        ("figure1cpu", "sensitivity", "runs"),
        ("splits", "sensitivity", "runs"),
    ],
)
def test_a_published_csv_is_what_its_published_records_give(
    tmp_path, monkeypatch, study, runs, name
):
    """docs/STUDY/NAME.csv, which the README's blocks read, against docs/STUDY/NAME.tar.xz."""
    import pandas as pd

    docs = ROOT / "docs" / study
    counts = archive.restore(docs / f"{name}.tar.xz", tmp_path / f"results/{runs}/runs")
    published = pd.read_csv(docs / f"{name}.csv").sort_values("path").reset_index(drop=True)
    assert counts["restored"] == len(published) > 0
    monkeypatch.chdir(tmp_path)
    paths = sorted(Path(f"results/{runs}/runs").rglob("*.json"))
    rebuilt = collect(paths).sort_values("path").reset_index(drop=True)
    assert list(published["path"]) == list(rebuilt["path"])
    for col in ("max_acc", "final_acc", "seed", "diag_rel_err"):
        assert published[col].tolist() == pytest.approx(rebuilt[col].tolist(), nan_ok=True), col


def test_claim_1_is_decided_only_on_complete_strength_grids():
    import pandas as pd

    from byzstress.detection import complete_betas

    rows = [
        {"beta": b, "defense": d, "attack_name": a, "strength_value": z, "x": 0}
        for b in ("iid", "0.5", "0.1")
        for d in ("A", "B")
        for a in ("ALIE", "IPM")
        for z in (0.1, 1.0, 8.0)
        if not (b == "0.5" and d == "B" and z == 8.0)  # 0.5: one panel short
    ] + [{"beta": "0.3", "defense": "A", "attack_name": "ALIE", "strength_value": 1.0, "x": 0}]
    kept, left_out = complete_betas(pd.DataFrame(rows))
    assert sorted(set(kept["beta"])) == ["0.1", "iid"]
    assert left_out == ["0.3", "0.5"]


def test_shared_cells_count_a_changed_record_and_name_the_largest_difference(tmp_path):
    """readme.shared_cells_block on a copy of the published files with one shared run's
    max accuracy moved: that run's CPU counts one identical run fewer, and the move is the
    largest difference, named."""
    import re
    import shutil

    import pandas as pd

    for rel in (
        "docs/sensitivity/runs.csv",
        "docs/figure1cpu/runs.csv",
        "docs/figure1cpu/runs.tar.xz",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)

    def counts(text: str) -> dict[str, tuple[int, int]]:
        found = re.findall(r"trained again on (.+?), (\d+) of (\d+) have", text)
        return {cpu: (int(a), int(b)) for cpu, a, b in found}

    before = counts(readme.shared_cells_block(tmp_path))
    assert before and all(0 <= a <= b for a, b in before.values())
    sens = pd.read_csv(tmp_path / "docs/sensitivity/runs.csv")
    fig = pd.read_csv(tmp_path / "docs/figure1cpu/runs.csv")
    m = fig.reset_index().merge(sens, on="path", suffixes=("", "_s"))
    same = m[(m["max_acc"] == m["max_acc_s"]) & (m["final_acc"] == m["final_acc_s"])]
    assert len(same), "the published files have a shared run computed alike"
    records = archive.read_records(tmp_path / "docs/figure1cpu/runs.tar.xz")
    row = same["index"].iloc[0]
    path = fig.loc[row, "path"]
    cpu = records[path.removeprefix("results/sensitivity/runs/")]["kernels"]["cpu_model"]
    was = sens.loc[sens["path"] == path, "max_acc"].iloc[0]
    fig.loc[row, "max_acc"] = was - 0.5  # 50 points below: the largest difference by far
    fig.to_csv(tmp_path / "docs/figure1cpu/runs.csv", index=False)
    text = readme.shared_cells_block(tmp_path)
    after = counts(text)
    assert after[cpu] == (before[cpu][0] - 1, before[cpu][1])
    assert f"at most 50.00: `{path.removeprefix('results/sensitivity/runs/')}`" in text


def test_figure1cpu_status_counts_the_records_per_beta_and_names_their_cpus(tmp_path):
    """readme.figure1cpu_status_block on an archive of three published records, one of
    them relabelled as computed on another CPU: each β row counts its records and names
    each record's own CPU and capability; the rest of the study counts as not trained."""
    import json
    import re
    import shutil

    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    records = archive.read_records(ROOT / "docs/figure1cpu/runs.tar.xz")
    iid = sorted(k for k in records if k.startswith("beta~iid/"))[:2]
    low = sorted(k for k in records if k.startswith("beta~0.1/"))[:1]
    runs = tmp_path / "runs"
    for i, key in enumerate(iid + low):
        rec = records[key]
        if i == 1:
            rec["kernels"] = {**rec["kernels"], "cpu_model": "Other CPU", "cpu_capability": "AVX2"}
        (runs / key).parent.mkdir(parents=True, exist_ok=True)
        (runs / key).write_text(json.dumps(rec))
    out = tmp_path / "docs/figure1cpu/runs.tar.xz"
    out.parent.mkdir(parents=True)
    archive.pack(runs, out)
    text = readme.figure1cpu_status_block(tmp_path)
    rows = dict(re.findall(r"^\| (iid|0\.5|0\.1) \| (.+?) \|$", text, re.M))

    def cpu(key: str) -> str:
        k = records[key]["kernels"]
        return f"{k['cpu_model']} ({k['cpu_capability']})"

    assert rows["iid"].startswith("2 / ")
    assert "Other CPU (AVX2): 1" in rows["iid"] and f"{cpu(iid[0])}: 1" in rows["iid"]
    assert rows["0.1"].startswith("1 / ") and rows["0.1"].endswith(f"{cpu(low[0])}: 1")
    assert rows["0.5"].startswith("0 / ") and rows["0.5"].endswith("| –")
    assert re.search(r"^3 of \d+ runs\.", text, re.M)


def test_demo_cpus_count_a_changed_record_and_a_changed_cell(tmp_path):
    """readme.demo_cpus_block on a copy of the demo's published files: of a record made
    alike on both CPUs, moving it counts one identical record fewer and names it as the
    largest difference; of a cell of the older AMD EPYC table made to agree, moving it
    counts one agreeing cell fewer."""
    import re
    import shutil

    import pandas as pd

    from byzstress.reporting import read_tidy, summarise

    docs = tmp_path / "docs/demo"
    docs.mkdir(parents=True)
    for name in (
        "runs.csv",
        "runs.tar.xz",
        "runs-amd-epyc.csv",
        "runs-amd-epyc.tar.xz",
        "table1-amd-epyc.csv",
    ):
        shutil.copy(ROOT / "docs/demo" / name, docs / name)

    def counts() -> tuple[int, int, int, str]:
        text = readme.demo_cpus_block(tmp_path)
        same = re.search(r"Record by record, (\d+) of (\d+) runs", text)
        agree = re.search(r"two decimals\), (\d+) of 20 cells agree in mean and std", text)
        assert same and agree, text
        return int(same[1]), int(same[2]), int(agree[1]), text

    here = pd.read_csv(docs / "runs.csv")
    there = pd.read_csv(docs / "runs-amd-epyc.csv")
    row = there.index[there["path"] == here["path"].iloc[0]][0]
    for col in ("max_acc", "final_acc"):
        there.loc[row, col] = here[col].iloc[0]
    there.to_csv(docs / "runs-amd-epyc.csv", index=False)
    same, total, _, _ = counts()
    assert 1 <= same <= total == 60
    there.loc[row, "max_acc"] -= 0.5  # 50 points: the largest difference by far
    there.to_csv(docs / "runs-amd-epyc.csv", index=False)
    moved, total, _, text = counts()
    assert moved == same - 1
    assert f"at most 50.00 (`{there.loc[row, 'path'].removeprefix('results/demo/runs/')}`" in text

    shutil.copy(ROOT / "docs/demo/runs-amd-epyc.csv", docs / "runs-amd-epyc.csv")
    cell = summarise(read_tidy(docs / "runs-amd-epyc.csv")).iloc[0]
    table = pd.read_csv(docs / "table1-amd-epyc.csv")
    at = (table["defense"] == cell["defense"]) & (table["attack_label"] == cell["attack_label"])
    table.loc[at, ["mean", "std"]] = [round(cell["mean"], 2), round(cell["std"], 2)]
    table.to_csv(docs / "table1-amd-epyc.csv", index=False)
    agree = counts()[2]
    assert agree >= 1
    for col in ("mean", "std"):  # either one moved: the cell no longer agrees
        moved = table.copy()
        moved.loc[at, col] += 0.01
        moved.to_csv(docs / "table1-amd-epyc.csv", index=False)
        assert counts()[2] == agree - 1, col


def test_figure1cpu_times_are_each_cpus_median_and_range_of_its_records(tmp_path):
    import json

    runs = tmp_path / "runs"
    times = {"AMD EPYC": [100.0, 300.0, 120.0], "Intel Xeon": [50.0]}
    for cpu, ws in times.items():
        for i, w in enumerate(ws):
            rec = {"wall_time_s": w, "kernels": {"cpu_model": cpu}}
            path = runs / cpu.replace(" ", "-") / f"seed~{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))
    # a record without a time (an old schema) is left out, not counted as 0 s
    (runs / "old.json").write_text(json.dumps({"kernels": {"cpu_model": "AMD EPYC"}}))
    archive.pack(runs, tmp_path / "docs/figure1cpu/runs.tar.xz")
    lines = readme.figure1cpu_times_block(tmp_path).splitlines()
    assert lines[2] == "| AMD EPYC | 3 | 120 | 100 – 300 |"
    assert lines[3] == "| Intel Xeon | 1 | 50 | 50 – 50 |"
