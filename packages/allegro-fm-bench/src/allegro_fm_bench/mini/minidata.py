"""The Allegro-FM-mini dataset: real labels at two levels of theory, made on 2 CPU cores.

    allegro-fm-bench make-mini-data -o OUT --part pbe         # periodic Ca/Si/O/H/C, PBE level (SevenNet-0)
    allegro-fm-bench make-mini-data -o OUT --part molecular   # H/C/O molecules, wB97M-D3(BJ)/def2-SVP (PySCF)

The two parts are independent (run them side by side). Each stage is written atomically to
OUT/<part>/<stage>.extxyz and skipped when present, so an interrupted run resumes. Every frame carries
its provenance in ``info``: level_of_theory, structure (also as ``config_type``: tea-align's frame key, by which
``allegro-fm evaluate --by key`` groups errors per family), generator (operation, seed, temperature). Whole structure
families are held out (OUT/pbe-heldout.extxyz, OUT/molecular-heldout.extxyz): never trained on, they are the test set.
Anchors (the same molecules in the same 14 A boxes at both levels; isolated H, C, O atoms at the
molecular level only) go to
OUT/anchors/{pbe,molecular}.extxyz for tea-align's fit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from tea_align.progress import progress as tracked

from .. import neb
from .. import structures as S
from ..labelling import PBE_LEVEL, WB97M_LEVEL, WB97MD3BJ, SCFNotConverged, pbe_calculator

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
    relax_steps: int = 120
    melt_steps: int = 300
    molecule_rattles: tuple[float, ...] = (0.03, 0.06, 0.09, 0.12, 0.15, 0.18)
    molecule_seeds: int = 2
    path_images: int = 13
    path_rattles: tuple[float, ...] = (0.0, 0.05, 0.1)
    clusters: int = 36
    heldout_clusters: int = 8
    seed: int = 0


QUICK = MiniDataSettings(
    strains=(-0.02, 0.02),
    rattles=(0.05,),
    md_temperatures=(600.0,),
    md_steps=8,
    md_every=4,
    relax_steps=5,
    melt_steps=5,
    molecule_rattles=(0.08,),
    molecule_seeds=1,
    path_images=3,
    path_rattles=(0.0,),
    clusters=1,
    heldout_clusters=1,
)


@dataclass(frozen=True)
class Family:
    """One periodic structure family: how to build its base structure, how to sample it, and whether it is held out
    (never trained on: the test set is whole families, not random frames)."""

    name: str
    build: Callable[[], Atoms]
    what: str
    max_temperature: float = 1200.0  # K: molecular solids and liquids are sampled below it
    temperatures: tuple[float, ...] = ()  # K, replaces the settings' MD temperatures when given
    relax: str = "cell"  # "cell" (positions and cell), "positions", "melt" (positions, then MD at the first temperature),
    # "none" (as built) or "given" (already relaxed)
    extra_strains: tuple[float, ...] = ()  # isotropic, on top of the settings' strains
    held_out: bool = False
    round: int = (
        1  # the data round that added it: round 1 -> pbe.extxyz, round 2 -> pbe-round2.extxyz
    )


def _slab() -> Atoms:
    return S.slab_with_water(S.tobermorite_11a(), 6, gap_A=12.0, layer_A=6.0)


#: The periodic families (PBE level). Held out (test set only): aragonite (a CaCO3 polymorph; calcite is trained),
#: the sodalite silica framework (quartz, cristobalite, stishovite trained), ice Ih (liquid water, dry ice trained) and a
#: Ca2SiO4 melt (a CaSiO3 melt trained).
FAMILIES: tuple[Family, ...] = (
    Family("tobermorite-11A", S.tobermorite_11a, "C-S-H crystal, 88 atoms (relaxed with cell)"),
    Family("portlandite", lambda: S.portlandite() * (3, 3, 2), "Ca(OH)2 3x3x2", relax="none"),
    Family("calcite", lambda: S.calcite() * (2, 2, 1), "CaCO3 2x2x1", relax="none"),
    Family("quartz", lambda: S.quartz() * (2, 2, 2), "alpha-SiO2 2x2x2", relax="none"),
    Family(
        "water", lambda: S.water_box(32), "32 H2O, 1 g/cm3", max_temperature=400.0, relax="none"
    ),
    Family(
        "cristobalite", lambda: S.alpha_cristobalite() * (2, 2, 2), "alpha-cristobalite SiO2 2x2x2"
    ),
    Family("stishovite", lambda: S.stishovite() * (2, 2, 3), "six-fold SiO2 2x2x3"),
    Family("lime", lambda: S.lime() * (2, 2, 2), "CaO 2x2x2"),
    Family(
        "silicon",
        lambda: S.silicon() * (2, 2, 2),
        "diamond Si 2x2x2, dense and expanded (+-7, +-10 %)",
        temperatures=(300.0, 1000.0, 2000.0),
        extra_strains=(-0.10, -0.07, 0.07, 0.10),
    ),
    Family(
        "dry-ice",
        lambda: S.dry_ice() * (2, 2, 2),
        "solid CO2 2x2x2",
        temperatures=(100.0, 200.0, 300.0),
    ),
    Family(
        "carbonic-acid-box",
        lambda: S.molecular_box("H2CO3", 12, 1.5),
        "12 H2CO3 at 1.5 g/cm3",
        temperatures=(200.0, 300.0, 400.0),
        relax="positions",
    ),
    Family(
        "CaSiO3-melt",
        lambda: S.random_packing("Ca16Si16O48", 2.7),
        "CaSiO3 melt-quench, 80 atoms at 2.7 g/cm3",
        temperatures=(3000.0, 2000.0, 1200.0),
        relax="melt",
    ),
    Family(
        "tobermorite-slab-water",
        _slab,
        "tobermorite slab (pbc T,T,F) with 6 H2O above",
        temperatures=(300.0, 400.0),
        relax="positions",
    ),
    Family("aragonite", lambda: S.aragonite() * (2, 2, 1), "CaCO3 polymorph 2x2x1", held_out=True),
    Family("sodalite-SiO2", S.silica_sodalite, "zeolite framework (SOD), 36 atoms", held_out=True),
    Family(
        "ice-Ih",
        S.ice_ih,
        "proton-disordered ice Ih 2x2x2",
        temperatures=(100.0, 200.0, 250.0),
        held_out=True,
    ),
    Family(
        "Ca2SiO4-melt",
        lambda: S.random_packing("Ca16Si8O32", 3.0),
        "Ca2SiO4 melt-quench, 56 atoms at 3.0 g/cm3",
        temperatures=(3000.0, 2000.0, 1200.0),
        relax="melt",
        held_out=True,
    ),
    # round 2 (v2.1): melts on both sides of the held-out Ca2SiO4 melt's Ca:Si = 2 (3 and 0; CaSiO3's 1 is round 1)
    Family(
        "Ca3SiO5-melt",
        lambda: S.random_packing("Ca24Si8O40", 2.9),
        "Ca3SiO5 (C3S composition) melt-quench, 72 atoms at 2.9 g/cm3",
        temperatures=(3000.0, 2000.0, 1200.0),
        relax="melt",
        round=2,
    ),
    Family(
        "SiO2-melt",
        lambda: S.random_packing("Si24O48", 2.2),
        "silica melt-quench, 72 atoms at 2.2 g/cm3",
        temperatures=(3500.0, 2500.0, 1500.0),
        relax="melt",
        round=2,
    ),
)

#: Molecular families (wB97M-D3(BJ) level). Trained: S.MOLECULES plus these; held out: ethanol, methyl formate and acetone
#: (functional groups seen, molecules never) and methanol-water clusters.
MORE_MOLECULES = ("CH3CHO", "C2H4", "C2H2", "H2O2", "H2CCO", "C3H8", "CH3OCH3", "CH2OCH2", "OCHCHO")
HELDOUT_MOLECULES = ("CH3CH2OH", "HCOOCH3", "CH3COCH3")
#: Round 2 (v2.1): more closed-shell H/C/O molecules of ASE's G2 set (a secondary alcohol, an ether, alkenes, branched
#: and linear alkanes), one rattle seed each, and more H-bonded dimers.
ROUND2_MOLECULES = ("C2H6CHOH", "CH3CH2OCH3", "C3H6_Cs", "isobutene", "isobutane", "trans-butane")
ROUND2_CLUSTERS = (("CH3OH", "CH3OH"), ("HCOOH", "H2O"), ("H2CO", "H2O"), ("CH3OH", "CO2"))


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
    out.info.update(
        {
            "level_of_theory": level,
            "structure": structure,
            "generator": generator,
            "config_type": structure,
        }
    )
    return out


def _write_atomic(frames: list[Atoms], path: Path) -> None:
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")


def _read_stage(path: Path, name: str) -> list[Atoms]:
    frames = ase.io.read(path, ":")
    for a in (
        frames
    ):  # stages written before config_type was set: the family is the frame's key in tea-align
        a.info.setdefault("config_type", a.info.get("structure", name))
    return frames


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stage(outdir: Path, name: str, make: Callable[[], list[Atoms]]) -> list[Atoms] | None:
    """The frames of stage ``name``: read from OUT/.../name.extxyz when present, else made and written atomically. While
    a stage is being made its folder holds name.lock (the pid): another process running the same part skips that stage
    (returns None) and labels the next one, so several processes share one part's stages; a dead process's lock is
    taken over."""
    path = outdir / f"{name}.extxyz"
    if path.exists():
        log.info("stage %s: present (%s), skipped", name, path)
        return _read_stage(path, name)
    outdir.mkdir(parents=True, exist_ok=True)
    lock = outdir / f"{name}.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = -1
        if pid > 0 and pid != os.getpid() and _alive(pid):
            log.info("stage %s: being made by process %d, skipped here", name, pid)
            return None
        lock.unlink(missing_ok=True)  # its maker died: take the stage over
        return _stage(outdir, name, make)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        if path.exists():  # finished by another process between the check and the lock
            return _read_stage(path, name)
        frames = make()
        _write_atomic(frames, path)
        log.info("stage %s: %d frames -> %s", name, len(frames), path)
        return frames
    finally:
        lock.unlink(missing_ok=True)


def _stages(
    outdir: Path, name: str, jobs: list, run: Callable[[list, str], list[Atoms]], chunk: int
) -> list[Atoms] | None:
    """Stage ``name`` made in parts of ``chunk`` jobs (name.partNN): a process killed mid-way loses one part, and several
    processes can share the parts. A whole name.extxyz (as earlier versions wrote it) is used when present."""
    if (outdir / f"{name}.extxyz").exists():
        return _stage(outdir, name, lambda: [])
    parts = [
        _stage(
            outdir,
            f"{name}.part{k:02d}",
            lambda j=jobs[i : i + chunk], k=k: run(j, f"{name} {k + 1}/{-(-len(jobs) // chunk)}"),
        )
        for k, i in enumerate(range(0, len(jobs), chunk))
    ]
    return None if any(p is None for p in parts) else [a for p in parts for a in p]


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
        out.append(
            (sym, Atoms(sym, positions=[[ANCHOR_BOX / 2] * 3], cell=[ANCHOR_BOX] * 3, pbc=True))
        )
    return out


def crystals(held_out: bool = False) -> list[tuple[str, Atoms]]:
    """The periodic structures of the mini dataset, unrelaxed, as built (the trained families, or the held-out ones)."""
    return [(f.name, f.build()) for f in FAMILIES if f.held_out == held_out]


def relax_tobermorite(calc, fmax: float = 0.05, steps: int = 300) -> Atoms:
    """Tobermorite 11 A relaxed (positions and cell, FIRE on a FrechetCellFilter) with ``calc``."""
    t = S.tobermorite_11a()
    t.calc = calc
    FIRE(FrechetCellFilter(t), logfile=None).run(fmax=fmax, steps=steps)
    t.calc = None
    return t


def langevin(
    atoms: Atoms, calc, temperature: float, dt_fs: float, seed: int
) -> tuple[Atoms, Langevin]:
    """(a copy of ``atoms`` driven by ``calc``, its Langevin integrator): momenta drawn at 2 x ``temperature`` (K;
    equipartition halves it quickly), friction 0.02/fs, time step ``dt_fs`` (fs), both random streams from ``seed``."""
    a = atoms.copy()
    a.calc = calc
    thermalize_momenta(a, 2 * temperature, rng=np.random.default_rng(seed))
    return a, Langevin(
        a,
        dt_fs * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        rng=np.random.default_rng(seed),
    )


def _md(
    atoms: Atoms, calc, temperature: float, dt_fs: float, steps: int, seed: int, every: int = 0
):
    """Langevin MD (friction 0.02/fs) from momenta drawn at 2 x ``temperature`` (equipartition halves it quickly);
    returns the snapshots every ``every`` steps (or the last frame when ``every`` is 0)."""
    a, dyn = langevin(atoms, calc, temperature, dt_fs, seed)
    out = []
    for _ in range(steps // every if every else 1):
        dyn.run(every or steps)
        snap = a.copy()
        snap.calc = None
        out.append(snap)
    return out


def _md_snapshots(
    atoms: Atoms,
    calc,
    temperature: float,
    st: MiniDataSettings,
    seed: int,
    dt_fs: float | None = None,
):
    dt = st.md_dt_fs if dt_fs is None else dt_fs
    snaps = _md(atoms, calc, temperature, dt, st.md_steps, seed, every=st.md_every)
    return [
        (snap, f"md T={temperature:g}K step={(k + 1) * st.md_every} dt={dt}fs seed={seed}")
        for k, snap in enumerate(snaps)
    ]


def _base(family: Family, calc, st: MiniDataSettings, seed: int) -> tuple[Atoms, str]:
    """The family's base structure after its relaxation (SevenNet-0) and how it was made."""
    a = family.build()
    if family.relax in ("none", "given"):
        return a, "as built" if family.relax == "none" else "relaxed (FIRE+cell fmax=0.05)"
    a.calc = calc
    if family.relax == "cell" and a.pbc.all():
        FIRE(FrechetCellFilter(a), logfile=None).run(fmax=0.05, steps=st.relax_steps)
        how = f"relaxed FIRE+cell fmax=0.05 <= {st.relax_steps} steps"
    else:
        FIRE(a, logfile=None).run(fmax=0.05, steps=st.relax_steps)
        how = f"relaxed FIRE positions fmax=0.05 <= {st.relax_steps} steps"
    a.calc = None
    if family.relax == "melt":
        temps = family.temperatures or st.md_temperatures
        a = _md(a, calc, temps[0], 1.0, st.melt_steps, seed)[-1]
        how += f", melted: Langevin {st.melt_steps} x 1 fs at {temps[0]:g} K"
    return a, how


