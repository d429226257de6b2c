"""ASE Calculator over an ``AllegroPotential``: energy (eV), forces (eV/A), stress (eV/A^3, ASE sign)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from vesin import NeighborList


def periodic_edges(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` (A) by vesin: edge_index (2, E) and Cartesian shifts (E, 3) A. ``pbc`` per
    axis: slabs (pbc = [T, T, F], ase.build.surface's default) and wires have images along their periodic axes only."""
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    box = complete_cell(cell, pbc, positions, cutoff) if pbc.any() else np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(positions, dtype=np.float64), box=box, periodic=pbc.tolist(), quantities="ijS")
    return np.stack([i, j]).astype(np.int64), s.astype(np.float64) @ box


def complete_cell(cell: np.ndarray, pbc: np.ndarray, positions: np.ndarray, cutoff: float) -> np.ndarray:
    """The cell with each missing (zero) vector along a non-periodic axis replaced by one normal to the others and longer
    than the atoms' extent plus ``cutoff`` (A): no image is ever made along it. A missing periodic vector is an error."""
    cell = np.array(cell, dtype=np.float64).reshape(3, 3)
    missing = np.linalg.norm(cell, axis=1) == 0
    if (missing & pbc).any():
        raise ValueError(f"periodic along {'xyz'[int(np.argmax(missing & pbc))]} but that cell vector is zero")
    if missing.any():
        extent = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
        for k in np.flatnonzero(missing):
            others = [cell[m] for m in range(3) if m != k and not missing[m]]
            normal = np.cross(*others) if len(others) == 2 else np.eye(3)[k]
            if len(others) == 1:  # a wire: any direction normal to the one vector not yet used
                normal = np.cross(others[0], np.eye(3)[int(np.argmin(np.abs(others[0])))])
            cell[k] = normal / np.linalg.norm(normal) * (extent + 2 * cutoff + 1.0)
            missing[k] = False
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError("the cell vectors are linearly dependent")
    return cell


class AllegroFMCalculator(Calculator):
    """ASE calculator of an Allegro-FM potential: a loaded one (any object with ``compute``, ``species``, ``cutoff``), or
    a model file's path or shipped model's name (``load_potential(model, device)``). Pickles (for multiprocessing, ASE's
    NEB in parallel, dask): a potential loaded from a file travels as its file's path and is loaded again on unpickling;
    one built in memory (no ``source``) cannot be pickled, and says so."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        if isinstance(potential, (str, Path)):
            from .loading import load_potential  # lazy: loading imports the model kinds (torch)

            potential = load_potential(potential, device)
        self.potential = potential

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        source = getattr(self.potential, "source", None)
        if source is None:
            raise TypeError("AllegroFMCalculator: this potential was built in memory, not loaded from a file, and cannot be "
                            "pickled; give the calculator a model file or shipped name")
        state["potential"] = (str(source), str(getattr(self.potential, "device", "cpu")))
        return state

    def __setstate__(self, state: dict) -> None:
        from .loading import load_potential  # lazy: loading imports the model kinds (torch)

        source, device = state["potential"]
        self.__dict__.update(state)
        self.potential = load_potential(source, device)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        types = self.potential.types_of(a.get_chemical_symbols())
        ei, shifts = periodic_edges(a.positions, np.array(a.cell), a.pbc, self.potential.cutoff)
        r = self.potential.compute(a.positions, types, ei, len(a), shifts)
        self.results = {"energy": r.energy, "free_energy": r.energy, "energies": r.atomic_energies, "forces": r.forces}
        if a.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(-r.virial / a.get_volume())
