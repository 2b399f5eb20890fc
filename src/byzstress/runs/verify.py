"""Retrain a published run from its recorded spec and compare it with the record.

A run is a pure function of its spec, its seed and the machine: on the same machine, with
the same torch and thread count, a retrained run is bit-identical to its record. On
another CPU the float32 kernels round differently (``kernels`` in every run JSON: the CPU
model, the ATen capability, oneDNN's ISA cap), and the difference grows with training;
:func:`compare` says by how much each curve differs, and :func:`verify_archive` puts that
beside the seed-to-seed spread of the same cell in the study, so that a reader can tell
rounding (well inside the spread) from a changed result.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from .record import RunRecord

__all__ = ["ENV_KEYS", "compare", "environment", "report_markdown", "retrain", "verify_archive"]

CURVES = ("test_acc", "test_loss", "train_loss")
SCALARS = ("status", "steps_done", "max_acc", "final_acc")
ENV_KEYS = ("device", "device_name", "threads", "grad_engine")


def environment(record: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """Where a run was computed: device, CPU and kernels, threads, torch version."""
    record = RunRecord.of(record)
    env = {k: getattr(record, k) for k in ENV_KEYS}
    env["torch"] = record.torch_version
    env.update(record.kernels or {})
    return env


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _diff_lists(a: list[Any], b: list[Any], steps: list[int]) -> dict[str, Any]:
    """Bitwise equal, or the largest absolute difference and the first step that differs."""
    if len(a) != len(b):
        return {"identical": False, "note": f"{len(a)} values recorded, {len(b)} retrained"}
    diffs = [
        (abs(x - y) if x is not None and y is not None else math.inf, s)
        for x, y, s in zip(a, b, steps, strict=True)
        if not _same(x, y)
    ]
    if not diffs:
        return {"identical": True}
    return {
        "identical": False,
        "max_abs_diff": max(d for d, _ in diffs),
        "first_step": diffs[0][1],
        "values_differing": len(diffs),
        "values": len(a),
    }


def _as_json(record: RunRecord | dict[str, Any]) -> RunRecord:
    """The record as its JSON holds it (a non-finite number is ``None``)."""
    from .storage import to_jsonable

    return RunRecord.from_dict(json.loads(json.dumps(to_jsonable(RunRecord.of(record).to_dict()))))


def compare(
    record: RunRecord | dict[str, Any], result: RunRecord | dict[str, Any]
) -> dict[str, Any]:
    """Per quantity (each curve, the summary numbers, each diagnostic): identical, or how
    much it differs. ``identical`` overall only when every quantity is bitwise equal.
    Both sides are compared in their JSON form, where a non-finite number is ``null``."""
    record, result = _as_json(record), _as_json(result)
    steps = record.curve["step"]
    out: dict[str, Any] = {}
    if record.curve["step"] != result.curve["step"]:
        out["curve.step"] = {
            "identical": False,
            "note": f"evaluated at {record.curve['step']} vs {result.curve['step']}",
        }
    else:
        for key in CURVES:
            out[f"curve.{key}"] = _diff_lists(record.curve[key], result.curve[key], steps)
    for key in SCALARS:
        a, b = getattr(record, key), getattr(result, key)
        entry: dict[str, Any] = {"identical": _same(a, b), "recorded": a, "retrained": b}
        if not entry["identical"] and isinstance(a, float) and isinstance(b, float):
            entry["abs_diff"] = abs(a - b)
        out[key] = entry
    rd, nd = record.diagnostics or {}, result.diagnostics or {}
    for key in sorted(set(rd) - {"step"}):
        if rd.get("step") != nd.get("step") or key not in nd:
            out[f"diagnostics.{key}"] = {"identical": False, "note": "not at the same steps"}
        else:
            out[f"diagnostics.{key}"] = _diff_lists(rd[key], nd[key], rd["step"])
    return {
        "identical": all(v["identical"] for v in out.values()),
        "quantities": out,
        "recorded_on": environment(record),
        "retrained_on": environment(result),
    }


def retrain(
    record: RunRecord | dict[str, Any],
    data_root: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> RunRecord:
    """Train the record's spec again (in this process, nothing written) with the record's
    thread count unless ``threads`` says otherwise; ``data_root`` and ``device`` override
    the recorded ones (a path or a device of the machine the run was recorded on)."""
    import torch

    from ..sim.spec import RunSpec
    from .runner import run

    record = RunRecord.of(record)
    spec = dict(record.spec)
    if data_root is not None:
        spec["data_root"] = str(data_root)
    if device is not None:
        spec["device"] = device
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads or record.threads or before))
    try:
        return RunRecord.from_dict(run(RunSpec.from_dict(spec), progress=False))
    finally:
        torch.set_num_threads(before)


def _cell_key(name: str) -> str:
    """A run's path without its seed: the runs of one cell over seeds share it."""
    return name.rsplit("/", 1)[0]


