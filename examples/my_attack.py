"""An example of an attack registered from outside the package.

Use it in config.yaml with ``plugins: [examples/my_attack.py]`` and the attack name
``directed`` (with strengths, like ALIE's z: ``{name: directed, strengths: [1, 4]}``), or
from the CLI with ``byzstress train --plugins examples/my_attack.py --attack directed
--strength 4``.
"""

from typing import ClassVar

import torch

from byzstress.threats.attacks import Attack, AttackContext, mean_std, register_attack


@register_attack
class DirectedDeviation(Attack):
    """Directed deviation, after Fang et al. ("Local model poisoning attacks to
    Byzantine-robust federated learning", USENIX Security 2020): every Byzantine client
    sends ``μ − λ · σ ⊙ sign(μ)``, the known vectors' coordinate-wise mean pushed against
    its own sign by λ coordinate-wise standard deviations (λ = strength, default 1)."""

    names = ("directed",)
    defaults: ClassVar[dict] = {}
    has_strength = True

    def default_strength(self, n: int, f: int) -> float:
        return 1.0

    def craft(self, ctx: AttackContext, strength: float | None) -> torch.Tensor:
        mu, sigma = mean_std(ctx.known)
        v = mu - float(strength) * sigma * torch.sign(mu)
        return v.unsqueeze(0).expand(ctx.f, -1).contiguous()
