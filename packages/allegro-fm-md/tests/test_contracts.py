"""The Integrator contract: every integrator conforms, the engine drives a new one written outside it, restart
variables round-trip through state_dict / load_state_dict."""

from __future__ import annotations

import numpy as np
import pytest
from allegro_fm_md import (
    CRescaleNPT,
    FIREIntegrator,
    ForceEvaluator,
    Integrator,
    IntegratorBase,
    Langevin,
    LennardJones,
    NoseHooverChain,
    Simulation,
    State,
    UniaxialDeformation,
    VelocityVerlet,
    verlet_step,
)
from ase import units
from ase.build import bulk


def _argon():
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.05, seed=3)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5)
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(8.617e-5 * 40 / a.get_masses()[:, None])
    st = State(a.positions.copy(), v - v.mean(0), a.get_masses(), np.array(a.cell), a.pbc.copy())
    ev.update(st)
    return a, ev, st


def test_serial_and_mpi_communicators_conform():
    from allegro_fm_md import Comm, SerialComm

    assert isinstance(SerialComm(), Comm)
    mpi = pytest.importorskip("mpi4py.MPI")
    assert isinstance(mpi.COMM_WORLD, Comm)


def test_state_is_a_record_and_sums_over_the_comm_it_is_given():
    """State holds no communicator: collective quantities take the comm explicitly (a fake two-rank comm that
    doubles every sum doubles N, E_kin and dof, and leaves T unchanged up to the 3 removed dof)."""
    import dataclasses

    assert "comm" not in {f.name for f in dataclasses.fields(State)}
    _, _, st = _argon()

    class Twice:
        rank, size = 0, 2

        def allreduce(self, x, op=None):
            return 2 * x

    n = len(st.masses)
    assert st.n_global() == n and st.n_global(Twice()) == 2 * n
    assert st.kinetic_energy(Twice()) == pytest.approx(2 * st.kinetic_energy(), rel=1e-14)
    assert st.dof(Twice()) == 6 * n - 3
    t1 = st.temperature()
    assert st.temperature(Twice()) == pytest.approx(t1 * (3 * n - 3) * 2 / (6 * n - 3), rel=1e-12)


def test_every_integrator_conforms():
    nhc = NoseHooverChain(2.0, 40.0)
    for integ in (
        VelocityVerlet(2.0),
        Langevin(2.0, 40.0),
        nhc,
        UniaxialDeformation(Langevin(2.0, 40.0), 2, 1e-5),
        CRescaleNPT(nhc, 0.0),
        FIREIntegrator(),
    ):
        assert isinstance(integ, Integrator), type(integ).__name__
    assert VelocityVerlet(1.0).conserves_energy and nhc.conserves_energy
    assert not Langevin(1.0, 300.0).conserves_energy and not CRescaleNPT(nhc, 0.0).conserves_energy
    # counter-based noise (noise.py): no per-rank generator state, so no rng (a stateful integrator of your own may have one)
    assert (
        CRescaleNPT(Langevin(1.0, 300.0, seed=4), 0.0).rng is None
        and VelocityVerlet(1.0).rng is None
    )


def test_restart_variables_round_trip():
    _, ev, st = _argon()
    a = UniaxialDeformation(CRescaleNPT(NoseHooverChain(2.0, 40.0), 0.0, seed=3), 2, 1e-5)
    for _ in range(5):
        a.step(st, ev)
    d = a.state_dict()
    b = UniaxialDeformation(CRescaleNPT(NoseHooverChain(2.0, 40.0), 0.0, seed=99), 2, 1e-5)
    b.load_state_dict(d)
    assert b.state_dict() == d and d["inner"]["inner"]["xi"] != [0.0, 0.0, 0.0]


def test_the_engine_drives_an_integrator_written_outside_it(tmp_path):
    """A velocity-rescaling thermostat around velocity Verlet, written against the contract only (IntegratorBase's
    defaults + verlet_step): Simulation runs it, writes its thermo log and restarts, and resumes it."""

    class Rescale(IntegratorBase):
        conserves_energy = False

        def __init__(self, dt_fs, temperature_K):
            self.dt_fs, self.T, self.rescales = dt_fs, temperature_K, 0

        def step(self, state, evaluator):
            verlet_step(state, evaluator, self.dt_fs * units.fs, self.dt_fs)
            if state.step % 10 == 0:
                state.velocities *= np.sqrt(self.T / state.temperature())
                self.rescales += 1
            return state

        def state_dict(self):
            return {"rescales": self.rescales}

        def load_state_dict(self, d):
            self.rescales = d["rescales"]

    a, ev, st = _argon()
    integ = Rescale(2.0, 40.0)
    sim = Simulation(st, integ, ev, tmp_path / "out", thermo_every=10, restart_every=50)
    sim.run(100)
    sim.close()
    sim.write_restart()
    t = np.loadtxt(tmp_path / "out" / "thermo.log")
    assert t[-1, 0] == 100 and abs(t[-1, 2] - 40.0) < 1e-6  # rescaled at step 100
    integ2 = Rescale(2.0, 40.0)
    st2 = Simulation.read_restart(tmp_path / "out" / "restart.npz", integ2)
    assert integ2.rescales == 10 and st2.step == 100
    with pytest.raises(ValueError, match="resume it with the same integrator"):
        Simulation.read_restart(tmp_path / "out" / "restart.npz", NoseHooverChain(2.0, 40.0))


def test_a_reporter_and_a_guard_written_outside_the_engine(tmp_path):
    """A reporter (max force every 5 steps, to its own file, on rank 0) and a guard (a temperature ceiling) plugged
    into Simulation's lists: both run, and the guard stops the run with the step named and the last good state saved."""
    from allegro_fm_md import Guard, Reporter, ReporterBase, SimulationError

    class MaxForce(ReporterBase):
        def __init__(self, every, path):
            self.every, self.path, self.lines = every, path, []

        def report(self, sim, final=False):
            f = float(np.abs(sim.state.forces).max())
            if sim.root:
                self.lines.append(f"{sim.state.step} {f:.6f}")

        def close(self):
            self.path.write_text("\n".join(self.lines) + "\n")

    class Hot:
        def __init__(self, ceiling_K):
            self.ceiling = ceiling_K

        def check(self, sim):
            if sim.state.temperature() > self.ceiling:
                raise SimulationError(f"temperature above {self.ceiling} K", sim.state.step)

    _, ev, st = _argon()
    rep, hot = MaxForce(5, tmp_path / "fmax.txt"), Hot(1e4)
    assert isinstance(rep, Reporter) and isinstance(hot, Guard)
    sim = Simulation(st, VelocityVerlet(2.0), ev, tmp_path / "out", reporters=[rep], guards=[hot])
    sim.run(20)
    sim.close()
    assert [int(x.split()[0]) for x in (tmp_path / "fmax.txt").read_text().split("\n") if x] == [
        5,
        10,
        15,
        20,
    ]
    hot.ceiling = 1.0  # now far below the 40 K of the run
    with pytest.raises(SimulationError, match="step 21: temperature above 1.0 K"):
        sim.run(5)
    assert Simulation.read_restart(tmp_path / "out" / "restart_last_good.npz").step == 20
