#!/usr/bin/env python
"""Step-time benchmark for byzstress against a compute floor, a naive per-client loop and
ByzFL 0.0.11, plus per-defense cost, scaling in n, and (on CUDA) the CIFAR-10 CNN.

Everything runs in ONE process on the same machine. Each training step is timed on its own
with ``time.perf_counter`` (``torch.cuda.synchronize`` before and after on CUDA) after
warm-up steps, and medians / min / max are reported. The step baselines are built first,
warmed up, then timed interleaved in ``--rounds`` rounds so that background load that
drifts over time affects all of them alike.

Setting of the ``step`` section (see benchmarks/README.md): Fashion-MNIST, FmnistCNN
(431,080 parameters), n = 17 clients, f = 3 Byzantine, batch 25 per client, worker momentum
0.9 (EMA form), weight decay 1e-4, lr 0.1, ALIE with z = 8 (omniscient), defense
trMean(NNM).

Baselines:

* ``byzstress`` -- ``byzstress.sim.training.Simulator(RunSpec(...)).step()`` (gradient engine
  ``auto``: the fused ``expanded`` engine on the CPU, ``vmap`` on CUDA).
* ``byzstress-vmap`` / ``byzstress-expanded`` -- the same simulator with that gradient
  engine (by default only the one that differs from ``byzstress`` on the device runs).
* ``floor``     -- one fused forward+backward of a plain ``nn.Module`` over all
  ``(n - f) * B`` honest samples stacked as one batch (no per-client gradients), one
  ``torch.cat`` of the gradients, the ``[n - f, d]`` momentum update (rows of the
  defense's ``[n, d]`` input buffer), the ALIE vector written into the buffer's last
  ``f`` rows, the defense and the SGD update: the same arithmetic with no per-client
  gradients and no framework overhead, i.e. the reference lower bound. On the CPU its
  convolutions run channels-last, the faster layout there.
* ``naive``     -- what most libraries do: a ``deepcopy`` of the model per honest client,
  the global ``state_dict`` loaded into every copy each step, forward/backward per client,
  ``torch.cat`` of the gradients, per-client momentum vectors, ``torch.stack``, ALIE,
  the same byzstress defense object, and an SGD update of the global model.
* ``byzfl``     -- ByzFL 0.0.11's own framework classes (``byzfl.Client``,
  ``byzfl.Server`` with ``RobustAggregator`` TrMean + NNM, ``byzfl.ByzantineClient`` with
  ``ALittleIsEnough``, ``byzfl.DataDistributor``), one step = the body of the ``DSGD`` loop
  of ``byzfl.benchmark.train.start_training``. Deviations are listed in the JSON.

Usage::

    python benchmarks/bench_step.py --quick --out /tmp/bench.json
    python benchmarks/bench_step.py --device cuda --out bench-h100.json
    python benchmarks/bench_step.py --sections step --baselines byzstress,floor,naive
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import traceback

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from byzstress.runs.machine import cpu_model, device_name, dist_version, versions
from byzstress.runs.storage import write_json
from byzstress.sim import data, gradients, models
from byzstress.sim.partition import PaddedShares, client_shares
from byzstress.sim.spec import RunSpec
from byzstress.sim.training import Simulator
from byzstress.threats import defenses
from byzstress.threats.attacks import AttackContext, mean_std

SECTIONS = ("step", "defenses", "scaling", "cifar")
BASELINES = ("byzstress", "byzstress-vmap", "byzstress-expanded", "floor", "naive", "byzfl")


def default_baselines(device: torch.device) -> list[str]:
    """Every baseline, less the engine variant that equals ``byzstress`` on ``device``."""
    same = "byzstress-expanded" if device.type == "cpu" else "byzstress-vmap"
    return [b for b in BASELINES if b != same]


DEFENSE_SPECS = (
    "mean",
    "cm",
    "trmean",
    "rfa",
    "krum",
    "multikrum",
    "cclip",
    "mda",
    "meamed",
    "monna",
    "trmean(nnm)",
    "rfa(buck)",
    "cm(nnm)",
    "krum(nnm)",
)
SCALING_N = (10, 17, 50, 100)

# --------------------------------------------------------------------------- setting


@dataclass(frozen=True)
class Setting:
    """One benchmarked training configuration (shared by every baseline)."""

    dataset: str = "fmnist"
    model: str = "fmnist_cnn"
    n: int = 17
    f: int = 3
    batch: int = 25
    strength: float = 8.0  # ALIE z
    defense: str = "trmean(nnm)"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    beta: float = 0.5  # Dirichlet concentration of the honest split
    augment: bool = False
    seed: int = 0

    @property
    def h(self) -> int:
        return self.n - self.f

    def run_spec(self, device: torch.device, root: Path) -> RunSpec:
        return RunSpec(
            dataset=self.dataset,
            model=self.model,
            n=self.n,
            f=self.f,
            steps=10**6,
            batch_size=self.batch,
            lr=self.lr,
            momentum=self.momentum,
            momentum_form="ema",
            weight_decay=self.weight_decay,
            beta=self.beta,
            attack="alie",
            strength=self.strength,
            knowledge="omniscient",
            defense=self.defense,
            seed=self.seed,
            augment=self.augment,
            device=device.type,
            data_root=str(root),
            lr_milestones=[],
        )


# --------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    repeats: int,
    budget_s: float | None = None,
) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then time ``repeats`` calls one by one.

    ``budget_s``: stop timing early (keeping at least one sample) once this many seconds
    have been spent on timed calls, so a pathologically slow case cannot stall the run.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if budget_s is not None and spent > budget_s:
            break
    return times


def os_counters() -> tuple[int, float]:
    """(minor page faults, system CPU seconds) of this process so far; (0, 0) where the
    ``resource`` module is missing. A fresh large tensor is zeroed by the kernel page by
    page, so page faults show allocation cost that a profile of the ops hides."""
    if resource is None:
        return 0, 0.0
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_stime


def add_os_costs(res: dict[str, Any], faults: int, sys_s: float, calls: int) -> None:
    if resource is not None and calls:
        res["page_faults_per_call"] = faults / calls
        res["sys_s_per_call"] = sys_s / calls


def summary(times: list[float]) -> dict[str, Any]:
    med = statistics.median(times)
    return {
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "steps_per_s": 1.0 / med if med > 0 else None,
        "count": len(times),
        "times_s": times,
    }


# --------------------------------------------------------------------------- data


@functools.cache
def _load_splits(name: str, root: str, device: str) -> tuple[data.TensorData, data.TensorData]:
    return data.load(name, root, True, device), data.load(name, root, False, device)


_FAKE: dict[tuple[str, str], tuple[data.TensorData, data.TensorData]] = {}


def splits(
    name: str, root: str | Path, device: torch.device | str
) -> tuple[data.TensorData, data.TensorData]:
    """The (train, test) splits of ``name`` on ``device`` that every Simulator and baseline
    of this process shares (``Simulator(..., datasets=...)``): loaded once per process with
    ``byzstress.sim.data.load``, or the random stand-in :func:`fake_cifar10` made."""
    dev = str(torch.device(device))
    if (name, dev) in _FAKE:
        return _FAKE[(name, dev)]
    return _load_splits(name, str(root), dev)


def fake_cifar10(device: torch.device, seed: int = 0) -> None:
    """Random uint8 images / labels shaped like CIFAR-10 (50k train, 10k test), served by
    :func:`splits` for ``cifar10`` on ``device`` from now on."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    fake = []
    for size in (50_000, 10_000):
        x = torch.randint(0, 256, (size, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (size,), generator=g)
        fake.append(data.TensorData(x, y, mean, std, 10).to(device))
    _FAKE[("cifar10", str(torch.device(device)))] = (fake[0], fake[1])


def cifar10_present(root: Path) -> bool:
    return (root / "cifar-10-batches-py" / "data_batch_1").exists()


class ClientSampler:
    """Each honest client's mini-batch from the same Dirichlet shares byzstress uses
    (byzstress.sim.partition), drawn as one gather; used by ``floor`` and ``naive``."""

    def __init__(self, s: Setting, train: data.TensorData, device: torch.device) -> None:
        honest, _ = client_shares(train.y.cpu().numpy(), s.n, s.f, s.beta, s.seed)
        self.shares = PaddedShares(honest, device)
        self.train, self.s = train, s
        self.gen = torch.Generator().manual_seed(s.seed + 2)

    def __call__(self) -> tuple[Tensor, Tensor]:
        idx = self.shares.sample(self.s.batch, self.gen)  # [h, B]
        xb = self.train.x[idx]
        if self.s.augment:
            xb = data.augment_crop_flip(xb.flatten(0, 1), self.gen).view_as(xb)
        return self.train.normalize(xb), self.train.y[idx]


def alie(honest: Tensor, f: int, z: float) -> Tensor:
    """``μ − z σ`` (σ with ddof 1) repeated ``f`` times (byzstress's sign convention), with
    the fastest μ/σ we know on the CPU (the explicit two-pass form)."""
    mu, sigma = mean_std(honest)
    return (mu - z * sigma).unsqueeze(0).expand(f, -1)


# --------------------------------------------------------------------------- baselines


class ByzstressStep:
    name = "byzstress"
    engine = "auto"  # the engine a run uses: expanded on the CPU, vmap on CUDA

    def __init__(self, s: Setting, device: torch.device, root: Path) -> None:
        self.sim = Simulator(
            s.run_spec(device, root),
            device=device,
            datasets=splits(s.dataset, root, device),
            grad_engine=self.engine,
        )
        self.dim = self.sim.model.dim

    def __call__(self) -> None:
        self.sim.step()

    def components(self) -> dict[str, Callable[[], Any]]:
        sim, h, f = self.sim, self.sim.h, self.sim.spec.f
        mom = sim.momentum[:h]

        def attack() -> Tensor:
            return sim.attack(AttackContext(honest=mom, f=f, generator=sim.attack_gen))

        x = torch.cat([mom, attack()])
        return {
            "client_vectors (gather + per-client grads + momentum)": sim.client_vectors,
            "attack (ALIE)": attack,
            "defense": lambda: sim.defense(x),
        }


class ByzstressVmapStep(ByzstressStep):
    """byzstress's simulator with the ``vmap`` gradient engine (CUDA's default; on the CPU
    it shows what the fused ``expanded`` engine gains)."""

    name = "byzstress-vmap"
    engine = "vmap"


class ByzstressExpandedStep(ByzstressStep):
    """byzstress's simulator with the fused ``expanded`` gradient engine (the CPU's
    default; on CUDA it shows whether the engine would pay there too)."""

    name = "byzstress-expanded"
    engine = "expanded"


class FloorStep:
    """Fused forward/backward over all honest samples + ALIE + defense + SGD update.

    The convolutions run channels-last (model and input) where that is faster, as
    byzstress's own CPU path does, so that the floor is the fastest fused pass."""

    name = "floor"

    def __init__(self, s: Setting, device: torch.device, root: Path) -> None:
        self.s = s
        train, _ = splits(s.dataset, root, device)
        self.sample = ClientSampler(s, train, device)
        torch.manual_seed(s.seed)
        self.model = models.build(s.model, train.num_classes).to(device)
        self.channels_last = device.type == "cpu"
        if self.channels_last:
            for p in self.model.parameters():
                if p.dim() == 4:
                    p.data = gradients.nhwc(p.data)
        self.params = list(self.model.parameters())
        self.dim = sum(p.numel() for p in self.params)
        g = torch.Generator().manual_seed(s.seed + 5)
        # distinct rows so ALIE's σ and the defense see realistic spread; the momentum rows
        # are the first rows of the defense's input buffer (no [n, d] concatenation per
        # step: a fresh [n, d] tensor each step costs page faults, 73 -> 55 ms on 2 cores)
        self.x = torch.zeros(s.n, self.dim, device=device)
        self.mom = self.x[: s.h]
        self.mom.copy_(0.01 * torch.randn(s.h, self.dim, generator=g))
        self.defense = defenses.build(s.defense, s.n, s.f, seed=s.seed + 1)

    def _fused_input(self) -> tuple[Tensor, Tensor]:
        xb, yb = self.sample()
        x = xb.flatten(0, 1)
        return (gradients.nhwc(x) if self.channels_last else x), yb.flatten()

    def __call__(self) -> None:
        s = self.s
        x, y = self._fused_input()
        self.model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        g = torch.cat([p.grad.reshape(-1) for p in self.params])
        self.mom.mul_(s.momentum).add_(g, alpha=1 - s.momentum)  # broadcast over [h, d]
        self.x[s.h :].copy_(alie(self.mom, s.f, s.strength))
        agg = self.defense(self.x)
        with torch.no_grad():
            off = 0
            for p in self.params:
                p.sub_(agg[off : off + p.numel()].view_as(p), alpha=s.lr)
                off += p.numel()
        float(loss.detach())  # every baseline reads the loss back each step

    def components(self) -> dict[str, Callable[[], Any]]:
        def fwd_bwd() -> None:
            x, y = self._fused_input()
            self.model.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x), y).backward()

        return {"fused forward+backward (incl. batch gather)": fwd_bwd}


