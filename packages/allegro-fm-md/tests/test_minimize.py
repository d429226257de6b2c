"""FIRE: the engine's minimiser takes exactly ASE's FIRE steps; cell relaxation finds the LJ lattice constant."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import State
from allegro_fm_md.minimize import FIRE, EngineCalculator, relax_cell
from allegro_fm_md.reference import LennardJones
from ase.build import bulk
from ase.optimize import FIRE as AseFIRE

POT = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)


def test_fire_matches_ase_fire_step_for_step():
    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)
    a.rattle(0.15, seed=4)
    ref = a.copy()
    ref.calc = EngineCalculator(POT)
    opt = AseFIRE(ref, logfile=None)
    opt.run(fmax=1e-9, steps=60)
    ev = ForceEvaluator(POT, np.zeros(len(a), int), skin=2.0)
    st = State(
        a.positions.copy(), np.zeros((len(a), 3)), a.get_masses(), np.array(a.cell), a.pbc.copy()
    )
    ev.update(st)
    fire = FIRE()
    for _ in range(60):
        fire.step(st, ev)
    d = st.positions - ref.positions
    frac = d @ np.linalg.inv(st.cell)
    d = (frac - np.round(frac)) @ st.cell
    assert np.abs(d).max() < 1e-9
    assert FIRE().run(st, ev, fmax=1e-3, steps=2000)
    assert FIRE.fmax(st) < 1e-3


def test_relax_cell_finds_lj_lattice_constant():
    a = bulk("Ar", "fcc", a=5.0, cubic=True) * (2, 2, 2)
    a.rattle(0.05, seed=1)
    relaxed, ok = relax_cell(a, POT, fmax=1e-4, steps=2000)
    assert ok
    # the oracle: the minimum of ASE's own LJ energy (same cutoff, energy shift) over the fcc lattice constant
    from ase.calculators.lj import LennardJones as AseLJ
    from scipy.optimize import minimize_scalar

    def energy(lat):
        x = bulk("Ar", "fcc", a=lat, cubic=True) * (2, 2, 2)
        x.calc = AseLJ(sigma=3.40, epsilon=0.0104, rc=6.5, smooth=False)
        return x.get_potential_energy()

    a0 = minimize_scalar(
        energy, bounds=(5.1, 5.5), method="bounded", options={"xatol": 1e-10}
    ).x  # 5.34984 A
    np.testing.assert_allclose(relaxed.cell.cellpar()[:3] / 2, a0, atol=1e-3)
    assert np.allclose(relaxed.cell.cellpar()[3:], 90, atol=0.01)
    assert np.abs(relaxed.get_stress()).max() < 1e-4
    with pytest.raises(ValueError, match="atom 0: element .Ar. is not known"):
        relax_cell(a, LennardJones(["Ne"], epsilon=0.003, sigma=2.8, cutoff=5.0))  # unknown element
