"""Neighbour edges of a structure for a model call: ``periodic_edges`` (vesin), with ``complete_cell`` for slabs, wires
and molecules (cell vectors along open axes). Units: Angstrom."""

from __future__ import annotations

import numpy as np
from vesin import NeighborList


def periodic_edges(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` (A) by vesin: edge_index (2, E) and Cartesian shifts (E, 3) A. ``pbc`` per
    axis: slabs (pbc = [T, T, F], ase.build.surface's default) and wires have images along their periodic axes only."""
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    box = complete_cell(cell, pbc, positions, cutoff) if pbc.any() else np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(positions, dtype=np.float64),
        box=box,
        periodic=pbc.tolist(),
        quantities="ijS",
    )
    return np.stack([i, j]).astype(np.int64), s.astype(np.float64) @ box


def complete_cell(
    cell: np.ndarray, pbc: np.ndarray, positions: np.ndarray, cutoff: float
) -> np.ndarray:
    """The cell with each missing (zero) vector along a non-periodic axis replaced by one normal to the others and longer
    than the atoms' extent plus ``cutoff`` (A): no image is ever made along it. A missing periodic vector is an error."""
    cell = np.array(cell, dtype=np.float64).reshape(3, 3)
    missing = np.linalg.norm(cell, axis=1) == 0
    if (missing & pbc).any():
        raise ValueError(
            f"periodic along {'xyz'[int(np.argmax(missing & pbc))]} but that cell vector is zero"
        )
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
