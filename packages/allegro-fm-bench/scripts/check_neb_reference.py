"""Check the bench's own reference barrier against the paper (issue: "reference numbers checked within tolerance").

Runs ``neb.reference_path`` (model-independent: endpoints and climbing-image NEB at PBE/def2-SVP with PySCF forces,
7 images, then wB97M-D3(BJ)/def2-SVP single points on the PBE images), checkpointed in OUT/ so a killed run resumes,
and compares the barriers with the paper's 35.7 (PBE) / 46.0 (wB97M-D3(BJ)) kcal/mol within ``REF_TOLERANCE``.
Writes OUT/result.json and OUT/images.extxyz. About 1 h on 2 idle cores.

    OMP_NUM_THREADS=2 python scripts/check_neb_reference.py runs/neb-reference
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ase.io
from allegro_fm_bench.experiments.neb import PAPER, REF_TOLERANCE, reference_path


def main(out: str = "runs/neb-reference") -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    r = reference_path(checkpoint=out_dir)
    result = {"settings": "CI-NEB PBE/def2-SVP (PySCF, grid level 2), 7 images, FIRE 80 + 80 steps to 0.1 eV/A; "
                          "wB97M-D3(BJ)/def2-SVP single points on the PBE images",
              "converged": r["converged"], "max_force_eV_per_A": r["max_force"], "wall_s_this_run": time.time() - t0,
              "tolerance_kcal": REF_TOLERANCE}
    ok = True
    for level in ("PBE", "wB97M-D3(BJ)"):
        e = r[level]
        barrier = float(e.max())
        within = abs(barrier - PAPER[level]) <= REF_TOLERANCE
        ok &= within
        result[level] = {"profile_kcal": e.tolist(), "barrier_kcal": barrier, "reaction_kcal": float(e[-1]),
                         "paper_kcal": PAPER[level], "within_tolerance": bool(within)}
        print(f"{level:>13}: barrier {barrier:6.1f} kcal/mol, paper {PAPER[level]:.1f} +- {REF_TOLERANCE:g}: "
              f"{'within' if within else 'OUTSIDE'}; reaction energy {e[-1]:+.1f} kcal/mol")
    print(f"band {'converged' if r['converged'] else 'NOT converged'}, max NEB force {r['max_force']:.3f} eV/A")
    tmp = out_dir / "images.tmp.extxyz"
    ase.io.write(tmp, [im.copy() for im in r["images"]], format="extxyz")
    tmp.replace(out_dir / "images.extxyz")
    (out_dir / "result.tmp.json").write_text(json.dumps(result, indent=1))
    (out_dir / "result.tmp.json").replace(out_dir / "result.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
