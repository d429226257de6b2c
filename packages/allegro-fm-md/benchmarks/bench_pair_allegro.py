"""Benchmark: allegro-fm-md against LAMMPS ``pair_style allegro`` running the same compiled ``.nequip.pt2`` file.

    python packages/allegro-fm-md/benchmarks/bench_pair_allegro.py --lmp PATH/TO/lmp
        [--sizes 352 5000 50000] [--ranks 1 2] [--model allegro-fm-mini] [--compiled FILE.nequip.pt2]
        [--atom-steps 30000] [--mem-gib 20]

The peer is the one users run compiled Allegro models with: LAMMPS built with pair_nequip_allegro and
NEQUIP_AOT_COMPILE=ON against the torch wheel's libtorch (recipe: the package README). One compiled file (made here
with ``allegro_fm_model.compile_model`` unless --compiled) runs in both. Same system (tobermorite 11 A supercells of
about SIZE atoms per rank, split along x across ranks), same positions and velocities (300 K, fixed seed, written into
the LAMMPS data file), NVE velocity Verlet, 0.5 fs, skin 1 A, one thread per rank (OMP_NUM_THREADS=1, torch threads 1).
allegro-fm-md runs as ``allegro-fm-md run`` would: the compiled file behind ``ChunkedPotential`` with the automatic
chunk size. Each run: set-up and one step untimed, then about --atom-steps / atoms (at least 3) timed steps;
LAMMPS's time is its "Loop time" of the timed run. Peak memory: each rank's VmHWM (sampled every 0.2 s until it
ends); a run whose ranks together pass --mem-gib is killed and reported as out of memory. Prints, per size and rank
count, both atom-steps/s, the ratio allegro-fm-md / LAMMPS, both peaks per rank and the step-0 potential energies
(they must agree: same file, same positions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from allegro_fm_md.memory import (
    _proc_kib,
)  # this package's /proc reader (same package: benchmarks/)

ROOT = Path(__file__).resolve().parents[3]
STRUCTURE = ROOT / "examples" / "tobermorite-11a" / "tobermorite-11A.extxyz"
VENV_BIN = Path(sys.executable).parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

WORKER = r"""
import json, sys, time
import ase.io, numpy as np, torch
torch.set_num_threads(1)
from mpi4py import MPI
from allegro_fm_md.chunked import ChunkedPotential
from allegro_fm_md.scaling import time_engine
from allegro_fm_model import load_potential
comm = MPI.COMM_WORLD
system, model, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
a = ase.io.read(system)
shared = comm.Split_type(MPI.COMM_TYPE_SHARED).size  # ranks sharing this node's memory, as allegro-fm-md run passes
r = time_engine(a, ChunkedPotential(load_potential(model), None, ranks_sharing=shared), steps, comm, warmup=1)
if comm.rank == 0:
    open(out, "w").write(json.dumps(r))