def _seed_spread(records: dict[str, RunRecord], name: str, key: str) -> dict[str, Any]:
    """The std (ddof = 1) over seeds of ``key`` in the cell of run ``name``."""
    vals = [
        float(getattr(r, key))
        for n, r in records.items()
        if _cell_key(n) == _cell_key(name) and getattr(r, key) is not None
    ]
    if len(vals) < 2:
        return {"seeds": len(vals), "std": None}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return {"seeds": len(vals), "std": std}


def verify_archive(
    archive: str | Path,
    names: list[str] | None = None,
    sample: int = 1,
    seed: int = 0,
    **retrain_kw: Any,
) -> list[dict[str, Any]]:
    """Retrain ``names`` (paths below ``runs/``), or ``sample`` records drawn with
    ``seed``, from a published archive; each report carries the cell's seed spread of
    the max and final accuracy beside the differences."""
    from .archive import ArchiveError, read_records

    records = read_records(archive)
    if names:
        unknown = [n for n in names if n not in records]
        if unknown:
            raise ArchiveError(f"{str(archive)!r} has no record {unknown[0]!r}")
        chosen = list(names)
    else:
        if sample < 1:
            raise ValueError(f"sample: must be >= 1, got {sample}")
        chosen = sorted(random.Random(seed).sample(sorted(records), min(sample, len(records))))
    reports = []
    for name in chosen:
        rep = compare(records[name], retrain(records[name], **retrain_kw))
        rep["run"] = name
        rep["seed_spread"] = {k: _seed_spread(records, name, k) for k in ("max_acc", "final_acc")}
        reports.append(rep)
    return reports


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def report_markdown(reports: list[dict[str, Any]]) -> str:
    """A reader's summary of :func:`compare` / :func:`verify_archive` reports."""
    lines = []
    for rep in reports:
        lines.append(
            f"## {rep.get('run', 'run')}: {'identical' if rep['identical'] else 'differs'}"
        )
        lines += ["", "| | recorded on | retrained on |", "|---|---|---|"]
        a, b = rep["recorded_on"], rep["retrained_on"]
        for key in dict.fromkeys([*a, *b]):
            lines.append(f"| {key} | {_num(a.get(key))} | {_num(b.get(key))} |")
        lines += [
            "",
            "| quantity | identical | max abs diff | first step | note |",
            "|---|---|---|---|---|",
        ]
        for key, q in rep["quantities"].items():
            diff = q.get("max_abs_diff", q.get("abs_diff", ""))
            note = q.get("note", "")
            if "recorded" in q and not q["identical"]:
                note = f"{_num(q['recorded'])} → {_num(q['retrained'])}"
            lines.append(
                f"| {key} | {'yes' if q['identical'] else 'no'} | {_num(diff)} | "
                f"{q.get('first_step', '')} | {note} |"
            )
        spread = rep.get("seed_spread")
        if spread:
            for key, s in spread.items():
                if s["std"] is not None:
                    lines.append(
                        f"\n{key}: seed-to-seed std of this cell {s['std']:.4f} over "
                        f"{s['seeds']} seeds."
                    )
        lines.append("")
    return "\n".join(lines)
