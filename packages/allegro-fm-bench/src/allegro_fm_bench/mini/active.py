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

From round 4 (``MD_FROM_ROUND``) a round also runs the model's own finite-temperature MD (Langevin, the model driving):
- periodic: every trained structure family from its round-1 base structure (the first frame of OUT/pbe/<family>.extxyz)
  at the family's temperatures, ``PBE_MD_SNAPSHOTS`` snapshots each (stage roundK_md_<family>);
- molecular: every trained molecule and the round-1/round-2 cluster kinds at ``MOLECULE_MD_TEMPERATURES``, the last frame
  of each run (stage roundK_md, labelled in parts), plus ``ROUND4_MOLECULES``, closed-shell H/C/O molecules of ASE's G2
  set not used before (G2 geometry, rattled, and along the model's MD). The held-out molecules and clusters are never
  used. A run the model breaks (atoms closer than ``MIN_DISTANCE`` or a force above ``MAX_MD_FORCE``) stops there and
  keeps the snapshots before it.

The files come after the earlier rounds' in the tea-align apply command, so ``[train] split_keep`` keeps the earlier
rounds' split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import LBFGS
from tea_align.progress import progress as tracked

from .. import neb
from .. import structures as S
from ..labelling import PBE_LEVEL, WB97MD3BJ, pbe_calculator
from .minidata import (
    FAMILIES,
    MORE_MOLECULES,
    ROUND2_CLUSTERS,
    ROUND2_MOLECULES,
    MiniDataSettings,
    _clusters,
    _labelled,
    _stage,
    _stages,
    _with_rattles,
    _write_atomic,
    label_model_bands,
    label_or_skip,
    langevin,
)

log = logging.getLogger("allegro_fm_bench.active")

#: the EOS relaxations whose paths are labelled: (family, structure builder); the bench's T11 EOS and the test suite's
#: portlandite EOS (its 5-atom cell)
EOS_SYSTEMS = (("tobermorite-11A", S.tobermorite_11a), ("portlandite", S.portlandite))
EOS_STRAINS = (-0.06, -0.04, -0.02, 0.0, 0.02, 0.04, 0.06)

MD_FROM_ROUND = 4  # rounds 3 (v2.2) and earlier have no model-MD stages
PBE_MD_STEPS, PBE_MD_SNAPSHOTS = 400, 4  # per family and temperature; 0.5 fs with H, else 1 fs
MOLECULE_MD_TEMPERATURES = (300.0, 800.0)  # K
MOLECULE_MD_STEPS = 240  # x 0.5 fs; the last frame is labelled
MIN_DISTANCE = 0.5  # A: a model MD run with two atoms closer than this is broken
MAX_MD_FORCE = 30.0  # eV/A: ... or with a force above this
#: closed-shell H/C/O molecules of ASE's G2 set that no earlier round used (rings, dienes, alkynes, furan, benzene)
ROUND4_MOLECULES = (
    "bicyclobutane",
    "methylenecyclopropane",
    "cyclobutene",
    "C3H6_D3h",
    "C6H6",
    "cyclobutane",
    "butadiene",
    "C4H4O",
    "C3H4_D2d",
    "2-butyne",
    "C5H8",
    "C3H4_C3v",
    "C3H4_C2v",
)
ROUND4_RATTLES = (0.03, 0.09, 0.15)  # A, one seed each
#: the transition-state region of the reference reaction (``--reaction-path``): the saddle as it is and rattled (A, one
#: seed each; small, so that the rattled frames stay below tea-align's 12.9 eV/A force filter) and every
#: ``DESCENT_EVERY``-th frame of the PBE descents from it (steps of 0.05 A)
TS_RATTLES = (0.0, 0.01, 0.01, 0.02, 0.02, 0.02, 0.03, 0.03, 0.03)
DESCENT_EVERY = 2
BAND_LOOP_EVERY = 100  # FIRE steps between the band loop's snapshots of a band (``band_loop_jobs``)


def relaxation_snapshots(
    atoms: Atoms, calc, fmax: float = 0.05, steps: int = 600, cell: bool = False, keep: int = 6
) -> tuple[list[Atoms], Atoms, bool]:
    """LBFGS relaxation of a copy of ``atoms`` with ``calc`` (positions, and the cell at zero pressure with ``cell``) ->
    (``keep`` snapshots evenly spaced along the path, start and end included; the end structure; whether fmax (eV/A)
    was reached in ``steps``). A relaxation that does not converge is not an error here: its path is what is wanted."""
    a = atoms.copy()
    a.calc = calc
    path: list[Atoms] = []
    opt = LBFGS(FrechetCellFilter(a) if cell else a, logfile=None)
    opt.attach(
        lambda: path.append(Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)), interval=1
    )
    try:
        ok = bool(opt.run(fmax=fmax, steps=steps))
    except (
        RuntimeError,
        ValueError,
        FloatingPointError,
    ) as exc:  # an exploding model: the path so far is kept
        log.warning("relaxation stopped after %d steps: %s", len(path), exc)
        ok = False
    if not path:
        path = [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)]
    pick = sorted(
        set(np.linspace(0, len(path) - 1, min(keep, len(path))).round().astype(int).tolist())
    )
    return [path[i] for i in pick], path[-1], ok


