"""Reference pair potentials (Lennard-Jones, Morse) meeting the same Potential call as Allegro-FM.

Each edge i -> j (i local) carries half the pair energy, so the energy of a rank's local atoms is
E_local = sum_{i local} sum_j phi(r_ij) / 2, exactly the edge-centred partition an Allegro model uses:
summing E_local, forces and virials over ranks gives the whole system's. Units: eV, Angstrom.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tea_align.elements import type_indices

from .contracts import PotentialResult


class _PairPotential:
    species: tuple[str, ...]
    cutoff: float
    #: True: ``compute`` also returns per-atom virials (contracts.PerAtomVirialPotential)
    per_atom_virial: bool = False

    def types_of(self, symbols: Sequence[str]) -> np.ndarray:
        return type_indices(self.species, symbols)

    def _phi(self, r: np.ndarray, ti: np.ndarray, tj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - each subclass defines its pair function

    def compute(self, positions, types, edge_index, n_local, edge_shifts=None) -> PotentialResult:
        """Same call as AllegroPotential.compute: local energy, forces on all atoms, virial (and per-atom virials, eV, when
        ``per_atom_virial``)."""
        pos = np.asarray(positions, dtype=np.float64)
        ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        if ei.shape[1] and ei[0].max() >= n_local:
            raise ValueError(
                "edge_index has an edge centred on a ghost atom; only local centres are allowed"
            )
        vec = pos[ei[1]] - pos[ei[0]]
        if edge_shifts is not None:
            vec = vec + np.asarray(edge_shifts, dtype=np.float64)
        r = np.sqrt(np.einsum("ij,ij->i", vec, vec))
        inside = r < self.cutoff
        t = np.asarray(types)
        e, de = self._phi(r, t[ei[0]], t[ei[1]])
        e = np.where(inside, 0.5 * e, 0.0)
        g = np.where(inside, 0.5 * de / np.where(r > 0, r, 1.0), 0.0)[:, None] * vec  # dE/dvec
        forces = np.zeros_like(pos)
        np.add.at(forces, ei[0], g)
        np.add.at(forces, ei[1], -g)
        atomic = np.bincount(ei[0], weights=e, minlength=n_local)[:n_local]
        per_atom = None
        if self.per_atom_virial:  # each edge's -r (x) dE/dr on its centre
            per_atom = np.zeros((n_local, 3, 3))
            np.add.at(per_atom, ei[0], -(vec[:, :, None] * g[:, None, :]))
        return PotentialResult(float(atomic.sum()), forces, -(vec.T @ g), atomic, per_atom)


class LennardJones(_PairPotential):
    """12-6 Lennard-Jones, shifted to zero energy at ``cutoff``; one (epsilon eV, sigma A) for all pairs."""

    def __init__(
        self,
        species: Sequence[str],
        epsilon: float = 0.0104,
        sigma: float = 3.40,
        cutoff: float = 8.5,
    ):
        self.species, self.epsilon, self.sigma, self.cutoff = (
            tuple(species),
            float(epsilon),
            float(sigma),
            float(cutoff),
        )
        sr6 = (self.sigma / self.cutoff) ** 6
        self._shift = 4 * self.epsilon * (sr6 * sr6 - sr6)

    def _phi(self, r, ti, tj):
        sr6 = (self.sigma / r) ** 6
        e = 4 * self.epsilon * (sr6 * sr6 - sr6) - self._shift
        de = 4 * self.epsilon * (-12 * sr6 * sr6 + 6 * sr6) / r
        return e, de


class Morse(_PairPotential):
    """Morse pair potential D [(1 - exp(-a (r - r0)))^2 - 1], shifted to zero at ``cutoff`` (eV, 1/A, A)."""

    def __init__(
        self,
        species: Sequence[str],
        depth: float = 0.5,
        a: float = 1.5,
        r0: float = 2.5,
        cutoff: float = 6.0,
    ):
        self.species, self.depth, self.a, self.r0, self.cutoff = (
            tuple(species),
            float(depth),
            float(a),
            float(r0),
            float(cutoff),
        )
        x = np.exp(-self.a * (self.cutoff - self.r0))
        self._shift = self.depth * ((1 - x) ** 2 - 1)

    def _phi(self, r, ti, tj):
        x = np.exp(-self.a * (r - self.r0))
        return self.depth * ((1 - x) ** 2 - 1) - self._shift, 2 * self.depth * (1 - x) * self.a * x
