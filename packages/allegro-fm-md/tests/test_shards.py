"""Beyond one node: with ``[output] shards = true`` no rank gathers the system. Every rank builds only its own atoms of
the replicated supercell (same ids and velocities as one rank), writes its own restart and trajectory shard, and a
restart written on 4 ranks resumes on 2 and on 8 ranks with the trajectory of an unbroken run (float64 LJ, NVE and
Langevin); ``allegro-fm-md merge`` makes one H5MD of the shards that ase and MDAnalysis read."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md import mpiexec_path
from ase.build import bulk
from md_testutil import argon_toml

MPIEXEC = mpiexec_path()
pytestmark = pytest.mark.skipif(not (MPIEXEC and find_spec("mpi4py")), reason="needs mpi4py and mpiexec (pip install mpi4py mpich)")

RUN = argon_toml("""integrator = "{integrator}"
dt_fs = 4.0
steps = {steps}
temperature_K = 60
seed = 5""", """dir = "{out}"
thermo_every = 10
trajectory_every = 20
restart_every = 20
shards = {shards}
{extra}""", system='structure = "ar.extxyz"\nreplicate = [4, 4, 4]')


def _setup(tmp: Path) -> None:
    a = bulk("Ar", "fcc", a=5.30, cubic=True)
    a.set_cell(a.cell @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]]), scale_atoms=True)  # triclinic unit
    ase.io.write(tmp / "ar.extxyz", a)


def _run(tmp: Path, n: int, name: str, integrator="nve", steps=40, shards=True, extra="") -> None:
    (tmp / f"{name}.toml").write_text(RUN.format(integrator=integrator, steps=steps, out=name, shards=str(shards).lower(), extra=extra))
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-W", "ignore", "-m", "allegro_fm_md.cli", "run", str(tmp / f"{name}.toml")]
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _final(tmp: Path, name: str):
    from allegro_fm_md.restart import read_restart_file

    path = tmp / name / ("restart.shards" if (tmp / name / "restart.shards").exists() else "restart.npz")
    r = read_restart_file(path)
    order = np.argsort(r.arrays["ids"])
    return {k: r.arrays[k][order] for k in ("ids", "positions", "velocities")}, r.arrays["cell"], r.meta["step"]


def _same(a, b, cell):
    assert np.array_equal(a["ids"], b["ids"])
    d = a["positions"] - b["positions"]
    frac = d @ np.linalg.inv(cell)
    d = (frac - np.round(frac)) @ cell
    assert np.abs(d).max() < 1e-9 and np.abs(a["velocities"] - b["velocities"]).max() < 1e-9


@pytest.mark.parametrize("integrator", ["nve", "langevin"])
def test_sharded_restart_written_on_4_ranks_resumes_on_2_and_8(tmp_path, integrator):
    _setup(tmp_path)
    _run(tmp_path, 1, "unbroken", integrator, 40, shards=False)
    _run(tmp_path, 4, "four", integrator, 20)
    ref, cell, step = _final(tmp_path, "unbroken")
    assert step == 40 and sorted(p.name for p in (tmp_path / "four" / "restart.shards").iterdir())[-1] == "rank-00003.npz"
    for n in (2, 8):
        _run(tmp_path, n, f"resumed{n}", integrator, 40, extra='restart_from = "four/restart.shards"')
        got, _, step = _final(tmp_path, f"resumed{n}")
        assert step == 40
        _same(got, ref, cell)


def test_per_rank_setup_and_merged_trajectory_equal_one_rank(tmp_path):
    """2 ranks, each building its own atoms and writing its own shard: the merged trajectory equals the 1-rank one
    frame by frame; ase and MDAnalysis read it."""
    from allegro_fm_md.cli import main

    _setup(tmp_path)
    _run(tmp_path, 1, "one", shards=False)
    _run(tmp_path, 2, "two")
    assert main(["merge", str(tmp_path / "two" / "trajectory.shards"), "-o", str(tmp_path / "merged.h5md")]) == 0
    from allegro_fm_md import read_frames

    ours, theirs = read_frames(tmp_path / "merged.h5md"), read_frames(tmp_path / "one" / "trajectory.h5md")
    assert len(ours) == len(theirs) == 3 and [f.info["step"] for f in ours] == [0, 20, 40]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)
        assert list(a.numbers) == list(b.numbers) and len(a) == 256
    mda = pytest.importorskip("MDAnalysis")
    u = mda.Universe.empty(256, trajectory=True)
    u.load_new(str(tmp_path / "merged.h5md"))
    assert len(u.trajectory) == 3
    np.testing.assert_allclose(u.trajectory[2].positions, ours[2].positions, atol=1e-4)
