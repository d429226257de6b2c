"""How many images the bench's NEB needs: the bench's own band (``neb.band``: IDPP start, FIRE without and then with the
climbing image, at most 200 + 200 steps to 0.05 eV/A) for the in-plane and the H2O-rotation pathway of H2CO3 -> H2O +
CO2 at several image counts, with a model or with SevenNet-0 (the PBE stand-in, the molecule in a 14 A periodic box:
a smooth reference PES). Prints, per band: converged or not, the residual NEB force (eV/A), the highest image and the
profile (kcal/mol, the calculator's own energies, relative to the reactant).

    python scripts/check_neb_images.py sevenn-0 7 11          # ~40 min on one busy core
    python scripts/check_neb_images.py allegro-fm-mini 7 11 15 # ~10 min

Measured 2026-12-01 (model card, Bench): SevenNet-0 in-plane, 7 images NOT converged (0.094 eV/A, no image above the
reactant), 11 converged (0.048 eV/A, 32.7 kcal/mol); hence the bench's 11 images.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from allegro_fm_bench.neb import band, endpoints, energies, rotated_water
from ase.calculators.calculator import Calculator, all_changes


class InBox(Calculator):
    """A periodic calculator (SevenNet-0 knows crystals) on a molecule: the molecule centred in a ``box`` A cube."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, calc, box: float = 14.0):
        super().__init__()
        self.inner, self.box = calc, box

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.cell, a.pbc = [self.box] * 3, True
        a.center()
        a.calc = self.inner
        self.results = {"energy": a.get_potential_energy(), "forces": a.get_forces()}


def main(model: str = "allegro-fm-mini", *counts: str) -> int:
    torch.set_num_threads(1)
    if model == "sevenn-0":
        from allegro_fm_bench.mini.peers import peer_calculator

        calc = InBox(peer_calculator("sevenn-0"))
    else:
        from allegro_fm_model import AllegroFMCalculator, load_potential

        calc = AllegroFMCalculator(load_potential(model))
    reactant, product = endpoints(calc)
    for name, via in (("in-plane", None), ("H2O rotation", rotated_water(product))):
        for n in map(int, counts or ("7", "11")):
            t = time.time()
            images, fmax, ok = band(calc, reactant, product, n, via=via, steps=200)
            e = energies(images, calc)
            print(
                f"{name:>12} {n:2d} images: {'converged' if ok else 'NOT converged'}, max NEB force {fmax:.3f} eV/A, "
                f"highest image {e.max():.1f} kcal/mol, profile {np.round(e, 1).tolist()} ({time.time() - t:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
