#!/usr/bin/env python
"""Independent check of byzstress's accuracies against ByzFL 0.0.11's own framework.

For a few cells (attack x defense) and seeds, the same Fashion-MNIST setting is trained
twice, and the test accuracies are printed side by side:

* **byzstress** -- ``byzstress.runs.runner.run(RunSpec(...))``, the code under test;
* **ByzFL** -- ByzFL 0.0.11's framework classes (``byzfl.Client`` per client,
  ``byzfl.Server`` with its ``RobustAggregator``, ``byzfl.ByzantineClient``); one step is the
  body of the ``DSGD`` loop of ``byzfl.benchmark.train.start_training``, as
  ``bench_step.ByzflStep`` drives it.

Both sides start from the same parameters ``θ0`` (byzstress's initialisation, copied into
ByzFL's ``cnn_mnist``, which has the same layers), use byzstress's Dirichlet shares, and by
default (``--batches same``) the very same mini-batches: each ByzFL client's DataLoader
replays byzstress's per-step draw. ByzFL's bucketing permutation comes from torch's global
generator, which is set to the state of byzstress's bucketing generator. What cannot be
matched is listed under "deviations" in the outputs (weight decay, geometric-median
iterations, ...). A one-step check compares the parameters after the first step directly
(byzstress with weight decay 0, ByzFL's server-side decay added back): it should be at the
level of float rounding (or of the geometric-median iteration difference). Over hundreds of
steps the two runs drift apart (float summation order), so the accuracies should agree to
within seed-to-seed noise, not digit for digit.

A large step-1 difference points at a bug in one of the two; a step-1 match with accuracies
that still disagree with a paper points at the setting, not at byzstress.

Usage::

    python benchmarks/byzfl_check.py --threads 2 --data-root /tmp/byzfl_check_data \\
        --out results/byzfl_check
    python benchmarks/byzfl_check.py --steps 4 --eval-every 2 \\
        --cells 'none:trmean(nnm),alie8:rfa(buck)' --threads 1    # smoke test

Writes ``byzfl_check.json`` (settings, deviations, every curve) and ``byzfl_check.md`` (the
table and the deviations) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_step as bs  # noqa: I001
from byzstress.sim import data, training
from byzstress.runs import runner
from byzstress.runs.machine import dist_version
from byzstress.sim.partition import PaddedShares
from byzstress.sim.spec import RunSpec
from byzstress.sim.training import Simulator

DEFAULT_CELLS = "none:trmean(nnm),none:rfa(buck),alie8:trmean(nnm),alie8:rfa(buck)"
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530  # byzstress.sim.data's normalisation of Fashion-MNIST

# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One attack x defense combination, e.g. ``alie8:trmean(nnm)``."""

    label: str
    attack: str  # byzstress attack spec
    strength: float | None  # None: the attack's default
    defense: str  # byzstress defense spec


_ATTACK = re.compile(r"(?P<name>[A-Za-z_]+(?:\[[^\]]*\])?)(?P<strength>\d+(?:\.\d*)?)?")


def parse_cell(text: str) -> Cell:
    """``ATTACK[STRENGTH]:DEFENSE``: ``alie8:rfa(buck)`` is ALIE with z = 8 against
    RFA with bucketing; ``none:trmean(nnm)`` has no attack."""
    attack, sep, defense = text.partition(":")
    m = _ATTACK.fullmatch(attack.strip())
    if not sep or not defense.strip() or m is None:
        raise ValueError(f"cell {text!r}: expected ATTACK[STRENGTH]:DEFENSE, e.g. alie8:rfa(buck)")
    strength = float(m["strength"]) if m["strength"] else None
    return Cell(text.strip(), m["name"].lower(), strength, defense.strip())


