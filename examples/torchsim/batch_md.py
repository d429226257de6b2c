"""Many small systems at once in TorchSim with the shipped Allegro-FM-mini model (allegro_fm_model.torchsim).

    python examples/torchsim/batch_md.py [--systems 8] [--steps 100] [--model allegro-fm-mini]

Eight rattled cells (silicon and lime, the shipped model's elements) are integrated together by TorchSim's NVT
Langevin at 300 K (1 fs steps); the final potential energy per atom of each system is printed (eV/atom).
"""

from __future__ import annotations

import argparse

import torch_sim as ts
from allegro_fm_model.torchsim import AllegroFMModel
from ase.build import bulk


def main(argv: list[str] | None = None) -> list[float]:
    """Run the batch; returns the final energies per atom (eV/atom), one per system."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--model", default="allegro-fm-mini")
    args = ap.parse_args(argv)
    base = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("CaO", "rocksalt", a=4.81, cubic=True)]
    systems = []
    for k in range(args.systems):
        a = base[k % 2].copy()
        a.rattle(0.03, seed=k)
        systems.append(a)
    model = AllegroFMModel(args.model)
    final = ts.integrate(
        system=systems,
        model=model,
        integrator=ts.nvt_langevin,
        n_steps=args.steps,
        temperature=300.0,  # K
        timestep=0.001,  # ps
    )
    energies = model(final)["energy"]
    per_atom = [float(e) / len(a) for e, a in zip(energies, systems, strict=True)]
    for k, (e, a) in enumerate(zip(per_atom, systems, strict=True)):
        print(
            f"system {k}: {a.get_chemical_formula()}, {len(a)} atoms, {e:.4f} eV/atom after {args.steps} steps"
        )
    return per_atom


if __name__ == "__main__":
    main()
