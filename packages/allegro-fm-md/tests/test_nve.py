"""NVE dynamics on one rank: same trajectory as ASE's VelocityVerlet, energy conserved."""

from __future__ import annotations

import numpy as np
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import VelocityVerlet
from allegro_fm_md.reference import LennardJones
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet as AseVerlet


def _argon(seed=0):
    a = bulk("Ar", "fcc", a=5.26) * (3, 3, 3)
    a.set_cell(
        a.cell @ np.array([[1, 0.08, 0], [0, 1, 0.05], [0, 0, 1]]), scale_atoms=True
    )  # triclinic
    MaxwellBoltzmannDistribution(a, temperature_K=60, rng=np.random.default_rng(seed))
    Stationary(a)
    return a


def _run(atoms, steps, dt_fs, skin=1.0):
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    ev = ForceEvaluator(pot, np.zeros(len(atoms), int), skin=skin)
    st = ev.initial_state(atoms)
    integ = VelocityVerlet(dt_fs)
    etot = []
    for _ in range(steps):
        integ.step(st, ev)
        etot.append(st.energy + st.kinetic_energy())
    return st, np.array(etot), ev


def test_same_trajectory_as_ase_velocity_verlet():
    a = _argon()
    st, _, _ = _run(a.copy(), 200, 5.0)
    b = a.copy()
    b.calc = AseLJ(epsilon=0.0104, sigma=3.40, rc=6.5, smooth=False)
    AseVerlet(b, timestep=5.0 * units.fs).run(200)
    d = st.positions - b.positions
    frac = d @ np.linalg.inv(b.cell)
    d = (frac - np.round(frac)) @ b.cell  # our positions are wrapped into the cell
    assert np.abs(d).max() < 1e-8
    np.testing.assert_allclose(st.velocities, b.get_velocities(), atol=1e-9)
    assert (
        st.energy == np.float64(b.get_potential_energy())
        or abs(st.energy - b.get_potential_energy()) < 1e-9
    )


def test_nve_energy_conservation_and_skin_rebuilds():
    st, etot, ev = _run(_argon(1), 2000, 5.0, skin=0.3)
    drift = (etot[-1] - etot[0]) / len(st.masses) / (2000 * 5.0 / 1000)  # eV/atom/ps
    fluct = etot.std() / len(st.masses)
    print(
        f"NVE LJ argon: drift {drift:.2e} eV/atom/ps, fluctuation {fluct:.2e} eV/atom, {ev.verlet.builds} list builds"
    )
    assert abs(drift) < 1e-5 and fluct < 1e-5
    assert 1 < ev.verlet.builds < 2000