def eos_path_jobs(
    calc, label: str, st: MiniDataSettings, rng: np.random.Generator, builder, family: str
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


def _broken(
    atoms: Atoms, min_distance: float = MIN_DISTANCE, max_force: float = MAX_MD_FORCE
) -> str:
    """Why a model MD frame is broken ('' if it is not): non-finite or too large forces, or atoms too close (A)."""
    i, j, d = neighbor_list("ijd", atoms, min_distance)
    if len(d):
        k = int(np.argmin(d))
        return f"atoms {i[k]} and {j[k]} at {d[k]:.2f} A < {min_distance:g}"
    f = atoms.get_forces()
    if not np.isfinite(f).all():
        return "non-finite forces"
    fmax = float(np.sqrt((f**2).sum(axis=1)).max())
    if fmax > max_force:
        return f"force {fmax:.1f} eV/A > {max_force:g}"
    return ""


def model_md(
    atoms: Atoms, calc, temperature: float, dt_fs: float, steps: int, snapshots: int, seed: int
) -> tuple[list[tuple[int, Atoms]], str]:
    """Langevin MD of a copy of ``atoms`` driven by ``calc`` (the model): momenta drawn at 2 x ``temperature`` (K),
    friction 0.02/fs, ``steps`` steps of ``dt_fs`` (fs) -> ([(step, snapshot)] at ``snapshots`` even intervals, the last
    step included; why the run stopped early, '' if it did not). A broken frame (``_broken``) ends the run; the
    snapshots before it are kept."""
    a, dyn = langevin(atoms, calc, temperature, dt_fs, seed)
    every = max(1, steps // snapshots)
    out: list[tuple[int, Atoms]] = []
    for k in range(every, every * snapshots + 1, every):
        try:
            dyn.run(every)
            why = _broken(a)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            log.warning("model MD at %g K stopped before step %d: %s", temperature, k, why)
            return out, f" (run stopped before step {k}: {why})"
        out.append((k, Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)))
    return out, ""


def md_jobs(
    calc,
    label: str,
    atoms: Atoms,
    structure: str,
    temperatures,
    dt_fs: float,
    steps: int,
    snapshots: int,
    rng: np.random.Generator,
) -> list[tuple[str, Atoms, str]]:
    """(structure, snapshot, generator) of ``model_md`` runs of ``atoms`` at each of ``temperatures`` (K)."""
    jobs = []
    for T in temperatures:
        seed = int(rng.integers(1 << 30))
        snaps, stopped = model_md(atoms, calc, T, dt_fs, steps, snapshots, seed)
        jobs += [
            (structure, s, f"{label} MD T={T:g}K step={k} dt={dt_fs:g}fs seed={seed}{stopped}")
            for k, s in snaps
        ]
    return jobs


def _round1_base(outdir: Path, family: str) -> Atoms:
    """A family's base structure: the first frame of its round-1 stage (as built, or relaxed with SevenNet-0)."""
    path = outdir / "pbe" / f"{family}.extxyz"
    try:
        a = ase.io.read(path, index=0)
    except (OSError, ValueError, StopIteration) as exc:
        raise ValueError(
            f"{path}: no labelled family to start the model's MD from; run make-mini-data first ({exc})"
        ) from exc
    return Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)


