"""Time integration. Internal time unit is ASE's (Angstrom sqrt(amu/eV)); the API speaks fs.

``VelocityVerlet`` (NVE): v += dt/2 F/m; x += dt v; F = F(x); v += dt/2 F/m.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units


@dataclass
class State:
    """Dynamic state: positions A, velocities A/(ASE time), masses amu, cell A (rows), step, time fs."""

    positions: np.ndarray
    velocities: np.ndarray
    masses: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    step: int = 0
    time_fs: float = 0.0
    forces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    energy: float = float("nan")
    virial: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))

    def kinetic_energy(self) -> float:
        """eV."""
        return 0.5 * float(np.sum(self.masses[:, None] * self.velocities**2))

    def temperature(self) -> float:
        """K, with 3N - 3 degrees of freedom (total momentum conserved)."""
        dof = max(3 * len(self.masses) - 3, 1)
        return 2.0 * self.kinetic_energy() / (dof * units.kB)


class VelocityVerlet:
    """NVE velocity Verlet with time step ``dt_fs`` (fs)."""

    def __init__(self, dt_fs: float):
        if not dt_fs > 0:
            raise ValueError(f"time step must be > 0 fs (got {dt_fs})")
        self.dt_fs = float(dt_fs)
        self.dt = self.dt_fs * units.fs

    def step(self, state: State, evaluator) -> State:
        inv_m = 1.0 / state.masses[:, None]
        state.velocities += 0.5 * self.dt * state.forces * inv_m
        pos = state.positions + self.dt * state.velocities
        pos, r = evaluator.compute(pos, state.cell, state.pbc)
        state.positions, state.forces, state.energy, state.virial = pos, r.forces, r.energy, r.virial
        state.velocities += 0.5 * self.dt * state.forces * inv_m
        state.step += 1
        state.time_fs += self.dt_fs
        return state
