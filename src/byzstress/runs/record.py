"""The run record: what one run wrote, as one typed object, written and read here only.

A run's JSON (``results/STUDY/runs/**.json``, and the published ``docs/STUDY/runs.tar.xz``)
is a :class:`RunRecord`'s :meth:`~RunRecord.to_dict`: its keys are the dataclass's fields, in
their order, the keys and values the runner wrote before the class existed. One thing moved:
inside ``spec`` and ``resolved`` the keys follow :class:`~byzstress.sim.spec.RunSpec`'s field
order, which this version changed (knobs grouped by role), so a new record differs from an
older one of the same run in key order there, not in content.
:meth:`RunRecord.from_dict` reads every record ever published: a key that older
code did not write loads as ``None`` (or an empty dict) and is left out again on the way
back, a key this code does not know is kept in :attr:`RunRecord.extra`, so
``from_dict(d).to_dict() == d`` for every record.

:data:`SCHEMA` is the layout's version, written in every record (``schema``). It changes
only when a key changes meaning or goes away, not when one is added: a reader of layout
``SCHEMA`` loads every record of that layout or an older one, and refuses a newer one.

This module imports no torch (the readers in :mod:`byzstress.analysis` and ``docgen``
need none); :meth:`RunRecord.write` imports :mod:`.storage` when it writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..sim.spec import RunSpec

__all__ = ["KEYS", "SCHEMA", "RecordError", "RunRecord"]

SCHEMA = 1


class RecordError(ValueError):
    """Not a run record this code can read (not a JSON object, or a newer schema)."""


@dataclass
class RunRecord:
    """One run's record. Accuracies are fractions of the test set (0-1), times seconds,
    steps training steps (one aggregation each); a value JSON cannot hold (NaN) is
    ``null`` in the file."""

    """What ran: ``schema`` the layout's version (:data:`SCHEMA`); ``spec`` the run's
    :class:`~byzstress.sim.spec.RunSpec` as given (a dict, in the order of the code that
    wrote it); ``resolved`` the same with the dataset's defaults filled in and ``strength``
    the attack strength in force (a number, or the name of the rule that sets it each
    step). Older records lack ``split`` in both (they used the Dirichlet split)."""
    schema: int | None = SCHEMA
    spec: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)

    """The outcome: ``status`` ``ok`` or ``diverged``; ``divergence`` ``{"step", "quantity"}``
    where a diverged run stopped (else ``None``); ``steps_done`` the training steps taken;
    ``max_acc`` and ``final_acc`` the best and last test accuracy (fractions; ``None``
    without an evaluation); ``curve`` one list per key ``step``, ``test_acc`` (fraction),
    ``test_loss`` and ``train_loss`` (cross-entropy, nats; train: the honest clients'
    mean), one entry per evaluation."""
    status: str | None = None
    divergence: dict[str, Any] | None = None
    steps_done: int | None = None
    max_acc: float | None = None
    final_acc: float | None = None
    curve: dict[str, list[Any]] = field(default_factory=dict)

    """The attack and the defense at work: ``strength_summary`` ``{"min", "median",
    "max"}`` of the strength used over the steps (the attack's own unit: ALIE z, IPM ε,
    ...; ``None`` when the attack has none); ``strength_trace`` that strength at every step (for
    strengths set each step: ``auto``, minmax, minsum; else ``None``); ``defense_info`` what
    the defense reports about itself, with ``sanitized`` (non-finite inputs it replaced);
    ``defense_radius_scale`` the factor applied to the defense's radii (1, or 1 − β_m for
    heavy-ball units under EMA momentum); ``diagnostics`` one list per diagnostic of
    :data:`byzstress.sim.training.DIAGNOSTICS` and ``step``, at the scheduled evaluations
    (``None`` where a diagnostic does not apply)."""
    strength_summary: dict[str, float] | None = None
    strength_trace: list[Any] | None = None
    defense_info: dict[str, Any] | None = None
    defense_radius_scale: float | None = None
    diagnostics: dict[str, list[Any]] | None = None

    """The data and the model: ``share_sizes`` ``{"honest", "byzantine"}`` the training
    samples each client holds (lists, client by client); ``heterogeneity`` measures of
    the honest split (``label_tv_mean``, ``size_cv``, ``classes_mean``, ...; absent from
    records older than the split knob); ``param_count`` the model's parameters;
    ``grad_engine`` how the per-client gradients were computed (``vmap``, ``expanded``,
    ...)."""
    share_sizes: dict[str, list[int]] | None = None
    heterogeneity: dict[str, Any] | None = None
    param_count: int | None = None
    grad_engine: str | None = None

    """Time, in seconds (a batch's runs each carry the whole batch's): ``wall_time_s``
    set-up, training and evaluation, checkpoint writes included; ``train_time_s`` and
    ``eval_time_s`` their training and evaluation parts; ``steps_per_sec`` steps_done /
    train_time_s; ``timings`` ``{"startup_s", "setup_s", "write_s"}`` (process start to
    the run loop, data and simulators, checkpoints); ``resumed_from_step`` the step of the
    checkpoint the run resumed from (``None``: trained in one go; the times then include
    the time recorded before the checkpoint)."""
    wall_time_s: float | None = None
    train_time_s: float | None = None
    eval_time_s: float | None = None
    steps_per_sec: float | None = None
    timings: dict[str, float | None] | None = None
    resumed_from_step: int | None = None

    """The machine (:mod:`.machine`): ``device`` (``cpu``, ``cuda:0``), ``device_name``
    (the GPU's name; on a CPU its architecture, ``x86_64``), ``threads`` torch's thread
    count, ``kernels`` the CPU's model and the float32 kernels dispatched to
    (``cpu_model``, ``cpu_capability``, ...),
    ``deterministic`` whether torch's deterministic algorithms were on, ``versions``
    (python, torch, numpy, byzstress, ...), ``hostname``, and the Slurm job
    (``slurm_job_id``, ``slurm_array`` ``{"job_id", "task_id"}``) if any."""
    device: str | None = None
    device_name: str | None = None
    threads: int | None = None
    kernels: dict[str, Any] | None = None
    deterministic: bool | None = None
    versions: dict[str, Any] | None = None
    hostname: str | None = None
    slurm_job_id: str | None = None
    slurm_array: dict[str, str] | None = None

    """The batch the run was trained in (:func:`byzstress.runs.runner.run_batch`):
    ``{"size", "runs" (each run's batchable keys), "note"}``, or ``None`` when trained
    alone."""
    batch: dict[str, Any] | None = None

    """Not keys of the JSON: ``extra`` the keys of a record this code does not know (kept,
    and written back after the known ones); ``absent`` the known keys the record did not
    have (left out of :meth:`to_dict` while they hold their default)."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object: the keys of :data:`KEYS` in order, then :attr:`extra`."""
        out = {
            k: getattr(self, k)
            for k in KEYS
            if k not in self.absent or getattr(self, k) != _unset(k)
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Any record, of this layout or an older one: a missing key loads as ``None``
        (``spec``, ``resolved``, ``curve``: an empty dict), unknown ones go to
        :attr:`extra`. Raises :class:`RecordError` for a newer :data:`SCHEMA`."""
        if not isinstance(d, dict):
            raise RecordError(f"a run record is a JSON object, not {type(d).__name__}")
        schema = d.get("schema")
        if isinstance(schema, int) and schema > SCHEMA:
            raise RecordError(
                f"record schema {schema} is newer than this byzstress reads ({SCHEMA})"
            )
        return cls(
            **{k: d[k] if k in d else _unset(k) for k in KEYS},
            extra={k: v for k, v in d.items() if k not in _KNOWN},
            absent=frozenset(k for k in KEYS if k not in d),
        )

    @classmethod
    def of(cls, record: RunRecord | dict[str, Any]) -> RunRecord:
        """A record as is, or a record's dict read through :meth:`from_dict`."""
        return record if isinstance(record, RunRecord) else cls.from_dict(record)

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read a run JSON (:class:`RecordError` naming the file if it is not a record)."""
        data = json.loads(Path(path).read_text())
        try:
            return cls.from_dict(data)
        except RecordError as err:
            raise RecordError(f"{str(path)!r}: {err}") from err

    def write(self, path: str | Path) -> None:
        """Write the record's JSON atomically (:func:`byzstress.runs.storage.write_json`)."""
        from .storage import write_json

        write_json(path, self.to_dict())

    # ------------------------------------------------------------------ typed views

    @property
    def spec_obj(self) -> RunSpec:
        """:attr:`spec` as a :class:`RunSpec`, unchecked (a name since renamed still
        loads); a key it lacks has today's default, a key RunSpec no longer has is left
        out."""
        return _spec(self.spec)

    @property
    def resolved_obj(self) -> RunSpec:
        """:attr:`resolved` as a :class:`RunSpec`, unchecked: the dataset's defaults filled
        in, ``strength`` the one in force."""
        return _spec(self.resolved)

    @property
    def strength(self) -> float | str | None:
        """The attack strength in force (``resolved.strength``): a number, a per-step
        rule's name, or ``None``."""
        return self.resolved.get("strength")

    def curve_of(self, key: str = "test_acc") -> list[tuple[int, Any]]:
        """``(step, value)`` of ``key`` of :attr:`curve` at each evaluation."""
        return list(zip(self.curve["step"], self.curve[key], strict=True))

    def diagnostic(self, key: str) -> list[Any]:
        """The values of one diagnostic (or ``step``) at each scheduled evaluation; empty
        when the record has none."""
        return (self.diagnostics or {}).get(key) or []

    @property
    def cpu_model(self) -> str | None:
        """The CPU the record was computed on (its ``kernels``)."""
        return (self.kernels or {}).get("cpu_model")

    @property
    def cpu_capability(self) -> str | None:
        """The ATen CPU capability (kernel set) it ran with."""
        return (self.kernels or {}).get("cpu_capability")

    @property
    def torch_version(self) -> str | None:
        return (self.versions or {}).get("torch")


_NOT_KEYS = ("extra", "absent")
KEYS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord) if f.name not in _NOT_KEYS)
"""A record's keys, in the order it writes them."""
_KNOWN = frozenset(KEYS)
_DICTS = frozenset({"spec", "resolved", "curve"})
_SPEC_KEYS = frozenset(RunSpec.keys())


def _unset(key: str) -> Any:
    """What a key a record lacks loads as (a new dict each time)."""
    return {} if key in _DICTS else None


def _spec(d: dict[str, Any]) -> RunSpec:
    return RunSpec(**{k: v for k, v in d.items() if k in _SPEC_KEYS})
