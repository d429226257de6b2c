"""Per-atom energies and stresses through the engine (issue 32), float64 Lennard-Jones: atom by atom equal to ASE's own
LennardJones calculator (an oracle independent of this code), summing to the energy and the stress, the same on 1 and
2 MPI ranks to 1e-10, written to H5MD and extxyz; and what is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
from allegro_fm_md import MDInputError, RunFile, mpi_command, run
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.reference import LennardJones
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from md_testutil import argon_toml

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
EPS, SIGMA, RC = 0.0104, 3.4, 6.5


def _argon(seed: int = 3):
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.15, seed=seed)
    return a


def test_per_atom_energies_and_stresses_equal_ases_lennard_jones_atom_by_atom():
    a = _argon()
    lj = LennardJones(["Ar"], epsilon=EPS, sigma=SIGMA, cutoff=RC)
    lj.per_atom_virial = True
    ev = ForceEvaluator(lj, lj.types_of(a.get_chemical_symbols()), skin=0.5)
    state = ev.initial_state(a)
    ref = a.copy()
    ref.calc = AseLJ(epsilon=EPS, sigma=SIGMA, rc=RC)
    np.testing.assert_allclose(state.atomic_energies, ref.get_potential_energies(), atol=1e-12)
    mine = -state.atomic_virials / a.get_volume()
    np.testing.assert_allclose(mine, ref.get_stresses(voigt=False), atol=1e-12)
    assert np.abs(mine).max() > 1e-5  # the comparison is not between zeros
    assert state.atomic_energies.sum() == pytest.approx(state.energy, abs=1e-10)
    np.testing.assert_allclose(state.atomic_virials.sum(0), state.virial, atol=1e-10)
    moved = a.copy()
    moved.positions += [0.7, -1.9, 2.3]  # translation-invariant (the engine re-wraps positions)
    s2 = ForceEvaluator(lj, ev.types, skin=0.5).initial_state(moved)
    np.testing.assert_allclose(s2.atomic_virials, state.atomic_virials, atol=1e-10)


RUN = argon_toml(
    """integrator = "nve"
dt_fs = 2.0
steps = 10
temperature_K = 60
seed = 4""",
    """dir = "out"
thermo_every = 5
trajectory_every = 5
per_atom = ["energy", "stress"]""",
)


def _setup(folder: Path, text: str = RUN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "ar.extxyz", _argon())
    (folder / "run.toml").write_text(text)
    return folder / "run.toml"


def _h5(path: Path) -> dict:
    with h5py.File(path) as h5:
        p = h5["particles/all"]
        return {k: p[f"{k}/value"][()] for k in ("energy", "stress", "position")}


def test_run_writes_per_atom_outputs_that_add_up_and_2_ranks_equal_1(tmp_path):
    sim = run(RunFile.load(_setup(tmp_path / "one")), progress=False)
    one = _h5(tmp_path / "one" / "out" / "trajectory.h5md")
    frames = ase.io.read(tmp_path / "one" / "out" / "trajectory.extxyz", ":")
    assert len(frames) == len(one["energy"]) == 3
    a = frames[-1]
    assert a.get_potential_energies().sum() == pytest.approx(a.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(one["energy"][-1], a.get_potential_energies(), atol=1e-8)
    np.testing.assert_allclose(one["stress"][-1], a.get_stresses(voigt=False), atol=1e-8)
    vol = abs(np.linalg.det(sim.state.cell))
    np.testing.assert_allclose(one["stress"][-1].sum(0), -sim.state.virial / vol, atol=1e-12)
    ref = a.copy()  # the last frame's per-atom stresses are ASE's on its positions
    ref.calc = AseLJ(epsilon=EPS, sigma=SIGMA, rc=RC)
    np.testing.assert_allclose(one["stress"][-1], ref.get_stresses(voigt=False), atol=1e-9)
    if MPIEXEC is None:
        pytest.skip("needs mpiexec (pip install mpi4py mpich) for the 2-rank half")
    pytest.importorskip("mpi4py")
    f = _setup(tmp_path / "two")
    subprocess.run(
        mpi_command(2, "run", str(f), "-q"), check=True, timeout=300, capture_output=True
    )
    two = _h5(tmp_path / "two" / "out" / "trajectory.h5md")
    for key in ("position", "energy", "stress"):  # float64: 2 ranks == 1 rank to 1e-10
        np.testing.assert_allclose(two[key], one[key], atol=1e-10, err_msg=key)


@pytest.mark.parametrize(
    "extra, match",
    [
        ('per_atom = ["charge"]', "unknown"),
        ('per_atom = ["force_deviation"]', "need a committee"),
        ('per_atom = ["energy"]\nshards = true', "not yet with shards"),
    ],
)
def test_per_atom_requests_the_run_cannot_honour_are_refused(tmp_path, extra, match):
    text = RUN.replace('per_atom = ["energy", "stress"]', extra)
    with pytest.raises(MDInputError, match=match):
        run(RunFile.load(_setup(tmp_path, text)), progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_force_deviation_guards_need_a_committee(tmp_path):
    text = RUN.replace("seed = 4", "seed = 4\nfdev_stop = 0.5")
    with pytest.raises(MDInputError, match="need a committee"):
        run(RunFile.load(_setup(tmp_path, text)), progress=False)
