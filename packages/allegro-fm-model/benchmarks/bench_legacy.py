"""Benchmark: a nequip 0.6.x deployed TorchScript model (the published Allegro-FM weights' format) in our engine vs
the same file through nequip 0.6.1's own ASE calculator, in the same run, on the same machine.

    python packages/allegro-fm-model/benchmarks/bench_legacy.py --legacy-python runs/legacy-venv/bin/python \
        [--model FILE.pth] [--reps 3 3 1] [--steps 40] [--threads 1]

Same model (default: the test fixture, a tiny Allegro 0.3.0; pass the published afm256_01_HL.pt if you have it), same
system (calcite, hexagonal cell, replicated --reps; velocities at 300 K), NVE velocity Verlet 0.5 fs, --threads torch
threads in both processes:
  ours: allegro-fm-md's engine (``time_engine``: Verlet lists with a skin, kept between steps; LegacyAllegroPotential);
  peer: ase.md.VelocityVerlet with ``nequip.ase.NequIPCalculator.from_deployed_model`` (nequip 0.6.1, in the
        legacy environment made by scripts/legacy_fixture/make_legacy_fixture.sh: it builds its neighbour list at
        every call).
Prints atom-steps/s of both, the ratio ours / peer, and both step-0 energies (they must agree to float32 round-off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "legacy"

PEER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import ase.io, torch
from ase.md.verlet import VelocityVerlet
from ase import units
from nequip.ase import NequIPCalculator
from nequip.scripts.deploy import load_deployed_model
model, structure, steps, threads, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
a = ase.io.read(structure)
names = load_deployed_model(model, freeze=False)[1]["type_names"].split()
a.calc = NequIPCalculator.from_deployed_model(model, species_to_type_name={s: s for s in names})
e0 = a.get_potential_energy()
md = VelocityVerlet(a, 0.5 * units.fs)
md.run(warmup)
t = time.perf_counter()
md.run(steps)
wall = time.perf_counter() - t
print(json.dumps({"energy0": e0, "wall_s": wall, "atom_steps_per_s": len(a) * steps / wall}))
"""


def system(reps):
    """Calcite (from the fixture's reference structures) x reps with Maxwell-Boltzmann velocities at 300 K (seeded)."""
    import ase.io
    import numpy as np
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    a = ase.io.read(FIXTURE / "structures.extxyz", 1) * tuple(reps)
    MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(a)
    return a


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--legacy-python",
        required=True,
        help="python of an environment with nequip==0.6.1 + Allegro 0.3.0",
    )
    ap.add_argument("--model", default=str(FIXTURE / "legacy-allegro-0.3.0.pth"))
    ap.add_argument("--reps", type=int, nargs=3, default=[3, 3, 1])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--profiling-executor",
        action="store_true",
        help="run ours under TorchScript's profiling executor (nequip's) instead of our CPU default, the simple one",
    )
    args = ap.parse_args(argv)

    import torch
    from allegro_fm_md.scaling import time_engine
    from allegro_fm_model import AllegroFMCalculator, load_potential

    torch.set_num_threads(args.threads)
    pot = load_potential(args.model)
    if args.profiling_executor:
        torch._C._jit_set_profiling_executor(
            True
        )  # after loading: load_potential chose the simple one on CPU
    print(pot.describe() + (" [profiling executor]" if args.profiling_executor else ""))
    a = system(args.reps)
    b = a.copy()
    b.calc = AllegroFMCalculator(pot)
    e0 = b.get_potential_energy()
    with tempfile.TemporaryDirectory() as d:
        import ase.io

        structure = Path(d) / "system.extxyz"
        ase.io.write(structure, a)
        env = dict(
            os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS=str(args.threads)
        )
        t = time.perf_counter()
        p = subprocess.run(
            [
                args.legacy_python,
                "-c",
                PEER,
                args.model,
                str(structure),
                str(args.steps),
                str(args.threads),
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if p.returncode:
            print(
                f"peer failed ({time.perf_counter() - t:.0f} s):\n{p.stderr[-3000:]}",
                file=sys.stderr,
            )
            return 1
        peer = json.loads(p.stdout.strip().splitlines()[-1])
    ours = time_engine(a, pot, args.steps, warmup=args.warmup)
    print(
        f"system: calcite x {tuple(args.reps)} = {len(a)} atoms, NVE 0.5 fs, {args.steps} timed steps after {args.warmup}, "
        f"{args.threads} torch thread(s)"
    )
    print(
        f"step-0 energy: ours {e0:.6f} eV, nequip 0.6.1 {peer['energy0']:.6f} eV (difference {e0 - peer['energy0']:+.2e} eV)"
    )
    print(
        f"allegro-fm-md engine:                  {ours['atom_steps_per_s']:10.1f} atom-steps/s "
        f"(model {100 * ours['model_s'] / ours['wall_s']:.0f} % of the step)"
    )
    print(f"nequip 0.6.1 NequIPCalculator + ASE:   {peer['atom_steps_per_s']:10.1f} atom-steps/s")
    print(f"ratio ours / peer: {ours['atom_steps_per_s'] / peer['atom_steps_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
