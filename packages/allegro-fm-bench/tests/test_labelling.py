"""The molecular labelling level (PySCF wB97M-D3(BJ)/def2-SVP): forces are minus the energy gradient."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

pytest.importorskip("pyscf")
pytest.importorskip("dftd3")


def test_wb97m_d3bj_forces_are_minus_gradient():
    from allegro_fm_bench.labelling import WB97MD3BJ

    w = molecule("H2O")
    w.rattle(0.05, seed=1)
    calc = WB97MD3BJ(basis="def2-svp", grid_level=4)
    w.calc = calc
    f = w.get_forces()
    h = 1e-3
    for atom, axis in ((0, 2), (1, 0)):
        e = []
        for s in (h, -h):
            x = w.copy()
            x.positions[atom, axis] += s
            x.calc = WB97MD3BJ(basis="def2-svp", grid_level=4)
            e.append(x.get_potential_energy())
        assert abs(-(e[0] - e[1]) / (2 * h) - f[atom, axis]) < 2e-3, (atom, axis)
    # all-electron total energy of water at this level is about -76.3 Hartree
    assert -2080 < w.get_potential_energy() < -2070
    assert abs(f.sum(axis=0)).max() < 1e-3  # no net force


def test_isolated_atoms_use_ground_state_spin():
    from allegro_fm_bench.labelling import WB97MD3BJ
    from ase import Atoms

    o = Atoms("O")
    o.calc = WB97MD3BJ()
    e_triplet = o.get_potential_energy()
    s = Atoms("O")
    s.calc = WB97MD3BJ(spin=0)
    assert e_triplet < s.get_potential_energy()  # triplet below the closed-shell singlet
    assert np.allclose(o.get_forces(), 0.0)
