"""The NEB tools of the carbonic-acid reaction (H2CO3 -> H2O + CO2), shared by the paper's NEB experiment
(experiments/neb.py), the Transition1x experiment and the Allegro-FM-mini recipe (mini/): endpoints relaxed with a
calculator, the in-plane and H2O-rotation bands (ase.mep.NEB, FIRE then climbing image, checkpointed), the saddle
refinement (ASE dimer), the PySCF reference path and its descents, and single-point energies along a band in kcal/mol.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.mep import NEB
from ase.mep.dimer import DimerControl, MinModeAtoms, MinModeTranslate
from ase.neighborlist import natural_cutoffs, neighbor_list
from ase.optimize import BFGS, FIRE
from tea_align.files import atomic_path, write_text_atomic
from tea_align.progress import Progress
from tea_align.units import EV_TO_KCAL_PER_MOL

from .labelling import WB97MD3BJ, PySCFCalculator, SCFNotConverged
from .structures import carbonic_acid_path

EV_TO_KCAL = EV_TO_KCAL_PER_MOL
#: the bench's bands: images (endpoints included) and FIRE steps per stage (quick / full settings). With 7 images the
#: CI-NEB collapses into the end basins even on a smooth PES (SevenNet-0, the PBE stand-in: no image above the
#: reactant, 0.094 eV/A after 200 + 200 FIRE steps; 11 images converged, 32.7 kcal/mol; measured 2026-12-01)
N_IMAGES = 11
QUICK_STEPS, FULL_STEPS = 200, 2000


def endpoints(calc, fmax: float = 0.01, steps: int = 500):
    """(reactant, product) relaxed with ``calc`` (BFGS, non-periodic); raises if not converged."""
    band = carbonic_acid_path(2)
    out = []
    for name, a in zip(("H2CO3", "CO2 + H2O"), (band[0], band[-1])):
        a = a.copy()
        a.calc = calc
        if not BFGS(a, logfile=None).run(fmax=fmax, steps=steps):
            raise RuntimeError(
                f"NEB endpoint {name}: BFGS did not reach fmax {fmax} eV/A in {steps} steps"
            )
        a.calc = None
        out.append(a)
    return out[0], out[1]


def rotated_water(product):
    """The product with its water (atoms 2, 4, 5) turned 90 deg about the C...O(water) axis."""
    a = product.copy()
    axis = a.positions[2] - a.positions[0]
    w = [2, 4, 5]
    sub = a[w]
    sub.rotate(90, axis, center=a.positions[2])
    a.positions[w] = sub.positions
    return a


def _save(path: Path, images, state: dict) -> None:
    """Write the band (positions only) and its optimiser state atomically: a killed run resumes from here."""
    with atomic_path(path) as tmp:
        ase.io.write(
            tmp, [im.copy() for im in images], format="extxyz"
        )  # copies: no (shared) calculator results
    write_text_atomic(path.with_suffix(".json"), json.dumps(state))


def _load(path: Path, images) -> dict | None:
    """The saved state of the band at ``path`` with its positions put into ``images``; None if nothing saved."""
    if not (path.exists() and path.with_suffix(".json").exists()):
        return None
    state = json.loads(path.with_suffix(".json").read_text())
    saved = ase.io.read(path, index=":")
    if len(saved) != len(images) or any(
        s.get_chemical_symbols() != im.get_chemical_symbols() for s, im in zip(saved, images)
    ):
        raise ValueError(
            f"{path}: saved band does not match this band (images or elements differ); "
            "remove the checkpoint folder to start over"
        )
    for s, im in zip(saved, images):
        im.positions = s.positions
    return state


def band(
    calc,
    reactant,
    product,
    n_images: int,
    via=None,
    fmax: float = 0.05,
    steps: int = 300,
    checkpoint: str | Path | None = None,
    observe=None,
):
    """A NEB band (list of Atoms, endpoints included) from ``reactant`` to ``product``, optionally starting
    through ``via``: FIRE without climbing to 2 x ``fmax`` (eV/A), then with the climbing image to ``fmax``, at
    most ``steps`` FIRE steps each. With ``checkpoint`` (a folder), the band is saved after every FIRE step and a
    rerun resumes from the last saved step (FIRE restarts its velocities). ``observe(images, stage, step)``, when
    given, is called before each stage's first FIRE step and after every step (stage "NEB" or "CI-NEB"; ``step`` counts
    that stage's steps; read positions only: the images share the calculator). Returns (images, max NEB force eV/A,
    converged)."""
    if via is None:
        images = [reactant.copy() for _ in range(n_images - 1)] + [product.copy()]
        NEB(images, method="improvedtangent").interpolate("idpp")
    else:
        half = n_images // 2 + 1
        first = [reactant.copy() for _ in range(half - 1)] + [via.copy()]
        NEB(first, method="improvedtangent").interpolate("idpp")
        second = [via.copy() for _ in range(n_images - half)] + [product.copy()]
        NEB(second, method="improvedtangent").interpolate("idpp")
        images = first + second[1:]
    path = None
    state = {"stage": "NEB", "steps_done": 0, "stage_finished": False, "converged": False}
    if checkpoint is not None:
        path = Path(checkpoint) / "band.extxyz"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = _load(path, images) or state
    for im in images:
        im.calc = calc
    neb = NEB(images, climb=False, method="improvedtangent", allow_shared_calculator=True)
    ok = bool(state["converged"])
    for stage, target in (("NEB", 2 * fmax), ("CI-NEB", fmax)):
        if state["stage"] == "CI-NEB" and stage == "NEB":
            continue  # resumed after the first stage
        if state["stage"] != stage:
            state = {"stage": stage, "steps_done": 0, "stage_finished": False, "converged": False}
        if state["stage_finished"]:
            ok = bool(state["converged"])
            continue
        neb.climb = stage == "CI-NEB"
        opt = FIRE(neb, logfile=None)
        left = steps - state["steps_done"]
        with Progress(
            steps,
            initial=state["steps_done"],
            unit="step",
            desc=f"{stage} to {target:g} eV/A",
            leave=False,
        ) as bar:
            opt.attach(
                bar.update
            )  # a count only: re-reading forces would re-run a shared calculator
            if observe is not None:
                opt.attach(
                    lambda st=state, o=opt, name=stage: observe(
                        images, name, st["steps_done"] + o.nsteps
                    )
                )
            if path is not None:
                opt.attach(
                    lambda st=state, o=opt: _save(
                        path, images, st | {"steps_done": st["steps_done"] + o.nsteps}
                    )
                )
            ok = bool(opt.run(fmax=target, steps=left)) if left > 0 else False
        state = state | {
            "steps_done": steps - left + opt.nsteps,
            "stage_finished": True,
            "converged": ok,
        }
        if path is not None:
            _save(path, images, state)
    neb.climb = True  # the residual is the climbing-image band's, also when both stages were resumed finished
    f = float(np.sqrt((neb.get_forces() ** 2).sum(axis=1).max()))
    return images, f, ok


def bonds(atoms) -> frozenset:
    """Covalent bonds (i, j) of a molecule by ASE's natural cutoffs (x 1.1): which species a geometry is."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.1))
    return frozenset((int(a), int(b)) for a, b in zip(i, j) if a < b)


