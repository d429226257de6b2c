"""Any format ase.io reads (extxyz, ASE db, VASP, ...), streamed frame by frame with ``ase.io.iread``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ase.io
import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from ..errors import TeaAlignError
from ..frame import Frame

_ENERGY_KEYS = ("energy", "REF_energy", "dft_energy", "total_energy", "free_energy")
_FORCE_KEYS = ("forces", "REF_forces", "dft_forces", "force")
_STRESS_KEYS = ("stress", "REF_stress", "dft_stress", "virial_stress")


def _stress_3x3(s) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.size == 6:
        return voigt_6_to_full_3x3_stress(s.reshape(6))
    if s.size == 9:
        return s.reshape(3, 3)
    raise ValueError(f"stress has {s.size} components, expected 6 (Voigt) or 9")


def read_ase(
    path: str | Path,
    *,
    source: str,
    level_of_theory: str | None = None,
    format: str | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    mixed_levels: bool = False,
) -> Iterator[Frame]:
    """Stream frames from any ase.io format. Units must already be eV, Angstrom, eV/A, eV/A^3 (ASE's).

    Energy/forces/stress come from the frame's calculator results or from ``atoms.info`` /
    ``atoms.arrays`` keys (``energy_key`` etc.; defaults try common names such as ``REF_energy``).
    The level of theory comes from ``level_of_theory`` or each frame's ``info['level_of_theory']``;
    one file holds one level unless ``mixed_levels`` (anchor files: the same structures at several levels).
    """
    path = Path(path)
    it = ase.io.iread(str(path), index=":", format=format)
    i = -1
    while True:
        i += 1
        try:
            atoms = next(it)
        except StopIteration:
            break
        except Exception as exc:  # ase raises many types for a truncated or malformed frame
            raise TeaAlignError(
                f"cannot parse: {type(exc).__name__}: {exc}", path=path, frame=i
            ) from exc
        try:
            frame = _to_frame(
                atoms, i, path, source, level_of_theory, energy_key, forces_key, stress_key
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TeaAlignError(str(exc), path=path, frame=i) from exc
        if not mixed_levels:
            level_of_theory = frame.level_of_theory  # one file = one level: later frames must agree
        yield frame
    if i == 0:
        raise TeaAlignError("no frames in file (empty dataset)", path=path)


def _result(atoms, name: str, info_keys: tuple[str, ...], explicit: str | None, per_atom: bool):
    store = atoms.arrays if per_atom else atoms.info
    if explicit is not None:
        if explicit in store:
            return store[explicit]
        if explicit in atoms.info:
            return atoms.info[explicit]
        raise KeyError(f"key {explicit!r} not found")
    calc = atoms.calc
    if calc is not None and name in getattr(calc, "results", {}):
        return calc.results[name]
    for k in info_keys:
        if k in store:
            return store[k]
    return None


def _to_frame(atoms, i, path, source, level, energy_key, forces_key, stress_key) -> Frame:
    lvl = atoms.info.get("level_of_theory", level)
    if level is not None and lvl != level:
        raise ValueError(
            f"frame says level_of_theory={lvl!r} but the source was declared {level!r}"
        )
    if lvl is None:
        raise ValueError(
            "level of theory unknown: declare it (level=...) or set info['level_of_theory']"
        )
    energy = _result(atoms, "energy", _ENERGY_KEYS, energy_key, per_atom=False)
    if energy is None:
        raise ValueError(
            "no energy (no calculator result and none of info keys " + ", ".join(_ENERGY_KEYS) + ")"
        )
    forces = _result(atoms, "forces", _FORCE_KEYS, forces_key, per_atom=True)
    stress = _result(atoms, "stress", _STRESS_KEYS, stress_key, per_atom=False)
    n = len(atoms)
    if forces is not None and np.shape(forces) != (n, 3):
        raise ValueError(f"forces have shape {np.shape(forces)} for {n} atoms")
    key = str(atoms.info.get("key", atoms.info.get("config_type", "")))
    return Frame(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=np.array(atoms.cell),
        pbc=atoms.pbc,
        energy=float(np.asarray(energy).reshape(())),
        forces=forces,
        stress=None if stress is None else _stress_3x3(stress),
        source=source,
        level_of_theory=str(lvl),
        key=key,
        index=i,
    )
