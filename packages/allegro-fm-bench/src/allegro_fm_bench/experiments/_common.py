"""What the experiments share: the run context, the model-relaxed tobermorite 11 A, MD through allegro-fm-md's
run-file API, and the thermo log reader."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase.filters import FrechetCellFilter
from ase.optimize import LBFGS
from tea_align.files import atomic_path

from ..report import model_sha256
from ..structures import tobermorite_11a

log = logging.getLogger("allegro_fm_bench")


@dataclass(frozen=True)
class Context:
    """model: a model file path (resolved); outdir: this experiment's folder; quick: the CI-sized settings;
    cache: a folder shared by the experiments of one report (relaxed structures). For oracles with known answers
    (tests), ``calculator_factory`` replaces the model in the ASE-driven steps (an EMT or Lennard-Jones calculator) and
    ``md_potential`` (allegro-fm-md PotentialSpec fields, e.g. {"kind": "lj", ...}) replaces it in the MD runs."""

    model: str
    outdir: Path
    quick: bool
    cache: Path
    calculator_factory: Callable[[], Any] | None = None
    md_potential: dict | None = None

    def potential(self):
        from allegro_fm_model import (
            load_potential,
        )  # lazy: allegro-fm-model imports torch and nequip

        return load_potential(self.model)

    def calculator(self):
        if self.calculator_factory is not None:
            return self.calculator_factory()
        from allegro_fm_model import (
            AllegroFMCalculator,
        )  # lazy: allegro-fm-model imports torch and nequip

        return AllegroFMCalculator(self.potential())


def relax(atoms, calc, fmax: float, steps: int, cell: bool = False, what: str = "structure"):
    """LBFGS relaxation of a copy of ``atoms`` (positions, and the cell at zero pressure with ``cell``) ->
    (relaxed atoms, max force eV/A, steps taken). Raises if fmax (eV/A) is not reached in ``steps``."""
    a = atoms.copy()
    a.calc = calc
    opt = LBFGS(FrechetCellFilter(a) if cell else a, logfile=None)
    ok = opt.run(fmax=fmax, steps=steps)
    f = float(np.linalg.norm(a.get_forces(), axis=1).max())
    if not ok:
        raise RuntimeError(
            f"{what}: relaxation did not reach fmax {fmax} eV/A in {steps} LBFGS steps (max force {f:.3f} eV/A)"
        )
    return a, f, opt.nsteps


def relaxed_t11(ctx: Context):
    """Tobermorite 11 A (Ca8Si12O44H24, built by structures.tobermorite_11a) relaxed with the model, positions
    and cell at zero pressure; cached per model in ctx.cache."""
    path = ctx.cache / f"t11-relaxed-{model_sha256(ctx.model)[:12] or Path(ctx.model).stem}.extxyz"
    if path.exists():
        return ase.io.read(path)
    calc = ctx.calculator()
    a, _, n1 = relax(tobermorite_11a(), calc, 0.05, 1500, cell=False, what="T11 positions")
    a, f, n2 = relax(a, calc, 0.05, 1500, cell=True, what="T11 positions + cell")
    log.info("T11 relaxed with the model in %d + %d LBFGS steps (max force %.3f eV/A)", n1, n2, f)
    a.calc = None
    ctx.cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, a, format="extxyz")
    return a


def md(
    ctx: Context,
    atoms,
    name: str,
    *,
    integrator: str = "nhc",
    steps: int,
    dt_fs: float = 0.5,
    temperature_K: float = 300.0,
    temperature_end_K: float | None = None,
    tdamp_fs: float = 50.0,
    friction_per_fs: float = 0.01,
    deform_axis: str = "",
    strain_rate_per_fs: float = 0.0,
    thermo_every: int = 10,
    trajectory_every: int = 20,
    restart_from: str = "",
    progress: bool = True,
    seed: int = 0,
    fmax: float = 0.05,
    per_atom: tuple[str, ...] = (),
    committee: bool = False,
) -> Path:
    """One allegro-fm-md run (one rank) of ``atoms`` with the context's model, in ctx.outdir/name; returns that folder.
    ``per_atom``: [output] per_atom (per-atom energy, stress, force deviation in the trajectory frames); ``committee``:
    run the model's shallow ensemble when its heads file is beside it (``heads_beside``): thermo.log then has the
    per-atom force deviation (fdev_max, fdev_mean, eV/A) every ``thermo_every`` steps."""
    # lazy: allegro-fm-md compiles numba kernels; only experiments that run MD need it
    from allegro_fm_md import OutputSpec, PotentialSpec, RunFile, RunSpec, SystemSpec, run

    d = ctx.outdir / name
    d.mkdir(parents=True, exist_ok=True)
    structure = d / "start.extxyz"
    ase.io.write(structure, atoms)
    pot = (
        PotentialSpec(**ctx.md_potential)
        if ctx.md_potential
        else PotentialSpec(kind="allegro", model=ctx.model)
    )
    heads = None
    if (
        committee and not ctx.md_potential
    ):  # the model's shallow ensemble, when its heads are beside it
        from allegro_fm_model.loading import heads_beside  # lazy: allegro-fm-model imports torch

        heads = heads_beside(ctx.model)
        if heads is not None:
            pot = PotentialSpec(kind="allegro", model=ctx.model, options={"heads": str(heads)})
    own = {
        "nhc": {"tdamp_fs": tdamp_fs},
        "langevin": {"friction_per_fs": friction_per_fs},
        "fire": {"fmax": fmax},
    }
    options = {integrator: own[integrator]} if integrator in own else {}
    if deform_axis:
        options["deform"] = {"deform_axis": deform_axis, "strain_rate_per_fs": strain_rate_per_fs}
    rf = RunFile(
        SystemSpec(str(structure)),
        pot,
        RunSpec(
            integrator=integrator,
            dt_fs=dt_fs,
            steps=steps,
            temperature_K=temperature_K,
            temperature_end_K=temperature_end_K,
            seed=seed,
            min_distance=0.5,
            options=options,
            fdev_every=thermo_every if heads is not None else 1,
        ),
        OutputSpec(
            dir=str(d),
            thermo_every=thermo_every,
            trajectory_every=trajectory_every,
            restart_every=max(steps // 4, 1),
            restart_from=restart_from,
            per_atom=list(per_atom),
        ),
    )
    run(rf, progress=progress, overwrite=True)
    return d


def final_atoms(run_dir: str | Path):
    """The last state of an allegro-fm-md run (its restart.npz) as ase.Atoms in atom-id order (positions A,
    velocities in ASE units, cell, element types from the run's start.extxyz)."""
    from allegro_fm_md import (
        restart_atoms,
    )  # lazy: allegro-fm-md compiles numba kernels; only experiments that run MD need it

    return restart_atoms(Path(run_dir) / "restart.npz", ase.io.read(Path(run_dir) / "start.extxyz"))


def read_thermo(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of an allegro-fm-md thermo.log by name (units in the names)."""
    path = Path(path)
    names = path.read_text().splitlines()[0].lstrip("#").split()
    data = np.atleast_2d(np.loadtxt(path))
    return {n: data[:, i] for i, n in enumerate(names)}


def plt():
    """matplotlib.pyplot with the Agg backend."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot  # lazy: matplotlib only when plotting

    return pyplot
