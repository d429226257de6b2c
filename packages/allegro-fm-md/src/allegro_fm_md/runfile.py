"""The TOML run file and ``allegro-fm-md run``: structure in, MD out, on one rank or under mpiexec.

    [system]
    structure = "tob11a.cif"     # anything ase.io reads (extxyz, CIF, POSCAR, LAMMPS data, ...)
    replicate = [2, 2, 1]        # n x m x k supercell
    [potential]
    kind = "allegro"             # allegro (a model file; from allegro-fm-model) | lj | morse (reference, one element) | plug-ins
    model = "allegro-fm-mini"    # allegro: a shipped model's name, or a .ckpt / .nequip.zip / .nequip.pt2 / nequip 0.6.x .pt path
    device = "cpu"               # cpu | cuda | xpu (one rank per GPU/tile: cuda:<node-local rank> is chosen)
    max_edges_per_call = 0       # > 0: evaluate at most this many edges at once; 0: automatic (memory_budget_gib; CPU: <= 8192, cache)
    memory_budget_gib = 0.0      # > 0: memory one force evaluation may use per rank; 0: half the device's free memory / ranks on it
    [run]
    integrator = "langevin"      # nve | langevin | nhc (Nose-Hoover chain) | fire (minimisation, positions only)
    fmax = 0.05                  # fire: stop when every force is below this (eV/A); steps = the most FIRE steps
    relax_cell = false           # fire: also relax the cell (ASE FrechetCellFilter, target pressure_GPa or 0; one rank)
    dt_fs = 1.0
    steps = 1000
    temperature_K = 300.0        # initial velocities (Maxwell-Boltzmann) and Langevin target
    temperature_end_K = 300.0    # langevin, nhc: linear ramp to this value over the run
    friction_per_fs = 0.01       # Langevin friction (1/fs)
    tdamp_fs = 100.0             # Nose-Hoover chain period (fs)
    pressure_GPa = 0.0           # if present: NPT by stochastic cell rescaling around the thermostat (langevin or nhc)
    compressibility_per_GPa = 0.02
    taup_fs = 1000.0             # barostat relaxation time (fs)
    barostat = "isotropic"       # or "anisotropic": x, y, z lengths move independently (hydrostatic target)
    deform_axis = ""             # "x" | "y" | "z": uniaxial deformation at a constant engineering strain rate
    strain_rate_per_fs = 0.0     # 1e10 /s = 1e-5 /fs
    skin = 1.0                   # Verlet skin (A)
    seed = 0
    min_distance = 0.5           # guard: atoms closer than this (A) stop the run
    [output]
    dir = "md-run"
    thermo_every = 10
    trajectory_every = 100
    restart_every = 1000
    restart_from = ""            # a restart.npz (or restart.shards folder) to resume from (on any number of ranks)
    shards = false               # true: every rank writes its own atoms (restart.shards/, trajectory.shards/; no gather,
                                 # for systems no rank should hold whole); allegro-fm-md merge makes one H5MD of them

Units: A, fs, K, eV. Unknown keys are errors.
"""

from __future__ import annotations

import math
import re
import shutil
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.neighborlist import neighbor_list
from tea_align.files import atomic_path

from .chunked import ChunkedPotential
from .comm import node_local_rank, world
from .errors import MDInputError
from .forces import DistributedForceEvaluator
from .ghosts import plane_spacings
from .integrators import CRescaleNPT, Langevin, NoseHooverChain, State, UniaxialDeformation, VelocityVerlet
from .minimize import FIREIntegrator, relax_cell
from .outputs import RunLock, cut_back
from .potentials import make_potential
from .restart import restart_header
from .simulation import Simulation, SimulationError
from .supercell import Supercell, maxwell_boltzmann


@dataclass(frozen=True)
class SystemSpec:
    structure: str
    replicate: tuple[int, int, int] = (1, 1, 1)


@dataclass(frozen=True)
class PotentialSpec:
    kind: str = "allegro"
    model: str = ""
    device: str = "cpu"
    epsilon: float = 0.0104
    sigma: float = 3.40
    depth: float = 0.5
    a: float = 1.5
    r0: float = 2.5
    cutoff: float = 6.5
    options: dict = field(default_factory=dict)  # a plug-in kind's own keys ([potential.options] table)
    max_edges_per_call: int = 0  # > 0: the potential sees at most this many edges at once; 0: from the budget (chunked.py)
    memory_budget_gib: float = 0.0  # > 0: per-rank memory of one force evaluation; 0: half the device's free memory / node ranks


