"""Output-folder discipline: one run per folder (lock), resumed files cut back to the restart's step, partial
trailing rows/frames dropped, nothing created before the input is valid."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
from allegro_fm_md import MDInputError, RunFile, run
from allegro_fm_md.outputs import LOCK_NAME, RunLock, cut_back
from ase import units
from ase.build import bulk
from md_testutil import argon_toml

ARGON = argon_toml(
    """integrator = "nve"
dt_fs = 2.0
steps = {steps}
temperature_K = 60""",
    """dir = "out"
thermo_every = 2
trajectory_every = 2
restart_every = {restart_every}
{extra}""",
)


def _argon(tmp_path, steps=12, restart_every=4, extra=""):
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    ase.io.write(tmp_path / "ar.extxyz", a)
    (tmp_path / "run.toml").write_text(
        ARGON.format(steps=steps, restart_every=restart_every, extra=extra)
    )
    return RunFile.load(tmp_path / "run.toml")


def _h5_steps(path):
    with h5py.File(path, "r") as h5:
        return h5["particles/all/position/step"][()], h5["observables/temperature/step"][()]


def _thermo_steps(path):
    return [
        int(line.split()[0])
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    ]


def _xyz_steps(path):
    return [a.info["step"] for a in ase.io.read(path, ":")]


def test_a_second_run_into_a_live_folder_is_refused_also_with_overwrite(tmp_path):
    rf = _argon(tmp_path)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK_NAME).write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"})
        )
        (out / "thermo.log").write_text("# step\n0 1\n")
        for overwrite in (False, True):
            with pytest.raises(MDInputError, match=rf"in use by another run \(pid {holder.pid} on"):
                run(rf, progress=False, overwrite=overwrite)
        assert (
            out / "thermo.log"
        ).read_text() == "# step\n0 1\n"  # the live run's files are untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its stale lock is taken over, and --overwrite replaces the old files
    sim = run(rf, progress=False, overwrite=True)
    assert sim.state.step == 12 and not (out / LOCK_NAME).exists()
    assert _thermo_steps(out / "thermo.log") == list(range(0, 13, 2))


def test_lock_is_exclusive_and_released(tmp_path):
    a = RunLock(tmp_path / "o").acquire()
    with pytest.raises(MDInputError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "o").acquire()
    a.release()
    with RunLock(tmp_path / "o"):
        assert (tmp_path / "o" / LOCK_NAME).exists()
    assert not (tmp_path / "o" / LOCK_NAME).exists()


def test_nothing_is_created_before_the_input_is_valid(tmp_path):
    rf = _argon(tmp_path)
    (tmp_path / "ar.extxyz").write_text("3\nnot a frame\nAr 0 0\n")
    with pytest.raises(MDInputError, match="ar.extxyz"):
        run(rf, progress=False)
    assert not (tmp_path / "out").exists()


def test_resume_after_a_kill_cuts_files_back_to_the_restart(tmp_path):
    """A run killed after its last restart (step 8) wrote rows and frames up to step 12 and half a frame; resumed
    from restart.npz, every file has strictly increasing steps and the resumed run equals an unbroken one."""
    run(_argon(tmp_path, steps=12, restart_every=8), progress=False)
    out = tmp_path / "out"
    unbroken = (out / "thermo.log").read_text().splitlines()
    # the killed run's last restart is that of step 8: the same deterministic run stopped at step 8 wrote it
    (tmp_path / "b").mkdir()
    assert run(_argon(tmp_path / "b", steps=8, restart_every=8), progress=False).state.step == 8
    os.replace(tmp_path / "b" / "out" / "restart.npz", out / "restart.npz")
    os.replace(
        tmp_path / "b" / "out" / "run.json", out / "run.json"
    )  # the restart and the folder are one run's (identity.py)
    with open(out / "trajectory.extxyz", "a") as fh:
        fh.write(
            '108\nLattice="1 0 0 0 1 0 0 0 1" step=14\nAr 0 0 0\n'
        )  # a frame cut short by a kill
    with open(out / "thermo.log", "a") as fh:
        fh.write("14 28.0 61.3")  # a row cut short
    assert _thermo_steps(out / "thermo.log")[-3:] == [10, 12, 14]  # what the killed run left
    rf2 = _argon(tmp_path, steps=12, restart_every=8, extra='restart_from = "out/restart.npz"')
    sim = run(rf2, progress=False)
    assert sim.state.step == 12
    t = _thermo_steps(out / "thermo.log")
    assert t == sorted(set(t)) == list(range(0, 13, 2))
    pos_steps, obs_steps = _h5_steps(out / "trajectory.h5md")
    assert list(pos_steps) == list(obs_steps) == list(range(0, 13, 2))
    assert _xyz_steps(out / "trajectory.extxyz") == list(range(0, 13, 2))
    # the resumed run is the unbroken run (NVE, deterministic): the same rows but for the speed column
    resumed = (out / "thermo.log").read_text().splitlines()
    assert [r.split()[:-1] for r in resumed] == [r.split()[:-1] for r in unbroken]


def test_cut_back_names_what_it_removed(tmp_path):
    (tmp_path / "thermo.log").write_text("# step x\n0 1\n2 1\n4 1\n6 1")
    frames = []
    for s in (0, 2, 4, 6):
        a = bulk("Ar", "fcc", a=5.26)
        a.info["step"] = s
        frames.append(a)
    ase.io.write(tmp_path / "trajectory.extxyz", frames)
    r = cut_back(tmp_path, 2)
    assert (r.thermo_rows, r.extxyz_frames, r.partial) == (1, 2, ("thermo.log",))
    assert _thermo_steps(tmp_path / "thermo.log") == [0, 2]
    assert _xyz_steps(tmp_path / "trajectory.extxyz") == [0, 2]
    assert str(cut_back(tmp_path, 2)) == "nothing"
    np.testing.assert_allclose(
        ase.io.read(tmp_path / "trajectory.extxyz", "-1").positions, frames[1].positions
    )


def test_mdanalysis_and_ase_read_the_trajectories(tmp_path):
    """MDAnalysis opens trajectory.h5md (detected by its suffix) with our positions, velocities (A/fs), forces (eV/A
    read back through its kJ/mol units), box, and periodic distances equal to ase's to 1e-6 A, also for a triclinic
    cell given in an orientation MD codes do not use (the engine turns it to a-along-x, b-in-xy first); the extxyz
    frames carry energy and stress."""
    mda = pytest.importorskip("MDAnalysis")
    from ase.geometry import cellpar_to_cell
    from MDAnalysis.lib.distances import distance_array

    a = bulk("Ar", "fcc", a=5.26) * (4, 4, 4)  # triclinic, a not along x
    a.rotate(35, "z", rotate_cell=True)
    a.rotate(20, "x", rotate_cell=True)
    ase.io.write(tmp_path / "ar.extxyz", a)
    (tmp_path / "run.toml").write_text(
        ARGON.format(steps=6, restart_every=100, extra="").replace("cutoff = 6.5", "cutoff = 5.0")
    )
    run(RunFile.load(tmp_path / "run.toml"), progress=False)
    xyz = ase.io.read(tmp_path / "out" / "trajectory.extxyz", ":")
    u = mda.Universe.empty(len(a), trajectory=True)
    u.load_new(str(tmp_path / "out" / "trajectory.h5md"))
    assert len(u.trajectory) == len(xyz) == 4 and len(a) == 64
    worst = rounding = 0.0
    for ts, frame in zip(u.trajectory, xyz, strict=True):
        np.testing.assert_allclose(ts.positions, frame.positions, atol=1e-5)
        np.testing.assert_allclose(
            ts.velocities / 1000.0, frame.get_velocities() * units.fs, atol=1e-5
        )  # MDA: A/ps
        np.testing.assert_allclose(
            ts.forces * units.kJ / units.mol, frame.get_forces(), atol=1e-5
        )  # MDA: kJ/(mol A)
        np.testing.assert_allclose(ts.dimensions[:3], frame.cell.lengths(), atol=1e-5)
        np.testing.assert_allclose(ts.dimensions[3:], frame.cell.angles(), atol=1e-4)
        same = frame.copy()  # ase on the positions MDAnalysis holds (float32): the periodic geometry alone is compared
        same.positions = ts.positions.astype(np.float64)
        same.set_cell(
            cellpar_to_cell(ts.dimensions.astype(np.float64)), scale_atoms=False
        )  # its box, float32 too
        theirs = distance_array(ts.positions, ts.positions, box=ts.dimensions)
        worst = max(worst, float(np.abs(same.get_all_distances(mic=True) - theirs).max()))
        rounding = max(rounding, float(np.abs(frame.get_all_distances(mic=True) - theirs).max()))
        assert np.isfinite(frame.get_potential_energy()) and frame.get_stress().shape == (6,)
    print(
        f"MDAnalysis vs ase periodic distances: {worst:.1e} A on the same positions, {rounding:.1e} A vs our float64 ones"
    )
    # MDAnalysis holds positions and box vectors in float32: its own floor, 2.8e-6 A for this cell even when given float64
    # positions and box directly (measured 2026-11-30); a wrong orientation would be off by Angstroms (6 A here)
    assert worst < 5e-6 and rounding < 5e-6
    assert np.allclose(np.triu(xyz[0].cell[:], 1), 0.0)  # turned to a-along-x, b-in-xy
    # distances are those of the input structure (the turn is a rotation)
    np.testing.assert_allclose(
        np.sort(xyz[0].get_all_distances(mic=True).ravel())[:200],
        np.sort(a.get_all_distances(mic=True).ravel())[:200],
        atol=1e-3,
    )
    # the documented recipe (docs/packages/allegro-fm-md.md), run as written on this run's file: every atom has its element, the frames are ours
    readme = (Path(__file__).parents[3] / "docs" / "packages" / "allegro-fm-md.md").read_text()
    recipe = readme.split("## Opening the outputs")[1].split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(
        recipe.replace("runs/t11-300K/trajectory.h5md", str(tmp_path / "out" / "trajectory.h5md")),
        scope,
    )
    assert len(scope["u"].trajectory) == 4 and len(scope["silicon"]) == 0
    assert list(scope["u"].atoms.elements) == a.get_chemical_symbols()


def test_a_full_disk_ends_the_run_with_exit_1_naming_the_file(tmp_path, monkeypatch, capsys):
    """The disk fills at the trajectory frame of step 6 (os.statvfs reports 0.5 MB free from then on): exit 1, one line
    naming trajectory.h5md, the frames before it readable, the restart of step 4 intact, the lock released.
    (Checked for real on a 1.6 MB tmpfs: the same message at frame 18, the files before it readable.)"""
    from allegro_fm_md.cli import main

    _argon(tmp_path, steps=20, restart_every=4)
    real = os.statvfs
    calls = {"n": 0}

    class Full:
        f_bavail, f_frsize = 128, 4096  # 0.5 MB

    def statvfs(path):
        calls["n"] += 1
        return Full() if calls["n"] > 3 else real(path)  # frames of steps 0, 2, 4 fit

    monkeypatch.setattr(os, "statvfs", statvfs)
    code = main(["run", str(tmp_path / "run.toml")])
    err = capsys.readouterr().err
    assert (
        code == 1
        and "no space left for frame 6" in err
        and "trajectory.h5md" in err
        and "Traceback" not in err
    ), err
    monkeypatch.setattr(os, "statvfs", real)
    steps, _ = _h5_steps(tmp_path / "out" / "trajectory.h5md")
    assert list(steps) == [0, 2, 4]
    from allegro_fm_md.restart import read_restart_file

    assert int(read_restart_file(tmp_path / "out" / "restart.npz").meta["step"]) == 4
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_sharded_resume_cuts_the_shards_back_and_merges_in_order(tmp_path):
    """The kill-and-resume test with [output] shards = true (one rank): the trajectory shard is cut back to the
    restart's step, and the merged trajectory has strictly increasing steps and the unbroken run's positions."""
    from allegro_fm_md.trajectory import merge_shards

    def runfile(base, steps, extra=""):
        return _argon(base, steps=steps, restart_every=8, extra="shards = true\n" + extra)

    run(runfile(tmp_path, 12), progress=False)
    (tmp_path / "b").mkdir()
    run(runfile(tmp_path / "b", 8), progress=False)  # the same run stopped at its step-8 restart
    shutil.rmtree(tmp_path / "out" / "restart.shards")
    shutil.copytree(tmp_path / "b" / "out" / "restart.shards", tmp_path / "out" / "restart.shards")
    shutil.copy(
        tmp_path / "b" / "out" / "run.json", tmp_path / "out" / "run.json"
    )  # one run's restart and folder
    run(runfile(tmp_path, 12, 'restart_from = "out/restart.shards"'), progress=False)
    n, atoms = merge_shards(tmp_path / "out" / "trajectory.shards", tmp_path / "m.h5md")
    steps, _ = _h5_steps(tmp_path / "m.h5md")
    assert n == 7 and atoms == 108 and list(steps) == list(range(0, 13, 2))
    assert _thermo_steps(tmp_path / "out" / "thermo.log") == list(range(0, 13, 2))


def test_a_run_logged_to_a_file_has_no_progress_redraws(tmp_path):
    """A batch job's log (stderr not a terminal): the progress of a run of >= 100 steps is a few plain lines, never a
    tqdm bar's carriage-return redraws (the demo's log had 402)."""
    _argon(tmp_path, steps=120, restart_every=60)
    with open(tmp_path / "job.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "allegro_fm_md.cli", "run", "run.toml"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
    text = (tmp_path / "job.log").read_text()
    assert "\r" not in text and "\x1b[" not in text
    lines = [line for line in text.splitlines() if line.startswith("md: ")]
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("md: 120/120 step (100 %)")
    assert "done: step 120" in text


def test_an_empty_or_garbage_lock_is_taken_over_once_it_is_stale(tmp_path, caplog):
    """An unreadable lock file (a crash between creating and writing it) no longer blocks the folder for ever: taken over
    with a warning once older than STALE_UNREADABLE_S; a fresh one (a run still starting) is respected."""
    from allegro_fm_md.outputs import STALE_UNREADABLE_S

    rf = _argon(tmp_path, steps=4)
    out = tmp_path / "out"
    out.mkdir()
    for content in (b"", b"\x00garbage{"):
        (out / LOCK_NAME).write_bytes(content)
        with pytest.raises(MDInputError, match="in use by another run"):
            run(rf, progress=False)
        old = time.time() - STALE_UNREADABLE_S - 5
        os.utime(out / LOCK_NAME, (old, old))
        assert run(rf, progress=False, overwrite=True).state.step == 4
        assert "taking over an unreadable lock" in caplog.text and not (out / LOCK_NAME).exists()
