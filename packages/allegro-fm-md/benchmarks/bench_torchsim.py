"""Benchmark: allegro-fm-md against TorchSim on the same structure, model and thread count, in one run.

    python packages/allegro-fm-md/benchmarks/bench_torchsim.py [--reps 2 2 1] [--steps 40] [--threads 1]

The README's main job (tobermorite 11 A, 2x2x1 = 352 atoms, the shipped Allegro-FM-mini, eager) for ``--steps``
NVE steps of 0.5 fs: allegro-fm-md's engine (Verlet lists with a skin, one Potential call a step), TorchSim's NVE
with ``allegro_fm_model.torchsim.AllegroFMModel`` (edges rebuilt every step, the same Potential call), and TorchSim's
NVE with nequip's own TorchSim calculator on the same ``.nequip.zip`` (eager; reached through nequip's
``_from_saved_model``, the only loader it has for a packaged file: a peer measured here, not used by the product).
Prints atom-steps/s of each and the ratios allegro-fm-md / TorchSim (> 1: the engine is faster), after one warm-up
step each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch_sim as ts
from allegro_fm_bench.structures import tobermorite_11a
from allegro_fm_md import ForceEvaluator, VelocityVerlet
from allegro_fm_model import builtin_model_path, load_potential
from allegro_fm_model.torchsim import AllegroFMModel
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution


def _engine(atoms, pot, steps: int) -> float:
    """Seconds per step of allegro-fm-md's NVE (one rank)."""
    ev = ForceEvaluator(pot, pot.types_of(atoms.get_chemical_symbols()), skin=1.0)
    st = ev.initial_state(atoms)
    integ = VelocityVerlet(0.5)
    integ.step(st, ev)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        integ.step(st, ev)
    return (time.perf_counter() - t) / steps


def _torchsim(atoms, model, steps: int) -> float:
    """Seconds per step of TorchSim's NVE with ``model``."""
    ts.integrate(
        system=[atoms],
        model=model,
        integrator=ts.nve,
        n_steps=1,
        temperature=300.0,
        timestep=0.0005,
    )
    t = time.perf_counter()
    ts.integrate(
        system=[atoms],
        model=model,
        integrator=ts.nve,
        n_steps=steps,
        temperature=300.0,
        timestep=0.0005,
    )
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, nargs=3, default=(2, 2, 1))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument(
        "--compiled",
        default="",
        help="a .nequip.pt2 of the shipped model: allegro-fm-md and "
        "AllegroFMModel run it (nequip's calculator stays eager)",
    )
    args = ap.parse_args()
    atoms = tobermorite_11a() * tuple(args.reps)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    pot = load_potential(args.compiled or "allegro-fm-mini")
    kind = "compiled for allegro-fm-md and AllegroFMModel" if args.compiled else "eager"
    print(f"{len(atoms)} atoms, {args.steps} NVE steps of 0.5 fs, shipped model ({kind})")
    from nequip.integrations.torchsim import NequIPTorchSimCalc  # lazy: the peer, only here

    nequips = NequIPTorchSimCalc._from_saved_model(
        str(builtin_model_path("allegro-fm-mini")), device="cpu"
    )
    print(
        "| threads | allegro-fm-md | TorchSim + AllegroFMModel | TorchSim + nequip's calculator "
        "| md / ours | md / nequip's |"
    )
    print("|---|---|---|---|---|---|")
    for n in args.threads:
        torch.set_num_threads(n)
        md = _engine(atoms, pot, args.steps)
        ours, theirs = (
            _torchsim(atoms, AllegroFMModel(pot), args.steps),
            _torchsim(atoms, nequips, args.steps),
        )
        print(
            f"| {n} | {len(atoms) / md:.0f} | {len(atoms) / ours:.0f} | {len(atoms) / theirs:.0f} | "
            f"{ours / md:.2f} | {theirs / md:.2f} |"
        )


if __name__ == "__main__":
    main()