class NaiveStep:
    """A deepcopy of the model per honest client, one forward/backward each."""

    name = "naive"

    def __init__(self, s: Setting, device: torch.device, root: Path) -> None:
        self.s = s
        train, _ = splits(s.dataset, root, device)
        self.sample = ClientSampler(s, train, device)
        torch.manual_seed(s.seed)
        self.global_model = models.build(s.model, train.num_classes).to(device)
        self.clients = [copy.deepcopy(self.global_model) for _ in range(s.h)]
        self.dim = sum(p.numel() for p in self.global_model.parameters())
        self.mom = [torch.zeros(self.dim, device=device) for _ in range(s.h)]
        self.defense = defenses.build(s.defense, s.n, s.f, seed=s.seed + 1)

    def __call__(self) -> None:
        s = self.s
        xb, yb = self.sample()
        state = self.global_model.state_dict()
        theta = torch.cat([p.detach().reshape(-1) for p in self.global_model.parameters()])
        losses = []
        for i, client in enumerate(self.clients):
            client.load_state_dict(state)
            client.zero_grad(set_to_none=True)
            loss = F.cross_entropy(client(xb[i]), yb[i])
            loss.backward()
            g = torch.cat([p.grad.reshape(-1) for p in client.parameters()])
            g.add_(theta, alpha=s.weight_decay)
            self.mom[i].mul_(s.momentum).add_(g, alpha=1 - s.momentum)
            losses.append(loss.item())
        honest = torch.stack(self.mom)
        x = torch.cat([honest, alie(honest, s.f, s.strength)])
        agg = self.defense(x)
        with torch.no_grad():
            off = 0
            for p in self.global_model.parameters():
                p.sub_(agg[off : off + p.numel()].view_as(p), alpha=s.lr)
                off += p.numel()

    def components(self) -> dict[str, Callable[[], Any]]:
        def loop() -> None:
            xb, yb = self.sample()
            state = self.global_model.state_dict()
            for i, client in enumerate(self.clients):
                client.load_state_dict(state)
                client.zero_grad(set_to_none=True)
                F.cross_entropy(client(xb[i]), yb[i]).backward()

        return {"per-client load_state_dict + forward+backward loop": loop}


