"""Langevin NVT: the target temperature is reached with canonical fluctuations."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import Langevin, State
from allegro_fm_md.reference import LennardJones
from ase.build import bulk


def test_langevin_temperature_and_fluctuations():
    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    ev = ForceEvaluator(pot, np.zeros(len(a), int), skin=1.0)
    pos, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
    st = State(
        pos,
        np.zeros((len(a), 3)),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        forces=r.forces,
        energy=r.energy,
    )
    integ = Langevin(5.0, 60.0, friction=0.02, seed=7)
    temps = []
    for k in range(6000):
        integ.step(st, ev)
        if k >= 1000:
            temps.append(st.temperature())
    temps = np.array(temps)
    n = len(a)
    expected_rel = np.sqrt(
        2.0 / (3 * n)
    )  # canonical: std(T)/<T> for 3N degrees of freedom (bath breaks momentum)
    print(
        f"<T> = {temps.mean():.2f} K (target 60), std/<T> = {temps.std() / temps.mean():.4f} (canonical {expected_rel:.4f})"
    )
    assert abs(temps.mean() - 60.0) < 1.5
    assert abs(temps.std() / temps.mean() / expected_rel - 1) < 0.25


def test_langevin_free_particles_reach_equipartition_per_component():
    """A second oracle for the bath's noise: particles that feel no force (8 A apart, cutoff 6.5 A) are an
    Ornstein-Uhlenbeck process whose stationary velocity variance is kB T / m per component, exactly, whatever the
    friction: a wrong noise amplitude moves it. 64 atoms x 3 components x 480 samples (10 fs apart, the friction time)."""
    from ase import units

    a = bulk("Ar", "sc", a=8.0) * (4, 4, 4)
    st = State(
        a.positions.copy(), np.zeros((len(a), 3)), a.get_masses(), np.array(a.cell), a.pbc.copy()
    )
    ev = ForceEvaluator(
        LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5), np.zeros(len(a), int)
    )
    ev.update(st)
    integ = Langevin(2.0, 120.0, friction=0.1, seed=11)
    samples = []
    for k in range(2600):
        integ.step(st, ev)
        if k >= 200 and k % 5 == 0:
            samples.append(st.velocities.copy())
    v2 = np.mean(np.array(samples) ** 2 * st.masses[None, :, None])
    assert v2 == pytest.approx(units.kB * 120.0, rel=0.03)
