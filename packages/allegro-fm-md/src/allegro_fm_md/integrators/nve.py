"""``nve``: velocity Verlet (NVE). v += dt/2 F/m; x += dt v; F = F(x); v += dt/2 F/m. Run file: ``integrator = "nve"``
(no options table)."""

from __future__ import annotations

from dataclasses import dataclass

from ase import units

from ..state import State
from .base import IntegratorBase, verlet_step
from .registry import IntegratorKind, register_integrator


class VelocityVerlet(IntegratorBase):
    """NVE velocity Verlet with time step ``dt_fs`` (fs)."""

    def __init__(self, dt_fs: float):
        if not dt_fs > 0:
            raise ValueError(f"time step must be > 0 fs (got {dt_fs})")
        self.dt_fs = float(dt_fs)
        self.dt = self.dt_fs * units.fs

    def step(self, state: State, evaluator) -> State:
        return verlet_step(state, evaluator, self.dt, self.dt_fs)


@dataclass(frozen=True)
class NVEOptions:
    """``nve`` has no options of its own."""


register_integrator(
    IntegratorKind(
        "nve",
        NVEOptions,
        lambda run, o, inner: VelocityVerlet(run.dt_fs),
        doc="velocity Verlet, NVE",
    )
)
