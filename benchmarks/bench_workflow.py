#!/usr/bin/env python
"""Runs per hour of a whole study, end to end through Snakemake, and where a run's wall
time goes.

It runs ``snakemake`` on the study's run JSONs (the training phase: every job's start-up,
data loading, simulator set-up, training, evaluation and JSON) in a fresh results folder,
with the profile, cores and threads per job given, then reads what the jobs left behind:

* each run's Snakemake ``benchmark:`` file (``s``: the job's wall time, shell included);
* each run's JSON (``wall_time_s``, ``train_time_s``, ``eval_time_s``, and ``timings``
  where the code writes it).

The training phase lasts from the first job's start (its JSON's modification time less its
``s``) to the last JSON written. A run's wall time splits into

* ``startup``: from the process's start to the run loop (interpreter, imports, argument
  checks; ``timings.startup_s``; where the JSON lacks it, ``s`` less ``wall_time_s``, which
  includes ``other``);
* ``setup``: data loading and building the simulator (``timings.setup_s``, else the rest of
  ``wall_time_s``);
* ``train`` and ``eval``: the run loop's own clocks;
* ``write``: checkpoints (``timings.write_s``, where present);
* ``other``: the rest of ``s``: the JSON's write, the process's exit, the loop's own
  bookkeeping, Snakemake's shell and benchmark wrapper;
* ``idle``: slot time no job used (``phase * slots - sum(s)``, per run), with ``slots`` =
  concurrent training jobs = cores // threads.

``--compare OTHER.json`` checks that every run's curve (steps, test accuracy, test loss,
train loss) and status are identical to another benchmark's: the same numbers, whatever
the schedule.

Usage::

    python benchmarks/bench_workflow.py --study demo --out demo-bench.json
    python benchmarks/bench_workflow.py --study demo --threads 2 --out before.json
    python benchmarks/bench_workflow.py --study demo --limit 4 --compare before.json  # quick
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PARTS = ("startup", "setup", "train", "eval", "write", "other", "idle")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def study_runs(repo: Path, config: dict[str, Any], study: str) -> list[Any]:
    """The study's runs as the workflow of ``repo`` expands them (its own ``src/``)."""
    sys.path.insert(0, str(repo / "src"))
    from byzstress.runs.study import expand_study

    defs = config.get("definitions", {})
    if study not in defs:
        raise SystemExit(f"error: --study {study!r} is not in the config; valid: {sorted(defs)}")
    return expand_study(study, defs[study], config)


def machine(repo: Path) -> dict[str, Any]:
    """The machine and checkout the benchmark ran on. Call it after :func:`study_runs`: like
    the study, ``byzstress.runs.machine`` is then the timed checkout's own."""
    import torch

    from byzstress.runs.machine import cpu_model, device_name, versions

    try:
        snakemake = metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        snakemake = None
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lib = versions()
    return {
        "cpu": cpu_model() or device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": lib["python"],
        "torch": lib["torch"],
        "snakemake": snakemake,
        "git_commit": commit or None,
        "git_dirty": bool(dirty),
        "loadavg_start": os.getloadavg(),
    }


def read_tsv(path: Path) -> dict[str, str]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return rows[-1] if rows else {}


def run_rows(runs: list[Any], results: Path, study: str) -> list[dict[str, Any]]:
    """One row per run: its job time, its JSON's clocks and its curve."""
    rows = []
    for run in runs:
        path = Path(run.path(str(results)))
        rel = path.relative_to(results / study / "runs").with_suffix("")
        tsv = results / study / "benchmarks" / f"{rel}.tsv"
        res = json.loads(path.read_text())
        job_s = float(read_tsv(tsv)["s"])
        end = path.stat().st_mtime
        t = res.get("timings") or {}
        wall = float(res["wall_time_s"])
        train, ev = float(res["train_time_s"]), float(res["eval_time_s"])
        write = float(t.get("write_s", 0.0))
        setup = float(t["setup_s"]) if "setup_s" in t else wall - train - ev - write
        startup = t.get("startup_s")
        startup = job_s - wall if startup is None else float(startup)
        rows.append(
            {
                "run": str(rel),
                "job_s": job_s,
                "start": end - job_s,
                "end": end,
                "startup": startup,
                "other": job_s - startup - setup - train - ev - write,
                "setup": setup,
                "train": train,
                "eval": ev,
                "write": write,
                "threads": res.get("threads"),
                "steps": res.get("steps_done"),
                "status": res["status"],
                "max_acc": res["max_acc"],
                "curve": res["curve"],
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], slots: int, wall: float) -> dict[str, Any]:
    phase = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    n = len(rows)
    busy = sum(r["job_s"] for r in rows)
    per_run = {p: sum(r[p] for r in rows) / n for p in PARTS if p != "idle"}
    per_run["idle"] = max(0.0, phase * slots - busy) / n
    return {
        "runs": n,
        "slots": slots,
        "snakemake_wall_s": wall,
        "training_phase_s": phase,
        "runs_per_hour": n / phase * 3600,
        "job_s_mean": busy / n,
        "per_run_s": per_run,
        "slot_seconds_per_run": phase * slots / n,
    }


