"""``nhc``: NVT by a Nose-Hoover chain around velocity Verlet. Run file: ``integrator = "nhc"``, options ``[run.nhc]``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units

from ..comm import SERIAL
from ..state import State
from .base import IntegratorBase, verlet_step
from .registry import IntegratorKind, register_integrator, temperature_schedule


class NoseHooverChain(IntegratorBase):
    """NVT by a Nose-Hoover chain (Martyna, Klein & Tuckerman, J. Chem. Phys. 97, 2635 (1992); the
    Trotter splitting of Martyna et al., Mol. Phys. 87, 1117 (1996)) around velocity Verlet.

    ``temperature_K`` (K or a callable of time in fs), ``tdamp_fs``: thermostat period (fs), ``chain``:
    number of thermostats. Deterministic; ``conserved_energy`` is the extended-system energy (eV).
    """

    def __init__(self, dt_fs: float, temperature_K, tdamp_fs: float = 100.0, chain: int = 3):
        if not dt_fs > 0 or not tdamp_fs > 0 or chain < 1:
            raise ValueError(
                f"need dt > 0 fs, tdamp > 0 fs, chain >= 1 (got {dt_fs}, {tdamp_fs}, {chain})"
            )
        self.dt_fs, self.dt = float(dt_fs), float(dt_fs) * units.fs
        self.temperature = (
            temperature_K if callable(temperature_K) else (lambda t, T=float(temperature_K): T)
        )
        self.tau = float(tdamp_fs) * units.fs
        self.xi = np.zeros(chain)  # thermostat positions (dimensionless)
        self.v_xi = np.zeros(chain)  # thermostat velocities (1 / ASE time)

    def target_temperature(self, time_fs: float) -> float:
        """The bath temperature (K) at ``time_fs``."""
        return float(self.temperature(time_fs))

    def _masses(self, state: State, kT: float, comm) -> np.ndarray:
        q = np.full(len(self.xi), kT * self.tau**2)
        q[0] *= state.dof(comm)
        return q

    def _half_chain(self, state: State, kT: float, comm) -> None:
        """Propagate the chain and scale velocities over dt/2 (kinetic energy and dof summed over ``comm``)."""
        d = 0.5 * self.dt
        m = len(self.xi)
        q = self._masses(state, kT, comm)
        ke2 = 2.0 * state.kinetic_energy(comm)
        dof = state.dof(comm)

        def force(j):
            if j == 0:
                return (ke2 - dof * kT) / q[0]
            return (q[j - 1] * self.v_xi[j - 1] ** 2 - kT) / q[j]

        self.v_xi[m - 1] += 0.5 * d * force(m - 1)
        for j in range(m - 2, -1, -1):
            s = np.exp(-0.25 * d * self.v_xi[j + 1])
            self.v_xi[j] = (self.v_xi[j] * s + 0.5 * d * force(j)) * s
        self.xi += d * self.v_xi
        scale = float(np.exp(-d * self.v_xi[0]))
        state.velocities *= scale
        ke2 *= scale**2
        for j in range(m - 1):
            s = np.exp(-0.25 * d * self.v_xi[j + 1])
            self.v_xi[j] = (self.v_xi[j] * s + 0.5 * d * force(j)) * s
        self.v_xi[m - 1] += 0.5 * d * force(m - 1)

    def step(self, state: State, evaluator) -> State:
        state.momentum_conserved = (
            True  # the chain scales all velocities: total momentum stays zero
        )
        comm = evaluator.comm
        self._half_chain(state, units.kB * self.temperature(state.time_fs), comm)
        verlet_step(state, evaluator, self.dt, self.dt_fs)
        self._half_chain(state, units.kB * self.temperature(state.time_fs), comm)
        return state

    def conserved_energy(self, state: State, comm=SERIAL) -> float:
        """E_pot + E_kin + thermostat energy (eV, collective over ``comm``): constant for a constant target temperature."""
        kT = units.kB * self.temperature(state.time_fs)
        q = self._masses(state, kT, comm)
        return float(
            state.energy
            + state.kinetic_energy(comm)
            + 0.5 * np.sum(q * self.v_xi**2)
            + state.dof(comm) * kT * self.xi[0]
            + kT * np.sum(self.xi[1:])
        )

    def state_dict(self) -> dict:
        """Thermostat variables for restart files."""
        return {"xi": self.xi.tolist(), "v_xi": self.v_xi.tolist()}

    def load_state_dict(self, d: dict) -> None:
        self.xi, self.v_xi = (
            np.array(d["xi"], dtype=np.float64),
            np.array(d["v_xi"], dtype=np.float64),
        )


@dataclass(frozen=True)
class NHCOptions:
    """``[run.nhc]``: the thermostat period (fs) and the chain length; the bath follows [run] temperature_K."""

    #: thermostat period (fs)
    tdamp_fs: float = field(default=100.0, metadata={"range": (0.0, None, False)})
    #: thermostats in the chain
    chain: int = field(default=3, metadata={"range": (1, 10, True)})


register_integrator(
    IntegratorKind(
        "nhc",
        NHCOptions,
        doc="Nose-Hoover chain, NVT (deterministic; conserved_eV is the extended energy)",
        build=lambda run, o, inner: NoseHooverChain(
            run.dt_fs, temperature_schedule(run), tdamp_fs=o.tdamp_fs, chain=o.chain
        ),
    )
)
