"""Nose-Hoover chain NVT (extended energy conserved, canonical temperature) and uniaxial deformation."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import Langevin, NoseHooverChain, State, UniaxialDeformation
from allegro_fm_md.reference import LennardJones
from allegro_fm_md.simulation import Simulation
from ase.build import bulk


def _argon(T0=60.0, seed=1, cells=(3, 3, 3)):
    a = bulk("Ar", "fcc", a=5.30) * cells
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    ev = ForceEvaluator(pot, np.zeros(len(a), int), skin=1.0)
    pos, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(8.617e-5 * T0 / a.get_masses()[:, None])
    v -= v.mean(axis=0)
    st = State(
        pos, v, a.get_masses(), np.array(a.cell), a.pbc.copy(), forces=r.forces, energy=r.energy
    )
    return st, ev


def test_nose_hoover_chain_conserves_extended_energy_and_samples_canonically():
    st, ev = _argon(T0=20.0)  # starts cold: the chain must heat it to 60 K
    integ = NoseHooverChain(5.0, 60.0, tdamp_fs=250.0, chain=3)
    h0 = integ.conserved_energy(st)
    temps, hs = [], []
    for k in range(8000):
        integ.step(st, ev)
        hs.append(integ.conserved_energy(st))
        if k >= 1500:
            temps.append(st.temperature())
    temps, hs = np.array(temps), np.array(hs)
    n = len(st.masses)
    expected_rel = np.sqrt(2.0 / (3 * n - 3))
    drift = np.abs(hs - h0).max() / n
    print(
        f"NHC: <T> = {temps.mean():.2f} K (target 60), std/<T> = {temps.std() / temps.mean():.4f} (canonical "
        f"{expected_rel:.4f}), max |H_ext - H0| = {drift:.2e} eV/atom over 40 ps"
    )
    assert drift < 2e-5
    assert abs(temps.mean() - 60.0) < 2.0
    assert abs(temps.std() / temps.mean() / expected_rel - 1) < 0.3
    assert (
        np.abs((st.masses[:, None] * st.velocities).sum(axis=0)).max() < 1e-10
    )  # momentum stays zero


def test_nhc_restart_resumes_bit_for_bit(tmp_path):
    st, ev = _argon()
    ref = Simulation(
        st, NoseHooverChain(5.0, 60.0, tdamp_fs=100.0), ev, tmp_path / "a", restart_every=40
    ).run(80)
    st, ev = _argon()
    Simulation(
        st, NoseHooverChain(5.0, 60.0, tdamp_fs=100.0), ev, tmp_path / "b", restart_every=40
    ).run(40)
    integ = NoseHooverChain(5.0, 60.0, tdamp_fs=100.0)
    st2 = Simulation.read_restart(tmp_path / "b" / "restart.npz", integ)
    assert np.any(integ.v_xi != 0)  # thermostat state came back from the file
    resumed = Simulation(
        st2,
        integ,
        ForceEvaluator(ev.potential, np.zeros(len(st2.masses), int), skin=1.0),
        tmp_path / "b",
        restart_every=40,
    ).run(40)
    assert np.array_equal(resumed.positions, ref.positions) and np.array_equal(
        resumed.velocities, ref.velocities
    )
    with pytest.raises(ValueError, match="same integrator"):
        Simulation.read_restart(
            tmp_path / "b" / "restart.npz", UniaxialDeformation(Langevin(5.0, 60.0), 2, 1e-5)
        )


def test_uniaxial_deformation_strain_and_stress():
    st, ev = _argon(T0=10.0)
    lz0, lx0 = st.cell[2, 2], st.cell[0, 0]
    integ = UniaxialDeformation(
        Langevin(4.0, 10.0, friction=0.05, seed=2), axis=2, rate_per_fs=2e-4
    )
    szz = []
    for _ in range(100):
        integ.step(st, ev)
        v = abs(np.linalg.det(st.cell))
        szz.append(
            -st.virial[2, 2] / v
        )  # ASE sign: tensile stress positive (eV/A^3), potential part
    assert st.cell[2, 2] == pytest.approx(
        lz0 * (1 + 2e-4 * 400.0), rel=1e-12
    )  # engineering strain 0.08
    assert st.cell[0, 0] == lx0 and integ.strain(st) == pytest.approx(0.08)
    frac = st.positions @ np.linalg.inv(st.cell)
    assert frac.min() > -0.2 and frac.max() < 1.2  # atoms moved with the cell
    # stretching argon from its compressed lattice (a=5.30 A < 5.26 * 2^(1/6) equilibrium): sigma_zz rises
    assert szz[-1] > szz[0] + 1e-4


def test_crescale_npt_reaches_target_pressure():
    from allegro_fm_md.integrators import CRescaleNPT

    vols, press = {}, {}
    for p0 in (0.0, 0.3):
        st, ev = _argon(T0=60.0)
        integ = CRescaleNPT(
            Langevin(5.0, 60.0, friction=0.02, seed=3),
            pressure_GPa=p0,
            compressibility_per_GPa=0.3,
            taup_fs=500.0,
            seed=4,
        )
        v, p = [], []
        for k in range(5000):
            integ.step(st, ev)
            if k >= 1000:
                vol = abs(np.linalg.det(st.cell))
                v.append(vol)
                p.append(
                    (2 * st.kinetic_energy() + np.trace(st.virial)) / (3 * vol) / 0.006241509
                )  # GPa
        vols[p0], press[p0] = np.mean(v), np.mean(p)
        print(
            f"C-rescale P0 = {p0} GPa: <P> = {np.mean(p):.4f} +- {np.std(p) / np.sqrt(len(p) / 50):.4f} GPa, <V> = {np.mean(v):.1f} A^3"
        )
        assert abs(np.mean(p) - p0) < 0.02
    assert vols[0.3] < 0.97 * vols[0.0]


def test_anisotropic_crescale_relaxes_each_axis_to_the_target_pressure():
    """A cubic fcc argon crystal strained -4 % along x and +4 % along z: the anisotropic barostat brings each
    diagonal pressure to P0 = 0 and the three lengths back to equal; the isotropic one cannot change their ratio."""
    from allegro_fm_md.integrators import CRescaleNPT

    res = {}
    for aniso in (False, True):
        a = bulk("Ar", "fcc", a=5.30, cubic=True) * (3, 3, 3)
        a.set_cell(a.cell * [0.96, 1.0, 1.04], scale_atoms=True)
        pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
        ev = ForceEvaluator(pot, np.zeros(len(a), int), skin=1.0)
        v = np.random.default_rng(1).normal(0, 1, (len(a), 3)) * np.sqrt(
            8.617e-5 * 60 / a.get_masses()[:, None]
        )
        a.set_velocities(v - v.mean(0))  # Maxwell-Boltzmann, no drift
        st = ev.initial_state(a)
        integ = CRescaleNPT(
            Langevin(5.0, 30.0, friction=0.02, seed=3),
            pressure_GPa=0.0,
            compressibility_per_GPa=0.3,
            taup_fs=500.0,
            seed=4,
            anisotropic=aniso,
        )
        lengths, pdiag = [], []
        for k in range(4000):
            integ.step(st, ev)
            if k >= 1000:
                vol = abs(np.linalg.det(st.cell))
                kin = np.einsum("i,ij,ik->jk", st.masses, st.velocities, st.velocities)
                lengths.append(np.diag(st.cell).copy())
                pdiag.append(np.diag(kin + st.virial) / vol / 0.006241509)  # GPa
        L, P = np.mean(lengths, 0), np.mean(pdiag, 0)
        res[aniso] = L
        print(
            f"C-rescale {'anisotropic' if aniso else 'isotropic'}: <L> = {np.round(L, 3)} A, <P_ii> = {np.round(P, 4)} GPa"
        )
        if aniso:
            assert np.abs(P).max() < 0.03
    assert (
        abs(res[False][2] / res[False][0] - 1.04 / 0.96) < 1e-9
    )  # isotropic scaling keeps the ratio
    assert (
        abs(res[True][2] / res[True][0] - 1) < 0.03
    )  # from 1.083; a 108-atom cell's lengths fluctuate by ~1 %
