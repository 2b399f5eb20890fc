"""The run loop: train runs, evaluate them, decide their status, checkpoint them and
write their records (:mod:`.record`). It sits above the simulator
(:mod:`byzstress.sim.training`) and the lockstep batch (:mod:`byzstress.sim.batch`);
imports flow one way, from here down.

A run's status is ``ok`` or ``diverged``. A run diverges at the first step where its
aggregate or its honest clients' mean train loss is non-finite, or at the first evaluation
where its test loss or its parameters are (so a last step that breaks the model is caught
too); the record's ``divergence`` says at which step and which quantity. A diverged run stops
there and keeps the metrics it reached.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..sim.batch import BATCHABLE, SimulatorBatch
from ..sim.spec import RunSpec
from ..sim.training import DIAGNOSTICS, Simulator
from .machine import device_name, kernels, versions
from .record import SCHEMA, RunRecord
from .storage import check_writable, load_checkpoint, remove_stale_temps, save_checkpoint

__all__ = ["Curve", "run", "run_batch", "run_record"]


@dataclass
class Curve:
    """The run's metrics at each evaluation; ``diagnostics`` (:data:`DIAGNOSTICS`, one list
    per key) at the scheduled evaluations, at ``diag_step``."""

    step: list[int]
    test_acc: list[float]
    test_loss: list[float]
    train_loss: list[float]
    diag_step: list[int] = field(default_factory=list)
    diagnostics: dict[str, list[float | None]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Curve:
        return cls([], [], [], [])

    def add_diagnostics(self, step: int, values: dict[str, float | None]) -> None:
        self.diag_step.append(step)
        for key in DIAGNOSTICS:
            self.diagnostics.setdefault(key, []).append(values.get(key))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: list(v) for k, v in self.__dict__.items() if k != "diagnostics"}
        out["diagnostics"] = {k: list(v) for k, v in self.diagnostics.items()}
        return out


def _process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; ``None`` elsewhere): the
    interpreter's and the imports' share of a job, for the study benchmark."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run_record(
    spec: RunSpec,
    sim: Simulator,
    curve: Curve,
    status: str,
    *,
    divergence: dict[str, Any] | None = None,
    wall_time: float,
    train_time: float,
    eval_time: float,
    resumed_from: int | None,
    timings: dict[str, float | None] | None = None,
    batch: dict[str, Any] | None = None,
) -> RunRecord:
    """The run's record (:class:`~.record.RunRecord`): its spec, curve, summary metrics,
    timings and environment.

    ``timings`` (this process's, in seconds): ``startup_s`` from the process's start to the
    run loop (interpreter, imports), ``setup_s`` (data, simulators, checkpoint),
    ``write_s`` (checkpoints; the JSON's own write comes after)."""
    s = sim.spec
    steps_done = sim.step_idx
    accs = [a for a in curve.test_acc if a == a]
    resolved = s.to_dict()
    resolved["strength"] = sim.attack.resolved_strength(s.n, s.f)
    return RunRecord(
        schema=SCHEMA,
        spec=spec.to_dict(),
        resolved=resolved,
        status=status,
        divergence=divergence,
        steps_done=steps_done,
        max_acc=max(accs) if accs else None,
        final_acc=curve.test_acc[-1] if curve.test_acc else None,
        curve={k: curve.as_dict()[k] for k in ("step", "test_acc", "test_loss", "train_loss")},
        strength_summary=_summary(sim.strengths),
        strength_trace=sim.strengths
        if isinstance(resolved["strength"], str) or s.attack.startswith(("minmax", "minsum"))
        else None,
        defense_info={**sim.defense.info, "sanitized": sim.sanitized.as_dict()},
        defense_radius_scale=s.radius_scale(),
        diagnostics={"step": curve.diag_step, **curve.diagnostics},
        share_sizes={"honest": sim.share_sizes[0], "byzantine": sim.share_sizes[1]},
        heterogeneity=sim.heterogeneity,
        param_count=sim.model.dim,
        grad_engine=sim.grads.name,
        wall_time_s=wall_time,
        train_time_s=train_time,
        eval_time_s=eval_time,
        steps_per_sec=steps_done / train_time if train_time > 0 else None,
        timings=timings,
        resumed_from_step=resumed_from,
        device=str(sim.device),
        device_name=device_name(sim.device),
        threads=torch.get_num_threads(),
        kernels=kernels(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        versions=versions(),
        hostname=socket.gethostname(),
        slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        slurm_array={
            k: os.environ[f"SLURM_ARRAY_{k.upper()}"]
            for k in ("job_id", "task_id")
            if f"SLURM_ARRAY_{k.upper()}" in os.environ
        }
        or None,
        batch=batch,
    )


def run(
    spec: RunSpec,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train one run; write its record atomically to ``out`` (if given) and return the
    record as its JSON's dict (:meth:`.record.RunRecord.to_dict`).

    With ``checkpoint`` and ``spec.checkpoint_every > 0`` the state is saved every that many
    steps; an existing checkpoint of the same spec is resumed from, and deleted at the end.
    A batch of one: :func:`run_batch` holds the loop.
    """
    return run_batch([spec], [out], checkpoint, progress)[0]


def _step_divergence(finite: bool, train_loss: float) -> str | None:
    """Which quantity of a step is non-finite (the train loss first), or ``None``."""
    if finite:
        return None
    return "aggregate" if math.isfinite(train_loss) else "train_loss"


def _eval_divergence(sim: Simulator, test_loss: float) -> str | None:
    """Which quantity is non-finite at an evaluation (test loss, then parameters), or
    ``None``: catches a last step that broke the model, which no later step would."""
    if not math.isfinite(test_loss):
        return "test_loss"
    if not bool(torch.isfinite(sim.model.theta).all()):
        return "parameters"
    return None


def run_batch(
    specs: list[RunSpec],
    outs: list[str | Path | None] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Train the runs of ``specs`` in lockstep; write each record atomically to ``outs[i]``
    and return their dicts (:meth:`.record.RunRecord.to_dict`).

    Each run is evaluated every ``eval_every`` steps, at its last step and when it diverges
    (then it stops: status ``diverged``, see the module's docstring). With ``checkpoint``
    and ``checkpoint_every > 0``
    the whole batch is saved every that many steps; a checkpoint of the same specs is
    resumed from, and deleted at the end. Timings in the JSONs are the whole batch's.
    """
    outs = list(outs) if outs is not None else [None] * len(specs)
    if len(outs) != len(specs):
        raise ValueError(f"{len(specs)} specs but {len(outs)} outputs")
    startup = _process_age()
    t_start = time.perf_counter()
    batch = SimulatorBatch(specs)
    sims = batch.sims
    s = sims[0].spec
    curves = [Curve.empty() for _ in sims]
    status = ["ok"] * len(sims)
    divergence: list[dict[str, Any] | None] = [None] * len(sims)
    elapsed_before, resumed_from = 0.0, None
    train_time = eval_time = 0.0
    key = [spec.to_dict() for spec in specs]
    ckpt = Path(checkpoint) if checkpoint else None
    for owned in [ckpt, *outs]:
        if owned is not None:
            remove_stale_temps(owned)  # leftovers of a write that was killed
            check_writable(owned)  # a read-only or full folder fails now, not after training
    if ckpt is not None and ckpt.exists():
        st = load_checkpoint(ckpt)
        if st.get("specs") == key:
            for sim, sst in zip(sims, st["sims"], strict=True):
                sim.load_state_dict(sst)
            curves = [Curve(**c) for c in st["curves"]]
            status = list(st["status"])
            divergence = list(st.get("divergence", divergence))
            elapsed_before = float(st["elapsed"])
            train_time, eval_time = float(st["train_time"]), float(st["eval_time"])
            resumed_from = int(st["step"])
    active = [x == "ok" for x in status]
    setup_time, write_time = time.perf_counter() - t_start, 0.0
    t = resumed_from or 0
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, initial=t, desc="train", unit="step")

    while t < s.steps and any(active):
        t0 = time.perf_counter()
        scheduled = (t + 1) % s.eval_every == 0 or t + 1 == s.steps
        losses, finite = batch.step(active, diagnose=scheduled)
        train_time += time.perf_counter() - t0
        t += 1
        for i, sim in enumerate(sims):
            if not active[i]:
                continue
            if scheduled and sim.last_diagnostics is not None:
                curves[i].add_diagnostics(t, sim.last_diagnostics)
            broken = _step_divergence(finite[i], losses[i])
            if broken or t % s.eval_every == 0 or t == s.steps:
                t1 = time.perf_counter()
                acc, test_loss = sim.evaluate()
                eval_time += time.perf_counter() - t1
                curves[i].step.append(t)
                curves[i].test_acc.append(acc)
                curves[i].test_loss.append(test_loss)
                curves[i].train_loss.append(losses[i])
                broken = broken or _eval_divergence(sim, test_loss)
                if bar is not None:
                    bar.set_postfix(acc=f"{acc:.3f}")
            if broken:
                status[i], active[i] = "diverged", False
                divergence[i] = {"step": t, "quantity": broken}
        if bar is not None:
            bar.update(1)
        due = bool(s.checkpoint_every) and t % s.checkpoint_every == 0 and t < s.steps
        if ckpt is not None and due and any(active):
            t2 = time.perf_counter()
            save_checkpoint(
                ckpt,
                {
                    "specs": key,
                    "step": t,
                    "sims": [sim.state_dict() for sim in sims],
                    "curves": [c.as_dict() for c in curves],
                    "status": status,
                    "divergence": divergence,
                    "elapsed": elapsed_before + time.perf_counter() - t_start,
                    "train_time": train_time,
                    "eval_time": eval_time,
                },
            )
            write_time += time.perf_counter() - t2
    if bar is not None:
        bar.close()

    wall_time = elapsed_before + time.perf_counter() - t_start  # the whole batch's
    batch_info = (
        {
            "size": len(sims),
            "runs": [{k: d[k] for k in BATCHABLE} for d in key],
            "note": "timings are the whole batch's",
        }
        if len(sims) > 1
        else None
    )
    results = []
    for i, (spec, sim, out) in enumerate(zip(specs, sims, outs, strict=True)):
        record = run_record(
            spec,
            sim,
            curves[i],
            status[i],
            divergence=divergence[i],
            wall_time=wall_time,
            train_time=train_time,
            eval_time=eval_time,
            resumed_from=resumed_from,
            timings={"startup_s": startup, "setup_s": setup_time, "write_s": write_time},
            batch=batch_info,
        )
        if out is not None:
            record.write(out)
        results.append(record.to_dict())
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return results
