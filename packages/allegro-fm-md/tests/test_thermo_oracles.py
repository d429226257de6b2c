"""The thermo log's numbers against independent oracles: pressure and the six stress columns against ASE's own
Lennard-Jones stress with the ideal-gas term (``get_stress(include_ideal_gas=True)``), temperature against
2 E_kin / ((3N - 3) k_B) from ASE's kinetic energy, each read back from thermo.log by its header name; and the
initial slope of the uniaxial-deformation stress against C33 from a static finite difference of ASE's stress."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md import (
    ForceEvaluator,
    LennardJones,
    NoseHooverChain,
    Simulation,
    State,
    UniaxialDeformation,
    VelocityVerlet,
)
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from ase.stress import voigt_6_to_full_3x3_stress

EPS, SIG, RC = 0.0104, 3.4, 6.5


def _argon(T=80.0, strain=0.0, seed=0):
    a = bulk("Ar", "fcc", a=5.26 * (1 + strain), cubic=True) * (3, 3, 3)
    a.set_cell(
        a.cell @ np.array([[1, 0.04, 0], [0, 1, 0.03], [0, 0, 1]]), scale_atoms=True
    )  # triclinic: shear components
    a.rattle(0.03, seed=seed)
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(units.kB * T / a.get_masses()[:, None])
    a.set_velocities(v - v.mean(0))
    return a


def _sim(a, tmp_path, integ=None):
    pot = LennardJones(["Ar"], epsilon=EPS, sigma=SIG, cutoff=RC)
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
    st = State(
        a.positions.copy(),
        a.get_velocities().copy(),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
    )
    return Simulation(st, integ or VelocityVerlet(2.0), ev, tmp_path / "out", thermo_every=5)


def _log_rows(path):
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("# ").split()
    return [dict(zip(header, map(float, line.split()), strict=True)) for line in lines[1:]]


def test_pressure_stress_and_temperature_columns_equal_ase(tmp_path):
    a = _argon()
    sim = _sim(a, tmp_path)
    sim.run(20)
    sim.close()
    row = _log_rows(tmp_path / "out" / "thermo.log")[-1]
    s = sim.state
    assert row["step"] == s.step == 20
    frame = a.copy()
    frame.positions, frame.cell = s.positions, s.cell
    frame.set_velocities(s.velocities)
    frame.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, smooth=False)
    stress = voigt_6_to_full_3x3_stress(frame.get_stress(include_ideal_gas=True)) / units.GPa
    for k, (i, j) in {
        "sxx_GPa": (0, 0),
        "syy_GPa": (1, 1),
        "szz_GPa": (2, 2),
        "syz_GPa": (1, 2),
        "sxz_GPa": (0, 2),
        "sxy_GPa": (0, 1),
    }.items():
        assert row[k] == pytest.approx(stress[i, j], abs=1e-8), k
    assert row["p_GPa"] == pytest.approx(-np.trace(stress) / 3, abs=1e-8)
    assert abs(stress[0, 1]) > 1e-4  # the shear columns are tested with non-zero values
    ke = frame.get_kinetic_energy()
    assert row["ke_eV"] == pytest.approx(ke, rel=1e-9)
    assert row["T_K"] == pytest.approx(2 * ke / ((3 * len(a) - 3) * units.kB), rel=1e-9)
    assert row["pe_eV"] == pytest.approx(frame.get_potential_energy(), abs=1e-9)
    assert row["etot_eV"] == pytest.approx(row["pe_eV"] + row["ke_eV"], abs=1e-8)


def test_deformation_initial_slope_is_c33(tmp_path):
    """Cold argon (0.05 K: thermal stress noise of this 108-atom cell is ~1e-4 GPa) pulled along z at 1e-4 /fs: the
    slope of sigma_zz over the first 0.4 % of strain equals C33 from ASE's static stress at 0 and 0.4 % uniaxial strain
    (the same secant) within 1 %."""
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (
        3,
        3,
        3,
    )  # perfect fcc: no internal relaxation, so relaxed = affine C33
    rng = np.random.default_rng(3)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(units.kB * 0.05 / a.get_masses()[:, None])
    a.set_velocities(v - v.mean(0))
    emax = 4e-3
    sz = []
    for e in (0.0, emax):
        b = a.copy()
        m = np.eye(3)
        m[2, 2] += e
        b.set_cell(b.cell @ m, scale_atoms=True)
        b.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, smooth=False)
        sz.append(b.get_stress(voigt=False)[2, 2] / units.GPa)
    c33 = (sz[1] - sz[0]) / emax  # GPa; ASE sign (tensile positive): d sigma_zz / d eps_zz = +C33
    rate = 1e-4
    sim = _sim(a, tmp_path, UniaxialDeformation(NoseHooverChain(1.0, 0.05, tdamp_fs=50.0), 2, rate))
    sim.run(40)
    rows = _log_rows(tmp_path / "out" / "thermo.log")
    strain = np.array([r["time_fs"] for r in rows]) * rate
    szz = np.array([r["szz_GPa"] for r in rows])
    slope = np.polyfit(strain, szz, 1)[0]
    print(f"C33 static {c33:.3f} GPa, MD slope {slope:.3f} GPa")
    assert c33 > 3.0  # LJ argon near 0 K: C11 ~ 4 GPa
    assert strain[-1] == pytest.approx(emax)
    assert slope == pytest.approx(c33, rel=0.01)


def test_an_ideal_gas_pressure_is_n_k_t_over_v(tmp_path):
    """A second oracle for the kinetic part of the stress: argon atoms too far apart to interact (every pair beyond the
    cutoff) are an ideal gas, so the thermo log's pressure is N kB T / V and its stress diagonal -N kB T / V per axis
    (ASE sign: tensile positive), whatever the potential does."""
    from allegro_fm_md import ForceEvaluator, LennardJones, Simulation, State, VelocityVerlet
    from ase import units
    from ase.build import bulk

    a = bulk("Ar", "sc", a=8.0) * (4, 4, 4)  # 8 A apart, cutoff 6.5 A: no pair interacts
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(units.kB * 300.0 / a.get_masses()[:, None])
    st = State(a.positions.copy(), v - v.mean(0), a.get_masses(), np.array(a.cell), a.pbc.copy())
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5)
    sim = Simulation(
        st,
        VelocityVerlet(1.0),
        ForceEvaluator(pot, np.zeros(len(a), int)),
        tmp_path,
        thermo_every=1,
    )
    sim.run(2)
    row = sim.thermo[-1]
    ideal = (
        sim.state.dof() * units.kB * row.column("T_K") / 3 / a.get_volume() / units.GPa
    )  # N kB T / V with the same dof as T
    assert row.column("p_GPa") == pytest.approx(ideal, rel=1e-6)
    stress = sim.stress_GPa()
    assert np.trace(stress) / 3 == pytest.approx(-ideal, rel=1e-6) and (np.diag(stress) < 0).all()
