"""``allegro-fm-md`` command: ``run RUNFILE.toml`` (one rank, or under ``mpiexec -n N``), ``rdf`` (g(r) of a
trajectory), ``scale`` (the timed MPI worker of the scaling benchmarks). Conventions and exit statuses: docs/cli.md
(2 bad input, 3 a guard stopped the run, 4 a rank aborted)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from tea_align.commandline import (
    EXIT_GUARD,
    EXIT_INTERNAL,
    EXIT_RANK_ABORTED,
    EXIT_STOPPED,
    command_parser,
    run,
    subcommands,
)
from tea_align.files import write_text_atomic

from .__about__ import __version__
from .analysis import plot_rdf, radial_distribution, read_frames
from .chunked import CPU_CALL_EDGES
from .comm import SERIAL, CollectiveFailure, world
from .errors import MDInputError
from .integrators import build_integrator
from .jobcontrol import RunStopped
from .memory import process_resident_bytes
from .plan import measure_bytes_per_edge, plan_supercell
from .runfile import AUTO, NothingToDo, Relaxation, RunFile, validate
from .runfile import run as run_md
from .scaling import scale_worker
from .simulation import RankFailure, SimulationError, abort_all
from .trajectory import merge_shards, shard_parts


def _dry_run(args, comm) -> int:
    """The rank plan of a run file (nothing is written), from the unit cell and the replicate counts: grid, atoms, ghosts,
    edges and memory per rank, with the model's memory per edge measured once on a probe of the structure."""
    rf = RunFile.load(args.runfile)
    system, pot, _ = validate(rf, comm, progress=False)
    build_integrator(
        rf.run
    )  # an unknown or inconsistent integrator is refused here too, not only when the job runs
    n = args.ranks or comm.size
    base = (
        process_resident_bytes()
    )  # interpreter, libraries and the model's weights: every rank carries them
    per_edge = measure_bytes_per_edge(system.unit, pot, rf.run.skin)
    p = plan_supercell(
        system.unit,
        system.reps,
        pot.cutoff,
        rf.run.skin,
        n,
        per_edge,
        base,
        call_edges=rf.potential.max_edges_per_call
        or (CPU_CALL_EDGES if str(rf.potential.device) == "cpu" else None),
    )
    if comm.rank == 0:
        print(p.table())
    return 0


def cmd_merge(args) -> int:
    """Merge a sharded trajectory into one file, streaming frame by frame."""
    parts = shard_parts(args.shards)
    frames, atoms = merge_shards(args.shards, args.output, overwrite=args.overwrite)
    joined = (
        f" joined from {len(parts)} parts ({', '.join(p.name for p in parts)}) in step order"
        if len(parts) > 1
        else ""
    )
    print(f"wrote {args.output}: {frames} frames of {atoms} atoms{joined}")
    return 0


def cmd_run(args) -> int:
    """Run the MD of a run file; prints the summary line (rank 0)."""
    comm = world()
    args.comm = comm
    if args.ranks is not None and (not args.dry_run or args.ranks < 1):
        raise MDInputError(
            f"--ranks {args.ranks}: "
            + (
                "must be >= 1"
                if args.dry_run
                else "only with --dry-run (a run uses the ranks mpiexec/srun launched)"
            )
        )
    if args.dry_run:
        return _dry_run(args, comm)
    try:
        rf = RunFile.load(args.runfile)
        if (
            args.output
        ):  # the command line's folder, as the shell sees it (the run file's hash is kept)
            rf = replace(
                rf, output=replace(rf.output, dir=os.path.normpath(os.path.abspath(args.output)))
            )
        if args.resume and not rf.output.restart_from:
            rf = replace(
                rf, output=replace(rf.output, restart_from=AUTO)
            )  # keeps the run file's hash
        sim = run_md(rf, comm, progress=not args.quiet, overwrite=args.overwrite)
    except MDInputError:
        if comm.rank != 0:  # one line from rank 0 only
            raise SystemExit(2) from None
        raise
    if isinstance(sim, NothingToDo):
        if comm.rank == 0:
            print(
                f"nothing to do: step {sim.step} of {sim.steps} ({sim.restart}); raise [run] steps to extend the run"
            )
        return 0
    if isinstance(sim, Relaxation):
        print(
            f"done: cell relaxation {'converged' if sim.converged else 'NOT converged'} in {sim.steps} FIRE steps: "
            f"energy {sim.energy:.6f} eV, volume {sim.volume:.3f} A^3, max force {sim.fmax:.4f} eV/A, max stress deviation "
            f"{sim.stress_GPa:.4f} GPa; {sim.structure}"
        )
        return 0 if sim.converged else EXIT_GUARD
    n = sim.state.n_global(sim.comm)  # collective
    if comm.rank == 0:
        t, t0 = (
            sim.thermo[-1],
            sim._thermo.start_row,
        )  # the row this run started from (logged or not)
        span_ps = (t.column("time_fs") - t0.column("time_fs")) / 1000.0
        drift = (
            (t.column("conserved_eV") - t0.column("conserved_eV")) / n / span_ps * 1000.0
            if span_ps > 0
            else float("nan")
        )
        d = (
            "no conserved energy (bath or deformation)"
            if not sim.conserves_energy
            else f"conserved-energy drift {drift:+.4f} meV/atom/ps"
        )
        print(
            f"done: step {int(t.column('step'))}, T {t.column('T_K'):.1f} K, total energy {t.column('etot_eV'):.6f} eV, "
            f"{t.column('atom_steps_per_s'):.0f} atom-steps/s; {d} over {span_ps:.3f} ps ({n} atoms); output in {sim.outdir}"
        )
    return 0


