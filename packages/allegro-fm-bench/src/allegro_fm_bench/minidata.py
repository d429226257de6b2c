"""The Allegro-FM-mini dataset: real labels at two levels of theory, made on 2 CPU cores.

    allegro-fm-bench make-mini-data -o OUT --part pbe         # periodic Ca/Si/O/H/C, PBE level (SevenNet-0)
    allegro-fm-bench make-mini-data -o OUT --part molecular   # H/C/O molecules, wB97M-D3(BJ)/def2-SVP (PySCF)

The two parts are independent (run them side by side). Each stage is written atomically to
OUT/<part>/<stage>.extxyz and skipped when present, so an interrupted run resumes. Every frame carries
its provenance in ``info``: level_of_theory, structure, generator (operation, seed, temperature).
Anchors (the same molecules in the same 14 A boxes at both levels; isolated H, C, O atoms at the
molecular level only) go to
OUT/anchors/{pbe,molecular}.extxyz for tea-align's fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.geometry import get_distances
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.optimize import FIRE
from tea_align.files import atomic_path
from tqdm.auto import tqdm

from . import structures as S
from .labelling import PBE_LEVEL, WB97M_LEVEL, WB97MD3BJ, pbe_calculator

log = logging.getLogger("allegro_fm_bench.minidata")
ANCHOR_BOX = 14.0  # A


@dataclass(frozen=True)
class MiniDataSettings:
    """Sizes of the generated dataset (the defaults make the shipped mini model's data)."""

    strains: tuple[float, ...] = (-0.04, -0.02, 0.02, 0.04)
    rattles: tuple[float, ...] = (0.03, 0.06, 0.1, 0.15)
    md_temperatures: tuple[float, ...] = (300.0, 700.0, 1200.0)
    md_steps: int = 48
    md_every: int = 8
    md_dt_fs: float = 0.5
    molecule_rattles: tuple[float, ...] = (0.04, 0.08, 0.12, 0.16)
    path_images: int = 9
    path_rattles: tuple[float, ...] = (0.0, 0.05, 0.1)
    clusters: int = 12
    seed: int = 0


QUICK = MiniDataSettings(strains=(-0.02, 0.02), rattles=(0.05,), md_temperatures=(600.0,), md_steps=8, md_every=4,
                         molecule_rattles=(0.08,), path_images=3, path_rattles=(0.0,), clusters=1)


def _labelled(atoms: Atoms, calc, level: str, structure: str, generator: str) -> Atoms:
    a = atoms.copy()
    a.calc = calc
    e = a.get_potential_energy()
    f = a.get_forces()
    kw = {"energy": e, "forces": f}
    if a.pbc.all() and "stress" in calc.implemented_properties:
        kw["stress"] = a.get_stress()
    if not np.isfinite(e) or not np.isfinite(f).all():
        raise RuntimeError(f"{level} returned non-finite labels for {structure} ({generator})")
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, **kw)
    out.info.update({"level_of_theory": level, "structure": structure, "generator": generator})
    return out


def _write_atomic(frames: list[Atoms], path: Path) -> None:
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")


def _stage(outdir: Path, name: str, make: Callable[[], list[Atoms]]) -> list[Atoms]:
    path = outdir / f"{name}.extxyz"
    if path.exists():
        log.info("stage %s: present (%s), skipped", name, path)
        return ase.io.read(path, ":")
    frames = make()
    _write_atomic(frames, path)
    log.info("stage %s: %d frames -> %s", name, len(frames), path)
    return frames


def anchor_structures(isolated_atoms: bool = True) -> list[tuple[str, Atoms]]:
    """Anchors: each small molecule and (optionally) each isolated atom (H, C, O) in the same 14 A periodic box."""
    out = []
    for m in S.small_molecules():
        b = m.copy()
        b.set_cell([ANCHOR_BOX] * 3)
        b.pbc = True
        b.center()
        b.positions = np.round(b.positions, 6)
        out.append((m.get_chemical_formula(), b))
    for sym in ("H", "C", "O") if isolated_atoms else ():
        out.append((sym, Atoms(sym, positions=[[ANCHOR_BOX / 2] * 3], cell=[ANCHOR_BOX] * 3, pbc=True)))
    return out