BYZFL_MAPPING = {
    "honest clients": "byzfl.Client x (n - f), model_name='cnn_mnist' (ByzFL's own LeNet: "
    "conv 1->20->50, fc 800->500->10, 431,080 parameters, log_softmax output), "
    "loss_name='NLLLoss', momentum=0.9 (EMA form m <- b m + (1 - b) g, as byzstress), "
    "training_dataloader from byzfl.DataDistributor('dirichlet_niid', 0.5), batch 25",
    "byzantine clients": "byzfl.ByzantineClient({'name': 'ALittleIsEnough', 'f': 3, "
    "'parameters': {'tau': 8.0}})",
    "server": "byzfl.Server(optimizer_name='SGD', learning_rate=0.1, weight_decay=1e-4, "
    "aggregator_info={'name': 'TrMean', 'parameters': {'f': 3}}, "
    "pre_agg_list=[{'name': 'NNM', 'parameters': {'f': 3}}])",
    "one step": "exactly the body of the 'DSGD' branch of "
    "byzfl.benchmark.train.start_training: client.compute_gradients() for every honest "
    "client, client.get_flat_gradients_with_momentum(), byz_client.apply_attack(honest), "
    "server.update_model_with_gradients(honest + byz), then server.get_dict_parameters() "
    "and client.set_model_state(...) for every client (evaluation excluded)",
}

