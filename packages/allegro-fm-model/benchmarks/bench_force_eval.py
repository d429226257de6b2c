"""Benchmark: force evaluation of FM64 and FM256 on a periodic 1000-atom system on this CPU.

For each preset, in one run:
- atom-steps/s of the engine's Potential call (energy + forces + virial) in every mode that runs here:
  ``eager`` (AllegroPotential, nequip eager PyTorch) and ``aotinductor`` (CompiledAllegroPotential: the
  ``.nequip.pt2`` file that ``allegro-fm export --compiled`` writes; compile time reported), and the experiment
  ``eager-bmm`` (nequip-allegro's tensor-product contraction rewritten as one batched GEMM, patched in for this
  measurement only). TorchScript is not offered: nequip refuses it on torch >= 2.10;
- the model's FLOPs per step (torch.utils.flop_counter, forward + backward) and the achieved fraction of the
  machine's dense fp32 matmul rate (torch.mm 2048^3, same threads: the peer, measured in the same run);
- where the time goes (torch.profiler on the eager step, grouped: GEMM, gather/scatter, element-wise, other)
  and the matmul rate at the model's own GEMM shapes (the ceiling those shapes allow on this CPU).

    python packages/allegro-fm-model/benchmarks/bench_force_eval.py [--reps 5] [--presets FM64 FM256] [--modes eager aotinductor]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def matmul_rate(n: int = 2048, reps: int = 10, m: int | None = None, k: int | None = None) -> float:
    """fp32 matmul FLOP/s of this machine for (m x k) @ (k x n) (default square n), best of ``reps``."""
    import torch

    m, k = m or n, k or n
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * m * n * k / best


def system():
    """CaO rocksalt 5x5x5 (1000 atoms), rattled: a periodic oxide with ~40 neighbours per atom at 5.2 A."""
    from ase.build import bulk

    a = bulk("CaO", "rocksalt", a=4.81, cubic=True) * (5, 5, 5)
    a.rattle(0.05, seed=0)
    return a


def _inputs(pot, positions, types, ei, shifts):
    import torch
    from nequip.data import AtomicDataDict as K

    pos = torch.as_tensor(positions, dtype=pot.dtype)
    eit = torch.as_tensor(ei)
    vec = (pos[eit[1]] - pos[eit[0]] + torch.as_tensor(shifts, dtype=pot.dtype)).requires_grad_(
        True
    )
    return {
        K.POSITIONS_KEY: pos,
        K.EDGE_INDEX_KEY: eit,
        K.ATOM_TYPE_KEY: torch.as_tensor(types),
        K.EDGE_VECTORS_KEY: vec,
    }


def step_flops(pot, positions, types, ei, shifts) -> int:
    """FLOPs of one energy + force evaluation: the energy graph forward and its backward to edge vectors."""
    from nequip.data import AtomicDataDict as K
    from torch.utils.flop_counter import FlopCounterMode

    data = _inputs(pot, positions, types, ei, shifts)
    with FlopCounterMode(display=False) as fc:
        out = pot._energy_model(data)
        out[K.PER_ATOM_ENERGY_KEY].sum().backward()
    return fc.get_total_flops()


GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
GATHER = (
    "aten::index",
    "aten::index_select",
    "aten::index_add_",
    "aten::scatter_add_",
    "aten::index_put_",
    "aten::embedding",
    "aten::gather",
    "aten::scatter",
    "aten::_index_put_impl_",
    "aten::index_add",
    "aten::embedding_dense_backward",
    "aten::index_select_backward",
    "aten::new_zeros",
    "aten::zeros",
)


def profile(pot, positions, types, ei, shifts) -> tuple[dict, list]:
    """Self-CPU time shares of the eager step by op group, the GEMM shapes with their self time (us), the top ops."""
    import torch
    from nequip.data import AtomicDataDict as K
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    data = _inputs(pot, positions, types, ei, shifts)
    with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = pot._energy_model(data)
        torch.autograd.grad(out[K.PER_ATOM_ENERGY_KEY].sum(), data[K.EDGE_VECTORS_KEY])
    groups: dict[str, float] = defaultdict(float)
    shapes: dict[tuple, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages(group_by_input_shape=True):
        ops[ev.key] += ev.self_cpu_time_total
        t = ev.self_cpu_time_total
        if ev.key in ("aten::mm", "aten::addmm", "aten::bmm") and ev.input_shapes:
            s = [tuple(x) for x in ev.input_shapes if isinstance(x, list) and len(x) >= 2]
            if len(s) >= 2:
                shapes[(ev.key, s[-2], s[-1])] += t
        g = (
            "GEMM"
            if ev.key in GEMM
            else "gather/scatter"
            if ev.key in GATHER
            else (
                "autograd/other"
                if ev.key.startswith(
                    ("autograd", "torch::autograd", "aten::empty", "aten::view", "aten::reshape")
                )
                else "element-wise and reductions"
            )
        )
        groups[g] += t
    total = sum(groups.values())
    top = [(k, t / total) for k, t in sorted(ops.items(), key=lambda x: -x[1])[:6]]
    return (
        {g: t / total for g, t in sorted(groups.items(), key=lambda x: -x[1])},
        sorted(shapes.items(), key=lambda x: -x[1])[:4],
        top,
    )


def _contract_bmm(self, x1, x2, idxs):
    """nequip-allegro's strided contraction with the channel-coupled path sum as one batched GEMM per channel
    ((u, E, ij) @ (u, ij, k)) instead of a broadcast multiply + sum over an (E, u, ij, k) temporary. Same maths."""
    import torch

    x2 = torch.index_select(x2, 0, idxs)
    ww3j = torch.einsum(self._weight_w3j_einstr, self.weights, self.w3j)
    if not self.path_channel_coupling:
        return _ORIGINAL[0](self, x1, x2, torch.arange(len(x2), device=x2.device))
    outer = x1 * x2 if self.w3j_is_ij_diagonal else (x1.unsqueeze(-1) * x2.unsqueeze(-2)).flatten(2)
    w = ww3j.reshape(ww3j.size(0), -1, ww3j.size(-1))
    return torch.bmm(outer.transpose(0, 1), w).transpose(0, 1)


_ORIGINAL: list = []


class contraction_as_bmm:
    """Context manager: nequip-allegro's Contracter uses ``_contract_bmm`` (a benchmark experiment, not product code)."""

    def __enter__(self):
        from allegro.nn._strided._contract import Contracter

        _ORIGINAL.append(Contracter._contract_conv)
        Contracter._contract_conv = _contract_bmm

    def __exit__(self, *exc):
        from allegro.nn._strided._contract import Contracter

        Contracter._contract_conv = _ORIGINAL.pop()