def refine_saddle(
    calc, images, fmax: float = 0.05, steps: int = 200, checkpoint: str | Path | None = None
) -> dict:
    """The first-order saddle point near a NEB band's highest interior image: ASE's dimer method (ase.mep.dimer),
    starting along the band's local tangent, to ``fmax`` (eV/A); then a descent (BFGS to 0.05 eV/A) from each side
    of the negative-curvature mode, checking that one side reaches the band's first image's bonding and the other
    the last's (the saddle joins reactant and product). A band that has not converged may place its climbing
    image well above the saddle; this finds the saddle itself. Returns {"saddle", "converged", "curvature"
    (eV/A^2), "connects", "sides" (bonds found on each side)}; with ``checkpoint`` (a folder) the result is saved
    (saddle.extxyz, saddle.json) and reused by a rerun."""
    saved = Path(checkpoint) / "saddle.extxyz" if checkpoint is not None else None
    if saved is not None and saved.exists() and saved.with_suffix(".json").exists():
        s = ase.io.read(saved)
        if s.get_chemical_symbols() != images[0].get_chemical_symbols():
            raise ValueError(
                f"{saved}: saved saddle is not of this band's molecule; remove it to start over"
            )
        return {"saddle": s, **json.loads(saved.with_suffix(".json").read_text())}
    k = int(np.argmax(energies(images, calc)[1:-1])) + 1
    ts = images[k].copy()
    ts.calc = calc
    tangent = images[k + 1].positions - images[k - 1].positions
    dimer = MinModeAtoms(
        ts,
        DimerControl(
            initial_eigenmode_method="displacement", displacement_method="vector", logfile=None
        ),
    )
    dimer.displace(
        displacement_vector=0.01 * tangent / np.linalg.norm(tangent), mask=[True] * len(ts)
    )
    converged = bool(MinModeTranslate(dimer, logfile=None).run(fmax=fmax, steps=steps))
    curvature = float(dimer.get_curvature())
    mode = np.asarray(dimer.get_eigenmode())
    saddle = images[0].copy()
    saddle.positions = ts.positions
    sides = []
    for sign in (-1.0, 1.0):
        a = saddle.copy()
        a.positions = a.positions + sign * 0.1 * mode / np.linalg.norm(mode)
        sides.append(bonds(descend(calc, a, steps=300, fmax=0.05)[-1]))
    ends = (bonds(images[0]), bonds(images[-1]))
    connects = set(sides) == set(ends) and ends[0] != ends[1]
    info = {
        "converged": converged,
        "curvature": curvature,
        "connects": bool(connects),
        "sides": [sorted(b) for b in sides],
    }
    if (
        saved is not None
    ):  # geometry first, then its checks: a saddle.json always describes saddle.extxyz
        saved.with_suffix(".json").unlink(missing_ok=True)
        with atomic_path(saved) as tmp:
            ase.io.write(tmp, saddle, format="extxyz")
        write_text_atomic(saved.with_suffix(".json"), json.dumps(info))
    return {"saddle": saddle, **info}