def _family_frames(
    family: Family, index: int, calc, st: MiniDataSettings, progress: bool
) -> list[Atoms]:
    """Base, strained, rattled and MD-sampled frames of one family, labelled at the PBE level."""
    rng = np.random.default_rng(
        [st.seed, index]
    )  # per family: stages can run in any order or in parallel
    base, how = _base(family, calc, st, int(rng.integers(1 << 30)))
    has_h = "H" in base.get_chemical_symbols()
    jobs: list[tuple[Atoms, str]] = [(base.copy(), how)]
    periodic_axes = [k for k in range(3) if base.pbc[k]]
    for e in st.strains + family.extra_strains:
        a = base.copy()
        m = np.eye(3)
        m[periodic_axes, periodic_axes] += e
        a.set_cell(a.cell @ m, scale_atoms=True)
        jobs.append((a, f"isotropic strain {e:+g}"))
        if e in family.extra_strains:
            continue
        a = base.copy()
        axis = int(rng.choice(periodic_axes))
        m = np.eye(3)
        m[axis, axis] += e
        a.set_cell(a.cell @ m, scale_atoms=True)
        jobs.append((a, f"uniaxial strain {e:+g} along cell vector {axis}"))
    for s in st.rattles:
        a = base.copy()
        seed = int(rng.integers(1 << 30))
        a.rattle(s, seed=seed)
        jobs.append((a, f"rattle sigma={s}A seed={seed}"))
    temps = family.temperatures or tuple(min(t, family.max_temperature) for t in st.md_temperatures)
    for T in temps:
        jobs += _md_snapshots(
            base,
            calc,
            T,
            st,
            int(rng.integers(1 << 30)),
            dt_fs=st.md_dt_fs if has_h else 2 * st.md_dt_fs,
        )
    return [
        _labelled(a, calc, PBE_LEVEL, family.name, g)
        for a, g in tracked(jobs, desc=family.name, enabled=progress, leave=False)
    ]


