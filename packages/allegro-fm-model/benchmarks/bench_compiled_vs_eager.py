"""Benchmark: the compiled (.nequip.pt2, AOTInductor) shipped model against its eager self, at every thread count and
size, in one run: ms per force evaluation (energy + forces + virial through the Potential call) and the ratio
eager / compiled (> 1: compiled faster). Two compiled files are made: serial generated kernels (``kernel_threads=1``,
the default of ``compile_model``) and the old setting (kernel threads fixed to torch's count at compile time).

    python packages/allegro-fm-model/benchmarks/bench_compiled_vs_eager.py [--sizes 1 8] [--threads 1 2] [--reps 7]

Sizes are tobermorite 11 A supercells (88 atoms per cell: 2x2x1 = 352, 4x4x2 = 2816 atoms).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_force_eval import time_calls  # the script's own folder is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1, 8],
        help="supercell factors of the 2x2x1 T11 (1: 352 atoms, 8: 2816)",
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()

    import torch
    from allegro_fm_bench.structures import tobermorite_11a
    from allegro_fm_model import load_potential, periodic_edges
    from allegro_fm_model.compiled import compile_graph_model

    eager = load_potential("allegro-fm-mini")
    with tempfile.TemporaryDirectory() as d:
        files = {}
        for name, kt in (("compiled", 1), ("compiled-old", None)):
            t = time.perf_counter()
            files[name] = compile_graph_model(
                eager.model, Path(d) / f"{name}.nequip.pt2", kernel_threads=kt
            )
            print(
                f"{name}: compiled in {time.perf_counter() - t:.0f} s (kernel threads {kt or torch.get_num_threads()})",
                flush=True,
            )
        pots = {"eager": eager, **{k: load_potential(v) for k, v in files.items()}}
        reps = {1: (2, 2, 1), 8: (4, 4, 2), 27: (6, 6, 3)}
        print(
            "\n| atoms | threads | eager ms | compiled ms | old compiled ms | eager / compiled | eager / old compiled |"
        )
        print("|---|---|---|---|---|---|---|")
        for size in args.sizes:
            atoms = tobermorite_11a() * reps[size]
            ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, eager.cutoff)
            for th in args.threads:
                torch.set_num_threads(th)
                t = {k: time_calls(p, atoms, ei, sh, args.reps, warmup=2) for k, p in pots.items()}
                print(
                    f"| {len(atoms)} | {th} | {1e3 * t['eager']:.0f} | {1e3 * t['compiled']:.0f} | {1e3 * t['compiled-old']:.0f} | "
                    f"{t['eager'] / t['compiled']:.2f} | {t['eager'] / t['compiled-old']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
