"""Committees and per-atom outputs in allegro-fm-md (issue 32): a committee of two different models (the shipped
mini model and the nequip 0.6 fixture) run by ``allegro-fm-md run`` on 1 and 2 ranks, checked against the two models
run alone through their ASE calculators; the force-deviation guard on a run driven out of distribution, and its
recorded structures through tea-align and ``allegro-fm evaluate``.

Both models are float32: engine vs calculator and 2 ranks vs 1 agree to float32 round-off (forces summed in another
order), hence 1e-4 eV/A and 1e-5 A below, not 1e-10 (the float64 oracles of the sums are in test_per_atom_outputs.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pytest
from afm_testutil import LEGACY, MPIEXEC
from allegro_fm_md.scaling import mpi_command

RUN = """
[system]
structure = "calcite.extxyz"
replicate = [3, 3, 1]          # 270 atoms
[potential]
kind = "allegro"
models = ["allegro-fm-mini", "{legacy}"]
weights = [1, 2]
[potential.options]
compile = false
[run]
integrator = "{integrator}"
dt_fs = 0.5
steps = {steps}
temperature_K = 300
seed = 1
{extra}
[output]
dir = "out"
thermo_every = 5
trajectory_every = 5
restart_every = 100
per_atom = ["energy", "stress", "force_deviation"]
"""


def _setup(folder: Path, steps: int, integrator: str = "nve", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "calcite.extxyz", ase.io.read(LEGACY.parent / "structures.extxyz", 1))
    f = folder / "run.toml"
    f.write_text(RUN.format(legacy=LEGACY, steps=steps, integrator=integrator, extra=extra))
    return f


def _alone(frame):
    """Forces (eV/A) of each member run alone through its own ASE calculator."""
    from allegro_fm_model import AllegroFMCalculator

    out = []
    for model in ("allegro-fm-mini", LEGACY):
        a = frame.copy()
        a.calc = AllegroFMCalculator(model)
        out.append(a.get_forces())
    return out


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    from allegro_fm_md.cli import main

    folder = tmp_path_factory.mktemp("one")
    assert main(["run", str(_setup(folder, 10)), "-q"]) == 0
    return folder / "out"


def test_committee_forces_and_deviation_equal_the_members_run_alone(one_rank):
    frames = ase.io.read(one_rank / "trajectory.extxyz", ":")
    assert [f.info["step"] for f in frames] == [0, 5, 10]
    a = frames[-1]
    f1, f2 = _alone(a)
    w = np.array([1.0, 2.0]) / 3.0
    mean = w[0] * f1 + w[1] * f2
    by_hand = np.sqrt(w[0] * ((f1 - mean) ** 2).sum(1) + w[1] * ((f2 - mean) ** 2).sum(1))
    np.testing.assert_allclose(a.get_forces(), mean, atol=1e-4)
    np.testing.assert_allclose(a.arrays["force_deviation"], by_hand, atol=1e-4)
    assert by_hand.mean() > 0.05  # two different models: the deviation is not a round-off
    # the per-atom outputs add up: energies to the energy, stresses to the potential part of the stress
    assert a.get_potential_energies().sum() == pytest.approx(a.get_potential_energy(), abs=1e-3)
    kin = np.einsum("i,ij,ik->jk", a.get_masses(), a.get_velocities(), a.get_velocities())
    pot_stress = a.get_stress(voigt=False) + kin / a.get_volume()
    np.testing.assert_allclose(a.get_stresses(voigt=False).sum(0), pot_stress, atol=1e-6)
    head = (one_rank / "thermo.log").read_text().splitlines()[0].split()[1:]
    t = np.loadtxt(one_rank / "thermo.log")
    assert head[-2:] == ["fdev_max", "fdev_mean"]
    assert t[-1, -2] == pytest.approx(by_hand.max(), abs=1e-4)
    assert t[-1, -1] == pytest.approx(by_hand.mean(), abs=1e-4)


def test_h5md_holds_the_same_per_atom_outputs(one_rank):
    import h5py

    a = ase.io.read(one_rank / "trajectory.extxyz", -1)  # extxyz keeps 8 decimals: 1e-8 below
    with h5py.File(one_rank / "trajectory.h5md") as h5:
        p = h5["particles/all"]
        assert p["stress/value"].attrs["unit"] == "eV Angstrom-3"
        np.testing.assert_allclose(p["energy/value"][-1], a.get_potential_energies(), atol=1e-8)
        np.testing.assert_allclose(p["stress/value"][-1], a.get_stresses(voigt=False), atol=1e-8)
        np.testing.assert_allclose(
            p["force_deviation/value"][-1], a.arrays["force_deviation"], atol=1e-8
        )


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpi4py mpich)")
def test_two_ranks_give_the_same_per_atom_outputs(one_rank, tmp_path):
    pytest.importorskip("mpi4py")
    f = _setup(tmp_path, 10)
    subprocess.run(
        mpi_command(2, "run", str(f), "-q"), check=True, timeout=600, capture_output=True
    )
    a1 = ase.io.read(one_rank / "trajectory.extxyz", -1)
    a2 = ase.io.read(tmp_path / "out" / "trajectory.extxyz", -1)
    dx = np.abs(a2.positions - a1.positions).max()
    print(f"committee, 2 ranks vs 1 after 10 steps: max |dx| {dx:.1e} A")
    assert dx < 1e-5
    for get in ("get_forces", "get_potential_energies"):
        np.testing.assert_allclose(getattr(a2, get)(), getattr(a1, get)(), atol=1e-4)
    np.testing.assert_allclose(
        a2.get_stresses(voigt=False), a1.get_stresses(voigt=False), atol=1e-6
    )
    np.testing.assert_allclose(
        a2.arrays["force_deviation"], a1.arrays["force_deviation"], atol=1e-4
    )


def test_the_guard_records_and_stops_a_run_driven_out_of_distribution(
    tmp_path, monkeypatch, capsys
):
    """Heated from 300 K to 6000 K: the deviation rises; atoms above fdev_record are written (as cut-outs here: the
    whole-frame limit is lowered to exercise them), the run stops above fdev_stop with the last good state, and the
    recorded structures go through tea-align and allegro-fm evaluate."""
    import tea_align
    from allegro_fm_md import reporters
    from allegro_fm_md.cli import main as md
    from allegro_fm_model import AllegroFMCalculator
    from allegro_fm_model.cli import main as afm

    start = ase.io.read(LEGACY.parent / "structures.extxyz", 1).repeat((3, 3, 1))
    start.calc = AllegroFMCalculator(["allegro-fm-mini", str(LEGACY)], weights=[1, 2])
    fdev0 = float(start.calc.get_property("force_deviation", start).max())
    extra = (
        f"temperature_end_K = 6000\nfdev_record = {1.15 * fdev0}\nfdev_stop = {1.5 * fdev0}\n"
        "[run.langevin]\nfriction_per_fs = 0.05"
    )
    f = _setup(tmp_path, 400, "langevin", extra)
    monkeypatch.setattr(reporters, "WHOLE_FRAME_ATOMS", 50)
    code = md(["run", str(f), "-q"])
    err = capsys.readouterr().err
    out = tmp_path / "out"
    assert code == 3, err  # EXIT_GUARD
    assert "above fdev_stop" in err and (out / "restart_last_good.npz").exists()
    rec = ase.io.read(out / "uncertain.extxyz", ":")
    stop_step = int(err.split("step ")[1].split()[0].strip(":,"))
    steps = sorted({a.info["step"] for a in rec})
    print(
        f"fdev at start {fdev0:.3f} eV/A; {len(rec)} cut-outs at steps {steps}; stopped at {stop_step}"
    )
    assert steps[-1] == stop_step and all(a.info["kind"] == "cutout" for a in rec)
    assert all(a.info["fdev_centre"] > 1.15 * fdev0 for a in rec)
    assert all(len(a) < 270 and not a.pbc.any() for a in rec)
    # recorded, labelled by the committee's mean: tea-align reads them, evaluate scores a model on them
    tea_align.convert([f"{out / 'uncertain.extxyz'},name=uncertain"], tmp_path / "u.h5")
    assert (
        afm(["evaluate", "allegro-fm-mini", str(tmp_path / "u.h5"), "-o", str(tmp_path / "e.md")])
        == 0
    )
    assert "uncertain" in (tmp_path / "e.md").read_text()


def _lj_morse():
    from allegro_fm_md.reference import LennardJones, Morse
    from allegro_fm_model import CommitteePotential

    return CommitteePotential(
        [LennardJones(["Ar"], cutoff=6.5), Morse(["Ar"], depth=0.012, a=1.3, r0=3.8, cutoff=6.0)]
    )


def test_chunked_evaluation_keeps_member_forces_and_per_atom_virials():
    """Float64 reference potentials: evaluated in chunks of 40 edges, a committee's members' forces, the deviation and
    the per-atom virials equal the one-call values to 1e-12."""
    from allegro_fm_md.chunked import ChunkedPotential
    from allegro_fm_md.forces import ForceEvaluator
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.1, seed=5)
    states = []
    for max_edges in (None, 40):
        pot = _lj_morse()
        pot.per_atom_virial = True
        wrapped = ChunkedPotential(pot, max_edges, cpu_call_edges=None)
        ev = ForceEvaluator(wrapped, pot.types_of(a.get_chemical_symbols()), skin=0.5)
        states.append(ev.initial_state(a))
        assert wrapped.calls == 1 if max_edges is None else wrapped.calls > 10
    whole, chunked = states
    assert whole.force_deviation.min() > 1e-3
    for name in ("forces", "atomic_energies", "atomic_virials", "force_deviation"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), atol=1e-12)


def test_small_systems_are_recorded_as_whole_labelled_frames(tmp_path):
    from allegro_fm_md import Simulation
    from allegro_fm_md.forces import ForceEvaluator
    from allegro_fm_md.integrators import VelocityVerlet
    from allegro_fm_md.reporters import ForceDeviationGuard
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.1, seed=5)
    pot = _lj_morse()
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
    state = ev.initial_state(a)
    guard = ForceDeviationGuard(record=0.5 * state.force_deviation.max(), every=3, species=("Ar",))
    sim = Simulation(state, VelocityVerlet(2.0), ev, tmp_path, thermo_every=1, guards=[guard])
    sim.run(6)
    rec = ase.io.read(tmp_path / "uncertain.extxyz", ":")
    assert [r.info["step"] for r in rec] == [0, 3, 6] and all(
        r.info["kind"] == "frame" for r in rec
    )
    last = rec[-1]
    assert len(last) == len(a) and last.pbc.all()
    row = next(t for t in sim.thermo if t.column("step") == 6)
    assert last.get_potential_energy() == pytest.approx(row.column("pe_eV"), abs=1e-6)
    assert last.arrays["force_deviation"].max() == pytest.approx(row.column("fdev_max"), abs=1e-6)
    assert last.info["fdev_max"] == pytest.approx(last.arrays["force_deviation"].max())
