"""Sharpness-aware minimisation (Foret et al., ICLR 2021), the optimiser of Allegro-Legato (Ibayashi et al.,
ISC 2023), which the paper uses for MD robustness: each step takes the gradient at the weights perturbed by
rho * g / |g| (the worst case in a rho-ball), then applies the base optimiser's step at the original weights.

Hand-written: torch ships no SAM; this follows the published algorithm as a torch.optim.Optimizer so that
nequip's Lightning module uses it unchanged (``train.optimizer._target_``) and LR schedulers see its groups.
"""

from __future__ import annotations

import importlib

import torch


def _resolve(base):
    if isinstance(base, str):
        mod, _, name = base.rpartition(".")
        return getattr(importlib.import_module(mod), name)
    return base


class SAM(torch.optim.Optimizer):
    """SAM around ``base`` (a class or dotted name, default Adam) with radius ``rho`` (in parameter units;
    ``adaptive``: ASAM, the perturbation scaled by |w|). Extra keyword arguments go to the base optimiser.
    ``step`` needs the closure that recomputes loss and gradients (Lightning passes one); it costs two
    forward/backward passes per step."""

    def __init__(
        self,
        params,
        base="torch.optim.Adam",
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs,
    ):
        if rho <= 0:
            raise ValueError(f"SAM rho must be > 0 (got {rho})")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = _resolve(base)(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(p=2)
            for g in self.param_groups
            for p in g["params"]
            if p.grad is not None
        ]
        return torch.norm(torch.stack(norms), p=2) if norms else torch.tensor(0.0)

    @torch.no_grad()
    def step(self, closure=None):
        """One SAM step: gradient at w, ascend to w + e, gradient there, back to w, base step with that gradient."""
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and its gradients")
        with torch.enable_grad():
            loss = closure()
        norm = self._grad_norm()
        for g in self.param_groups:
            scale = g["rho"] / (norm + 1e-12)
            for p in g["params"]:
                if p.grad is None:
                    continue
                e = (p * p if g["adaptive"] else 1.0) * p.grad * scale
                p.add_(e)
                self.state[p]["e_w"] = e
        with torch.enable_grad():
            closure()
        for g in self.param_groups:
            for p in g["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()
        return loss
