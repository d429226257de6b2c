"""Periodic ghosts + local-centred edges reproduce a periodic neighbour list and periodic forces."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.ghosts import fold_forces, periodic_halo, wrap
from allegro_fm_md.neighbor import build_edges
from allegro_fm_md.reference import LennardJones
from vesin import NeighborList

CELLS = {
    "orthorhombic": np.diag([11.0, 12.5, 10.2]),
    "triclinic": np.array([[10.0, 0.0, 0.0], [4.5, 9.0, 0.0], [-2.0, 3.0, 9.5]]),
    "small": np.diag([5.0, 5.5, 6.0]),  # cutoff larger than half the box: several image shells
}


@pytest.mark.parametrize("name", list(CELLS))
def test_halo_edges_equal_periodic_neighbour_list(name):
    cell = CELLS[name]
    rng = np.random.default_rng(3)
    pos = wrap(rng.random((60, 3)) @ cell, cell)
    cutoff = 4.0
    halo = periodic_halo(pos, cell, cutoff)
    allpos = np.concatenate([pos, halo.positions])
    ei = build_edges(allpos, len(pos), cutoff)
    owner = np.concatenate([np.arange(len(pos)), halo.owner])
    shift = np.concatenate([np.zeros((len(pos), 3), int), halo.shift])
    ours = sorted((int(i), int(owner[j]), *map(int, shift[j])) for i, j in ei.T)
    i, j, S = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=pos, box=cell, periodic=True, quantities="ijS"
    )
    ref = sorted((int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, S))
    assert ours == ref


def test_lj_forces_fold_back_and_sum_to_zero():
    cell = CELLS["triclinic"]
    rng = np.random.default_rng(4)
    pos = wrap(rng.random((80, 3)) @ cell, cell)
    pot = LennardJones(["Ar"], cutoff=5.0, sigma=2.0)
    halo = periodic_halo(pos, cell, pot.cutoff)
    allpos = np.concatenate([pos, halo.positions])
    r = pot.compute(
        allpos, np.zeros(len(allpos), int), build_edges(allpos, len(pos), pot.cutoff), len(pos)
    )
    f = fold_forces(r.forces, len(pos), halo.owner)
    scale = np.abs(f).sum()  # random points: some pairs are close, forces span many decades
    assert np.abs(f.sum(axis=0)).max() < 1e-13 * scale  # Newton's third law across the boundary
    np.testing.assert_allclose(r.virial, r.virial.T, atol=1e-13 * np.abs(r.virial).max())
