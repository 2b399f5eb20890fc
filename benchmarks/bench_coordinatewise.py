#!/usr/bin/env python
"""Coordinate-wise median and trimmed mean on ``[n, d]``: which implementation is fastest on
this device? Candidates: ``torch.sort`` along the client axis, ``torch.median`` /
``torch.kthvalue``, and byzstress's cocktail-shaker of element-wise min/max
(``defenses.extreme_rows``). Each is checked against the sort result before timing.

    python benchmarks/bench_coordinatewise.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_step as bs  # noqa: I001
from byzstress.threats.defenses import extreme_rows


def candidates(n: int, f: int) -> dict[str, dict]:
    k = (n - 1) // 2
    return {
        "median": {
            "sort": lambda x: x.sort(0).values[k],
            "torch.median": lambda x: x.median(0).values,
            "kthvalue": lambda x: x.kthvalue(k + 1, 0).values,
            "shaker": lambda x: extreme_rows(x, k)[k],
        },
        "trimmed_mean": {
            "sort": lambda x: x.sort(0).values[f : n - f].mean(0),
            "shaker": lambda x: torch.stack(extreme_rows(x, f)[f : n - f]).mean(0),
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=17)
    p.add_argument("--f", type=int, default=3)
    p.add_argument("--d", default="431080,2324630")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    dev = torch.device(a.device)
    print(f"== coordinate-wise statistics on {dev} ({bs.machine_name(dev)})")
    for d in [int(v) for v in a.d.split(",")]:
        x = torch.randn(a.n, d, device=dev)  # odd n: the median is one order statistic
        for stat, impls in candidates(a.n, a.f).items():
            ref = impls["sort"](x)
            for name, fn in impls.items():
                if not torch.equal(fn(x), ref) and not torch.allclose(fn(x), ref, atol=1e-6):
                    print(f"{stat:<13} {name:<13} d={d}: WRONG")
                    continue
                t = bs.summary(bs.time_calls(lambda fn=fn, x=x: fn(x), dev, 3, a.repeats))
                print(f"{stat:<13} {name:<13} d={d:>8}: {t['median_s'] * 1e3:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