def _model_calculator(model: str | Path):
    from allegro_fm_model import (
        AllegroFMCalculator,
        load_potential,
    )  # lazy: torch; only the model's paths need it

    return AllegroFMCalculator(load_potential(str(model)))


def _model_label(model: str | Path) -> str:
    """How frames name the model that made them: run/best.ckpt for a checkpoint (every phase's is best.ckpt)."""
    p = Path(model)
    return f"{p.parent.name}/{p.name}" if p.suffix == ".ckpt" else p.name


def make_active_pbe(
    outdir: str | Path,
    model: str | Path,
    round_: int,
    st: MiniDataSettings = MiniDataSettings(),
    progress: bool = True,
    md: bool = True,
) -> Path | None:
    """Periodic active-learning frames of ``model`` (the EOS relaxations' paths and, from round ``MD_FROM_ROUND`` and with
    ``md``, its MD of every trained family, labelled by SevenNet-0) -> OUT/pbe-round<round_>.extxyz; None while another process labels one of
    the stages (run again)."""
    outdir = Path(outdir)
    label = Path(model).name
    parts = []
    for k, (family, builder) in enumerate(EOS_SYSTEMS):

        def make(family=family, builder=builder, k=k):
            calc = pbe_calculator()
            jobs = eos_path_jobs(
                _model_calculator(model),
                label,
                st,
                np.random.default_rng([st.seed, round_, k]),
                builder,
                family,
            )
            return [
                _labelled(a, calc, PBE_LEVEL, n, g)
                for n, a, g in tracked(
                    jobs, desc=f"{family} EOS path", enabled=progress, leave=False
                )
            ]

        parts.append(_stage(outdir / "pbe", f"round{round_}_eos_{family}", make))
    if round_ >= MD_FROM_ROUND and md:
        for k, family in enumerate(f for f in FAMILIES if not f.held_out):

            def make_md(family=family, k=k):
                base = _round1_base(outdir, family.name)
                temps = family.temperatures or tuple(
                    min(t, family.max_temperature) for t in st.md_temperatures
                )
                dt = st.md_dt_fs if "H" in base.get_chemical_symbols() else 2 * st.md_dt_fs
                jobs = md_jobs(
                    _model_calculator(model),
                    label,
                    base,
                    family.name,
                    temps,
                    dt,
                    PBE_MD_STEPS,
                    PBE_MD_SNAPSHOTS,
                    np.random.default_rng([st.seed, round_, 100 + k]),
                )
                calc = pbe_calculator()
                return [
                    _labelled(a, calc, PBE_LEVEL, n, g)
                    for n, a, g in tracked(
                        jobs, desc=f"{family.name} model MD", enabled=progress, leave=False
                    )
                ]

            parts.append(_stage(outdir / "pbe", f"round{round_}_md_{family.name}", make_md))
    if any(p is None for p in parts):
        log.info(
            "active PBE part: a stage is being labelled by another process; run again when it ends to assemble"
        )
        return None
    out = outdir / f"pbe-round{round_}.extxyz"
    frames = [a for p in parts for a in p]
    _write_atomic(frames, out)
    log.info(
        "active PBE part, round %d: %d frames, %d atoms -> %s",
        round_,
        len(frames),
        sum(len(a) for a in frames),
        out,
    )
    return out