def run_spec(args: argparse.Namespace, cell: Cell, seed: int) -> RunSpec:
    """byzstress's spec of one cell: Fashion-MNIST CNN, EMA worker momentum, no augmentation,
    constant learning rate, omniscient attacker."""
    return RunSpec(
        dataset="fmnist",
        model="fmnist_cnn",
        n=args.n,
        f=args.f,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_milestones=[],
        momentum=args.momentum,
        momentum_form="ema",
        weight_decay=args.weight_decay,
        eval_every=args.eval_every,
        beta=args.beta,
        attack=cell.attack,
        strength=cell.strength,
        knowledge="omniscient",
        defense=cell.defense,
        seed=seed,
        augment=False,
        device=args.device,
        data_root=str(args.data_root),
        checkpoint_every=0,
    )


# --------------------------------------------------------------------------- ByzFL side


def byzfl_component(obj: Any, f: int, gm_iters: int) -> dict[str, Any]:
    """ByzFL's ``{"name", "parameters"}`` for a built byzstress rule or pre-aggregator, with
    byzstress's own parameter values (raises for components not wired here)."""
    kind = type(obj).__name__
    if kind == "Mean":
        return {"name": "Average", "parameters": {}}
    if kind == "CoordinateMedian":
        return {"name": "Median", "parameters": {}}
    if kind == "TrimmedMean":
        return {"name": "TrMean", "parameters": {"f": f}}
    if kind == "GeometricMedian":
        return {
            "name": "GeometricMedian",
            "parameters": {"nu": float(obj.params["nu"]), "T": int(gm_iters)},
        }
    if kind == "NNM":
        return {"name": "NNM", "parameters": {"f": f}}
    if kind == "Bucketing":
        return {"name": "Bucketing", "parameters": {"s": int(obj.params["s"])}}
    raise NotImplementedError(
        f"no ByzFL counterpart wired for byzstress's {kind}; wired: mean, cm, trmean, rfa, "
        "and the pre-aggregators nnm, buck"
    )


def byzfl_attack(sim: Simulator) -> dict[str, Any] | None:
    """ByzFL's attack config for the simulator's attack; ``None`` for byzstress's ``none``
    (the Byzantine clients then send honest momentum on their own shares)."""
    atk, s = sim.attack, sim.spec
    kind = type(atk).__name__
    if kind == "NoAttack":
        return None
    if atk.knowledge != "omniscient":
        raise NotImplementedError("ByzFL's attacks see the honest vectors: omniscient only")
    strength = atk.resolved_strength(s.n, s.f)
    if not isinstance(strength, int | float):
        raise NotImplementedError(f"strength {strength!r} has no ByzFL counterpart here")
    if kind == "ALIE":
        # ByzFL sends mu + tau*sigma; byzstress mu + sign*z*sigma (sign -1 by default)
        tau = float(atk.params["sign"]) * float(strength)
        return {"name": "ALittleIsEnough", "f": s.f, "parameters": {"tau": tau}}
    if kind == "IPM":  # both: -eps * mean(honest)
        return {
            "name": "InnerProductManipulation",
            "f": s.f,
            "parameters": {"tau": float(strength)},
        }
    raise NotImplementedError(f"no ByzFL counterpart wired for byzstress's attack {kind}")


class ReplayedDraw:
    """byzstress's per-step draw of every client's mini-batch indices (``[m, B]``, uniform
    with replacement within each share, from a copy of the simulator's data generator),
    replayed one client row at a time. Clients must move in lockstep, as in DSGD."""

    def __init__(self, shares: PaddedShares, batch: int, generator: torch.Generator) -> None:
        self.shares, self.batch, self.generator = shares, batch, generator
        self.step = -1
        self.rows = torch.empty(0, dtype=torch.long)

    def row(self, step: int, client: int) -> list[int]:
        if step == self.step + 1:
            self.rows = self.shares.sample(self.batch, self.generator).cpu()
            self.step = step
        elif step != self.step:
            raise RuntimeError(f"client {client} asked for step {step} during step {self.step}")
        return self.rows[client].tolist()


