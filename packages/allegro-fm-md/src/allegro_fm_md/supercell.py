"""Where the initial state is made, per rank: a replicated supercell is never built whole. Each rank generates only
the images of the unit cell whose atoms fall in its subdomain, with global ids in ase's ``atoms * (n, m, k)`` order
(id = ((i m + j) k + l) n_unit + a), and Maxwell-Boltzmann velocities drawn by id from the counter-based generator, so
one rank and N ranks start from the same state. Memory per rank: the unit cell plus this rank's atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from ase import Atoms, units

from .comm import SERIAL
from .noise import standard_normal

#: noise stream of the initial velocities (noise.py streams 1, 2 are Langevin and barostat)
VELOCITIES = 3


@dataclass
class Supercell:
    """``unit`` (ase.Atoms) repeated ``reps`` = (n, m, k) times along its cell vectors, without building it."""

    unit: Atoms
    reps: tuple[int, int, int]

    @property
    def cell(self) -> np.ndarray:
        """Supercell vectors (rows, A)."""
        return np.array(self.unit.cell) * np.array(self.reps)[:, None]

    @property
    def pbc(self) -> np.ndarray:
        return self.unit.pbc.copy()

    def __len__(self) -> int:
        return len(self.unit) * int(np.prod(self.reps))

    @property
    def numbers(self) -> np.ndarray:
        """Atomic numbers of all atoms by id (N integers: for one-rank uses such as gathered trajectories)."""
        return np.tile(self.unit.numbers, int(np.prod(self.reps)))

    def atoms(self) -> Atoms:
        """The whole supercell as ase.Atoms (one-rank paths only: cell relaxation, planning)."""
        return self.unit * self.reps

    def local(self, dec) -> tuple[np.ndarray, np.ndarray]:
        """(ids, positions) of the atoms that the Decomposition ``dec`` gives to its rank. Only the images whose
        fractional box reaches the rank's subdomain are generated, one at a time: time and memory per rank scale with
        its own atoms (the unit cell is wrapped first along periodic axes, as the engine would)."""
        unit = self.unit.copy()
        unit.wrap(pbc=unit.pbc)
        n_unit = len(unit)
        frac_unit = unit.get_scaled_positions(wrap=False)
        reps = np.array(self.reps)
        ranges = []
        for d in range(3):
            if dec.pbc[d]:  # images i with (i + [fmin, fmax]) / n overlapping [lo, hi)
                first = int(np.floor(dec.lo[d] * reps[d] - frac_unit[:, d].max())) if n_unit else 0
                last = int(np.ceil(dec.hi[d] * reps[d] - frac_unit[:, d].min())) if n_unit else -1
                ranges.append(range(max(first, 0), min(last, reps[d] - 1) + 1))
            else:
                ranges.append(range(reps[d]))
        ids, pos = [], []
        rank = dec.comm.rank
        for i, j, k in product(*ranges):
            f = (
                frac_unit + np.array([i, j, k])
            ) / reps  # supercell fractional coordinates of this image
            keep = dec.owner(f) == rank
            if keep.any():
                img = ((i * reps[1] + j) * reps[2] + k) * n_unit
                ids.append(img + np.flatnonzero(keep))
                pos.append(f[keep] @ self.cell)
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, 3))
        return np.concatenate(ids).astype(np.int64), np.concatenate(pos)


def maxwell_boltzmann(
    ids: np.ndarray, masses: np.ndarray, temperature_K: float, seed: int, comm=SERIAL
) -> np.ndarray:
    """Velocities (A / ASE time) of atoms ``ids`` drawn by id at ``temperature_K`` (counter-based: the same for an atom
    on any rank), less the centre-of-mass velocity of the whole system (summed over ``comm``)."""
    v = (
        standard_normal(seed, VELOCITIES, 0, ids)
        * np.sqrt(units.kB * float(temperature_K) / masses)[:, None]
    )
    p = (masses[:, None] * v).sum(axis=0)
    m = float(masses.sum())
    p, m = np.asarray(comm.allreduce(p)), float(comm.allreduce(m))
    return v - (p / m if m > 0 else 0.0)
