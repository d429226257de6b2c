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
    #: True when the dynamics conserves total momentum (NVE); a Langevin bath does not.
    momentum_conserved: bool = True
    #: global atom ids and type indices (they travel with atoms between ranks); None on one rank
    ids: np.ndarray | None = None
    types: np.ndarray | None = None
    #: MPI communicator for global sums (None: this process holds every atom)
    comm: object = None

    def _sum(self, x):
        return self.comm.allreduce(x) if self.comm is not None else x

    @property
    def n_global(self) -> int:
        return int(self._sum(len(self.masses)))

    @property
    def dof(self) -> int:
        """Degrees of freedom: 3N, less 3 when total momentum is conserved."""
        return max(3 * self.n_global - (3 if self.momentum_conserved else 0), 1)

    def kinetic_energy(self) -> float:
        """eV."""
        return float(self._sum(0.5 * float(np.sum(self.masses[:, None] * self.velocities**2))))

    def temperature(self) -> float:
        """K, from the kinetic energy and ``dof``."""
        return 2.0 * self.kinetic_energy() / (self.dof * units.kB)


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
        state.positions = state.positions + self.dt * state.velocities
        evaluator.update(state)  # may move atoms between ranks: use the state's arrays afterwards
        state.velocities += 0.5 * self.dt * state.forces / state.masses[:, None]
        state.step += 1
        state.time_fs += self.dt_fs
        return state


class Langevin:
    """NVT Langevin dynamics, BAOAB splitting (Leimkuhler & Matthews 2013).

    ``temperature_K`` (K, or a callable of time in fs for ramps), ``friction`` in 1/fs, ``seed`` for the
    noise. One force evaluation per step.
    """

    def __init__(self, dt_fs: float, temperature_K, friction: float = 0.01, seed: int = 0):
        if not dt_fs > 0 or not friction > 0:
            raise ValueError(f"time step and friction must be > 0 (got {dt_fs} fs, {friction} 1/fs)")
        self.dt_fs, self.dt = float(dt_fs), float(dt_fs) * units.fs
        self.temperature = temperature_K if callable(temperature_K) else (lambda t, T=float(temperature_K): T)
        self.c1 = float(np.exp(-friction * dt_fs))
        self.c2 = float(np.sqrt(1.0 - self.c1**2))
        self.rng = np.random.default_rng(seed)

    def step(self, state: State, evaluator) -> State:
        state.momentum_conserved = False
        inv_m = 1.0 / state.masses[:, None]
        kT = units.kB * self.temperature(state.time_fs + 0.5 * self.dt_fs)
        state.velocities += 0.5 * self.dt * state.forces * inv_m  # B
        pos = state.positions + 0.5 * self.dt * state.velocities  # A
        noise = self.rng.standard_normal(state.velocities.shape)
        state.velocities = self.c1 * state.velocities + self.c2 * np.sqrt(kT * inv_m) * noise  # O
        state.positions = pos + 0.5 * self.dt * state.velocities  # A
        evaluator.update(state)
        state.velocities += 0.5 * self.dt * state.forces / state.masses[:, None]  # B
        state.step += 1
        state.time_fs += self.dt_fs
        return state