def make_pbe_part(
    outdir: str | Path,
    st: MiniDataSettings = MiniDataSettings(),
    progress: bool = True,
    only: tuple[str, ...] = (),
) -> Path | None:
    """Periodic frames at the PBE level (SevenNet-0): OUT/pbe.extxyz (trained families of round 1), OUT/pbe-round2.extxyz
    (trained families of round 2: a grown dataset keeps its earlier frames first), OUT/pbe-heldout.extxyz
    (held-out families) and the PBE side of the anchors; returns OUT/pbe.extxyz (None when ``only`` names a subset of
    the families: a partial run for parallel labelling)."""

    outdir = Path(outdir)
    unknown = set(only) - {f.name for f in FAMILIES}
    if unknown:
        raise ValueError(
            f"unknown structure families {sorted(unknown)}; known: {', '.join(f.name for f in FAMILIES)}"
        )
    calc = pbe_calculator()
    frames: dict[bool, list[Atoms]] = {False: [], True: []}
    round2: list[Atoms] = []
    busy = False
    for index, family in enumerate(FAMILIES):
        if only and family.name not in only:
            continue
        if (
            family.name == "tobermorite-11A"
        ):  # v1's stages, kept: the relaxed crystal is also the main job's structure
            t11s = _stage(
                outdir / "pbe",
                "tobermorite_relaxed",
                lambda: [
                    _labelled(
                        relax_tobermorite(calc),
                        calc,
                        PBE_LEVEL,
                        "tobermorite-11A",
                        "relaxed FIRE+cell fmax=0.05",
                    )
                ],
            )
            if t11s is None:
                busy = True
                continue
            t11 = t11s[0]
            t11.calc = None
            fam = replace(family, build=lambda t=t11: t.copy(), relax="given")
            got = _stage(
                outdir / "pbe",
                family.name,
                lambda f=fam, i=index: _family_frames(f, i, calc, st, progress),
            )
        else:
            got = _stage(
                outdir / "pbe",
                family.name,
                lambda f=family, i=index: _family_frames(f, i, calc, st, progress),
            )
        if got is None:
            busy = True
        elif family.round > 1 and not family.held_out:
            round2 += got
        else:
            frames[family.held_out] += got
    if only or busy:
        if busy:
            log.info(
                "PBE part: some families are being labelled by another process; run again when it ends to assemble"
            )
        return None
    # no isolated atoms at this level: SevenNet-0 never saw one (MPtrj has none), its one-atom energy is
    # not the PBE atom's, so tea-align fits the per-element shifts jointly with the scale from the molecules
    anchors = _stage(
        outdir / "anchors",
        "pbe",
        lambda: [
            _labelled(a, calc, PBE_LEVEL, n, "anchor")
            for n, a in anchor_structures(isolated_atoms=False)
        ],
    )
    if anchors is None:
        log.info(
            "PBE part: the anchors are being labelled by another process; run again when it ends to assemble"
        )
        return None
    out = outdir / "pbe.extxyz"
    _write_atomic(frames[False], out)
    _write_atomic(frames[True], outdir / "pbe-heldout.extxyz")
    _write_atomic(round2, outdir / "pbe-round2.extxyz")
    log.info(
        "PBE part, round 2: %d frames, %d atoms -> pbe-round2.extxyz",
        len(round2),
        sum(len(a) for a in round2),
    )
    log.info(
        "PBE part: %d frames, %d atoms (+ %d held-out frames); %d anchors",
        len(frames[False]),
        sum(len(a) for a in frames[False]),
        len(frames[True]),
        len(anchors),
    )
    return out


