"""Benchmark: force evaluation of FM64 and FM256 on a periodic ~1000-atom system on this CPU.

For each preset it measures, in one run:
- atom-steps/s of ``AllegroPotential.compute`` (energy + forces + virial, eager PyTorch);
- the model's FLOPs per step (torch.utils.flop_counter over forward + backward);
- the machine's dense fp32 matmul rate (torch.mm of 2048 x 2048, same threads), the peer;
- the achieved fraction of that rate = FLOPs/step x steps/s / matmul FLOP/s.

    python packages/allegro-fm-model/benchmarks/bench_force_eval.py [--reps 5] [--presets FM64 FM256]

Compiled modes (AOTInductor) are not measured yet: the compiled path is unfinished (see the README).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def matmul_rate(n: int = 2048, reps: int = 10) -> float:
    """Dense fp32 matmul FLOP/s of this machine (best of ``reps``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def system():
    """CaO rocksalt 5x5x5 (1000 atoms), rattled: a periodic oxide with ~40 neighbours per atom at 5.2 A."""
    from ase.build import bulk

    a = bulk("CaO", "rocksalt", a=4.81, cubic=True) * (5, 5, 5)
    a.rattle(0.05, seed=0)
    return a


def step_flops(pot, positions, types, ei, shifts) -> int:
    """FLOPs of one energy + force evaluation: the energy graph forward and its backward to edge vectors."""
    import torch
    from nequip.data import AtomicDataDict as K
    from torch.utils.flop_counter import FlopCounterMode

    pos = torch.as_tensor(positions, dtype=pot.dtype)
    eit = torch.as_tensor(ei)
    vec = (pos[eit[1]] - pos[eit[0]] + torch.as_tensor(shifts, dtype=pot.dtype)).requires_grad_(True)
    data = {K.POSITIONS_KEY: pos, K.EDGE_INDEX_KEY: eit, K.ATOM_TYPE_KEY: torch.as_tensor(types), K.EDGE_VECTORS_KEY: vec}
    with FlopCounterMode(display=False) as fc:
        out = pot._energy_model(data)
        out[K.PER_ATOM_ENERGY_KEY].sum().backward()
    return fc.get_total_flops()


def bench(preset: str, reps: int) -> dict:
    import torch
    from allegro_fm_model import AllegroPotential, build_model, periodic_edges

    atoms = system()
    model = build_model(preset)
    from tea_align import ALLEGRO_FM_ELEMENTS

    pot = AllegroPotential(model, ALLEGRO_FM_ELEMENTS, cutoff=5.2)
    types = pot.types_of(atoms.get_chemical_symbols())
    ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, 5.2)
    pot.compute(atoms.positions, types, ei, len(atoms), sh)  # warm-up
    flops = step_flops(pot, atoms.positions, types, ei, sh)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        pot.compute(atoms.positions, types, ei, len(atoms), sh)
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    return {"preset": preset, "atoms": len(atoms), "edges": ei.shape[1], "step_s": step, "atom_steps_per_s": len(atoms) / step,
            "flops_per_step": flops, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--presets", nargs="+", default=["FM64", "FM256"])
    args = ap.parse_args()
    peak = matmul_rate()
    print(f"dense fp32 matmul (2048^3, torch.mm): {peak / 1e9:.1f} GFLOP/s")
    for p in args.presets:
        r = bench(p, args.reps)
        achieved = r["flops_per_step"] / r["step_s"]
        print(f"{p}: {r['atoms']} atoms, {r['edges']} edges, {r['step_s'] * 1e3:.0f} ms/step (eager), "
              f"{r['atom_steps_per_s']:.0f} atom-steps/s, {r['flops_per_step'] / 1e9:.2f} GFLOP/step, "
              f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f} % of the matmul rate")
        peak = matmul_rate()  # re-measure the peer between presets (thermal/turbo drift)


if __name__ == "__main__":
    main()