class ReplayedBatches(Sampler[list[int]]):
    """A DataLoader ``batch_sampler`` yielding one client's row of :class:`ReplayedDraw`,
    step after step, without end (ByzFL's Client restarts a finished loader anyway)."""

    def __init__(self, draw: ReplayedDraw, client: int) -> None:
        self.draw, self.client = draw, client

    def __iter__(self) -> Iterator[list[int]]:
        step = 0
        while True:
            yield self.draw.row(step, self.client)
            step += 1


def share_indices(shares: PaddedShares) -> list[list[int]]:
    """Each client's dataset indices (the unpadded rows of the share table)."""
    table, lengths = shares.table.cpu(), shares.lengths.tolist()
    return [table[i, :length].tolist() for i, length in enumerate(lengths)]


class ByzflRun:
    """One training run through ByzFL 0.0.11's framework classes.

    A byzstress :class:`Simulator` of the same spec (weight decay 0, which changes neither
    ``θ0`` nor the shares nor the random streams) supplies what both sides must share:
    ``θ0``, the clients' shares, the data generator's state (replayed mini-batches), the
    bucketing generator's state; it also takes one step for the step-1 check.
    """

    def __init__(self, spec: RunSpec, batches: str, gm_iters: int) -> None:
        from byzfl import ByzantineClient, Client, Server
        from torchvision import datasets, transforms

        device = training.resolve_device(spec.device)
        ref = Simulator(
            dataclasses.replace(spec, weight_decay=0.0),
            device=device,
            datasets=bs.splits(spec.dataset, spec.data_root, device),  # loaded once per process
        )
        s = self.spec = ref.spec
        self.device, self.h, self.m = ref.device, ref.h, len(ref.shares)
        theta0 = ref.model.theta.detach().clone()
        data_gen = torch.Generator()
        data_gen.set_state(ref.data_gen.get_state())
        self.bucketing_state = ref.defense.generator.get_state()

        agg = byzfl_component(ref.defense.rule, s.f, gm_iters)
        pre = [byzfl_component(p, s.f, gm_iters) for p in ref.defense.pre]
        attack = byzfl_attack(ref)
        self.config = {
            "aggregator_info": agg,
            "pre_agg_list": pre,
            "attack": attack
            or f"none: {self.m - self.h} byzfl.Client(s) over byzstress's Byzantine shares "
            "send honest momentum (byzstress's 'none')",
            "clients": self.m,
            "byzstress_defense": str(ref.defense.spec),
            "byzstress_rule_params": dict(ref.defense.rule.params),
        }

        # ByzFL's data path: torchvision dataset + per-sample transform (byzstress: tensors)
        root = str(s.data_root)
        tf = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((FMNIST_MEAN,), (FMNIST_STD,))]
        )
        train = datasets.FashionMNIST(root, train=True, download=False, transform=tf)
        test = datasets.FashionMNIST(root, train=False, download=False, transform=tf)
        # every DataLoader has its own generator: torch's global one is left to bucketing
        test_loader = DataLoader(
            test, batch_size=s.eval_batch_size, shuffle=False, generator=torch.Generator()
        )
        loaders = self._train_loaders(train, ref.shares, s.batch_size, s.seed, batches, data_gen)

        dev = self.device.type
        common = bs.byzfl_common(s, dev)
        self.server = Server(
            {**common, "test_loader": test_loader, "aggregator_info": agg, "pre_agg_list": pre}
        )
        shapes = [tuple(p.shape) for p in self.server.model.parameters()]
        if shapes != [tuple(x) for x in ref.model.shapes]:
            raise RuntimeError(f"ByzFL's cnn_mnist {shapes} != byzstress's {ref.model.shapes}")
        self.server.set_parameters(theta0.to(self.device))
        self.clients = [
            Client(
                {
                    **common,
                    "loss_name": "NLLLoss",  # cnn_mnist ends in log_softmax
                    "LabelFlipping": False,
                    "training_dataloader": loader,
                    "momentum": float(s.momentum),
                    "nb_labels": 10,
                    "store_per_client_metrics": False,
                }
            )
            for loader in loaders
        ]
        self.byz = ByzantineClient(attack) if attack is not None else None
        self._broadcast()

        # step-1 reference: byzstress's step without weight decay from the same θ0 and batch
        self.theta0 = theta0
        ref_loss, _ = ref.step()
        self.ref_loss, self.ref_theta1 = ref_loss, ref.model.theta.detach().clone()
        self.ref_info = dict(ref.defense.info)
        self.ref_engine = ref.grads.name
        del ref

    @staticmethod
    def _train_loaders(
        train: Dataset,
        shares: PaddedShares,
        batch: int,
        seed: int,
        batches: str,
        data_gen: torch.Generator,
    ) -> list[DataLoader]:
        if batches == "same":
            draw = ReplayedDraw(shares, batch, data_gen)
            return [
                DataLoader(
                    train, batch_sampler=ReplayedBatches(draw, i), generator=torch.Generator()
                )
                for i in range(len(shares))
            ]
        # ByzFL's own way: shuffle each client's share every epoch, last batch smaller
        return [
            DataLoader(
                Subset(train, idx),
                batch_size=batch,
                shuffle=True,
                generator=torch.Generator().manual_seed(seed * 1000 + i),
            )
            for i, idx in enumerate(share_indices(shares))
        ]

    def _broadcast(self) -> None:
        state = self.server.get_dict_parameters()
        for c in self.clients:
            c.set_model_state(state)

    def step(self) -> tuple[float, bool]:
        """One DSGD step (ByzflStep's step, plus the clients that play byzstress's ``none``);
        returns the honest clients' mean train loss and whether the model is finite."""
        losses = [c.compute_gradients() for c in self.clients]
        vectors = [c.get_flat_gradients_with_momentum() for c in self.clients]
        honest = vectors[: self.h]
        byz = self.byz.apply_attack(honest) if self.byz is not None else vectors[self.h :]
        self.server.update_model_with_gradients(honest + byz)
        self._broadcast()
        loss = statistics.fmean(losses[: self.h])
        finite = math.isfinite(loss) and bool(
            torch.isfinite(self.server.get_flat_parameters()).all()
        )
        return loss, finite

    def first_step_check(self, loss: float) -> dict[str, Any]:
        """ByzFL's θ1 (its server-side decay ``lr λ θ0`` added back) against byzstress's θ1
        without weight decay, both from the same θ0 and mini-batches."""
        s = self.spec
        theta1 = self.server.get_flat_parameters().detach().to(self.theta0.device)
        theta1 = theta1 + s.lr * s.weight_decay * self.theta0
        ref_update = (self.ref_theta1 - self.theta0).norm()
        return {
            "byzstress_train_loss": self.ref_loss,
            "byzfl_train_loss": loss,
            "rel_update_diff": float((theta1 - self.ref_theta1).norm() / ref_update),
            "byzstress_update_norm": float(ref_update),
            "byzstress_defense_info": self.ref_info,
            "byzstress_grad_engine": self.ref_engine,
        }

    @torch.no_grad()
    def evaluate(self) -> float:
        return float(self.server.compute_test_accuracy())

    def run(self) -> dict[str, Any]:
        """Train ``spec.steps`` steps; evaluate on the full test set as byzstress does (every
        ``eval_every`` steps, at the last step, and when the model stops being finite)."""
        s = self.spec
        torch.set_rng_state(self.bucketing_state)  # ByzFL's bucketing draws from it
        curve: dict[str, list[float]] = {"step": [], "test_acc": [], "train_loss": []}
        times: list[float] = []
        status, first, eval_time = "ok", None, 0.0
        for t in range(1, s.steps + 1):
            bs.sync(self.device)
            t0 = time.perf_counter()
            loss, finite = self.step()
            bs.sync(self.device)
            times.append(time.perf_counter() - t0)
            if t == 1:
                first = self.first_step_check(loss)
            if not finite or t % s.eval_every == 0 or t == s.steps:
                t1 = time.perf_counter()
                curve["step"].append(t)
                curve["test_acc"].append(self.evaluate())
                curve["train_loss"].append(loss)
                eval_time += time.perf_counter() - t1
            if not finite:
                status = "diverged"
                break
        accs = [a for a in curve["test_acc"] if a == a]
        return {
            "status": status,
            "steps_done": len(times),
            "max_acc": max(accs) if accs else None,
            "final_acc": curve["test_acc"][-1] if curve["test_acc"] else None,
            "curve": curve,
            "train_time_s": sum(times),
            "eval_time_s": eval_time,
            "step_s_mean": statistics.fmean(times),
            "step_s_median": statistics.median(times),
            "first_step": first,
            "config": self.config,
        }


