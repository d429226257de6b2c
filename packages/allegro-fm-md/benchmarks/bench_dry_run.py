"""``--dry-run`` against what a run really uses, and at the scale it exists for.

1. Memory: the plan's memory per rank (process baseline + engine arrays + the model's activations per edge, measured on
   a probe) against the peak resident memory (VmHWM) of a real run of the same run file, at about 10^5 atoms per rank,
   on 1 and 2 ranks (mpiexec, oversubscribed here). The ratio planned / measured is the number to read (target: within
   30 %). Potentials: LJ argon (numpy) and, with --model, an Allegro-FM model file or shipped name (slow on a CPU).
2. Scale: planning 10^9 atoms on 65 536 ranks from the unit cell: wall time and the planning process's peak memory.

    python packages/allegro-fm-md/benchmarks/bench_dry_run.py [--atoms-per-rank 100000] [--ranks 1 2] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, sys
from allegro_fm_md import RunFile, run
from allegro_fm_md.comm import world
comm = world()
sim = run(RunFile.load(sys.argv[1]), comm, progress=False)
peak = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))  # kB
peaks = comm.gather(peak, root=0)
if comm.rank == 0:
    json.dump({"peaks_kB": peaks}, open(sys.argv[2], "w"))
"""


def run_file(folder: Path, reps: int, potential: str) -> Path:
    import ase.io
    from ase.build import bulk

    if potential == "lj":
        unit, pot = (
            bulk("Ar", "fcc", a=5.26, cubic=True),
            '[potential]\nkind = "lj"\ncutoff = 6.5\n',
        )
    else:
        from allegro_fm_bench.structures import tobermorite_11a  # lazy: only for a model run

        unit, pot = tobermorite_11a(), f'[potential]\nkind = "allegro"\nmodel = "{potential}"\n'
    ase.io.write(folder / "unit.extxyz", unit)
    f = folder / "run.toml"
    f.write_text(
        f'[system]\nstructure = "unit.extxyz"\nreplicate = [{reps}, {reps}, {reps}]\n{pot}'
        '[run]\nintegrator = "nve"\ndt_fs = 1.0\nsteps = 5\ntemperature_K = 60\n'
        '[output]\ndir = "out"\nthermo_every = 5\ntrajectory_every = 0\nrestart_every = 5\nshards = true\n'
    )
    return f


def planned_bytes(f: Path, ranks: int) -> tuple[int, str]:
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "allegro_fm_md.cli",
            "run",
            str(f),
            "--dry-run",
            "--ranks",
            str(ranks),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("largest rank"))
    gib = float(re.search(r"edges: ([0-9.]+) GiB", line).group(1))
    return int(gib * 2**30), line


def measured_bytes(f: Path, ranks: int, mpiexec: str | None) -> int:
    res = f.parent / f"peaks-{ranks}.json"
    cmd = [sys.executable, "-W", "ignore", "-c", WORKER, str(f), str(res)]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    subprocess.run(cmd, cwd=f.parent, check=True, capture_output=True)
    return max(json.loads(res.read_text())["peaks_kB"]) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--atoms-per-rank", type=int, default=100_000)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--model", default="lj", help="lj (default) or an Allegro-FM model file / shipped name"
    )
    args = ap.parse_args()
    from allegro_fm_md import mpiexec_path

    mpiexec = mpiexec_path()
    print(
        "| potential | ranks | atoms | planned MiB per rank | measured peak MiB (largest rank) | planned / measured |"
    )
    print("|---|---|---|---|---|---|")
    per_unit = 4 if args.model == "lj" else 88
    for ranks in args.ranks:
        if ranks > 1 and mpiexec is None:
            continue
        reps = round((args.atoms_per_rank * ranks / per_unit) ** (1 / 3))
        with tempfile.TemporaryDirectory() as tmp:
            f = run_file(Path(tmp), reps, args.model)
            plan, _ = planned_bytes(f, ranks)
            meas = measured_bytes(f, ranks, mpiexec)
            print(
                f"| {args.model} | {ranks} | {per_unit * reps**3} | {plan / 2**20:.0f} | {meas / 2**20:.0f} | {plan / meas:.2f} |",
                flush=True,
            )
    # scale: 10^9 atoms (a 4-atom fcc unit x 630^3) on 65 536 ranks, planned by one process
    with tempfile.TemporaryDirectory() as tmp:
        f = run_file(Path(tmp), 630, "lj")
        t = time.perf_counter()
        p = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%M",
                sys.executable,
                "-W",
                "ignore",
                "-m",
                "allegro_fm_md.cli",
                "run",
                str(f),
                "--dry-run",
                "--ranks",
                "65536",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t
        peak_mib = int(p.stderr.strip().splitlines()[-1]) / 1024
        print(
            f"\nplanning {4 * 630**3:,} atoms on 65 536 ranks: {wall:.1f} s wall (process start and imports included), "
            f"peak {peak_mib:.0f} MiB"
        )


if __name__ == "__main__":
    main()