def reference_path(
    n_images: int = 7,
    fmax: float = 0.1,
    steps: int = 80,
    basis: str = "def2-svp",
    checkpoint: str | Path | None = None,
) -> dict:
    """The paper's own procedure, independent of any model: endpoints and a climbing-image NEB at PBE/``basis``
    (PySCF forces), the saddle point refined from the band's highest image (``refine_saddle``), then
    wB97M-D3(BJ)/``basis`` single points on the PBE images and saddle. Returns the PBE images, both profiles
    (kcal/mol, relative to the reactant), the barriers at the saddle ("barrier": {level: kcal/mol}), the saddle
    and its checks, the residual NEB force and whether the band converged. Costs hundreds of PySCF gradients
    (~35 min on 2 idle cores): with ``checkpoint`` (a folder) the endpoints, the band and the saddle are saved as
    they go and a rerun resumes where the last one stopped."""

    pbe = PySCFCalculator(xc="pbe", basis=basis, grid_level=2)
    ends = Path(checkpoint) / "endpoints.extxyz" if checkpoint is not None else None
    if ends is not None and ends.exists():
        reactant, product = ase.io.read(ends, index=":")
    else:
        reactant, product = endpoints(pbe, fmax=0.05, steps=100)
        if ends is not None:
            with atomic_path(ends) as tmp:
                ase.io.write(tmp, [reactant, product], format="extxyz")
    images, f, ok = band(
        pbe, reactant, product, n_images, fmax=fmax, steps=steps, checkpoint=checkpoint
    )
    ts = refine_saddle(pbe, images, checkpoint=checkpoint)
    out = {
        "images": images,
        "max_force": f,
        "converged": ok,
        "saddle": ts["saddle"],
        "saddle_checks": {k: ts[k] for k in ("converged", "curvature", "connects")},
        "barrier": {},
    }
    for level, calc in (("PBE", pbe), ("wB97M-D3(BJ)", WB97MD3BJ(basis=basis))):
        out[level] = energies(images, calc)
        out["barrier"][level] = float(energies([images[0], ts["saddle"]], calc)[1])
    return out