@dataclass(frozen=True)
class RunSpec:
    integrator: str = "nve"
    dt_fs: float = 1.0
    steps: int = 1000
    temperature_K: float = 300.0
    temperature_end_K: float | None = None
    friction_per_fs: float = 0.01
    tdamp_fs: float = 100.0
    fmax: float = 0.05
    relax_cell: bool = False
    pressure_GPa: float | None = None
    compressibility_per_GPa: float = 0.02
    taup_fs: float = 1000.0
    barostat: str = "isotropic"
    deform_axis: str = ""
    strain_rate_per_fs: float = 0.0
    skin: float = 1.0
    seed: int = 0
    min_distance: float = 0.5


@dataclass(frozen=True)
class OutputSpec:
    dir: str = "md-run"
    thermo_every: int = 10
    trajectory_every: int = 100
    restart_every: int = 1000
    restart_from: str = ""
    shards: bool = False


@dataclass(frozen=True)
class RunFile:
    """A parsed run file; relative paths are relative to the file's folder."""

    system: SystemSpec
    potential: PotentialSpec = field(default_factory=PotentialSpec)
    run: RunSpec = field(default_factory=RunSpec)
    output: OutputSpec = field(default_factory=OutputSpec)

    @classmethod
    def load(cls, path: str | Path) -> RunFile:
        path = Path(path)
        try:
            d = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MDInputError(f"{path}: cannot read run file ({exc})") from exc
        tables = {"system": SystemSpec, "potential": PotentialSpec, "run": RunSpec, "output": OutputSpec}
        unknown = set(d) - set(tables)
        if unknown:
            raise MDInputError(f"{path}: unknown tables {sorted(unknown)}; known: {sorted(tables)}")
        if "system" not in d or "structure" not in d["system"]:
            raise MDInputError(f"{path}: [system] structure is required")
        parsed = {}
        for name, klass in tables.items():
            t = dict(d.get(name, {}))
            known = {f.name for f in fields(klass)}
            bad = set(t) - known
            if bad:
                raise MDInputError(f"{path}: unknown keys in [{name}]: {sorted(bad)}; known: {sorted(known)}")
            for key in ("structure", "model", "dir", "restart_from"):
                if key == "model" and t.get(key) and "/" not in t[key] and not (path.parent / t[key]).exists():
                    continue  # a shipped model's name (allegro-fm-mini), resolved by allegro_fm_model
                if t.get(key) and not Path(t[key]).is_absolute():
                    t[key] = str(path.parent / t[key])
            if "replicate" in t:
                if not isinstance(t["replicate"], list) or not all(type(x) is int for x in t["replicate"]):
                    raise MDInputError(f"{path}: [system] replicate must be three integers (got {t['replicate']!r})")
                t["replicate"] = tuple(t["replicate"])
            _check_values(path, name, klass, t)
            parsed[name] = klass(**t)
        return cls(**parsed)


#: allowed ranges of run-file numbers: key -> (low, high, low inclusive); None = unbounded
_RANGES = {"dt_fs": (0.0, 10.0, False),  # fs: beyond ~10 fs no atomic vibration is resolved
           "steps": (0, None, True), "temperature_K": (0.0, 1e5, True),
           "temperature_end_K": (0.0, 1e5, True), "friction_per_fs": (0.0, None, False), "tdamp_fs": (0.0, None, False),
           "fmax": (0.0, None, False), "compressibility_per_GPa": (0.0, None, False), "taup_fs": (0.0, None, False),
           "skin": (0.0, None, True), "min_distance": (0.0, None, True), "thermo_every": (1, None, True),
           "trajectory_every": (0, None, True), "restart_every": (1, None, True), "cutoff": (0.0, None, False),
           "max_edges_per_call": (0, None, True), "memory_budget_gib": (0.0, None, True)}


