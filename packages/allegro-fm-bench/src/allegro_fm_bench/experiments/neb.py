"""Experiment 4: carbonic acid decomposition H2CO3 -> H2O + CO2 by climbing-image NEB (paper Fig. 3).

Endpoints: cis,trans-H2CO3 and the CO2...H2O complex (structures.carbonic_acid_path, same atom order), relaxed
with the model. Two pathways, as in the paper:
  (1) in-plane: the band starts as the IDPP interpolation between the planar endpoints and stays planar;
  (2) with H2O rotation: the band starts through an intermediate whose forming H2O is turned 90 deg about the
      C...O axis, out of the molecular plane (IDPP on both halves), so the optimiser can find a path that
      rotates the water; if it relaxes back onto pathway 1, the table shows equal barriers.
Each band: ase.mep.NEB, improved tangent, FIRE without and then with the climbing image; the report says whether
it reached ``fmax`` (an unconverged band is reported with its residual force, not hidden). Reference energies: PySCF single
points on the model's converged images at PBE/def2-SVP (no dispersion, as the paper's GGA-PBE) and
wB97M-D3(BJ)/def2-SVP (allegro_fm_bench.labelling). Barriers are electronic (no zero-point energy) in kcal/mol.
The paper used def2-TZVPPD-class references on DFT-NEB images; here the basis is def2-SVP and the images are
the model's, so the reference barriers are checked against the paper's within ``REF_TOLERANCE``.
"""

from __future__ import annotations

import numpy as np
from tea_align.files import save_figure
from tea_align.progress import progress as tracked

from ..labelling import WB97MD3BJ, PySCFCalculator
from ..neb import (
    FULL_STEPS,
    N_IMAGES,
    QUICK_STEPS,
    band,
    endpoints,
    energies,
    reference_path,
    rotated_water,
)
from ._common import Context, plt

PAPER = {
    "model": 45.7,
    "wB97M-D3(BJ)": 46.0,
    "PBE": 35.7,
}  # kcal/mol, conventional (in-plane) pathway
LITERATURE = 41.5  # QCISD(T), ZPE-corrected (Wight & Boldyrev 1995)
REF_TOLERANCE = 6.0  # kcal/mol: def2-SVP vs def2-TZVPPD and model images vs DFT images


