"""ASE Calculator over an ``AllegroPotential`` (or a committee): energy (eV), forces (eV/A), stress (eV/A^3, ASE sign),
per-atom energies (``get_potential_energies``, eV) and per-atom stresses (``get_stresses``, eV/A^3), which sum to the
energy and the stress as in ase.calculators.lj; a committee also gives ``force_deviation`` (per atom, eV/A)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .edges import complete_cell, periodic_edges  # noqa: F401  (re-exported: the calculator's edges)


class AllegroFMCalculator(Calculator):
    """ASE calculator of an Allegro-FM potential: a loaded one (any object with ``compute``, ``species``, ``cutoff``), a
    model file's path or shipped model's name (``load_potential(model, device)``), or a list of them: a committee
    (``load_committee``, ``weights`` default equal), whose results are the weighted means and which also gives
    ``force_deviation`` (per atom, eV/A: ``calc.get_property("force_deviation", atoms)``); ``heads``: true (the heads
    shipped beside a shipped model) or a heads file: the model's shallow ensemble (heads.py), a committee too. Pickles (for
    multiprocessing, ASE's NEB in parallel, dask): a potential loaded from files travels as their paths and is loaded
    again on unpickling; one built in memory (no ``source``) cannot be pickled, and says so."""

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "stresses",
        "force_deviation",
    ]

    def __init__(self, potential, device: str = "cpu", weights=None, heads=None, **kwargs):
        super().__init__(**kwargs)
        if (
            heads is not None and heads is not False
        ):  # a shallow ensemble of one model file (heads.py)
            from .heads import load_heads_potential  # lazy: torch
            from .loading import builtin_heads_path  # lazy: loading imports the model kinds

            potential = load_heads_potential(
                potential, builtin_heads_path(str(potential)) if heads is True else heads, device
            )
        elif isinstance(potential, (list, tuple)):
            from .loading import load_committee  # lazy: loading imports the model kinds (torch)

            potential = load_committee(potential, weights, device)
        elif isinstance(potential, (str, Path)):
            from .loading import load_potential  # lazy: loading imports the model kinds (torch)

            potential = load_potential(potential, device)
        self.potential = potential

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        source = getattr(self.potential, "sources", None) or getattr(self.potential, "source", None)
        if source is None:
            raise TypeError(
                "AllegroFMCalculator: this potential was built in memory, not loaded from a file, and cannot be "
                "pickled; give the calculator a model file or shipped name"
            )
        device = str(getattr(self.potential, "device", None) or _member_device(self.potential))
        weights = getattr(self.potential, "weights", None)
        source = [str(s) for s in source] if isinstance(source, tuple) else str(source)
        heads = getattr(self.potential, "heads_source", None)
        state["potential"] = (
            source,
            device,
            None if weights is None else list(weights),
            None if heads is None else str(heads),
        )
        return state

    def __setstate__(self, state: dict) -> None:
        from .loading import load_committee, load_potential  # lazy: loading imports torch

        source, device, weights, heads = state["potential"]
        self.__dict__.update(state)
        if heads is not None:
            from .heads import load_heads_potential  # lazy: torch

            self.potential = load_heads_potential(source, heads, device)
        elif isinstance(source, list):
            self.potential = load_committee(source, weights, device)
        else:
            self.potential = load_potential(source, device)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        types = self.potential.types_of(a.get_chemical_symbols())
        ei, shifts = periodic_edges(a.positions, np.array(a.cell), a.pbc, self.potential.cutoff)
        per_atom = "stresses" in properties and a.pbc.all()
        if per_atom and not hasattr(self.potential, "per_atom_virial"):
            raise NotImplementedError(
                f"{type(self.potential).__name__} gives no per-atom virials (get_stresses)"
            )
        if per_atom:
            self.potential.per_atom_virial = True
        try:
            r = self.potential.compute(a.positions, types, ei, len(a), shifts)
        finally:
            if per_atom:
                self.potential.per_atom_virial = False
        self.results = {
            "energy": r.energy,
            "free_energy": r.energy,
            "energies": r.atomic_energies,
            "forces": r.forces,
        }
        if a.pbc.all():
            vol = a.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(-r.virial / vol)
            if (
                r.atomic_virials is not None
            ):  # ASE's convention (ase.calculators.lj): they sum to the stress
                self.results["stresses"] = full_3x3_to_voigt_6_stress(-r.atomic_virials / vol)
        if r.member_forces is not None:
            self.results["force_deviation"] = self.potential.force_deviation(r.member_forces)


def _member_device(potential) -> str:
    members = getattr(potential, "members", None) or [None]
    return str(getattr(members[0], "device", "cpu"))