BYZFL_DEVIATIONS = [
    "model: ByzFL's own 'cnn_mnist' (same architecture and parameter count as byzstress's "
    "FmnistCNN; its forward ends in log_softmax so the loss is NLLLoss = cross-entropy)",
    "data: torchvision FashionMNIST read from the same staged IDX files, transform "
    "ToTensor + Normalize(0.2860, 0.3530) (ByzFL's own benchmark adds RandomHorizontalFlip "
    "for fashionmnist; byzstress runs Fashion-MNIST without augmentation, so it is left "
    "out); the DataLoaders are ByzFL's (num_workers=0, shuffle=True, per-sample PIL "
    "decode + transform) and their cost is part of ByzFL's step",
    "weight decay: ByzFL applies it in the server's SGD optimizer to the aggregate; byzstress "
    "adds it to every client's gradient before momentum (same cost order, different place)",
    "ALIE sign: ByzFL sends mu + tau*sigma, byzstress mu - z*sigma (identical cost)",
    "the honest split is ByzFL's own Dirichlet(0.5) over the 14 honest clients "
    "(DataDistributor), redrawn with a new seed if any client gets no sample",
    "byzfl.utils.misc.set_random_seed is not called (it sets cudnn.deterministic globally, "
    "which would also slow the other baselines in this process); numpy/torch are seeded "
    "directly instead",
]


def byzfl_common(s: RunSpec, device: str) -> dict[str, Any]:
    """The settings every ByzFL ``Client`` and its ``Server`` share for a byzstress spec."""
    return {
        "model_name": "cnn_mnist",
        "device": device,
        "optimizer_name": "SGD",
        "learning_rate": float(s.lr),
        "weight_decay": float(s.weight_decay),
        "milestones": [],
        "learning_rate_decay": 1.0,
    }