def _run_errors(exc: BaseException, args) -> int | None:
    """A failing rank stops every rank (exit 4); a guard stops the run (exit 3) with the last good state on disk."""
    comm = getattr(args, "comm", SERIAL)  # set by the run command once MPI is up
    if isinstance(exc, RunStopped):
        if comm.rank == 0:
            print(f"allegro-fm-md: {exc}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    if isinstance(exc, CollectiveFailure):  # every rank knows: rank 0 says it once, all exit 1
        if comm.rank == 0:
            print(f"allegro-fm-md: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INTERNAL
    if isinstance(exc, RankFailure):
        abort_all(comm, exc, RunFile.load(args.runfile).output.dir)
        return EXIT_RANK_ABORTED
    if isinstance(exc, SimulationError):
        rank = comm.rank
        print(
            f"allegro-fm-md: rank {rank}: stopped: {exc}; last good state in restart_last_good.npz (.shards with shards = true)",
            file=sys.stderr,
        )
        return EXIT_GUARD
    if comm.size > 1 and not isinstance(exc, (MDInputError, KeyboardInterrupt)):
        # an unexpected error on one rank outside the step loop (set-up, output): the others would wait in the next
        # collective for ever, so every rank is stopped with this rank's name
        abort_all(comm, RuntimeError(f"rank {comm.rank}: {type(exc).__name__}: {exc}"), None)
        return EXIT_RANK_ABORTED
    return None


def cmd_rdf(args) -> int:
    """Partial g(r) and coordination numbers of a trajectory: a PNG and a markdown table next to it."""
    frames = read_frames(args.trajectory)[args.skip :]
    rdf = radial_distribution(frames, r_max=args.r_max, bins=args.bins)
    out = plot_rdf(rdf, args.output, title=f"{Path(args.trajectory).name}: {rdf.frames} frames")
    lines = [
        "| pair | first peak (A) | g at peak | first minimum = r_cut (A) | coordination | g max |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in rdf.g:
        for pair in ((a, b), (b, a)) if a != b else ((a, b),):
            sh = rdf.first_shell(pair)  # peak and minimum of the same smoothed curve
            lines.append(
                f"| {pair[0]}-{pair[1]} | {sh.r_peak:.2f} | {sh.g_peak:.2f} | {sh.r_min:.2f} | {sh.coordination:.2f} "
                f"| {rdf[pair].max():.2f} |"
            )
    table = write_text_atomic(Path(out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"g(r) plot: {out}; table: {table}")
    return 0


def cmd_scale(args) -> int:
    """Timed NVE steps of a replicated structure on all ranks (under mpiexec); rank 0 writes the JSON."""
    scale_worker(
        args.structure, tuple(args.reps), args.steps, args.model, args.threads, args.output
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``allegro-fm-md`` command line (every subcommand and option): ``main`` runs it, the docs list it."""
    ap = command_parser("allegro-fm-md", "Strictly-local MD for Allegro-FM models.", __version__)
    sub = subcommands(ap)
    p = sub.add_parser(
        "run",
        help="run the MD described by a TOML run file",
        overwrite=True,
        writes=True,
        output_help="output folder, relative to the current directory (default: the run file's [output] dir, "
        "relative to the run file)",
    )
    p.add_argument("runfile")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the rank grid, atoms, ghosts and memory per rank; run nothing",
    )
    p.add_argument(
        "--ranks",
        type=int,
        default=None,
        help="with --dry-run: plan for this many ranks (default: the ranks launched)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the output folder's own restart when there is one, else "
        'start (restart_from = "auto"): one command for every job of a chain; a finished run does nothing',
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "rdf",
        help="partial g(r) and coordination numbers of a trajectory (PNG + table)",
        writes=True,
        output_default="gr.png",
        output_help="PNG path; the table goes next to it as .md",
    )
    p.add_argument("trajectory", help="trajectory.h5md (H5MD) or any file ase.io reads")
    p.add_argument("--r-max", type=float, default=6.0, help="A")
    p.add_argument("--bins", type=int, default=120)
    p.add_argument(
        "--skip", type=int, default=0, help="frames to drop at the start (equilibration)"
    )
    p.set_defaults(func=cmd_rdf)
    p = sub.add_parser(
        "merge",
        help="one H5MD (or .extxyz) trajectory from a run's trajectory.shards folder, atoms by id",
        writes=True,
        overwrite=True,
        output_required=True,
        output_help="trajectory file to write (.h5md or .extxyz); not inside the input, not an existing file "
        "unless --overwrite",
    )
    p.add_argument("shards", help="a trajectory.shards folder of a run with [output] shards = true")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser(
        "scale",
        help="timed NVE steps on all MPI ranks (the scaling benchmarks' worker); rank 0 writes JSON",
        writes=True,
        output_required=True,
        output_help="JSON file to write",
    )
    p.add_argument("structure", help="structure file (ase.io) to replicate")
    p.add_argument("--reps", type=int, nargs=3, default=(1, 1, 1))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--model", default="allegro-fm-mini")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.set_defaults(func=cmd_scale)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``allegro-fm-md`` command."""
    ap = build_parser()
    return run(ap, argv, bad_input=(MDInputError,), on_error=_run_errors)


if __name__ == "__main__":
    sys.exit(main())
