"""What every integrator shares: ``IntegratorBase`` (the defaults of the ``Integrator`` contract, contracts.py),
``verlet_step`` and ``Wrapper`` (an integrator around another: barostat, deformation). Internal time unit is ASE's
(Angstrom sqrt(amu/eV)); the API speaks fs."""

from __future__ import annotations

import numpy as np

from ..comm import SERIAL
from ..state import State


class IntegratorBase:
    """Defaults of the ``Integrator`` contract for deterministic, energy-conserving dynamics: no noise generator, never
    'converged', conserved quantity E_pot + E_kin, no thermostat target, nothing to save in restarts."""

    dt_fs: float = 0.0
    rng: np.random.Generator | None = None
    conserves_energy: bool = True

    def step(
        self, state: State, evaluator
    ) -> State:  # pragma: no cover - every integrator defines its step
        """Advance ``state`` by one step (see contracts.Integrator.step)."""
        raise NotImplementedError

    def target_temperature(self, time_fs: float) -> float | None:
        """The bath temperature (K) at ``time_fs``; None for integrators without a thermostat (a barostat needs one)."""
        return None

    def converged(self, state: State, comm=SERIAL) -> bool:
        """Minimisers: True once done (the run stops; collective over ``comm``). Dynamics: never."""
        return False

    def conserved_energy(self, state: State, comm=SERIAL) -> float:
        """The thermo log's conserved_eV (eV, collective over ``comm``): E_pot + E_kin unless the integrator extends it."""
        return float(state.energy + state.kinetic_energy(comm))

    def state_dict(self) -> dict:
        """Integrator variables a restart needs (not the per-rank noise state: that is ``rng``)."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        """Restore ``state_dict()``'s output."""


def verlet_step(state: State, evaluator, dt: float, dt_fs: float) -> State:
    """One velocity Verlet step (dt in ASE time units, dt_fs in fs): kick, drift, forces, kick; step and time advance.
    Shared by ``VelocityVerlet`` and the thermostats built around it."""
    state.velocities += 0.5 * dt * state.forces / state.masses[:, None]
    state.positions = state.positions + dt * state.velocities
    evaluator.update(state)  # may move atoms between ranks: use the state's arrays afterwards
    state.velocities += 0.5 * dt * state.forces / state.masses[:, None]
    state.step += 1
    state.time_fs += dt_fs
    return state


class Wrapper(IntegratorBase):
    """An integrator around another (``inner``): its time step, noise and bath temperature, its conserved-energy column
    (reported, not conserved: the wrapper does work on the system) and its restart variables under "inner". What a
    wrapper needs of ``inner`` is the contract's: ``dt_fs``, ``target_temperature``, ``step``."""

    conserves_energy = False

    def __init__(self, inner):
        self.inner, self.dt_fs, self.rng = inner, inner.dt_fs, inner.rng

    def target_temperature(self, time_fs: float) -> float | None:
        return self.inner.target_temperature(time_fs)

    def conserved_energy(self, state: State, comm=SERIAL) -> float:
        return self.inner.conserved_energy(state, comm)

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.inner.load_state_dict(d.get("inner", {}))
