"""NPT is an ensemble, not only a target pressure: the volume variance of stochastic cell rescaling against the
isothermal compressibility measured from the mean volumes at two other pressures, <dV^2> = k_B T <V> kappa_T
(Lennard-Jones argon, 27 atoms, 60 K; statistical tolerance stated in the test). A noise-free (Berendsen-like)
barostat or a noise amplitude off by sqrt(2) fails it (the variance is then off by 2x or more)."""

from __future__ import annotations

import numpy as np
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import CRescaleNPT, Langevin
from allegro_fm_md.reference import LennardJones
from ase import units
from ase.build import bulk

T = 60.0  # K: solid argon
STEPS, SKIP = 8000, 1000  # 5 fs steps: 35 ps sampled per run
SEEDS = (0,)  # one seed at 0.05 GPa (two read 0.912 and 0.931 together 0.921)


def _volumes(p0_gpa: float, seed: int) -> np.ndarray:
    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)  # 27 atoms: large relative fluctuations, cheap steps
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    ev = ForceEvaluator(pot, np.zeros(len(a), int), skin=1.0)
    v = np.random.default_rng(seed).normal(0, 1, (len(a), 3)) * np.sqrt(
        units.kB * T / a.get_masses()[:, None]
    )
    a.set_velocities(v - v.mean(0))  # Maxwell-Boltzmann, no drift
    st = ev.initial_state(a)
    integ = CRescaleNPT(
        Langevin(5.0, T, friction=0.01, seed=seed),
        pressure_GPa=p0_gpa,
        compressibility_per_GPa=0.5,
        taup_fs=50.0,
        seed=100 + seed,
    )
    out = []
    for k in range(STEPS):
        integ.step(st, ev)
        if k >= SKIP:
            out.append(abs(np.linalg.det(st.cell)))
    return np.array(out)


def test_volume_variance_equals_kT_V_kappa():
    runs = {
        p: [_volumes(p, s) for s in (SEEDS if p == 0.05 else SEEDS[:1])] for p in (0.0, 0.05, 0.1)
    }  # kappa: one run each
    mean = {p: np.mean([v.mean() for v in vs]) for p, vs in runs.items()}
    kappa = -np.log(mean[0.1] / mean[0.0]) / (
        0.1 * units.GPa
    )  # A^3/eV, central difference around 0.05 GPa
    var = np.mean([v.var() for v in runs[0.05]])
    expected = units.kB * T * mean[0.05] * kappa
    per_seed = [v.var() / expected for v in runs[0.05]]
    print(
        f"kappa_T = {kappa * units.GPa:.3f} /GPa from <V>(0) = {mean[0.0]:.1f}, <V>(0.1 GPa) = {mean[0.1]:.1f} A^3; "
        f"<dV^2> = {var:.0f} A^6 vs k_B T <V> kappa = {expected:.0f} A^6: ratio {var / expected:.3f} "
        f"(per seed {np.round(per_seed, 3)})"
    )
    # statistics: measured 0.95 with 90 ps per run; 35 ps runs read ~0.9 (a finite run's variance is biased low by about
    # 2 tau_V / t_run) with ~5 % scatter between seed pairs, and kappa from one 35 ps run per pressure carries ~5 %:
    # seed 0 reads 0.912; barostat noise 10 % too weak reads 0.782 (variance ~ amplitude^2), the broken barostats
    # named above a factor of 2 or more off: 0.85-1.2 takes the first and refuses the others (the ideal-gas test below
    # checks the amplitude against an exact distribution)
    assert 0.85 < var / expected < 1.2
    assert (
        0.5 < kappa * units.GPa < 1.2
    )  # solid argon near its melting point: kappa_T of order 1/GPa


def _ideal_gas_volumes(seed: int, steps: int = 7000, skip: int = 500) -> tuple[np.ndarray, int]:
    """Volumes (A^3) of 8 non-interacting argon atoms under stochastic cell rescaling at 300 K and 0.05 GPa."""
    a = bulk("Ar", "fcc", a=9.0) * (2, 2, 2)
    ev = ForceEvaluator(
        LennardJones(["Ar"], epsilon=0.0, sigma=3.40, cutoff=3.0), np.zeros(len(a), int), skin=1.0
    )
    v = np.random.default_rng(seed).normal(0, 1, (len(a), 3)) * np.sqrt(
        units.kB * 300.0 / a.get_masses()[:, None]
    )
    a.set_velocities(v - v.mean(0))  # Maxwell-Boltzmann, no drift
    st = ev.initial_state(a)
    integ = CRescaleNPT(
        Langevin(5.0, 300.0, friction=0.01, seed=seed),
        pressure_GPa=0.05,
        compressibility_per_GPa=20.0,
        taup_fs=50.0,
        seed=100 + seed,
    )
    out = []
    for k in range(steps):
        integ.step(st, ev)
        if k >= skip:
            out.append(abs(np.linalg.det(st.cell)))
    return np.array(out), len(a)


def test_ideal_gas_volume_distribution_is_the_exact_npt_one():
    """An ideal gas of N atoms at pressure P samples P(V) ~ V^N exp(-PV/kT): <V> = (N+1) kT/P and
    var(V) (N+1) / <V>^2 = 1, with no model in the way. The second moment is set by the barostat's noise amplitude:
    measured over 3 seeds 1.065 (the Euler step at dt = tau_V / 10 reads a few % high), 0.92 with the noise 10 % too
    weak and 1.22 with it 10 % too strong; the window below takes the first and refuses the other two."""
    runs = [_ideal_gas_volumes(s) for s in (0, 1, 2)]
    n = runs[0][1]
    mean_v = np.mean([v.mean() for v, _ in runs])
    shape = np.mean([v.var() * (n + 1) / v.mean() ** 2 for v, _ in runs])
    exact_mean = (n + 1) * units.kB * 300.0 / (0.05 * units.GPa)
    print(
        f"<V> = {mean_v:.1f} A^3 (exact {exact_mean:.1f}); var(V) (N+1)/<V>^2 = {shape:.3f} (exact 1)"
    )
    assert 0.97 < mean_v / exact_mean < 1.05
    assert 0.98 < shape < 1.15
