"""Benchmark: what per-atom virials and committees cost, per potential kind, on a periodic CaO cell (1000 atoms).

Then the shipped model's shallow ensemble (``allegro-fm-mini.heads.npz``): a call with the heads (eager), one
without (the compiled file, as allegro-fm-md runs the steps between ``fdev_every``), and the per-step cost this gives
at fdev_every 1, 10 and 100 against the single model compiled and eager (the peers, measured in the same run).

For each kind that runs here (the shipped model eager, the same model AOTInductor-compiled, the nequip 0.6 fixture as
TorchScript), in one run: ms per ``compute`` call with ``per_atom_virial`` off and on (the peer is the same call
without per-atom virials: eager adds one (E, 3, 3) product; the compiled and TorchScript files run a graph with one
ghost per edge, ``compiled.edge_copy_graph``), and a committee of two members vs one member alone (the peer: a
committee of K full models costs about K calls).

    python packages/allegro-fm-model/benchmarks/bench_per_atom.py [--reps 5] [--threads 1] [--kinds eager compiled legacy]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_force_eval import system  # noqa: E402  (the same 1000-atom CaO cell)

LEGACY = Path(__file__).parents[1] / "tests" / "data" / "legacy" / "legacy-allegro-0.3.0.pth"


def time_call(fn, reps: int) -> float:
    """Best of ``reps`` wall times (ms) of ``fn()`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1e3 * best


def load(kind: str):
    from allegro_fm_model import load_potential
    from allegro_fm_model.plugin import compiled_on_first_use

    if kind == "eager":
        return load_potential("allegro-fm-mini")
    if kind == "compiled":
        return load_potential(compiled_on_first_use("allegro-fm-mini", "cpu"))
    return load_potential(LEGACY)


def measure(pot, a, reps: int, members=None) -> tuple[float, float, float]:
    """(ms per call, with per-atom virials, a committee of ``pot`` and ``members``) on ``a``."""
    from allegro_fm_model import CommitteePotential, periodic_edges

    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, pot.cutoff)
    types = pot.types_of(a.get_chemical_symbols())
    off = time_call(lambda: pot.compute(a.positions, types, ei, len(a), sh), reps)
    pot.per_atom_virial = True
    on = time_call(lambda: pot.compute(a.positions, types, ei, len(a), sh), reps)
    pot.per_atom_virial = False
    com = CommitteePotential([pot, members]) if members is not None else None
    two = time_call(lambda: com.compute(a.positions, types, ei, len(a), sh), reps) if com else 0.0
    return off, on, two


def main(argv=None) -> None:
    import torch
    from allegro_fm_model.heads import load_heads_potential
    from allegro_fm_model.loading import builtin_heads_path

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kinds", nargs="+", default=["eager", "compiled", "legacy"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    a = system()
    print(f"CaO, {len(a)} atoms, {args.threads} thread(s), best of {args.reps}")
    print("| kind | ms/call | per-atom virials on | ratio | committee of 2 | ratio |")
    print("|---|---|---|---|---|---|")
    for kind in args.kinds:
        off, on, two = measure(load(kind), a, args.reps, load(kind))
        print(f"| {kind} | {off:.0f} | {on:.0f} | {on / off:.2f} | {two:.0f} | {two / off:.2f} |")
    compiled = load("compiled")
    heads = load_heads_potential(
        "allegro-fm-mini", builtin_heads_path("allegro-fm-mini"), fast=compiled
    )
    k = len(heads.heads.deltas)
    single, _, _ = measure(load("eager"), a, args.reps)
    comp, _, _ = measure(compiled, a, args.reps)
    on, _, _ = measure(heads, a, args.reps)
    heads.members_wanted = False
    off, _, _ = measure(heads, a, args.reps)
    print(
        f"\nshallow ensemble, {k} heads: {on:.0f} ms with the heads (eager; the single eager model {single:.0f} ms: "
        f"{on / single:.2f}x; a committee of {k} full models: about {k}x), {off:.0f} ms without (the compiled file; "
        f"single compiled {comp:.0f} ms)"
    )
    for every in (1, 10, 100):
        step = (on + (every - 1) * off) / every
        print(
            f"  fdev_every = {every}: {step:.0f} ms per step, {step / comp:.2f}x the single compiled model, "
            f"{step / single:.2f}x the single eager model"
        )


if __name__ == "__main__":
    main()
