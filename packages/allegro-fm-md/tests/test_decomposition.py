"""Decomposition checks that need no MPI: grids, ownership, too-thin subdomains, the serial exchange."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.comm import Decomposition, GhostExchange, SerialComm, choose_grid
from allegro_fm_md.ghosts import periodic_halo


class FakeComm(SerialComm):
    def __init__(self, size, rank=0):
        self.size, self.rank = size, rank


def test_grid_follows_cell_shape():
    assert choose_grid(8, np.diag([20.0, 20.0, 20.0])) == (2, 2, 2)
    assert choose_grid(4, np.diag([40.0, 10.0, 10.0])) == (4, 1, 1)
    assert choose_grid(6, np.diag([30.0, 20.0, 10.0])) == (3, 2, 1)


def test_thin_subdomains_take_more_swaps_and_a_cell_thinner_than_the_halo_is_refused():
    """A subdomain thinner than the halo is exchanged over ceil(halo / width) swaps per direction (tests/test_mpi.py
    runs it); only a cell thinner than the halo along a periodic axis is refused (images beyond the next cell)."""
    assert Decomposition(FakeComm(2), np.diag([12.0, 30.0, 30.0]), (2, 1, 1), halo=7.0).hops == (
        2,
        1,
        1,
    )
    assert Decomposition(FakeComm(8), np.diag([21.2, 15.9, 15.9]), (8, 1, 1), halo=7.0).hops == (
        3,
        1,
        1,
    )
    with pytest.raises(ValueError, match="the cell is thinner than cutoff \\+ skin along x"):
        Decomposition(FakeComm(2), np.diag([6.0, 30.0, 30.0]), (2, 1, 1), halo=7.0)


def test_owner_covers_every_rank_once():
    cell = np.array([[20.0, 0, 0], [3.0, 18.0, 0], [1.0, -2.0, 16.0]])
    dec = Decomposition(FakeComm(8, 5), cell, (2, 2, 2), halo=5.0)
    frac = np.random.default_rng(0).random((4000, 3))
    own = dec.owner(frac)
    assert set(own) == set(range(8))
    mine = frac[own == 5]
    assert np.all((mine >= dec.lo) & (mine < dec.hi))


def test_serial_exchange_gives_the_periodic_images():
    cell = np.array([[12.0, 0, 0], [2.0, 11.0, 0], [-1.0, 1.5, 10.5]])
    pos = np.random.default_rng(1).random((50, 3)) @ cell
    dec = Decomposition(SerialComm(), cell, (1, 1, 1), halo=4.0)
    allpos, _ = GhostExchange(dec).build(pos, np.zeros(50, int))
    ref = periodic_halo(pos, cell, 4.0)
    ours = {tuple(np.round(p, 9)) for p in allpos[50:]}
    theirs = {tuple(np.round(p, 9)) for p in ref.positions}
    assert ours == theirs


def test_lost_atoms_are_named(monkeypatch):
    import allegro_fm_md.comm as comm_mod
    from allegro_fm_md.forces import DistributedForceEvaluator
    from allegro_fm_md.integrators import State
    from allegro_fm_md.reference import LennardJones
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.3, cubic=True) * (3, 3, 3)
    st = State(
        a.positions.copy(),
        np.zeros((len(a), 3)),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        ids=np.arange(len(a)),
        types=np.zeros(len(a), int),
    )
    ev = DistributedForceEvaluator(
        LennardJones(["Ar"], cutoff=6.0), SerialComm(), st.cell, skin=0.5
    )
    ev.update(st)
    real = comm_mod.migrate
    # a broken exchange that drops atom 17 on the way
    monkeypatch.setattr(
        comm_mod,
        "migrate",
        lambda dec, arrays: {k: np.delete(v, 17, axis=0) for k, v in real(dec, arrays).items()},
    )
    ev.invalidate()
    st.step = 42
    with pytest.raises(RuntimeError, match=r"step 42: lost atoms: 1 of 108 \(ids 17\)"):
        ev.update(st)


def test_wrapped_atoms_lie_in_the_subdomain_of_their_owner():
    """Lattice atoms a rounding error below a face (frac = -1e-17) used to wrap to frac = 1.0 exactly while their owner
    was computed as the bottom rank, so the top ghosts of the triclinic 4x4x4 crystal on a 2 x 1 x 2 grid went missing
    (256 atoms: 7294 of 7680 edges on 4 ranks; found by the NPT 4-rank == 1-rank test). Every wrapped atom now lies in
    the [lo, hi) box of the rank that owns it."""
    from allegro_fm_md.ghosts import wrap
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.30, cubic=True) * (4, 4, 4)
    a.set_cell(a.cell @ np.array([[1, 0.06, 0], [0, 1, 0.04], [0, 0, 1]]), scale_atoms=True)
    cell = np.array(a.cell)
    pos = wrap(a.positions, cell)
    frac = pos @ np.linalg.inv(cell)
    assert (frac >= -1e-12).all() and (frac < 1.0).all()

    class Rank:
        def __init__(self, r):
            self.rank, self.size = r, 4

    decs = [Decomposition(Rank(r), cell, (2, 1, 2), halo=7.0) for r in range(4)]
    owner = decs[0].owner(frac)
    for r, dec in enumerate(decs):
        f = frac[owner == r]
        assert ((f >= dec.lo - 1e-12) & (f < dec.hi)).all(), r
    assert sorted(np.bincount(owner, minlength=4)) == [64, 64, 64, 64]
