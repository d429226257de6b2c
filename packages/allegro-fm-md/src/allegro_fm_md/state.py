"""``State``: the dynamic state of this rank's atoms (positions, velocities, forces, cell, step, time), and the collective
quantities over the ranks that share a system (kinetic energy, temperature, degrees of freedom). Units: A, amu, fs, eV."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units

from .comm import SERIAL


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
    #: per-atom results of the last force call, in the order of this rank's atoms (recomputed at every force call, never
    #: stored in restarts): energies (n,) eV; virials (n, 3, 3) eV when the potential's per_atom_virial is on; the
    #: committee's force deviation (n,) eV/A (contracts.CommitteeLikePotential), None for a single model
    atomic_energies: np.ndarray | None = None
    atomic_virials: np.ndarray | None = None
    force_deviation: np.ndarray | None = None

    # Collective quantities take the communicator of the ranks that share the system (default ``SERIAL``: this process
    # holds every atom). The state itself is a plain record of this rank's atoms.

    def n_global(self, comm=SERIAL) -> int:
        """Number of atoms on all ranks."""
        return int(comm.allreduce(len(self.masses)))

    def dof(self, comm=SERIAL) -> int:
        """Degrees of freedom: 3N, less 3 when total momentum is conserved."""
        return max(3 * self.n_global(comm) - (3 if self.momentum_conserved else 0), 1)

    def kinetic_energy(self, comm=SERIAL) -> float:
        """eV, over all ranks."""
        return float(comm.allreduce(0.5 * float(np.sum(self.masses[:, None] * self.velocities**2))))

    def kinetic_tensor(self, comm=SERIAL) -> np.ndarray:
        """sum_i m_i v_i (x) v_i over all ranks (3, 3), eV (twice the kinetic-energy tensor)."""
        return np.asarray(
            comm.allreduce(np.einsum("i,ij,ik->jk", self.masses, self.velocities, self.velocities))
        )

    def temperature(self, comm=SERIAL) -> float:
        """K, from the kinetic energy and ``dof``."""
        return 2.0 * self.kinetic_energy(comm) / (self.dof(comm) * units.kB)