# --------------------------------------------------------------------------- one cell


def run_byzstress(spec: RunSpec) -> dict[str, Any]:
    res = runner.run(spec, progress=False)
    steps = res["steps_done"] or 1
    return {
        "status": res["status"],
        "steps_done": res["steps_done"],
        "max_acc": res["max_acc"],
        "final_acc": res["final_acc"],
        "curve": {k: res["curve"][k] for k in ("step", "test_acc", "train_loss")},
        "train_time_s": res["train_time_s"],
        "eval_time_s": res["eval_time_s"],
        "step_s_mean": res["train_time_s"] / steps,
        "grad_engine": res.get("grad_engine"),
        "defense_info": res.get("defense_info"),
        "share_sizes": res.get("share_sizes"),
        "resolved_strength": res["resolved"].get("strength"),
    }


def run_cell(args: argparse.Namespace, cell: Cell, seed: int) -> dict[str, Any]:
    spec = run_spec(args, cell, seed)
    out: dict[str, Any] = {"cell": cell.label, "seed": seed, "spec": spec.to_dict()}
    bs.log(f"[{cell.label} seed {seed}] byzstress ...")
    out["byzstress"] = run_byzstress(spec)
    bs.log(f"[{cell.label} seed {seed}] ByzFL ...")
    try:
        out["byzfl"] = ByzflRun(spec, args.batches, args.byzfl_gm_iters).run()
    except NotImplementedError as err:
        out["byzfl"] = {"skipped": str(err)}
    for side in ("byzstress", "byzfl"):
        r = out[side]
        if "skipped" in r:
            bs.log(f"  {side}: skipped ({r['skipped']})")
        else:
            bs.log(
                f"  {side}: max {_pct(r['max_acc'])} final {_pct(r['final_acc'])} "
                f"({r['status']}, {r['step_s_mean'] * 1e3:.0f} ms/step)"
            )
    first = out["byzfl"].get("first_step")
    if first:
        bs.log(
            f"  step 1: train loss {first['byzstress_train_loss']:.6f} vs "
            f"{first['byzfl_train_loss']:.6f}, rel. update diff {first['rel_update_diff']:.2e}"
        )
    return out