class ByzflStep:
    """ByzFL 0.0.11's framework loop (DSGD) for the same setting."""

    name = "byzfl"

    def __init__(self, s: Setting, device: torch.device, root: Path) -> None:
        # ImportError (byzfl not installed) is reported as "skipped" by bench_step
        import numpy as np
        from byzfl import ByzantineClient, Client, DataDistributor, Server
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        if s.dataset != "fmnist":
            raise NotImplementedError("the ByzFL baseline is wired for Fashion-MNIST only")
        splits("fmnist", root, device)  # stages the Debian IDX files for torchvision too
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
        train = datasets.FashionMNIST(str(root), train=True, download=False, transform=tf)
        train.targets = torch.as_tensor(train.targets).long()
        test = datasets.FashionMNIST(str(root), train=False, download=False, transform=tf)
        test_loader = DataLoader(test, batch_size=500, shuffle=False)

        dev = device.type
        for attempt in range(20):
            np.random.seed(s.seed + attempt)
            loaders = DataDistributor(
                {
                    "data_distribution_name": "dirichlet_niid",
                    "distribution_parameter": float(s.beta),
                    "nb_honest": s.h,
                    "data_loader": DataLoader(train, batch_size=s.batch),
                    "batch_size": s.batch,
                }
            ).split_data()
            if min(len(dl.dataset) for dl in loaders) > 0:
                break
        self.split_sizes = [len(dl.dataset) for dl in loaders]
        torch.manual_seed(s.seed)
        common = byzfl_common(s, dev)
        self.clients = [
            Client(
                {
                    **common,
                    "loss_name": "NLLLoss",
                    "LabelFlipping": False,
                    "training_dataloader": loaders[i],
                    "momentum": float(s.momentum),
                    "nb_labels": 10,
                    "store_per_client_metrics": False,
                }
            )
            for i in range(s.h)
        ]
        agg = {"name": "TrMean", "parameters": {"f": s.f}}
        pre = [{"name": "NNM", "parameters": {"f": s.f}}]
        if s.defense.replace(" ", "").lower() != "trmean(nnm)":
            raise NotImplementedError("the ByzFL baseline is wired for trmean(nnm) only")
        self.server = Server(
            {
                **common,
                "test_loader": test_loader,
                "aggregator_info": agg,
                "pre_agg_list": pre,
            }
        )
        self.byz = ByzantineClient(
            {
                "name": "ALittleIsEnough",
                "f": s.f,
                "parameters": {
                    "tau": float(s.strength),
                    "aggregator_info": agg,
                    "pre_agg_list": pre,
                    "f": s.f,
                },
            }
        )
        state = self.server.get_dict_parameters()
        for c in self.clients:
            c.set_model_state(state)
        self.dim = sum(p.numel() for p in self.server.model.parameters())

    def __call__(self) -> None:
        losses = [c.compute_gradients() for c in self.clients]
        honest = [c.get_flat_gradients_with_momentum() for c in self.clients]
        byz = self.byz.apply_attack(honest)
        self.server.update_model_with_gradients(honest + byz)
        state = self.server.get_dict_parameters()
        for c in self.clients:
            c.set_model_state(state)
        sum(losses)

    def components(self) -> dict[str, Callable[[], Any]]:
        honest = [c.momentum_gradient for c in self.clients]
        vectors = honest + self.byz.apply_attack(honest)

        def sync_models() -> None:
            state = self.server.get_dict_parameters()
            for c in self.clients:
                c.set_model_state(state)

        return {
            "clients compute_gradients (DataLoader + forward+backward)": lambda: [
                c.compute_gradients() for c in self.clients
            ],
            "attack (ALittleIsEnough)": lambda: self.byz.apply_attack(honest),
            "server.aggregate (NNM + TrMean)": lambda: self.server.aggregate(vectors),
            "broadcast (get_dict_parameters + set_model_state x clients)": sync_models,
        }


BASELINE_CLASSES = {
    "byzstress": ByzstressStep,
    "byzstress-vmap": ByzstressVmapStep,
    "byzstress-expanded": ByzstressExpandedStep,
    "floor": FloorStep,
    "naive": NaiveStep,
    "byzfl": ByzflStep,
}