def _check_values(path: Path, table: str, klass, values: dict) -> None:
    """Each value has its field's type (an int where an int is meant: no "10", no 1.5; a float may be written as an
    int), is finite, and lies in its range; a device is cpu, cuda[:i] or xpu[:i]. MDInputError naming file, table, key."""
    hints = typing.get_type_hints(klass)
    for key, v in values.items():
        want = hints[key]
        where = f"{path}: [{table}] {key} = {v!r}"
        optional = type(None) in typing.get_args(want)
        base = next((a for a in typing.get_args(want) if a is not type(None)), want) if optional else want
        if v is None and optional:
            continue
        if base is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and not math.isfinite(v):
                raise MDInputError(f"{where}: must be a finite number")
        elif base is int:
            ok = type(v) is int
        elif base is bool:
            ok = isinstance(v, bool)
        elif base is str:
            ok = isinstance(v, str)
        elif base is dict:
            ok = isinstance(v, dict)
        else:
            ok = True  # tuples are converted above
        if not ok:
            raise MDInputError(f"{where}: must be {getattr(base, '__name__', base)}, not {type(v).__name__}")
        if key in _RANGES and isinstance(v, (int, float)):
            lo, hi, lo_incl = _RANGES[key]
            if (v < lo if lo_incl else v <= lo) or (hi is not None and v > hi):
                bound = f"{'>=' if lo_incl else '>'} {lo}" + (f" and <= {hi:g}" if hi is not None else "")
                raise MDInputError(f"{where}: must be {bound}")
    if table == "potential" and "device" in values and not re.fullmatch(r"cpu|(cuda|xpu)(:\d+)?", values["device"]):
        raise MDInputError(f"{path}: [potential] device = {values['device']!r}: must be cpu, cuda, xpu (or cuda:N, xpu:N)")


def load_structure(spec: SystemSpec) -> Supercell:
    """The structure of the run: its unit (ase.Atoms, as read) and the replication, never built whole (supercell.py);
    clear errors for unreadable files, non-finite numbers and degenerate cells."""
    try:
        atoms = ase.io.read(spec.structure)
    except Exception as exc:  # ase raises many types for unreadable files
        raise MDInputError(f"{spec.structure}: cannot read structure ({type(exc).__name__}: {exc})") from exc
    if len(spec.replicate) != 3 or min(spec.replicate) < 1:
        raise MDInputError(f"replicate must be three positive integers (got {spec.replicate})")
    bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if len(bad):
        raise MDInputError(f"{spec.structure}: atom {bad[0]} ({atoms[bad[0]].symbol}) has a non-finite position {atoms.positions[bad[0]].tolist()}"
                           + (f" ({len(bad)} atoms in all)" if len(bad) > 1 else ""))
    if not np.isfinite(atoms.cell[:]).all():
        raise MDInputError(f"{spec.structure}: the cell is not finite ({atoms.cell[:].tolist()})")
    if abs(np.linalg.det(np.array(atoms.cell))) < 1e-9:
        raise MDInputError(f"{spec.structure}: the cell needs three linearly independent vectors, also along open axes "
                           f"(pbc={atoms.pbc.tolist()}; a slab needs a box vector across its vacuum: ase.build.surface(..., vacuum=V))")
    return Supercell(atoms, tuple(int(r) for r in spec.replicate))


def lammps_orient(atoms) -> bool:
    """Rotate ``atoms`` (cell and positions, in place) so that a lies along x and b in the xy plane (a lower-triangular
    cell, LAMMPS's convention, which H5MD readers such as MDAnalysis assume); True when it had to turn."""
    cell = np.array(atoms.cell)
    if abs(np.linalg.det(cell)) == 0 or np.allclose(np.triu(cell, 1), 0.0, atol=1e-12) and (np.diag(cell) > 0).all():
        return False
    rcell, q = atoms.cell.standard_form()
    atoms.positions = atoms.positions @ q.T
    atoms.set_cell(np.array(rcell), scale_atoms=False)
    return True


def _check_output(runfile: RunFile, overwrite: bool) -> None:
    """A new run never mixes its output with an old one: refuse (or, with ``overwrite``, remove) old files. Called by
    the holder of the folder's lock only, so a live run's files are never removed."""
    out = Path(runfile.output.dir)
    old = [out / n for n in ("thermo.log", "trajectory.h5md", "trajectory.h5", "trajectory.extxyz", "restart.npz",
                             "restart_last_good.npz", "relaxed.extxyz", "relax.log", "restart.shards", "restart_last_good.shards",
                             "trajectory.shards")]
    old = [p for p in old if p.exists()]
    if not old or runfile.output.restart_from:
        return
    if not overwrite:
        raise MDInputError(f"{out} already holds a run ({old[0].name}); use another [output] dir, restart_from, or --overwrite")
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
        raise MDInputError("relax_cell = true needs integrator = \"fire\"")
    if comm.size > 1:
        raise MDInputError("relax_cell = true runs on one rank (a cell relaxation is for small cells): use mpiexec -n 1")
    i, j, d = neighbor_list("ijd", atoms, r.min_distance)
    if len(i):
        raise MDInputError(f"{runfile.system.structure}: atoms {i[0]} and {j[0]} are {d[0]:.3f} A apart (< min_distance "
                         f"{r.min_distance} A) (before any step)")


