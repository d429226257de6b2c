"""The TOML run file and ``allegro-fm-md run``: structure in, MD out, on one rank or under mpiexec.

    [system]
    structure = "tob11a.cif"     # anything ase.io reads (extxyz, CIF, POSCAR, LAMMPS data, ...)
    replicate = [2, 2, 1]        # n x m x k supercell
    [potential]
    kind = "allegro"             # allegro (a model file; from allegro-fm-model) | lj | morse (reference, one element) | plug-ins
    model = "allegro-fm-mini"    # allegro: a shipped model's name, or a .ckpt / .nequip.zip / .nequip.pt2 / nequip 0.6.x .pt path
    # models = ["a.nequip.zip", "afm256_01_HL.pt"]   # instead of model: a committee (weighted mean; weights = [...])
    # options = { heads = true } # the model's shallow ensemble (its heads file beside it, or a path)
    device = "cpu"               # cpu | cuda | xpu (one rank per GPU/tile: cuda:<node-local rank> is chosen)
    max_edges_per_call = 0       # > 0: evaluate at most this many edges at once; 0: automatic (memory_budget_gib; CPU: <= 8192, cache)
    memory_budget_gib = 0.0      # > 0: memory one force evaluation may use per rank; 0: half the device's free memory / ranks on it
    [run]
    integrator = "langevin"      # nve | langevin | nhc (Nose-Hoover chain) | fire (minimisation) | plug-ins (integrators/)
    dt_fs = 1.0
    steps = 1000
    temperature_K = 300.0        # initial velocities (Maxwell-Boltzmann) and the thermostat's target
    temperature_end_K = 300.0    # langevin, nhc: linear ramp to this value over the run
    skin = 1.0                   # Verlet skin (A)
    seed = 0
    min_distance = 0.5           # guard: atoms closer than this (A) stop the run
    walltime_margin_s = 0.0      # > 0: stop cleanly (restart written, exit 75) this long before the job's end
    fdev_record = 0.0            # committees: > 0 writes structures with an atom's force deviation above it (eV/A)
    fdev_stop = 0.0              # committees: > 0 stops the run (last good state kept) above it (eV/A)
    fdev_every = 1               # shallow-ensemble heads: the deviation every this many steps
                                 # (SLURM_JOB_END_TIME or ALLEGRO_FM_END_TIME); SIGTERM/SIGUSR1 always stop cleanly
    [run.langevin]               # each integrator kind's own options, validated by its schema (integrators/<kind>.py)
    friction_per_fs = 0.01       # 1/fs
    [run.nhc]
    tdamp_fs = 100.0             # thermostat period (fs); chain = 3
    [run.fire]
    fmax = 0.05                  # stop when every force is below this (eV/A); steps = the most FIRE steps
    relax_cell = false           # also relax the cell (ASE FrechetCellFilter, target [run.npt] pressure_GPa or 0; one rank)
    [run.npt]                    # present: NPT by stochastic cell rescaling around the thermostat (langevin or nhc)
    pressure_GPa = 0.0
    compressibility_per_GPa = 0.02
    taup_fs = 1000.0             # barostat relaxation time (fs)
    barostat = "isotropic"       # or "anisotropic": x, y, z lengths move independently (hydrostatic target)
    [run.deform]                 # present: uniaxial deformation at a constant engineering strain rate
    deform_axis = "x"            # "x" | "y" | "z"
    strain_rate_per_fs = 0.0     # 1e10 /s = 1e-5 /fs
    [output]
    dir = "md-run"
    thermo_every = 10
    trajectory_every = 100
    restart_every = 1000
    restart_from = ""            # a restart.npz (or restart.shards folder) to resume from (on any number of ranks); "auto":
                                 # this folder's own restart when there is one, else a fresh start (job chains)
    per_atom = []                # "energy", "stress", "force_deviation": per-atom outputs in the trajectory frames
    shards = false               # true: every rank writes its own atoms (restart.shards/, trajectory.shards/; no gather,
                                 # for systems no rank should hold whole); allegro-fm-md merge makes one H5MD of them

Units: A, fs, K, eV. Unknown keys are errors. Run files of allegro-fm-md 0.1.0.dev1 wrote the kinds' options flat in
[run] (friction_per_fs = 0.01, pressure_GPa = 0.0, deform_axis = "z", ...): they are still read, each key going to the
table of the kind that declares it (a modifier's keys turn it on only with pressure_GPa / a non-empty deform_axis).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.neighborlist import neighbor_list
from tea_align.files import atomic_path, read_toml

from . import keys as K
from .chunked import ChunkedPotential
from .comm import agree, node_local_rank, world
from .contracts import CommitteeLikePotential, PerAtomVirialPotential
from .errors import MDInputError
from .faults import inject
from .forces import DistributedForceEvaluator
from .ghosts import plane_spacings
from .identity import RunIdentity, model_sha256, settle_identity, species_sha256
from .integrators import build_integrator, integrator_kinds
from .minimize import relax_cell
from .outputs import RunLock, cut_back
from .potentials import make_potential
from .reporters import PER_ATOM, ForceDeviationGuard
from .restart import restart_header, restart_meta
from .schema import check_values
from .simulation import Simulation, SimulationError
from .state import State
from .supercell import Supercell, maxwell_boltzmann


@dataclass(frozen=True)
class SystemSpec:
    """The [system] table: what is simulated."""

    #: structure file (any format ase.io reads), relative to the run file; its cell and pbc are the run's
    structure: str
    #: copies along a, b, c; each rank builds only its own atoms of the replicated supercell
    replicate: tuple[int, int, int] = (1, 1, 1)


@dataclass(frozen=True)
class PotentialSpec:
    #: potential kind: "allegro" (a model file, from allegro-fm-model), "lj", "morse", or a plug-in's name
    kind: str = "allegro"
    #: model file (.nequip.zip, .nequip.pt2, nequip 0.6 .pt/.pth) or a shipped model's name (allegro-fm-mini)
    model: str = ""
    #: cpu, cuda, xpu (or cuda:N, xpu:N); under MPI each rank takes its node-local device
    device: str = "cpu"
    #: Lennard-Jones well depth (eV; kind = "lj")
    epsilon: float = 0.0104
    #: Lennard-Jones diameter (A; kind = "lj")
    sigma: float = 3.40
    #: Morse well depth (eV; kind = "morse")
    depth: float = 0.5
    #: Morse width parameter (1/A; kind = "morse")
    a: float = 1.5
    #: Morse equilibrium distance (A; kind = "morse")
    r0: float = 2.5
    #: cutoff of the reference potentials (A; a model file carries its own)
    cutoff: float = 6.5
    #: kind "allegro": a committee of model files (any mix of the kinds ``model`` takes) instead of ``model``: forces,
    #: energy and virial are the weighted mean; thermo.log gets fdev_max and fdev_mean (eV/A)
    models: list = field(default_factory=list)
    #: the committee members' weights (default equal; normalised to sum 1)
    weights: list = field(default_factory=list)
    #: a plug-in kind's own keys ([potential.options] table)
    options: dict = field(default_factory=dict)
    #: > 0: the potential sees at most this many edges at once; 0: chosen from the memory budget (chunked.py)
    max_edges_per_call: int = 0
    #: > 0: per-rank memory of one force evaluation (GiB); 0: half the device's free memory over the node's ranks
    memory_budget_gib: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    """The [run] table: what every integrator shares, and ``options``: each integrator kind's own table by kind name
    (the chosen integrator's, and the modifiers' that are on: "npt", "deform"), as that kind's options dataclass (a
    plain dict is parsed and validated by the kind's schema)."""

    #: integrator kind (see the integrator tables below); its options go in [run.KIND]
    integrator: str = "nve"
    #: time step (fs)
    dt_fs: float = 1.0
    #: steps of the whole run (a resumed run continues to this step; FIRE: the most steps)
    steps: int = 1000
    #: initial (Maxwell-Boltzmann velocities of a fresh run) and bath temperature (K)
    temperature_K: float = 300.0
    #: bath temperature at the last step (K): a linear ramp from temperature_K; unset: no ramp
    temperature_end_K: float | None = None
    #: Verlet-list skin (A): lists are rebuilt when an atom moved half of it
    skin: float = 1.0
    #: seed of the velocities and of the counter-based noise (the same on any rank count)
    seed: int = 0
    #: guard: stop with the last good state when two atoms come closer than this (A)
    min_distance: float = 0.5
    #: > 0: stop cleanly (restart written, exit 75) this many seconds before the job's end (SLURM_JOB_END_TIME)
    walltime_margin_s: float = 0.0
    #: committee runs: > 0 records structures with an atom's force deviation above this (eV/A) to uncertain.extxyz
    #: (whole frames up to 1000 atoms, else cut-outs within the cutoff; at most once per thermo_every steps)
    fdev_record: float = 0.0
    #: committee runs: > 0 stops the run (last good state kept) when an atom's force deviation exceeds this (eV/A)
    fdev_stop: float = 0.0
    #: shallow-ensemble heads ([potential.options] heads): their forces, hence the deviation, only every this many
    #: steps (the model's own forces every step); a committee of full models computes every member every step
    fdev_every: int = 1
    #: each integrator kind's own table by kind name ([run.nhc], [run.npt], ...)
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        kinds = integrator_kinds()
        parsed = {}
        for name, table in self.options.items():
            kind = kinds.get(name)
            if kind is None:
                raise MDInputError(
                    f"[run.{name}]: no integrator kind {name!r}; known: {', '.join(sorted(kinds))}"
                )
            if not kind.modifier and name != self.integrator:
                raise MDInputError(
                    f"[run.{name}] holds the options of integrator {name!r} ({', '.join(kind.keys())}), but "
                    f"integrator = {self.integrator!r}"
                )
            parsed[name] = kind.parse(table) if isinstance(table, dict) else table
        object.__setattr__(self, "options", parsed)

    def option(self, kind: str):
        """The options of ``kind`` (its dataclass; the defaults when the run file has no [run.kind] table)."""
        if kind in self.options:
            return self.options[kind]
        return integrator_kinds()[kind].options()

    @property
    def relax_cell(self) -> bool:
        """A FIRE run with [run.fire] relax_cell = true (cell and positions, one rank)."""
        return self.integrator == "fire" and bool(self.option("fire").relax_cell)

    @property
    def needs_periodic_cell(self) -> bool:
        """Whether a kind or modifier in use (barostat, deformation, cell relaxation) needs a fully periodic cell."""
        kinds = integrator_kinds()
        return self.relax_cell or any(kinds[n].needs_periodic_cell for n in self.options)


