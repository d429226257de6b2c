"""A bad state is caught at the step it appears: non-finite positions, velocities, forces, energy or cell stop the run
naming the step, the quantity and the atom ids, with the last good state on disk; bad starting data never runs."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from allegro_fm_md import (
    ForceEvaluator,
    LennardJones,
    MDInputError,
    RunFile,
    Simulation,
    SimulationError,
    State,
    VelocityVerlet,
    run,
)
from allegro_fm_md.restart import read_restart_file
from ase.build import bulk


def _sim(tmp_path, integ):
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.02, seed=1)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5)
    ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.5)
    st = State(
        a.positions.copy(), np.zeros((len(a), 3)), a.get_masses(), np.array(a.cell), a.pbc.copy()
    )
    return Simulation(st, integ, ev, tmp_path / "out", thermo_every=1, restart_every=1000)


class Poisoned(VelocityVerlet):
    """Velocity Verlet that spoils one quantity of one atom at step ``at`` (what a blow-up or a bad kernel does)."""

    def __init__(self, what: str, atom: int, at: int, value=np.nan):
        super().__init__(1.0)
        self.what, self.atom, self.at, self.value = what, atom, at, value

    def step(self, state, evaluator):
        if state.step + 1 == self.at and self.what == "positions":
            state.positions[self.atom, 1] = self.value
        super().step(state, evaluator)
        if state.step == self.at and self.what in ("velocities", "forces"):
            getattr(state, self.what)[self.atom, 2] = self.value
        if state.step == self.at and self.what == "cell":
            state.cell = state.cell * self.value
        return state


@pytest.mark.parametrize(
    "what,value,message",
    [
        ("velocities", np.nan, r"step 5: velocities are not finite \(atoms 17\)"),
        ("forces", np.inf, r"step 5: forces are not finite \(atoms 17\)"),
        ("positions", np.nan, r"step 4: positions are not finite .* \(atoms 17\)"),
        ("cell", np.nan, r"step 5: the cell is not finite"),
    ],
)
def test_non_finite_state_stops_the_run_naming_step_quantity_and_atom(
    tmp_path, what, value, message
):
    sim = _sim(tmp_path, Poisoned(what, 17, 5, value))
    with pytest.raises(SimulationError, match=message):
        sim.run(20)
    good = read_restart_file(
        tmp_path / "out" / "restart_last_good.npz"
    )  # finite, by the reader's own check
    assert int(good.meta["step"]) == 4 and np.isfinite(good.arrays["positions"]).all()
    rows = (tmp_path / "out" / "thermo.log").read_text().splitlines()
    assert int(rows[-1].split()[0]) == 4  # no row was written for the bad step


def test_an_overflowing_temperature_stops_the_run(tmp_path):
    sim = _sim(tmp_path, Poisoned("velocities", 3, 2, 1e300))
    with pytest.raises(SimulationError, match=r"step 2: the temperature is not finite"):
        sim.run(5)


RUN = """
[system]
structure = "ar.extxyz"
[potential]
kind = "lj"
cutoff = 6.5
[run]
steps = 5
[output]
dir = "out"
{extra}
"""


def test_a_non_finite_coordinate_in_the_structure_is_named(tmp_path):
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.positions[40, 0] = np.nan
    ase.io.write(tmp_path / "ar.extxyz", a)
    (tmp_path / "run.toml").write_text(RUN.format(extra=""))
    with pytest.raises(MDInputError, match=r"ar.extxyz: atom 40 \(Ar\) has a non-finite position"):
        run(RunFile.load(tmp_path / "run.toml"), progress=False)
    assert not (tmp_path / "out").exists()


def test_a_restart_holding_nan_is_refused(tmp_path):
    sim = _sim(tmp_path, VelocityVerlet(1.0))
    sim.run(2)
    sim.state.velocities[9] = np.nan
    path = sim.write_restart(tmp_path / "bad.npz")
    with pytest.raises(MDInputError, match=r"bad.npz: velocities not finite \(atom ids \[9\]\)"):
        read_restart_file(path)


def test_atoms_on_top_of_each_other_are_refused_before_any_output(tmp_path):
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.positions[12] = a.positions[30] + 0.01
    ase.io.write(tmp_path / "ar.extxyz", a)
    (tmp_path / "run.toml").write_text(RUN.format(extra=""))
    with pytest.raises(MDInputError, match=r"closer than 0.5 A .*atoms 12, 30"):
        run(RunFile.load(tmp_path / "run.toml"), progress=False)
    assert (
        not (tmp_path / "out" / "thermo.log").exists()
        and not (tmp_path / "out" / "trajectory.h5md").exists()
    )