def _relax_cell(runfile: RunFile, atoms, pot) -> Relaxation:
    """Positions + cell by FIRE on ASE's FrechetCellFilter (one rank); writes relaxed.extxyz and relax.log."""
    r = runfile.run
    out = Path(runfile.output.dir)
    p0 = r.pressure_GPa or 0.0
    relaxed, ok, nsteps = relax_cell(atoms, pot, fmax=r.fmax, steps=r.steps, cell=True, pressure_GPa=p0,
                                     logfile=str(out / "relax.log"), return_steps=True)
    f = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    stress = relaxed.get_stress(voigt=False) / units.GPa
    dev = float(np.abs(stress + p0 * np.eye(3)).max())
    relaxed.info.update(relaxed_from=runfile.system.structure, converged=bool(ok), fmax=f)
    with atomic_path(out / "relaxed.extxyz") as tmp:
        ase.io.write(tmp, relaxed, format="extxyz")
    return Relaxation(out / "relaxed.extxyz", float(relaxed.get_potential_energy()), float(relaxed.get_volume()), f, dev,
                      nsteps, bool(ok))


def build_integrator(r: RunSpec, rank: int = 0):
    """The integrator of a [run] table (thermostat, then barostat and deformation around it); MDInputError on
    inconsistent settings."""
    t0, t1, total = r.temperature_K, r.temperature_end_K, r.steps * r.dt_fs
    temp = t0 if t1 is None else (lambda t: t0 + (t1 - t0) * min(t / total, 1.0))
    if r.integrator == "nve":
        integ = VelocityVerlet(r.dt_fs)
    elif r.integrator == "langevin":
        integ = Langevin(r.dt_fs, temp, friction=r.friction_per_fs, seed=r.seed)  # counter-based noise: one seed for all ranks
    elif r.integrator == "nhc":
        integ = NoseHooverChain(r.dt_fs, temp, tdamp_fs=r.tdamp_fs)
    elif r.integrator == "fire":
        integ = FIREIntegrator(fmax=r.fmax)
    else:
        raise MDInputError(f"unknown integrator {r.integrator!r}; known: nve, langevin, nhc, fire")
    if r.pressure_GPa is not None:
        if r.integrator == "nve" or r.deform_axis:
            raise MDInputError("pressure_GPa (NPT) needs integrator = langevin or nhc and no deformation")
        if r.barostat not in ("isotropic", "anisotropic"):
            raise MDInputError(f"barostat must be 'isotropic' or 'anisotropic' (got {r.barostat!r})")
        integ = CRescaleNPT(integ, r.pressure_GPa, r.compressibility_per_GPa, r.taup_fs, seed=r.seed,
                            anisotropic=r.barostat == "anisotropic")
    if r.deform_axis:
        if r.deform_axis not in ("x", "y", "z"):
            raise MDInputError(f"deform_axis must be x, y or z (got {r.deform_axis!r})")
        integ = UniaxialDeformation(integ, "xyz".index(r.deform_axis), r.strain_rate_per_fs)
    return integ


def validate(runfile: RunFile, comm, progress: bool = True):
    """Everything a run needs that can be wrong, checked before any output: the structure, the potential and the
    atoms' types. Returns (system: a Supercell, potential, types of the unit cell's atoms)."""
    system = load_structure(runfile.system)
    atoms = system.unit
    if runfile.output.restart_from:  # read once here so that a bad restart file is refused before the folder is touched
        _, n = restart_header(runfile.output.restart_from)
        if n != len(system):
            raise MDInputError(f"{runfile.output.restart_from}: {n} atoms, but the structure {runfile.system.structure} has {len(system)}")
    r = runfile.run
    if not atoms.pbc.all() and (r.pressure_GPa is not None or r.deform_axis or r.relax_cell):
        raise MDInputError(f"{runfile.system.structure}: pressure_GPa, deform_axis and relax_cell need a cell periodic in all three "
                           f"directions (pbc={atoms.pbc.tolist()})")
    if lammps_orient(atoms) and progress and comm.rank == 0:
        print("cell rotated to the orientation MD codes expect (a along x, b in the xy plane, as LAMMPS does); positions "
              "rotated with it: every output is in this frame", flush=True)
    local_rank, local_size = node_local_rank(comm)
    pot = make_potential(runfile.potential, atoms.get_chemical_symbols(), local_rank, local_size)
    ps = runfile.potential  # memory-bounded evaluation, automatic by default (one call while the edges fit the budget)
    pot = ChunkedPotential(pot, ps.max_edges_per_call or None, ps.memory_budget_gib * 2**30 or None, ranks_sharing=local_size)
    pot.progress = bool(progress and comm.rank == 0)  # rank 0 shows a bar over a long evaluation's chunks
    if progress and comm.rank == 0:  # the elements a model file covers come from its own metadata
        name = runfile.potential.model or runfile.potential.kind
        print(f"potential {name}: {len(pot.species)} elements, cutoff {pot.cutoff:g} A: {' '.join(pot.species)}", flush=True)
    try:
        types = pot.types_of(atoms.get_chemical_symbols())  # unknown elements: clear error before any step
    except ValueError as exc:
        raise MDInputError(f"{runfile.system.structure}: {exc}") from exc
    if comm.size == 1 and atoms.pbc.any() and pot.cutoff > 0.5 * plane_spacings(system.cell)[atoms.pbc].min():
        d = plane_spacings(system.cell)[atoms.pbc].min()
        raise MDInputError(f"cutoff {pot.cutoff} A is larger than half the cell ({d:.3f} A between its closest faces, half of it "
                           f"{d / 2:.3f} A): an atom would interact with its own image; replicate the cell")
    return system, pot, types


