"""Strong scaling of a fixed LJ argon system (10 976 atoms, 14 x 14 x 14 fcc cells, 74 A) on 1 to 16 ranks with a
one-dimensional rank grid (N x 1 x 1), NVE, 4 fs steps: atom-steps/s per rank count and the speed-up over 1 rank.
At 16 ranks each subdomain (4.6 A) is thinner than cutoff + skin (7.0 A): refused before the multi-swap ghost
exchange (comm.py), run now. mpiexec oversubscribes this machine's cores beyond 2 ranks, so the numbers there measure
the exchange's overhead, not a speed-up; on a cluster run it with one rank per core.

    python packages/allegro-fm-md/benchmarks/bench_strong_scaling.py [--ranks 1 2 4 8 16] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys, time
import numpy as np
from ase.build import bulk
from allegro_fm_md.comm import world
from allegro_fm_md.forces import DistributedForceEvaluator
from allegro_fm_md.integrators import State, VelocityVerlet
from allegro_fm_md.reference import LennardJones
from allegro_fm_md.supercell import Supercell, maxwell_boltzmann
comm = world()
unit = bulk("Ar", "fcc", a=5.30, cubic=True)
system = Supercell(unit, (14, 14, 14))
pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
ev = DistributedForceEvaluator(pot, comm, system.cell, skin=0.5, grid=(comm.size, 1, 1))
ids, pos = system.local(ev.dec)
m = unit.get_masses()[ids % len(unit)]
st = State(pos, maxwell_boltzmann(ids, m, 50.0, 0, comm), m, system.cell, system.pbc, ids=ids, types=np.zeros(len(ids), int))
ev.n_total = len(system)
ev.update(st)
integ = VelocityVerlet(4.0)
for _ in range(3):
    integ.step(st, ev)
comm.Barrier()
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    integ.step(st, ev)
comm.Barrier()
wall = time.perf_counter() - t
if comm.rank == 0:
    json.dump({"wall": wall, "atoms": len(system), "hops": list(ev.dec.hops)}, open(sys.argv[1], "w"))
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from allegro_fm_md import mpiexec_path

    mpiexec = mpiexec_path()
    print(
        "| ranks | grid | subdomain width (A) | swaps per direction | atom-steps/s | speed-up vs 1 rank |"
    )
    print("|---|---|---|---|---|---|")
    base = None
    for n in args.ranks:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            cmd = [sys.executable, "-W", "ignore", "-c", WORKER, str(out), str(args.steps)]
            if n > 1:
                cmd = [mpiexec, "-n", str(n), *cmd]
            subprocess.run(cmd, check=True, capture_output=True)
            r = json.loads(out.read_text())
        rate = r["atoms"] * args.steps / r["wall"]
        base = base or rate
        print(
            f"| {n} | {n} x 1 x 1 | {14 * 5.30 / n:.2f} | {r['hops'][0]} | {rate:,.0f} | {rate / base:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
