"""An example of a defense registered from outside the package.

Use it in config.yaml with ``plugins: [examples/my_defense.py]`` and the spec name
``normfilter`` (parameters and pre-aggregators work as for built-in rules, e.g.
``normfilter(nnm)``), or from the CLI with ``byzstress train --plugins
examples/my_defense.py --defense normfilter``.
"""

import torch

from byzstress.threats.defenses import Rule, register_rule


@register_rule
class NormFilteredMean(Rule):
    """Norm filtering: drop the ``f`` vectors of largest norm, average the others
    (cf. Gupta et al., "Byzantine fault-tolerant distributed machine learning using
    stochastic gradient descent and norm-based comparative gradient elimination", 2021)."""

    names = ("normfilter",)

    def check(self) -> None:
        if self.f >= self.n:
            raise ValueError(f"normfilter needs f < n; got n={self.n}, f={self.f}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        keep = x.norm(dim=1).argsort()[: x.shape[0] - self.f]
        return x[keep].mean(0)
