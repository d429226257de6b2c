"""Scaling measurements of the engine: timed NVE steps on one rank or all ranks of MPI, a ping-pong for
latency/bandwidth, and a communication/computation model of weak-scaling efficiency at many ranks.

Under MPI, as a worker (rank 0 writes JSON):
    mpiexec -n 2 allegro-fm-md scale STRUCTURE --reps 4 2 1 --steps 60 --model allegro-fm-mini -o out.json
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from tea_align.files import write_text_atomic

from .comm import node_local_rank, world
from .forces import DistributedForceEvaluator
from .integrators import VelocityVerlet
from .potentials import make_potential
from .runfile import PotentialSpec
from .state import State

__all__ = [
    "TimedPotential",
    "time_engine",
    "pingpong",
    "project_weak_scaling",
    "mpiexec_path",
    "mpi_command",
    "scale_worker",
]


class TimedPotential:
    """A Potential wrapper that accumulates the wall time of ``compute`` (s) and its calls."""

    def __init__(self, pot):
        self.pot, self.seconds, self.calls = pot, 0.0, 0
        self.cutoff, self.species = pot.cutoff, pot.species

    def types_of(self, symbols):
        return self.pot.types_of(symbols)

    def compute(self, *args, **kw):
        t = time.perf_counter()
        r = self.pot.compute(*args, **kw)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return r


def _thermalized(atoms, temperature_K: float = 300.0, seed: int = 0):
    a = atoms.copy()
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(units.kB * temperature_K / a.get_masses()[:, None])
    a.set_velocities(v - v.mean(axis=0))
    return a


def time_engine(
    atoms, potential, steps: int, comm=None, dt_fs: float = 0.5, skin: float = 1.0, warmup: int = 3
) -> dict:
    """Time ``steps`` NVE steps of ``atoms`` (ase.Atoms, given whole on every rank; velocities at 300 K from a
    fixed seed) on one rank or all ranks of ``comm``. Returns atoms, ranks, wall_s, step_s, atom_steps_per_s,
    model_s (mean over ranks of the time inside ``potential.compute``), local_atoms and ghost_atoms (this rank)."""
    comm = comm or world()
    a = _thermalized(atoms)
    pot = TimedPotential(potential)
    keep = slice(None) if comm.rank == 0 else slice(0, 0)
    st = State(
        a.positions[keep].copy(),
        a.get_velocities()[keep].copy(),
        a.get_masses()[keep].copy(),
        np.array(a.cell),
        a.pbc.copy(),
        ids=np.arange(len(a))[keep],
        types=pot.types_of(a.get_chemical_symbols())[keep],
    )
    ev = DistributedForceEvaluator(pot, comm, st.cell, skin=skin)
    ev.update(st)
    integ = VelocityVerlet(dt_fs)
    for _ in range(warmup):
        integ.step(st, ev)
    pot.seconds, pot.calls = 0.0, 0
    comm.Barrier()
    t = time.perf_counter()
    for _ in range(steps):
        integ.step(st, ev)
    comm.Barrier()
    wall = time.perf_counter() - t
    n_ghost = len(ev._allpos) - len(st.positions)
    return {
        "atoms": len(a),
        "ranks": comm.size,
        "wall_s": wall,
        "atom_steps_per_s": len(a) * steps / wall,
        "model_s": comm.allreduce(pot.seconds) / comm.size,
        "local_atoms": len(st.positions),
        "ghost_atoms": n_ghost,
        "step_s": wall / steps,
    }


def pingpong(comm, sizes=(8, 1 << 16, 1 << 20), reps: int = 50) -> dict[int, float]:
    """Half round-trip time (s) of mpi4py Send/Recv between ranks 0 and 1 for message sizes in bytes."""
    out = {}
    for n in sizes:
        buf = np.zeros(n // 8)
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(reps):
            if comm.rank == 0:
                comm.Send(buf, dest=1)
                comm.Recv(buf, source=1)
            elif comm.rank == 1:
                comm.Recv(buf, source=0)
                comm.Send(buf, dest=0)
        out[n] = (time.perf_counter() - t) / (2 * reps)
    return out


def project_weak_scaling(
    t1: float, t2: float, ghosts: float, latency: float, bandwidth: float, ranks
) -> list[tuple[int, float]]:
    """Weak-scaling efficiency t1 / t(P) (a model, not a measurement), built on the measured 1-rank and 2-rank
    step times (s); the 2-rank step already holds the ghost work and one direction of off-rank halo swaps.

    From P = 2 to a full 3-D grid, 2 more directions go off-rank: each costs, per step, 2 forward swaps
    (positions) and 2 reverse swaps (forces) of ghosts/6 atoms x 24 B, i.e. 4 x (latency + bytes / bandwidth
    (B/s)). Allreduces (energy, virial, rebuild check) add 3 x latency x log2(P / 2). No contention is modelled.
    """
    swap = latency + 24.0 * ghosts / 6.0 / bandwidth
    out = []
    for p in ranks:
        if p == 1:
            out.append((1, 1.0))
            continue
        dims_off = 1 if p == 2 else (2 if p < 8 else 3)
        t = t2 + 4 * (dims_off - 1) * swap + 3 * latency * np.log2(p / 2)
        out.append((int(p), float(t1 / t)))
    return out


def mpiexec_path() -> str | None:
    """The mpiexec of this Python environment (mpich wheel) if any, else the one on PATH."""
    return shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def mpi_command(ranks: int, *args: str) -> list[str]:
    """The command line that runs ``allegro-fm-md ARGS...`` on ``ranks`` MPI ranks with this Python (for subprocess),
    warnings off; RuntimeError when no mpiexec is found."""
    mpiexec = mpiexec_path()
    if mpiexec is None:
        raise RuntimeError("no mpiexec: pip install mpich (or load your MPI module)")
    return [
        mpiexec,
        "-n",
        str(ranks),
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "allegro_fm_md.cli",
        *map(str, args),
    ]


def scale_worker(
    structure: str,
    reps=(1, 1, 1),
    steps: int = 60,
    model: str = "allegro-fm-mini",
    threads: int = 1,
    output: str = "scaling.json",
) -> dict:
    """``allegro-fm-md scale``: time the engine on all ranks of MPI (plus a ping-pong when there are 2+ ranks);
    rank 0 writes the JSON (atom-steps/s, step and model seconds, halo sizes) atomically to ``output``."""
    import torch  # lazy: only the Allegro-FM kind runs on torch; its thread count is set here

    torch.set_num_threads(threads)
    comm = world()
    atoms = ase.io.read(structure) * tuple(reps)
    pot = make_potential(
        PotentialSpec(kind="allegro", model=model),
        atoms.get_chemical_symbols(),
        *node_local_rank(comm),
    )
    r = time_engine(atoms, pot, steps, comm)
    ghosts = comm.allgather(r["ghost_atoms"])
    if comm.size > 1:
        r["pingpong_s"] = {str(k): v for k, v in pingpong(comm).items()}
    r["ghosts_per_rank"] = ghosts
    if comm.rank == 0:
        write_text_atomic(output, json.dumps(r))
    return r
