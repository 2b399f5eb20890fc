"""The README's numbers are generated from the committed study outputs (docgen.readme),
and those outputs are the published run records'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from byzstress.analysis.reporting import collect
from byzstress.runs import archive
from docgen import readme

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

    # the files and every output their blocks read (the claims' results need claims.yaml)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    for f in ("config.yaml", "claims.yaml", *readme.FILES):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
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
    with pytest.raises(ValueError, match="unknown generated block 'nope'; valid: ") as err:
        readme.render("<!-- begin generated nope -->\nx\n<!-- end generated nope -->\n", ROOT)
    assert str(err.value).endswith("valid: " + ", ".join(readme.BLOCKS))


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


def test_figure1cpu_claim_renders_claim_1_from_the_claims_results(tmp_path):
    """readme.figure1cpu_claim_block on a hand-made docs/claims-results.csv: one row per
    C1 comparison (defense, contrast, seeds, estimate [CI], Holm p, outcome, collapses),
    the outcomes counted; other claims' rows and C1's secondary family left out."""
    import shutil

    from byzstress.analysis.claims import COLUMNS

    shutil.copy(ROOT / "claims.yaml", tmp_path / "claims.yaml")
    (tmp_path / "docs").mkdir()
    row = dict.fromkeys(COLUMNS, "")
    rows = [
        {
            **row,
            "claim": "C1",
            "family": "primary",
            "beta": "0.1 v iid",
            "defense": "CM",
            "contrast": "ALIE z = 8 (the paper's)",
            "seeds": "5 v 5",
            "estimate": 12.34,
            "ci_low": 3.21,
            "ci_high": 21.47,
            "p_for_adj": 0.0123,
            "outcome": "supported",
            "collapse_a": "2/5 [5, 85] %",
            "collapse_b": "0/5 [0, 52] %",
        },
        {
            **row,
            "claim": "C1",
            "family": "primary",
            "beta": "0.1 v iid",
            "defense": "CCLIP",
            "contrast": "IPM ε = 2.5 (the paper's)",
            "seeds": "5 v 1",
            "estimate": -2.0,
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "p_for_adj": 1.0,
            "outcome": "inconclusive",
        },
        {**row, "claim": "C1", "family": "secondary", "defense": "X", "outcome": "supported"},
        {**row, "claim": "C2", "family": "primary", "defense": "Y", "outcome": "supported"},
    ]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "docs/claims-results.csv", index=False)
    text = readme.figure1cpu_claim_block(tmp_path)
    lines = text.splitlines()
    assert lines[2] == (
        "| CM | ALIE z = 8 (the paper's) | 5 v 5 | 12.3 [3.2, 21.5] | 0.012 | supported "
        "| 2/5 [5, 85] % | 0/5 [0, 52] % |"
    )
    assert lines[3].startswith("| CCLIP | IPM ε = 2.5 (the paper's) | 5 v 1 | -2.0 [–, –] |")
    assert "| X |" not in text and "| Y |" not in text
    assert "1 supported, 1 inconclusive of 2 comparisons" in text
    assert "Welch" in text and "Holm" in text and "docs/claims-results.csv" in text
    # no C1 row yet: said so, not an empty table
    pd.DataFrame(rows[3:], columns=COLUMNS).to_csv(
        tmp_path / "docs/claims-results.csv", index=False
    )
    assert readme.figure1cpu_claim_block(tmp_path).startswith("Untested")


def _demo_runs(cells: dict[tuple[str, str], tuple[float, ...]]) -> pd.DataFrame:
    rows = []
    for (defense, label), accs in cells.items():
        attack = "none" if label == "No attack" else label.split()[0].lower()
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "dataset": "fmnist",
                    "beta": "0.1",
                    "defense": defense,
                    "variant": "",
                    "attack": attack,
                    "strength": "",
                    "knowledge": "omniscient",
                    "attack_label": label,
                    "strength_value": float("nan"),
                    "seed": seed,
                    "status": "ok",
                    "max_acc": acc / 100,
                }
            )
    return pd.DataFrame(rows)


def test_demo_findings_describe_the_lowest_attack_against_the_runner_up(tmp_path):
    """readme.demo_findings_block on hand-made cells: the attack with the lowest mean and
    the runner-up's gap with its 95 % Welch interval, described, not tested (the pair is
    chosen by its means)."""
    from byzstress.analysis.compare import welch

    cells = {
        ("A", "No attack"): (80.0, 81.0, 82.0),
        ("A", "ALIE (z=8)"): (40.0, 41.0, 42.0),
        ("A", "IPM (ε=2.5)"): (60.0, 61.0, 62.0),
        ("B", "No attack"): (80.0, 81.0, 82.0),
        ("B", "ALIE (z=8)"): (50.0, 55.0, 60.0),
        ("B", "IPM (ε=2.5)"): (51.0, 56.0, 61.0),
    }
    (tmp_path / "docs/demo").mkdir(parents=True)
    _demo_runs(cells).to_csv(tmp_path / "docs/demo/runs.csv", index=False)
    lines = readme.demo_findings_block(tmp_path).splitlines()
    a = welch(cells[("A", "IPM (ε=2.5)")], cells[("A", "ALIE (z=8)")])
    assert lines[0].startswith("- **A**: no attack 81.0 %; drop per attack")
    assert lines[0].endswith(
        f"Lowest mean: ALIE (z=8) (41.0 %), below the runner-up IPM (ε=2.5) by +20.0 "
        f"[{a.ci_low:+.1f}, {a.ci_high:+.1f}]."
    )
    assert "by +1.0 [" in lines[1]
    # no verdict word: a pair picked by its means is described, not tested
    assert not any(w in "\n".join(lines[:2]) for w in ("supported", "inconclusive"))
    assert "Welch" in lines[-1] and "not a test" in lines[-1]


def test_the_sensitivity_blocks_state_the_rule_and_use_no_margin():
    """The blocks on the published sensitivity runs: the new outcomes, Welch and Holm named,
    no trace of the retired margin rule."""
    for name in ("verdicts", "sensitivity-comparisons", "sensitivity-options", "splits"):
        text = readme.BLOCKS[name](ROOT)
        assert "Welch" in text, name
        for retired in ("margin", "undecided", "holds", "provisional", "max(1"):
            assert retired not in text, (name, retired)
    text = readme.BLOCKS["verdicts"](ROOT)
    assert "| supported / contradicted / inconclusive |" in text and "Holm" in text
    assert "IPM (ε=2.5) is the runner-up" not in text


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
    cpu = records[path.removeprefix("results/sensitivity/runs/")].cpu_model
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
            rec.kernels = {**rec.kernels, "cpu_model": "Other CPU", "cpu_capability": "AVX2"}
        (runs / key).parent.mkdir(parents=True, exist_ok=True)
        (runs / key).write_text(json.dumps(rec.to_dict()))
    out = tmp_path / "docs/figure1cpu/runs.tar.xz"
    out.parent.mkdir(parents=True)
    archive.pack(runs, out)
    text = readme.figure1cpu_status_block(tmp_path)
    rows = dict(re.findall(r"^\| (iid|0\.5|0\.1) \| (.+?) \|$", text, re.M))

    def cpu(key: str) -> str:
        return f"{records[key].cpu_model} ({records[key].cpu_capability})"

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

    from byzstress.analysis.reporting import read_tidy, summarise

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


def test_table1cpu_table_keeps_the_papers_order_and_numbers_while_partly_trained(tmp_path):
    """A study published in parts: β = 0.3 only, CCLIP and CM (listed out of the paper's
    order), no IPM, Min-Max, Min-Sum or SF yet. The columns follow the paper's, and every
    paper number of those columns stands beside ours, trained or not."""
    from byzstress.analysis import paper
    from byzstress.analysis.labels import attack_label

    rows = [
        {
            "dataset": "fmnist",
            "beta": "0.3",
            "defense": d,
            "variant": "",
            "attack": attack,
            "strength": "" if s is None else s,
            "knowledge": "omniscient",
            "attack_label": attack_label(attack, s),
            "strength_value": s,
            "seed": seed,
            "max_acc": 0.8,
            "status": "ok",
        }
        for d in ("CCLIP", "CM")
        for attack, s in (("none", None), ("alie", 8))
        for seed in range(2)
    ]
    (tmp_path / "docs" / "table1cpu").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "docs" / "table1cpu" / "runs.csv", index=False)
    md = readme.table1cpu_table_block(tmp_path)
    head, _, *body = md.splitlines()
    assert head.index("CM (CMLS unavailable) (β=0.3) ours") < head.index("CCLIP (β=0.3) ours")
    labels = [line.split(" | ")[0].lstrip("| ") for line in body[:6]]
    assert labels == [attack_label("none", None), *paper.PAPER_ROWS]
    for row in paper.PAPER_ROWS:
        for col in ("CMLS", "CCLIP"):
            mean, std = paper.TABLE1[(0.3, row, col)]
            assert f"{mean:.2f} ± {std:.2f}" in md, (row, col)
    assert "RFA(buck)" not in head  # nothing of it trained: no column