def compare(rows: list[dict[str, Any]], other: dict[str, Any]) -> dict[str, Any]:
    """Runs whose status or curve differ from ``other``'s (a benchmark JSON)."""
    theirs = {r["run"]: r for r in other["rows"]}
    same, differ, missing = 0, [], []
    for r in rows:
        o = theirs.get(r["run"])
        if o is None:
            missing.append(r["run"])
        elif o["status"] == r["status"] and o["curve"] == r["curve"]:
            same += 1
        else:
            keys = [k for k in r["curve"] if r["curve"][k] != o["curve"].get(k)]
            max_acc = [o["max_acc"], r["max_acc"]]
            differ.append({"run": r["run"], "curve_keys": keys, "max_acc": max_acc})
    return {"identical": same, "different": differ, "not_in_other": missing}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--study", default="demo", help="study of the config (default demo)")
    p.add_argument("--repo", type=Path, default=REPO, help="the workflow to run (default: ours)")
    p.add_argument("--config", type=Path, default=None, help="default: REPO/config.yaml")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="snakemake's working directory (default: REPO; a relative data_root is taken from it)",
    )
    p.add_argument("--profile", default=None, help="snakemake --profile (default: the workflow's)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per training job (--set-threads train=T); default: the study's",
    )
    p.add_argument("--limit", type=int, default=None, help="only the study's first N runs")
    p.add_argument("--results", type=Path, default=None, help="results folder (default: a new one)")
    p.add_argument("--keep", action="store_true", help="keep the results folder")
    p.add_argument("--compare", type=Path, default=None, help="a benchmark JSON to compare with")
    p.add_argument("--label", default=None, help="a name for this configuration (in the JSON)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("snakemake_args", nargs="*", help="passed on to snakemake (after --)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    repo = a.repo.resolve()
    workdir = (a.workdir or repo).resolve()
    config_path = (a.config or repo / "config.yaml").resolve()
    config = yaml.safe_load(config_path.read_text())
    runs = study_runs(repo, config, a.study)[: a.limit]
    results = (a.results or Path(tempfile.mkdtemp(prefix="bench-workflow-"))).resolve()
    if results.exists() and any(results.iterdir()):
        raise SystemExit(f"error: --results {results} is not empty; the benchmark needs a new one")
    targets = [run.path(str(results)) for run in runs]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,  # before --config, whose values are a list
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        str(a.cores),
        "--config",
        f"results={results}",
        f"studies=[{a.study}]",
    ]
    if a.profile:
        cmd += ["--profile", a.profile]
    if a.threads:
        cmd += ["--set-threads", f"train={a.threads}"]
    cmd += a.snakemake_args
    log(f"[bench_workflow] {len(runs)} runs of {a.study} -> {results}")
    info = machine(repo)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"error: snakemake exited with {proc.returncode}")
    rows = run_rows(runs, results, a.study)
    names = {
        "python": sys.executable,
        "repo": repo,
        "workdir": workdir,
        "results": results,
        "config": config_path,
    }
    if a.out:
        names["out"] = a.out.resolve()
    if a.compare:
        names["compare"] = a.compare.resolve()
    job_threads = {r["threads"] for r in rows}  # what the jobs ran with (Snakemake caps it)
    slots = max(1, a.cores // max(t or 1 for t in job_threads))
    summary = summarise(rows, slots, wall)
    result: dict[str, Any] = {
        "schema": 1,
        "label": a.label,
        "command": portable([sys.executable, *sys.argv], names),
        "snakemake_command": portable(cmd, names),
        "study": a.study,
        "cores": a.cores,
        "threads_per_job": sorted(t for t in job_threads if t is not None),
        "machine": info,
        "loadavg_end": os.getloadavg(),
        "summary": summary,
        "rows": rows,
    }
    if a.compare:
        result["compare"] = compare(rows, json.loads(a.compare.read_text()))
    print_report(result)
    if a.out:
        from byzstress.runs.storage import write_json  # the timed checkout's, as above

        write_json(a.out, result)
        print(f"wrote {a.out}")
    if not a.keep and a.results is None:
        shutil.rmtree(results, ignore_errors=True)
    return 0


def portable(args: list[str], names: dict[str, Path | str]) -> list[str]:
    """``args`` with the machine's own paths replaced by ``<name>`` placeholders, so that a
    record says what ran without naming where."""
    order = sorted(names.items(), key=lambda kv: -len(str(kv[1])))  # longest prefix first
    out = []
    for arg in args:
        for name, path in order:
            arg = arg.replace(str(path), f"<{name}>")
        out.append(arg)
    return out


def print_report(result: dict[str, Any]) -> None:
    s = result["summary"]
    m = result["machine"]
    print(
        f"\n== {result['study']}: {s['runs']} runs, {result['cores']} cores, "
        f"{result['threads_per_job']} threads per job ({s['slots']} at once) on {m['cpu']} "
        f"({m['cpu_count']} CPUs) =="
    )
    print(f"snakemake wall        {s['snakemake_wall_s']:8.1f} s")
    rate = f"({s['runs_per_hour']:.0f} runs/hour)"
    print(f"training phase        {s['training_phase_s']:8.1f} s   {rate}")
    print(f"slot-seconds per run  {s['slot_seconds_per_run']:8.2f} s")
    print("where a run's wall time goes (mean per run):")
    total = sum(s["per_run_s"].values())
    for part, sec in s["per_run_s"].items():
        print(f"  {part:<8} {sec:7.2f} s  {sec / total:6.1%}")
    if "compare" in result:
        c = result["compare"]
        print(
            f"compared with the other benchmark: {c['identical']} identical, "
            f"{len(c['different'])} different, {len(c['not_in_other'])} not in it"
        )
        for d in c["different"][:10]:
            print(f"  differs: {d['run']} {d['curve_keys']} max_acc {d['max_acc']}")


if __name__ == "__main__":
    sys.exit(main())