def crystals() -> list[tuple[str, Atoms]]:
    """The periodic structures of the mini dataset (unrelaxed, as built)."""
    return [("tobermorite-11A", S.tobermorite_11a()), ("portlandite", S.portlandite() * (3, 3, 2)),
            ("calcite", S.calcite() * (2, 2, 1)), ("quartz", S.quartz() * (2, 2, 2)), ("water", S.water_box(32))]


def relax_tobermorite(calc, fmax: float = 0.05, steps: int = 300) -> Atoms:
    """Tobermorite 11 A relaxed (positions and cell, FIRE on a FrechetCellFilter) with ``calc``."""
    t = S.tobermorite_11a()
    t.calc = calc
    FIRE(FrechetCellFilter(t), logfile=None).run(fmax=fmax, steps=steps)
    t.calc = None
    return t


def _md_snapshots(atoms: Atoms, calc, temperature: float, st: MiniDataSettings, seed: int) -> list[tuple[Atoms, str]]:
    a = atoms.copy()
    a.calc = calc
    thermalize_momenta(a, 2 * temperature, rng=np.random.default_rng(seed))  # equipartition halves it quickly
    dyn = Langevin(a, st.md_dt_fs * units.fs, temperature_K=temperature, friction=0.02 / units.fs, rng=np.random.default_rng(seed))
    out = []
    for k in range(st.md_steps // st.md_every):
        dyn.run(st.md_every)
        snap = a.copy()
        snap.calc = None
        out.append((snap, f"md T={temperature:g}K step={(k + 1) * st.md_every} dt={st.md_dt_fs}fs seed={seed}"))
    return out


def make_pbe_part(outdir: str | Path, st: MiniDataSettings = MiniDataSettings(), progress: bool = True,
                  only: tuple[str, ...] = ()) -> Path | None:
    """Periodic frames at the PBE level (SevenNet-0) and the PBE side of the anchors; returns OUT/pbe.extxyz
    (None when ``only`` names a subset of the structures: a partial run for parallel labelling)."""

    outdir = Path(outdir)
    calc = pbe_calculator()
    t11 = _stage(outdir / "pbe", "tobermorite_relaxed", lambda: [_labelled(relax_tobermorite(calc), calc, PBE_LEVEL,
                                                                            "tobermorite-11A", "relaxed FIRE+cell fmax=0.05")])[0]
    t11.calc = None
    everything = []
    for index, (name, atoms) in enumerate(crystals()):
        if only and name not in only:
            continue
        base = t11 if name == "tobermorite-11A" else atoms
        rng = np.random.default_rng([st.seed, index])  # per structure: stages can run in any order or in parallel

        def make(name=name, base=base, rng=rng):
            jobs: list[tuple[Atoms, str]] = [(base.copy(), "as built" if name != "tobermorite-11A" else "relaxed")]
            for e in st.strains:
                a = base.copy()
                a.set_cell(a.cell * (1 + e), scale_atoms=True)
                jobs.append((a, f"isotropic strain {e:+g}"))
                a = base.copy()
                axis = int(rng.integers(3))
                m = np.eye(3)
                m[axis, axis] += e
                a.set_cell(a.cell @ m, scale_atoms=True)
                jobs.append((a, f"uniaxial strain {e:+g} along cell vector {axis}"))
            for s in st.rattles:
                a = base.copy()
                seed = int(rng.integers(1 << 30))
                a.rattle(s, seed=seed)
                jobs.append((a, f"rattle sigma={s}A seed={seed}"))
            for T in st.md_temperatures:
                if name == "water" and T > 400:
                    T = 400.0
                jobs += _md_snapshots(base, calc, T, st, int(rng.integers(1 << 30)))
            return [_labelled(a, calc, PBE_LEVEL, name, g) for a, g in tqdm(jobs, desc=name, disable=not progress, leave=False)]

        everything += _stage(outdir / "pbe", name, make)
    if only:
        return None
    # no isolated atoms at this level: SevenNet-0 never saw one (MPtrj has none), its one-atom energy is
    # not the PBE atom's, so tea-align fits the per-element shifts jointly with the scale from the molecules
    anchors = _stage(outdir / "anchors", "pbe", lambda: [_labelled(a, calc, PBE_LEVEL, n, "anchor")
                                                         for n, a in anchor_structures(isolated_atoms=False)])
    out = outdir / "pbe.extxyz"
    _write_atomic(everything, out)
    log.info("PBE part: %d frames, %d atoms; %d anchors", len(everything), sum(len(a) for a in everything), len(anchors))
    return out


def _clusters(rng: np.random.Generator, n: int) -> list[tuple[Atoms, str]]:
    """Small H-bonded clusters: water dimers/trimers and CO2-H2O pairs at random orientations."""
    out = []
    kinds = [("H2O", "H2O"), ("H2O", "H2O", "H2O"), ("CO2", "H2O"), ("H2CO3?", "H2O")]
    for k in range(n):
        names = kinds[k % len(kinds)]
        parts = []
        for nm in names:
            m = S.carbonic_acid_path(3)[0] if nm == "H2CO3?" else molecule(nm)
            m.positions -= m.get_center_of_mass()
            m.rotate(rng.random() * 360, rng.normal(size=3), center=(0, 0, 0))
            parts.append(m)
        c = parts[0]
        for m in parts[1:]:
            for _ in range(1000):  # a random placement with the closest contact at 1.6-2.4 A (H-bond range)
                trial = m.copy()
                trial.positions += rng.uniform(-4, 4, 3)
                _, d = get_distances(trial.positions, c.positions)
                if 1.6 < d.min() and d.min() < 2.4:
                    c = c + trial
                    break
        out.append((c, f"cluster {'+'.join(n.rstrip('?') for n in names)} #{k}"))
    return out


def make_molecular_part(outdir: str | Path, st: MiniDataSettings = MiniDataSettings(), progress: bool = True) -> Path:
    """Molecules and clusters at wB97M-D3(BJ)/def2-SVP (PySCF) and the molecular side of the anchors."""
    outdir = Path(outdir)
    calc = WB97MD3BJ()
    rng = np.random.default_rng(st.seed + 1)

    def run(jobs, desc):
        return [_labelled(a, calc, WB97M_LEVEL, n, g) for n, a, g in tqdm(jobs, desc=desc, disable=not progress, leave=False)]

    def molecules():
        jobs = []
        for m in S.small_molecules():
            name = m.get_chemical_formula()
            jobs.append((name, m.copy(), "G2 geometry"))
            for s in st.molecule_rattles:
                a = m.copy()
                seed = int(rng.integers(1 << 30))
                a.rattle(s, seed=seed)
                jobs.append((name, a, f"rattle sigma={s}A seed={seed}"))
        return run(jobs, "molecules")

    def path():
        jobs = []
        for k, img in enumerate(S.carbonic_acid_path(st.path_images)):
            for s in st.path_rattles:
                a = img.copy()
                seed = int(rng.integers(1 << 30))
                if s:
                    a.rattle(s, seed=seed)
                jobs.append(("H2CO3->H2O+CO2", a, f"IDPP image {k}/{st.path_images - 1}" + (f" rattle sigma={s}A seed={seed}" if s else "")))
        return run(jobs, "H2CO3 path")

    def clusters():
        return run([(g.split()[1], a, g) for a, g in _clusters(rng, st.clusters)], "clusters")

    frames = _stage(outdir / "molecular", "molecules", molecules)
    frames += _stage(outdir / "molecular", "carbonic_acid_path", path)
    frames += _stage(outdir / "molecular", "clusters", clusters)
    anchors = _stage(outdir / "anchors", "molecular", lambda: run([(n, a, "anchor") for n, a in anchor_structures()], "anchors"))
    out = outdir / "molecular.extxyz"
    _write_atomic(frames, out)
    log.info("molecular part: %d frames, %d atoms; %d anchors", len(frames), sum(len(a) for a in frames), len(anchors))
    return out