# --------------------------------------------------------------------------- sections


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_step(
    s: Setting, baselines: list[str], device: torch.device, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Build every baseline, warm each up, then time them interleaved in ``args.rounds``
    rounds (each round times about ``steps / rounds`` steps of every baseline in turn), so
    that drifting background load on a shared machine hits all baselines alike."""
    out: dict[str, Any] = {"setting": asdict(s), "rounds": args.rounds, "baselines": {}}
    runners: dict[str, Any] = {}
    for name in baselines:
        log(f"[step:{s.dataset}] building {name} ...")
        try:
            runners[name] = BASELINE_CLASSES[name](s, device, root)
        except ImportError as err:
            out["baselines"][name] = {"skipped": f"not installed: {err}"}
            log(f"  skipped ({err})")
        except Exception as err:  # record it, keep benchmarking the rest
            out["baselines"][name] = {"error": repr(err), "traceback": traceback.format_exc()}
            log(f"  error: {err!r}")
    times: dict[str, list[float]] = {name: [] for name in runners}
    os_costs = {name: [0, 0.0] for name in runners}
    for runner in runners.values():
        time_calls(runner, device, args.warmup, 0)
    per_round = [
        args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)
    ]
    for r, k in enumerate(per_round):
        for name, runner in runners.items():
            if k == 0 or (args.budget is not None and sum(times[name]) > args.budget):
                continue
            before = os_counters()
            times[name] += time_calls(runner, device, 0, k, args.budget)
            after = os_counters()
            os_costs[name][0] += after[0] - before[0]
            os_costs[name][1] += after[1] - before[1]
            log(
                f"  round {r + 1}/{args.rounds} {name}: "
                f"median so far {statistics.median(times[name]) * 1e3:.1f} ms/step"
            )
    for name, runner in runners.items():
        res = summary(times[name])
        add_os_costs(res, os_costs[name][0], os_costs[name][1], len(times[name]))
        res["param_count"] = runner.dim
        if isinstance(runner, ByzstressStep):
            res["grad_engine"] = runner.sim.grads.name
        if name == "byzfl":
            res["byzfl_version"] = dist_version("byzfl")
            res["mapping"] = BYZFL_MAPPING
            res["deviations"] = BYZFL_DEVIATIONS
            res["client_split_sizes"] = runner.split_sizes
        out["baselines"][name] = res
        log(
            f"[step:{s.dataset}] {name}: median {res['median_s'] * 1e3:.1f} ms/step "
            f"({res['steps_per_s']:.2f} steps/s, n={res['count']})"
        )
        if args.components and hasattr(runner, "components"):
            # parts of a step timed on their own (they do not add up exactly to the step)
            res["components"] = {}
            try:
                for cname, fn in runner.components().items():
                    c = summary(time_calls(fn, device, args.warmup, args.steps, args.budget))
                    res["components"][cname] = c
                    log(f"    component {cname}: {c['median_s'] * 1e3:.1f} ms")
            except Exception as err:  # internals moved: keep the step timings
                res["components_error"] = repr(err)
                log(f"    components: error {err!r}")
    out["baselines"] = {b: out["baselines"][b] for b in baselines if b in out["baselines"]}
    runners.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    out["ratios"] = ratios(out["baselines"])
    return out


def ratios(b: dict[str, Any]) -> dict[str, float]:
    """Time ratios (= inverse steps/s ratios)."""
    med = {k: v["median_s"] for k, v in b.items() if "median_s" in v}
    r: dict[str, float] = {}
    if "byzstress" in med:
        if "floor" in med:
            r["byzstress_over_floor_time"] = med["byzstress"] / med["floor"]
        for other in ("byzstress-vmap", "byzstress-expanded", "naive", "byzfl"):
            if other in med:
                # = steps/s(byzstress) / steps/s(other): speed-up of byzstress over `other`
                r[f"{other}_over_byzstress_time"] = med[other] / med["byzstress"]
    return r


def _bench_input(n: int, f: int, d: int, device: torch.device, z: float) -> Tensor:
    """``n − f`` honest-looking vectors (common mean + spread) then ``f`` ALIE copies."""
    g = torch.Generator().manual_seed(1234)
    common = torch.randn(d, generator=g) * 0.05
    honest = common + 0.02 * torch.randn(n - f, d, generator=g)
    honest = honest.to(device)
    return torch.cat([honest, alie(honest, f, z)]).contiguous()


def bench_defenses(
    specs: list[str],
    model_names: list[str],
    n: int,
    f: int,
    device: torch.device,
    args: argparse.Namespace,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": n,
        "f": f,
        "input": "n-f honest-like rows (shared mean + "
        "Gaussian spread) and f ALIE rows (z=strength)",
        "models": {},
    }
    for mname in model_names:
        d = sum(p.numel() for p in models.build(mname).parameters())
        x = _bench_input(n, f, d, device, args.strength)
        rows: dict[str, Any] = {}
        for spec in specs:
            log(f"[defenses] {mname} d={d} {spec} ...")
            try:
                dfn = defenses.build(spec, n, f, seed=1)
                call = functools.partial(dfn, x)
                time_calls(call, device, args.def_warmup, 0)
                before = os_counters()
                times = time_calls(call, device, 0, args.repeats, args.budget)
                after = os_counters()
                res = summary(times)
                add_os_costs(res, after[0] - before[0], after[1] - before[1], len(times))
                if dfn.info:
                    res["info"] = dict(dfn.info)
                rows[spec] = res
                log(f"  median {res['median_s'] * 1e3:.2f} ms")
            except Exception as err:
                rows[spec] = {"error": repr(err)}
                log(f"  error: {err!r}")
        out["models"][mname] = {"d": d, "defenses": rows}
        del x
    return out


def bench_scaling(
    base: Setting, ns: list[int], device: torch.device, root: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    for n in ns:
        f = n // 5
        while f > 0 and 2 * f >= n:
            f -= 1
        s = replace(base, n=n, f=f)
        log(f"[scaling] byzstress n={n} f={f} ...")
        try:
            runner = ByzstressStep(s, device, root)
            res = summary(time_calls(runner, device, args.warmup, args.steps, args.budget))
            del runner
        except Exception as err:
            res = {"error": repr(err)}
            log(f"  error: {err!r}")
        else:
            log(f"  median {res['median_s'] * 1e3:.1f} ms/step")
        rows.append({"n": n, "f": f, "honest": n - f, **res})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- report


def _cpu_model() -> str:
    """The CPU's model name, else its architecture (``byzstress.runs.machine``)."""
    return cpu_model() or device_name(torch.device("cpu"))


def machine_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's model name (a record's ``device_name``)."""
    return device_name(device) if device.type == "cuda" else _cpu_model()


def machine_info(device: torch.device) -> dict[str, Any]:
    """The machine a benchmark ran on: ``byzstress.runs.machine``'s versions, CPU and device
    name, with the host, threads, CUDA and load average besides."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        **versions(),  # byzstress, torch, torchvision, numpy, python
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "byzfl": dist_version("byzfl"),
        "device": str(device),
        "device_name": machine_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(Exception):
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    return info


