"""Unit conversions, written once.

Internal units everywhere in tea-align: energy eV, length Angstrom, force eV/Angstrom,
stress eV/Angstrom^3 with ASE's sign convention (positive = tensile, i.e. the negative of pressure).
All factors derive from ase.units (CODATA 2014) so that every package of the project agrees.
"""

from __future__ import annotations

from ase import units as _u

#: 1 Hartree in eV.
HARTREE_TO_EV: float = _u.Hartree
#: 1 Bohr in Angstrom.
BOHR_TO_ANGSTROM: float = _u.Bohr
#: 1 Hartree/Bohr in eV/Angstrom.
HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = _u.Hartree / _u.Bohr
#: 1 GPa in eV/Angstrom^3.
GPA_TO_EV_PER_ANGSTROM3: float = _u.GPa
#: 1 kBar (VASP's stress unit) in eV/Angstrom^3 (magnitude only; see VASP_STRESS_SIGN).
KBAR_TO_EV_PER_ANGSTROM3: float = 0.1 * _u.GPa
#: VASP (and so MPtrj) reports stress with pressure positive; ASE and tea-align use tensile positive.
VASP_STRESS_SIGN: float = -1.0
#: 1 kcal/mol in eV.
KCAL_PER_MOL_TO_EV: float = _u.kcal / _u.mol
#: eV -> kcal/mol (barriers in the paper's unit)
EV_TO_KCAL_PER_MOL: float = 1.0 / KCAL_PER_MOL_TO_EV
#: eV/A^3 -> MPa (stress RMSEs)
EV_PER_ANGSTROM3_TO_MPA: float = 1.0 / _u.GPa * 1000.0
#: Boltzmann constant (eV/K)
BOLTZMANN_EV_PER_K: float = _u.kB

#: The paper's force filter: frames with any force component above 0.25 Hartree/Bohr are dropped.
PAPER_FORCE_THRESHOLD_EV_PER_ANGSTROM: float = 0.25 * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM

#: Units of the aligned-dataset schema, stored in the file so readers can refuse a mismatch.
SCHEMA_UNITS: dict[str, str] = {
    "energy": "eV",
    "length": "Angstrom",
    "forces": "eV/Angstrom",
    "stress": "eV/Angstrom^3 (ASE sign: positive = tensile)",
}

_FORCE_UNITS = {
    "ev/a": 1.0,
    "ev/angstrom": 1.0,
    "hartree/bohr": HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
    "ha/bohr": HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
}


def parse_force(text: str) -> float:
    """Parse a force magnitude with units, e.g. ``"0.25 Hartree/Bohr"`` or ``"12.0 eV/A"``; returns eV/Angstrom."""
    parts = str(text).strip().split()
    if len(parts) == 1:
        raise ValueError(
            f"force threshold {text!r} has no unit; write e.g. '0.25 Hartree/Bohr' or '12 eV/A'"
        )
    value, unit = float(parts[0]), "".join(parts[1:]).lower()
    if unit not in _FORCE_UNITS:
        raise ValueError(f"unknown force unit {parts[1]!r}; known: eV/A, eV/Angstrom, Hartree/Bohr")
    return value * _FORCE_UNITS[unit]
