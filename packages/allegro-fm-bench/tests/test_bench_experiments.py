"""The paper's experiments on tiny systems: each module's physics and bookkeeping, with the shipped mini model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from allegro_fm_bench import structures as S
from allegro_fm_bench.experiments import resolve_model, run_experiment
from allegro_fm_bench.experiments._common import Context

SHARED_T1X = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "transition1x_sample"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return Context(resolve_model("allegro-fm-mini"), d / "exp", True, d / "cache")


def test_eos_of_portlandite_is_convex_with_positive_bulk_modulus(ctx):
    from allegro_fm_bench.experiments import eos

    ctx.outdir.mkdir(parents=True, exist_ok=True)
    r, plot = eos.run(
        ctx, strains=(-0.04, -0.02, 0.0, 0.02, 0.04), fmax=0.05, steps=500, atoms=S.portlandite()
    )
    assert Path(plot).exists()
    assert (
        r.energies[2] < r.energies[0] and r.energies[2] < r.energies[4]
    )  # a minimum inside the scanned range
    assert (
        5 < r.bulk_modulus < 200
    )  # GPa; portlandite: 30-40 GPa measured (the mini model is a demonstration model)
    assert min(r.volumes) < r.v0 < max(r.volumes)


def test_gr_of_portlandite_at_300K_keeps_its_bonds(ctx):
    """NVT with allegro-fm-md, then g(r): O-H 0.97 A (1 H per O), Ca octahedrally coordinated by O."""
    from allegro_fm_bench.experiments import gr

    ctx.outdir.mkdir(parents=True, exist_ok=True)
    text, plots, data = gr.run(
        ctx, S.portlandite() * (4, 4, 3), 10, 20, 5, pairs=(("H", "O"), ("Ca", "O"))
    )
    assert (ctx.outdir.parent / plots[0]).exists() and "| H-O |" in text
    assert data["H-O"]["peak_A"] == pytest.approx(0.97, abs=0.05) and data["H-O"][
        "cn"
    ] == pytest.approx(1.0, abs=0.05)
    assert data["Ca-O"]["peak_A"] == pytest.approx(2.37, abs=0.12) and data["Ca-O"][
        "cn"
    ] == pytest.approx(6.0, abs=0.3)
    assert data["frames"] == 5


def test_tensile_analysis_and_fracture_plane():
    from allegro_fm_bench.experiments.tensile import analyse, fracture_plane

    strain = np.linspace(0, 0.25, 101)
    stress = np.where(strain < 0.15, 40 * strain, 0.2)  # linear to 6 GPa at 0.15, then broken
    a = analyse(strain, stress, window=1)
    assert a["yield_strain"] == pytest.approx(0.1475, abs=3e-3) and a[
        "fracture_strain"
    ] == pytest.approx(0.15, abs=3e-3)
    smooth = analyse(
        strain, stress
    )  # the default 5-point running mean: the same fracture, one or two points early
    assert smooth["fracture_strain"] == pytest.approx(0.15, abs=6e-3)
    # yields at 0.12 and flows at 70 % of the peak to the end: no fracture (the running mean's ends are not zero-padded)
    flow = np.where(strain < 0.12, 50 * strain, 4.2)
    assert (
        np.isnan(analyse(strain, flow)["fracture_strain"])
        and 5.0 < analyse(strain, flow)["peak_GPa"] <= 6.0
    )
    t = S.tobermorite_11a() * (1, 1, 2)
    frac = t.get_scaled_positions()
    t.positions[frac[:, 2] > 0.5] += (
        0.5 * t.cell[2] * 0.2
    )  # open a 0.1 c gap at z = 0.5 (and its image at 1.0)
    t.set_cell(t.cell * [1, 1, 1.1], scale_atoms=False)
    z, gap, near = fracture_plane(t)
    assert gap > 4.0 and ("Ca" in near or "O" in near)


def test_nanoparticle_in_fluid_density_spacing_and_species():
    from allegro_fm_bench.experiments.carbonation import species
    from ase import Atoms
    from ase.geometry import get_distances

    p = S.csh_nanoparticle(6.0)
    assert {"Ca", "Si", "O", "H"} == set(p.get_chemical_symbols())
    assert np.linalg.norm(p.positions, axis=1).max() < 6.0 + 1.3
    box = S.nanoparticle_in_fluid(p, 22.0, seed=1)
    assert box.info["n_co2"] == box.info["n_h2o"] or abs(box.info["n_co2"] - box.info["n_h2o"]) <= 1
    fluid = box[len(p) :]
    r_np = np.linalg.norm(p.positions, axis=1).max() + 1.8
    v_free = 22.0**3 - 4 / 3 * np.pi * r_np**3
    assert fluid.get_masses().sum() / v_free * 1.66054 == pytest.approx(1.0, abs=0.03)  # g/cc
    _, d = get_distances(box.positions, cell=box.cell, pbc=True)
    mol = np.repeat(np.arange(len(fluid) // 3), 3)  # 3-atom molecules after the particle
    same = np.zeros_like(d, bool)
    k = len(p)
    same[k:, k:] = mol[:, None] == mol[None, :]
    same[:k, :k] = True
    assert d[~same].min() >= 1.8 - 1e-6
    # a carbonate, a bicarbonate and a CO2 in a box: counted as such
    co3 = Atoms("CO3", positions=[(0, 0, 0), (1.28, 0, 0), (-0.64, 1.11, 0), (-0.64, -1.11, 0)])
    hco3 = co3.copy()
    hco3 += Atoms("H", positions=[(2.2, 0.3, 0)])
    hco3.positions += 6
    co2 = Atoms("CO2", positions=[(12, 12, 12), (13.16, 12, 12), (10.84, 12, 12)])
    ca = Atoms("CaSi", positions=[(3, 12, 3), (3, 14, 3)])
    s = ca + co3 + hco3 + co2
    s.set_cell([18] * 3)
    s.pbc = True
    c = species(s, 2, 1.0)
    assert (c["CO3"], c["HCO3"], c["H2CO3"]) == (1, 1, 0)


def test_neb_water_rotation_keeps_the_molecule_and_pbe_forces_are_gradients():
    from allegro_fm_bench.labelling import PySCFCalculator
    from allegro_fm_bench.neb import rotated_water
    from ase import Atoms

    p = S.carbonic_acid_path(2)[-1]
    q = rotated_water(p)
    w = [2, 4, 5]
    assert np.allclose(p[w].get_all_distances(), q[w].get_all_distances(), atol=1e-9)
    assert abs(q.positions[[4, 5], 2]).max() > 0.3  # out of the molecular plane
    h2 = Atoms("H2", positions=[(0, 0, 0), (0, 0, 0.74)])
    h2.calc = PySCFCalculator(xc="pbe", basis="def2-svp")
    f = h2.get_forces()[1, 2]
    e = []
    for dz in (-1e-3, 1e-3):
        x = h2.copy()
        x.positions[1, 2] += dz
        x.calc = PySCFCalculator(xc="pbe", basis="def2-svp")
        e.append(x.get_potential_energy())
    assert f == pytest.approx(-(e[1] - e[0]) / 2e-3, abs=2e-3)


def test_shared_pyscf_calculator_remembers_geometries_and_restarts_from_the_nearest_density():
    """A NEB shares one PySCF calculator over its images and asks for each more than once per step: a geometry
    seen before costs no SCF, and starting from a nearby converged density changes nothing beyond conv_tol."""
    from allegro_fm_bench.labelling import PySCFCalculator
    from ase import Atoms

    water = Atoms("OH2", positions=[(0, 0, 0.12), (0, 0.76, -0.47), (0, -0.76, -0.47)])
    moved = water.copy()
    moved.positions[1] += (0, 0.05, 0.02)
    shared = PySCFCalculator(xc="pbe", basis="def2-svp")
    got = []
    for a in (water, moved, water, moved):  # two images, asked for twice
        a = a.copy()
        a.calc = shared
        got.append((a.get_potential_energy(), a.get_forces()))
    assert shared.scf_runs == 2
    for a, (e, f) in zip((water, moved), got[2:]):
        a = a.copy()
        a.calc = PySCFCalculator(
            xc="pbe", basis="def2-svp", cache_size=0
        )  # fresh SCF from PySCF's own guess
        assert e == pytest.approx(a.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-4)
    assert abs(got[1][0] - got[0][0]) > 1e-3  # the two geometries really differ


def _proton_well():
    """O-H...O proton transfer on an analytic double well E = A (x-a)^2 (x-b)^2 along the O...O axis (O atoms and the
    proton's sideways motion tethered, k = 20 eV/A^2): barrier A h^4 = 1 eV at x = (a+b)/2; (Calculator class, a, b,
    O-H-O home positions)."""
    from ase.calculators.calculator import Calculator, all_changes

    a, b, k = 0.97, 1.63, 20.0
    h = (b - a) / 2
    A = 1.0 / h**4
    home = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.6, 0.0, 0.0]])

    class Well(Calculator):
        implemented_properties = ["energy", "forces"]
        calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            Well.calls += 1
            r = self.atoms.positions
            x = r[1, 0]
            d = r - home
            d[1, 0] = 0.0  # the proton moves freely along the O...O axis
            self.results["energy"] = A * (x - a) ** 2 * (x - b) ** 2 + 0.5 * k * float((d**2).sum())
            f = -k * d
            f[1, 0] = -A * (2 * (x - a) * (x - b) ** 2 + 2 * (x - a) ** 2 * (x - b))
            self.results["forces"] = f

    return Well, a, b, home


def test_saddle_refinement_finds_the_analytic_saddle_of_a_proton_transfer(tmp_path):
    """On the analytic proton-transfer double well, from a coarse band the dimer method lands on x = (a+b)/2 with
    barrier A h^4 = 1 eV and curvature -4 A h^2, the descents end in the two bonding patterns, and a rerun reuses the
    checkpoint."""
    from allegro_fm_bench.neb import refine_saddle
    from ase import Atoms

    Well, a, b, home = _proton_well()
    h = (b - a) / 2
    A = 1.0 / h**4
    images = []
    for x in np.linspace(a, b, 5):
        im = Atoms("OHO", positions=[home[0], (x, 0.0, 0.0), home[2]])
        images.append(im)
    images[1].positions[1, 1] += 0.05  # a band that is not exactly on the path
    calc = Well()
    r = refine_saddle(calc, images, fmax=0.01, checkpoint=tmp_path)
    s = r["saddle"]
    assert r["converged"] and r["connects"]
    assert s.positions[1, 0] == pytest.approx((a + b) / 2, abs=0.01)
    s.calc = calc
    assert s.get_potential_energy() == pytest.approx(1.0, abs=0.01)
    assert r["curvature"] == pytest.approx(-4 * A * h**2, rel=0.1)
    assert sorted(map(tuple, r["sides"])) == [((0, 1),), ((1, 2),)]
    n = Well.calls
    again = refine_saddle(calc, images, fmax=0.01, checkpoint=tmp_path)
    assert (
        Well.calls == n
        and np.allclose(again["saddle"].positions, s.positions)
        and again["connects"]
    )


def test_reference_descents_follow_the_path_down_to_both_minima(tmp_path, monkeypatch):
    """The descents from the reference saddle (PySCF's PBE replaced by the analytic double well): the reactant side
    ends at x = a, the product side at x = b, no step longer than 0.05 A (the path is sampled densely: at least
    (b - a) / 2 / 0.05 steps), the energy below the start's after the first step, each frame's forces the well's, both
    sides connect, and a rerun reads the saved descents without a single new force call."""
    import ase.io
    from allegro_fm_bench import neb
    from ase import Atoms

    Well, a, b, home = _proton_well()
    monkeypatch.setattr(neb, "PySCFCalculator", lambda **kw: Well())
    band = [Atoms("OHO", positions=[home[0], (x, 0.0, 0.0), home[2]]) for x in np.linspace(a, b, 5)]
    ase.io.write(tmp_path / "images.extxyz", band)
    ase.io.write(
        tmp_path / "saddle.extxyz",
        Atoms("OHO", positions=[home[0], ((a + b) / 2, 0.0, 0.0), home[2]]),
    )
    path = neb.reference_descents(tmp_path, fmax=0.01)
    sides = {s: [f for f in path if f.info["side"] == s] for s in ("reactant", "product")}
    assert sides["reactant"][-1].positions[1, 0] == pytest.approx(a, abs=0.01)
    assert sides["product"][-1].positions[1, 0] == pytest.approx(b, abs=0.01)
    for frames in sides.values():
        e = [f.get_potential_energy() for f in frames]
        assert e[0] == pytest.approx(
            1.0 - 4 * A_of(a, b) * ((b - a) / 2) ** 2 * 0.1**2 / 2, abs=0.02
        )
        assert max(e[1:]) < e[0] and e[-1] < 1e-3 and all(f.info["connects"] for f in frames)
        x = [f.positions[1, 0] for f in frames]
        assert np.abs(np.diff(x)).max() <= 0.05 + 1e-9 and len(frames) >= (b - a) / 2 / 0.05
        probe = frames[len(frames) // 2].copy()
        probe.calc = Well()
        assert np.allclose(frames[len(frames) // 2].get_forces(), probe.get_forces())
    n = Well.calls
    again = neb.reference_descents(tmp_path, fmax=0.01)
    assert Well.calls == n and len(again) == len(path)
    assert np.allclose(again[-1].positions, path[-1].positions)


def A_of(a, b):
    """The double well's prefactor A (eV/A^4) for a 1 eV barrier."""
    return 1.0 / ((b - a) / 2) ** 4


def test_neb_band_checkpoint_resumes_after_a_crash(tmp_path):
    """A band killed mid-optimisation resumes from its last saved FIRE step, not from the interpolation."""
    from allegro_fm_bench.neb import band
    from ase.calculators.emt import EMT

    class Crash(EMT):
        calls = 0

        def calculate(self, *a, **k):
            Crash.calls += 1
            if Crash.calls > 200:  # some FIRE steps in
                raise RuntimeError("node lost")
            super().calculate(*a, **k)

    path = S.carbonic_acid_path(2)
    r, p = path[0], path[-1]
    ck = tmp_path / "ck"
    with pytest.raises(RuntimeError, match="node lost"):
        band(Crash(), r, p, 7, fmax=0.05, steps=40, checkpoint=ck)
    state = json.loads((ck / "band.json").read_text())
    assert state["stage"] == "NEB" and 3 <= state["steps_done"] < 40 and not state["stage_finished"]
    import ase.io

    saved = ase.io.read(ck / "band.extxyz", index=":")
    fresh, _, _ = band(EMT(), r, p, 7, fmax=0.05, steps=0)  # 0 steps: the IDPP start
    assert (
        max(abs(a.positions - b.positions).max() for a, b in zip(saved, fresh)) > 1e-3
    )  # it had moved
    resumed, f, ok = band(EMT(), r, p, 7, fmax=0.05, steps=40, checkpoint=ck)
    final = json.loads((ck / "band.json").read_text())
    assert final["stage"] == "CI-NEB" and final["stage_finished"] and final["converged"] == ok
    assert np.isfinite(f) and (ok or final["steps_done"] == 40)
    again, f2, ok2 = band(
        EMT(), r, p, 7, fmax=0.05, steps=40, checkpoint=ck
    )  # finished: nothing re-run
    assert (
        ok2 == ok
        and f2 == pytest.approx(f)
        and all(np.allclose(a.positions, b.positions) for a, b in zip(again, resumed))
    )
    with pytest.raises(ValueError, match="band.extxyz"):
        band(EMT(), r, p, 5, checkpoint=ck)


def test_transition1x_hdf5_errors_are_the_planted_ones(ctx, tmp_path):
    """An HDF5 in the dataset's layout labelled with the model itself plus per-element offsets, plus planted errors: every
    label force shifted by c = (0.03, -0.04, 0) eV/A and each transition state's energy raised by 0.1 eV. The evaluation
    must find zero energy error along the bands (offsets recovered), a force RMSE of |c| / sqrt(3) = 28.868 meV/A and a
    barrier MAE of 0.1 eV: a unit, sign or factor-2 slip in any of the three shows."""
    import h5py
    from allegro_fm_bench.experiments.transition1x import LEVEL, evaluate_hdf5
    from allegro_fm_model import AllegroFMCalculator

    pot = ctx.potential()
    calc = AllegroFMCalculator(pot)
    offset = {1: -13.6, 6: -1029.4, 8: -2041.8}
    band = S.carbonic_acid_path(5)
    rng = np.random.default_rng(0)
    path = tmp_path / "t1x.h5"
    with h5py.File(path, "w") as h5:
        for name, images in (("rxn0", band), ("rxn1", [b.copy() for b in band])):
            for b in images:
                b.positions += rng.normal(0, 0.01, b.positions.shape)
            z = images[0].numbers
            es, fs = [], []
            for b in images:
                b.calc = calc
                es.append(b.get_potential_energy() + sum(offset[int(x)] for x in z))
                fs.append(b.get_forces() + np.array([0.03, -0.04, 0.0]))
            g = h5.create_group(f"test/CH2O3/{name}")
            g["atomic_numbers"] = z
            g["positions"] = np.array([b.positions for b in images])
            g[f"{LEVEL}.energy"] = np.array(es)
            g[f"{LEVEL}.forces"] = np.array(fs)
            k = int(np.argmax(es))
            for sub, i in (("reactant", 0), ("product", len(images) - 1), ("transition_state", k)):
                s = g.create_group(sub)
                s["positions"] = g["positions"][()][i : i + 1]
                s[f"{LEVEL}.energy"] = np.array(es[i : i + 1]) + (
                    0.1 if sub == "transition_state" else 0.0
                )
                s[f"{LEVEL}.forces"] = np.array(fs[i : i + 1])
    r = evaluate_hdf5(path, pot, calc)
    assert r["configurations"] == 10
    assert r["energy_rmse_meV_atom"] < 1e-3
    assert r["force_rmse_meV_A"] == pytest.approx(1000 * np.sqrt((0.03**2 + 0.04**2) / 3), abs=1e-3)
    assert r["barrier_mae_eV"] == pytest.approx(0.1, abs=1e-6)
    n = {
        1: 2,
        6: 1,
        8: 3,
    }  # one composition (H2CO3): only the total shift of the molecule is determined
    assert sum(v * n[int(k)] for k, v in r["element_shift_eV"].items()) == pytest.approx(
        sum(offset[k] * n[k] for k in n), abs=1e-4
    )
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5.create_group("test/X/rxn0")["atomic_numbers"] = [1]
    with pytest.raises(ValueError, match="not the Transition1x layout"):
        evaluate_hdf5(bad, pot, calc)


def test_transition1x_skips_without_data_and_on_unknown_elements(ctx, tmp_path, monkeypatch):
    from allegro_fm_bench.experiments.transition1x import Skipped, find_data

    monkeypatch.delenv("ALLEGRO_FM_TRANSITION1X", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Skipped, match="no Transition1x data"):
        find_data()
    r = run_experiment("transition1x", "allegro-fm-mini", tmp_path / "out", quick=True)
    assert r.status.startswith("skipped")


@pytest.mark.skipif(not SHARED_T1X.exists(), reason="../shared/data/transition1x_sample is absent")
def test_transition1x_sample_lists_reactions_with_nitrogen_as_skipped(ctx, tmp_path):
    from allegro_fm_bench.experiments.transition1x import evaluate_endpoints
    from allegro_fm_model import AllegroFMCalculator

    pot = ctx.potential()
    r = evaluate_endpoints(SHARED_T1X, pot, AllegroFMCalculator(pot), steps=5)
    assert (
        len(r["reactions_skipped"]) == 7
    )  # every reaction with N: the mini model knows H, C, O, Si, Ca
    (row,) = r["reactions"]
    assert row["reaction"] == "C2H4O/rxn0722" and row["dft_barrier_eV"] == pytest.approx(
        3.536, abs=1e-3
    )


def test_scaling_point_one_rank(ctx):
    import ase.io
    from allegro_fm_bench.experiments.scaling import measure
    from allegro_fm_md import project_weak_scaling

    ctx.outdir.mkdir(parents=True, exist_ok=True)
    f = ctx.outdir / "t11.extxyz"
    ase.io.write(f, S.tobermorite_11a())
    r = measure(ctx, str(f), 1, (2, 2, 1), 2, "test")
    assert (
        r["atoms"] == 352
        and r["ranks"] == 1
        and r["step_s"] > 0
        and 0 < r["model_s"] <= r["wall_s"]
    )
    proj = dict(project_weak_scaling(1.0, 1.05, 2000, 2e-6, 1e10, [1, 2, 100, 100_000]))
    assert (
        proj[1] == 1.0
        and proj[2] == pytest.approx(1 / 1.05)
        and proj[100_000] < proj[100] < proj[2]
    )


def test_run_cli_writes_the_report_and_rejects_unknown_models(tmp_path):
    from allegro_fm_bench.cli import main

    assert main(["run", "params", "-o", str(tmp_path)]) == 0
    rep = (tmp_path / "report.md").read_text()
    assert "| FM64 | 44,464 | 44,400 |" in rep and "sha256" in rep
    res = json.loads((tmp_path / "params" / "result.json").read_text())
    assert res["status"] == "ok" and res["data"]["FM256"]["paper"] == 690000
    assert (
        main(["run", "params", "--model", str(tmp_path / "nope.nequip.zip"), "-o", str(tmp_path)])
        == 2
    )


def test_a_failing_experiment_is_reported_not_raised(tmp_path, monkeypatch):
    from allegro_fm_bench.experiments import eos

    def boom(ctx):
        raise RuntimeError("relaxation did not converge")

    monkeypatch.setattr(eos, "experiment", boom)
    r = run_experiment("eos", "allegro-fm-mini", tmp_path, quick=True)
    assert (
        r.status == "failed: RuntimeError: relaxation did not converge"
        and r.provenance.model_sha256
    )


LEGACY = (
    Path(__file__).resolve().parents[2]
    / "allegro-fm-model"
    / "tests"
    / "data"
    / "legacy"
    / "legacy-allegro-0.3.0.pth"
)


def test_experiments_take_a_legacy_nequip_06_file(tmp_path):
    """The published weights' format (nequip 0.6.x deployed TorchScript; here the test fixture, a toy model) goes
    through the same Context and into allegro-fm-md run files: a short NVT g(r) run of portlandite, and the
    provenance names the file and its sha256."""
    import hashlib

    from allegro_fm_bench.experiments import gr
    from allegro_fm_bench.report import model_sha256

    c = Context(resolve_model(str(LEGACY)), tmp_path / "exp", True, tmp_path / "cache")
    c.outdir.mkdir(parents=True)
    text, plots, data = gr.run(
        c, S.portlandite() * (4, 4, 3), 10, 20, 5, pairs=(("H", "O"), ("Ca", "O"))
    )
    assert (c.outdir.parent / plots[0]).exists() and "| H-O |" in text and data["frames"] == 5
    assert data["H-O"]["peak_A"] == pytest.approx(0.97, abs=0.1)  # the O-H bond survives 10 fs
    assert model_sha256(c.model) == hashlib.sha256(LEGACY.read_bytes()).hexdigest()


def test_neb_reference_energies_survive_an_image_whose_scf_fails():
    """A model's band can hold a broken geometry on which PySCF's SCF does not converge: that image's reference
    energy is NaN and named, the others are kept (before, the whole NEB experiment stopped)."""
    from allegro_fm_bench.labelling import SCFNotConverged
    from allegro_fm_bench.neb import energies
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes

    class FailsFarApart(Calculator):
        implemented_properties = ["energy"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            d = atoms.get_distance(0, 1)
            if d > 2.0:
                raise SCFNotConverged(f"SCF did not converge for {atoms.get_chemical_formula()}")
            self.results["energy"] = d  # eV

    images = [Atoms("H2", positions=[[0, 0, 0], [0, 0, d]]) for d in (0.7, 1.0, 2.5, 1.2)]
    failed: list[int] = []
    e = energies(images, FailsFarApart(), failed=failed)
    assert failed == [2] and np.isnan(e[2])
    np.testing.assert_allclose(
        e[[0, 1, 3]], np.array([0.0, 0.3, 0.5]) * 23.060547830619, rtol=1e-6
    )  # kcal/mol
    with pytest.raises(SCFNotConverged):
        energies(images, FailsFarApart())