def print_step_table(title: str, res: dict[str, Any]) -> None:
    print(f"\n== {title} ==")
    print(
        f"{'baseline':<18} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'steps/s':>8} "
        f"{'faults/step':>12} {'sys ms/step':>12}  n"
    )
    for name, r in res["baselines"].items():
        if "median_s" not in r:
            print(f"{name:<18} {r.get('skipped') or r.get('error')}")
            continue
        print(
            f"{name:<18} {r['median_s'] * 1e3:10.1f} {r['min_s'] * 1e3:9.1f} "
            f"{r['max_s'] * 1e3:9.1f} {r['steps_per_s']:8.2f} "
            f"{r.get('page_faults_per_call', float('nan')):12.0f} "
            f"{r.get('sys_s_per_call', float('nan')) * 1e3:12.1f}  {r['count']}"
        )
        for cname, c in r.get("components", {}).items():
            print(f"    {cname}: {c['median_s'] * 1e3:.1f} ms")
    labels = {
        "byzstress_over_floor_time": "byzstress / floor (time; 1 = at the floor)",
        "byzstress-vmap_over_byzstress_time": "byzstress-vmap / byzstress (the engine's gain)",
        "byzstress-expanded_over_byzstress_time": "byzstress-expanded / byzstress",
        "naive_over_byzstress_time": "naive / byzstress (time = byzstress's steps/s gain)",
        "byzfl_over_byzstress_time": "byzfl / byzstress (time = byzstress's steps/s gain)",
    }
    for k, v in res["ratios"].items():
        print(f"  {labels.get(k, k)}: {v:.2f}x")


def print_defense_table(res: dict[str, Any]) -> None:
    for mname, block in res["models"].items():
        print(f"\n== defenses, n={res['n']} f={res['f']}, {mname} (d={block['d']:,}) ==")
        for spec, r in block["defenses"].items():
            if "median_s" in r:
                extra = f"  {r['info']}" if "info" in r else ""
                print(
                    f"{spec:<13} {r['median_s'] * 1e3:10.2f} ms  "
                    f"[{r['min_s'] * 1e3:.2f}, {r['max_s'] * 1e3:.2f}]  "
                    f"{r.get('page_faults_per_call', float('nan')):.0f} faults/call{extra}"
                )
            else:
                print(f"{spec:<13} {r['error']}")


def print_scaling_table(rows: list[dict[str, Any]]) -> None:
    print("\n== scaling (byzstress simulator) ==")
    for r in rows:
        if "median_s" in r:
            print(
                f"n={r['n']:<4} f={r['f']:<3} {r['median_s'] * 1e3:10.1f} ms/step  "
                f"{r['steps_per_s']:7.2f} steps/s"
            )
        else:
            print(f"n={r['n']:<4} f={r['f']:<3} {r['error']}")


# --------------------------------------------------------------------------- main


