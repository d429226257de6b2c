"""Experiment 7: Transition1x (Schreiner et al., Sci. Data 9, 779 (2022); wB97x/6-31G(d) NEB data of C/H/N/O
reactions): energy, force and barrier errors of the model over whatever part of the dataset is on disk.

Two inputs are read:
  - the dataset's HDF5 (or any subset in its layout): /{split}/{formula}/{rxn}/ with atomic_numbers (N),
    positions (M, N, 3) A, "wB97x_6-31G(d).energy" (M) eV, "wB97x_6-31G(d).forces" (M, N, 3) eV/A, and
    subgroups reactant, product, transition_state with the same keys. Energy errors are taken after a
    least-squares per-element energy shift (the model's zero of energy is its own training level, not
    wB97x/6-31G(d)); force errors and barrier errors (E_TS - E_reactant, shifts cancel) need none.
  - the endpoints sample (a folder with endpoints.json and dft_reference_energies.json: reactant and product
    geometries and the energies of the final 10-image DFT band): the model's own climbing-image NEB between
    the endpoints gives its barrier, next to the DFT band's maximum.
Reactions with elements the model does not know are listed as skipped, not guessed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from tea_align.elements import MAX_Z
from tea_align.files import save_figure
from tea_align.progress import progress as tracked

from ..neb import band
from ._common import Context, plt

LEVEL = "wB97x_6-31G(d)"
#: where the runner looks when --transition1x is not given (first that exists)
SEARCH = ("{env}", "../shared/data/transition1x_sample", "shared/data/transition1x_sample")


class Skipped(Exception):
    """The experiment cannot run here (no data on disk); the report says so."""


def find_data(path: str | None = None) -> Path:
    """The Transition1x input: ``path``, $ALLEGRO_FM_TRANSITION1X, or the shared sample folder if present."""
    cands = [path] if path else [os.environ.get("ALLEGRO_FM_TRANSITION1X", "")] + list(SEARCH[1:])
    for c in cands:
        if c and Path(c).exists():
            return Path(c)
    raise Skipped(
        "no Transition1x data on disk: give --transition1x PATH (the dataset's HDF5 or an endpoints folder) "
        "or set ALLEGRO_FM_TRANSITION1X"
    )


def _known(pot, numbers) -> bool:
    try:
        pot.types_of([chemical_symbols[z] for z in numbers])
        return True
    except (KeyError, ValueError):
        return False


def _model_ef(calc, numbers, positions) -> tuple[float, np.ndarray]:
    a = Atoms(numbers=numbers, positions=positions)
    a.calc = calc
    return float(a.get_potential_energy()), a.get_forces()


def evaluate_hdf5(path: Path, pot, calc, max_frames: int = 0) -> dict:
    """Errors of the model on a Transition1x-layout HDF5: energies (after per-element shifts), forces, barriers.
    ``max_frames`` > 0 evaluates at most that many evenly spaced configurations per reaction."""
    import h5py  # lazy: HDF5 only for .h5 files

    rows_e, rows_comp, f_err, barriers, skipped = [], [], [], [], []
    elements: list[int] = []
    with h5py.File(path, "r") as h5:
        rxns = [(s, f, r) for s in h5 for f in h5[s] for r in h5[s][f]]
        if not rxns:
            raise ValueError(f"{path}: no /split/formula/rxn groups (not the Transition1x layout)")
        for s, f, r in tracked(rxns, desc="Transition1x reactions", leave=False):
            g = h5[s][f][r]
            try:
                z = g["atomic_numbers"][()]
                pos, e_ref, f_ref = (
                    g["positions"][()],
                    g[f"{LEVEL}.energy"][()],
                    g[f"{LEVEL}.forces"][()],
                )
            except KeyError as exc:
                raise ValueError(
                    f"{path}: /{s}/{f}/{r} lacks {exc} (not the Transition1x layout)"
                ) from exc
            if not _known(pot, z):
                skipped.append(f"{f}/{r}")
                continue
            idx = np.arange(len(pos))
            if max_frames and len(idx) > max_frames:
                idx = np.unique(np.linspace(0, len(pos) - 1, max_frames).round().astype(int))
            for k in idx:
                e, fm = _model_ef(calc, z, pos[k])
                rows_e.append((e, float(e_ref[k]), len(z)))
                rows_comp.append(np.bincount(z, minlength=MAX_Z + 1))
                f_err.append((fm - f_ref[k]).ravel())
            elements = sorted(set(elements) | set(z.tolist()))
            if "transition_state" in g and "reactant" in g:
                ts, re_ = g["transition_state"], g["reactant"]
                e_ts, _ = _model_ef(calc, z, ts["positions"][()][0])
                e_r, _ = _model_ef(calc, z, re_["positions"][()][0])
                barriers.append(
                    (
                        e_ts - e_r,
                        float(ts[f"{LEVEL}.energy"][()][0] - re_[f"{LEVEL}.energy"][()][0]),
                    )
                )
    if not rows_e:
        return {"reactions_skipped": skipped, "configurations": 0}
    e_m, e_r, n = (np.array(x) for x in zip(*rows_e))
    comp = np.array(rows_comp)[:, elements].astype(float)
    shift, *_ = np.linalg.lstsq(
        comp, e_r - e_m, rcond=None
    )  # per-element shift of the model's energy zero
    de = (e_m + comp @ shift - e_r) / n
    fe = np.concatenate(f_err)
    out = {
        "configurations": len(e_m),
        "energy_mae_meV_atom": float(1000 * np.abs(de).mean()),
        "energy_rmse_meV_atom": float(1000 * np.sqrt((de**2).mean())),
        "force_mae_meV_A": float(1000 * np.abs(fe).mean()),
        "force_rmse_meV_A": float(1000 * np.sqrt((fe**2).mean())),
        "reactions_skipped": skipped,
        "element_shift_eV": dict(zip([int(x) for x in elements], shift.tolist())),
    }
    if barriers:
        b = np.array(barriers)
        out.update(barrier_mae_eV=float(np.abs(b[:, 0] - b[:, 1]).mean()), barriers=b.tolist())
    return out


def evaluate_endpoints(folder: Path, pot, calc, fmax: float = 0.05, steps: int = 300) -> dict:
    """The model's CI-NEB barrier (10 images, as the DFT band) for each reaction of an endpoints sample."""
    ends = json.loads((folder / "endpoints.json").read_text())["paths"]
    refs = {
        p["reaction_id"]: p
        for p in json.loads((folder / "dft_reference_energies.json").read_text())["paths"]
    }
    rows, skipped = [], []
    for p in ends:
        rid, z = p["reaction_id"], np.array(p["atomic_numbers"])
        if p.get("charge", 0) != 0 or not _known(pot, z) or rid not in refs:
            skipped.append(rid)
            continue
        r = Atoms(numbers=z, positions=p["reactant_positions"])
        q = Atoms(numbers=z, positions=p["product_positions"])
        images, f, ok = band(calc, r, q, 10, fmax=fmax, steps=steps)
        e = np.array([im.get_potential_energy() for im in images])
        e -= e[0]
        dft = np.array(refs[rid]["relative_energies_ev"])
        rows.append(
            {
                "reaction": rid,
                "model_barrier_eV": float(e.max()),
                "dft_barrier_eV": float(dft.max()),
                "model_reaction_eV": float(e[-1]),
                "dft_reaction_eV": float(dft[-1]),
                "converged": ok,
                "max_force_eV_A": f,
                "model_profile": e.tolist(),
                "dft_profile": dft.tolist(),
            }
        )
    return {"reactions": rows, "reactions_skipped": skipped}


