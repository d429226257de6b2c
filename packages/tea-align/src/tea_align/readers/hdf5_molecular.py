"""Molecular HDF5 datasets: SPICE/OFF-style (per-molecule groups, atomic units) and Transition1x.

SPICE layout: ``/{molecule}/atomic_numbers (N)``, ``conformations (M, N, 3)`` in Bohr,
``dft_total_energy (M)`` in Hartree, ``dft_total_gradient (M, N, 3)`` in Hartree/Bohr.
Transition1x layout: ``/{train,val,test}/{formula}/{rxn}/`` with ``atomic_numbers (N)``,
``positions (M, N, 3)`` in Angstrom, ``wB97x_6-31G(d).energy (M)`` in eV and ``.forces`` in eV/A.
Both are read one molecule/reaction group at a time (bounded memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import TeaAlignError
from ..frame import Frame
from ..units import BOHR_TO_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

SPICE_LEVEL = "wB97M-D3(BJ)/def2-TZVPPD (Psi4, SPICE/OFF23)"
T1X_LEVEL = "wB97x/6-31G(d) (ORCA, Transition1x)"
_NO_CELL = np.zeros((3, 3))
_NO_PBC = np.zeros(3, dtype=bool)


def _open(path: Path):
    import h5py  # lazy: HDF5 only for .h5 files

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise TeaAlignError(f"not a readable HDF5 file ({exc})", path=path) from exc


def _get(group, name: str, path: Path, i: int, key: str) -> np.ndarray:
    if name not in group:
        raise TeaAlignError(
            f"missing dataset {name!r} in group {group.name}", path=path, frame=i, key=key
        )
    try:
        return group[name][()]
    except Exception as exc:  # h5py raises OSError/KeyError on truncated files
        raise TeaAlignError(
            f"cannot read {group.name}/{name}: {exc}", path=path, frame=i, key=key
        ) from exc


def _check_shapes(z, pos, e, f, path, i, key):
    n = len(z)
    if pos.ndim != 3 or pos.shape[1:] != (n, 3):
        raise TeaAlignError(
            f"positions have shape {pos.shape} for {n} atoms", path=path, frame=i, key=key
        )
    if e.shape != (pos.shape[0],):
        raise TeaAlignError(
            f"{e.shape[0] if e.ndim else 0} energies for {pos.shape[0]} conformations",
            path=path,
            frame=i,
            key=key,
        )
    if f is not None and f.shape != pos.shape:
        raise TeaAlignError(
            f"forces have shape {f.shape}, positions {pos.shape}", path=path, frame=i, key=key
        )


def read_spice(
    path: str | Path,
    *,
    source: str,
    level_of_theory: str = SPICE_LEVEL,
    energy_key: str = "dft_total_energy",
    gradient_key: str = "dft_total_gradient",
) -> Iterator[Frame]:
    """Stream SPICE/OFF-style HDF5 frames, converted from Hartree/Bohr to eV/Angstrom."""
    path = Path(path)
    i = 0
    with _open(path) as h5:
        for name in h5:
            g = h5[name]
            z = _get(g, "atomic_numbers", path, i, name).astype(np.int64)
            pos = _get(g, "conformations", path, i, name) * BOHR_TO_ANGSTROM
            e = _get(g, energy_key, path, i, name) * HARTREE_TO_EV
            grad = _get(g, gradient_key, path, i, name) if gradient_key in g else None
            forces = None if grad is None else -grad * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
            _check_shapes(z, pos, e, forces, path, i, name)
            yield from _conformers(z, pos, e, forces, source, level_of_theory, name, i)
            i += pos.shape[0]
    if i == 0:
        raise TeaAlignError("no frames in file (empty dataset)", path=path)


def _conformers(
    z, pos, e, forces, source: str, level: str, key: str, first: int
) -> Iterator[Frame]:
    """One molecule's conformers (``pos`` (M, N, 3) A, ``e`` (M,) eV, ``forces`` (M, N, 3) eV/A or None) as frames
    ``key/m`` numbered from ``first``."""
    for m in range(pos.shape[0]):
        yield Frame(
            numbers=z,
            positions=pos[m],
            cell=_NO_CELL,
            pbc=_NO_PBC,
            energy=float(e[m]),
            forces=None if forces is None else forces[m],
            stress=None,
            source=source,
            level_of_theory=level,
            key=f"{key}/{m}",
            index=first + m,
        )


def read_transition1x(
    path: str | Path,
    *,
    source: str,
    level_of_theory: str = T1X_LEVEL,
    splits: tuple[str, ...] = ("train", "val", "test"),
    method: str = "wB97x_6-31G(d)",
) -> Iterator[Frame]:
    """Stream Transition1x frames (all NEB images of each reaction; eV and Angstrom already)."""
    path = Path(path)
    i = 0
    with _open(path) as h5:
        for split in splits:
            if split not in h5:
                continue
            for formula in h5[split]:
                for rxn in h5[split][formula]:
                    g = h5[split][formula][rxn]
                    key = f"{split}/{formula}/{rxn}"
                    z = _get(g, "atomic_numbers", path, i, key).astype(np.int64)
                    pos = _get(g, "positions", path, i, key)
                    e = _get(g, f"{method}.energy", path, i, key)
                    f = _get(g, f"{method}.forces", path, i, key)
                    _check_shapes(z, pos, e, f, path, i, key)
                    yield from _conformers(z, pos, e, f, source, level_of_theory, key, i)
                    i += pos.shape[0]
    if i == 0:
        raise TeaAlignError(
            f"no frames in file (no reactions under {', '.join(splits)})", path=path
        )
