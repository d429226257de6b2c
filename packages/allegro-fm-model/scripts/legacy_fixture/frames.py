"""Stage 1 of the legacy fixture (run in the workspace environment): training frames and the reference structures.

    python frames.py OUTDIR

Writes OUTDIR/train.extxyz (rattled/strained portlandite, calcite, quartz, tobermorite 11 A and boxed H/C/O molecules,
labelled by the shipped Allegro-FM-mini model: the labels only need to be smooth, the fixture tests a file format, not accuracy) and
OUTDIR/structures.extxyz (the reference structures nequip 0.6.1 is evaluated on: a small triclinic cell whose edge is
shorter than the cutoff, a hexagonal cell, an open molecule). Seeded: the same frames on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
from allegro_fm_bench.structures import (
    calcite,
    portlandite,
    quartz,
)  # the project's crystal builders
from allegro_fm_model import AllegroFMCalculator, load_potential
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write


def boxed(name: str, side: float = 10.0) -> Atoms:
    m = molecule(name)
    m.set_cell([side] * 3)
    m.pbc = True
    m.center()
    return m


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    rng = np.random.default_rng(7)
    frames = []
    t11 = ase.io.read(
        Path(__file__).resolve().parents[4]
        / "examples"
        / "tobermorite-11a"
        / "tobermorite-11A.extxyz"
    )
    bases = [portlandite().repeat((2, 2, 1)), calcite(), quartz()] + [
        boxed(n) for n in ("H2O", "CO2", "CH3OH", "HCOOH", "CH3COOH")
    ]
    bases.append(
        t11
    )  # tobermorite 11 A (the repository's relaxed cell): the bench's experiments relax and run it
    for base in bases:
        for k in range(6):
            a = base.copy()
            if a.pbc.all() and len(a) > 10:
                a.set_cell(
                    a.cell[:] @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True
                )
            a.positions += rng.normal(0, 0.04 + 0.02 * k, a.positions.shape)
            a.calc = calc
            e, f = a.get_potential_energy(), a.get_forces()
            s = a.get_stress(voigt=False) if a.pbc.all() else None
            a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
            frames.append(a)
    write(out / "train.extxyz", frames, format="extxyz")
    p = portlandite()
    p.set_cell(
        p.cell[:]
        @ (np.eye(3) + np.array([[0.0, 0.02, -0.03], [0.01, 0.0, 0.02], [0.0, 0.0, 0.01]])),
        scale_atoms=True,
    )
    p.positions += rng.normal(0, 0.05, p.positions.shape)
    p.info["name"] = (
        "portlandite-triclinic"  # 5 atoms, edges 3.6-5.0 A < r_max: several images of one atom
    )
    c = calcite()
    c.positions += rng.normal(0, 0.05, c.positions.shape)
    c.info["name"] = "calcite"
    m = molecule("CH3COOH")
    m.positions += rng.normal(0, 0.05, m.positions.shape)
    m.info["name"] = "acetic-acid-open"  # no cell, no periodicity
    write(out / "structures.extxyz", [p, c, m], format="extxyz")
    print(f"wrote {len(frames)} training frames and 3 reference structures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
