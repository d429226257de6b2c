"""Peak memory per rank at a fixed number of atoms per rank on 1, 2, 4 and 8 ranks (mpiexec, oversubscribed here),
with sharded output (no rank gathers the system) and, as the peer measured in the same run, gathered output (rank 0
receives every atom at each restart and trajectory write). LJ argon, NVE, a few steps with output at every 5th.

    python packages/allegro-fm-md/benchmarks/bench_memory_per_rank.py [--atoms-per-rank 32000] [--ranks 1 2 4 8]

Prints, per mode and rank count, the total atoms and the largest and smallest peak resident memory (VmHWM) over the
ranks, and the ratio of the largest to its 1-rank value (flat within 10 % is the target for sharded output).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys
from allegro_fm_md import RunFile, run
from allegro_fm_md.comm import world
comm = world()
sim = run(RunFile.load(sys.argv[1]), comm, progress=False)
peak = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))  # kB
peaks = comm.gather(peak, root=0)
n = int(sim.state.n_global(comm))  # collective: every rank
if comm.rank == 0:
    json.dump({"peaks_kB": peaks, "atoms": n}, open(sys.argv[2], "w"))
"""

RUN = """[system]
structure = "{unit}"
replicate = [{r0}, {r1}, {r2}]
[potential]
kind = "lj"
cutoff = 6.5
[run]
steps = 10
dt_fs = 2.0
temperature_K = 40
[output]
dir = "{out}"
thermo_every = 5
trajectory_every = 5
restart_every = 5
shards = {shards}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms-per-rank", type=int, default=32000)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args()
    import ase.io
    from ase.build import bulk

    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpiexec"
    )
    tmp = Path(tempfile.mkdtemp(prefix="afm-mem-"))
    ase.io.write(tmp / "unit.extxyz", bulk("Ar", "fcc", a=5.26, cubic=True))
    (tmp / "worker.py").write_text(WORKER)
    side = round((args.atoms_per_rank / 4) ** (1 / 3))
    rows = []
    for shards in (True, False):
        base = None
        for p in args.ranks:
            reps = [side, side, side]
            q, k = p, 0
            while q > 1:  # double the cell along x, y, z in turn: fixed atoms per rank
                reps[k % 3] *= 2
                q //= 2
                k += 1
            name = f"{'shards' if shards else 'gathered'}-{p}"
            (tmp / f"{name}.toml").write_text(
                RUN.format(
                    unit=tmp / "unit.extxyz",
                    r0=reps[0],
                    r1=reps[1],
                    r2=reps[2],
                    out=tmp / name,
                    shards=str(shards).lower(),
                )
            )
            subprocess.run(
                [
                    mpiexec,
                    "-n",
                    str(p),
                    sys.executable,
                    "-W",
                    "ignore",
                    str(tmp / "worker.py"),
                    str(tmp / f"{name}.toml"),
                    str(tmp / f"{name}.json"),
                ],
                check=True,
                timeout=3000,
            )
            r = json.loads((tmp / f"{name}.json").read_text())
            hi, lo = max(r["peaks_kB"]) / 1024, min(r["peaks_kB"]) / 1024
            base = base or hi
            rows.append((name.split("-")[0], p, r["atoms"], hi, lo, hi / base))
            print(
                f"{rows[-1][0]:>8} {p:>3} ranks {r['atoms']:>9} atoms: peak RSS per rank {lo:7.1f} .. {hi:7.1f} MiB, "
                f"largest / 1 rank {hi / base:.3f}",
                flush=True,
            )
    print(
        "\n| output | ranks | atoms | peak MiB per rank (min..max) | max / 1-rank max |\n|---|---|---|---|---|"
    )
    for mode, p, n, hi, lo, ratio in rows:
        print(f"| {mode} | {p} | {n} | {lo:.0f}..{hi:.0f} | {ratio:.3f} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