def _clusters(rng: np.random.Generator, n: int, kinds=None) -> list[tuple[Atoms, str]]:
    """Small H-bonded clusters at random orientations (default kinds: water dimers, trimers and tetramers, CO2-H2O,
    H2CO3-H2O, formic-acid dimers)."""
    out = []
    kinds = kinds or [
        ("H2O", "H2O"),
        ("H2O", "H2O", "H2O"),
        ("CO2", "H2O"),
        ("H2CO3?", "H2O"),
        ("HCOOH", "HCOOH"),
        ("H2O", "H2O", "H2O", "H2O"),
        ("H2CO3?", "H2O", "H2O"),
        ("CO2", "H2O", "H2O"),
    ]
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
            for _ in range(
                1000
            ):  # a random placement with the closest contact at 1.6-2.4 A (H-bond range)
                trial = m.copy()
                trial.positions += rng.uniform(-4, 4, 3)
                _, d = get_distances(trial.positions, c.positions)
                if 1.6 < d.min() and d.min() < 2.4:
                    c = c + trial
                    break
        out.append((c, f"cluster {'+'.join(n.rstrip('?') for n in names)} #{k}"))
    return out


def _conformers(
    names, rng: np.random.Generator, st: MiniDataSettings
) -> list[tuple[str, Atoms, str]]:
    jobs = []
    for name in names:
        m = molecule(name)
        formula = m.get_chemical_formula()
        jobs.append((formula, m.copy(), f"G2 geometry of {name}"))
        for s in st.molecule_rattles:
            for _ in range(st.molecule_seeds):
                a = m.copy()
                seed = int(rng.integers(1 << 30))
                a.rattle(s, seed=seed)
                jobs.append((formula, a, f"{name} rattle sigma={s}A seed={seed}"))
    return jobs


