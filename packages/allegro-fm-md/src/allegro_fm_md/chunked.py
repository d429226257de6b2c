"""Memory-bounded force evaluation: any Potential evaluated on chunks of centre atoms, so a model's per-edge
temporaries never hold more than ``max_edges`` edges at once (issue #19: the model's memory grows with its edges).

A strictly local model's energy is a sum over centre atoms of terms that depend only on the edges centred on them
(Allegro: each pair energy E_ij is built from the environment of i alone). So each chunk passes one centre range with
all of its edges, the chunk's centres first as "local" atoms and their neighbours after them as ghosts; the chunk's
energy is that of its centres, its forces land on every atom it touched, its virial is its edges' part. Summed over
chunks this is the unchunked result exactly (to the order of floating-point sums). Written here: neither nequip nor
ASE splits a graph by centres with the local/ghost bookkeeping this engine's contract needs.
"""

from __future__ import annotations

import numpy as np

from .contracts import PotentialResult


class ChunkedPotential:
    """``potential`` evaluated at most ``max_edges`` edges at a time (at least one centre atom per call); the same
    Potential contract (species, cutoff, types_of, compute). ``calls`` counts the inner calls of the last compute."""

    def __init__(self, potential, max_edges: int):
        if int(max_edges) < 1:
            raise ValueError(f"max_edges must be >= 1 (got {max_edges})")
        self.inner, self.max_edges = potential, int(max_edges)
        self.species, self.cutoff = potential.species, potential.cutoff
        self.calls = 0

    def types_of(self, symbols):
        return self.inner.types_of(symbols)

    def __getattr__(self, name):  # device, dtype, describe(), memory_per_edge_bytes ... of the wrapped potential
        return getattr(self.inner, name)

    def compute(self, positions, types, edge_index, n_local: int, edge_shifts=None) -> PotentialResult:
        """As the wrapped potential's ``compute`` (eV, eV/A), evaluated in chunks of centre atoms."""
        positions = np.asarray(positions)
        types = np.asarray(types)
        ei = np.asarray(edge_index, dtype=np.int64)
        if ei.shape[1] <= self.max_edges:
            self.calls = 1
            return self.inner.compute(positions, types, ei, n_local, edge_shifts)
        if (ei[0] >= n_local).any():
            raise ValueError("edges must be centred on local atoms (i < n_local)")
        order = np.argsort(ei[0], kind="stable")
        ei = ei[:, order]
        shifts = None if edge_shifts is None else np.asarray(edge_shifts)[order]
        # edge ranges per centre atom, then centre ranges whose edges fit max_edges
        starts = np.searchsorted(ei[0], np.arange(n_local + 1))
        forces = np.zeros((len(positions), 3))
        virial = np.zeros((3, 3))
        atomic = np.zeros(n_local)
        energy = 0.0
        self.calls = 0
        c0 = 0
        while c0 < n_local:
            # the largest c1 with starts[c1] - starts[c0] <= max_edges (at least one centre)
            c1 = int(np.searchsorted(starts, starts[c0] + self.max_edges, side="right")) - 1
            c1 = min(max(c1, c0 + 1), n_local)
            e0, e1 = int(starts[c0]), int(starts[c1])
            sub_e = ei[:, e0:e1]
            centres = np.arange(c0, c1)
            others = np.setdiff1d(np.unique(sub_e[1]), centres, assume_unique=False)
            atoms = np.concatenate([centres, others])
            remap = np.full(len(positions), -1, dtype=np.int64)
            remap[atoms] = np.arange(len(atoms))
            r = self.inner.compute(positions[atoms], types[atoms], remap[sub_e], len(centres),
                                   None if shifts is None else shifts[e0:e1])
            energy += float(r.energy)
            forces[atoms] += np.asarray(r.forces, dtype=np.float64)
            virial += np.asarray(r.virial, dtype=np.float64)
            atomic[c0:c1] = np.asarray(r.atomic_energies, dtype=np.float64)
            self.calls += 1
            c0 = c1
        return PotentialResult(energy, forces, virial, atomic)