def read_reference(folder: str | Path) -> tuple[list, Atoms]:
    """(PBE band images, refined saddle) of a finished reference NEB folder (``check_neb_reference.py``'s
    images.extxyz and saddle.extxyz); ValueError naming the folder when either is missing or unreadable."""
    folder = Path(folder)
    try:
        return ase.io.read(folder / "images.extxyz", index=":"), ase.io.read(
            folder / "saddle.extxyz"
        )
    except (OSError, ValueError, StopIteration) as exc:
        raise ValueError(
            f"{folder}: no finished reference NEB (images.extxyz and saddle.extxyz) ({exc})"
        ) from exc


def descend(calc, start, steps: int = 300, fmax: float = 0.05, maxstep: float = 0.2) -> list:
    """A BFGS descent of ``start`` with ``calc`` to ``fmax`` (eV/A), no atom moving more than ``maxstep`` (A) a step:
    every geometry it visits, the start included, with its energy (eV) and forces (eV/A) as a single-point result and
    ``info["step"]``."""
    a = start.copy()
    a.calc = calc
    path = []

    def keep():
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
        b.info["step"] = len(path)
        path.append(b)

    opt = BFGS(a, logfile=None, maxstep=maxstep)
    opt.attach(keep)  # called before the first step too: the start is kept
    opt.run(fmax=fmax, steps=steps)
    return path


def reference_descents(
    folder: str | Path,
    steps: int = 300,
    fmax: float = 0.05,
    maxstep: float = 0.05,
    basis: str = "def2-svp",
) -> list:
    """The two halves of the minimum-energy path below the reference saddle (``check_neb_reference.py``'s folder):
    PBE/``basis`` (PySCF) BFGS descents (steps of at most ``maxstep`` A, so the path near the saddle is sampled
    densely) from ``saddle.extxyz`` displaced by 0.1 A to each side along the reference
    band's tangent at the interior image nearest the saddle (``images.extxyz``), every visited geometry kept with its PBE energy and forces;
    frame info: ``side`` ("reactant" / "product"), ``step``, ``connects`` (whether that descent ends with the bonding of
    the band's end on its side). Saved as descents-<side>.extxyz in the folder and reused by a rerun (a killed run
    loses at most one side). About 60-100 PySCF gradients (~10 min on one core)."""
    folder = Path(folder)
    band_images, saddle = read_reference(folder)
    pbe = PySCFCalculator(xc="pbe", basis=basis, grid_level=2)
    k = 1 + int(
        np.argmin([np.abs(im.positions - saddle.positions).max() for im in band_images[1:-1]])
    )  # nearest image
    tangent = band_images[k + 1].positions - band_images[k - 1].positions
    tangent /= np.linalg.norm(tangent)
    out = []
    for side, sign, end in (("reactant", -1.0, band_images[0]), ("product", 1.0, band_images[-1])):
        saved = folder / f"descents-{side}.extxyz"
        if saved.exists():
            path = ase.io.read(saved, index=":")
        else:
            start = Atoms(saddle.numbers, saddle.positions + sign * 0.1 * tangent)
            path = descend(pbe, start, steps=steps, fmax=fmax, maxstep=maxstep)
            connects = bonds(path[-1]) == bonds(end)
            for a in path:
                a.info.update({"side": side, "connects": bool(connects)})
            with atomic_path(saved) as tmp:
                ase.io.write(tmp, path, format="extxyz")
        out += path
    return out


def energies(images, calc, failed: list[int] | None = None) -> np.ndarray:
    """Energies (kcal/mol) of ``images`` with ``calc``, relative to the first image. With ``failed`` (a list), an
    image whose PySCF SCF does not converge gets NaN and its index is appended there instead of raising (a model's
    band can hold broken, open-shell-like geometries that a closed-shell SCF cannot describe)."""
    e = []
    for k, im in enumerate(images):
        a = im.copy()
        a.calc = calc
        try:
            e.append(a.get_potential_energy())
        except SCFNotConverged:
            if failed is None:
                raise
            failed.append(k)
            e.append(np.nan)
    e = np.array(e)
    return (e - e[0]) * EV_TO_KCAL