def experiment(ctx: Context) -> tuple[str, list[str], dict]:
    """Both pathways with the model, then PySCF references on the same images."""
    n_images = N_IMAGES
    calc = ctx.calculator()
    reactant, product = endpoints(calc)
    steps = QUICK_STEPS if ctx.quick else FULL_STEPS
    paths, conv = {}, {}
    for pname, via in (("in-plane", None), ("H2O rotation", rotated_water(product))):
        paths[pname], f, ok = band(calc, reactant, product, n_images, via=via, steps=steps)
        conv[pname] = (
            f"{'converged' if ok else 'NOT converged'}, max NEB force {f:.3f} eV/A after <= {steps} + {steps} FIRE steps"
        )
    levels = {
        "PBE": PySCFCalculator(xc="pbe", basis="def2-svp"),
        "wB97M-D3(BJ)": WB97MD3BJ(basis="def2-svp"),
    }
    prof: dict[str, dict[str, np.ndarray]] = {}
    failed: dict[str, list[int]] = {}
    for pname, images in paths.items():
        prof[pname] = {"model": energies(images, calc)}
        for lname, lc in tracked(levels.items(), desc=f"PySCF on the {pname} band", leave=False):
            failed[f"{pname}/{lname}"] = []
            prof[pname][lname] = energies(images, lc, failed=failed[f"{pname}/{lname}"])
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (pname, p) in zip(axes, prof.items()):
        for k, e in p.items():
            ax.plot(range(len(e)), e, "o-", label=k)
        ax.set_title(f"H2CO3 -> H2O + CO2, {pname}")
        ax.set_xlabel("image")
        ax.legend()
    axes[0].set_ylabel("energy (kcal/mol, relative to H2CO3)")
    plot = save_figure(fig, ctx.outdir / "neb.png")
    conv_lines = "".join(f"- {k}: {v}\n" for k, v in conv.items())
    rows = [
        "| pathway | level | barrier (kcal/mol) | paper (kcal/mol) | reaction energy (kcal/mol) | check |",
        "|---|---|---|---|---|---|",
    ]
    data = {}
    for pname, p in prof.items():
        for k, e in p.items():
            bad = failed.get(f"{pname}/{k}", [])
            bar = float(np.nanmax(e)) if np.isfinite(e).any() else float("nan")
            dE = float(e[-1])
            ref = PAPER.get(k) if pname == "in-plane" else None
            check = ""
            if ref is not None and k != "model":
                check = "within" if abs(bar - ref) <= REF_TOLERANCE else "OUTSIDE"
                check += f" +-{REF_TOLERANCE:g} of the paper"
            if bad:  # the maximum over the other images: a lower bound of the band's barrier at this level
                check = (
                    check + "; " if check else ""
                ) + f"SCF did not converge on image(s) {', '.join(map(str, bad))}"
            rows.append(
                f"| {pname} | {k} | {bar:.1f} | {ref if ref is not None else ''} | {dE:.1f} | {check} |"
            )
            data[f"{pname}/{k}"] = {
                "barrier_kcal": bar,
                "reaction_kcal": dE,
                "profile_kcal": e.tolist(),
                "scf_failed_images": bad,
            }
    ref_text = (
        " Quick settings: the paper's model-independent reference procedure (PBE CI-NEB, refined saddle, "
        "wB97M-D3(BJ) single points; ~35 min, or scripts/check_neb_reference.py) is not run, so the PBE and "
        "wB97M-D3(BJ) rows below are PySCF on the model's images and test the model's path, not the reference."
    )
    if (
        not ctx.quick
    ):  # the reference path of the paper's procedure: NEB at PBE, wB97M-D3(BJ) on its images
        ref = reference_path(checkpoint=ctx.outdir / "neb-reference")
        sc = ref["saddle_checks"]
        for level in ("PBE", "wB97M-D3(BJ)"):
            bar = ref["barrier"][level]
            rows.append(
                f"| PBE NEB + saddle (reference) | {level} | {bar:.1f} | {PAPER[level]} | {ref[level][-1]:.1f} | "
                f"{'within' if abs(bar - PAPER[level]) <= REF_TOLERANCE else 'OUTSIDE'} +-{REF_TOLERANCE:g} of the paper |"
            )
        data["reference"] = {k: ref[k].tolist() for k in ("PBE", "wB97M-D3(BJ)")} | {
            "converged": ref["converged"],
            "barrier_kcal": ref["barrier"],
            "saddle": sc,
        }
        ref_text = (
            f" Reference path (model-independent): CI-NEB at PBE/def2-SVP, "
            f"{'converged' if ref['converged'] else 'NOT converged'} (max force {ref['max_force']:.2f} eV/A), "
            f"saddle refined by the dimer method ({'converged' if sc['converged'] else 'NOT converged'}, "
            f"curvature {sc['curvature']:.1f} eV/A^2, {'joins' if sc['connects'] else 'does NOT join'} "
            f"reactant and product)."
        )
    m, w = data["in-plane/model"]["barrier_kcal"], data["in-plane/wB97M-D3(BJ)"]["barrier_kcal"]
    text = (
        f"Climbing-image NEB with the model, {n_images} images per band (FIRE to 0.05 eV/A); PySCF energies on the same "
        f"images at PBE/def2-SVP and wB97M-D3(BJ)/def2-SVP. Paper (in-plane): model 45.7, wB97M-D3(BJ) 46.0, PBE 35.7 "
        f"kcal/mol; literature {LITERATURE} (QCISD(T), ZPE-corrected). The model's in-plane barrier deviates from "
        f"wB97M-D3(BJ) on its own images by {m - w:+.1f} kcal/mol (paper: -0.3).{ref_text} Bands:\n\n"
        + conv_lines
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    return text, [str(plot.relative_to(ctx.outdir.parent))], data
