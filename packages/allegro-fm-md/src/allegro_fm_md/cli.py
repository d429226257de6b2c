"""``allegro-fm-md`` command: ``run RUNFILE.toml`` (one rank, or under ``mpiexec -n N``)."""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``allegro-fm-md`` command; exit status 2 on bad input, 3 when a guard stops the run."""
    ap = argparse.ArgumentParser(prog="allegro-fm-md", description="Strictly-local MD for Allegro-FM models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the MD described by a TOML run file")
    p.add_argument("runfile")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run in the same folder")
    g = sub.add_parser("rdf", help="partial g(r) and coordination numbers of a trajectory (PNG + table)")
    g.add_argument("trajectory", help="trajectory.h5 (H5MD) or any file ase.io reads")
    g.add_argument("-o", "--out", default="gr.png", help="PNG path; the table goes next to it as .md")
    g.add_argument("--r-max", type=float, default=6.0, help="A")
    g.add_argument("--bins", type=int, default=120)
    g.add_argument("--skip", type=int, default=0, help="frames to drop at the start (equilibration)")
    args = ap.parse_args(argv)
    if args.cmd == "rdf":
        return _rdf(args)
    from .comm import world
    from .runfile import RunFile, run
    from .simulation import RankFailure, SimulationError, abort_all

    comm = world()
    try:
        sim = run(RunFile.load(args.runfile), comm, progress=not args.quiet, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        if comm.rank == 0:
            print(f"allegro-fm-md: error: {exc}", file=sys.stderr)
        return 2
    except RankFailure as exc:
        abort_all(comm, exc, RunFile.load(args.runfile).output.dir)
        return 4
    except SimulationError as exc:
        print(f"allegro-fm-md: rank {comm.rank}: stopped: {exc}; last good state in restart_last_good.npz", file=sys.stderr)
        return 3
    from .runfile import Relaxation

    if isinstance(sim, Relaxation):
        print(f"done: cell relaxation {'converged' if sim.converged else 'NOT converged'} in {sim.steps} FIRE steps: "
              f"energy {sim.energy:.6f} eV, volume {sim.volume:.3f} A^3, max force {sim.fmax:.4f} eV/A, max stress deviation "
              f"{sim.stress_GPa:.4f} GPa; {sim.structure}")
        return 0 if sim.converged else 3
    n = sim.state.n_global  # collective
    if comm.rank == 0:
        t, t0 = sim.thermo[-1].values, sim.thermo[0].values
        span_ps = (t[1] - t0[1]) / 1000.0
        drift = (t[13] - t0[13]) / n / span_ps * 1000.0 if span_ps > 0 else float("nan")
        inner = getattr(sim.integrator, "inner", sim.integrator)
        stochastic = hasattr(inner, "rng") or inner is not sim.integrator  # Langevin bath or deformation work
        d = "no conserved energy (bath or deformation)" if stochastic else f"conserved-energy drift {drift:+.4f} meV/atom/ps"
        print(f"done: step {t[0]}, T {t[2]:.1f} K, total energy {t[5]:.6f} eV, {t[-1]:.0f} atom-steps/s; {d} over "
              f"{span_ps:.3f} ps ({n} atoms); output in {sim.outdir}")
    return 0


def _rdf(args) -> int:
    from pathlib import Path

    from .analysis import plot_rdf, radial_distribution, read_frames

    try:
        frames = read_frames(args.trajectory)[args.skip:]
        rdf = radial_distribution(frames, r_max=args.r_max, bins=args.bins)
    except (ValueError, OSError) as exc:
        print(f"allegro-fm-md: error: {exc}", file=sys.stderr)
        return 2
    out = plot_rdf(rdf, args.out, title=f"{Path(args.trajectory).name}: {rdf.frames} frames")
    lines = ["| pair | first peak (A) | g max | r_cut (A) | coordination |", "|---|---|---|---|---|"]
    for a, b in rdf.g:
        for pair in ((a, b), (b, a)) if a != b else ((a, b),):
            cn, rc = rdf.coordination(pair)
            g = rdf[pair]
            lines.append(f"| {pair[0]}-{pair[1]} | {rdf.r[int(np.argmax(g))]:.2f} | {g.max():.2f} | {rc:.2f} | {cn:.2f} |")
    table = Path(out).with_suffix(".md")
    table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"g(r) plot: {out}; table: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
