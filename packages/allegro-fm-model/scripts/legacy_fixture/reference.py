"""Stage 3 of the legacy fixture (run in the nequip 0.6.1 environment): reference results of the deployed file.

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 LEGACY_PYTHON reference.py MODEL.pth STRUCTURES.extxyz OUT.json

Evaluates each structure with nequip 0.6.1's own ``NequIPCalculator.from_deployed_model`` (its neighbour list,
its type mapping) and writes energy (eV), per-atom energies (eV), forces (eV/A) and, for periodic cells, stress
(eV/A^3, ASE Voigt order as that calculator returns it), with the versions that produced them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import ase.io
import nequip
import numpy as np
import torch
from nequip.ase import NequIPCalculator
from nequip.scripts.deploy import load_deployed_model


def main(model: str, structures: str, out: str) -> None:
    frames = ase.io.read(structures, ":")
    _, meta = load_deployed_model(model, freeze=False)
    names = meta["type_names"].split()  # the file's types are element symbols: map each to itself
    calc = NequIPCalculator.from_deployed_model(model, species_to_type_name={s: s for s in names})
    rows = []
    for a in frames:
        a.calc = calc
        row = {
            "name": a.info.get("name", ""),
            "energy": float(a.get_potential_energy()),
            "energies": np.asarray(a.get_potential_energies()).tolist(),
            "forces": a.get_forces().tolist(),
        }
        if a.pbc.all():
            row["stress"] = a.get_stress(voigt=True).tolist()
        rows.append(row)
    doc = {
        "made_by": f"nequip {nequip.__version__} NequIPCalculator.from_deployed_model, torch {torch.__version__}",
        "model": os.path.basename(model),
        "model_sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
        "structures": os.path.basename(structures),
        "results": rows,
    }
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, out)
    print(f"wrote {out}: " + ", ".join(f"{r['name']} E={r['energy']:.6f} eV" for r in rows))


if __name__ == "__main__":
    main(*sys.argv[1:4])