def _with_rattles(base: Atoms, rattles, rng: np.random.Generator) -> list[tuple[Atoms, str]]:
    """``base`` as it is (rattle 0) and rattled by each sigma (A) of ``rattles``, with the generator suffix of each; a
    seed is drawn for every entry, 0 included, so the draws do not depend on which rattles are 0."""
    out = []
    for sigma in rattles:
        a = base.copy()
        seed = int(rng.integers(1 << 30))
        if sigma:
            a.rattle(sigma, seed=seed)
        out.append((a, f" rattle sigma={sigma}A seed={seed}" if sigma else ""))
    return out


def _reaction_path_jobs(
    folder: str | Path, st: MiniDataSettings, rng: np.random.Generator
) -> list[tuple[str, Atoms, str]]:
    """The reaction path of the bench's reference NEB (``check_neb_reference.py``'s folder: images.extxyz, its PBE band,
    converged or not, and saddle.extxyz, the refined saddle), each geometry as is and rattled by the settings' path
    rattles."""
    band, saddle = neb.read_reference(folder)
    jobs = []
    for k, img in enumerate([*band, saddle]):
        what = "saddle" if k == len(band) else f"image {k}/{len(band) - 1}"
        for a, how in _with_rattles(
            Atoms(img.numbers, img.positions, cell=img.cell, pbc=img.pbc), st.path_rattles, rng
        ):
            jobs.append((a.get_chemical_formula(), a, f"reference CI-NEB (PBE) {what}{how}"))
    return jobs


