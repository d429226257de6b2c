"""``allegro-fm-md`` command: ``run RUNFILE.toml`` (one rank, or under ``mpiexec -n N``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``allegro-fm-md`` command; exit status 2 on bad input, 3 when a guard stops the run."""
    ap = argparse.ArgumentParser(prog="allegro-fm-md", description="Strictly-local MD for Allegro-FM models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the MD described by a TOML run file")
    p.add_argument("runfile")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from .comm import world
    from .runfile import RunFile, run
    from .simulation import SimulationError

    comm = world()
    try:
        sim = run(RunFile.load(args.runfile), comm, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        if comm.rank == 0:
            print(f"allegro-fm-md: error: {exc}", file=sys.stderr)
        return 2
    except SimulationError as exc:
        print(f"allegro-fm-md: rank {comm.rank}: stopped: {exc}; last good state in restart_last_good.npz", file=sys.stderr)
        return 3
    if comm.rank == 0:
        t = sim.thermo[-1].values
        print(f"done: step {t[0]}, T {t[2]:.1f} K, total energy {t[5]:.6f} eV, {t[-1]:.0f} atom-steps/s; output in {sim.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
