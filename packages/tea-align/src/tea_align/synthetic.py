"""Synthetic two-level data with a known alignment (for tests, the demo and the benchmark).

One energy model, a Morse pair sum B(x) (eV), labels structures at two invented "levels of theory":

    target   T ("synthetic molecular, all-electron-like"):  E_T = sum_Z n_Z eps_T(Z) + B(x)
    source   S ("synthetic periodic, PAW-like"):            E_S = sum_Z n_Z eps_S(Z) + B(x) / alpha

so the exact TEA transform from S to T has scale ``alpha`` and inner-core offsets
eps_T - eps_S. These are not physical energies; the product's real data comes from real
quantum chemistry (see the Allegro-FM-mini data scripts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress

from .elements import symbol_to_z
from .units import (
    BOHR_TO_ANGSTROM,
    HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
    HARTREE_TO_EV,
    KBAR_TO_EV_PER_ANGSTROM3,
    VASP_STRESS_SIGN,
)

LEVEL_T = "synthetic-T (all-electron-like)"
LEVEL_S = "synthetic-S (PAW-like)"
# isolated-atom energies (eV): all-electron-like magnitudes for T, pseudopotential-like for S
EPS_T = {"H": -13.6222, "C": -1029.4131, "O": -2041.8396, "Si": -7880.18, "Ca": -18486.22}
EPS_S = {"H": -1.1163, "C": -1.2632, "O": -1.5458, "Si": -0.8253, "Ca": -0.0930}
ALPHA = 1.0725


@dataclass(frozen=True)
class Truth:
    """The exact answer: scale alpha and offsets eps_T - eps_S (eV) per element."""

    alpha: float = ALPHA
    eps_t: dict[str, float] = field(default_factory=lambda: dict(EPS_T))
    eps_s: dict[str, float] = field(default_factory=lambda: dict(EPS_S))

    @property
    def offsets(self) -> dict[str, float]:
        return {k: self.eps_t[k] - self.eps_s[k] for k in self.eps_t}


def morse(
    atoms, cutoff: float = 5.0, depth: float = 0.6, a: float = 1.4
) -> tuple[float, np.ndarray]:
    """Morse pair sum B (eV) and forces (eV/A) with r0 = sum of covalent radii, shifted to 0 at cutoff."""
    i, j, d, D = neighbor_list("ijdD", atoms, cutoff)
    r0 = covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]]
    ex = np.exp(-a * (d - r0))
    exc = np.exp(-a * (cutoff - r0))
    e_pair = depth * ((1 - ex) ** 2 - 1) - depth * ((1 - exc) ** 2 - 1)
    de_dr = depth * 2 * (1 - ex) * a * ex
    energy = 0.5 * e_pair.sum()
    fvec = (de_dr / d)[:, None] * D  # F_i = sum_j dE/dr(r_ij) * D_ij / r_ij, D_ij = r_j - r_i
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, i, fvec)
    return float(energy), forces


def label(atoms, level: str, truth: Truth = Truth()):
    """Copy of ``atoms`` with energy/forces at a synthetic level (T or S) in a SinglePointCalculator."""
    b, f = morse(atoms)
    eps = truth.eps_t if level == LEVEL_T else truth.eps_s
    k = 1.0 if level == LEVEL_T else 1.0 / truth.alpha
    e = sum(eps[s] for s in atoms.get_chemical_symbols()) + k * b
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=e, forces=k * f)
    out.info["level_of_theory"] = level
    return out


def molecules(rng: np.random.Generator, n: int):
    """Rattled small H/C/O molecules (water, CO2, methanol, formic acid, carbonic acid, ...)."""
    names = ["H2O", "CO2", "CH3OH", "HCOOH", "CH4", "H2CO", "C2H6", "CH3CHO"]
    out = []
    for k in range(n):
        m = molecule(names[k % len(names)])
        m.rattle(0.05, seed=int(rng.integers(1 << 31)))
        out.append(m)
    return out


def crystals(rng: np.random.Generator, n: int):
    """Strained and rattled Ca/Si/O/H crystals (CaO rocksalt, alpha-quartz-like SiO2 cell, Ca(OH)2-like cell)."""
    out = []
    for k in range(n):
        kind = k % 3
        if kind == 0:
            at = bulk("CaO", "rocksalt", a=4.81)
        elif kind == 1:
            at = Atoms(
                "Si3O6",
                scaled_positions=[
                    (0.47, 0, 0),
                    (0, 0.47, 2 / 3),
                    (0.53, 0.53, 1 / 3),
                    (0.41, 0.27, 0.12),
                    (0.73, 0.14, 0.79),
                    (0.86, 0.59, 0.45),
                    (0.27, 0.41, 0.88),
                    (0.14, 0.73, 0.21),
                    (0.59, 0.86, 0.55),
                ],
                cell=[[4.91, 0, 0], [-2.455, 4.252, 0], [0, 0, 5.40]],
                pbc=True,
            )
        else:
            at = Atoms(
                "CaO2H2",
                scaled_positions=[
                    (0, 0, 0),
                    (1 / 3, 2 / 3, 0.23),
                    (2 / 3, 1 / 3, 0.77),
                    (1 / 3, 2 / 3, 0.43),
                    (2 / 3, 1 / 3, 0.57),
                ],
                cell=[[3.59, 0, 0], [-1.795, 3.109, 0], [0, 0, 4.91]],
                pbc=True,
            )
        strain = np.eye(3) + rng.normal(0, 0.02, (3, 3))
        at.set_cell(at.cell @ strain, scale_atoms=True)
        at.rattle(0.04, seed=int(rng.integers(1 << 31)))
        out.append(at)
    return out


def isolated_atoms(level: str, truth: Truth = Truth()):
    """One-atom frames at ``level`` (energy = eps, no forces from the Morse sum)."""
    return [label(Atoms(s, positions=[(0, 0, 0)]), level, truth) for s in truth.eps_t]


def write_mptrj_json(frames, path: str | Path) -> Path:
    """Write ASE frames (with results) in MPtrj's JSON layout (stress in kBar, VASP sign)."""
    doc: dict = {}
    for k, at in enumerate(frames):
        mp = f"mp-{1000 + k // 2}"
        sites = [
            {
                "species": [{"element": s, "occu": 1}],
                "xyz": list(map(float, p)),
                "abc": [0, 0, 0],
                "label": s,
            }
            for s, p in zip(at.get_chemical_symbols(), at.positions)
        ]
        stress = at.calc.results.get("stress")
        doc.setdefault(mp, {})[f"{mp}-{k}-0"] = {
            "structure": {
                "@module": "pymatgen.core.structure",
                "@class": "Structure",
                "charge": 0,
                "lattice": {"matrix": at.cell.tolist(), "pbc": [True, True, True]},
                "sites": sites,
            },
            "uncorrected_total_energy": at.get_potential_energy(),
            "force": at.get_forces().tolist(),
            "stress": None
            if stress is None
            else (VASP_STRESS_SIGN / KBAR_TO_EV_PER_ANGSTROM3 * _full(stress)).tolist(),
            "mp_id": mp,
        }
    Path(path).write_text(json.dumps(doc))
    return Path(path)