def molecular_md_geometries(
    model: str | Path,
    st: MiniDataSettings,
    rng: np.random.Generator,
    calc=None,
    molecules: tuple[str, ...] | None = None,
    n_clusters: tuple[int, int] = (8, 4),
) -> list[Atoms]:
    """The unlabelled molecular geometries of an MD round: ``ROUND4_MOLECULES`` as G2 geometry and rattled by
    ``ROUND4_RATTLES``; the last frame of the model's MD (``calc``, default: the model file) at each of
    ``MOLECULE_MD_TEMPERATURES`` of every trained molecule (default: minidata's round-1 and round-2 molecules and the new
    ones) and of ``n_clusters`` clusters of the round-1 and of the round-2 kinds. Each frame's info holds its structure
    (the frame key) and generator."""
    calc = calc if calc is not None else _model_calculator(model)
    label = Path(str(model)).name
    names = (
        molecules
        if molecules is not None
        else S.MOLECULES + MORE_MOLECULES + ROUND2_MOLECULES + ROUND4_MOLECULES
    )
    out: list[Atoms] = []

    def add(structure, a, generator):
        b = Atoms(a.numbers, a.positions)
        b.info.update({"structure": structure, "generator": generator})
        out.append(b)

    for name in ROUND4_MOLECULES if molecules is None else ():
        m = molecule(name)
        add(m.get_chemical_formula(), m, f"G2 geometry of {name}")
        for a, how in _with_rattles(m, ROUND4_RATTLES, rng):
            add(m.get_chemical_formula(), a, f"{name}{how}")
    starts = [(molecule(n).get_chemical_formula(), molecule(n), n) for n in names]
    starts += [(g.split()[1], a, g) for a, g in _clusters(rng, n_clusters[0])]
    starts += [
        (g.split()[1], a, g) for a, g in _clusters(rng, n_clusters[1], list(ROUND2_CLUSTERS))
    ]
    for structure, a, what in tracked(starts, desc="model MD of molecules", leave=False):
        for _, snap, gen in md_jobs(
            calc,
            label,
            a,
            structure,
            MOLECULE_MD_TEMPERATURES,
            st.md_dt_fs,
            MOLECULE_MD_STEPS,
            1,
            rng,
        ):
            add(structure, snap, f"{what}: {gen}")
    log.info("molecular model MD: %d geometries to label", len(out))
    return out


def transition_state_jobs(
    folder: str | Path, rng: np.random.Generator
) -> list[tuple[str, Atoms, str]]:
    """The transition-state region of the reference reaction (``check_neb_reference.py``'s folder): the refined saddle
    as it is and rattled by ``TS_RATTLES``, and every ``DESCENT_EVERY``-th geometry of the PBE descents from it to both
    sides (``neb.reference_descents``: computed there and saved in the folder when absent, ~10 min)."""
    descents = neb.reference_descents(folder)
    _, saddle = neb.read_reference(folder)
    jobs = [
        (a.get_chemical_formula(), a, f"reference saddle (PBE){how}")
        for a, how in _with_rattles(Atoms(saddle.numbers, saddle.positions), TS_RATTLES, rng)
    ]
    for a in descents:
        if a.info["step"] % DESCENT_EVERY == 0:
            jobs.append(
                (
                    a.get_chemical_formula(),
                    Atoms(a.numbers, a.positions),
                    f"reference descent (PBE) to the {a.info['side']}, step {a.info['step']}",
                )
            )
    return jobs


def band_loop_jobs(
    calc, label: str, iteration: int, every: int = BAND_LOOP_EVERY
) -> list[tuple[str, Atoms, str]]:
    """Band-level active learning, one iteration: the bench's quick in-plane NEB of H2CO3 -> H2O + CO2 run with the
    model ``calc`` (named ``label``) exactly as the bench runs it (``neb.N_IMAGES`` images from the IDPP start, at most
    ``neb.QUICK_STEPS`` + ``neb.QUICK_STEPS`` FIRE steps), and the inner images as the optimiser moves them: at the start
    of each stage, every ``every`` FIRE steps, and at the end (a band identical to the previous snapshot is not repeated).
    These are the configurations where the model's surface sends the band; labelled, they tell the next model what they
    really cost, and the loop (label, fine-tune, run the band again) goes on until the band converges onto the right
    barrier. Single-shot band rounds (rounds 2-4) did not converge the quick NEB."""
    reactant, product = neb.endpoints(calc)
    snaps: list[tuple[str, int, list[np.ndarray]]] = []

    def observe(images, stage, step):
        if step % every == 0:
            snaps.append((stage, step, [im.positions.copy() for im in images[1:-1]]))

    images, fmax, ok = neb.band(
        calc, reactant, product, neb.N_IMAGES, steps=neb.QUICK_STEPS, observe=observe
    )
    log.info(
        "band loop %d, %s: in-plane band %s, max NEB force %.3f eV/A",
        iteration,
        label,
        "converged" if ok else "NOT converged",
        fmax,
    )
    snaps.append(("end", 0, [im.positions.copy() for im in images[1:-1]]))
    jobs, last = [], None
    for stage, step, band_pos in snaps:
        if last is not None and max(np.abs(p - q).max() for p, q in zip(band_pos, last)) < 1e-6:
            continue
        last = band_pos
        where = (
            "converged band"
            if stage == "end" and ok
            else "final band"
            if stage == "end"
            else f"{stage} step {step}"
        )
        for k, pos in enumerate(band_pos, 1):
            jobs.append(
                (
                    reactant.get_chemical_formula(),
                    Atoms(reactant.numbers, pos),
                    f"band loop {iteration}: {label} NEB band (in-plane), {where}, image {k}/{neb.N_IMAGES - 1}",
                )
            )
    return jobs


