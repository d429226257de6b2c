"""Job chains under a batch scheduler, with the signals sent by hand: SIGTERM (or SIGUSR1) on any rank stops every rank
at the end of a step with a restart at that step and exit 75; ``--resume`` continues from it; resubmitting a finished
run says "nothing to do" and touches nothing; the wall-time margin stops the same way. The chained trajectory has
strictly increasing steps and ends where an unbroken run ends (float64 LJ; the resumed run rebuilds its neighbour lists
at the stop step, which the unbroken run does not, so positions agree to round-off, < 1e-9 A, not bit for bit)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
from allegro_fm_md import RunFile, mpiexec_path, run
from allegro_fm_md.cli import main
from allegro_fm_md.jobcontrol import RunStopped, job_end_time
from ase.build import bulk
from md_testutil import argon_toml

MPIEXEC = mpiexec_path()


def _setup(folder: Path, steps: int, extra_run: str = "", trajectory_every: int = 50) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    ase.io.write(folder / "ar.extxyz", a)
    f = folder / "run.toml"
    f.write_text(
        argon_toml(
            f'integrator = "nve"\ndt_fs = 2.0\nsteps = {steps}\ntemperature_K = 60\n{extra_run}',
            f'dir = "out"\nthermo_every = 50\ntrajectory_every = {trajectory_every}\nrestart_every = 1000',
        )
    )
    return f


def _cli(folder: Path, *args: str, ranks: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-W", "ignore", "-m", "allegro_fm_md.cli", "run", "run.toml", *args]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return subprocess.Popen(
        cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(folder: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    log = folder / "out" / "thermo.log"
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        rows = (
            [
                line.split()
                for line in log.read_text().splitlines()
                if line and not line.startswith("#")
            ]
            if log.exists()
            else []
        )
        if rows and int(rows[-1][0]) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {log} within {timeout} s")


def _rank_pids(folder: Path) -> list[int]:
    """The pids of the python processes running this folder's run (the ranks), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                args = (d / "cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(d / "cwd")
            except OSError:
                continue
            if (
                b"allegro_fm_md.cli" in args
                and Path(sys.executable).name.encode() in Path(args[0].decode()).name.encode()
                and cwd == str(folder)
            ):
                out.append(int(d.name))
    return sorted(out)


def _digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _final_positions(folder: Path) -> np.ndarray:
    with np.load(folder / "out" / "restart.npz") as z:
        return z["positions"][np.argsort(z["ids"])]


@pytest.mark.parametrize(
    "ranks, sig",
    [
        (1, signal.SIGTERM),
        pytest.param(
            2, signal.SIGUSR1, marks=pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
        ),
    ],
)
def test_a_signal_stops_cleanly_and_the_chain_equals_an_unbroken_run(tmp_path, ranks, sig):
    steps = 1000
    whole = tmp_path / "whole"
    assert main(["run", str(_setup(whole, steps)), "-q"]) == 0
    chain = tmp_path / "chain"
    _setup(chain, steps)
    p = _cli(chain, "--resume", ranks=ranks)
    _wait_for_step(chain, 300, p)
    pids = _rank_pids(chain)
    assert len(pids) == ranks, pids
    os.kill(
        pids[-1], sig
    )  # one rank only: the scheduler's signal may reach the ranks at different steps
    out, err = p.communicate(timeout=60)
    assert p.returncode == 75, (out, err)
    assert "restart written" in err and err.count("stopped at step") == 1, err
    stop = int(err.split("stopped at step ")[1].split()[0])
    assert 300 <= stop < steps
    assert not (chain / "out" / ".allegro-fm-md.lock").exists()
    with np.load(chain / "out" / "restart.npz") as z:
        import json

        assert json.loads(str(z["meta"]))["step"] == stop
    p = _cli(chain, "--resume", ranks=ranks)  # the resubmitted job
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, (out, err)
    before = _digest(chain)
    p = _cli(
        chain, "--resume", ranks=ranks
    )  # resubmitted again after the end: nothing to do, nothing touched
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and f"nothing to do: step {steps} of {steps}" in out, (out, err)
    assert _digest(chain) == before
    d = _final_positions(chain) - _final_positions(whole)
    edge = bulk("Ar", "fcc", a=5.26, cubic=True).cell[0, 0] * 3
    assert np.abs(d - np.round(d / edge) * edge).max() < 1e-9
    with (
        h5py.File(chain / "out" / "trajectory.h5md") as a,
        h5py.File(whole / "out" / "trajectory.h5md") as b,
    ):
        sa, sb = a["particles/all/position/step"][()], b["particles/all/position/step"][()]
        assert (np.diff(sa) > 0).all() and np.array_equal(sa, sb)
        d = a["particles/all/position/value"][()] - b["particles/all/position/value"][()]
        edge = (
            bulk("Ar", "fcc", a=5.26, cubic=True).cell[0, 0] * 3
        )  # cubic box: positions are wrapped at list rebuilds,
        assert (
            np.abs(d - np.round(d / edge) * edge).max() < 1e-9
        )  # which the two runs do at different steps
    ta = np.loadtxt(chain / "out" / "thermo.log")[:, 0]
    assert (np.diff(ta) > 0).all() and ta[-1] == steps