def experiment(ctx: Context, path: str | None = None) -> tuple[str, list[str], dict]:
    """Evaluate on the data found by ``find_data``; quick: at most 10 configurations per reaction / 100 + 100 NEB steps."""
    data_path = find_data(path or os.environ.get("ALLEGRO_FM_TRANSITION1X"))
    pot = ctx.potential()
    from allegro_fm_model import (
        AllegroFMCalculator,
    )  # lazy: allegro-fm-model imports torch and nequip

    calc = AllegroFMCalculator(pot)
    plots = []
    if data_path.is_dir():
        res = evaluate_endpoints(data_path, pot, calc, steps=100 if ctx.quick else 1000)
        rows = [
            "| reaction | model barrier (eV) | DFT barrier (eV) | error (eV) | model / DFT reaction energy (eV) | NEB |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["reactions"]:
            rows.append(
                f"| {r['reaction']} | {r['model_barrier_eV']:.2f} | {r['dft_barrier_eV']:.2f} | "
                f"{r['model_barrier_eV'] - r['dft_barrier_eV']:+.2f} | {r['model_reaction_eV']:.2f} / {r['dft_reaction_eV']:.2f} | "
                f"{'converged' if r['converged'] else 'not converged'} ({r['max_force_eV_A']:.2f} eV/A) |"
            )
        if res["reactions"]:
            pyplot = plt()
            fig, ax = pyplot.subplots(figsize=(6, 4))
            for i, r in enumerate(res["reactions"]):
                ax.plot(r["dft_profile"], "k--", label="DFT (wB97x/6-31G(d))" if i == 0 else None)
                ax.plot(r["model_profile"], "o-", label=f"model, {r['reaction']}")
            ax.set_xlabel("image")
            ax.set_ylabel("energy relative to reactant (eV)")
            ax.legend(fontsize=7)
            plot = save_figure(fig, ctx.outdir / "transition1x_neb.png")
            plots.append(str(plot.relative_to(ctx.outdir.parent)))
            mae = float(
                np.mean(
                    [abs(r["model_barrier_eV"] - r["dft_barrier_eV"]) for r in res["reactions"]]
                )
            )
            res["barrier_mae_eV"] = mae
            summary = f"Barrier MAE over {len(res['reactions'])} reaction(s): {mae:.2f} eV."
        else:
            summary = "No reaction of the sample uses only elements this model knows."
        text = (
            f"Input: `{data_path}` (endpoints + final DFT band energies). The model's climbing-image NEB (10 images) "
            f"between the DFT endpoints. {summary} Skipped (elements the model lacks, or charged): "
            f"{', '.join(res['reactions_skipped']) or 'none'}. The paper reports Transition1x errors in its Supplementary "
            "Information (not in the text we have).\n\n" + "\n".join(rows) + "\n"
        )
    else:
        res = evaluate_hdf5(data_path, pot, calc, max_frames=10 if ctx.quick else 0)
        if not res["configurations"]:
            text = f"Input `{data_path}`: no reaction uses only elements this model knows ({len(res['reactions_skipped'])} skipped).\n"
        else:
            text = (
                f"Input `{data_path}`: {res['configurations']} configurations; energies after a per-element shift fitted "
                f"over them.\n\n| quantity | value |\n|---|---|\n| energy MAE / RMSE (meV/atom) | {res['energy_mae_meV_atom']:.1f} / "
                f"{res['energy_rmse_meV_atom']:.1f} |\n| force MAE / RMSE (meV/A) | {res['force_mae_meV_A']:.0f} / "
                f"{res['force_rmse_meV_A']:.0f} |\n| barrier MAE (eV) | {res.get('barrier_mae_eV', float('nan')):.3f} |\n"
                f"| reactions skipped (unknown elements) | {len(res['reactions_skipped'])} |\n"
            )
    return text, plots, res