"""


def reps_for(n_per_rank: int, ranks: int, cell_atoms: int, lengths) -> tuple[int, int, int]:
    """Supercell repeats giving about ``n_per_rank`` atoms per rank (the closest count, then the most cubic box per
    rank), ranks stacked along x."""
    target = max(1.0, n_per_rank / cell_atoms)
    best = None
    for r0 in range(1, 60):
        for r1 in range(1, 60):
            r2 = max(1, round(target / (r0 * r1)))
            box = np.array([r0, r1, r2]) * np.asarray(lengths)
            key = (round(abs(np.log(r0 * r1 * r2 / target)), 1), box.max() / box.min())
            if best is None or key < best[0]:
                best = (key, (r0, r1, r2))
    r0, r1, r2 = best[1]
    return r0 * ranks, r1, r2


def make_system(reps, path_xyz: Path, path_data: Path, species: list[str]):
    """The benchmark system (velocities at 300 K, seed 0, zero momentum) as extxyz for us and a LAMMPS data file."""
    import ase.io

    a = ase.io.read(STRUCTURE) * reps
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (len(a), 3)) * np.sqrt(8.617333e-5 * 300 / a.get_masses()[:, None])
    a.set_velocities(v - (v * a.get_masses()[:, None]).sum(0) / a.get_masses().sum())
    ase.io.write(path_xyz, a)
    ase.io.write(
        path_data,
        a,
        format="lammps-data",
        specorder=species,
        masses=True,
        velocities=True,
        units="metal",
    )
    return a


class PeakWatch:
    """Runs a command, samples VmHWM of every process in its session every 0.2 s, kills it past ``limit_bytes``."""

    def __init__(self, cmd, cwd, env, limit_bytes: float):
        self.cmd, self.cwd, self.env, self.limit = cmd, cwd, env, limit_bytes

    @staticmethod
    def _tree(root: int) -> list[int]:
        kids, out = {}, [root]
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                kids.setdefault(ppid, []).append(int(p.name))
        i = 0
        while i < len(out):
            out += kids.get(out[i], [])
            i += 1
        return out

    def run(self) -> dict:
        p = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        peaks: dict[int, int] = {}
        killed = False
        chunks: list[str] = []
        reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()), daemon=True)
        reader.start()
        while p.poll() is None:
            rss_total = 0
            for pid in self._tree(p.pid):
                peaks[pid] = max(
                    peaks.get(pid, 0), (_proc_kib(f"/proc/{pid}/status", "VmHWM") or 0)
                )
                rss_total += _proc_kib(f"/proc/{pid}/status", "VmRSS") or 0
            if rss_total * 1024 > self.limit:
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.2)
        p.wait()
        reader.join(5)
        # the launcher (mpiexec/hydra) is small: the per-rank peak is the largest processes'
        per_rank = sorted(peaks.values(), reverse=True)
        return {"rc": p.returncode, "out": "".join(chunks), "killed": killed, "peaks_kib": per_rank}


def ours(xyz: Path, model: str, steps: int, ranks: int, workdir: Path, limit: float) -> dict:
    out = workdir / f"ours-{ranks}.json"
    cmd = [
        shutil.which("mpiexec", path=str(VENV_BIN)) or "mpiexec",
        "-n",
        str(ranks),
        sys.executable,
        "-W",
        "ignore",
        "-c",
        WORKER,
        str(xyz),
        model,
        str(steps),
        str(out),
    ]
    r = PeakWatch(cmd, workdir, {**os.environ, **ONE_THREAD}, limit).run()
    if r["killed"]:
        return {"error": f"out of memory (> {limit / 2**30:.0f} GiB together)"}
    if r["rc"] or not out.exists():
        return {"error": f"exit {r['rc']}: {r['out'].strip().splitlines()[-1:]}"}
    d = json.loads(out.read_text())
    d["peak_gib_per_rank"] = max(r["peaks_kib"][:ranks]) / 2**20
    return d


def lammps(
    lmp: str,
    data: Path,
    pt2: Path,
    species: list[str],
    steps: int,
    ranks: int,
    workdir: Path,
    limit: float,
    natoms: int,
) -> dict:
    (workdir / "in.bench").write_text(f"""units metal
