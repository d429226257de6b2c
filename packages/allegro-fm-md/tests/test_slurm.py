"""A real single-node Slurm (Debian's slurm-wlm and munge, started here as root) runs the project's CPU job script as a
job chain: submit, ``scancel --signal=TERM`` mid-run, resubmit, resubmit again after the end. The merged sharded
trajectory equals an unbroken 2-rank run's (float64 LJ; within 1e-9 A: the resumed run rebuilds its lists at the stop
step) with strictly increasing steps, each once. Skipped, naming why, where Slurm cannot start (not root, no
slurm-wlm: .ci/run installs it with apt-get where it can)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md import mpiexec_path, read_frames
from allegro_fm_md.cli import main
from allegro_fm_md.scaling import mpi_command
from ase.build import bulk
from md_testutil import argon_toml

SCRIPT = Path(__file__).parents[3] / "examples" / "jobs" / "slurm-cpu.sh"
MPIEXEC = mpiexec_path()


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd needs root"
    missing = [
        b
        for b in ("slurmctld", "slurmd", "munged", "sbatch", "scancel", "squeue")
        if shutil.which(b) is None
    ]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if MPIEXEC is None:
        return "needs mpi4py and mpich"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")

CONF = """ClusterName=afmtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPort={port}
SlurmdPort={port2}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A private single-node Slurm: its own config, state and ports (SLURM_CONF), munged started if not running."""
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "-c", "-f"], check=True)
        for p in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(p).mkdir(parents=True, exist_ok=True)
            shutil.chown(p, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        started = subprocess.run(["munged", "--force"], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"munged did not start here: {started.stderr.strip()[-300:]}")
    host = socket.gethostname()
    conf = d / "slurm.conf"
    conf.write_text(
        CONF.format(host=host, d=d, port=_free_port(), port2=_free_port(), cpus=os.cpu_count() or 2)
    )
    env = dict(os.environ, SLURM_CONF=str(conf))
    for daemon in (["slurmctld", "-i"], ["slurmd"]):
        started = subprocess.run(daemon, env=env, capture_output=True, text=True)
        if (
            started.returncode != 0
        ):  # a machine where Slurm cannot run (no cgroups, no privileges): say why, skip
            pytest.skip(
                f"{daemon[0]} did not start here: {(started.stderr or started.stdout).strip()[-300:]}"
            )
    t0 = time.time()
    while (
        "idle"
        not in subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
        ).stdout
    ):
        if time.time() - t0 > 60:
            log = (
                (d / "slurmd.log").read_text()[-300:]
                if (d / "slurmd.log").exists()
                else "no slurmd.log"
            )
            pytest.skip(f"the Slurm node did not become idle within 60 s here: {log}")
        time.sleep(0.5)
    yield env
    for pidfile in ("slurmd.pid", "slurmctld.pid"):
        try:
            os.kill(int((d / pidfile).read_text()), 15)
        except (OSError, ValueError):
            pass


def _setup(folder: Path, steps: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "ar.extxyz", bulk("Ar", "fcc", a=5.26, cubic=True))
    f = folder / "run.toml"
    f.write_text(
        argon_toml(
            f'integrator = "nve"\ndt_fs = 2.0\nsteps = {steps}\ntemperature_K = 60',
            'dir = "out"\nthermo_every = 50\ntrajectory_every = 50\nrestart_every = 1000\nshards = true',
            system='structure = "ar.extxyz"\nreplicate = [6, 4, 4]',
        )
    )
    return f


def _submit(env: dict, folder: Path, n: int) -> str:
    job_env = dict(
        env,
        AFM_CHAIN="manual",
        SRUN_MPI="pmi2",
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--no-requeue",
            "-n",
            "2",
            "-o",
            str(folder / f"job{n}.log"),
            "-D",
            str(folder),
            str(SCRIPT),
            "run.toml",
        ],
        env=job_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split(";")[0]


def _wait_done(env: dict, job: str, timeout: float = 240.0) -> None:
    t0 = time.time()
    while (
        job
        in subprocess.run(
            ["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True
        ).stdout.split()
    ):
        assert time.time() - t0 < timeout, f"job {job} still queued or running after {timeout} s"
        time.sleep(0.5)


def _last_step(folder: Path) -> int:
    log = folder / "out" / "thermo.log"
    rows = (
        [line for line in log.read_text().splitlines() if line and not line.startswith("#")]
        if log.exists()
        else []
    )
    return int(rows[-1].split()[0]) if rows else -1


def test_the_job_script_chains_under_a_real_slurm(slurm, tmp_path):
    steps = 800
    whole = _setup(tmp_path / "whole", steps)
    subprocess.run(
        mpi_command(2, "run", str(whole), "-q"),
        cwd=whole.parent,
        check=True,
        capture_output=True,
    )
    chain = _setup(tmp_path / "chain", steps).parent
    job = _submit(slurm, chain, 1)
    t0 = time.time()
    while _last_step(chain) < 150:
        assert time.time() - t0 < 180, (
            (chain / "job1.log").read_text() if (chain / "job1.log").exists() else "no log"
        )
        time.sleep(0.2)
    subprocess.run(
        ["scancel", "--signal=TERM", job], env=slurm, check=True
    )  # what Slurm sends at the wall time
    _wait_done(slurm, job)
    log1 = (chain / "job1.log").read_text()
    assert "stopped at step" in log1 and "restart written" in log1, log1[-3000:]
    stop = int(log1.split("stopped at step ")[1].split()[0])
    assert 150 <= stop < steps
    job = _submit(slurm, chain, 2)  # the resubmission continues from the restart
    _wait_done(slurm, job)
    assert _last_step(chain) == steps, (chain / "job2.log").read_text()[-3000:]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (chain / "out").rglob("*"))
    job = _submit(slurm, chain, 3)  # resubmitted after the end: nothing to do, nothing touched
    _wait_done(slurm, job)
    assert f"nothing to do: step {steps} of {steps}" in (chain / "job3.log").read_text()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (chain / "out").rglob("*")) == before
    for f in (chain, whole.parent):
        assert (
            main(
                ["merge", str(f / "out" / "trajectory.shards"), "-o", str(f / "merged.h5md"), "-q"]
            )
            == 0
        )
    ours, ref = read_frames(chain / "merged.h5md"), read_frames(whole.parent / "merged.h5md")
    steps_ours = [a.info["step"] for a in ours]
    assert steps_ours == [a.info["step"] for a in ref] == list(range(0, steps + 1, 50))
    cell = np.array(ref[0].cell)
    for a, b in zip(ours, ref, strict=True):
        frac = (a.positions - b.positions) @ np.linalg.inv(cell)
        assert np.abs((frac - np.round(frac)) @ cell).max() < 1e-9
