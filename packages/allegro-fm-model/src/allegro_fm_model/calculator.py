"""ASE Calculator over an ``AllegroPotential``: energy (eV), forces (eV/A), stress (eV/A^3, ASE sign)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .edges import complete_cell, periodic_edges  # noqa: F401  (re-exported: the calculator's edges)


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
            raise TypeError(
                "AllegroFMCalculator: this potential was built in memory, not loaded from a file, and cannot be "
                "pickled; give the calculator a model file or shipped name"
            )
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
        self.results = {
            "energy": r.energy,
            "free_energy": r.energy,
            "energies": r.atomic_energies,
            "forces": r.forces,
        }
        if a.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(-r.virial / a.get_volume())
