"""Where forces are computed on one rank: ghosts, the Verlet list and the potential call.

``ForceEvaluator`` keeps the halo (periodic images within cutoff + skin) and the neighbour list between
rebuilds; ghosts move with their owners (image = owner + shift @ cell), and everything is rebuilt, with
positions wrapped into the cell, when an atom moved more than skin / 2. Units: eV, Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ghosts import fold_forces, periodic_halo, wrap
from .neighbor import VerletList


@dataclass(frozen=True)
class ForceResult:
    """energy (eV), forces (N, 3) eV/A on the local atoms, virial (3, 3) eV (W = -dE/dstrain)."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray


class ForceEvaluator:
    """Energy, forces and virial of a periodic (or open) system on one rank with any Potential."""

    def __init__(self, potential, types: np.ndarray, skin: float = 1.0):
        self.potential = potential
        self.types = np.asarray(types, dtype=np.int64)
        self.verlet = VerletList(potential.cutoff, skin)
        self._owner = np.zeros(0, np.int64)
        self._shift = np.zeros((0, 3))

    def _check_box(self, cell: np.ndarray, pbc: np.ndarray) -> None:
        if pbc.any() and not pbc.all():
            raise ValueError("mixed periodicity is not supported: all three directions periodic, or none")

    def rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
        """Wrap positions, rebuild halo and neighbour list; returns the wrapped positions."""
        self._check_box(cell, pbc)
        n = len(positions)
        if pbc.all():
            positions = wrap(positions, cell)
            halo = periodic_halo(positions, cell, self.verlet.cutoff + self.verlet.skin)
            self._owner, self._shift = halo.owner, halo.shift @ cell
        else:
            self._owner, self._shift = np.zeros(0, np.int64), np.zeros((0, 3))
        self.verlet.build(self._all_positions(positions), n)
        return positions

    def _all_positions(self, positions: np.ndarray) -> np.ndarray:
        return np.concatenate([positions, positions[self._owner] + self._shift]) if len(self._owner) else positions

    def compute(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, ForceResult]:
        """(possibly re-wrapped positions, result). Rebuilds the lists when the skin criterion says so."""
        n = len(positions)
        allpos = self._all_positions(positions) if self.verlet.builds else None
        if allpos is None or self.verlet.needs_rebuild(allpos):
            positions = self.rebuild(positions, cell, pbc)
            allpos = self._all_positions(positions)
        types = np.concatenate([self.types, self.types[self._owner]])
        r = self.potential.compute(allpos, types, self.verlet.edges(allpos), n)
        return positions, ForceResult(float(r.energy), fold_forces(np.asarray(r.forces), n, self._owner), np.asarray(r.virial))