def test_the_wall_time_margin_stops_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLEGRO_FM_END_TIME", str(time.time() + 3600))
    assert job_end_time() == pytest.approx(time.time() + 3600, abs=5)
    monkeypatch.setenv(
        "ALLEGRO_FM_END_TIME", str(time.time() + 30)
    )  # 30 s left, margin 60 s: stop after the first step
    rf = RunFile.load(_setup(tmp_path, 200, "walltime_margin_s = 60.0"))
    with pytest.raises(RunStopped, match="wall time") as stopped:
        run(rf, progress=False)
    assert stopped.value.step == 1
    with np.load(tmp_path / "out" / "restart.npz") as z:
        assert len(z["ids"]) == 108
    assert not (tmp_path / "out" / ".allegro-fm-md.lock").exists()


def test_nothing_to_do_and_ranks_are_validated(tmp_path, capsys):
    f = _setup(tmp_path, 20, trajectory_every=10)
    assert main(["run", str(f), "-q"]) == 0
    before = _digest(tmp_path)
    assert main(["run", str(f), "--resume"]) == 0
    assert "nothing to do: step 20 of 20" in capsys.readouterr().out and _digest(tmp_path) == before
    f.write_text(f.read_text().replace("steps = 20", "steps = 30"))  # raising steps extends the run
    assert main(["run", str(f), "--resume", "-q"]) == 0
    assert np.loadtxt(tmp_path / "out" / "thermo.log")[-1, 0] == 30
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["runfile_sha256"]
    assert (
        recorded == hashlib.sha256(f.read_text().encode()).hexdigest()
    )  # --resume keeps the run file's identity
    for argv, msg in (
        (["--dry-run", "--ranks", "0"], "must be >= 1"),
        (["--dry-run", "--ranks", "-2"], "must be >= 1"),
        (["--ranks", "4"], "only with --dry-run"),
    ):
        capsys.readouterr()
        assert main(["run", str(f), *argv]) == 2
        assert msg in capsys.readouterr().err


def test_a_resume_is_the_same_run_species_and_model(tmp_path, capsys):
    """A restart of another run into a folder that holds a run, a structure with another element at an atom id, and a
    changed model are refused naming both sides; allow_model_change lets the model change and thermo.log says so."""
    a, b = tmp_path / "a", tmp_path / "b"
    fa, fb = _setup(a, 20, trajectory_every=10), _setup(b, 20, trajectory_every=10)
    assert main(["run", str(fa), "-q"]) == 0 and main(["run", str(fb), "-q"]) == 0
    ida = json.loads((a / "out" / "run.json").read_text())["run_id"]
    idb = json.loads((b / "out" / "run.json").read_text())["run_id"]
    assert ida != idb
    before = _digest(b / "out")
    fb.write_text(
        fb.read_text()
        .replace("steps = 20", "steps = 40")
        .replace('dir = "out"', f'dir = "out"\nrestart_from = "{a}/out/restart.npz"')
    )
    assert main(["run", str(fb)]) == 2
    err = capsys.readouterr().err
    assert (
        f"holds run {idb}" in err
        and f"a restart of run {ida}" in err
        and _digest(b / "out") == before
    )
    # another element at an atom id (a kind that takes Ar and Kr alike, so only the identity check can refuse it)
    from allegro_fm_md import LennardJones, register_potential_kind

    register_potential_kind(
        "lj-any",
        lambda spec, symbols, device: LennardJones(
            ["Ar", "Kr"], spec.epsilon, spec.sigma, spec.cutoff
        ),
    )
    s = ase.io.read(a / "ar.extxyz")
    s.symbols[5] = "Kr"
    ase.io.write(a / "kr.extxyz", s)
    fa.write_text(
        fa.read_text()
        .replace("steps = 20", "steps = 40")
        .replace('dir = "out"', 'dir = "out"\nrestart_from = "auto"')
    )
    fk = a / "kr.toml"
    fk.write_text(
        fa.read_text().replace('kind = "lj"', 'kind = "lj-any"').replace("ar.extxyz", "kr.extxyz")
    )
    assert main(["run", str(fk)]) == 2
    assert "other elements" in capsys.readouterr().err
    fa.write_text(fa.read_text().replace("sigma = 3.4", "sigma = 3.45"))  # another model
    assert main(["run", str(fa)]) == 2
    assert "written with another model" in capsys.readouterr().err
    fa.write_text(
        fa.read_text().replace(
            'restart_from = "auto"', 'restart_from = "auto"\nallow_model_change = true'
        )
    )
    assert main(["run", str(fa), "-q"]) == 0
    log = (a / "out" / "thermo.log").read_text()
    assert "# step 20: model changed" in log and np.loadtxt(a / "out" / "thermo.log")[-1, 0] == 40
    assert (
        json.loads((a / "out" / "run.json").read_text())["run_id"] == ida
    )  # the same run, continued