def _full(s):
    s = np.asarray(s)
    return voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s


def write_spice_h5(frames, path: str | Path, per_molecule: int = 4) -> Path:
    """Write ASE frames in SPICE's HDF5 layout (Bohr, Hartree, Hartree/Bohr gradients)."""
    import h5py  # lazy: HDF5 only for .h5 files

    with h5py.File(path, "w") as h5:
        groups: dict[str, list] = {}
        for k, at in enumerate(frames):
            groups.setdefault(f"{at.get_chemical_formula()}_{k // per_molecule}", []).append(at)
        for name, ats in groups.items():
            by_formula: dict[tuple, list] = {}
            for at in ats:
                by_formula.setdefault(tuple(at.numbers), []).append(at)
            for j, (nums, group) in enumerate(by_formula.items()):
                g = h5.create_group(f"{name}_{j}")
                g["atomic_numbers"] = np.array(nums, dtype=np.int16)
                g["conformations"] = np.array([a.positions for a in group]) / BOHR_TO_ANGSTROM
                g["dft_total_energy"] = (
                    np.array([a.get_potential_energy() for a in group]) / HARTREE_TO_EV
                )
                g["dft_total_gradient"] = (
                    -np.array([a.get_forces() for a in group]) / HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
                )
    return Path(path)


def make_demo_data(
    outdir: str | Path,
    n_crystals: int = 60,
    n_molecules: int = 60,
    n_anchors: int = 12,
    seed: int = 0,
    truth: Truth = Truth(),
) -> dict[str, Path]:
    """Write a two-level synthetic fusion problem into ``outdir``; returns the file paths.

    periodic.json   MPtrj layout, level S;  molecules.h5  SPICE layout, level T;
    anchors.extxyz  structures (molecules and crystals) and isolated atoms at both levels.
    """
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    per = [label(a, LEVEL_S, truth) for a in crystals(rng, n_crystals)]
    mol = [label(a, LEVEL_T, truth) for a in molecules(rng, n_molecules)]
    anchor_structs = molecules(rng, n_anchors // 2) + crystals(rng, n_anchors - n_anchors // 2)
    anchors = [label(a, lvl, truth) for a in anchor_structs for lvl in (LEVEL_S, LEVEL_T)]
    anchors += isolated_atoms(LEVEL_S, truth) + isolated_atoms(LEVEL_T, truth)
    paths = {
        "periodic": write_mptrj_json(per, outdir / "periodic.json"),
        "molecules": write_spice_h5(mol, outdir / "molecules.h5"),
        "anchors": outdir / "anchors.extxyz",
    }
    ase.io.write(paths["anchors"], anchors, format="extxyz")
    return paths


def composition_z(symbols: list[str]) -> np.ndarray:
    return np.array([symbol_to_z(s) for s in symbols])
