"""ASE Calculator over an ``AllegroPotential``: energy (eV), forces (eV/A), stress (eV/A^3, ASE sign)."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from vesin import NeighborList


def periodic_edges(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` (A) by vesin: edge_index (2, E) and Cartesian shifts (E, 3) A."""
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise ValueError("mixed periodicity is not supported: make all three directions periodic or none")
    periodic = bool(pbc.all())
    box = np.asarray(cell, dtype=np.float64) if periodic else np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(positions, dtype=np.float64), box=box, periodic=periodic, quantities="ijS")
    return np.stack([i, j]).astype(np.int64), s.astype(np.float64) @ box


class AllegroFMCalculator(Calculator):
    """ASE calculator of an Allegro-FM potential (any object with ``compute``, ``species``, ``cutoff``)."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        types = self.potential.types_of(a.get_chemical_symbols())
        ei, shifts = periodic_edges(a.positions, np.array(a.cell), a.pbc, self.potential.cutoff)
        r = self.potential.compute(a.positions, types, ei, len(a), shifts)
        self.results = {"energy": r.energy, "free_energy": r.energy, "energies": r.atomic_energies, "forces": r.forces}
        if a.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(-r.virial / a.get_volume())
