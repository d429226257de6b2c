"""Experiment 2: equation of state of tobermorite 11 A (paper: 2.44 g/cc, bulk modulus 60 GPa;
experiment 2.46 g/cc, 52.7-60.8 GPa).

The cell is first relaxed (positions and cell, FIRE on a FrechetCellFilter), then scaled isotropically
to volumes V0 (1 + s), s in ``strains``; at each volume the positions are relaxed at fixed cell; a
Birch-Murnaghan fit (ase.eos) of E(V) gives V_min, the density there and the bulk modulus B0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAPER_DENSITY, PAPER_B0 = 2.44, 60.0
EXPT_DENSITY, EXPT_B0 = 2.46, "52.7-60.8"
AMU_PER_A3_TO_G_CC = 1.66053906660


@dataclass(frozen=True)
class EOSResult:
    volumes: np.ndarray  # A^3
    energies: np.ndarray  # eV
    v0: float  # A^3
    density: float  # g/cc
    bulk_modulus: float  # GPa
    atoms: int
    plot: str

    def markdown(self) -> str:
        return ("| quantity | this model | paper (Allegro-FM) | experiment |\n|---|---|---|---|\n"
                f"| density at the minimum (g/cc) | {self.density:.3f} | {PAPER_DENSITY} | {EXPT_DENSITY} |\n"
                f"| bulk modulus B0 (GPa) | {self.bulk_modulus:.1f} | {PAPER_B0} | {EXPT_B0} |\n"
                f"| V0 ({self.atoms} atoms, A^3) | {self.v0:.1f} | | |\n")


def run(potential, atoms=None, strains=(-0.06, -0.04, -0.02, 0.0, 0.02, 0.04, 0.06), fmax: float = 0.02,
        steps: int = 400, outdir: str | Path = ".") -> EOSResult:
    """E(V) of ``atoms`` (default: the example tobermorite 11 A) with ``potential``; writes eos.png."""
    import ase.io
    from allegro_fm_md import relax_cell
    from ase import units
    from ase.eos import EquationOfState

    if atoms is None:
        atoms = ase.io.read(Path(__file__).resolve().parents[5] / "examples" / "tobermorite-11a" / "tobermorite-11A.extxyz")
    base, ok = relax_cell(atoms, potential, fmax=fmax, steps=steps, cell=True)
    unconverged = [] if ok else ["cell relaxation"]
    v_ref = base.get_volume()
    vols, ens = [], []
    for s in strains:
        a = base.copy()
        a.set_cell(a.cell * (1 + s) ** (1 / 3), scale_atoms=True)
        r, ok = relax_cell(a, potential, fmax=fmax, steps=steps, cell=False)
        if not ok:
            unconverged.append(f"volume {1 + s:.2f} V_ref")
        vols.append(r.get_volume())
        ens.append(r.get_potential_energy())
    if unconverged:  # an E(V) from unfinished relaxations is not an equation of state
        raise RuntimeError(f"EOS: relaxations did not reach fmax {fmax} eV/A in {steps} steps: {', '.join(unconverged)}")
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    v0, e0, b = eos.fit()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    vv = np.linspace(min(vols), max(vols), 100)
    ax.plot(vols, ens, "o", label="relaxed at fixed volume")
    ax.plot(vv, [eos.func(v, *eos.eos_parameters) for v in vv], "-", label=f"Birch-Murnaghan, B0 = {b / units.GPa:.1f} GPa")
    ax.set_xlabel("volume (A^3)")
    ax.set_ylabel("energy (eV)")
    ax.set_title(f"tobermorite 11 A, {len(atoms)} atoms (reference volume {v_ref:.0f} A^3)")
    ax.legend()
    fig.tight_layout()
    plot = outdir / "eos.png"
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    mass = float(atoms.get_masses().sum())
    return EOSResult(np.array(vols), np.array(ens), float(v0), mass / v0 * AMU_PER_A3_TO_G_CC, float(b / units.GPa), len(atoms),
                     str(plot))