# --------------------------------------------------------------------------- report


def deviations(args: argparse.Namespace) -> list[str]:
    """Every known difference between the two sides of the check."""
    batches = (
        "mini-batches: identical -- each byzfl.Client's DataLoader replays byzstress's "
        "per-step draw (uniform with replacement within each share, same generator state)"
        if args.batches == "same"
        else "mini-batches: ByzFL's usual DataLoader over each client's share (shuffled each "
        "epoch, without replacement, smaller last batch); byzstress draws uniformly with "
        "replacement within the share"
    )
    return [
        "model: ByzFL's own 'cnn_mnist' (same layers, parameter order and count as "
        "byzstress's FmnistCNN; log_softmax + NLLLoss = cross-entropy; ReLU before the "
        "max-pool, byzstress after it: the same function), initialised with byzstress's θ0",
        "data: ByzFL reads Fashion-MNIST through torchvision's FashionMNIST (the same IDX "
        "files) with ToTensor + Normalize(0.2860, 0.3530), per sample; byzstress keeps uint8 "
        "tensors and normalises per batch with the same constants. ByzFL's own benchmark "
        "adds RandomHorizontalFlip for Fashion-MNIST; left out, as byzstress does not augment "
        "Fashion-MNIST",
        f"data split: byzstress's Dirichlet(beta={args.beta}) shares (byzstress.sim.partition, "
        "redrawn until every client holds >= min_samples) for both sides, not ByzFL's "
        "DataDistributor('dirichlet_niid')",
        batches,
        "weight decay: ByzFL's server SGD adds λθ to the aggregate (after the defense, outside "
        "the momentum); byzstress adds λθ to every client's gradient before the momentum, so "
        f"it passes through the EMA and the defense (λ = {args.weight_decay:g} on both sides)",
        "momentum: the same at both -- worker EMA m <- βm + (1-β)g "
        "(byzfl.Client.get_flat_gradients_with_momentum), zero start, no server momentum; "
        "constant learning rate on both",
        "ALIE: ByzFL sends mu + tau*sigma (sigma with ddof 1, as byzstress); it accepts a "
        "negative tau, so tau = sign*z = -z reproduces byzstress's mu - z*sigma exactly; "
        "omniscient (the honest momentum vectors) on both sides",
        "no attack: ByzFL's ByzantineClient refuses 'NoAttack' with f > 0, and its benchmark "
        "runs no-attack cells with the n - f honest vectors only; byzstress's 'none' has the "
        "f Byzantine clients send honest momentum on their own shares (n vectors). Here the "
        "ByzFL server gets f extra byzfl.Client instances over byzstress's Byzantine shares, "
        "i.e. the same n vectors as byzstress",
        "geometric median (rfa): ByzFL's GeometricMedian starts from 0 and runs exactly T "
        f"iterations (ByzFL's default and its benchmark's T = 3; here T = "
        f"{args.byzfl_gm_iters}); byzstress starts from the mean and runs >= 8 and <= 100 "
        "iterations, stopping at a relative residual of 1e-6; the same ν (byzstress's value "
        "is passed) and the same smoothed-Weiszfeld fixed point once converged",
        "bucketing: the same rule (random permutation, buckets of s, last partial bucket "
        "averaged). ByzFL draws the permutation from torch's global generator, which is set "
        "to byzstress's bucketing-generator state before training (every DataLoader here has "
        "its own generator), so both sides use the same permutations",
        "trmean, NNM: the same definitions (NNM: mean of the n - f nearest vectors, itself "
        "included; trmean drops the f largest and f smallest per coordinate)",
        "non-finite inputs: byzstress clamps non-finite entries before the defense, ByzFL "
        "does not (only matters once a run diverges)",
        "evaluation: the same schedule (every eval_every steps and at the last step, none at "
        "step 0), the full 10k test set, top-1 accuracy; max = max over those evaluations, "
        "final = the last one. ByzFL's own benchmark also evaluates at step 0",
        "floating point: different kernels and summation orders (byzstress fuses the clients' "
        "gradients, runs convolutions channels-last on the CPU); trajectories drift apart "
        "chaotically over hundreds of steps, so accuracies agree up to seed-to-seed noise, "
        "not digit for digit. The step-1 check compares one step directly: byzstress with "
        "λ = 0 against ByzFL with its server-side decay lr*λ*θ0 added back",
        "step-1 check and byzstress's gradient engine: on the CPU byzstress's default "
        "'expanded' engine runs the convolutions channels-last and sums conv1's weight "
        "gradient (14,400 products per entry, their absolute sum about 26 times the "
        "result) in another order than ByzFL's per-client NCHW pass; float32 rounding then "
        "moves the step-1 update by ~2e-4 (benchmarks/float32_rounding.py measures it; the "
        "max-pool choices are the same as float64's there). With the 'vmap' engine (CUDA's "
        "default) the step-1 difference measured 3e-6 to 2e-5. Both are float32 rounding, "
        "not a difference of method",
        "seeding: byzfl.utils.misc.set_random_seed is not called (every random stream is "
        "set explicitly); ByzFL's server model is in eval mode and its clients' in train "
        "mode, which changes nothing for this model (no dropout, no batch norm)",
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def _acc(r: dict[str, Any], key: str) -> float | None:
    return None if "skipped" in r else r[key]


def markdown(result: dict[str, Any]) -> str:
    st = result["settings"]
    runs = result["runs"]
    seeds = st["seeds"]
    lines = [
        "# byzstress vs ByzFL 0.0.11",
        "",
        f"Fashion-MNIST CNN, n = {st['n']}, f = {st['f']}, Dirichlet β = {st['beta']}, "
        f"batch {st['batch_size']}, lr {st['lr']}, momentum {st['momentum']} (EMA), "
        f"weight decay {st['weight_decay']}, {st['steps']} steps, evaluation every "
        f"{st['eval_every']} steps, seeds {', '.join(map(str, seeds))}, mini-batches "
        f"'{st['batches']}', ByzFL GeometricMedian T = {st['byzfl_gm_iters']}. "
        "Test accuracy in %.",
        "",
        "| cell | byzstress max acc | byzstress final acc | ByzFL max acc | ByzFL final acc |",
        "|---|---:|---:|---:|---:|",
    ]
    cells = list(dict.fromkeys(r["cell"] for r in runs))
    for cell in cells:
        rows = [r for r in runs if r["cell"] == cell]
        for r in rows:
            label = cell if len(seeds) == 1 else f"{cell} (seed {r['seed']})"
            vals = [
                _acc(r["byzstress"], "max_acc"),
                _acc(r["byzstress"], "final_acc"),
                _acc(r["byzfl"], "max_acc"),
                _acc(r["byzfl"], "final_acc"),
            ]
            lines.append(f"| `{label}` | " + " | ".join(_pct(v) for v in vals) + " |")
        if len(rows) > 1:
            vals = [
                _mean([_acc(r[side], key) for r in rows])
                for side in ("byzstress", "byzfl")
                for key in ("max_acc", "final_acc")
            ]
            lines.append(f"| `{cell}` (mean) | " + " | ".join(_pct(v) for v in vals) + " |")
    lines += [
        "",
        "Step-1 check (same θ0 and mini-batches; byzstress with λ = 0, ByzFL's server-side "
        "decay added back): the honest clients' mean train loss at step 1, and "
        "‖θ1(ByzFL) − θ1(byzstress)‖ / ‖θ1(byzstress) − θ0‖. Float32 rounding gives "
        "~1e-5 with byzstress's vmap engine and ~2e-4 with the CPU's expanded engine (see "
        "the deviations); ByzFL's GeometricMedian with T = 3 gives ~5e-3. Much more than "
        "that is a real difference between the two implementations."
        + (
            ""
            if st["batches"] == "same"
            else " NOT COMPARABLE in this run: with --batches shuffle the two sides draw "
            "different mini-batches."
        ),
        "",
        "| cell | seed | byzstress engine | byzstress loss | ByzFL loss | rel. update diff |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        fs = r["byzfl"].get("first_step")
        if fs:
            lines.append(
                f"| `{r['cell']}` | {r['seed']} | {fs['byzstress_grad_engine']} | "
                f"{fs['byzstress_train_loss']:.6f} | "
                f"{fs['byzfl_train_loss']:.6f} | {fs['rel_update_diff']:.2e} |"
            )
    lines += ["", "Time per step (training only, mean over the run's steps):", ""]
    for r in runs:
        a, b = r["byzstress"], r["byzfl"]
        if "skipped" not in b:
            lines.append(
                f"- `{r['cell']}` seed {r['seed']}: byzstress {a['step_s_mean'] * 1e3:.0f} ms, "
                f"ByzFL {b['step_s_mean'] * 1e3:.0f} ms"
            )
        else:
            lines.append(f"- `{r['cell']}` seed {r['seed']}: ByzFL skipped ({b['skipped']})")
    lines += ["", "Known deviations between the two sides:", ""]
    lines += [f"- {d}" for d in result["deviations"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def _beta(text: str) -> float | str:
    return "iid" if text.lower() == "iid" else float(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--eval-every", type=int, default=50, help="evaluate every K steps (50)")
    p.add_argument("--n", type=int, default=20, help="clients, Byzantine included (20)")
    p.add_argument("--f", type=int, default=4, help="Byzantine clients (4)")
    p.add_argument("--beta", type=_beta, default=0.1, help="Dirichlet β or 'iid' (0.1)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument(
        "--cells",
        default=DEFAULT_CELLS,
        help="comma-separated ATTACK[STRENGTH]:DEFENSE cells; attacks none, alie, ipm; "
        "defenses built from mean, cm, trmean, rfa with pre-aggregators nnm, buck "
        f"(default {DEFAULT_CELLS})",
    )
    p.add_argument("--lr", type=float, default=0.1, help="server learning rate (0.1)")
    p.add_argument("--momentum", type=float, default=0.9, help="worker EMA momentum (0.9)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="λ (1e-4)")
    p.add_argument("--batch-size", type=int, default=25, help="mini-batch per client (25)")
    p.add_argument(
        "--batches",
        choices=("same", "shuffle"),
        default="same",
        help="ByzFL clients' mini-batches: 'same' replays byzstress's draws (default); "
        "'shuffle' is ByzFL's usual shuffled DataLoader over the same shares",
    )
    p.add_argument(
        "--byzfl-gm-iters",
        type=int,
        default=100,
        help="T of ByzFL's GeometricMedian (default 100, byzstress's cap; ByzFL's default 3)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=Path(os.environ.get("BYZSTRESS_DATA", "/tmp/bench-data")),
        help="Fashion-MNIST root (default $BYZSTRESS_DATA or /tmp/bench-data); the Debian "
        "package's files are decompressed there",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", type=Path, help="write byzfl_check.json and byzfl_check.md here")
    a = p.parse_args(argv)
    try:
        a.seed_list = [int(x) for x in bs.csv_items(a.seeds)]
        a.cell_list = [parse_cell(c) for c in bs.defense_items(a.cells)]
    except ValueError as err:
        p.error(str(err))
    if a.steps < 1 or a.eval_every < 1 or a.byzfl_gm_iters < 1:
        p.error("--steps, --eval-every and --byzfl-gm-iters must be >= 1")
    if not a.seed_list or not a.cell_list:
        p.error("need at least one seed and one cell")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.data_root.mkdir(parents=True, exist_ok=True)
    data.load("fmnist", args.data_root, False)  # stage the Debian IDX files for torchvision
    device = training.resolve_device(args.device)
    result: dict[str, Any] = {
        "schema": 1,
        "command": ["python", *sys.argv] if argv is None else ["byzfl_check.py", *argv],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": bs.machine_info(device),
        "settings": {
            "steps": args.steps,
            "eval_every": args.eval_every,
            "n": args.n,
            "f": args.f,
            "beta": args.beta,
            "seeds": args.seed_list,
            "cells": [c.label for c in args.cell_list],
            "lr": args.lr,
            "momentum": args.momentum,
            "momentum_form": "ema",
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "batches": args.batches,
            "byzfl_gm_iters": args.byzfl_gm_iters,
            "device": str(device),
            "data_root": str(args.data_root),
        },
        "byzfl_version": dist_version("byzfl"),
        "deviations": deviations(args),
        "runs": [],
    }
    for seed in args.seed_list:
        for cell in args.cell_list:
            result["runs"].append(run_cell(args, cell, seed))
            if args.out:  # after every run: a long check leaves its partial results
                bs.write_result(args.out / "byzfl_check.json", result)
    md = markdown(result)
    print(md)
    if args.out:
        result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        bs.write_result(args.out / "byzfl_check.json", result)
        (args.out / "byzfl_check.md").write_text(md)
        bs.log(f"wrote {args.out / 'byzfl_check.json'} and {args.out / 'byzfl_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
