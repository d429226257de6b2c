"""Peak memory and cost of one force evaluation of the shipped model at growing sizes, whole vs chunked
(``ChunkedPotential``: at most ``--max-edges`` edges per model call), each size in its own process (VmHWM).

    python packages/allegro-fm-md/benchmarks/bench_chunked_memory.py [--sizes 3000 30000 100000] [--max-edges 50000]

Tobermorite 11 A supercells (88-atom cell), one torch thread; a first evaluation of 352 atoms warms numba's kernels
and torch (reported apart), then one evaluation of the target size is timed, halo and neighbour list built in it;
the whole evaluation is skipped above --whole-max atoms
(it would not fit: ~0.5 MiB per atom). Prints atoms, edges, seconds, us per atom, peak MiB and MiB per atom, and the
cost per atom relative to the smallest size (the issue's target: >= 0.9x atom-steps/s at 100 000 vs ~3 000 atoms).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from allegro_fm_bench.structures import tobermorite_11a
from allegro_fm_md import ForceEvaluator
from allegro_fm_md.chunked import ChunkedPotential
from allegro_fm_model import load_potential
n_target, max_edges, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t = tobermorite_11a()
reps = np.maximum(1, np.round((n_target / len(t)) ** (1 / 3) * np.array([1.3, 1.2, 0.65]))).astype(int)
a = t * tuple(int(r) for r in reps)
pot = load_potential(model)
if max_edges:
    pot = ChunkedPotential(pot, max_edges)
w = t * (2, 2, 1)  # warm-up on 352 atoms: numba kernels, torch/AOTInductor start-up (not what a step costs)
t0 = time.perf_counter()
ForceEvaluator(pot, pot.types_of(w.get_chemical_symbols()), skin=0.0).compute(w.positions.copy(), np.array(w.cell), w.pbc)
first = time.perf_counter() - t0
ev = ForceEvaluator(pot, pot.types_of(a.get_chemical_symbols()), skin=0.0)
t0 = time.perf_counter()  # timed: halo, neighbour list and every model call of one evaluation of the target size
_, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
dt = time.perf_counter() - t0
edges = int(ev.verlet._edges.shape[1])
peak = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))) / 1024
print(json.dumps({"atoms": len(a), "edges": edges, "seconds": dt, "first_seconds": first, "peak_MiB": peak, "energy": float(r.energy),
                  "calls": getattr(pot, "calls", 1)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 100000])
    ap.add_argument("--max-edges", type=int, default=50000)
    ap.add_argument(
        "--model",
        default="allegro-fm-mini",
        help="model file or shipped name (e.g. a compiled .nequip.pt2)",
    )
    ap.add_argument(
        "--whole-max", type=int, default=12000, help="largest size evaluated whole (unchunked)"
    )
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        for chunk in ([0] if n <= args.whole_max else []) + [args.max_edges]:
            out = subprocess.run(
                [sys.executable, "-c", WORKER, str(n), str(chunk), args.model],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["mode"] = f"chunked ({chunk} edges/call, {r['calls']} calls)" if chunk else "whole"
            rows.append(r)
            print(
                f"{r['mode']:>34}: {r['atoms']:>7} atoms {r['edges']:>9} edges {r['seconds']:8.1f} s "
                f"{r['seconds'] / r['atoms'] * 1e6:7.1f} us/atom, peak {r['peak_MiB']:8.0f} MiB "
                f"({r['peak_MiB'] / r['atoms'] * 1024:.1f} KiB/atom)",
                flush=True,
            )
    base = min((r for r in rows if r["mode"] != "whole"), key=lambda r: r["atoms"])
    whole = [r for r in rows if r["mode"] == "whole"]
    if whole:  # the peer measured in this run: the whole (unchunked) evaluation
        w = max(whole, key=lambda r: r["atoms"])
        for r in rows:
            if r["mode"] != "whole":
                print(
                    f"{r['atoms']} atoms chunked vs {w['atoms']} atoms whole: peak memory x{r['peak_MiB'] / w['peak_MiB']:.2f}, "
                    f"cost per atom x{(r['seconds'] / r['atoms']) / (w['seconds'] / w['atoms']):.2f}"
                )
    print(
        "\n| mode | atoms | edges | s per evaluation | us per atom | peak MiB | KiB per atom | atom-steps/s vs smallest |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rel = (base["seconds"] / base["atoms"]) / (r["seconds"] / r["atoms"])
        print(
            f"| {r['mode']} | {r['atoms']} | {r['edges']} | {r['seconds']:.1f} | {r['seconds'] / r['atoms'] * 1e6:.1f} | "
            f"{r['peak_MiB']:.0f} | {r['peak_MiB'] / r['atoms'] * 1024:.1f} | {rel:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
