#!/usr/bin/env python
"""How long a whole study of ``config.yaml`` takes on this machine, and whether several runs
sharing one GPU pay.

Sections:

* ``estimate`` -- expands the study exactly as the workflow does
  (:func:`byzstress.runs.study.expand_study`), groups its runs by what decides a step's cost
  (attack, strength, knowledge, defense; beta and seed do not change the work), builds one
  ``Simulator`` per group and times its ``step()`` (synchronised before and after, as the
  run loop does on CUDA) and its ``evaluate()``. A run costs ``steps * step +
  evals * eval`` with ``evals = ceil(steps / eval_every)``; the study is the sum over its
  runs, one run at a time.
* ``share`` -- starts K processes (K in ``--share``) that each train one configuration of
  the study on the same device at the same time, and reports their summed steps per second
  against K = 1. This is what a workflow gets from running K jobs per GPU
  (``snakemake --resources gpu=K`` with ``gpu: 1`` per job); it also says whether batching
  several seeds into one process would pay, since both fill the same idle GPU time.
* ``profile`` -- ``torch.profiler`` over a few steps of one group: the busiest kernels
  and how much of the wall time the device is busy.

Usage::

    python benchmarks/bench_study.py --study table1 --device cuda --out table1-cuda.json
    python benchmarks/bench_study.py --study demo --sections estimate --steps 5   # CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_step as bs  # noqa: I001
from byzstress.sim.spec import RunSpec
from byzstress.runs.study import Run, expand_study
from byzstress.sim.batch import SimulatorBatch
from byzstress.sim.training import Simulator

REPO = Path(__file__).resolve().parent.parent
COST_KEYS = ("attack", "strength", "knowledge", "defense")
SECTIONS = ("estimate", "batch", "share", "profile")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def study_runs(config_path: Path, study: str) -> list[Run]:
    config_path = config_path if config_path.is_absolute() else REPO / config_path
    config = yaml.safe_load(config_path.read_text())
    defs = config.get("definitions", {})
    if study not in defs:
        raise SystemExit(f"error: study {study!r} not in {config_path}; valid: {sorted(defs)}")
    return expand_study(study, defs[study], config)


def cost_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by the knobs that change a step's work, in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        spec = dict(run.spec)
        key = " ".join(f"{k}={spec.get(k)}" for k in COST_KEYS if spec.get(k) is not None)
        groups.setdefault(key, []).append(run)
    return groups


def run_spec(run: Run | dict[str, Any], device: torch.device, root: Path) -> RunSpec:
    spec = dict(run.spec) if isinstance(run, Run) else dict(run)
    spec.update(device=device.type, data_root=str(root))
    return RunSpec.from_dict(spec)


def evals_per_run(spec: RunSpec) -> int:
    return math.ceil(spec.steps / spec.eval_every)


FAKE_DATA = "random CIFAR-10-shaped tensors (CIFAR-10 absent; step cost ignores pixels)"


def prepare_data(runs: list[Run], device: torch.device, root: Path) -> str:
    """Makes random CIFAR-10-shaped tensors when CIFAR-10 is absent; says which data."""
    if dict(runs[0].spec)["dataset"] == "cifar10" and not bs.cifar10_present(root):
        bs.fake_cifar10(device)
        return FAKE_DATA
    return "real"


def simulator(spec: RunSpec, device: torch.device) -> Simulator:
    """One run's simulator on the data this process loaded once (or the stand-in)."""
    return Simulator(spec, device=device, datasets=bs.splits(spec.dataset, spec.data_root, device))


def batch_of(specs: list[RunSpec], device: torch.device) -> SimulatorBatch:
    """A batch of runs of one configuration on the data this process loaded once."""
    s = specs[0]
    return SimulatorBatch(specs, device, datasets=bs.splits(s.dataset, s.data_root, device))


