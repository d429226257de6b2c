"""The bench experiments' own code paths, end to end, on calculators with known answers (Context's calculator_factory
and md_potential replace the model): EOS on EMT copper against ASE's energy minimum and the stress derivative, g(r) of
Lennard-Jones fcc argon against its 12 nearest neighbours at a/sqrt(2), the tensile curve's initial slope against C33
from ASE's static Lennard-Jones stress. Each fails when the reported number is off by a sign, a unit or a factor of 2."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_bench.experiments import eos, gr, tensile
from allegro_fm_bench.experiments._common import Context
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones as AseLJ
from ase.stress import voigt_6_to_full_3x3_stress
from scipy.optimize import minimize_scalar

EPS, SIG, RC = (
    0.0104,
    3.40,
    6.9,
)  # rc between the 3rd (6.44 A) and 4th (7.44 A) fcc shells: no shell crosses it at 2 % strain
LJ = {"kind": "lj", "epsilon": EPS, "sigma": SIG, "cutoff": RC}


def _ctx(tmp_path, **kw):
    c = Context("oracle", tmp_path / "exp", True, tmp_path / "cache", **kw)
    c.outdir.mkdir(parents=True, exist_ok=True)
    return c


def _emt_energy(a: float) -> float:
    x = bulk("Cu", "fcc", a=a, cubic=True)
    x.calc = EMT()
    return x.get_potential_energy()


def _emt_pressure(a: float) -> float:
    x = bulk("Cu", "fcc", a=a, cubic=True)
    x.calc = EMT()
    return -np.trace(voigt_6_to_full_3x3_stress(x.get_stress())) / 3  # eV/A^3


def test_eos_experiment_on_emt_copper(tmp_path):
    r, _ = eos.run(
        _ctx(tmp_path, calculator_factory=EMT),
        strains=(-0.03, -0.015, 0.0, 0.015, 0.03),
        fmax=0.001,
        steps=200,
        max_rounds=1,
        atoms=bulk("Cu", "fcc", a=3.7, cubic=True),
    )
    a0 = minimize_scalar(
        _emt_energy, bracket=(3.5, 3.6, 3.7), tol=1e-10
    ).x  # oracle 1: the energy minimum of the lattice
    density = 4 * 63.546 / a0**3 * 1.66053906660  # g/cm3
    h = 1e-3  # oracle 2: B = -V dP/dV from ASE's stress, central difference in ln V
    b0 = (
        -(_emt_pressure(a0 * (1 + h) ** (1 / 3)) - _emt_pressure(a0 * (1 - h) ** (1 / 3)))
        / (np.log1p(h) - np.log1p(-h))
        / units.GPa
    )
    print(
        f"EOS experiment on EMT Cu: density {r.density:.4f} g/cm3 (oracle {density:.4f}), B0 {r.bulk_modulus:.2f} GPa "
        f"(oracle {b0:.2f}), fit rms {r.fit_rms_meV:.3f} meV/cell"
    )
    assert r.density == pytest.approx(density, rel=1e-3)
    assert r.bulk_modulus == pytest.approx(
        b0, rel=0.02
    )  # Birch-Murnaghan over +-3 % vs the derivative at V0


def test_gr_experiment_on_lennard_jones_fcc_argon(tmp_path):
    a = 5.26
    text, _, data = gr.run(
        _ctx(tmp_path, md_potential=LJ),
        bulk("Ar", "fcc", a=a, cubic=True) * (3, 3, 3),
        100,
        200,
        10,
        pairs=(("Ar", "Ar"),),
        temperature_K=20.0,
        dt_fs=2.0,
    )
    d = data["Ar-Ar"]
    print(
        f"g(r) experiment on LJ fcc Ar at 20 K: first peak {d['peak_A']:.3f} A (a/sqrt2 = {a / np.sqrt(2):.3f}), CN {d['cn']:.2f}; "
        f"0 K: {d['peak_0K_A']:.3f} A, CN {d['cn_0K']:.2f}; <T> {data['T_mean_K']:.1f} K"
    )
    assert d["cn_0K"] == pytest.approx(12.0, abs=1e-6) and d["peak_0K_A"] == pytest.approx(
        a / np.sqrt(2), abs=0.03
    )
    assert d["cn"] == pytest.approx(
        12.0, abs=0.2
    )  # fcc: 12 nearest neighbours inside the first minimum
    assert d["cn_from_g"] == pytest.approx(
        12.0, abs=0.2
    )  # g(r) itself is normalised: rho 4 pi r^2 g integrates to them
    assert d["peak_A"] == pytest.approx(a / np.sqrt(2), abs=0.06)
    assert 10.0 < data["T_mean_K"] < 30.0


def test_tensile_experiment_initial_slope_is_c33_on_lennard_jones_argon(tmp_path):
    a = 5.26
    crystal = bulk("Ar", "fcc", a=a, cubic=True) * (3, 3, 3)
    rate = 1e11  # 1/s: 1e-4 per fs, strain 0.02 in 100 steps of 2 fs
    curve = tensile.run(
        _ctx(tmp_path, md_potential=LJ),
        crystal,
        50,
        rates=(rate,),
        max_strain=0.02,
        temperature_K=5.0,
        dt_fs=2.0,
    )[rate]
    slope = np.polyfit(curve["strain"], curve["stress"], 1)[0]  # GPa

    def szz(
        eps,
    ):  # oracle: ASE's static Lennard-Jones stress of the affinely strained crystal (tension > 0)
        x = crystal.copy()
        x.set_cell(x.cell @ np.diag([1, 1, 1 + eps]), scale_atoms=True)
        x.calc = AseLJ(epsilon=EPS, sigma=SIG, rc=RC)
        return voigt_6_to_full_3x3_stress(x.get_stress())[2, 2] / units.GPa

    c33 = (
        szz(0.02) - szz(0.0)
    ) / 0.02  # the secant over the strained range (fcc: no internal relaxation)
    print(
        f"tensile experiment on LJ Ar: d szz / d strain = {slope:.3f} GPa (static C33 secant {c33:.3f} GPa), "
        f"szz {curve['stress'][0]:.4f} -> {curve['stress'][-1]:.4f} GPa"
    )
    assert slope == pytest.approx(c33, rel=0.1)
    assert curve["stress"][-1] > curve["stress"][0]  # tension positive
    # the frame nearest the peak carries per-atom stresses: their mean (atomic volume V/N) is the cell's potential
    # stress, i.e. the frame's stress less its kinetic term
    f = curve["peak_frame"]
    z, s = tensile.stress_field(f)
    kin = np.einsum("i,ij,ik->jk", f.get_masses(), f.get_velocities(), f.get_velocities())
    pot_szz = (
        voigt_6_to_full_3x3_stress(f.get_stress())[2, 2] + kin[2, 2] / f.get_volume()
    ) / units.GPa
    assert s.mean() == pytest.approx(pot_szz, abs=1e-4) and s.std() > 0
    assert len(z) == len(crystal) and (z >= 0).all()
    png = tensile.plot_stress_field(f, tmp_path / "field.png", "t")
    assert png.stat().st_size > 1000


def test_neb_band_and_profile_on_a_curved_analytic_path(curved_surface):
    """The NEB experiment's band() and energies() on one atom in V = s [(1 - x^2)^2 + 5 (y - x^2)^2] + z^2 (s = 0.5 eV):
    the minimum-energy path bends along y = x^2 (the straight line between the minima (+-1, 1) crosses 3 eV), the saddle
    is (0, 0) with barrier s = 0.5 eV = 11.53 kcal/mol. The band must converge onto the curved path and the climbing
    image onto the saddle; the profile is reported in kcal/mol."""
    from allegro_fm_bench.neb import band, energies
    from ase import Atoms

    calc = curved_surface
    s = calc.s
    images, fmax, ok = band(
        calc,
        Atoms("H", [(-1.0, 1.0, 0.0)]),
        Atoms("H", [(1.0, 1.0, 0.0)]),
        9,
        fmax=0.005,
        steps=2000,
    )
    assert ok and fmax < 0.005
    prof = energies(images, calc)
    top = images[int(np.argmax(prof))].positions[0]
    print(
        f"NEB on the analytic surface: barrier {prof.max():.3f} kcal/mol (exact {s * 23.0605:.3f}) at {np.round(top, 4)}"
    )
    assert prof.max() == pytest.approx(s * 23.060548, abs=0.02)  # eV -> kcal/mol
    np.testing.assert_allclose(top, [0.0, 0.0, 0.0], atol=0.01)
    for im in images[1:-1]:  # every image on the curved path, not the straight line
        x, y, _ = im.positions[0]
        assert (
            abs(y - x * x) < 0.1
        )  # NEB cuts the curve a little between images (0.06 seen); the straight line is 1 - x^2 off


def test_peer_force_errors_per_family(tmp_path):
    """peers.force_errors on an aligned dataset labelled by EMT: EMT itself scores 0 meV/A and cosine 1 on the family it
    labelled, -1 on the family whose label forces were reversed (RMSE 2 |F|); molecules in vacuum are skipped."""
    import ase.io
    import tea_align
    from allegro_fm_bench.mini.peers import force_errors, markdown, peer_calculator
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    frames, fsq = [], []
    for k, family in enumerate(("same", "reversed")):
        a = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
        a.rattle(0.1, seed=k)
        a.calc = EMT()
        f = a.get_forces()
        b = a.copy()
        b.calc = SinglePointCalculator(
            b, energy=a.get_potential_energy(), forces=f if family == "same" else -f
        )
        b.info["config_type"] = family
        frames.append(b)
        fsq.append(float((f**2).mean()))
    m = molecule("H2O")
    m.calc = SinglePointCalculator(m, energy=0.0, forces=np.zeros((3, 3)))
    frames.append(m)
    ase.io.write(tmp_path / "x.extxyz", frames)
    tea_align.convert([f"{tmp_path / 'x.extxyz'},level=EMT,name=emt"], tmp_path / "x.h5")
    r = force_errors(EMT(), str(tmp_path / "x.h5"), progress=False)
    assert r["skipped_frames"] == 1 and r["all"]["frames"] == 2
    assert r["same"]["force_rmse_meV_A"] == pytest.approx(0.0, abs=1e-3) and r["same"][
        "force_cosine"
    ] == pytest.approx(1.0, abs=1e-9)
    assert r["reversed"]["force_cosine"] == pytest.approx(-1.0, abs=1e-9)
    assert r["reversed"]["force_rmse_meV_A"] == pytest.approx(2000 * np.sqrt(fsq[1]), rel=1e-6)
    assert "| reversed |" in markdown({"emt": r})
    with pytest.raises(ValueError, match="unknown peer"):
        peer_calculator("mace")


def test_birch_murnaghan_fit_recovers_its_parameters_and_refuses_e_of_v_without_a_minimum():
    """The EOS fit on points of a Birch-Murnaghan curve gives back V0 and B0; E(V) with no minimum (linear) or points
    the fit cannot follow are ValueErrors naming the structure and listing the points, not a negative density or a bare
    scipy RuntimeError."""
    from allegro_fm_bench.experiments.eos import fit_birch_murnaghan
    from ase.eos import birchmurnaghan

    v = np.linspace(48.5, 61.6, 5)
    e = birchmurnaghan(v, -28.1, 35 * units.GPa, 4.5, 56.0)
    eos = fit_birch_murnaghan(v, e, "portlandite")
    assert eos.v0 == pytest.approx(56.0, rel=1e-4) and eos.B / units.GPa == pytest.approx(
        35.0, rel=1e-3
    )
    with pytest.raises(ValueError, match=r"portlandite: E\(V\) has no minimum.*48.5 A\^3"):
        fit_birch_murnaghan(v, 0.1 * v, "portlandite")
    with pytest.raises(
        ValueError, match=r"Ca\(OH\)2: the Birch-Murnaghan fit of E\(V\) did not converge"
    ):
        fit_birch_murnaghan(v, [0.0, -1.0, -2.0, -1.5, -3.0], "Ca(OH)2")


def _plant(system, particle_atoms: int, radius: float, what: str):
    """A copy of ``system`` with a planted answer: "CO3" moves a water O to 1.30 A from a CO2 carbon (perpendicular to
    the molecule's axis) and its two H 6 A away from it; "HCO3" also keeps one H on that O (0.97 A, away from the C);
    "HCO3+Ca" is "HCO3" with one particle Ca moved 4 A beyond radius + 2 A from the particle's Si centroid."""
    a = system.copy()
    sym = np.array(a.get_chemical_symbols())
    c = particle_atoms + int(np.flatnonzero(sym[particle_atoms:] == "C")[0])
    o1, o2 = c + 1, c + 2  # the builder writes CO2 as C, O, O
    ow = particle_atoms + int(
        np.flatnonzero(sym[particle_atoms:] == "O")[0]
    )  # first water: O, H, H
    axis = a.positions[o2] - a.positions[o1]
    perp = np.cross(axis, [0.0, 0.0, 1.0])
    perp /= np.linalg.norm(perp)
    a.positions[ow] = a.positions[c] + 1.30 * perp
    a.positions[ow + 1] = a.positions[ow] + (0.97 * perp if what != "CO3" else 6.0 * perp)
    a.positions[ow + 2] = a.positions[ow] + 6.0 * np.array([0.0, 0.0, 1.0])
    if what == "HCO3+Ca":
        si = np.flatnonzero(sym[:particle_atoms] == "Si")
        ca = int(np.flatnonzero(sym[:particle_atoms] == "Ca")[0])
        a.positions[ca] = a.positions[si].mean(axis=0) + [radius + 6.0, 0.0, 0.0]
    return a


def test_carbonation_counts_the_planted_species_through_the_experiment(tmp_path, monkeypatch):
    """The carbonation experiment end to end with scripted trajectories in place of MD (the real builder, H5MD files
    written by allegro-fm-md's writer and read back by the experiment, its stage clocks, its species counting and its
    report): frames with a planted carbonate, bicarbonate and a Ca ion outside the particle are counted as planted."""
    from allegro_fm_bench.experiments import carbonation
    from allegro_fm_bench.structures import tobermorite_11a
    from allegro_fm_md import State
    from allegro_fm_md.trajectory import H5MDWriter

    radius = 6.0
    plan = {
        "equilibrate-300K": [(0, "none"), (100, "none")],
        "heat-1200K": [(0, "none"), (200, "CO3")],
        "hold-1200K": [(200, "CO3"), (400, "HCO3"), (600, "HCO3+Ca")],
    }
    built = {}

    def scripted_md(ctx, atoms, name, *, steps, restart_from="", **kw):
        d = ctx.outdir / name
        d.mkdir(parents=True, exist_ok=True)
        built.setdefault("system", atoms.copy()) if name == "minimise" else None
        if name in plan:
            system, n_p = built["system"], built["system"].info["particle_atoms"]
            w = H5MDWriter(d / "trajectory.h5md", system.numbers, system.pbc)
            rows = []
            for step, what in plan[name]:
                f = system if what == "none" else _plant(system, n_p, radius, what)
                w.write(
                    State(
                        f.positions,
                        np.zeros_like(f.positions),
                        f.get_masses(),
                        np.array(f.cell),
                        f.pbc,
                        step=step,
                        time_fs=0.5 * step,
                        forces=np.zeros_like(f.positions),
                        energy=0.0,
                    )
                )
                rows.append(f"{step} {0.5 * step} 300.0 {0.1 + step / 1000} 0.05")
            w.close()
            head = (
                "# step time_fs T_K fdev_max fdev_mean\n"  # a run of the model's shallow ensemble
            )
            (d / "thermo.log").write_text(head + "\n".join(rows) + "\n")
        return d

    monkeypatch.setattr(carbonation, "md", scripted_md)
    monkeypatch.setattr(carbonation, "final_atoms", lambda d: built["system"].copy())
    monkeypatch.setattr(carbonation, "relaxed_t11", lambda ctx: tobermorite_11a())
    text, plots, data = carbonation.experiment(_ctx(tmp_path))
    assert not data["stopped"]
    # equilibrate: t = 0, 50 fs; heat (its clock + 50 fs): 150 (0 repeats 50); hold: 350, 550 (200 repeats 150)
    np.testing.assert_allclose(data["time_ps"], [0.0, 0.05, 0.15, 0.25, 0.35])
    none = {"CO3": 0, "HCO3": 0, "H2CO3": 0, "Ca_left": 0}
    assert data["series"] == [
        none,
        none,
        {**none, "CO3": 1},
        {**none, "HCO3": 1},
        {**none, "HCO3": 1, "Ca_left": 1},
    ]
    assert "| CO3 / HCO3 / H2CO3 units at the end | 0 / 1 / 0 |" in text
    # fdev_max over the stages' clocks: 0.7 eV/A at hold step 600, i.e. 0.05 + 0.3 ps
    assert "| largest per-atom force deviation (shallow ensemble) | 0.700 eV/A at 0.350 ps" in text
    assert len(data["fdev_max"]) == 7
    assert (
        "| Ca ions that left the particle | 1 of" in text
        and (tmp_path / "exp" / "carbonation.png").stat().st_size > 0
    )
