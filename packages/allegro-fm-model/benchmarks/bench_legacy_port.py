"""Benchmark: a nequip 0.6.x / Allegro 0.3.0 deployed file (the published weights' format) compiled through its port
(``legacy_port.py`` -> AOTInductor ``.nequip.pt2``) against the same file as TorchScript, in one run on one machine.

    python packages/allegro-fm-model/benchmarks/bench_legacy_port.py [--model FILE.pth] [--reps 3 3 4  5 5 4]
        [--threads 1 2] [--calls 5] [--md-steps 20]

Model: default the FM256-size fixture (runs/legacy-fm256/legacy-fm256.pth, made by
scripts/legacy_fixture/make_legacy_fixture.sh --fm256: the published FM256's hyperparameters, 780 k parameters); pass
afm256_01_HL.pt itself if you have it. Systems: calcite (the fixture's hexagonal 30-atom cell) x --reps triples
(default 1 080 and 3 000 atoms).
  1. force calls: median ms of ``compute`` (energy, forces, virial of the whole periodic cell, same neighbour list)
     for TorchScript (``LegacyAllegroPotential``: what pair_allegro v0.6 and RXMD-NN run) and the compiled port
     (``CompiledAllegroPotential``), at each thread count; ratio TorchScript / compiled.
  2. allegro-fm-md: NVE steps of the first system through ``time_engine`` (Verlet lists, 1 rank) with each potential;
     atom-steps/s and ratio compiled / TorchScript.
The compiled file is built once (a C++ build: minutes for FM256) and checked against the TorchScript original.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "legacy"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "runs" / "legacy-fm256" / "legacy-fm256.pth"))
    ap.add_argument(
        "--reps",
        type=int,
        nargs="+",
        default=[3, 3, 4, 5, 5, 4],
        help="calcite supercells, three integers each",
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--md-steps", type=int, default=20)
    args = ap.parse_args(argv)
    if len(args.reps) % 3:
        ap.error("--reps takes triples")
    model = Path(args.model)
    if not model.exists():
        ap.error(
            f"{model} not found: make it with bash packages/allegro-fm-model/scripts/legacy_fixture/"
            "make_legacy_fixture.sh --fm256, or pass --model"
        )

    import ase.io
    import torch
    from allegro_fm_md.scaling import time_engine
    from allegro_fm_model import LegacyAllegroPotential, load_potential, periodic_edges
    from allegro_fm_model.export import compile_model

    torch.set_num_threads(1)
    script = LegacyAllegroPotential(model)
    print(script.describe())
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        compiled = load_potential(compile_model(model, Path(d) / "port.nequip.pt2"))
        print(
            f"compiled the port in {time.perf_counter() - t:.0f} s (checked against the TorchScript original)",
            flush=True,
        )
        base = ase.io.read(FIXTURE / "structures.extxyz", 1)
        systems = [base * tuple(args.reps[i : i + 3]) for i in range(0, len(args.reps), 3)]
        print(
            "\n| atoms | threads | TorchScript ms/call | compiled ms/call | TorchScript / compiled |"
        )
        print("|---|---|---|---|---|")
        for atoms in systems:
            ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, script.cutoff)
            types = script.types_of(atoms.get_chemical_symbols())
            ra = script.compute(atoms.positions, types, ei, len(atoms), sh)
            rb = compiled.compute(atoms.positions, types, ei, len(atoms), sh)
            de = abs(ra.energy - rb.energy) / abs(ra.energy)
            df = float(np.abs(ra.forces - rb.forces).max())
            for th in args.threads:
                torch.set_num_threads(th)
                ms = {}
                for name, pot in (("script", script), ("compiled", compiled)):
                    pot.compute(atoms.positions, types, ei, len(atoms), sh)  # warm-up
                    times = []
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        pot.compute(atoms.positions, types, ei, len(atoms), sh)
                        times.append(time.perf_counter() - t)
                    ms[name] = 1e3 * float(np.median(times))
                print(
                    f"| {len(atoms)} | {th} | {ms['script']:.0f} | {ms['compiled']:.0f} | "
                    f"{ms['script'] / ms['compiled']:.2f} |",
                    flush=True,
                )
            print(
                f"  ({len(atoms)} atoms: compiled - TorchScript energy {de:.1e} relative, forces {df:.1e} eV/A)"
            )
        torch.set_num_threads(1)
        a = systems[0]
        md = {
            name: time_engine(a, pot, args.md_steps, warmup=2)
            for name, pot in (("script", script), ("compiled", compiled))
        }
        print(
            f"\nallegro-fm-md, {len(a)} atoms, NVE 0.5 fs, {args.md_steps} steps, 1 rank, 1 thread: "
            f"TorchScript {md['script']['atom_steps_per_s']:.0f} atom-steps/s, compiled "
            f"{md['compiled']['atom_steps_per_s']:.0f} atom-steps/s, ratio compiled / TorchScript "
            f"{md['compiled']['atom_steps_per_s'] / md['script']['atom_steps_per_s']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