def _model_band_jobs(
    calc, label: str, st: MiniDataSettings, rng: np.random.Generator, steps: int = 200
) -> list[tuple[str, Atoms, str]]:
    """Active learning on the bench's NEB: the inner images of a model's own bands (``calc``, named ``label``; the bench's
    quick settings until 2026-12-01, kept so that the earlier rounds remake as they were: 7 images, at most ``steps`` +
    ``steps`` FIRE steps, the in-plane and the H2O-rotation pathway), as they are and rattled by the settings' path
    rattles. A model with a spurious low-energy region along the path puts
    images there; labelled, they teach the next model that the region is high in energy."""
    reactant, product = neb.endpoints(calc)
    jobs = []
    for pname, via in (("in-plane", None), ("H2O rotation", neb.rotated_water(product))):
        images, fmax, ok = neb.band(calc, reactant, product, 7, via=via, steps=steps)
        log.info(
            "model band %s: %s, max NEB force %.3f eV/A",
            pname,
            "converged" if ok else "NOT converged",
            fmax,
        )
        for k, img in enumerate(images[1:-1], 1):
            for a, how in _with_rattles(Atoms(img.numbers, img.positions), st.path_rattles, rng):
                jobs.append(
                    (
                        a.get_chemical_formula(),
                        a,
                        f"{label} NEB band ({pname}) image {k}/{len(images) - 1}{how}",
                    )
                )
    return jobs


