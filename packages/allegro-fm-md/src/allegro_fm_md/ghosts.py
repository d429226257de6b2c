"""Periodic images as ghost atoms (the one-rank case of the ghost exchange; triclinic cells).

A ghost is an image x + n @ cell (n integer, n != 0) lying within ``halo`` (A) of the cell, measured
perpendicular to the faces: in fractional coordinates, within halo / d_k of [0, 1) where d_k is the
spacing of lattice planes k. Forces on ghosts are summed back onto their owners with
``fold_forces`` (the reverse communication).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def plane_spacings(cell: np.ndarray) -> np.ndarray:
    """Distances (A) between opposite faces of the cell: V / |a_j x a_k|."""
    cell = np.asarray(cell, dtype=np.float64)
    vol = abs(np.linalg.det(cell))
    return np.array(
        [vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    )


@dataclass(frozen=True)
class Halo:
    """Ghost images of local atoms: positions (G, 3) A, owner index (G,), integer image shift (G, 3)."""

    positions: np.ndarray
    owner: np.ndarray
    shift: np.ndarray


def periodic_halo(positions: np.ndarray, cell: np.ndarray, halo: float, pbc=None) -> Halo:
    """All images of ``positions`` (inside the cell along periodic axes) within ``halo`` of the cell's faces; images
    only along the axes where ``pbc`` (default: all three) is True (slabs: [T, T, F])."""
    cell = np.asarray(cell, dtype=np.float64)
    periodic = np.ones(3, bool) if pbc is None else np.asarray(pbc, dtype=bool).reshape(3)
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(cell)
    margin = np.where(
        periodic, halo / plane_spacings(cell), np.inf
    )  # no face to be near along an open axis
    m = np.where(periodic, np.ceil(halo / plane_spacings(cell)), 0).astype(int)
    shifts = np.array(
        [
            (i, j, k)
            for i in range(-m[0], m[0] + 1)
            for j in range(-m[1], m[1] + 1)
            for k in range(-m[2], m[2] + 1)
            if (i, j, k) != (0, 0, 0)
        ],
        dtype=np.int64,
    ).reshape(-1, 3)
    pos_l, own_l, sh_l = [], [], []
    for s in shifts:
        f = frac + s
        keep = np.all((f >= -margin) & (f < 1.0 + margin), axis=1)
        idx = np.flatnonzero(keep)
        if len(idx):
            pos_l.append(f[idx] @ cell)
            own_l.append(idx)
            sh_l.append(np.repeat(s[None], len(idx), axis=0))
    if not pos_l:
        return Halo(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros((0, 3), np.int64))
    return Halo(np.concatenate(pos_l), np.concatenate(own_l), np.concatenate(sh_l))


def fold_forces(forces: np.ndarray, n_local: int, owner: np.ndarray) -> np.ndarray:
    """Local forces with ghost forces added onto their owners (reverse communication on one rank)."""
    out = np.array(forces[:n_local], dtype=np.float64, copy=True)
    np.add.at(out, owner, forces[n_local:])
    return out


def wrap(positions: np.ndarray, cell: np.ndarray, pbc=None) -> np.ndarray:
    """Positions moved into the cell by whole lattice vectors along the periodic axes (``pbc``, default all); atoms
    already inside are returned bit-for-bit unchanged (so wrapping twice changes nothing, which restarts rely on)."""
    cell = np.asarray(cell, dtype=np.float64)
    pos = np.array(positions, dtype=np.float64, copy=True)
    frac = pos @ np.linalg.inv(cell)
    n = np.floor(frac)
    n[frac - n >= 1.0] += (
        1.0  # frac = -1e-17 would land on 1.0 exactly (rounding): such an atom stays at ~0, in [0, 1)
    )
    if pbc is not None:
        n[:, ~np.asarray(pbc, dtype=bool).reshape(3)] = 0.0
    moved = (n != 0).any(axis=1)
    if moved.any():
        pos[moved] -= n[moved] @ cell
    return pos
