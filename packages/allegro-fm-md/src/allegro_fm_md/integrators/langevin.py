"""``langevin``: NVT Langevin dynamics (BAOAB). Run file: ``integrator = "langevin"``, options ``[run.langevin]``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units

from ..noise import LANGEVIN, standard_normal
from ..state import State
from .base import IntegratorBase
from .registry import IntegratorKind, register_integrator, temperature_schedule


class Langevin(IntegratorBase):
    """NVT Langevin dynamics, BAOAB splitting (Leimkuhler & Matthews 2013).

    ``temperature_K`` (K, or a callable of time in fs for ramps), ``friction`` in 1/fs, ``seed`` for the
    noise. One force evaluation per step. The noise is counter-based (noise.py): keyed by (seed, step, atom id), so the
    trajectory is the same on any number of ranks and a restart resumes it on any rank count (``rng`` is None).
    """

    def __init__(self, dt_fs: float, temperature_K, friction: float = 0.01, seed: int = 0):
        if not dt_fs > 0 or not friction > 0:
            raise ValueError(
                f"time step and friction must be > 0 (got {dt_fs} fs, {friction} 1/fs)"
            )
        self.dt_fs, self.dt = float(dt_fs), float(dt_fs) * units.fs
        self.temperature = (
            temperature_K if callable(temperature_K) else (lambda t, T=float(temperature_K): T)
        )
        self.c1 = float(np.exp(-friction * dt_fs))
        self.c2 = float(np.sqrt(1.0 - self.c1**2))
        self.seed = int(seed)
        self.conserves_energy = False  # a heat bath: E_pot + E_kin is reported, not conserved

    def target_temperature(self, time_fs: float) -> float:
        """The bath temperature (K) at ``time_fs``."""
        return float(self.temperature(time_fs))

    def step(self, state: State, evaluator) -> State:
        state.momentum_conserved = False
        inv_m = 1.0 / state.masses[:, None]
        kT = units.kB * self.temperature(state.time_fs + 0.5 * self.dt_fs)
        state.velocities += 0.5 * self.dt * state.forces * inv_m  # B
        pos = state.positions + 0.5 * self.dt * state.velocities  # A
        ids = state.ids if state.ids is not None else np.arange(len(state.masses))
        noise = standard_normal(self.seed, LANGEVIN, state.step, ids)
        state.velocities = self.c1 * state.velocities + self.c2 * np.sqrt(kT * inv_m) * noise  # O
        state.positions = pos + 0.5 * self.dt * state.velocities  # A
        evaluator.update(state)
        state.velocities += 0.5 * self.dt * state.forces / state.masses[:, None]  # B
        state.step += 1
        state.time_fs += self.dt_fs
        return state


@dataclass(frozen=True)
class LangevinOptions:
    """``[run.langevin]``: the friction (1/fs); the bath follows [run] temperature_K (-> temperature_end_K)."""

    #: friction of the bath (1/fs)
    friction_per_fs: float = field(default=0.01, metadata={"range": (0.0, None, False)})


register_integrator(
    IntegratorKind(
        "langevin",
        LangevinOptions,
        doc="Langevin dynamics (BAOAB), NVT; counter-based noise: N ranks == 1 rank",
        build=lambda run, o, inner: Langevin(
            run.dt_fs, temperature_schedule(run), friction=o.friction_per_fs, seed=run.seed
        ),
    )
)
