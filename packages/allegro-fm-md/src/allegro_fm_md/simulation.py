"""One-rank ``Simulation``: state + integrator + force evaluator, thermo log, guards, restart files.

Thermo columns: step, time (fs), T (K), potential, kinetic and total energy (eV), pressure (GPa) and
the stress tensor (GPa, ASE sign: positive = tensile), atom-steps/s. A guard stops the run with a
message naming step and atom ids when energy or forces are not finite or two atoms come closer than
``min_distance`` (A); the last good state is then on disk as a restart file. Restart files (npz) are
written atomically and resume bit-for-bit (positions, velocities, forces, step, time and the
integrator's random-number state).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from ase import units
from tea_align import Progress

from . import keys as K
from .comm import SERIAL, _max_op
from .errors import MDInputError, SimulationError
from .faults import inject
from .jobcontrol import RunStopped, StopRequest
from .reporters import (
    FDEV_COLUMNS,
    PER_ATOM,
    PER_ATOM_FIELDS,
    THERMO_COLUMNS,
    FiniteGuard,
    MinDistanceGuard,
    RestartReporter,
    ShardedTrajectoryReporter,
    Thermo,
    ThermoReporter,
    TrajectoryReporter,
)
from .restart import (
    read_restart_file,
    read_restart_shards,
    write_restart_file,
    write_restart_shards,
)
from .state import State

#: conserved_eV: the quantity the dynamics conserves (NVE: etot; Nose-Hoover chain: etot + thermostat
#: energy); for Langevin (not conservative) it is etot.


class RankFailure(RuntimeError):
    """An unexpected error on one rank (not a guard): the other ranks cannot continue or be told
    collectively, so callers abort the whole job (``abort_all``) rather than hang in the next collective."""

    def __init__(self, step: int, rank: int, cause: BaseException):
        self.step, self.rank = step, rank
        super().__init__(f"rank {rank}, step {step}: {type(cause).__name__}: {cause}")


def abort_all(comm, exc: BaseException, outdir: str | Path | None = None, code: int = 4) -> None:
    """Print why on this rank and stop every rank (MPI_Abort); the last restart file written is the last good state."""
    where = f"; last good state: the latest restart file in {outdir}" if outdir else ""
    print(
        f"allegro-fm-md: {exc}; aborting all {comm.size} ranks{where}", file=sys.stderr, flush=True
    )
    comm.Abort(code)


class Simulation:
    """Runs ``integrator`` on ``state`` with forces from ``evaluator`` (one rank or MPI); rank 0 writes
    ``thermo.log``. Restarts and trajectories: gathered to rank 0 ordered by id (``restart.npz``, ``trajectory.h5md``,
    ``trajectory.extxyz``), or with ``shards=True`` written by every rank for its own atoms (``restart.shards/``,
    ``trajectory.shards/``: no rank holds the whole system; ``species``, the potential's element list, names the types)."""

    def __init__(
        self,
        state: State,
        integrator,
        evaluator,
        outdir: str | Path,
        *,
        thermo_every: int = 10,
        restart_every: int = 100,
        min_distance: float = 0.5,
        progress: bool = False,
        trajectory_every: int = 0,
        numbers: np.ndarray | None = None,
        reporters=(),
        guards=(),
        shards: bool = False,
        species: tuple[str, ...] | None = None,
        walltime_margin_s: float = 0.0,
        identity: dict | None = None,
        per_atom: tuple[str, ...] = (),
        fdev_every: int = 1,
    ):
        self.state, self.integrator, self.evaluator = state, integrator, evaluator
        unknown = set(per_atom) - set(PER_ATOM)
        if unknown:
            raise ValueError(f"per_atom: unknown {sorted(unknown)}; known: {', '.join(PER_ATOM)}")
        #: per-atom outputs written with the trajectory frames (reporters.PER_ATOM)
        self.per_atom = tuple(per_atom)
        self._gather_per_atom = {PER_ATOM[name] for name in self.per_atom}
        #: a committee that can skip its members (shallow-ensemble heads) computes the force deviation only at steps
        #: that are multiples of this; thermo rows and frames at other steps show NaN for it
        self.fdev_every = max(int(fdev_every), 1)
        self.comm = (
            evaluator.comm
        )  # DistributedForceEvaluator: the MPI communicator; ForceEvaluator: SERIAL (one process)
        self.root = self.comm.rank == 0
        self.outdir = Path(outdir)
        self.progress = progress
        self.shards = bool(shards)
        #: > 0: stop cleanly (restart written, RunStopped) when less than this remains of the job (jobcontrol.py)
        self.walltime_margin_s = float(walltime_margin_s)
        #: run id, species and model hashes written into every restart (identity.py); empty for a Simulation built in code
        self.identity = dict(identity or {})
        self._t0, self._s0, self._n, self.fresh = 0.0, state.step, 0, False
        if state.ids is None:
            state.ids = np.arange(len(state.masses))
        #: guards, checked after every step: see reporters.py
        self.guards = [FiniteGuard(), MinDistanceGuard(min_distance), *guards]
        self.evaluator.invalidate()
        self.evaluator.update(
            state
        )  # restart files hold positions right after a rebuild: same lists, same forces
        self._guard()  # a bad starting state is refused before any output file is opened
        #: True when the potential is a committee (thermo.log gets FDEV_COLUMNS)
        self.committee = state.force_deviation is not None
        self._thermo = ThermoReporter(thermo_every)
        #: reporters, in order (thermo, trajectory, restart, then the caller's): see reporters.py
        self.reporters = [self._thermo]
        if self.per_atom and self.shards:
            raise ValueError(
                "per-atom outputs are written with gathered trajectories only (not yet with shards = true)"
            )
        if trajectory_every and self.shards:
            if species is None:
                raise ValueError(
                    "sharded trajectory output needs the element of each type (species=...)"
                )
            self.reporters.append(
                ShardedTrajectoryReporter(
                    trajectory_every, self.outdir, species, state.pbc, self.comm, state.step > 0
                )
            )
        elif trajectory_every:
            if numbers is None and self.root:
                raise ValueError("trajectory output needs the atomic numbers (numbers=...)")
            self.reporters.append(
                TrajectoryReporter(
                    trajectory_every,
                    self.outdir,
                    numbers,
                    state.pbc,
                    self.root,
                    state.step > 0,
                    self.per_atom,
                )
            )
        self.reporters.append(RestartReporter(restart_every))
        self.reporters.extend(reporters)

    @property
    def thermo(self) -> list[Thermo]:
        """The thermo rows of this run (every rank)."""
        return self._thermo.rows

    def rate(self) -> float:
        """atom-steps/s since the current ``run`` call started."""
        return self._n * (self.state.step - self._s0) / max(time.perf_counter() - self._t0, 1e-12)

    # -- physics ------------------------------------------------------------------------------
    @property
    def conserves_energy(self) -> bool:
        """True when the thermo log's conserved_eV column is a conserved quantity (NVE, Nose-Hoover chain)."""
        return bool(self.integrator.conserves_energy)

    def stress_GPa(self) -> np.ndarray:
        """Stress tensor (GPa, ASE sign) including the kinetic term; NaN for open boundaries."""
        s = self.state
        if not s.pbc.all():
            return np.full((3, 3), np.nan)
        vol = abs(np.linalg.det(s.cell))
        return -(s.virial + s.kinetic_tensor(self.comm)) / vol / units.GPa

    def _guard(self) -> None:
        for g in self.guards:
            g.check(self)

    # -- gathering and output -----------------------------------------------------------------
    def gathered(self, s: State | None = None) -> State | None:
        """The whole system (``s`` or the current state), ordered by atom id, on rank 0 (None elsewhere)."""
        s = s if s is not None else self.state
        if self.comm.size == 1 and (s.ids is None or np.array_equal(s.ids, np.arange(len(s.ids)))):
            return s
        extra = tuple(
            getattr(s, name) if name in self._gather_per_atom else None for name in PER_ATOM_FIELDS
        )
        parts = self.comm.allgather(
            (s.ids, s.positions, s.velocities, s.forces, s.masses, s.types, extra)
        )
        if not self.root:
            return None
        cat = [np.concatenate([p[k] for p in parts]) for k in range(5)]
        types = None if parts[0][5] is None else np.concatenate([p[5] for p in parts])
        order = np.argsort(cat[0])
        per_atom = [
            None if parts[0][6][k] is None else np.concatenate([p[6][k] for p in parts])[order]
            for k in range(len(PER_ATOM_FIELDS))
        ]
        return State(
            cat[1][order],
            cat[2][order],
            cat[4][order],
            s.cell,
            s.pbc,
            step=s.step,
            time_fs=s.time_fs,
            forces=cat[3][order],
            energy=s.energy,
            virial=s.virial,
            momentum_conserved=s.momentum_conserved,
            ids=cat[0][order],
            types=None if types is None else types[order],
            atomic_energies=per_atom[0],
            atomic_virials=per_atom[1],
            force_deviation=per_atom[2],
        )

    def thermo_row(self, rate: float) -> Thermo:
        """The thermo row of the current state (collective); ``rate`` in atom-steps/s."""
        s = self.state
        ke = s.kinetic_energy(self.comm)
        st = self.stress_GPa()
        p = -np.trace(st) / 3.0
        cons = self.integrator.conserved_energy(s, self.comm)
        fdev = (float("nan"), float("nan")) if self.committee else ()
        if (
            s.force_deviation is not None
        ):  # a committee: the largest and the mean per-atom deviation (eV/A)
            top = float(
                self.comm.allreduce(
                    float(s.force_deviation.max(initial=0.0)), op=_max_op(self.comm)
                )
            )
            fdev = (
                top,
                float(self.comm.allreduce(float(s.force_deviation.sum()))) / self._n_atoms(),
            )
        return Thermo(
            (
                s.step,
                s.time_fs,
                s.temperature(self.comm),
                s.energy,
                ke,
                s.energy + ke,
                p,
                st[0, 0],
                st[1, 1],
                st[2, 2],
                st[1, 2],
                st[0, 2],
                st[0, 1],
                cons,
                rate,
                *fdev,
            ),
            THERMO_COLUMNS + (FDEV_COLUMNS if fdev else ()),
        )

    def _n_atoms(self) -> int:
        if not self._n:
            self._n = self.state.n_global(self.comm)
        return self._n

    def _rng_state(self):
        rng = self.integrator.rng
        if rng is None:
            return None
        return self.comm.allgather(rng.bit_generator.state)

    def _snapshot(self) -> tuple[State, object]:
        s = self.state
        copy = State(
            s.positions.copy(),
            s.velocities.copy(),
            s.masses.copy(),
            s.cell.copy(),
            s.pbc.copy(),
            step=s.step,
            time_fs=s.time_fs,
            forces=s.forces.copy(),
            energy=s.energy,
            virial=s.virial.copy(),
            momentum_conserved=s.momentum_conserved,
            ids=s.ids.copy(),
            types=None if s.types is None else s.types.copy(),
        )
        rng = self.integrator.rng
        self._snap_integ = self._integrator_state()
        return copy, (rng.bit_generator.state if rng is not None else None)

    def _integrator_state(self) -> dict | None:
        return (
            self.integrator.state_dict() or None
        )  # None: nothing to restore (any integrator may resume the file)

    def write_restart(
        self, path: str | Path | None = None, snapshot: tuple[State, object] | None = None
    ) -> Path | None:
        """Atomically write the full dynamic state (collective call): the current state, or a ``_snapshot()``. Gathered:
        one npz of all atoms by id, by rank 0. Sharded: a folder of one npz per rank (``restart.shards``)."""
        integ = self._integrator_state()
        if self.shards:
            path = Path(path) if path else self.outdir / "restart.shards"
            path = path.with_suffix(".shards") if path.suffix == ".npz" else path
            s = self.state if snapshot is None else snapshot[0]
            if snapshot is not None:
                integ = getattr(self, "_snap_integ", integ)
            rng = (
                self._rng_state()
                if snapshot is None
                else (self.comm.allgather(snapshot[1]) if snapshot[1] else None)
            )
            meta = {
                K.INTEGRATOR: type(self.integrator).__name__,
                K.RNG_STATES: rng,
                K.INTEGRATOR_STATE: integ,
                **self.identity,
            }
            return write_restart_shards(path, s, meta, self.comm)
        if snapshot is None:
            g = self.gathered()
            rng_states = self._rng_state()
        else:
            integ = getattr(self, "_snap_integ", integ)
            g = self.gathered(snapshot[0])
            rng_states = self.comm.allgather(snapshot[1]) if snapshot[1] else None
        if not self.root:
            return None
        return write_restart_file(
            Path(path) if path else self.outdir / "restart.npz",
            g,
            {
                K.INTEGRATOR: type(self.integrator).__name__,
                K.RNG_STATES: rng_states,
                K.INTEGRATOR_STATE: integ,
                **self.identity,
            },
        )

    @staticmethod
    def read_restart(path: str | Path, integrator=None, comm=SERIAL) -> State:
        """The State stored in a restart file; with ``comm``, rank 0 holds all atoms and the others none
        (the first force update migrates them). The integrator's RNG state is restored per rank."""
        rank, size = comm.rank, comm.size
        inject("restart-read", rank)
        sharded = Path(path).is_dir()
        r = read_restart_shards(path, rank, size) if sharded else read_restart_file(path)
        meta, arrays = r.meta, r.arrays
        states = meta.get(K.RNG_STATES)
        if integrator is not None and states and integrator.rng is not None:
            if len(states) != size:
                raise MDInputError(
                    f"{path}: written by {len(states)} ranks; a stochastic run resumes bit-for-bit only on as many"
                )
            integrator.rng.bit_generator.state = states[rank]
        if integrator is not None and meta.get(K.INTEGRATOR_STATE) is not None:
            if meta.get(K.INTEGRATOR) != type(integrator).__name__:
                raise MDInputError(
                    f"{path}: written by a {meta.get(K.INTEGRATOR)} run; resume it with the same integrator"
                )
            integrator.load_state_dict(meta[K.INTEGRATOR_STATE])
        keep = slice(None) if (rank == 0 or sharded) else slice(0, 0)  # sharded: this rank's shards
        return State(
            arrays[K.POSITIONS][keep],
            arrays[K.VELOCITIES][keep],
            arrays[K.MASSES][keep],
            arrays[K.CELL],
            arrays[K.PBC],
            step=int(meta[K.STEP]),
            time_fs=float(meta[K.TIME_FS]),
            forces=arrays[K.FORCES][keep],
            energy=float(arrays[K.ENERGY]),
            virial=arrays[K.VIRIAL],
            momentum_conserved=bool(meta[K.MOMENTUM_CONSERVED]),
            ids=arrays[K.IDS][keep],
            types=arrays[K.TYPES][keep],
        )

    def close(self) -> None:
        """Close the reporters' files."""
        for r in self.reporters:
            r.close()

    # -- driver -------------------------------------------------------------------------------
    def run(self, steps: int) -> State:
        """Advance ``steps`` steps: integrator step, guards, then each due reporter. On a guard failure the last good
        state is written to ``restart_last_good.npz`` (``.shards`` when sharded) and SimulationError is raised (on every rank).
        SIGTERM / SIGUSR1 on any rank, or the wall-time margin, stop the run at the end of the current step on every rank:
        a restart is written at that step and ``RunStopped`` is raised (jobcontrol.py)."""
        self._n = self.state.n_global(self.comm)
        logged = self.root and (self.outdir / "thermo.log").exists()
        logged = bool(
            self.comm.allreduce(int(logged))
        )  # the same answer on every rank: starts are collective
        #: True when this run starts the output (step 0, no thermo log yet): reporters write their step-0 rows/frames
        self.fresh = self.state.step == 0 and not logged
        if self.root:
            self.outdir.mkdir(parents=True, exist_ok=True)
        for r in self.reporters:
            r.start(self)
        self._t0, self._s0 = time.perf_counter(), self.state.step
        # a bar on a terminal, a plain line every 10 % in a log file (no redraws): tea_align.Progress
        bar = (
            Progress(steps, desc="md", unit="step", file=sys.stderr)
            if self.progress and self.root and steps >= 100
            else None
        )
        try:
            with StopRequest(self.walltime_margin_s) as stop:
                self._loop(steps, bar, stop)
        finally:
            if bar is not None:
                bar.close()
        return self.state

    def _loop(self, steps: int, bar, stop: StopRequest) -> None:
        """The step loop of ``run``."""
        pot = self.evaluator.potential
        for _ in range(steps):
            if self.fdev_every > 1 and hasattr(pot, "members_wanted"):
                pot.members_wanted = (self.state.step + 1) % self.fdev_every == 0
            prev = self._snapshot()
            try:
                self.integrator.step(self.state, self.evaluator)
            except (
                SimulationError
            ):  # raised on every rank together (non-finite positions at the force call)
                self.write_restart(self.outdir / "restart_last_good.npz", prev)
                raise
            except Exception as exc:  # a failure of this rank alone: the caller aborts the job
                if self.comm.size > 1:
                    raise RankFailure(self.state.step + 1, self.comm.rank, exc) from exc
                raise
            try:
                self._guard()
            except SimulationError:
                self.write_restart(self.outdir / "restart_last_good.npz", prev)
                raise
            if bar is not None:
                bar.update(1)
            done = self.integrator.converged(self.state, self.comm)  # minimisers stop early
            for r in self.reporters:
                if (r.every and self.state.step % r.every == 0) or done:
                    r.report(self, final=done)
            if done:
                return
            if self.comm.allreduce(
                int(stop.due()), op=_max_op(self.comm)
            ):  # any rank's signal stops every rank
                reason = next(r for r in self.comm.allgather(stop.reason) if r)
                self.write_restart()
                raise RunStopped(
                    self.state.step,
                    reason,
                    self.outdir / ("restart.shards" if self.shards else "restart.npz"),
                )
        if (
            steps > 0
        ):  # the last step of a run is in the thermo log and the trajectories, also off their period
            for r in self.reporters:
                if r.reports_last_step and r.every and self.state.step % r.every:
                    r.report(self, final=True)