atom_style atomic
atom_modify map yes
newton on
boundary p p p
read_data {data.name}
pair_style allegro
pair_coeff * * {pt2} {" ".join(species)}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.0005
fix 1 all nve
thermo_style custom step pe ke etotal
thermo_modify format float %20.10f
thermo 1000
run 1
run {steps}
""")
    cmd = [lmp, "-in", "in.bench", "-log", f"log.{ranks}.lammps", "-screen", "none"]
    if ranks > 1:
        cmd = [shutil.which("mpiexec", path=str(VENV_BIN)) or "mpiexec", "-n", str(ranks), *cmd]
    cmd_env = {**os.environ, **ONE_THREAD}
    r = PeakWatch(cmd, workdir, cmd_env, limit).run()
    if r["killed"]:
        return {"error": f"out of memory (> {limit / 2**30:.0f} GiB together)"}
    log = workdir / f"log.{ranks}.lammps"
    lines = log.read_text().splitlines() if log.exists() else []
    loops = [ln for ln in lines if ln.startswith("Loop time of")]
    if r["rc"] or len(loops) < 2:
        err = [ln for ln in lines + r["out"].splitlines() if "ERROR" in ln or "rror" in ln]
        return {
            "error": f"exit {r['rc']}: {(err or (lines + r['out'].splitlines())[-1:] or ['no output'])[0]}"
        }
    heads = [i for i, ln in enumerate(lines) if ln.split()[:2] == ["Step", "PotEng"]]
    wall = float(loops[-1].split()[3])
    return {
        "atoms": natoms,
        "wall_s": wall,
        "atom_steps_per_s": natoms * steps / wall,
        "e_pair0": float(lines[heads[0] + 1].split()[1]),
        "peak_gib_per_rank": max(r["peaks_kib"][:ranks]) / 2**20,
    }


def energy0(model: str, xyz: Path) -> float:
    """Potential energy (eV) of the system through the ASE calculator with the same compiled file."""
    import ase.io
    from allegro_fm_model import AllegroFMCalculator, load_potential

    a = ase.io.read(xyz)
    a.calc = AllegroFMCalculator(load_potential(model))
    return float(a.get_potential_energy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--lmp",
        default=os.environ.get("AFM_LMP_ALLEGRO", ""),
        help="LAMMPS binary with pair_style allegro "
        "(NEQUIP_AOT_COMPILE=ON); default $AFM_LMP_ALLEGRO",
    )
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[352, 5000, 50000], help="atoms per rank"
    )
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="allegro-fm-mini")
    ap.add_argument(
        "--compiled", default="", help="an existing .nequip.pt2 (default: compile --model here)"
    )
    ap.add_argument(
        "--atom-steps",
        type=float,
        default=30000,
        help="timed atom-steps per run (at least 3 steps)",
    )
    ap.add_argument(
        "--mem-gib", type=float, default=20.0, help="kill a run whose ranks together pass this RSS"
    )
    ap.add_argument(
        "--workdir", default="", help="keep inputs and logs here (default: a temporary folder)"
    )
    args = ap.parse_args()
    if not args.lmp or not Path(args.lmp).exists():
        print(
            "no LAMMPS binary with pair_style allegro: build one (docs/packages/allegro-fm-md.md) and pass --lmp"
        )
        return 2
    import ase.io

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-pair-allegro-"))
    work.mkdir(parents=True, exist_ok=True)
    pt2 = Path(args.compiled) if args.compiled else work / "model.nequip.pt2"
    if not pt2.exists():
        from allegro_fm_model import compile_model

        print(f"compiling {args.model} -> {pt2} (a C++ build, about a minute)", flush=True)
        compile_model(args.model, pt2)
    pt2 = pt2.resolve()
    cell = ase.io.read(STRUCTURE)
    species = sorted(set(cell.get_chemical_symbols()))
    limit = args.mem_gib * 2**30
    print(
        f"compiled file {pt2.name}; tobermorite 11 A; NVE 0.5 fs; skin 1 A; one thread per rank; memory cap {args.mem_gib:g} GiB"
    )
    print(
        f"{'atoms/rank':>10} {'ranks':>5} {'atoms':>7} {'steps':>5} | {'ours a-s/s':>10} {'GiB/rank':>8} | "
        f"{'LAMMPS a-s/s':>12} {'GiB/rank':>8} | {'ratio':>6} | E0 ours - LAMMPS (eV)"
    )
    rows = []
    for n in args.sizes:
        for ranks in args.ranks:
            reps = reps_for(n, ranks, len(cell), cell.cell.lengths())
            d = work / f"n{n}-r{ranks}"
            d.mkdir(exist_ok=True)
            a = make_system(reps, d / "system.extxyz", d / "system.data", species)
            steps = max(3, int(round(args.atom_steps / len(a))))
            o = ours(d / "system.extxyz", str(pt2), steps, ranks, d, limit)
            lm = lammps(args.lmp, d / "system.data", pt2, species, steps, ranks, d, limit, len(a))
            de = ""
            if "error" not in lm and len(a) <= 6000:
                de = f"{energy0(str(pt2), d / 'system.extxyz') - lm['e_pair0']:+.2e}"
            fo = (
                f"{o['atom_steps_per_s']:10.0f} {o['peak_gib_per_rank']:8.2f}"
                if "error" not in o
                else f"{'-':>10} {'-':>8}"
            )
            fl = (
                f"{lm['atom_steps_per_s']:12.0f} {lm['peak_gib_per_rank']:8.2f}"
                if "error" not in lm
                else f"{'-':>12} {'-':>8}"
            )
            ratio = (
                f"{o['atom_steps_per_s'] / lm['atom_steps_per_s']:6.2f}"
                if "error" not in o and "error" not in lm
                else f"{'-':>6}"
            )
            print(
                f"{n:>10} {ranks:>5} {len(a):>7} {steps:>5} | {fo} | {fl} | {ratio} | {de}",
                flush=True,
            )
            for who, r in (("allegro-fm-md", o), ("LAMMPS", lm)):
                if "error" in r:
                    print(f"{'':>10} {who}: {r['error']}", flush=True)
            rows.append(
                {
                    "atoms_per_rank": n,
                    "ranks": ranks,
                    "atoms": len(a),
                    "steps": steps,
                    "ours": o,
                    "lammps": lm,
                }
            )
    for (
        n
    ) in args.sizes:  # weak scaling: the same atoms per rank on 1 and on more ranks, each engine
        by = {r["ranks"]: r for r in rows if r["atoms_per_rank"] == n}
        for ranks in sorted(set(by) - {1}):
            if 1 not in by:
                break
            eff = []
            for who in ("ours", "lammps"):
                one, many = by[1][who], by[ranks][who]
                ok = "error" not in one and "error" not in many
                eff.append(
                    f"{many['atom_steps_per_s'] / ranks / one['atom_steps_per_s']:.3f}"
                    if ok
                    else "-"
                )
            print(
                f"weak scaling 1 -> {ranks} ranks at {n} atoms/rank: allegro-fm-md {eff[0]}, LAMMPS {eff[1]}"
            )
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"inputs, logs and results.json in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