def csv_items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def defense_items(text: str) -> list[str]:
    """Comma-separated defense specs; commas inside [] / () do not split."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="few steps/repeats (smoke run; numbers are not meaningful)",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument(
        "--sections",
        default=None,
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: "
        "step,defenses,scaling, plus cifar on CUDA)",
    )
    p.add_argument(
        "--baselines",
        default=None,
        help=f"for the step section: subset of {','.join(BASELINES)} (default: all, less "
        "the engine variant that byzstress itself is on the device)",
    )
    p.add_argument(
        "--steps",
        type=int,
        help="timed steps per baseline, also in the scaling and cifar sections "
        "(default 30; quick 3)",
    )
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default 5; quick 1)")
    p.add_argument("--repeats", type=int, help="timed calls per defense (default 30; quick 3)")
    p.add_argument(
        "--rounds",
        type=int,
        help="interleave the step baselines in this many rounds (default 3; quick 1)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop timing one case after this many timed seconds (default: none; quick: 20)",
    )
    p.add_argument(
        "--components",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the parts of a step (gradients, attack, defense, ...) "
        "of every step baseline (default: on, off with --quick)",
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--data-root",
        type=Path,
        help="byzstress data root (default $BYZSTRESS_DATA or /tmp/bench-data)",
    )
    p.add_argument("--strength", type=float, default=8.0, help="ALIE z (default 8)")
    p.add_argument("--defense", default="trmean(nnm)", help="defense of the step section")
    p.add_argument(
        "--defense-specs",
        default=",".join(DEFENSE_SPECS),
        help="defense specs for the defenses section",
    )
    p.add_argument(
        "--defense-models",
        default="fmnist_cnn,cifar_cnn",
        help="models whose parameter count d is used in the defenses section",
    )
    p.add_argument(
        "--scaling-n",
        default=",".join(map(str, SCALING_N)),
        help="client counts for the scaling section (f = n // 5)",
    )
    p.add_argument(
        "--cifar-baselines",
        default=None,
        help="baselines of the cifar section (default: those of --baselines, less byzfl, "
        "which is not wired for CIFAR)",
    )
    a = p.parse_args(argv)
    a.steps = a.steps if a.steps is not None else (3 if a.quick else 30)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 5)
    a.repeats = a.repeats if a.repeats is not None else (3 if a.quick else 30)
    a.def_warmup = 1 if a.quick else 3
    a.rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    a.rounds = max(1, min(a.rounds, a.steps))
    if a.components is None:
        a.components = not a.quick
    if a.budget is None and a.quick:
        a.budget = 20.0
    if a.steps < 1 or a.repeats < 1 or a.warmup < 0:
        p.error("--steps and --repeats must be >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    sections = (
        csv_items(args.sections)
        if args.sections
        else (["step", "defenses", "scaling"] + (["cifar"] if device.type == "cuda" else []))
    )
    bad = [x for x in sections if x not in SECTIONS]
    baselines = csv_items(args.baselines) if args.baselines else default_baselines(device)
    cifar_baselines = [
        b
        for b in (csv_items(args.cifar_baselines) if args.cifar_baselines else baselines)
        if b != "byzfl"  # not wired for CIFAR
    ]
    bad += [x for x in baselines + cifar_baselines if x not in BASELINES]
    if bad:
        print(f"error: unknown section/baseline {bad}", file=sys.stderr)
        return 2
    root = args.data_root or Path(os.environ.get("BYZSTRESS_DATA", "/tmp/bench-data"))
    root.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {
        "schema": 1,
        "command": ["python", *sys.argv] if argv is None else ["bench_step.py", *argv],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(device),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sections": sections,
        "data_root": str(root),
        "notes": [
            "medians over individually timed steps after warm-up; ratios are time ratios "
            "(X_over_byzstress_time = steps/s of byzstress / steps/s of X)",
            "each dataset split is loaded once in this process (byzstress.sim.data.load) and "
            "handed to every Simulator (datasets=); random CIFAR-10-shaped tensors stand in "
            "when CIFAR-10 is absent",
        ],
    }
    load = result["machine"]["loadavg_start"]
    if load and load[0] > 0.5 * (os.cpu_count() or 1):
        msg = (
            f"machine busy at start (1-min load average {load[0]:.2f} on {os.cpu_count()} "
            "CPUs): CPU timings are unreliable; with oversubscribed cores, multi-threaded "
            "torch ops can slow down by 10-100x (try --threads 1, or an idle machine)"
        )
        result["notes"].append("WARNING: " + msg)
        log("WARNING: " + msg)
    t_all = time.perf_counter()
    base = Setting(defense=args.defense, strength=args.strength)

    if "step" in sections:
        result["step"] = bench_step(base, baselines, device, root, args)
        title = f"step: Fashion-MNIST CNN, n=17 f=3 B=25, ALIE z={args.strength:g}"
        title += f" vs {args.defense}"
        print_step_table(title, result["step"])
    if "defenses" in sections:
        result["defenses"] = bench_defenses(
            defense_items(args.defense_specs),
            csv_items(args.defense_models),
            base.n,
            base.f,
            device,
            args,
        )
        print_defense_table(result["defenses"])
    if "scaling" in sections:
        result["scaling"] = bench_scaling(
            base, [int(x) for x in csv_items(args.scaling_n)], device, root, args
        )
        print_scaling_table(result["scaling"])
    if "cifar" in sections:
        real = cifar10_present(root)
        if not real:
            fake_cifar10(device)
        cs = replace(base, dataset="cifar10", model="cifar_cnn", batch=32, augment=True)
        res = bench_step(cs, cifar_baselines, device, root, args)
        res["data"] = (
            "CIFAR-10"
            if real
            else (
                "random uint8 tensors shaped like CIFAR-10 (50k x 3x32x32, random labels): "
                "CIFAR-10 not found under the data root; step cost does not depend on the pixels"
            )
        )
        result["cifar"] = res
        print_step_table(
            "cifar: CIFAR-10 CNN (crop+flip), n=17 f=3 B=32, "
            + ("CIFAR-10" if real else "random CIFAR-shaped data"),
            res,
        )

    result["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["total_wall_s"] = time.perf_counter() - t_all
    if args.out:
        write_result(args.out, result)
        print(f"\nwrote {args.out}")
    return 0


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's JSON atomically (``byzstress.runs.storage.write_json``); paths,
    devices and tensors are written as text or lists."""
    write_json(path, json.loads(json.dumps(result, default=_json_default)))


def _json_default(o: Any) -> Any:
    if isinstance(o, Path | torch.device):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
