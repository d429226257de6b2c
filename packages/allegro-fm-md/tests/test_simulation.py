"""Simulation driver: thermo log, restart files that resume bit-for-bit, guards that stop cleanly."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import Langevin, State
from allegro_fm_md.reference import LennardJones
from allegro_fm_md.simulation import Simulation, SimulationError
from ase.build import bulk


def _sim(outdir, state=None, seed=3):
    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    ev = ForceEvaluator(pot, np.zeros(len(a), int), skin=0.3)
    integ = Langevin(5.0, 80.0, friction=0.02, seed=seed)
    if state is None:
        rng = np.random.default_rng(0)
        state = State(
            a.positions.copy(),
            rng.normal(0, 0.002, (len(a), 3)),
            a.get_masses(),
            np.array(a.cell),
            a.pbc.copy(),
        )
    elif isinstance(state, str):
        state = Simulation.read_restart(state, integ)
    return Simulation(state, integ, ev, outdir, thermo_every=10, restart_every=50)


def test_restart_resumes_bit_for_bit(tmp_path):
    ref = _sim(tmp_path / "a").run(120)
    first = _sim(tmp_path / "b")
    first.run(50)
    resumed = _sim(tmp_path / "b", state=str(tmp_path / "b" / "restart.npz"))
    assert resumed.state.step == 50
    resumed.run(70)
    assert np.array_equal(resumed.state.positions, ref.positions)
    assert np.array_equal(resumed.state.velocities, ref.velocities)
    rows = (tmp_path / "a" / "thermo.log").read_text().splitlines()
    assert rows[0].startswith("# step time_fs T_K") and len(rows) == 1 + 13
    t = np.loadtxt(tmp_path / "a" / "thermo.log")
    np.testing.assert_allclose(t[:, 5], t[:, 3] + t[:, 4])  # etot = pe + ke
    assert np.all(t[1:, -1] > 0)  # atom-steps/s


def test_truncated_restart_is_a_clear_error(tmp_path):
    s = _sim(tmp_path)
    p = s.write_restart()
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable restart file"):
        Simulation.read_restart(p)


def test_overlap_guard_names_atoms_and_keeps_last_good_state(tmp_path):
    s = _sim(tmp_path)
    s.state.positions[5] = s.state.positions[4] + [0.3, 0.0, 0.0]
    with pytest.raises(
        SimulationError, match=r"step 0: atoms closer than 0.5 A .*\(atoms (4, 5|5, 4)\)"
    ):
        s.__init__(s.state, s.integrator, s.evaluator, tmp_path)
    s2 = _sim(tmp_path / "run")
    s2.run(10)
    s2.state.velocities[7] = [0.0, 0.0, 5.0]  # absurd kick: atom 7 flies into a neighbour
    with pytest.raises(SimulationError, match=r"step [1-3][0-9]: atoms closer than 0.5 A"):
        s2.run(30)
    good = Simulation.read_restart(tmp_path / "run" / "restart_last_good.npz")
    assert good.step == s2.state.step - 1


def test_trajectories_h5md_and_extxyz(tmp_path):
    import ase.io
    import h5py
    from allegro_fm_md.trajectory import read_h5md_positions

    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)
    base = _sim(tmp_path)
    sim = Simulation(
        base.state,
        base.integrator,
        base.evaluator,
        tmp_path / "t",
        trajectory_every=20,
        numbers=a.numbers,
    )
    sim.run(60)
    sim.close()
    steps, pos, cells = read_h5md_positions(tmp_path / "t" / "trajectory.h5md")
    assert list(steps) == [0, 20, 40, 60]
    np.testing.assert_array_equal(pos[-1], sim.state.positions)
    np.testing.assert_array_equal(cells[0], a.cell)
    with h5py.File(tmp_path / "t" / "trajectory.h5md") as h5:
        assert list(h5["h5md"].attrs["version"]) == [1, 1]
        assert (
            h5["particles/all/position/value"].attrs["unit"] == "Angstrom"
        )  # spelt as MDAnalysis knows it
        assert list(h5["particles/all/box"].attrs["boundary"]) == [b"periodic"] * 3
        np.testing.assert_allclose(h5["observables/temperature/value"][-1], sim.state.temperature())
    frames = ase.io.read(tmp_path / "t" / "trajectory.extxyz", ":")
    assert len(frames) == 4 and frames[-1].info["step"] == 60
    np.testing.assert_allclose(frames[-1].positions, sim.state.positions, atol=1e-7)
