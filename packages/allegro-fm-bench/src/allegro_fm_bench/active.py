"""Active learning for the mini model: label the configurations a trained model reaches in the bench's own experiments.

    allegro-fm-bench make-active-data MODEL -o OUT --round 3 [--part pbe|molecular|all]

A model with a spurious low-energy region takes its relaxations and NEB bands there; the labellers then say what those
configurations really cost, and the next fine-tune learns it. Two parts, each a resumable stage (minidata's stages:
OUT/<part>/roundK_<stage>.extxyz, skipped when present, shared between processes through lock files):

- periodic, PBE level (SevenNet-0) -> OUT/pbe-roundK.extxyz: snapshots along the model's relaxations of the bench's EOS
  (tobermorite 11 A and portlandite: positions, then positions + cell at zero pressure, then positions at fixed
  volumes V0 (1 + s)), whether or not they converge, and each relaxation's end rattled;
- molecular, wB97M-D3(BJ)/def2-SVP (PySCF) -> OUT/molecular-roundK.extxyz: the inner images of the model's quick NEB
  bands of H2CO3 -> H2O + CO2 (both pathways), plain and rattled (minidata's round-2 active stage, for this model).

The files come after the earlier rounds' in the tea-align apply command, so ``[train] split_keep`` keeps the earlier
rounds' split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import LBFGS
from tqdm.auto import tqdm

from . import structures as S
from .labelling import PBE_LEVEL, WB97MD3BJ, pbe_calculator
from .minidata import MiniDataSettings, _labelled, _stage, _with_rattles, _write_atomic, label_model_bands

log = logging.getLogger("allegro_fm_bench.active")

#: the EOS relaxations whose paths are labelled: (family, structure builder); the bench's T11 EOS and the test suite's
#: portlandite EOS (its 5-atom cell)
EOS_SYSTEMS = (("tobermorite-11A", S.tobermorite_11a), ("portlandite", S.portlandite))
EOS_STRAINS = (-0.06, -0.04, -0.02, 0.0, 0.02, 0.04, 0.06)


def relaxation_snapshots(atoms: Atoms, calc, fmax: float = 0.05, steps: int = 600, cell: bool = False,
                         keep: int = 6) -> tuple[list[Atoms], Atoms, bool]:
    """LBFGS relaxation of a copy of ``atoms`` with ``calc`` (positions, and the cell at zero pressure with ``cell``) ->
    (``keep`` snapshots evenly spaced along the path, start and end included; the end structure; whether fmax (eV/A)
    was reached in ``steps``). A relaxation that does not converge is not an error here: its path is what is wanted."""
    a = atoms.copy()
    a.calc = calc
    path: list[Atoms] = []
    opt = LBFGS(FrechetCellFilter(a) if cell else a, logfile=None)
    opt.attach(lambda: path.append(Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)), interval=1)
    try:
        ok = bool(opt.run(fmax=fmax, steps=steps))
    except (RuntimeError, ValueError, FloatingPointError) as exc:  # an exploding model: the path so far is kept
        log.warning("relaxation stopped after %d steps: %s", len(path), exc)
        ok = False
    if not path:
        path = [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)]
    pick = sorted(set(np.linspace(0, len(path) - 1, min(keep, len(path))).round().astype(int).tolist()))
    return [path[i] for i in pick], path[-1], ok


def eos_path_jobs(calc, label: str, st: MiniDataSettings, rng: np.random.Generator, builder, family: str
                  ) -> list[tuple[str, Atoms, str]]:
    """(family, structure, generator) of the model's EOS relaxations of ``builder()``: positions, cell, then fixed cell
    at each of EOS_STRAINS from the model's zero-pressure cell; every relaxation's end also rattled by the settings'
    first rattle."""
    jobs: list[tuple[str, Atoms, str]] = []

    def add(snaps, end, what):
        for k, s in enumerate(snaps):
            jobs.append((family, s, f"{label} {what} snapshot {k + 1}/{len(snaps)}"))
        for a, how in _with_rattles(end, (st.rattles[0],), rng):
            jobs.append((family, a, f"{label} {what} end{how}"))

    snaps, end, ok = relaxation_snapshots(builder(), calc)
    add(snaps, end, f"relaxation (positions, {'converged' if ok else 'NOT converged'})")
    snaps, base, ok = relaxation_snapshots(end, calc, cell=True)
    add(snaps, base, f"relaxation (positions + cell, {'converged' if ok else 'NOT converged'})")
    for s in EOS_STRAINS:
        a = base.copy()
        a.set_cell(a.cell * (1 + s) ** (1 / 3), scale_atoms=True)
        snaps, end, ok = relaxation_snapshots(a, calc, keep=3)
        add(snaps, end, f"EOS at V0 (1 {s:+.2f}) ({'converged' if ok else 'NOT converged'})")
    log.info("%s: %d EOS path frames to label", family, len(jobs))
    return jobs


def _model_calculator(model: str | Path):
    from allegro_fm_model import AllegroFMCalculator, load_potential  # lazy: torch; only the model's paths need it

    return AllegroFMCalculator(load_potential(str(model)))


def make_active_pbe(outdir: str | Path, model: str | Path, round_: int, st: MiniDataSettings = MiniDataSettings(),
                    progress: bool = True) -> Path | None:
    """Periodic active-learning frames of ``model`` (the EOS relaxations' paths, labelled by SevenNet-0) ->
    OUT/pbe-round<round_>.extxyz; None while another process labels one of the stages (run again)."""
    outdir = Path(outdir)
    label = Path(model).name
    parts = []
    for k, (family, builder) in enumerate(EOS_SYSTEMS):
        def make(family=family, builder=builder, k=k):
            calc = pbe_calculator()
            jobs = eos_path_jobs(_model_calculator(model), label, st, np.random.default_rng([st.seed, round_, k]), builder, family)
            return [_labelled(a, calc, PBE_LEVEL, n, g) for n, a, g in tqdm(jobs, desc=f"{family} EOS path", disable=not progress,
                                                                              leave=False)]

        parts.append(_stage(outdir / "pbe", f"round{round_}_eos_{family}", make))
    if any(p is None for p in parts):
        log.info("active PBE part: a stage is being labelled by another process; run again when it ends to assemble")
        return None
    out = outdir / f"pbe-round{round_}.extxyz"
    frames = [a for p in parts for a in p]
    _write_atomic(frames, out)
    log.info("active PBE part, round %d: %d frames, %d atoms -> %s", round_, len(frames), sum(len(a) for a in frames), out)
    return out


def make_active_molecular(outdir: str | Path, model: str | Path, round_: int, st: MiniDataSettings = MiniDataSettings(),
                          progress: bool = True) -> Path | None:
    """Molecular active-learning frames of ``model`` (its quick NEB bands, labelled at wB97M-D3(BJ)/def2-SVP; an image
    whose SCF fails is left out, logged) -> OUT/molecular-round<round_>.extxyz; None while another process labels it."""
    outdir = Path(outdir)

    def make():
        return label_model_bands(model, WB97MD3BJ(), st, np.random.default_rng([st.seed, round_, 8]), progress)

    frames = _stage(outdir / "molecular", f"round{round_}_model_bands", make)
    if frames is None:
        log.info("active molecular part: being labelled by another process; run again when it ends to assemble")
        return None
    out = outdir / f"molecular-round{round_}.extxyz"
    _write_atomic(frames, out)
    log.info("active molecular part, round %d: %d frames -> %s", round_, len(frames), out)
    return out