@dataclass(frozen=True)
class OutputSpec:
    """The [output] table: where and how often the run writes."""

    #: output folder, relative to the run file (``allegro-fm-md run -o DIR`` overrides it)
    dir: str = "md-run"
    #: steps between thermo.log rows (the last step is always logged)
    thermo_every: int = 10
    #: steps between trajectory frames (0: no trajectory; otherwise the last step is always written)
    trajectory_every: int = 100
    #: steps between restarts (the last step and a clean stop always write one)
    restart_every: int = 1000
    #: restart to continue from ("auto": the folder's own, as --resume); relative to the output folder
    restart_from: str = ""
    #: true: restarts and trajectories written per rank, no gather (``allegro-fm-md merge`` joins them)
    shards: bool = False
    #: true: resume with another model file than the one that started the run (else refused)
    allow_model_change: bool = False
    #: per-atom outputs written with each trajectory frame (H5MD and extxyz): "energy" (eV), "stress" (eV/A^3, ASE's
    #: per-atom convention: they sum to the stress without its kinetic term), "force_deviation" (eV/A, committees)
    per_atom: list = field(default_factory=list)


@dataclass(frozen=True)
class RunFile:
    """A parsed run file; relative paths are relative to the file's folder."""

    system: SystemSpec
    potential: PotentialSpec = field(default_factory=PotentialSpec)
    run: RunSpec = field(default_factory=RunSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    #: SHA-256 of the run file's text (recorded in run.json; "" for a RunFile built in code)
    source_sha256: str = ""

    @classmethod
    def load(cls, path: str | Path) -> RunFile:
        path = Path(path)
        try:
            d, text = read_toml(path, "run file")
        except ValueError as exc:
            raise MDInputError(str(exc)) from exc
        tables = {
            "system": SystemSpec,
            "potential": PotentialSpec,
            "run": RunSpec,
            "output": OutputSpec,
        }
        unknown = set(d) - set(tables)
        if unknown:
            raise MDInputError(f"{path}: unknown tables {sorted(unknown)}; known: {sorted(tables)}")
        if "system" not in d or "structure" not in d["system"]:
            raise MDInputError(f"{path}: [system] structure is required")
        parsed = {}
        for name, klass in tables.items():
            t = dict(d.get(name, {}))
            if name == "run":
                t["options"] = _kind_tables(path, t)
            for key in ("structure", "model", "dir", "restart_from"):
                if key == "restart_from" and t.get(key) == AUTO:
                    continue  # resolved against the output folder by ``resolve_restart``
                if (
                    key == "model"
                    and t.get(key)
                    and "/" not in t[key]
                    and not (path.parent / t[key]).exists()
                ):
                    continue  # a shipped model's name (allegro-fm-mini), resolved by allegro_fm_model
                if t.get(key) and not Path(t[key]).is_absolute():
                    t[key] = os.path.normpath(path.parent / t[key])  # examples/x/../../runs -> runs
            if name == "potential" and ("models" in t or "weights" in t):
                t["models"], t["weights"] = _committee(path, t)
            if "replicate" in t:
                if not isinstance(t["replicate"], list) or not all(
                    type(x) is int for x in t["replicate"]
                ):
                    raise MDInputError(
                        f"{path}: [system] replicate must be three integers (got {t['replicate']!r})"
                    )
                t["replicate"] = tuple(t["replicate"])
            check_values(
                path,
                name,
                klass,
                {k: v for k, v in t.items() if k != "options" or name != "run"},
                _RANGES,
            )
            if name == "potential":
                _check_device(path, t)
            try:
                parsed[name] = klass(**t)
            except MDInputError as exc:
                raise MDInputError(f"{path}: {exc}") from exc
        return cls(**parsed, source_sha256=hashlib.sha256(text.encode()).hexdigest())


def _committee(path: Path, t: dict) -> tuple[list, list]:
    """[potential] models (file names relative to the run file, or shipped names) and weights, checked."""
    models, weights = t.get("models", []), t.get("weights", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise MDInputError(f"{path}: [potential] models must be a list of model files or names")
    if models and len(models) < 2:
        raise MDInputError(
            f"{path}: [potential] models needs at least two (one model: model = ...)"
        )
    if not isinstance(weights, list) or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
    ):
        raise MDInputError(f"{path}: [potential] weights must be a list of non-negative numbers")
    if weights and len(weights) != len(models):
        raise MDInputError(
            f"{path}: [potential] weights has {len(weights)} numbers for {len(models)} models"
        )
    if weights and not sum(weights) > 0:
        raise MDInputError(f"{path}: [potential] weights must not all be zero")
    resolved = [
        m
        if ("/" not in m and not (path.parent / m).exists()) or Path(m).is_absolute()
        else os.path.normpath(path.parent / m)
        for m in models
    ]
    return resolved, [float(w) for w in weights]


def _kind_tables(path: Path, run: dict) -> dict[str, dict]:
    """Take the integrator kinds' tables out of a [run] table (in place): [run.<kind>] sub-tables, and the flat keys of
    0.1.0.dev1 run files, each moved to the table of the kind that declares it (a modifier only when its switch is on:
    pressure_GPa given, deform_axis not empty)."""
    kinds = integrator_kinds()
    general = {f.name for f in fields(RunSpec)} - {"options"}
    tables: dict[str, dict] = {}
    for key in list(run):
        if isinstance(run[key], dict) and key in kinds:
            tables[key] = run.pop(key)
    chosen = run.get("integrator", RunSpec.integrator)
    owners = {
        k: n for n, kind in kinds.items() for k in kind.keys() if kind.modifier or n == chosen
    }
    owners.update(
        {
            k: n
            for n in ("nve", "langevin", "nhc", "fire")
            if n in kinds
            for k in kinds[n].keys()
            if k not in owners
        }
    )
    flat: dict[str, dict] = {}
    for key in [k for k in run if k not in general]:
        if key not in owners:
            known = sorted(general | {f"[run.{n}]" for n in kinds})
            raise MDInputError(f"{path}: unknown keys in [run]: [{key!r}]; known: {known}")
        flat.setdefault(owners[key], {})[key] = run.pop(key)
    switches = {"npt": "pressure_GPa", "deform": "deform_axis"}
    for name, keys in flat.items():
        if name in switches and keys.get(switches[name], "") in ("", None):
            continue  # 0.1.0.dev1's "off": no pressure_GPa, an empty deform_axis
        if name != chosen and not kinds[name].modifier:
            if keys.get("relax_cell"):
                raise MDInputError(f'{path}: relax_cell = true needs integrator = "fire"')
            continue  # 0.1.0.dev1 ignored another integrator's flat keys (friction_per_fs with nhc): so do we
        tables.setdefault(name, {}).update(keys)
    return tables


#: allowed ranges of run-file numbers of the [system], [potential], [run] and [output] tables: key -> (low, high, low
#: inclusive); None = unbounded. The integrator kinds' options carry theirs in their fields' metadata (schema.py).
_RANGES = {
    "dt_fs": (0.0, 10.0, False),  # fs: beyond ~10 fs no atomic vibration is resolved
    "steps": (0, None, True),
    "temperature_K": (0.0, 1e5, True),
    "temperature_end_K": (0.0, 1e5, True),
    "skin": (0.0, None, True),
    "min_distance": (0.0, None, True),
    "thermo_every": (1, None, True),
    "walltime_margin_s": (0.0, None, True),
    "fdev_record": (0.0, None, True),
    "fdev_stop": (0.0, None, True),
    "fdev_every": (1, None, True),
    "trajectory_every": (0, None, True),
    "restart_every": (1, None, True),
    "cutoff": (0.0, None, False),
    "max_edges_per_call": (0, None, True),
    "memory_budget_gib": (0.0, None, True),
}


def _check_device(path: Path, values: dict) -> None:
    """A [potential] device is cpu, cuda[:i] or xpu[:i] (MDInputError naming the file)."""
    if "device" in values and not re.fullmatch(r"cpu|(cuda|xpu)(:\d+)?", str(values["device"])):
        raise MDInputError(
            f"{path}: [potential] device = {values['device']!r}: must be cpu, cuda, xpu (or cuda:N, xpu:N)"
        )


#: |coordinate| (A) beyond which a structure is refused: float64 keeps ~1e-10 A there, and no structure is that large
MAX_COORDINATE = 1e6


def load_structure(spec: SystemSpec) -> Supercell:
    """The structure of the run: its unit (ase.Atoms, as read) and the replication, never built whole (supercell.py);
    clear errors for unreadable files, non-finite numbers and degenerate cells."""
    try:
        atoms = ase.io.read(spec.structure)
    except Exception as exc:  # ase raises many types for unreadable files
        raise MDInputError(
            f"{spec.structure}: cannot read structure ({type(exc).__name__}: {exc})"
        ) from exc
    if len(spec.replicate) != 3 or min(spec.replicate) < 1:
        raise MDInputError(f"replicate must be three positive integers (got {spec.replicate})")
    if len(atoms) == 0:
        raise MDInputError(f"{spec.structure}: the structure has no atoms")
    bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if len(bad):
        raise MDInputError(
            f"{spec.structure}: atom {bad[0]} ({atoms[bad[0]].symbol}) has a non-finite position {atoms.positions[bad[0]].tolist()}"
            + (f" ({len(bad)} atoms in all)" if len(bad) > 1 else "")
        )
    far = np.flatnonzero(np.abs(atoms.positions).max(axis=1) > MAX_COORDINATE)
    if len(far):
        raise MDInputError(
            f"{spec.structure}: atom {far[0]} ({atoms[far[0]].symbol}) is at {atoms.positions[far[0]].tolist()} A, beyond "
            f"{MAX_COORDINATE:g} A: not a structure (wrapping it into the cell would lose all precision)"
        )
    if not np.isfinite(atoms.cell[:]).all():
        raise MDInputError(f"{spec.structure}: the cell is not finite ({atoms.cell[:].tolist()})")
    if abs(np.linalg.det(np.array(atoms.cell))) < 1e-9:
        raise MDInputError(
            f"{spec.structure}: the cell needs three linearly independent vectors, also along open axes "
            f"(pbc={atoms.pbc.tolist()}; a slab needs a box vector across its vacuum: ase.build.surface(..., vacuum=V))"
        )
    return Supercell(atoms, tuple(int(r) for r in spec.replicate))


def lammps_orient(atoms) -> bool:
    """Rotate ``atoms`` (cell and positions, in place) so that a lies along x and b in the xy plane (a lower-triangular
    cell, LAMMPS's convention, which H5MD readers such as MDAnalysis assume); True when it had to turn."""
    cell = np.array(atoms.cell)
    if (
        abs(np.linalg.det(cell)) == 0
        or np.allclose(np.triu(cell, 1), 0.0, atol=1e-12)
        and (np.diag(cell) > 0).all()
    ):
        return False
    rcell, q = atoms.cell.standard_form()
    atoms.positions = atoms.positions @ q.T
    atoms.set_cell(np.array(rcell), scale_atoms=False)
    return True


def _check_output(runfile: RunFile, overwrite: bool) -> None:
    """A new run never mixes its output with an old one: refuse (or, with ``overwrite``, remove) old files. Called by
    the holder of the folder's lock only, so a live run's files are never removed."""
    out = Path(runfile.output.dir)
    old = [
        out / n
        for n in (
            "thermo.log",
            "run.json",
            "trajectory.h5md",
            "trajectory.h5",
            "trajectory.extxyz",
            "uncertain.extxyz",
            "restart.npz",
            "restart_last_good.npz",
            "relaxed.extxyz",
            "relax.log",
            "restart.shards",
            "restart_last_good.shards",
            "trajectory.shards",
        )
    ]
    old = [p for p in old if p.exists()]
    if not old or runfile.output.restart_from:
        return
    if not overwrite:
        raise MDInputError(
            f"{out} already holds a run ({old[0].name}); use another [output] dir, restart_from, or --overwrite"
        )
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


@dataclass(frozen=True)
class Relaxation:
    """Outcome of a cell relaxation run: the relaxed structure's file, energy (eV), volume (A^3), max force
    (eV/A), max stress deviation from the target (GPa), steps taken and whether fmax was reached."""

    structure: Path
    energy: float
    volume: float
    fmax: float
    stress_GPa: float
    steps: int
    converged: bool


def _check_relax(runfile: RunFile, atoms, comm) -> None:
    """What a cell relaxation needs, checked before any output (MDInputError)."""
    r = runfile.run
    if r.integrator != "fire":
        raise MDInputError('relax_cell = true needs integrator = "fire"')
    if comm.size > 1:
        raise MDInputError(
            "relax_cell = true runs on one rank (a cell relaxation is for small cells): use mpiexec -n 1"
        )
    i, j, d = neighbor_list("ijd", atoms, r.min_distance)
    if len(i):
        raise MDInputError(
            f"{runfile.system.structure}: atoms {i[0]} and {j[0]} are {d[0]:.3f} A apart (< min_distance "
            f"{r.min_distance} A) (before any step)"
        )


def _relax_cell(runfile: RunFile, atoms, pot) -> Relaxation:
    """Positions + cell by FIRE on ASE's FrechetCellFilter (one rank); writes relaxed.extxyz and relax.log."""
    r = runfile.run
    out = Path(runfile.output.dir)
    p0 = r.options["npt"].pressure_GPa if "npt" in r.options else 0.0
    fmax = r.option("fire").fmax
    relaxed, ok, nsteps = relax_cell(
        atoms,
        pot,
        fmax=fmax,
        steps=r.steps,
        cell=True,
        pressure_GPa=p0,
        logfile=str(out / "relax.log"),
        return_steps=True,
    )
    f = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    stress = relaxed.get_stress(voigt=False) / units.GPa
    dev = float(np.abs(stress + p0 * np.eye(3)).max())
    relaxed.info.update(relaxed_from=runfile.system.structure, converged=bool(ok), fmax=f)
    with atomic_path(out / "relaxed.extxyz") as tmp:
        ase.io.write(tmp, relaxed, format="extxyz")
    return Relaxation(
        out / "relaxed.extxyz",
        float(relaxed.get_potential_energy()),
        float(relaxed.get_volume()),
        f,
        dev,
        nsteps,
        bool(ok),
    )


def validate(runfile: RunFile, comm, progress: bool = True):
    """Everything a run needs that can be wrong, checked before any output: the structure, the potential and the
    atoms' types (collective). Returns (system: a Supercell, potential, types of the unit cell's atoms)."""
    local = node_local_rank(comm)
    n = (
        shared_restart_header(runfile.output.restart_from, comm)[1]
        if runfile.output.restart_from
        else None
    )
    return agree(comm, _validate_here, runfile, comm, progress, local, n)


def _validate_here(
    runfile: RunFile, comm, progress: bool, local: tuple[int, int], restart_atoms: int | None
):
    """``validate``'s work on this rank, with no collective inside (``validate`` makes its failure everyone's)."""
    inject("setup", comm.rank)
    system = load_structure(runfile.system)
    atoms = system.unit
    if (
        runfile.output.restart_from
    ):  # read once here so that a bad restart file is refused before the folder is touched
        n = restart_atoms
        if n != len(system):
            raise MDInputError(
                f"{runfile.output.restart_from}: {n} atoms, but the structure {runfile.system.structure} has {len(system)}"
            )
    r = runfile.run
    if not atoms.pbc.all() and r.needs_periodic_cell:
        raise MDInputError(
            f"{runfile.system.structure}: pressure_GPa, deform_axis and relax_cell need a cell periodic in all three "
            f"directions (pbc={atoms.pbc.tolist()})"
        )
    if lammps_orient(atoms) and progress and comm.rank == 0:
        print(
            "cell rotated to the orientation MD codes expect (a along x, b in the xy plane, as LAMMPS does); positions "
            "rotated with it: every output is in this frame",
            flush=True,
        )
    local_rank, local_size = local
    pot = make_potential(runfile.potential, atoms.get_chemical_symbols(), local_rank, local_size)
    ps = (
        runfile.potential
    )  # memory-bounded evaluation, automatic by default (one call while the edges fit the budget)
    pot = ChunkedPotential(
        pot,
        ps.max_edges_per_call or None,
        ps.memory_budget_gib * 2**30 or None,
        ranks_sharing=local_size,
    )
    pot.progress = bool(
        progress and comm.rank == 0
    )  # rank 0 shows a bar over a long evaluation's chunks
    if progress and comm.rank == 0:  # the elements a model file covers come from its own metadata
        name = runfile.potential.model or runfile.potential.kind
        print(
            f"potential {name}: {len(pot.species)} elements, cutoff {pot.cutoff:g} A: {' '.join(pot.species)}",
            flush=True,
        )
    try:
        types = pot.types_of(
            atoms.get_chemical_symbols()
        )  # unknown elements: clear error before any step
    except ValueError as exc:
        raise MDInputError(f"{runfile.system.structure}: {exc}") from exc
    _check_per_atom(runfile, pot, system)
    if (
        comm.size == 1
        and atoms.pbc.any()
        and pot.cutoff > 0.5 * plane_spacings(system.cell)[atoms.pbc].min()
    ):
        d = plane_spacings(system.cell)[atoms.pbc].min()
        raise MDInputError(
            f"cutoff {pot.cutoff} A is larger than half the cell ({d:.3f} A between its closest faces, half of it "
            f"{d / 2:.3f} A): an atom would interact with its own image; replicate the cell"
        )
    return system, pot, types


def _check_per_atom(runfile: RunFile, pot, system: Supercell) -> None:
    """[output] per_atom and the force-deviation guards against what the potential gives; turns on per-atom virials."""
    where = "[output] per_atom"
    names = list(runfile.output.per_atom)
    unknown = [n for n in names if n not in PER_ATOM]
    if unknown or not all(isinstance(n, str) for n in names):
        raise MDInputError(f"{where}: unknown {unknown}; known: {', '.join(PER_ATOM)}")
    committee = isinstance(pot.inner, CommitteeLikePotential)
    r = runfile.run
    if ("force_deviation" in names or r.fdev_record > 0 or r.fdev_stop > 0) and not committee:
        raise MDInputError(
            "force_deviation, fdev_record and fdev_stop need a committee ([potential] models = [...])"
        )
    if names and runfile.output.shards:
        raise MDInputError(
            "[output] per_atom is written with gathered trajectories only (not yet with shards = true)"
        )
    if names and not runfile.output.trajectory_every:
        raise MDInputError(
            "[output] per_atom is written with the trajectory: set trajectory_every > 0"
        )
    if "stress" in names:
        if not isinstance(pot.inner, PerAtomVirialPotential):
            raise MDInputError(
                f"[output] per_atom = 'stress': potential {runfile.potential.kind!r} gives no per-atom virials"
            )
        if abs(np.linalg.det(system.cell)) < 1e-9:
            raise MDInputError(
                "[output] per_atom = 'stress' needs a cell with a volume (per-atom stress is -W_i / V)"
            )
        pot.per_atom_virial = True


def build_simulation(
    runfile: RunFile,
    system: Supercell,
    pot,
    types,
    integ,
    comm,
    progress: bool = True,
    identity: RunIdentity | None = None,
):
    """The Simulation of a run file: the state (fresh at temperature_K, each rank building only its own atoms, or from
    restart_from), the distributed force evaluator and the reporters; the first force call and the guards run here
    (MDInputError before any step)."""
    r, o = runfile.run, runfile.output
    ev = DistributedForceEvaluator(pot, comm, system.cell, skin=r.skin, pbc=system.pbc)
    ev.n_total = len(system)
    if (
        o.restart_from
    ):  # every rank its own shards; a bad one on any rank stops every rank (comm.agree)
        state = agree(comm, Simulation.read_restart, o.restart_from, integ, comm)
    else:
        ids, positions = system.local(ev.dec)
        n_unit = len(system.unit)
        unit_masses = system.unit.get_masses()
        masses = unit_masses[ids % n_unit]
        velocities = maxwell_boltzmann(ids, masses, r.temperature_K, r.seed, comm)
        state = State(
            positions,
            velocities,
            masses,
            system.cell,
            system.pbc,
            ids=ids,
            types=np.asarray(types)[ids % n_unit],
        )
    numbers = system.numbers if (comm.rank == 0 and o.trajectory_every and not o.shards) else None
    try:
        return Simulation(
            state,
            integ,
            ev,
            o.dir,
            thermo_every=o.thermo_every,
            restart_every=o.restart_every,
            min_distance=r.min_distance,
            progress=progress,
            trajectory_every=o.trajectory_every,
            numbers=numbers,
            shards=o.shards,
            species=tuple(pot.species),
            walltime_margin_s=r.walltime_margin_s,
            identity=identity.meta() if identity is not None else None,
            per_atom=tuple(o.per_atom),
            guards=_fdev_guards(runfile, pot),
            fdev_every=r.fdev_every,
        )
    except SimulationError as exc:
        raise MDInputError(f"{runfile.system.structure}: {exc} (before any step)") from exc


def _fdev_guards(runfile: RunFile, pot) -> list:
    r = runfile.run
    if not (r.fdev_record > 0 or r.fdev_stop > 0):
        return []
    return [
        ForceDeviationGuard(
            r.fdev_record,
            r.fdev_stop,
            runfile.output.thermo_every,
            tuple(pot.species),
            str(getattr(pot, "level_of_theory", "unknown")),
        )
    ]


def shared_restart_header(path: str | Path, comm) -> tuple[int, int]:
    """(step, atoms) of a restart, read and its shard set checked by rank 0 only (one stat per shard, not one per shard
    and rank) and shared with every rank; a bad restart is the same MDInputError on every rank."""
    return comm.bcast(agree(comm, lambda: restart_header(path) if comm.rank == 0 else None), root=0)


@dataclass(frozen=True)
class NothingToDo:
    """A resumed run whose restart is already at or past ``steps`` (a job chain's last resubmission): nothing was run
    and nothing in the folder was touched."""

    step: int
    steps: int
    restart: str


#: ``restart_from = "auto"``: this run's own folder's restart when there is one, else a fresh start
AUTO = "auto"


def resolve_restart(runfile: RunFile) -> RunFile:
    """``runfile`` with ``restart_from = "auto"`` replaced by the output folder's restart (restart.shards when the run is
    sharded and it exists, else restart.npz) or by "" (a fresh start) when there is none."""
    o = runfile.output
    if o.restart_from != AUTO:
        return runfile
    out = Path(o.dir)
    found = [
        p
        for p in (
            (out / "restart.shards", out / "restart.npz")
            if o.shards
            else (out / "restart.npz", out / "restart.shards")
        )
        if p.exists()
    ]
    return replace(runfile, output=replace(o, restart_from=str(found[0]) if found else ""))


def run(runfile: RunFile, comm=None, progress: bool = True, overwrite: bool = False):
    """Run the MD described by ``runfile`` (collective under MPI): validate -> build integrator -> build simulation ->
    run. Returns the Simulation (a ``Relaxation`` for ``relax_cell = true``; ``NothingToDo`` when the restart is
    already at ``steps``). Output files of an earlier run in the same folder are an error unless ``overwrite`` (or the
    run resumes from a restart). A stop signal or the wall-time margin ends it with ``RunStopped`` (jobcontrol.py)."""
    comm = comm or world()
    runfile = resolve_restart(runfile)
    if (
        runfile.output.restart_from
    ):  # a job chain's resubmission after the end: nothing to run, nothing touched
        step, _ = shared_restart_header(runfile.output.restart_from, comm)
        if step >= runfile.run.steps:
            return NothingToDo(step, runfile.run.steps, runfile.output.restart_from)
    # nothing is written before the input is valid; a rank that cannot read the structure or load the model (a file
    # missing on its node, a device that fails) stops every rank with its name (comm.agree), never a hang
    system, pot, types = validate(runfile, comm, progress)
    if runfile.run.relax_cell:
        atoms = system.atoms()  # one rank, a small cell: built whole
        _check_relax(runfile, atoms, comm)
    else:
        integ = build_integrator(runfile.run)
    lock, ident = _take_folder(runfile, overwrite, comm, progress, system)
    try:
        if runfile.run.relax_cell:
            return _relax_cell(runfile, atoms, pot)
        try:
            sim = build_simulation(runfile, system, pot, types, integ, comm, progress, ident)
        except MDInputError:  # refused before step 0 (atoms too close, ...): no trace left
            lock.release(remove_if_empty=True)
            raise
        try:
            sim.run(runfile.run.steps - sim.state.step)
        finally:
            sim.close()
        sim.write_restart()  # collective: gathered to rank 0, or one shard per rank
        return sim
    finally:
        lock.release()


def _take_folder(
    runfile: RunFile, overwrite: bool, comm, progress: bool, system: Supercell
) -> tuple[RunLock, RunIdentity]:
    """Rank 0 locks the output folder (one run per folder), refuses or removes an old run's files, checks a resume's
    identity (identity.py: same run, same species, same model) and on a resume cuts the files back to the restart's
    step; every rank gets the run's identity, or the same MDInputError when any of it fails."""
    lock = RunLock(runfile.output.dir)
    err, ident = None, None
    if comm.rank == 0:
        try:
            lock.acquire()
            _check_output(runfile, overwrite)
            o = runfile.output
            meta = restart_meta(o.restart_from) if o.restart_from else None
            species = species_sha256(system.unit.numbers, int(np.prod(system.reps)))
            ident, note = settle_identity(
                o.dir,
                species,
                model_sha256(runfile.potential),
                runfile.source_sha256,
                meta,
                o.restart_from,
                o.allow_model_change,
            )
            if o.restart_from:
                step = int(meta[K.STEP])
                cut = cut_back(o.dir, step)
                if progress and str(cut) != "nothing":
                    print(
                        f"resuming at step {step}: removed {cut} written after the restart",
                        flush=True,
                    )
                if note:
                    with open(Path(o.dir) / "thermo.log", "a") as fh:
                        fh.write(note + "\n")
        except MDInputError as exc:
            lock.release(remove_if_empty=True)
            err = str(exc)
    err, ident = comm.bcast((err, ident), root=0)
    if err is not None:
        raise MDInputError(err)
    return lock, ident