def time_calls(pot, atoms, ei, sh, reps: int, warmup: int = 1) -> float:
    """Median seconds of ``pot.compute`` on the whole periodic system (after ``warmup`` calls)."""
    types = pot.types_of(atoms.get_chemical_symbols())
    for _ in range(warmup):
        pot.compute(atoms.positions, types, ei, len(atoms), sh)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        pot.compute(atoms.positions, types, ei, len(atoms), sh)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench(preset: str, reps: int, modes: list[str]) -> None:
    import torch
    from allegro_fm_model import (
        AllegroPotential,
        CompiledAllegroPotential,
        build_model,
        periodic_edges,
    )
    from allegro_fm_model.compiled import compile_graph_model
    from tea_align import ALLEGRO_FM_ELEMENTS

    atoms = system()
    model = build_model(preset)
    pot = AllegroPotential(model, ALLEGRO_FM_ELEMENTS, cutoff=5.2)
    types = pot.types_of(atoms.get_chemical_symbols())
    ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, 5.2)
    gemm_only = step_flops(pot, atoms.positions, types, ei, sh)
    with (
        contraction_as_bmm()
    ):  # the same maths with the tensor product as GEMMs: the counter sees all of it
        flops = step_flops(pot, atoms.positions, types, ei, sh)
    print(
        f"\n{preset}: {len(atoms)} atoms, {ei.shape[1]} edges, {flops / 1e9:.2f} GFLOP/step (forward + backward, "
        f"tensor-product contractions included; {gemm_only / 1e9:.2f} in the eager graph's own GEMMs), "
        f"{torch.get_num_threads()} threads"
    )
    steps = {}
    for mode in modes:
        peak = matmul_rate(
            reps=5
        )  # the peer, re-measured next to each mode (it drifts with clocks and load)
        if mode == "eager":
            steps[mode] = time_calls(pot, atoms, ei, sh, reps)
            extra = ""
        elif mode == "eager-bmm":
            r0 = pot.compute(atoms.positions, types, ei, len(atoms), sh)
            with contraction_as_bmm():
                steps[mode] = time_calls(pot, atoms, ei, sh, reps)
                r1 = pot.compute(atoms.positions, types, ei, len(atoms), sh)
            extra = f", |dF|max {np.abs(r0.forces - r1.forces).max():.1e} eV/A"
        elif mode == "aotinductor":
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                path = compile_graph_model(
                    model, Path(d) / f"{preset}.nequip.pt2", "cpu", example=atoms[:64]
                )
                ct = time.perf_counter() - t
                cpot = CompiledAllegroPotential(path)
                steps[mode] = time_calls(cpot, atoms, ei, sh, reps)
                r0 = pot.compute(atoms.positions, types, ei, len(atoms), sh)
                r1 = cpot.compute(atoms.positions, types, ei, len(atoms), sh)
                extra = (
                    f", compile {ct:.0f} s, |dF|max {np.abs(r0.forces - r1.forces).max():.1e} eV/A"
                )
        else:
            raise ValueError(f"unknown mode {mode!r}")
        s = steps[mode]
        print(
            f"  {mode:12s} {s * 1e3:8.0f} ms/step  {len(atoms) / s:8.0f} atom-steps/s  "
            f"{flops / s / 1e9:6.1f} GFLOP/s = {100 * flops / s / peak:5.1f} % of the matmul rate ({peak / 1e9:.0f} GFLOP/s)"
            + (
                f"  ({steps['eager'] / s:.2f}x eager)"
                if mode != "eager" and "eager" in steps
                else ""
            )
            + extra
        )
    groups, shapes, top = profile(pot, atoms.positions, types, ei, sh)
    print(
        "  eager step time by op group: "
        + ", ".join(f"{g} {100 * f:.0f} %" for g, f in groups.items())
    )
    print("  top ops: " + ", ".join(f"{k} {100 * f:.0f} %" for k, f in top))
    peak = matmul_rate(reps=5)
    for (op, a, b), t in shapes:
        m, k = a[-2], a[-1]
        n = b[-1]
        if len(a) == 2 and len(b) == 2 and k == b[0]:
            r = matmul_rate(m=m, k=k, n=n, reps=5)
            print(
                f"  GEMM {op} {a} @ {b}: {t / 1e3:.0f} ms self time; torch.mm at this shape alone runs at "
                f"{r / 1e9:.1f} GFLOP/s = {100 * r / peak:.0f} % of the 2048^3 rate"
            )


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--presets", nargs="+", default=["FM64", "FM256"])
    ap.add_argument("--modes", nargs="+", default=["eager", "eager-bmm", "aotinductor"])
    args = ap.parse_args()
    print(
        f"peer: dense fp32 matmul (2048^3, torch.mm, {torch.get_num_threads()} threads), measured before each mode"
    )
    for p in args.presets:
        bench(p, args.reps, args.modes)


if __name__ == "__main__":
    main()
