"""The numba cell list finds exactly the pairs a reference library finds."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.neighbor import VerletList, build_edges
from vesin import NeighborList


def _reference(pos, n_local, cutoff):
    i, j = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=pos, box=np.zeros((3, 3)), periodic=False, quantities="ij"
    )
    keep = i < n_local
    return {(int(a), int(b)) for a, b in zip(i[keep], j[keep])}


@pytest.mark.parametrize(
    "n,n_local,cutoff", [(500, 500, 3.0), (800, 300, 4.5), (50, 10, 20.0), (300, 1, 2.0)]
)
def test_cell_list_matches_vesin(n, n_local, cutoff):
    rng = np.random.default_rng(n)
    pos = rng.random((n, 3)) * np.array([20.0, 15.0, 12.0]) - 3.0
    ei = build_edges(pos, n_local, cutoff)
    assert {(int(a), int(b)) for a, b in ei.T} == _reference(pos, n_local, cutoff)
    assert np.all(np.diff(ei[0]) >= 0) and np.all(ei[0] < n_local)


def test_verlet_skin_rebuild_rule():
    rng = np.random.default_rng(0)
    pos = rng.random((400, 3)) * 15
    vl = VerletList(cutoff=3.0, skin=1.0)
    vl.build(pos, 400)
    moved = pos + rng.normal(0, 1, pos.shape) * 0.1
    moved[0] = pos[0] + [0.45, 0, 0]
    assert not vl.needs_rebuild(moved)
    # while no atom moved more than skin / 2, the stored list still holds every pair within the cutoff
    assert {tuple(e) for e in vl.edges(moved).T} == _reference(moved, 400, 3.0)
    moved[1] = pos[1] + [0.0, 0.51, 0.0]
    assert vl.needs_rebuild(moved)
