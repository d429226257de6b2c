"""Experiment 8: weak and strong scaling of allegro-fm-md over MPI ranks (paper: weak-scaling efficiency 0.964 on
Aurora, multi-billion atoms), with the many-rank projection of allegro_fm_md.project_weak_scaling.

Every point is a separate ``mpiexec -n P allegro-fm-md scale`` run (one torch thread per rank, NVE,
0.5 fs) on the model-relaxed T11 cell: weak scaling keeps 2 x 2 x 1 cells (352 atoms) per rank, strong scaling
keeps 4 x 2 x 1 cells (704 atoms) in all. Efficiencies: weak t(1)/t(P), strong t(1)/(P t(P)). The projection
to 10^2..10^5 ranks is a communication/computation model built on the measured 2-rank step, halo size, latency
and bandwidth (ping-pong in the 2-rank run): a model, not a measurement. On a 2-core machine P is at most 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ase.io
import numpy as np
from tea_align.files import save_figure

from ._common import Context, plt, relaxed_t11

PAPER_WEAK_EFFICIENCY = 0.964


def measure(
    ctx: Context, structure: str, ranks: int, reps: tuple[int, int, int], steps: int, tag: str
) -> dict:
    """One timed run under mpiexec (or plain Python for 1 rank when there is no mpiexec); returns its JSON."""
    from allegro_fm_md import (
        mpiexec_path,
    )  # lazy: allegro-fm-md compiles numba kernels; only experiments that run MD need it

    out = ctx.outdir / f"{tag}-{ranks}.json"
    cmd = [
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "allegro_fm_md.cli",
        "scale",
        structure,
        "--reps",
        *map(str, reps),
        "--steps",
        str(steps),
        "--model",
        ctx.model,
        "--threads",
        "1",
        "-o",
        str(out),
    ]
    mpiexec = mpiexec_path()
    if mpiexec:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    elif ranks > 1:
        raise RuntimeError("no mpiexec in this environment: pip install mpi4py mpich")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(out.read_text())


def experiment(ctx: Context) -> tuple[str, list[str], dict]:
    """Weak and strong scaling on 1..P ranks (P = min(cores, 2) quick; the largest power of 2 <= cores otherwise)."""
    from allegro_fm_md import (
        project_weak_scaling,
    )  # lazy: allegro-fm-md compiles numba kernels; only experiments that run MD need it

    cores = os.cpu_count() or 1
    top = 2 if ctx.quick else max(2, 1 << (cores.bit_length() - 1))
    ranks = [p for p in (1, 2, 4, 8, 16, 32, 64) if p <= top]
    steps = 10 if ctx.quick else 60
    structure = ctx.outdir / "t11.extxyz"
    ase.io.write(structure, relaxed_t11(ctx))
    weak = {p: measure(ctx, str(structure), p, (2 * p, 2, 1), steps, "weak") for p in ranks}
    strong = {p: measure(ctx, str(structure), p, (4, 2, 1), steps, "strong") for p in ranks}
    t1w, t1s = weak[1]["step_s"], strong[1]["step_s"]
    rows = [
        "| ranks | weak: atoms | weak: ms/step | weak efficiency | strong: atoms | strong: ms/step | strong efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in ranks:
        rows.append(
            f"| {p} | {weak[p]['atoms']} | {1000 * weak[p]['step_s']:.1f} | {t1w / weak[p]['step_s']:.3f} | "
            f"{strong[p]['atoms']} | {1000 * strong[p]['step_s']:.1f} | {t1s / (p * strong[p]['step_s']):.3f} |"
        )
    two = weak[2]
    pp = {int(k): v for k, v in two["pingpong_s"].items()}
    latency = pp[8]
    bandwidth = (1 << 20) / max(pp[1 << 20] - latency, 1e-12)
    ghosts = float(np.mean(two["ghosts_per_rank"]))
    proj_ranks = [1, 2, 100, 1000, 10_000, 100_000]
    proj = project_weak_scaling(t1w, two["step_s"], ghosts, latency, bandwidth, proj_ranks)
    proj_net = project_weak_scaling(t1w, two["step_s"], ghosts, 2e-6, 10e9, proj_ranks)
    prow = [
        "| ranks | projected weak efficiency (this machine's latency/bandwidth) | with 2 us, 10 GB/s per rank |",
        "|---|---|---|",
    ]
    prow += [f"| {p} | {e:.3f} | {e2:.3f} |" for (p, e), (_, e2) in zip(proj, proj_net)]
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    ax.plot(ranks, [t1w / weak[p]["step_s"] for p in ranks], "o-", label="weak, measured")
    ax.plot(ranks, [t1s / (p * strong[p]["step_s"]) for p in ranks], "s-", label="strong, measured")
    ax.plot([p for p, _ in proj], [e for _, e in proj], "--", label="weak, projected (model)")
    ax.axhline(PAPER_WEAK_EFFICIENCY, color="k", ls=":", label="paper, Aurora: 0.964")
    ax.set_xscale("log")
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("parallel efficiency")
    ax.set_ylim(0, 1.1)
    ax.legend()
    plot = save_figure(fig, ctx.outdir / "scaling.png")
    text = (
        f"{steps} NVE steps per point after 3 warm-up steps, one torch thread per rank, {cores} cores on this machine. "
        f"Measured in the 2-rank run: latency {1e6 * latency:.1f} us, bandwidth {bandwidth / 1e9:.2f} GB/s (shared memory), "
        f"{ghosts:.0f} ghost atoms per rank for {two['local_atoms']} local. Paper: weak-scaling efficiency 0.964 on Aurora.\n\n"
        + "\n".join(rows)
        + "\n\nProjection (a model, not a measurement; same work per rank, no contention):\n\n"
        + "\n".join(prow)
        + "\n"
    )
    data = {"weak": weak, "strong": strong, "projection": proj, "projection_2us_10GBs": proj_net}
    return text, [str(plot.relative_to(ctx.outdir.parent))], data
