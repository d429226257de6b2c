"""Check the bench's own reference barrier against the paper (issue: "reference numbers checked within tolerance").

Runs ``neb.reference_path`` (model-independent: endpoints and climbing-image NEB at PBE/def2-SVP with PySCF forces,
7 images; the saddle refined from the highest image by the dimer method and checked to join reactant and product;
wB97M-D3(BJ)/def2-SVP single points on the PBE images and saddle), checkpointed in OUT/ so a killed run resumes,
and compares the saddle barriers with the paper's 35.7 (PBE) / 46.0 (wB97M-D3(BJ)) kcal/mol within
``REF_TOLERANCE``. Writes OUT/result.json, OUT/images.extxyz (band) and OUT/saddle.extxyz (+ saddle.json, its checks). About 35 min on 2 idle
cores; exit status 0 when both barriers are within tolerance and the saddle is a converged first-order saddle
joining reactant and product.

    OMP_NUM_THREADS=2 python scripts/check_neb_reference.py runs/neb-reference
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ase.io
from allegro_fm_bench.experiments.neb import PAPER, REF_TOLERANCE
from allegro_fm_bench.neb import reference_path


def main(out: str = "runs/neb-reference") -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    r = reference_path(checkpoint=out_dir)
    sc = r["saddle_checks"]
    result = {
        "settings": "CI-NEB PBE/def2-SVP (PySCF, grid level 2), 7 images, FIRE 80 + 80 steps to 0.1 eV/A; saddle "
        "by the dimer method from the highest image to 0.05 eV/A, descents from both sides; "
        "wB97M-D3(BJ)/def2-SVP single points on the PBE images and saddle",
        "band_converged": r["converged"],
        "band_max_force_eV_per_A": r["max_force"],
        "saddle": sc,
        "wall_s_this_run": time.time() - t0,
        "tolerance_kcal": REF_TOLERANCE,
    }
    ok = bool(sc["converged"] and sc["connects"] and sc["curvature"] < 0)
    print(
        f"band {'converged' if r['converged'] else 'NOT converged'} (max NEB force {r['max_force']:.3f} eV/A); saddle "
        f"{'converged' if sc['converged'] else 'NOT converged'}, curvature {sc['curvature']:.2f} eV/A^2, "
        f"{'joins' if sc['connects'] else 'does NOT join'} reactant and product"
    )
    for level in ("PBE", "wB97M-D3(BJ)"):
        e = r[level]
        barrier = r["barrier"][level]
        within = abs(barrier - PAPER[level]) <= REF_TOLERANCE
        ok &= within
        result[level] = {
            "band_profile_kcal": e.tolist(),
            "band_max_kcal": float(e.max()),
            "barrier_kcal": barrier,
            "reaction_kcal": float(e[-1]),
            "paper_kcal": PAPER[level],
            "within_tolerance": bool(within),
        }
        print(
            f"{level:>13}: barrier (saddle) {barrier:6.1f} kcal/mol, paper {PAPER[level]:.1f} +- {REF_TOLERANCE:g}: "
            f"{'within' if within else 'OUTSIDE'}; band maximum {e.max():.1f}; reaction energy {e[-1]:+.1f} kcal/mol"
        )
    tmp = out_dir / "images.tmp.extxyz"
    ase.io.write(tmp, [im.copy() for im in r["images"]], format="extxyz")
    tmp.replace(out_dir / "images.extxyz")
    (out_dir / "result.tmp.json").write_text(json.dumps(result, indent=1))
    (out_dir / "result.tmp.json").replace(out_dir / "result.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