def label_model_bands(
    model: str | Path, calc, st: MiniDataSettings, rng: np.random.Generator, progress: bool = True
) -> list[Atoms]:
    """``_model_band_jobs`` of the model file ``model``, labelled with ``calc`` at the wB97M level; a band image the
    closed-shell SCF cannot describe is left out (logged), not fatal."""
    from allegro_fm_model import (
        AllegroFMCalculator,
        load_potential,
    )  # lazy: torch; only this stage needs a model

    jobs = _model_band_jobs(
        AllegroFMCalculator(load_potential(str(model))), Path(model).name, st, rng
    )
    return label_or_skip(jobs, calc, "model bands", progress)


def label_or_skip(
    jobs: list[tuple[str, Atoms, str]], calc, desc: str, progress: bool = True
) -> list[Atoms]:
    """(structure, atoms, generator) jobs labelled with ``calc`` at the wB97M level; a geometry the closed-shell SCF
    cannot describe (a model's broken band image or MD frame) is left out and logged, not fatal."""
    out = []
    for n, a, g in tracked(jobs, desc=desc, enabled=progress, leave=False):
        try:
            out.append(_labelled(a, calc, WB97M_LEVEL, n, g))
        except SCFNotConverged as exc:
            log.warning("%s: %s left out, SCF not converged (%s)", desc, g, exc)
    return out