def make_active_molecular(
    outdir: str | Path,
    model: str | Path,
    round_: int,
    st: MiniDataSettings = MiniDataSettings(),
    progress: bool = True,
    reaction_path: str | Path | None = None,
    md: bool = True,
    band_loop: int = 0,
) -> Path | None:
    """Molecular active-learning frames of ``model`` (its quick NEB bands; with ``reaction_path``, a finished reference
    NEB folder, the ``transition_state_jobs``; from round ``MD_FROM_ROUND`` and with ``md``, the
    ``molecular_md_geometries``), labelled at wB97M-D3(BJ)/def2-SVP (a geometry whose SCF fails is left out, logged) ->
    OUT/molecular-round<round_>.extxyz; None while another process labels one of its stages (run again).
    With ``band_loop`` = K > 0 the round is a band loop: in place of the single-shot bands, iteration K's
    ``band_loop_jobs`` of ``model`` (the model the previous iteration's fine-tune made), and the file holds the
    transition-state region and iterations 1..K, in that order (their stages must exist: the loop runs in order), so
    that iteration K's file extends iteration K-1's; no model MD then."""
    outdir = Path(outdir)
    calc = WB97MD3BJ()

    def make():
        return label_model_bands(
            model, calc, st, np.random.default_rng([st.seed, round_, 8]), progress
        )

    def transition_state():
        return _stage(
            outdir / "molecular",
            f"round{round_}_transition_state",
            lambda: label_or_skip(
                transition_state_jobs(reaction_path, np.random.default_rng([st.seed, round_, 10])),
                calc,
                "transition-state region",
                progress,
            ),
        )

    if (
        band_loop > 0
    ):  # the transition-state region first: iteration K's file opens with iteration K-1's (split_keep)
        earlier = [f"round{round_}_band_loop.it{k}" for k in range(1, band_loop)]
        for k, name in enumerate(earlier, 1):
            if not (outdir / "molecular" / f"{name}.extxyz").exists():
                raise ValueError(
                    f"{outdir / 'molecular' / name}.extxyz: band loop iteration {k} has no labels; iteration "
                    f"{band_loop} needs 1..{band_loop - 1} first (the loop runs in order: label, fine-tune, next)"
                )
        parts = [transition_state()] if reaction_path is not None else []
        parts += [_stage(outdir / "molecular", name, list) for name in earlier]
        parts.append(
            _stage(
                outdir / "molecular",
                f"round{round_}_band_loop.it{band_loop}",
                lambda: label_or_skip(
                    band_loop_jobs(_model_calculator(model), _model_label(model), band_loop),
                    calc,
                    f"band loop {band_loop}",
                    progress,
                ),
            )
        )
    else:
        parts = [_stage(outdir / "molecular", f"round{round_}_model_bands", make)]
        if reaction_path is not None:
            parts.append(transition_state())
    if (
        round_ >= MD_FROM_ROUND and md and not band_loop
    ):  # a band loop's file must grow at its end only
        geoms = _stage(
            outdir / "molecular",
            f"round{round_}_md_geometries",
            lambda: molecular_md_geometries(model, st, np.random.default_rng([st.seed, round_, 9])),
        )
        if geoms is not None:

            def run(jobs, desc):
                return label_or_skip(
                    [(a.info["structure"], a, a.info["generator"]) for a in jobs],
                    calc,
                    desc,
                    progress,
                )

            parts.append(_stages(outdir / "molecular", f"round{round_}_md", geoms, run, 8))
        else:
            parts.append(None)
    if any(p is None for p in parts):
        log.info(
            "active molecular part: being labelled by another process; run again when it ends to assemble"
        )
        return None
    frames = [a for p in parts for a in p]
    out = outdir / f"molecular-round{round_}.extxyz"
    _write_atomic(frames, out)
    log.info("active molecular part, round %d: %d frames -> %s", round_, len(frames), out)
    return out