def _time_batch(batch: SimulatorBatch, device: torch.device, args: argparse.Namespace) -> dict:
    active = [True] * len(batch)
    return bs.summary(
        bs.time_calls(lambda: batch.step(active), device, args.warmup, args.steps, args.budget)
    )


def bench_estimate(
    runs: list[Run], device: torch.device, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Per cost group: one run alone (``run()``'s path) and, unless ``--no-batched``, all
    the group's runs as one :class:`SimulatorBatch`; the study's time both ways."""
    groups = cost_groups(runs)
    rows: dict[str, Any] = {}
    total = {"sequential_s": 0.0, "batched_s": 0.0}
    for key, members in groups.items():
        specs = [run_spec(m, device, root) for m in members]
        spec = specs[0]
        log(f"[estimate] {key} ({len(members)} runs) ...")
        single = batch_of(specs[:1], device)
        step = _time_batch(single, device, args)
        ev = bs.summary(bs.time_calls(single.sims[0].evaluate, device, 1, args.eval_repeats))
        del single
        evals = evals_per_run(spec)
        per_run = spec.steps * step["median_s"] + evals * ev["median_s"]
        row: dict[str, Any] = {
            "runs": len(members),
            "steps": spec.steps,
            "evals": evals,
            "step": step,
            "eval": ev,
            "per_run_s": per_run,
        }
        total["sequential_s"] += per_run * len(members)
        msg = f"  step {step['median_s'] * 1e3:.2f} ms, eval {ev['median_s'] * 1e3:.1f} ms"
        if args.batched and len(specs) > 1:
            batch = batch_of(specs, device)
            bstep = _time_batch(batch, device, args)
            del batch
            per_group = spec.steps * bstep["median_s"] + evals * len(specs) * ev["median_s"]
            row.update(batch_step=bstep, per_group_batched_s=per_group)
            total["batched_s"] += per_group
            msg += f", batch of {len(specs)}: {bstep['median_s'] * 1e3:.2f} ms"
        else:
            total["batched_s"] += per_run * len(members)
        rows[key] = row
        log(msg)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"groups": rows, "runs": len(runs), **total}


def bench_batch(
    runs: list[Run], device: torch.device, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Step time of a :class:`SimulatorBatch` of R runs of run ``--share-run``'s
    configuration (seeds 0..R-1, the study's betas in turn), per R in ``--batch-sizes``."""
    base = dict(runs[args.share_run].spec)
    betas = sorted({dict(r.spec)["beta"] for r in runs}, key=str)
    out: dict[str, Any] = {"run": base, "sizes": {}}
    one = None
    for r in [int(x) for x in bs.csv_items(args.batch_sizes)]:
        specs = [
            run_spec({**base, "seed": i, "beta": betas[i % len(betas)]}, device, root)
            for i in range(r)
        ]
        log(f"[batch] R={r} ...")
        res = _time_batch(batch_of(specs, device), device, args)
        per_run = res["median_s"] / r
        one = one or per_run
        res.update(per_run_s=per_run, speedup_vs_1=one / per_run)
        out["sizes"][str(r)] = res
        log(f"  {res['median_s'] * 1e3:.2f} ms/step, {per_run * 1e3:.2f} ms per run-step")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_profile(
    runs: list[Run], device: torch.device, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sim = simulator(run_spec(runs[args.share_run], device, root), device)
    for _ in range(args.warmup):
        sim.step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    bs.sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(args.profile_steps):
            sim.step()
        bs.sync(device)
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = ka.table(sort_by=sort, row_limit=20)
    # kernel events only: op events repeat their kernels' time (as the table's total does)
    busy_us = sum(
        e.self_device_time_total
        for e in ka
        if e.device_type == DeviceType.CUDA and not e.is_user_annotation
    )
    return {
        "run": dict(runs[args.share_run].spec),
        "steps": args.profile_steps,
        "wall_s": wall,
        "device_busy_s": busy_us / 1e6,
        "device_busy_fraction": busy_us / 1e6 / wall if device.type == "cuda" else None,
        "table": table,
    }


# --------------------------------------------------------------------------- share


def worker(args: argparse.Namespace) -> int:
    """One of K concurrent trainers: build, warm up, say ready, wait for the common start,
    train for ``--share-window`` seconds, print one JSON line."""
    t_proc = float(os.environ.get("BENCH_T0", time.time()))
    device = torch.device(args.device)
    root = args.data_root
    runs = study_runs(args.config, args.study)
    data_kind = prepare_data(runs, device, root)
    sim = simulator(run_spec(runs[args.share_run], device, root), device)
    for _ in range(args.warmup):
        sim.step()
    bs.sync(device)
    ready = time.time()
    (args.barrier / f"ready-{os.getpid()}").touch()
    go = args.barrier / "go"
    while not go.exists():  # every worker starts the timed window together
        time.sleep(0.02)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.share_window:
        sim.step()
        bs.sync(device)  # as the run loop does
        steps += 1
    elapsed = time.perf_counter() - t0
    out = {"steps": steps, "elapsed_s": elapsed, "startup_s": ready - t_proc, "data": data_kind}
    print(json.dumps(out), flush=True)
    return 0


def bench_share(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {"window_s": args.share_window, "levels": {}}
    base = None
    for k in [int(x) for x in bs.csv_items(args.share)]:
        barrier = Path(tempfile.mkdtemp(prefix="bench-share-"))
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--device",
            device.type,
            "--study",
            args.study,
            "--config",
            str(args.config),
            "--data-root",
            str(args.data_root),
            "--warmup",
            str(args.warmup),
            "--share-run",
            str(args.share_run),
            "--share-window",
            str(args.share_window),
            "--barrier",
            str(barrier),
            "--threads",
            str(max(1, (os.cpu_count() or 1) // k)),  # no oversubscribed CPU cores
        ]
        log(f"[share] K={k} ...")
        env = dict(os.environ, BENCH_T0=str(time.time()))
        procs = [
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
            for _ in range(k)
        ]
        deadline = time.time() + args.share_lead
        while time.time() < deadline and any(p.poll() is None for p in procs):
            if len(list(barrier.glob("ready-*"))) >= k:
                break
            time.sleep(0.05)
        (barrier / "go").touch()  # stragglers past the deadline start late (flagged)
        n_ready = len(list(barrier.glob("ready-*")))
        results, errors = [], []
        for p in procs:
            so, se = p.communicate()
            if p.returncode == 0 and so.strip():
                results.append(json.loads(so.strip().splitlines()[-1]))
            else:
                errors.append(se[-2000:])
        rate = sum(r["steps"] / r["elapsed_s"] for r in results)
        row = {
            "processes": k,
            "workers": results,
            "errors": errors,
            "total_steps_per_s": rate,
            "per_process_steps_per_s": rate / max(1, len(results)),
            "ready_at_start": n_ready,
        }
        if base is None and rate > 0:
            base = rate
        row["speedup_vs_1"] = rate / base if base else None
        out["levels"][str(k)] = row
        log(
            f"  {rate:.1f} steps/s in total ({row['speedup_vs_1'] or 0:.2f}x), "
            f"{len(errors)} errors, {n_ready}/{k} ready at the start"
        )
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--study", default="table1", help="study of the config (default table1)")
    p.add_argument(
        "--config",
        type=Path,
        default=Path("config.yaml"),
        help="the workflow's config; a relative path is taken from the repository root",
    )
    p.add_argument("--sections", default=None, help=f"comma list of {SECTIONS}")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--out", type=Path)
    p.add_argument("--steps", type=int, default=20, help="timed steps per group (default 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=None, help="timed seconds per group, at most")
    p.add_argument("--share", default="1,2,4,8", help="process counts of the share section")
    p.add_argument("--share-run", type=int, default=0, help="index of the run trained in share")
    p.add_argument("--share-window", type=float, default=15.0, help="seconds of timed training")
    p.add_argument("--share-lead", type=float, default=120.0, help="seconds allowed to start up")
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--batch-sizes", default="1,2,3,6,12", help="R values of the batch section")
    p.add_argument(
        "--no-batched",
        dest="batched",
        action="store_false",
        help="estimate: skip timing each group as one batch",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    a = p.parse_args(argv)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    a.data_root = a.data_root or Path(os.environ.get("BYZSTRESS_DATA", "/tmp/bench-data"))
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        return worker(args)
    device = torch.device(args.device)
    args.data_root.mkdir(parents=True, exist_ok=True)
    sections = bs.csv_items(args.sections) if args.sections else list(SECTIONS)
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise SystemExit(f"error: unknown sections {bad}; valid: {list(SECTIONS)}")
    runs = study_runs(args.config, args.study)
    result: dict[str, Any] = {
        "schema": 1,
        "command": ["python", *sys.argv],  # no machine path in a record
        "study": args.study,
        "machine": bs.machine_info(device),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": prepare_data(runs, device, args.data_root),
    }
    if "estimate" in sections:
        est = bench_estimate(runs, device, args.data_root, args)
        result["estimate"] = est
        print(f"\n== {args.study}: {len(runs)} runs on {device.type} ==")
        for key, r in est["groups"].items():
            line = (
                f"{key:<58} x{r['runs']:<3} step {r['step']['median_s'] * 1e3:7.2f} ms  "
                f"eval {r['eval']['median_s'] * 1e3:7.1f} ms  run {r['per_run_s'] / 60:6.1f} min"
            )
            if "batch_step" in r:
                line += f"  batch step {r['batch_step']['median_s'] * 1e3:7.2f} ms"
            print(line)
        print(f"one run at a time: {est['sequential_s'] / 3600:.2f} h")
        print(f"each group as one batch: {est['batched_s'] / 3600:.2f} h")
    if "batch" in sections:
        bt = bench_batch(runs, device, args.data_root, args)
        result["batch"] = bt
        print(f"\n== batch: R runs of run {args.share_run}'s configuration in one process ==")
        for r, row in bt["sizes"].items():
            print(
                f"R={r:<3} {row['median_s'] * 1e3:8.2f} ms/step  "
                f"{row['per_run_s'] * 1e3:7.2f} ms per run-step  ({row['speedup_vs_1']:.2f}x)"
            )
    if "profile" in sections:
        prof = bench_profile(runs, device, args.data_root, args)
        result["profile"] = prof
        print(f"\n== profile ({prof['steps']} steps of run {args.share_run}) ==")
        print(prof["table"])
        frac = prof["device_busy_fraction"]
        busy = f"; device busy {frac:.0%} of it" if frac is not None else ""
        print(f"wall {prof['wall_s'] * 1e3:.1f} ms{busy}")
    if "share" in sections:
        sh = bench_share(args, device)
        result["share"] = sh
        print(f"\n== share: K processes training run {args.share_run} at once ==")
        for k, r in sh["levels"].items():
            print(
                f"K={k:<3} total {r['total_steps_per_s']:8.1f} steps/s  "
                f"({r['speedup_vs_1'] or 0:.2f}x)  per process {r['per_process_steps_per_s']:.1f}"
                f"  errors {len(r['errors'])}"
            )
        if "sequential_s" in result.get("estimate", {}) and sh["levels"]:
            best_k, best = max(sh["levels"].items(), key=lambda kv: kv[1]["speedup_vs_1"] or 0)
            if best["speedup_vs_1"]:
                t = result["estimate"]["sequential_s"] / best["speedup_vs_1"]
                result["estimate"]["shared_s"] = {"processes": int(best_k), "seconds": t}
                print(f"{args.study} with {best_k} runs per device at once: {t / 3600:.2f} h")
    if args.out:
        bs.write_result(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
