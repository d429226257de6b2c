"""Benchmark: allegro-fm-md against peers, engine overhead, weak scaling and its projection. One run, one machine.

    python packages/allegro-fm-md/benchmarks/bench_md.py [--steps 60] [--model allegro-fm-mini] [--threads 1]

Same model (the shipped Allegro-FM-mini unless --model), same system (tobermorite 11 A, 2x2x1 = 352 atoms
per rank), NVE velocity Verlet, 0.5 fs, every process with --threads torch threads:
  (b) ASE: ase.md.VelocityVerlet with the model's ASE calculator (AllegroFMCalculator, vesin lists each step);
  (c) engine overhead: the fraction of our step time spent outside ``potential.compute``;
  (d) weak scaling 1 -> 2 ranks (mpiexec -n 2, 2x2x1 cells per rank), efficiency t1 / t2, and a
      communication/computation model built on the measured 2-rank step, the measured halo size, message
      latency and bandwidth (mpi4py ping-pong in the same run), projected to 10^2..10^5 ranks (see
      ``projection``). It is a model, not a measurement: same work per rank, no network contention.
  (a) LAMMPS with the same model through nequip's ML-IAP artefact is not measured yet (not set up).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
STRUCTURE = ROOT / "examples" / "tobermorite-11a" / "tobermorite-11A.extxyz"


def _system(reps):
    import ase.io

    a = ase.io.read(STRUCTURE) * reps
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(8.617e-5 * 300 / a.get_masses()[:, None])
    a.set_velocities(v - v.mean(axis=0))
    return a


class Timed:
    """A potential wrapper that accumulates the wall time of ``compute`` (s)."""

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


def engine_run(model: str, reps, steps: int, comm=None) -> dict:
    """Our engine (one rank or all ranks of ``comm``): atom-steps/s, model time fraction, halo sizes."""
    from allegro_fm_md.comm import world
    from allegro_fm_md.forces import DistributedForceEvaluator
    from allegro_fm_md.integrators import State, VelocityVerlet
    from allegro_fm_model import load_potential

    comm = comm or world()
    a = _system(reps)
    pot = Timed(load_potential(model))
    keep = slice(None) if comm.rank == 0 else slice(0, 0)
    st = State(a.positions[keep].copy(), a.get_velocities()[keep].copy(), a.get_masses()[keep].copy(), np.array(a.cell),
               a.pbc.copy(), ids=np.arange(len(a))[keep], types=pot.types_of(a.get_chemical_symbols())[keep])
    ev = DistributedForceEvaluator(pot, comm, st.cell, skin=1.0)
    ev.update(st)
    integ = VelocityVerlet(0.5)
    for _ in range(3):  # warm-up
        integ.step(st, ev)
    pot.seconds, pot.calls = 0.0, 0
    if hasattr(comm, "Barrier"):
        comm.Barrier()
    t = time.perf_counter()
    for _ in range(steps):
        integ.step(st, ev)
    if hasattr(comm, "Barrier"):
        comm.Barrier()
    wall = time.perf_counter() - t
    n_ghost = len(ev._allpos) - len(st.positions)
    return {"atoms": len(a), "ranks": comm.size, "wall_s": wall, "atom_steps_per_s": len(a) * steps / wall,
            "model_s": comm.allreduce(pot.seconds) / comm.size, "local_atoms": len(st.positions), "ghost_atoms": n_ghost,
            "step_s": wall / steps}


def ase_run(model: str, reps, steps: int) -> dict:
    from allegro_fm_model import AllegroFMCalculator, load_potential
    from ase import units
    from ase.md.verlet import VelocityVerlet

    a = _system(reps)
    a.calc = AllegroFMCalculator(load_potential(model))
    dyn = VelocityVerlet(a, 0.5 * units.fs)
    dyn.run(3)
    t = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t
    return {"atoms": len(a), "wall_s": wall, "atom_steps_per_s": len(a) * steps / wall}


def pingpong(comm, sizes=(8, 1 << 16, 1 << 20), reps: int = 50) -> dict:
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


def mpi_main(args) -> None:
    """Run under mpiexec: the 2-rank weak-scaling point and the ping-pong; rank 0 writes JSON."""
    import torch
    from mpi4py import MPI

    torch.set_num_threads(args.threads)
    comm = MPI.COMM_WORLD
    reps = (2 * 2, 2, 1)  # 2x2x1 cells per rank, split along x
    r = engine_run(args.model, reps, args.steps, comm)
    pp = pingpong(comm)
    ghosts = comm.gather(r["ghost_atoms"])
    if comm.rank == 0:
        r["pingpong_s"] = {str(k): v for k, v in pp.items()}
        r["ghosts_per_rank"] = ghosts
        Path(args.out).write_text(json.dumps(r))


def projection(t1: float, t2: float, ghosts: float, latency: float, bandwidth: float, ranks) -> list[tuple[int, float]]:
    """Weak-scaling efficiency t1 / t(P), built on the measured 2-rank step time t2 (s), which already holds
    the ghost work and one direction of off-rank halo swaps (a 2x1x1 grid).

    From P = 2 to a full 3-D grid, 2 more directions go off-rank: each costs, per step, 2 forward swaps
    (positions) and 2 reverse swaps (forces) of ghosts/6 atoms x 24 B, i.e. 4 x (latency + bytes / bandwidth).
    Allreduces (energy, virial, rebuild check) add 3 x latency x log2(P / 2). No contention is modelled.
    """
    swap = latency + 24.0 * ghosts / 6.0 / bandwidth
    out = []
    for p in ranks:
        if p == 1:
            out.append((1, 1.0))
            continue
        dims_off = 1 if p == 2 else (2 if p < 8 else 3)
        t = t2 + 4 * (dims_off - 1) * swap + 3 * latency * np.log2(p / 2)
        out.append((p, t1 / t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--model", default="allegro-fm-mini")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (1: one core per rank)")
    ap.add_argument("--mpi-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mpi_worker:
        mpi_main(args)
        return
    import torch
    from allegro_fm_md.comm import SerialComm

    torch.set_num_threads(args.threads)
    print(f"model {args.model}, tobermorite 11 A, {args.steps} NVE steps of 0.5 fs, {args.threads} torch thread(s) per process")
    one = engine_run(args.model, (2, 2, 1), args.steps, SerialComm())
    peer = ase_run(args.model, (2, 2, 1), args.steps)
    over = 1.0 - one["model_s"] / one["wall_s"]
    print(f"(b) allegro-fm-md, 1 rank : {one['atom_steps_per_s']:8.0f} atom-steps/s ({one['atoms']} atoms)")
    ratio = one["atom_steps_per_s"] / peer["atom_steps_per_s"]
    print(f"    ASE VelocityVerlet    : {peer['atom_steps_per_s']:8.0f} atom-steps/s  -> ratio {ratio:.2f}x")
    print(f"(c) engine overhead (time outside potential.compute): {100 * over:.1f} % of {1000 * one['step_s']:.1f} ms/step")
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if not mpiexec:
        print("(d) skipped: no mpiexec")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "two.json"
        subprocess.run([mpiexec, "-n", "2", sys.executable, "-W", "ignore", __file__, "--mpi-worker", "--out", str(out),
                        "--steps", str(args.steps), "--model", args.model, "--threads", str(args.threads)], check=True)
        two = json.loads(out.read_text())
    eff = one["step_s"] / two["step_s"]
    print(f"(d) weak scaling: 1 rank {one['atoms']} atoms {1000 * one['step_s']:.1f} ms/step; 2 ranks {two['atoms']} atoms "
          f"{1000 * two['step_s']:.1f} ms/step -> efficiency {eff:.3f} (paper, Aurora: 0.964)")
    pp = {int(k): v for k, v in two["pingpong_s"].items()}
    latency = pp[8]
    bandwidth = (1 << 20) / max(pp[1 << 20] - latency, 1e-12)
    ghosts = float(np.mean(two["ghosts_per_rank"]))
    print(f"    measured: latency {1e6 * latency:.1f} us, bandwidth {bandwidth / 1e9:.2f} GB/s (shared memory), "
          f"{ghosts:.0f} ghost atoms per rank for {two['local_atoms']} local")
    print("    projection (model, not measured), same work per rank:")
    for p, e in projection(one["step_s"], two["step_s"], ghosts, latency, bandwidth, [1, 2, 100, 1000, 10_000, 100_000]):
        print(f"      {p:>7d} ranks: efficiency {e:.3f}")
    print("    with an interconnect of 2 us latency and 10 GB/s per rank instead:")
    for p, e in projection(one["step_s"], two["step_s"], ghosts, 2e-6, 10e9, [100, 1000, 10_000, 100_000]):
        print(f"      {p:>7d} ranks: efficiency {e:.3f}")
    print("(a) LAMMPS ML-IAP peer: not measured yet")


if __name__ == "__main__":
    main()