def build_simulation(runfile: RunFile, system: Supercell, pot, types, integ, comm, progress: bool = True):
    """The Simulation of a run file: the state (fresh at temperature_K, each rank building only its own atoms, or from
    restart_from), the distributed force evaluator and the reporters; the first force call and the guards run here
    (MDInputError before any step)."""
    r, o = runfile.run, runfile.output
    ev = DistributedForceEvaluator(pot, comm, system.cell, skin=r.skin, pbc=system.pbc)
    ev.n_total = len(system)
    if o.restart_from:
        state = Simulation.read_restart(o.restart_from, integ, comm)
    else:
        ids, positions = system.local(ev.dec)
        n_unit = len(system.unit)
        unit_masses = system.unit.get_masses()
        masses = unit_masses[ids % n_unit]
        velocities = maxwell_boltzmann(ids, masses, r.temperature_K, r.seed, comm)
        state = State(positions, velocities, masses, system.cell, system.pbc, ids=ids, types=np.asarray(types)[ids % n_unit])
    numbers = system.numbers if (comm.rank == 0 and o.trajectory_every and not o.shards) else None
    try:
        return Simulation(state, integ, ev, o.dir, thermo_every=o.thermo_every, restart_every=o.restart_every,
                          min_distance=r.min_distance, progress=progress, trajectory_every=o.trajectory_every, numbers=numbers,
                          shards=o.shards, species=tuple(pot.species))
    except SimulationError as exc:
        raise MDInputError(f"{runfile.system.structure}: {exc} (before any step)") from exc


def run(runfile: RunFile, comm=None, progress: bool = True, overwrite: bool = False):
    """Run the MD described by ``runfile`` (collective under MPI): validate -> build integrator -> build simulation ->
    run. Returns the Simulation (a ``Relaxation`` for ``relax_cell = true``). Output files of an earlier run in the
    same folder are an error unless ``overwrite`` (or the run resumes from a restart)."""
    comm = comm or world()
    system, pot, types = validate(runfile, comm, progress)  # nothing is written before the input is valid
    if runfile.run.relax_cell:
        atoms = system.atoms()  # one rank, a small cell: built whole
        _check_relax(runfile, atoms, comm)
    else:
        integ = build_integrator(runfile.run, comm.rank)
    lock = _take_folder(runfile, overwrite, comm, progress)
    try:
        if runfile.run.relax_cell:
            return _relax_cell(runfile, atoms, pot)
        try:
            sim = build_simulation(runfile, system, pot, types, integ, comm, progress)
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


def _take_folder(runfile: RunFile, overwrite: bool, comm, progress: bool) -> RunLock:
    """Rank 0 locks the output folder (one run per folder), refuses or removes an old run's files, and on a resume
    cuts the files back to the restart's step; every rank gets the same MDInputError when any of it fails."""
    lock = RunLock(runfile.output.dir)
    err = None
    if comm.rank == 0:
        try:
            lock.acquire()
            _check_output(runfile, overwrite)
            if runfile.output.restart_from:
                step, _ = restart_header(runfile.output.restart_from)
                cut = cut_back(runfile.output.dir, step)
                if progress and str(cut) != "nothing":
                    print(f"resuming at step {step}: removed {cut} written after the restart", flush=True)
        except MDInputError as exc:
            lock.release()
            err = str(exc)
    err = comm.allgather(err)[0]
    if err is not None:
        raise MDInputError(err)
    return lock