def make_molecular_part(
    outdir: str | Path,
    st: MiniDataSettings = MiniDataSettings(),
    progress: bool = True,
    reaction_path: str | Path | None = None,
    active_model: str | Path | None = None,
) -> Path | None:
    """Molecules and clusters at wB97M-D3(BJ)/def2-SVP (PySCF) and the molecular side of the anchors:
    OUT/molecular.extxyz (round 1, trained), OUT/molecular-round2.extxyz (round 2, trained; with ``reaction_path``, the
    folder of a finished reference NEB, its band and saddle too; with ``active_model``, that model's own NEB bands)
    and OUT/molecular-heldout.extxyz (held-out molecules and methanol-water clusters); None when another process is
    still labelling some of the stages (run again). Round 1's stages are labelled first."""
    outdir = Path(outdir)
    calc = WB97MD3BJ()
    rng = np.random.default_rng(st.seed + 1)

    def run(jobs, desc):
        return [
            _labelled(a, calc, WB97M_LEVEL, n, g)
            for n, a, g in tracked(jobs, desc=desc, enabled=progress, leave=False)
        ]

    # every job list is drawn up front, in one fixed order, whether or not its stage is already labelled: a resumed run
    # draws the same random rattles and placements as an uninterrupted one
    molecules = _conformers(S.MOLECULES, rng, st)
    path = [
        ("H2CO3->H2O+CO2", a, f"IDPP image {k}/{st.path_images - 1}{how}")
        for k, img in enumerate(S.carbonic_acid_path(st.path_images))
        for a, how in _with_rattles(img, st.path_rattles, rng)
    ]
    clusters = [(g.split()[1], a, g) for a, g in _clusters(rng, st.clusters)]
    more = _conformers(MORE_MOLECULES, np.random.default_rng([st.seed, 2]), st)
    held_mol = _conformers(HELDOUT_MOLECULES, np.random.default_rng([st.seed, 3]), st)
    held_cl = [
        (g.split()[1], a, g)
        for a, g in _clusters(
            np.random.default_rng([st.seed, 4]),
            st.heldout_clusters,
            [("CH3OH", "H2O"), ("CH3OH", "H2O", "H2O")],
        )
    ]
    st2 = replace(st, molecule_seeds=1)
    more2 = _conformers(ROUND2_MOLECULES, np.random.default_rng([st.seed, 5]), st2)
    clusters2 = [
        (g.split()[1], a, g)
        for a, g in _clusters(
            np.random.default_rng([st.seed, 6]), st.clusters // 3, list(ROUND2_CLUSTERS)
        )
    ]
    rp = (
        _reaction_path_jobs(reaction_path, st, np.random.default_rng([st.seed, 7]))
        if reaction_path
        else []
    )  # fails early
    mol = outdir / "molecular"
    parts = [
        _stage(mol, "molecules", lambda: run(molecules, "molecules")),
        _stage(mol, "carbonic_acid_path", lambda: run(path, "H2CO3 path")),
        _stages(mol, "clusters", clusters, run, 6),
        _stages(mol, "more_molecules", more, run, 13),
    ]
    held_parts = [
        _stages(mol, "heldout_molecules", held_mol, run, 13),
        _stages(mol, "heldout_clusters", held_cl, run, 4),
    ]
    anchors = _stage(
        outdir / "anchors",
        "molecular",
        lambda: run([(n, a, "anchor") for n, a in anchor_structures()], "anchors"),
    )
    round2 = [
        _stages(mol, "round2_molecules", more2, run, 11),
        _stages(mol, "round2_clusters", clusters2, run, 6),
    ]
    if reaction_path:
        round2.append(_stage(mol, "round2_reaction_path", lambda: run(rp, "reaction path")))
    if active_model:
        round2.append(
            _stage(
                mol,
                "round2_model_bands",
                lambda: label_model_bands(
                    active_model, calc, st, np.random.default_rng([st.seed, 8]), progress
                ),
            )
        )
    if any(p is None for p in parts + held_parts + round2) or anchors is None:
        log.info(
            "molecular part: some stages are being made by another process; run again when it ends to assemble"
        )
        return None
    frames = [a for p in parts for a in p]
    held = [a for p in held_parts for a in p]
    out = outdir / "molecular.extxyz"
    _write_atomic(frames, out)
    _write_atomic(held, outdir / "molecular-heldout.extxyz")
    frames2 = [a for p in round2 for a in p]
    _write_atomic(frames2, outdir / "molecular-round2.extxyz")
    log.info(
        "molecular part, round 2: %d frames, %d atoms -> molecular-round2.extxyz",
        len(frames2),
        sum(len(a) for a in frames2),
    )
    log.info(
        "molecular part: %d frames, %d atoms (+ %d held-out); %d anchors",
        len(frames),
        sum(len(a) for a in frames),
        len(held),
        len(anchors),
    )
    return out
